//! Names a tokio site (a task vtable in the target) by its future type and source location.
use std::collections::HashMap;

use super::symbolize::Symbolizer;
use crate::{elf::lines::normalize_path, model::SiteName, target::read_u64};

/// Names sites of one process, caching by vtable.
pub struct Namer {
    pid: u32,
    bias: u64,
    symbolizer: Symbolizer,
    /// vtable -> (name, the `raw::poll<T, S>` symbol it was named from)
    cache: HashMap<u64, (SiteName, String)>,
}

impl Namer {
    pub fn new(pid: u32, bias: u64, symbolizer: Symbolizer) -> Self {
        Namer { pid, bias, symbolizer, cache: HashMap::new() }
    }

    /// The DWARF line table of the executable, when it has one.
    pub fn lines(&self) -> Option<&crate::elf::lines::LineTable> {
        self.symbolizer.lines()
    }

    /// Names the site of `vtable` (a runtime address). The vtable's first word is the runtime
    /// address of `raw::poll<T, S>`, read from the target once; failures name the site by address.
    pub fn name(&mut self, vtable: u64) -> &(SiteName, String) {
        if !self.cache.contains_key(&vtable) {
            let n = self.resolve(vtable);
            self.cache.insert(vtable, n);
        }
        &self.cache[&vtable]
    }

    fn resolve(&mut self, vtable: u64) -> (SiteName, String) {
        let poll_rt = match read_u64(self.pid, vtable) {
            Ok(p) => p,
            Err(e) => {
                let function = format!("<unknown future, vtable {vtable:#x}: vtable unreadable: {e}>");
                return (SiteName { function, file: None, line: None }, String::new());
            }
        };
        let named = self.symbolizer.name_future(poll_rt.wrapping_sub(self.bias));
        let name = SiteName {
            function: named.name.function.clone(),
            file: named.location.as_ref().map(|(f, _)| normalize_path(f)),
            line: named.location.as_ref().map(|(_, l)| *l),
        };
        (name, named.name.poll_symbol.clone())
    }
}
