//! One folder per source of sites, each owning its detection, attach plan, sampling and naming:
//! [`tokio`] (tasks, by a census of the runtimes' task lists or by uprobes), [`go`] (goroutines,
//! by a census of `runtime.allgs` or by uprobes), and [`threads`] (threads blocked in syscalls,
//! in any native program, beside a task runtime or alone). Every one is a [`Source`]: what
//! it produces is runtime-neutral (a [`Sample`] of per-site observations keyed by a `u64`, names
//! and details per site, facts about the attachment), and the session, the judged histories and
//! the report handle a list of sources alike. Each source decodes what it reports during its
//! sample, so a report made after the target exited has all of it.
//!
//! Adding a runtime: a folder with a type implementing [`Source`] and a `detect` function, and
//! one line in [`DETECTORS`].
pub mod go;
pub mod threads;
pub mod tokio;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::{
    elf::ElfImage,
    model::{CensusStats, OldestTask, SiteName, SpawnStack, StackFrame, StuckAt, WaitStack},
    sample::Sample,
    options::RunOptions,
    target::Target,
};

/// Facts about a runtime's attachment, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeInfo {
    /// "tokio", "go".
    pub name: &'static str,
    pub version: Option<String>,
    /// How births are seen: "bind_inner", "first_poll", "census", "newproc1_ret".
    pub birth_point: &'static str,
    /// How live counts are collected: "census", "uprobes", or "census+uprobes" (tokio --probes).
    pub method: &'static str,
    pub attach_points: usize,
    pub attach_ms: f64,
    pub has_debug_info: bool,
}

/// What a runtime knows of one site beyond its counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteDetail {
    /// The symbol the site was named from (tokio: `raw::poll<T, S>`; Go: the goroutines' entry).
    pub symbol: String,
    /// Sampled spawn stacks (tokio), most live first.
    pub spawn_stacks: Vec<SpawnStack>,
    /// The first frame outside the runtime and std of the spawn path holding most live tasks.
    pub created_by: Option<String>,
    /// Functions of the spawn paths (for `--ignore-created-by`).
    pub spawn_frames: Vec<String>,
    /// Live tasks by state (Go: wait reason or run state), when read.
    pub states: BTreeMap<String, u64>,
    /// Where sampled waiting tasks are stuck (Go: the first frame outside the runtime's blocking
    /// machinery), most first, out of `stuck_sampled` whose stacks were read.
    pub stuck_at: Vec<StuckAt>,
    pub stuck_sampled: u64,
    /// Of those, the ones whose wait could not be decoded, and how the others were read.
    pub stuck_undecoded: u64,
    pub stuck_decoded_by: Option<&'static str>,
    /// Whole stacks of sampled waiting tasks, most common first.
    pub wait_stacks: Vec<WaitStack>,
    /// The oldest live task by spawn order (tokio census).
    pub oldest_task: Option<OldestTask>,
    /// The spread of its live tasks' ages in spawn order (censuses).
    pub ages: Option<crate::model::AgeSpread>,
    /// A wait site of blocked threads: what is known of its waits (None for task sites).
    pub wait: Option<WaitDetail>,
    /// What each measured task of the site holds (tokio: its cell; Go: its stack).
    pub bytes: Option<crate::model::BytesPerTask>,
}

/// What a wait site of blocked threads has beyond its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitDetail {
    pub kind: crate::model::WaitKind,
    /// The syscall's family (`futex`, `read`, ...) and the call first seen there.
    pub syscall: &'static str,
    pub syscall_name: String,
    /// What the waiting threads' stacks hold (resident bytes of each one's stack mapping).
    pub bytes: Option<crate::model::BytesPerTask>,
    pub threads: i64,
    pub longest_wait_ns: u64,
    pub preexisting: bool,
    pub ended_waits: u64,
    /// The stack of the first thread seen waiting there, innermost first.
    pub stack: Vec<crate::model::StackFrame>,
}

/// What a source's sites are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Tasks or goroutines of a runtime, by spawn site.
    Tasks,
    /// Threads blocked in waits, by wait site.
    Threads,
}

/// Where the tasks or goroutines of one site wait, from those sampled at the last sample.
#[derive(Debug, Clone, Default)]
pub struct Stuck {
    /// Goroutines or tasks whose stack or future was read.
    pub sampled: u64,
    /// Where they wait, most first.
    pub at: Vec<StuckAt>,
    /// Their distinct whole stacks, most first (at most three).
    pub stacks: Vec<WaitStack>,
    /// Sampled tasks whose wait could not be decoded (counted in `sampled`, in no `at`).
    pub undecoded: u64,
    /// How the waits were read: "dwarf" or "code" (tokio), "stack" (Go).
    pub decoder: Option<&'static str>,
}

