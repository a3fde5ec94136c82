//! Spawn stacks: samples of the user stack at task births, unwound (.eh_frame) and counted per
//! site, and the "created by" frame: the first caller outside the runtime and the standard library.
use std::collections::HashMap;

use profiler_common::StackSample;
use serde::Serialize;

use crate::{
    elf::ElfImage,
    symbolize::LineTable,
    unwind::{symbolize_frames, Regs, Unwinder},
};

/// Deepest stack kept.
const MAX_FRAMES: usize = 64;

/// One distinct spawn stack of a site, with how many samples had it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpawnStack {
    pub samples: u64,
    /// Innermost first (the birth probe's function first).
    pub frames: Vec<StackFrame>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StackFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Unwinds and accumulates spawn stack samples per site (keyed by vtable).
pub struct SpawnStacks {
    image: ElfImage,
    bias: u64,
    unwinder: Unwinder,
    /// vtable -> (return addresses -> samples)
    by_site: HashMap<u64, HashMap<Vec<u64>, u64>>,
}

impl SpawnStacks {
    pub fn new(image: ElfImage, bias: u64) -> Self {
        let unwinder = Unwinder::new(&image, bias);
        SpawnStacks { image, bias, unwinder, by_site: HashMap::new() }
    }

    pub fn add(&mut self, vtable: u64, s: &StackSample) {
        let len = (s.len as usize).min(s.data.len());
        let pcs = self.unwinder.unwind(Regs { ip: s.ip, sp: s.sp, bp: s.bp }, &s.data[..len], MAX_FRAMES);
        *self.by_site.entry(vtable).or_default().entry(pcs).or_default() += 1;
    }

    /// The site's distinct stacks, most sampled first, symbolized.
    pub fn stacks(&self, vtable: u64, lines: Option<&LineTable>) -> Vec<SpawnStack> {
        let Some(m) = self.by_site.get(&vtable) else {
            return Vec::new();
        };
        let mut v: Vec<SpawnStack> = m
            .iter()
            .map(|(pcs, &n)| SpawnStack {
                samples: n,
                frames: symbolize_frames(&self.image, lines, self.bias, pcs)
                    .into_iter()
                    .map(|f| StackFrame {
                        function: f.function,
                        file: f.file.map(|p| crate::naming::normalize_path(&p)),
                        line: f.line,
                    })
                    .collect(),
            })
            .collect();
        v.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.frames.len().cmp(&b.frames.len())));
        v
    }
}

/// Frames of the runtime and the standard library are never a "created by" frame: by namespace,
/// or (DWARF names inlined frames without their path) by source file.
fn is_runtime_frame(f: &StackFrame) -> bool {
    let name = f.function.trim_start_matches('<');
    let by_name = ["tokio::", "std::", "core::", "alloc::", "futures_util::", "futures_core::"]
        .iter()
        .any(|p| name.starts_with(p))
        || name.starts_with("0x");
    let by_file = f.file.as_deref().is_some_and(|p| {
        p.starts_with("/rustc/")
            || p.contains("/rustlib/src/rust/library/")
            || p.contains("/tokio-1.")
            || p.contains("/futures-util-")
    });
    by_name || by_file
}

/// The first frame of a spawn stack outside the runtime and std: who spawned the task.
pub fn created_by(stack: &SpawnStack) -> Option<&StackFrame> {
    stack.frames.iter().skip(1).find(|f| !is_runtime_frame(f))
}

/// A frame as `function (file:line)`.
pub fn frame_label(f: &StackFrame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
        _ => f.function.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(name: &str) -> StackFrame {
        StackFrame { function: name.into(), file: None, line: None }
    }

    #[test]
    fn created_by_skips_the_runtime_and_std() {
        let s = SpawnStack {
            samples: 1,
            frames: vec![
                fr("tokio::runtime::task::list::OwnedTasks<S>::bind_inner"),
                fr("tokio::runtime::scheduler::multi_thread::handle::Handle::bind_new_task"),
                fr("tokio::task::spawn::spawn"),
                fr("<core::pin::Pin<P> as core::future::future::Future>::poll"),
                fr("app::server::accept_loop::{{closure}}"),
                fr("std::rt::lang_start"),
            ],
        };
        assert_eq!(created_by(&s).unwrap().function, "app::server::accept_loop::{{closure}}");
        let only_runtime = SpawnStack { samples: 1, frames: vec![fr("tokio::x"), fr("std::y"), fr("0x1234")] };
        assert!(created_by(&only_runtime).is_none());
        // DWARF inline frames carry bare names: the file tells they are tokio's
        let inlined = StackFrame {
            function: "bind<Arc<Handle>, app::f::{async_fn_env#0}>".into(),
            file: Some("/root/.cargo/registry/src/x/tokio-1.54.1/src/runtime/task/list.rs".into()),
            line: Some(100),
        };
        let s = SpawnStack { samples: 1, frames: vec![fr("tokio::a"), inlined, fr("app::caller")] };
        assert_eq!(created_by(&s).unwrap().function, "app::caller");
    }
}
