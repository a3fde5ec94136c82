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

/// How sites are named.
enum Kind {
    /// tokio: the key is a task vtable; its first word is raw::poll<T, S>.
    Tokio(Symbolizer),
    /// Go: the key is g.gopc, the return address of the `go` statement's call.
    Go(crate::golang::pclntab::Pclntab),
}

/// Names sites of one process, caching by key (vtable or gopc).
pub struct SiteNamer {
    pid: u32,
    bias: u64,
    kind: Kind,
    cache: HashMap<u64, SiteName>,
}

impl SiteNamer {
    pub fn new(pid: u32, bias: u64, symbolizer: Symbolizer) -> Self {
        SiteNamer { pid, bias, kind: Kind::Tokio(symbolizer), cache: HashMap::new() }
    }

    pub fn go(pid: u32, bias: u64, pclntab: crate::golang::pclntab::Pclntab) -> Self {
        SiteNamer { pid, bias, kind: Kind::Go(pclntab), cache: HashMap::new() }
    }

    /// The DWARF line table of the executable, when it has one.
    pub fn lines(&self) -> Option<&crate::symbolize::LineTable> {
        match &self.kind {
            Kind::Tokio(s) => s.lines(),
            Kind::Go(_) => None,
        }
    }

    /// Go: the function at a runtime pc (e.g. a goroutine's entry), when known.
    pub fn go_function(&self, pc: u64) -> Option<String> {
        match &self.kind {
            Kind::Go(p) => p.func_for_pc(pc.wrapping_sub(self.bias)).map(|f| f.name),
            Kind::Tokio(_) => None,
        }
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

    fn resolve(&mut self, key: u64) -> SiteName {
        if let Kind::Go(p) = &self.kind {
            // gopc is a return address: look up the call instruction before it
            let pc = key.wrapping_sub(self.bias).wrapping_sub(1);
            let (file, line) = p.file_line(pc).map_or((None, None), |(f, l)| (Some(f), Some(l)));
            return SiteName {
                function: p.func_for_pc(pc).map_or_else(|| format!("<unknown go statement at {key:#x}>"), |f| f.name),
                poll_symbol: String::new(),
                file,
                line,
            };
        }
        self.resolve_vtable(key)
    }

    fn resolve_vtable(&mut self, vtable: u64) -> SiteName {
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
        let Kind::Tokio(symbolizer) = &mut self.kind else {
            return unknown("not a tokio site");
        };
        let named = symbolizer.name_future(poll_vaddr);
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
