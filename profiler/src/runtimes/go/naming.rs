//! Names a Go site, a `go` statement (g.gopc, the return address of its call to newproc), as the
//! function and file:line of the statement, through the pclntab.
use std::collections::HashMap;

use super::pclntab::Pclntab;
use crate::model::SiteName;

pub struct Namer {
    bias: u64,
    pclntab: std::sync::Arc<Pclntab>,
    cache: HashMap<u64, SiteName>,
}

impl Namer {
    pub fn new(bias: u64, pclntab: std::sync::Arc<Pclntab>) -> Self {
        Namer { bias, pclntab, cache: HashMap::new() }
    }

    /// The `go` statement at runtime address `gopc`, or the row a census key stands for.
    pub fn name(&mut self, gopc: u64) -> &SiteName {
        use super::census::{MAIN_GOROUTINE, NO_GO_STATEMENT, OTHER_SITES, RUNTIME_SITES};
        let (bias, p) = (self.bias, &self.pclntab);
        self.cache.entry(gopc).or_insert_with(|| {
            let fixed = |function: &str| SiteName { function: function.into(), file: None, line: None };
            match gopc {
                MAIN_GOROUTINE => return fixed("main goroutine (runtime.main)"),
                RUNTIME_SITES => return fixed("runtime (the Go runtime's own goroutines)"),
                NO_GO_STATEMENT => return fixed("<goroutines whose go statement is outside the program's code>"),
                OTHER_SITES => return fixed("<other go statements, beyond leakprof's 4096 sites>"),
                _ => {}
            }
            // gopc is a return address: look up the call instruction before it
            let pc = gopc.wrapping_sub(bias).wrapping_sub(1);
            let (file, line) = p.file_line(pc).map_or((None, None), |(f, l)| (Some(f), Some(l)));
            SiteName {
                function: p.func_for_pc(pc).map_or_else(|| format!("<unknown go statement at {gopc:#x}>"), |f| f.name),
                file,
                line,
            }
        })
    }

    /// The function at a runtime pc (e.g. a goroutine's entry), when known.
    pub fn function(&self, pc: u64) -> Option<String> {
        self.pclntab.func_for_pc(pc.wrapping_sub(self.bias)).map(|f| f.name)
    }
}
