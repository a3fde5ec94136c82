//! Names and source locations for the addresses an [`Unwinder`](super::Unwinder) returns.

use crate::elf::anon_names::{is_anonymous, qualify_with};
use crate::elf::lines::LineTable;
use crate::elf::ElfImage;

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
/// symbol table names the outermost one when DWARF has no name for it. Anonymous bodies
/// (`{async_fn#0}`, `{async_block#1}`, `{closure#0}`) get the path of the function they are in:
/// `app::f` for an async fn, `app::f::{async_block#1}` for a block (see
/// [`anon_names`](crate::elf::anon_names)).
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
                Some(name) if is_anonymous(&name) => {
                    match (j == outermost).then(symbol).flatten() {
                        Some(sym) => qualify_with(&name, &sym),
                        None => qualify_inlined(image, lines, name, f.file.as_deref(), f.line),
                    }
                }
                // DWARF often names a function without its path (`start_pool`): the symbol table
                // has the full path of the outermost one.
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

/// The qualified name of anonymous frame `name` at `file:line` (`name` itself when unknown).
fn qualify_inlined(
    image: &ElfImage,
    lines: Option<&LineTable>,
    name: String,
    file: Option<&str>,
    line: Option<u32>,
) -> String {
    let (Some(lines), Some(file)) = (lines, file) else {
        return name;
    };
    let symbol_at = |vaddr: u64| image.symbol_at(vaddr).map(|s| s.name.clone());
    lines
        .anon_names(&symbol_at)
        .qualify(&name, file, line)
        .unwrap_or(name)
}
