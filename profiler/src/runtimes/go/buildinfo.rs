//! The Go version from the build info blob (`.go.buildinfo`, kept by `-s -w`).
//!
//! Layout (runtime/debug, cmd/go/internal/version): 16-byte aligned, starts with the 14-byte
//! magic `"\xff Go buildinf:"`, then pointer size (byte 14) and flags (byte 15: bit 0 big endian,
//! bit 1 inline strings). Go 1.18+: at byte 32, the version and the module info as uvarint-length
//! prefixed strings. Before 1.18: at byte 16, two pointers to Go string headers (ptr, len).
use object::{Object as _, ObjectSection as _};

use crate::elf::ElfImage;

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Parses the blob's bytes (Go 1.18+ inline-string format): "go1.19.8".
pub fn parse(section: &[u8]) -> Option<String> {
    if section.len() < 33 || !section.starts_with(MAGIC) {
        return None;
    }
    let flags = section[15];
    if flags & 2 == 0 {
        return None; // pre-1.18 pointer format: see go_version_image
    }
    let (len, n) = uvarint(&section[32..])?;
    let start = 32 + n;
    let s = section.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
    std::str::from_utf8(s)
        .ok()
        .filter(|s| s.starts_with("go") || s.starts_with("devel"))
        .map(str::to_string)
}

pub use super::pcvalue::uvarint;

/// File offset of the build info blob: the `.go.buildinfo` section, or (no section headers,
/// e.g. after `strip --strip-section-headers`) the first 16-byte aligned magic in the file.
pub fn find(data: &[u8]) -> Option<usize> {
    if let Ok(file) = object::File::parse(data) {
        if let Some(sec) = file.section_by_name(".go.buildinfo") {
            // a corrupt header can point past the end of the file
            return sec.file_range().map(|(off, _)| off as usize).filter(|&off| off < data.len());
        }
        if file.sections().next().is_some() {
            return None; // section headers present, no buildinfo: not Go
        }
    }
    (0..data.len().saturating_sub(MAGIC.len()))
        .step_by(16)
        .find(|&o| data[o..].starts_with(MAGIC))
}

/// The Go version of an ELF file ("go1.27.3"), when it is a Go 1.18+ binary.
pub fn go_version(data: &[u8]) -> Option<String> {
    parse(data.get(find(data)?..)?)
}

/// True for a Go binary (it has a build info blob, any version).
pub fn is_go(data: &[u8]) -> bool {
    find(data).is_some()
}

/// The Go version of an image, also for the pre-1.18 pointer format (read through the image's
/// load segments; PIE pointers through their dynamic relocations).
pub fn go_version_image(image: &ElfImage) -> Option<String> {
    let data = image.data();
    let off = find(data)?;
    let blob = data.get(off..)?;
    if let Some(v) = parse(blob) {
        return Some(v);
    }
    if blob.len() < 32 || blob[14] != 8 || blob[15] & 3 != 0 {
        return None; // 64-bit little endian only
    }
    // the blob's vaddr: file offset -> vaddr through the load segment holding it
    let seg = image
        .load_segments()
        .iter()
        .find(|s| (s.file_offset..s.file_offset.saturating_add(s.file_size)).contains(&(off as u64)))?;
    let vaddr = seg.vaddr.checked_add(off as u64 - seg.file_offset)?;
    let hdr = image.read_pointer(vaddr.checked_add(16)?)?;
    let ptr = image.read_pointer(hdr)?;
    let len = image.read_u64(hdr.checked_add(8)?)?;
    if len == 0 || len > 64 {
        return None;
    }
    let s = image.read_at_vaddr(ptr, len as usize)?;
    std::str::from_utf8(s).ok().map(str::to_string)
}

