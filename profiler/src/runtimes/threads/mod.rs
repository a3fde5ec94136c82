//! Threads blocked in futex waits, in any native program (Rust std threads, `spawn_blocking`
//! pools, C/C++), beside a task runtime or alone: the `sys_enter/exit_futex` tracepoints time
//! each wait ([`crate::bpf`]), a /proc census finds the waiting threads, older waits included
//! ([`census`]), and their stacks group them by wait site ([`tracker`]). A runtime's own idle
//! parking is told apart.
pub mod census;
pub mod tracker;

use anyhow::Result;

pub use tracker::{WaitKind, WaitSite};
use crate::{
    bpf::{read_snapshot, AttachedProbes, KernelSide, LoadConfig},
    elf::ElfImage,
    sample::{monotonic_ns, Sample},
    options::RunOptions,
    target::Target,
};

/// The futex tracepoints and the wait-site tracker of one process.
pub struct Threads {
    probes: Option<AttachedProbes>,
    pub tracker: tracker::BlockedTracker,
    kernel: KernelSide,
}

impl Threads {
    pub fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Result<Threads> {
        let (lo, hi) = target.exe_range();
        let cfg = LoadConfig {
            vtable_lo: lo,
            vtable_hi: hi,
            header_vtable_offset: 0,
            max_tasks: 1024,
            max_sites: 1024,
            stack_period: 0,
            watch_futex: true,
            target_tgid: opts.pid,
            slots: 0,
        lifetime_mask: 0,
            id_offset: 0,
            empty_programs: false,
        };
        let probes = AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &[])?;
        Ok(Threads { probes: Some(probes), tracker: tracker::BlockedTracker::new(opts.pid, image.clone(), bias)?, kernel: KernelSide::default() })
    }

    /// One census of the waiting threads, by wait site.
    pub fn sample(&mut self) -> Result<Sample<String>> {
        let p = self.probes.as_ref().ok_or_else(|| anyhow::anyhow!("already detached"))?;
        let snap = read_snapshot(p, false)?;
        self.kernel = snap.kernel_side();
        let started = snap.futex_waits.iter().map(|(tid, w)| (*tid, w.start_ns)).collect();
        Ok(self.tracker.sample(monotonic_ns(), &started))
    }

    /// Kernel-side outcome counters of the futex tracepoints.
    pub fn kernel_stats(&self) -> KernelSide {
        self.kernel.clone()
    }

    pub fn detach(&mut self) {
        self.probes = None;
    }
}
