//! Names a tokio site (a task vtable in the target) by its future type and source location.
use std::collections::HashMap;

pub mod code;
pub mod future_name;
pub mod symbolize;
pub mod type_names;

use self::symbolize::Symbolizer;
use crate::{elf::lines::normalize_path, model::SiteName, target::memory::Memory as _};

/// Names sites of one process, caching by vtable.
pub struct Namer {
    space: crate::target::Space,
    bias: u64,
    symbolizer: Symbolizer,
    /// vtable -> (name, the `raw::poll<T, S>` symbol it was named from)
    cache: HashMap<u64, (SiteName, String)>,
    /// vtable -> ELF address of its `raw::poll<T, S>`, or why the vtable could not be read
    polls: HashMap<u64, Result<u64, String>>,
}

impl Namer {
    pub fn new(space: crate::target::Space, bias: u64, symbolizer: Symbolizer) -> Self {
        Namer { space, bias, symbolizer, cache: HashMap::new(), polls: HashMap::new() }
    }

    /// The DWARF line table of the executable, when it has one.
    pub fn lines(&self) -> Option<&crate::elf::lines::LineTable> {
        self.symbolizer.lines()
    }

    /// Names the site of `vtable` (a runtime address). The vtable's first word is the runtime
    /// address of `raw::poll<T, S>` ([`Namer::poll_vaddr`]); failures name the site by address.
    pub fn name(&mut self, vtable: u64) -> &(SiteName, String) {
        if !self.cache.contains_key(&vtable) {
            let n = self.resolve(vtable);
            self.cache.insert(vtable, n);
        }
        &self.cache[&vtable]
    }

    /// ELF address of the `raw::poll<T, S>` the vtable points at (its first word, read once).
    pub fn poll_vaddr(&mut self, vtable: u64) -> Result<u64, String> {
        let (space, bias) = (&self.space, self.bias);
        let read = || space.read_u64(vtable).map(|p| p.wrapping_sub(bias)).map_err(|e| e.to_string());
        self.polls.entry(vtable).or_insert_with(read).clone()
    }

    fn resolve(&mut self, vtable: u64) -> (SiteName, String) {
        let poll = match self.poll_vaddr(vtable) {
            Ok(p) => p,
            Err(e) => {
                let function = format!("<unknown future, vtable {vtable:#x}: vtable unreadable: {e}>");
                return (SiteName { function, file: None, line: None }, String::new());
            }
        };
        let named = self.symbolizer.name_future(poll);
        let name = SiteName {
            function: named.name.function.clone(),
            file: named.location.as_ref().map(|(f, _)| normalize_path(f)),
            line: named.location.as_ref().map(|(_, l)| *l),
        };
        (name, named.name.poll_symbol.clone())
    }
}
