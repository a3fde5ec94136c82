//! Turning task vtable addresses into future names and source locations.

pub mod code;
pub mod future_name;
pub mod lines;

use std::collections::HashMap;

pub use code::SourceLocation;
pub use future_name::{future_name, FutureName};
pub use lines::LineTable;

use crate::elf::ElfImage;
use future_name::walk_calls;

/// Instructions looked up in DWARF when searching for an inlined body.
const MAX_INLINE_LOOKUPS: usize = 20_000;

/// A future name with its source location when DWARF is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFuture {
    pub name: FutureName,
    /// (file, line) of the future's body (async fn): DWARF line of the body's entry when the body
    /// is a function of its own, else the panic location found in its code (`name.location`,
    /// which also has the column), else the first application line inlined below `raw::poll`
    /// (DWARF).
    pub location: Option<(String, u32)>,
}

/// Names futures of one binary, caching by poll address. Not `Sync` (see [`LineTable`]).
#[derive(Debug)]
pub struct Symbolizer {
    image: ElfImage,
    lines: Option<LineTable>,
    cache: HashMap<u64, NamedFuture>,
}

impl Symbolizer {
    /// Loads the line table (if the binary has DWARF) of `image`.
    pub fn new(image: ElfImage) -> Self {
        let lines = image
            .has_debug_info()
            .then(|| LineTable::load(image.data()))
            .flatten();
        Symbolizer {
            image,
            lines,
            cache: HashMap::new(),
        }
    }

    pub fn image(&self) -> &ElfImage {
        &self.image
    }

    pub fn lines(&self) -> Option<&LineTable> {
        self.lines.as_ref()
    }

    /// Names the future whose vtable `poll` is at ELF vaddr `poll_vaddr` (cached).
    pub fn name_future(&mut self, poll_vaddr: u64) -> &NamedFuture {
        if !self.cache.contains_key(&poll_vaddr) {
            let named = self.resolve(poll_vaddr);
            self.cache.insert(poll_vaddr, named);
        }
        &self.cache[&poll_vaddr]
    }

    fn resolve(&self, poll_vaddr: u64) -> NamedFuture {
        let name = future_name(&self.image, poll_vaddr);
        let dwarf = |vaddr| {
            let (file, line) = self.lines.as_ref()?.locate(vaddr)?;
            Some(SourceLocation {
                file,
                line,
                column: None,
            })
        };
        let location = name
            .body_vaddr
            .and_then(dwarf)
            .or_else(|| name.location.clone())
            .or_else(|| {
                let lines = self.lines.as_ref()?;
                inlined_location(&self.image, lines, poll_vaddr)
            })
            .map(|l| (l.file, l.line));
        NamedFuture { name, location }
    }
}

/// The first application line (by file path) inlined into the code reachable from `poll_vaddr`.
fn inlined_location(image: &ElfImage, lines: &LineTable, poll_vaddr: u64) -> Option<SourceLocation> {
    let mut budget = MAX_INLINE_LOOKUPS;
    for func in walk_calls(image, poll_vaddr).visited {
        for ip in code::scan_function(image, func).instructions {
            budget = budget.checked_sub(1)?;
            let found = lines.frames(ip).into_iter().find_map(|f| {
                let file = f.file.filter(|file| !lines::is_library_path(file))?;
                Some(SourceLocation {
                    file,
                    line: f.line?,
                    column: None,
                })
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}