/// Where the sampled waiting tasks of one site wait, counted as they are read (tokio's await
/// chains and Go's stacks alike): the place of each and its whole stack.
#[derive(Debug, Default)]
pub struct StuckTally {
    sampled: u64,
    undecoded: u64,
    at: std::collections::HashMap<(StackFrame, Option<String>, Option<u64>), u64>,
    stacks: std::collections::HashMap<Vec<StackFrame>, u64>,
}

impl StuckTally {
    /// One sampled task: where it waits (a frame and what it awaits there), when known, and its
    /// whole stack, innermost first.
    pub fn add(&mut self, at: Option<(StackFrame, Option<String>)>, stack: Vec<StackFrame>) {
        self.add_await(at.map(|(f, w)| (f, w, None)), stack);
    }

    /// As [`StuckTally::add`], with the `.await`'s ordinal in its function when known.
    pub fn add_await(&mut self, at: Option<(StackFrame, Option<String>, Option<u64>)>, stack: Vec<StackFrame>) {
        self.sampled += 1;
        if let Some(a) = at {
            *self.at.entry(a).or_default() += 1;
        }
        *self.stacks.entry(stack).or_default() += 1;
    }

    /// One sampled task whose wait could not be decoded.
    pub fn add_undecoded(&mut self) {
        self.sampled += 1;
        self.undecoded += 1;
    }

    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// The places most first, and the `max_stacks` most common whole stacks.
    pub fn into_stuck(self, max_stacks: usize) -> Stuck {
        let mut at: Vec<StuckAt> = self
            .at
            .into_iter()
            .map(|((StackFrame { function, file, line }, awaiting, await_ordinal), tasks)| StuckAt { function, file, line, awaiting, await_ordinal, tasks })
            .collect();
        at.sort_by(|a, b| (b.tasks, &a.line, &a.file, &a.function).cmp(&(a.tasks, &b.line, &b.file, &b.function)));
        let mut stacks: Vec<WaitStack> = self.stacks.into_iter().map(|(frames, tasks)| WaitStack { tasks, frames }).collect();
        stacks.sort_by(|a, b| b.tasks.cmp(&a.tasks).then_with(|| a.frames.len().cmp(&b.frames.len())));
        stacks.truncate(max_stacks);
        Stuck { sampled: self.sampled, at, stacks, undecoded: self.undecoded, decoder: None }
    }
}

/// A source of sites attached to one process: a task runtime, or the process's blocked threads.
pub trait Source {
    /// Tasks (a runtime) or threads.
    fn kind(&self) -> SourceKind {
        SourceKind::Tasks
    }
    fn info(&self) -> RuntimeInfo;
    /// The key of a site as written by `--record` (tasks: its hex key; threads: the wait site).
    fn record_key(&self, key: u64) -> String {
        format!("{key:#x}")
    }
    /// Reads the current live counts per site (keys: a task vtable, a `go` statement's pc, ...).
    fn sample(&mut self) -> Result<Sample<u64>>;
    /// Names a site (cached by the runtime).
    fn name(&mut self, key: u64) -> SiteName;
    /// What else is known of a site with `live` live tasks.
    fn detail(&mut self, key: u64, live: i64) -> SiteDetail;
    /// Kernel-side outcome counters, when the source runs probes (None: nothing ran in the kernel).
    fn kernel_stats(&self) -> Option<crate::bpf::KernelSide>;
    /// Detaches every probe (idempotent); the runtime can still name and describe sites.
    fn detach(&mut self);
    /// Things the user should know about this attachment.
    fn warnings(&self) -> Vec<String>;
    /// How the last census walk went, for a runtime that walks the runtime's own lists.
    fn census_stats(&self) -> Option<CensusStats> {
        None
    }
}

/// Recognises the runtime of a program and attaches to it: None when it is not this runtime.
pub type Detector = fn(&RunOptions, &Target, &ElfImage, u64) -> Option<Result<Box<dyn Source>>>;

/// Every runtime, tried in order; the first that recognises the program wins.
pub const DETECTORS: &[Detector] = &[go::detect, tokio::detect];

/// The runtime of the program, attached; None when no runtime recognises it.
pub fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Option<Result<Box<dyn Source>>> {
    DETECTORS.iter().find_map(|d| d(opts, target, image, bias))
}
