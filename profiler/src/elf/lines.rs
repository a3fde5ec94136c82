//! Source locations from DWARF (`.debug_line` / `.debug_info`) via addr2line.

use std::cell::OnceCell;
use std::sync::Arc;

use object::{Object, ObjectSection};

use crate::elf::anon_names::{self, AnonNames};
use crate::elf::demangle;

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// DWARF line and inline information of one binary. Not `Sync` (addr2line parses lazily).
pub struct LineTable {
    ctx: addr2line::Context<Reader>,
    dwarf: Arc<gimli::Dwarf<Reader>>,
    /// Names of anonymous (async fn, block, closure) frames, built on first need.
    anon: OnceCell<AnonNames>,
}

impl std::fmt::Debug for LineTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineTable")
    }
}

/// One (possibly inlined) frame at an address, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Demangled function name (alternate form, no hash), if DWARF has one.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// True for paths of dependencies and the standard library rather than the application.
pub fn is_library_path(path: &str) -> bool {
    const MARKERS: [&str; 8] = [
        "/.cargo/registry/",
        "/.cargo/git/",
        "/rustlib/",
        "/rustc/",
        "/library/core/",
        "/library/std/",
        "/library/alloc/",
        "/rust/deps/",
    ];
    MARKERS.iter().any(|m| path.contains(m)) || path.starts_with("/rustc/")
}

impl LineTable {
    /// Loads the DWARF sections of an ELF file; None when it has no debug info.
    pub fn load(data: &[u8]) -> Option<LineTable> {
        let file = object::File::parse(data).ok()?;
        let has_dwarf = [".debug_info", ".debug_line"]
            .iter()
            .any(|n| file.section_by_name(n).is_some_and(|s| s.size() > 0));
        if !has_dwarf {
            return None;
        }
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let bytes: Arc<[u8]> = file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .map(|d| Arc::from(d.as_ref()))
                .unwrap_or_else(|| Arc::from(&[][..]));
            Ok(gimli::EndianArcSlice::new(bytes, endian))
        };
        let dwarf = Arc::new(gimli::Dwarf::load(load).ok()?);
        let ctx = addr2line::Context::from_arc_dwarf(dwarf.clone()).ok()?;
        Some(LineTable {
            ctx,
            dwarf,
            anon: OnceCell::new(),
        })
    }

    /// The index naming anonymous frames (see [`anon_names`]), read from `.debug_info` on the
    /// first call; `symbol_at` names functions DWARF gives no linkage name (by entry address).
    pub fn anon_names(&self, symbol_at: &dyn Fn(u64) -> Option<String>) -> &AnonNames {
        self.anon.get_or_init(|| {
            let row_at = |vaddr: u64| {
                if !searchable(vaddr) {
                    return None;
                }
                let loc = self.ctx.find_location(vaddr).ok()??;
                Some((loc.file?.to_owned(), loc.line?))
            };
            let look = anon_names::Lookups {
                symbol_at,
                row_at: &row_at,
            };
            anon_names::build(&self.dwarf, &look)
        })
    }

    /// All frames at `vaddr`, innermost (most inlined) first.
    pub fn frames(&self, vaddr: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        if !searchable(vaddr) {
            return out;
        }
        let Ok(mut iter) = self.ctx.find_frames(vaddr).skip_all_loads() else {
            return out;
        };
        while let Ok(Some(frame)) = iter.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.raw_name().ok())
                .map(|n| demangle(&n));
            let (file, line) = match frame.location {
                Some(loc) => (loc.file.map(str::to_owned), loc.line),
                None => (None, None),
            };
            out.push(Frame {
                function,
                file,
                line,
            });
        }
        out
    }

    /// The source location of `vaddr`: among inlined frames, the innermost one that is not in a
    /// dependency or the standard library, else the innermost one with a line.
    pub fn locate(&self, vaddr: u64) -> Option<(String, u32)> {
        let frames = self.frames(vaddr);
        let with_line = || {
            frames
                .iter()
                .filter_map(|f| Some((f.file.as_deref()?, f.line?)))
        };
        if let Some((file, line)) = with_line().find(|(file, _)| !is_library_path(file)) {
            return Some((file.to_owned(), line));
        }
        if let Some((file, line)) = with_line().next() {
            return Some((file.to_owned(), line));
        }
        if !searchable(vaddr) {
            return None;
        }
        let loc = self.ctx.find_location(vaddr).ok()??;
        Some((loc.file?.to_owned(), loc.line?))
    }
}

/// addr2line looks `vaddr` up as the range `[vaddr, vaddr + 1)`, unchecked: the last address of
/// the address space (a garbage pc, or a function's start in a hostile binary's DWARF) overflowed.
fn searchable(vaddr: u64) -> bool {
    vaddr != u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_paths() {
        assert!(is_library_path(
            "/root/.cargo/registry/src/index.registry-1949cf8c6b5b557f/tokio-1.38.2/src/runtime/task/raw.rs"
        ));
        assert!(is_library_path(
            "/rustc/59807616e1fa/library/core/src/future/mod.rs"
        ));
        assert!(!is_library_path("/home/me/app/src/main.rs"));
        assert!(!is_library_path("src/main.rs"));
    }

    #[test]
    fn no_dwarf_is_none() {
        assert!(LineTable::load(b"garbage").is_none());
    }

    /// The test binary has DWARF in a debug (test) build: look up this very function.
    #[test]
    fn locates_own_code() {
        let exe = std::path::PathBuf::from("/proc/self/exe");
        let data = std::fs::read(&exe).unwrap();
        let Some(table) = LineTable::load(&data) else {
            return; // built without debug info
        };
        let image = crate::elf::ElfImage::from_vec(data).unwrap();
        let sym = image
            .symbols_named(|n| n.ends_with("lines::tests::locates_own_code"))
            .next()
            .expect("own symbol");
        let (file, line) = table.locate(sym.addr).expect("location");
        assert!(file.ends_with("lines.rs"), "{file}");
        assert!(line > 100, "{line}");
    }

    /// The elf fuzz target's input (fuzz/regressions/elf/) asked for the frames at u64::MAX: an
    /// overflow panic inside addr2line.
    #[test]
    fn the_last_address_has_no_location() {
        let Some(table) = LineTable::load(&std::fs::read("/proc/self/exe").unwrap()) else {
            return; // built without debug info
        };
        assert!(table.frames(u64::MAX).is_empty());
        assert_eq!(table.locate(u64::MAX), None);
    }
}

/// Removes `.` and `name/..` components lexically (DWARF paths keep the build's relative hops).
pub fn normalize_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "." => {}
            ".." if out.last().is_some_and(|l| !l.is_empty() && *l != "..") => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod normalize_tests {
    use super::normalize_path;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize_path("/a/b/../c/./d.rs"), "/a/c/d.rs");
        assert_eq!(normalize_path("../x/y.rs"), "../x/y.rs");
        assert_eq!(normalize_path("src/main.rs"), "src/main.rs");
        assert_eq!(normalize_path("/../a"), "/../a");
    }
}
