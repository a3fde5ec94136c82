//! Names and source locations for the addresses an [`Unwinder`](super::Unwinder) returns.

use crate::elf::ElfImage;
use crate::elf::lines::LineTable;

/// One frame of a symbolized stack, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The runtime address this frame came from (the same `pc` for all frames inlined at it).
    pub pc: u64,
    /// Demangled function name without hash; `0x…` (the pc) when no symbol covers it.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// True for a frame that DWARF says was inlined into the next frame of the list.
    pub inlined: bool,
}

/// Symbolizes `pcs` as returned by [`Unwinder::unwind`](super::Unwinder::unwind): `pcs[0]` is
/// an instruction pointer and is looked up as is; the others are return addresses and are looked
/// up at `pc - 1`, inside the call instruction (a call can be the last instruction of a function).
///
/// Without `lines` every pc gives one frame named by the ELF symbol table. With `lines`
/// (DWARF), every pc gives its inlined frames too, innermost first, each with file and line; the
/// symbol table names the outermost one when DWARF has no name for it.
pub fn symbolize_frames(
    image: &ElfImage,
    lines: Option<&LineTable>,
    bias: u64,
    pcs: &[u64],
) -> Vec<Frame> {
    let mut out = Vec::with_capacity(pcs.len());
    for (i, &pc) in pcs.iter().enumerate() {
        let lookup = if i == 0 { pc } else { pc.wrapping_sub(1) };
        let vaddr = lookup.wrapping_sub(bias);
        let symbol = || image.symbol_at(vaddr).map(|s| s.name.clone());
        let unknown = || format!("{pc:#x}");
        let dwarf = lines.map(|l| l.frames(vaddr)).unwrap_or_default();
        if dwarf.is_empty() {
            out.push(Frame {
                pc,
                function: symbol().unwrap_or_else(unknown),
                file: None,
                line: None,
                inlined: false,
            });
            continue;
        }
        let outermost = dwarf.len() - 1;
        for (j, f) in dwarf.into_iter().enumerate() {
            let function = match f.function {
                // DWARF often names a function without its path (`{async_fn#0}`, `start_pool`):
                // the symbol table has the full path of the outermost one.
                Some(name) if j == outermost && !name.contains("::") => symbol().unwrap_or(name),
                Some(name) => name,
                None if j == outermost => symbol().unwrap_or_else(unknown),
                None => unknown(),
            };
            out.push(Frame {
                pc,
                function,
                file: f.file,
                line: f.line,
                inlined: j != outermost,
            });
        }
    }
    out
}
