//! What framehop needs to know about the executable: its code ranges and its unwind sections.

use std::ops::{Deref, Range};

use framehop::{ExplicitModuleSectionInfo, Module};
use object::{CompressionFormat, Object, ObjectSection, ObjectSegment, SegmentFlags};

use crate::elf::ElfImage;

/// Which call-frame information the executable has, i.e. how the unwinder will walk it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfiSource {
    /// `.eh_frame` indexed by `.eh_frame_hdr` (the usual case for linked executables).
    EhFrameHdr,
    /// `.eh_frame` without an index: framehop builds one when the unwinder is created.
    EhFrame,
    /// Only `.debug_frame` (unusual; framehop indexes it too).
    DebugFrame,
    /// No CFI at all: only frame-pointer walking works (and only for code built with them).
    None,
}

/// Bytes of one section of the image, without copying them (the image is an `Arc`).
#[derive(Clone)]
pub(crate) struct SectionBytes {
    image: ElfImage,
    range: Range<usize>,
}

impl Deref for SectionBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.image.data()[self.range.clone()]
    }
}

/// The executable as framehop sees it.
pub(crate) struct Layout {
    /// Runtime address ranges of the executable `PT_LOAD` segments, sorted.
    pub code: Vec<Range<u64>>,
    /// None when the image has no executable segment.
    pub module: Option<Module<SectionBytes>>,
    pub cfi: CfiSource,
}

/// Builds the framehop module of `image` loaded with `bias`. `use_hdr: false` ignores
/// `.eh_frame_hdr` (tests use it to exercise framehop's own `.eh_frame` index).
pub(crate) fn layout(image: &ElfImage, bias: u64, use_hdr: bool) -> Layout {
    let Ok(file) = object::File::parse(image.data()) else {
        return Layout {
            code: Vec::new(),
            module: None,
            cfi: CfiSource::None,
        };
    };
    let mut code: Vec<Range<u64>> = file
        .segments()
        .filter(|seg| match seg.flags() {
            SegmentFlags::Elf { p_type, p_flags } => {
                p_type == object::elf::PT_LOAD && p_flags.contains(object::elf::PF_X)
            }
            _ => false,
        })
        .filter(|seg| seg.size() > 0)
        .map(|seg| {
            let start = seg.address().wrapping_add(bias);
            start..start.wrapping_add(seg.size())
        })
        .collect();
    code.sort_by_key(|r| r.start);
    let (Some(lo), Some(hi)) = (
        code.first().map(|r| r.start),
        code.iter().map(|r| r.end).max(),
    ) else {
        return Layout {
            code,
            module: None,
            cfi: CfiSource::None,
        };
    };

    let section = |name: &str| -> Option<(Range<u64>, SectionBytes)> {
        let s = file.section_by_name(name)?;
        let file_range = s.compressed_file_range().ok()?;
        if file_range.format != CompressionFormat::None || file_range.compressed_size == 0 {
            return None;
        }
        let start = usize::try_from(file_range.offset).ok()?;
        let end = start.checked_add(usize::try_from(file_range.compressed_size).ok()?)?;
        if end > image.data().len() {
            return None;
        }
        let svma = s.address()..s.address().checked_add(s.size())?;
        Some((
            svma,
            SectionBytes {
                image: image.clone(),
                range: start..end,
            },
        ))
    };
    let range_of = |name: &str| {
        file.section_by_name(name)
            .and_then(|s| Some(s.address()..s.address().checked_add(s.size())?))
    };

    let eh_frame = section(".eh_frame");
    let eh_frame_hdr = if use_hdr {
        section(".eh_frame_hdr")
    } else {
        None
    };
    // framehop uses the header's table as it is: one it cannot use safely is dropped (framehop
    // then indexes `.eh_frame` itself)
    let eh_frame_hdr = eh_frame_hdr.filter(|(svma, bytes)| {
        let start = |r: Option<Range<u64>>| r.map_or(0, |r| r.start);
        let bases = gimli::BaseAddresses::default()
            .set_eh_frame(start(eh_frame.as_ref().map(|e| e.0.clone())))
            .set_eh_frame_hdr(svma.start)
            .set_text(start(range_of(".text")))
            .set_got(start(range_of(".got")));
        hdr_is_sound(bytes, &bases)
    });
    let debug_frame = section(".debug_frame");
    let cfi = match (&eh_frame, &eh_frame_hdr, &debug_frame) {
        (Some(_), Some(_), _) => CfiSource::EhFrameHdr,
        (Some(_), None, _) => CfiSource::EhFrame,
        (None, _, Some(_)) => CfiSource::DebugFrame,
        (None, _, None) => CfiSource::None,
    };
    let (eh_frame_svma, eh_frame) = eh_frame.unzip();
    let (eh_frame_hdr_svma, eh_frame_hdr) = eh_frame_hdr.unzip();
    let info = ExplicitModuleSectionInfo::<SectionBytes> {
        // ELF: code addresses in CFI are virtual addresses; the module base is address 0.
        base_svma: 0,
        text_svma: range_of(".text"),
        got_svma: range_of(".got"),
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        debug_frame: debug_frame.map(|(_, bytes)| bytes),
        text: None,
        stubs_svma: None,
        stub_helper_svma: None,
        unwind_info: None,
        text_segment_svma: None,
        text_segment: None,
    };
    // framehop maps a runtime address to `address - base_avma` (must fit in u32): with
    // base_svma = 0, base_avma is the load bias.
    let module = Module::new("main executable".to_owned(), lo..hi, bias, info);
    Layout {
        code,
        module: Some(module),
        cfi,
    }
}

