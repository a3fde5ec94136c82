//! Names a site (task vtable in the target) by its future type and source location.
use std::collections::HashMap;

use crate::symbolize::Symbolizer;
use crate::target::read_u64;

/// A site's name as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteName {
    pub function: String,
    pub poll_symbol: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Names vtables of one process, caching by vtable address.
pub struct SiteNamer {
    pid: u32,
    bias: u64,
    symbolizer: Symbolizer,
    cache: HashMap<u64, SiteName>,
}

impl SiteNamer {
    pub fn new(pid: u32, bias: u64, symbolizer: Symbolizer) -> Self {
        SiteNamer { pid, bias, symbolizer, cache: HashMap::new() }
    }

    /// The DWARF line table of the executable, when it has one.
    pub fn lines(&self) -> Option<&crate::symbolize::LineTable> {
        self.symbolizer.lines()
    }

    /// Names the site of `vtable` (a runtime address). The vtable's first word is the runtime
    /// address of `raw::poll<T, S>`, read from the target once; failures name the site by address.
    pub fn name(&mut self, vtable: u64) -> &SiteName {
        if !self.cache.contains_key(&vtable) {
            let n = self.resolve(vtable);
            self.cache.insert(vtable, n);
        }
        &self.cache[&vtable]
    }

    fn resolve(&mut self, vtable: u64) -> SiteName {
        let unknown = |why: &str| SiteName {
            function: format!("<unknown future, vtable {vtable:#x}: {why}>"),
            poll_symbol: String::new(),
            file: None,
            line: None,
        };
        let poll_rt = match read_u64(self.pid, vtable) {
            Ok(p) => p,
            Err(e) => return unknown(&format!("vtable unreadable: {e}")),
        };
        let poll_vaddr = poll_rt.wrapping_sub(self.bias);
        let named = self.symbolizer.name_future(poll_vaddr);
        SiteName {
            function: named.name.function.clone(),
            poll_symbol: named.name.poll_symbol.clone(),
            file: named.location.as_ref().map(|(f, _)| normalize_path(f)),
            line: named.location.as_ref().map(|(_, l)| *l),
        }
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
mod tests {
    use super::normalize_path;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize_path("/a/b/../c/./d.rs"), "/a/c/d.rs");
        assert_eq!(normalize_path("../x/y.rs"), "../x/y.rs");
        assert_eq!(normalize_path("src/main.rs"), "src/main.rs");
        assert_eq!(normalize_path("/../a"), "/../a");
    }
}
