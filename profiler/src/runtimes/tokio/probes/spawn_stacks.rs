//! Spawn stacks: samples of the user stack at task births, unwound (.eh_frame) and counted per
//! site, and the "created by" frame: the first caller outside the runtime and the standard library.
use std::collections::HashMap;

use profiler_common::SpawnSample;

use crate::{
    elf::{lines::LineTable, ElfImage},
    model::{SpawnStack, StackFrame},
    unwind::{symbolize_frames, Regs, Unwinder},
};

/// Deepest stack kept.
const MAX_FRAMES: usize = 64;
/// Distinct spawn paths kept per site and in all (bounded memory whatever the run length); samples
/// of further paths are not kept.
const MAX_PATHS_PER_SITE: usize = 32;
const MAX_PATHS: usize = 4096;

#[derive(Debug, Clone, Copy, Default)]
struct PathStats {
    samples: u64,
    live_samples: u64,
}

/// Unwinds sampled births and keeps, per site (vtable), their distinct spawn paths, and which
/// sampled tasks are still alive: the live share of each path tells which one leaks.
pub struct SpawnStacks {
    image: ElfImage,
    bias: u64,
    unwinder: Unwinder,
    paths: Vec<Vec<u64>>,
    path_ids: HashMap<Vec<u64>, usize>,
    by_site: HashMap<u64, HashMap<usize, PathStats>>,
    /// Sampled tasks not yet seen finished: (header, birth time) -> (vtable, path).
    sampled: HashMap<(u64, u64), (u64, usize)>,
    /// Each path symbolized once.
    symbolized: HashMap<usize, Vec<StackFrame>>,
}

impl SpawnStacks {
    pub fn new(image: ElfImage, bias: u64) -> Self {
        let unwinder = Unwinder::new(&image, bias);
        SpawnStacks {
            image,
            bias,
            unwinder,
            paths: Vec::new(),
            path_ids: HashMap::new(),
            by_site: HashMap::new(),
            sampled: HashMap::new(),
            symbolized: HashMap::new(),
        }
    }

    pub fn add(&mut self, s: &SpawnSample) {
        let st = &s.stack;
        let len = (st.len as usize).min(st.data.len());
        let pcs = self.unwinder.unwind(Regs { ip: st.ip, sp: st.sp, bp: st.bp }, &st.data[..len], MAX_FRAMES);
        let site = self.by_site.entry(s.vtable).or_default();
        let id = match self.path_ids.get(&pcs) {
            Some(&id) => id,
            None if self.paths.len() < MAX_PATHS && site.len() < MAX_PATHS_PER_SITE => {
                self.path_ids.insert(pcs.clone(), self.paths.len());
                self.paths.push(pcs);
                self.paths.len() - 1
            }
            None => return,
        };
        if !site.contains_key(&id) && site.len() >= MAX_PATHS_PER_SITE {
            return;
        }
        site.entry(id).or_default().samples += 1;
        self.sampled.insert((s.header, s.born_ns), (s.vtable, id));
    }

    /// Forgets sampled tasks that are no longer alive (by header and birth time, so a new task
    /// in a reused header is not mistaken for it) and recounts live samples per path.
    pub fn refresh_live(&mut self, is_live: impl Fn(u64, u64) -> bool) {
        self.sampled.retain(|&(h, born), _| is_live(h, born));
        for paths in self.by_site.values_mut() {
            for p in paths.values_mut() {
                p.live_samples = 0;
            }
        }
        for (vtable, path) in self.sampled.values() {
            if let Some(p) = self.by_site.get_mut(vtable).and_then(|m| m.get_mut(path)) {
                p.live_samples += 1;
            }
        }
    }

    /// The site's distinct stacks, the path holding most live tasks first, symbolized; `live`
    /// (the site's live count) is apportioned by live samples.
    pub fn stacks(&mut self, vtable: u64, live: i64, lines: Option<&LineTable>) -> Vec<SpawnStack> {
        let Some(m) = self.by_site.get(&vtable) else {
            return Vec::new();
        };
        let (image, bias, paths) = (&self.image, self.bias, &self.paths);
        for &id in m.keys() {
            self.symbolized.entry(id).or_insert_with(|| {
                symbolize_frames(image, lines, bias, &paths[id])
                    .into_iter()
                    .map(|f| StackFrame {
                        function: f.function,
                        file: f.file.map(|p| crate::elf::lines::normalize_path(&p)),
                        line: f.line,
                    })
                    .collect()
            });
        }
        let live_total: u64 = m.values().map(|p| p.live_samples).sum();
        let mut v: Vec<SpawnStack> = m
            .iter()
            .map(|(&id, p)| SpawnStack {
                samples: p.samples,
                live_samples: p.live_samples,
                live_estimate: if live_total == 0 {
                    0
                } else {
                    (live.max(0) as f64 * p.live_samples as f64 / live_total as f64).round() as i64
                },
                frames: self.symbolized[&id].clone(),
            })
            .collect();
        v.sort_by(|a, b| {
            (b.live_samples, b.samples).cmp(&(a.live_samples, a.samples)).then_with(|| a.frames.len().cmp(&b.frames.len()))
        });
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

/// A spawn path in one line: its first `n` frames outside the runtime, outermost last,
/// e.g. `app::spawn_job <- app::caller_leaky`.
pub fn path_label(stack: &SpawnStack, n: usize) -> String {
    let names: Vec<&str> = stack
        .frames
        .iter()
        .skip(1)
        .filter(|f| !is_runtime_frame(f))
        .take(n)
        .map(|f| f.function.as_str())
        .collect();
    if names.is_empty() {
        "(runtime only)".to_string()
    } else {
        names.join(" <- ")
    }
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
            live_samples: 0,
            live_estimate: 0,
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
        let only_runtime = SpawnStack {
            samples: 1,
            live_samples: 0,
            live_estimate: 0,
            frames: vec![fr("tokio::x"), fr("std::y"), fr("0x1234")],
        };
        assert!(created_by(&only_runtime).is_none());
        // DWARF inline frames carry bare names: the file tells they are tokio's
        let inlined = StackFrame {
            function: "bind<Arc<Handle>, app::f::{async_fn_env#0}>".into(),
            file: Some("/root/.cargo/registry/src/x/tokio-1.54.1/src/runtime/task/list.rs".into()),
            line: Some(100),
        };
        let s = SpawnStack {
            samples: 1,
            live_samples: 0,
            live_estimate: 0,
            frames: vec![fr("tokio::a"), inlined, fr("app::caller")],
        };
        assert_eq!(created_by(&s).unwrap().function, "app::caller");
    }
}
