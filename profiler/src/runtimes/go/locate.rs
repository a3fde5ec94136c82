//! Finding the pclntab and runtime.text in an image, with or without section headers.
//!
//! What survives what: `-ldflags='-s -w'` drops `.symtab` and DWARF but keeps every section
//! header, `.gopclntab` and `.go.buildinfo`. `strip --strip-section-headers` (or sstrip) drops
//! the headers too: then the pclntab is found by its magic in the read-only load segments.
//! External linking (cgo, some PIE builds) puts the table inside `.data.rel.ro`, marked by the
//! `runtime.pclntab` symbol. Go 1.26+ (and PIE builds, through a relocation) leave the header's
//! textStart 0: the runtime's moduledata holds runtime.text.
use object::{Object as _, ObjectSection as _};

use super::pclntab::Pclntab;
use crate::elf::ElfImage;

/// Offsets in runtime.moduledata (1.18-1.27): pcHeader, 5 slices, ftab, findfunctab, minpc, maxpc, text.
const MD_FUNCNAMETAB: u64 = 8;
const MD_MINPC: u64 = 160;
const MD_TEXT: u64 = 176;


/// File bytes from `vaddr` to the end of its load segment's file contents.
fn rest_of_segment(image: &ElfImage, vaddr: u64) -> Option<&[u8]> {
    let seg = image
        .load_segments()
        .iter()
        .find(|s| s.file_offset_of(vaddr).is_some())?;
    let len = seg.vaddr.saturating_add(seg.file_size).checked_sub(vaddr)?;
    image.read_at_vaddr(vaddr, usize::try_from(len).ok()?)
}

/// (vaddr, bytes from there on) of the pclntab header.
pub fn pclntab_bytes(image: &ElfImage) -> Option<(u64, &[u8])> {
    if let Ok(file) = object::File::parse(image.data()) {
        if let Some(sec) = file.section_by_name(".gopclntab") {
            let addr = sec.address();
            return Some((addr, image.read_at_vaddr(addr, sec.size() as usize)?));
        }
    }
    if let Some(a) = image.symbol_address("runtime.pclntab") {
        return Some((a, rest_of_segment(image, a)?));
    }
    // magic scan: 8-aligned 0xfffffff0/1 that parses as a plausible table
    for seg in image.load_segments() {
        let Some(bytes) = image.read_at_vaddr(seg.vaddr, seg.file_size as usize) else {
            continue;
        };
        let start = (8 - seg.vaddr % 8) % 8;
        for o in (start as usize..bytes.len().saturating_sub(72)).step_by(8) {
            if bytes[o + 1..o + 6] == [0xff, 0xff, 0xff, 0, 0]
                && matches!(bytes[o], 0xf0 | 0xf1)
                && Pclntab::parse(&bytes[o..]).is_some_and(|p| plausible(&p))
            {
                return Some((seg.vaddr + o as u64, &bytes[o..]));
            }
        }
    }
    None
}

/// Entry offsets ascending and the first names readable: not a chance match of the magic.
fn plausible(p: &Pclntab) -> bool {
    let n = p.num_funcs().min(64);
    (0..n).all(|i| matches!((p.entry_off(i), p.entry_off(i + 1)), (Some(a), Some(b)) if a <= b))
        && p.funcs().take(n).count() == n
}

/// runtime.text, what function entry offsets are relative to.
pub fn text_start(image: &ElfImage, p: &Pclntab, pclntab_vaddr: u64) -> Option<u64> {
    // the header's textStart (PIE: the target of its relocation)
    if let Some(t) = image.read_pointer(pclntab_vaddr + 24).filter(|&t| t != 0) {
        return Some(t);
    }
    if p.text_start() != 0 {
        return Some(p.text_start());
    }
    if let Some(t) = image.symbol_address("runtime.text") {
        return Some(t);
    }
    if let Some(t) = text_from_moduledata(image, p, pclntab_vaddr) {
        return Some(t);
    }
    if let Some(t) = text_from_entry_point(image, p) {
        return Some(t);
    }
    let file = object::File::parse(image.data()).ok()?;
    let t = file.section_by_name(".text").map(|s| s.address());
    t
}

/// runtime.firstmoduledata: the writable slot pointing at the pclntab header whose next word
/// points at the function name table; its `text` must agree with its `minpc`.
pub fn text_from_moduledata(image: &ElfImage, p: &Pclntab, pclntab_vaddr: u64) -> Option<u64> {
    let funcnametab = pclntab_vaddr + image.read_u64(pclntab_vaddr + 32)?;
    for seg in image.load_segments() {
        let Some(bytes) = image.read_at_vaddr(seg.vaddr, seg.file_size as usize) else {
            continue;
        };
        for o in (0..bytes.len().saturating_sub(8)).step_by(8) {
            let slot = seg.vaddr + o as u64;
            let raw = u64::from_le_bytes(bytes[o..o + 8].try_into().ok()?);
            // cheap pre-filter on file bytes; PIE slots hold 0 (or the addend) before relocation
            if raw != pclntab_vaddr && raw != 0 {
                continue;
            }
            if image.read_pointer(slot) != Some(pclntab_vaddr)
                || image.read_pointer(slot + MD_FUNCNAMETAB) != Some(funcnametab)
            {
                continue;
            }
            let text = image.read_pointer(slot + MD_TEXT)?;
            let minpc = image.read_pointer(slot + MD_MINPC)?;
            if text != 0 && Some(minpc) == p.entry_off(0).map(|e| text + e) {
                return Some(text);
            }
        }
    }
    None
}

/// The ELF entry point is `_rt0_amd64_linux` in an internally linked Go executable.
pub fn text_from_entry_point(image: &ElfImage, p: &Pclntab) -> Option<u64> {
    let file = object::File::parse(image.data()).ok()?;
    let entry = file.entry();
    let mut q = p.clone();
    q.set_text_start(0);
    let rt0 = q.func_named("_rt0_amd64_linux")?;
    let text = entry.checked_sub(rt0.entry)?;
    // an externally linked binary starts in libc's _start, not here: check that the entry
    // holds _rt0_amd64_linux's `JMP _rt0_amd64` (e9 rel32) landing on _rt0_amd64
    let target = q.func_named("_rt0_amd64")?.entry + text;
    let code = image.read_at_vaddr(entry, 5)?;
    let rel = i32::from_le_bytes(code[1..5].try_into().ok()?);
    (code[0] == 0xe9 && entry.wrapping_add(5).wrapping_add(rel as i64 as u64) == target)
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment whose end passes u64::MAX made `vaddr + file_size - vaddr` overflow.
    #[test]
    fn the_rest_of_a_segment_at_the_top_of_the_address_space() {
        let img = ElfImage::parse(&crate::elf::tests::elf_with_segment(0, u64::MAX - 0x10, 0xb8)).unwrap();
        let rest = rest_of_segment(&img, u64::MAX - 0x10).unwrap();
        assert_eq!(&rest[..4], &[0x7f, b'E', b'L', b'F']);
        assert!(rest_of_segment(&img, 0x1000).is_none());
    }
}
