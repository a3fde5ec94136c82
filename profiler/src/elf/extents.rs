//! Where each function of an executable starts and ends, with or without a symbol table: symbol
//! sizes where `.symtab` has them, else the call-frame information every Rust binary keeps for
//! unwinding (`.eh_frame`: one FDE per function, kept by `strip --strip-all`).

use gimli::{BaseAddresses, CieOrFde, EhFrame, LittleEndian, UnwindSection};
use object::{Object, ObjectSection};

use super::ElfImage;

/// FDEs read at most (a hostile `.eh_frame` cannot make the index unbounded).
const MAX_FDES: usize = 4_000_000;
/// Largest function believed (bytes).
const MAX_FUNCTION: u64 = 4 << 20;

/// Function ranges `[start, end)` of one executable, by ELF virtual address.
#[derive(Debug, Default, Clone)]
pub struct Extents {
    ranges: Vec<(u64, u64)>,
}

impl Extents {
    /// The FDE ranges of `image`'s `.eh_frame` (empty when it has none or it does not parse).
    pub fn from_image(image: &ElfImage) -> Extents {
        let mut ranges = eh_frame_ranges(image.data()).unwrap_or_default();
        ranges.sort_unstable();
        ranges.dedup();
        Extents { ranges }
    }

    #[cfg(test)]
    pub fn from_ranges(mut ranges: Vec<(u64, u64)>) -> Extents {
        ranges.sort_unstable();
        Extents { ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The function containing `vaddr`: its symbol's extent when `image` has a sized symbol
    /// starting there, else the innermost FDE range containing it.
    pub fn function_at(&self, image: &ElfImage, vaddr: u64) -> Option<(u64, u64)> {
        if let Some(s) = image
            .symbols_at_addr(vaddr)
            .iter()
            .filter(|s| s.size > 0)
            .max_by_key(|s| s.size)
        {
            return Some((s.addr, s.addr.checked_add(s.size)?));
        }
        self.fde_at(vaddr)
    }

    /// The innermost FDE range containing `vaddr`.
    pub fn fde_at(&self, vaddr: u64) -> Option<(u64, u64)> {
        let i = self.ranges.partition_point(|&(start, _)| start <= vaddr);
        self.ranges[..i]
            .iter()
            .rev()
            .take(8)
            .find(|&&(_, end)| vaddr < end)
            .copied()
    }
}

fn eh_frame_ranges(data: &[u8]) -> Option<Vec<(u64, u64)>> {
    let file = object::File::parse(data).ok()?;
    let section = file.section_by_name(".eh_frame")?;
    let bytes = section.data().ok()?;
    let mut bases = BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    let eh = EhFrame::new(bytes, LittleEndian);
    let mut entries = eh.entries(&bases);
    let mut out = Vec::new();
    while let Ok(Some(entry)) = entries.next() {
        if out.len() >= MAX_FDES {
            break;
        }
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) = partial.parse(|s, b, o| s.cie_from_offset(b, o)) else {
            continue;
        };
        let (start, len) = (fde.initial_address(), fde.len());
        if len == 0 || len > MAX_FUNCTION {
            continue;
        }
        if let Some(end) = start.checked_add(len) {
            out.push((start, end));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary: a function of this file is found by an address inside it through the
    /// FDE index alone, with the extent its symbol gives.
    #[test]
    fn own_functions_are_found_without_symbols() {
        let image = ElfImage::open("/proc/self/exe").unwrap();
        let ex = Extents::from_image(&image);
        assert!(ex.len() > 100, "{} FDEs", ex.len());
        let sym = image
            .symbols_named(|n| {
                n.ends_with("extents::tests::own_functions_are_found_without_symbols")
            })
            .next()
            .expect("own symbol")
            .clone();
        let fde = ex.fde_at(sym.addr + 3).expect("an FDE");
        assert_eq!(fde, (sym.addr, sym.addr + sym.size), "{sym:?}");
        assert_eq!(ex.function_at(&image, sym.addr), Some(fde));
    }

    #[test]
    fn innermost_range_wins_and_gaps_are_none() {
        let ex = Extents::from_ranges(vec![(0x1000, 0x1100), (0x1200, 0x1300), (0x1210, 0x1220)]);
        assert_eq!(ex.fde_at(0x1150), None);
        assert_eq!(ex.fde_at(0x1000), Some((0x1000, 0x1100)));
        assert_eq!(ex.fde_at(0x1215), Some((0x1210, 0x1220)));
        assert_eq!(ex.fde_at(0x1250), Some((0x1200, 0x1300)));
        assert_eq!(ex.fde_at(0x1300), None);
    }
}