/// Whether framehop (through gimli) can search `.eh_frame_hdr`'s table without panicking: its
/// lookup takes an FDE's offset as `fde - eh_frame_ptr` and a row's as `count / 2 * row size`,
/// both unchecked, so every row's FDE pointer must lie at or after the `.eh_frame` pointer and
/// the table must hold as many rows as it counts. A header gimli cannot parse is harmless
/// (framehop ignores it).
fn hdr_is_sound(hdr: &[u8], bases: &gimli::BaseAddresses) -> bool {
    let Ok(parsed) = gimli::EhFrameHdr::new(hdr, gimli::LittleEndian).parse(bases, 8) else {
        return true;
    };
    let (Some(table), Ok(eh_frame)) = (parsed.table(), parsed.eh_frame_ptr().direct()) else {
        return true;
    };
    let mut rows = table.iter(bases);
    loop {
        match rows.next() {
            Ok(None) => return true,
            Ok(Some((_, fde))) => {
                if fde.direct().is_ok_and(|f| f < eh_frame) {
                    return false;
                }
            }
            // fewer rows than counted (or an encoding it cannot read)
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.eh_frame_hdr`: version 1, absolute udata8 `.eh_frame` pointer, udata4 count and
    /// table (initial location, FDE address) rows.
    fn hdr(eh_frame: u64, count: u32, rows: &[(u32, u32)]) -> Vec<u8> {
        let mut b = vec![1, 0x04, 0x03, 0x03];
        b.extend_from_slice(&eh_frame.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        for (at, fde) in rows {
            b.extend_from_slice(&at.to_le_bytes());
            b.extend_from_slice(&fde.to_le_bytes());
        }
        b
    }

    /// The fuzzer's input (fuzz/regressions/unwind/) had a table row pointing before
    /// `.eh_frame`: gimli's lookup subtracted without a check, a panic with overflow checks.
    #[test]
    fn a_header_table_pointing_before_eh_frame_or_short_of_rows_is_not_used() {
        let bases = gimli::BaseAddresses::default().set_eh_frame(0x2000).set_eh_frame_hdr(0x1f00);
        assert!(hdr_is_sound(&hdr(0x2000, 2, &[(0x1000, 0x2010), (0x1100, 0x2020)]), &bases));
        assert!(!hdr_is_sound(&hdr(0x2000, 2, &[(0x1000, 0x2010), (0x1100, 0x1ff0)]), &bases));
        assert!(!hdr_is_sound(&hdr(0x2000, 3, &[(0x1000, 0x2010), (0x1100, 0x2020)]), &bases));
        assert!(!hdr_is_sound(&hdr(0x2000, u32::MAX, &[(0x1000, 0x2010)]), &bases));
        // not a header gimli reads: framehop ignores it by itself
        let mut v2 = hdr(0x2000, 1, &[(0x1000, 0x1000)]);
        v2[0] = 2;
        assert!(hdr_is_sound(&v2, &bases));
    }

    /// The fuzzer's input (fuzz/regressions/unwind/) had a `.text` whose address plus size passed
    /// u64::MAX: an overflow panic where its range was taken for framehop.
    #[test]
    fn a_section_past_the_end_of_the_address_space_is_not_a_range() {
        let mut data = std::fs::read("/proc/self/exe").unwrap();
        let u16_at = |d: &[u8], o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap()) as usize;
        let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap()) as usize;
        let (shoff, shentsize, shnum, shstrndx) =
            (u64_at(&data, 0x28), u16_at(&data, 0x3a), u16_at(&data, 0x3c), u16_at(&data, 0x3e));
        let strtab = u64_at(&data, shoff + shstrndx * shentsize + 0x18);
        let text = (0..shnum)
            .map(|i| shoff + i * shentsize)
            .find(|&sh| data[strtab + u32::from_le_bytes(data[sh..sh + 4].try_into().unwrap()) as usize..].starts_with(b".text\0"))
            .expect("a .text section header");
        data[text + 0x20..text + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        let image = ElfImage::from_vec(data).unwrap();
        let l = layout(&image, 0x5555_0000_0000, true);
        assert!(l.module.is_some() && !l.code.is_empty());
    }
}