/// "go1.19.8" -> (1, 19).
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.strip_prefix("go")?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(version: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&[8, 2]);
        s.resize(32, 0);
        s.push(version.len() as u8);
        s.extend_from_slice(version.as_bytes());
        s.push(0);
        s
    }

    /// A pre-1.18 blob whose string header pointer is at the top of the address space made
    /// `hdr + 8` overflow (and `vaddr + 16` before it, for a segment there).
    #[test]
    fn a_pointer_format_blob_at_the_top_of_the_address_space_gives_no_version() {
        let mut elf = crate::elf::tests::elf_with_segment(0, u64::MAX - 0xdf, 0xe0);
        elf.resize(0xc0, 0);
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[8, 0]); // pointer format
        b.extend_from_slice(&(u64::MAX - 7).to_le_bytes()); // -> a string header in the last 8 bytes
        b.resize(32, 0);
        elf.extend_from_slice(&b);
        assert_eq!(elf.len(), 0xe0);
        let img = ElfImage::parse(&elf).unwrap();
        assert_eq!(find(img.data()), Some(0xc0));
        assert_eq!(go_version_image(&img), None);
    }

    #[test]
    fn parses_inline_version() {
        assert_eq!(parse(&blob("go1.19.8")).as_deref(), Some("go1.19.8"));
        assert_eq!(major_minor("go1.19.8"), Some((1, 19)));
        assert_eq!(major_minor("go1.27rc1"), Some((1, 27)));
        assert_eq!(major_minor("go1.24.1 X:boringcrypto"), Some((1, 24)));
        assert_eq!(parse(b"nope"), None);
        let mut old = blob("go1.17.2");
        old[15] = 0; // pointer format: not readable from bytes alone
        assert_eq!(parse(&old), None);
    }

    #[test]
    fn finds_the_blob_without_section_headers() {
        let mut data = vec![0u8; 64]; // not an ELF file: scanned
        data.extend(blob("go1.27.3"));
        assert_eq!(find(&data), Some(64));
        assert_eq!(go_version(&data).as_deref(), Some("go1.27.3"));
        assert!(is_go(&data));
        data[64] = 0;
        assert!(!is_go(&data));
    }

    /// A minimal ELF (one PT_LOAD at 0x400000, no sections) holding a pre-1.18 blob at 0x80
    /// whose version pointer leads to a string header at 0xc0 and "go1.17.2" at 0xd0.
    #[test]
    fn reads_the_pre_118_pointer_format_through_the_image() {
        let mut d = vec![0u8; 0xe0];
        d[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let put = |d: &mut Vec<u8>, o: usize, v: &[u8]| d[o..o + v.len()].copy_from_slice(v);
        put(&mut d, 16, &[2, 0, 0x3e, 0, 1, 0, 0, 0]); // ET_EXEC, x86-64, version 1
        put(&mut d, 32, &64u64.to_le_bytes()); // e_phoff
        put(&mut d, 52, &[64, 0, 56, 0, 1, 0, 64, 0]); // ehsize, phentsize, phnum 1, shentsize
        let ph = [1u32.to_le_bytes(), 6u32.to_le_bytes()].concat(); // PT_LOAD, RW
        put(&mut d, 64, &ph);
        for (i, v) in [0u64, 0x400000, 0x400000, 0xe0, 0xe0, 0x1000]
            .iter()
            .enumerate()
        {
            put(&mut d, 72 + 8 * i, &v.to_le_bytes());
        }
        put(&mut d, 0x80, MAGIC);
        put(&mut d, 0x8e, &[8, 0]); // pointer size 8, flags 0: pointer format
        put(&mut d, 0x90, &0x4000c0u64.to_le_bytes());
        put(&mut d, 0xc0, &0x4000d0u64.to_le_bytes());
        put(&mut d, 0xc8, &8u64.to_le_bytes());
        put(&mut d, 0xd0, b"go1.17.2");
        assert_eq!(go_version(&d), None, "needs the image");
        assert!(is_go(&d));
        let image = ElfImage::from_vec(d).unwrap();
        assert_eq!(go_version_image(&image).as_deref(), Some("go1.17.2"));
    }
}
