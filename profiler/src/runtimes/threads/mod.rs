//! Threads blocked in futex waits, in any native program (Rust std threads, `spawn_blocking`
//! pools, C/C++), beside a task runtime or alone: a /proc census finds the waiting threads, older
//! waits included ([`census`]), and their stacks group them by wait site ([`tracker`]); a wait
//! is timed from the census that first saw it. With `--probes` the `sys_enter/exit_futex`
//! tracepoints time each wait exactly ([`crate::bpf`]); they put every syscall of every process
//! on the kernel's traced path, so they are not on by default. A runtime's own idle parking is
//! told apart.
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

/// The wait-site tracker of one process, and the futex tracepoints with `--probes`.
pub struct Threads {
    probes: Option<AttachedProbes>,
    traced: bool,
    detached: bool,
    pub tracker: tracker::BlockedTracker,
    kernel: KernelSide,
}

impl Threads {
    pub fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Result<Threads> {
        let tracker = tracker::BlockedTracker::new(opts.pid, image.clone(), bias)?;
        let probes = if opts.probes { Some(Self::trace(opts, target)?) } else { None };
        Ok(Threads { traced: probes.is_some(), probes, detached: false, tracker, kernel: KernelSide::default() })
    }

    /// The futex tracepoints, scoped to the target's thread group.
    fn trace(opts: &RunOptions, target: &Target) -> Result<AttachedProbes> {
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
        AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &[])
    }

    /// Whether the futex tracepoints time the waits (`--probes`).
    pub fn traced(&self) -> bool {
        self.traced
    }

    /// One census of the waiting threads, by wait site.
    pub fn sample(&mut self) -> Result<Sample<String>> {
        if self.detached {
            return Err(anyhow::anyhow!("already detached"));
        }
        let mut started = std::collections::HashMap::new();
        if let Some(p) = self.probes.as_ref() {
            let snap = read_snapshot(p, false)?;
            self.kernel = snap.kernel_side();
            started = snap.futex_waits.iter().map(|(tid, w)| (*tid, w.start_ns)).collect();
        }
        Ok(self.tracker.sample(monotonic_ns(), &started))
    }

    /// Kernel-side outcome counters of the futex tracepoints (None: not traced).
    pub fn kernel_stats(&self) -> Option<KernelSide> {
        self.traced.then(|| self.kernel.clone())
    }

    pub fn detach(&mut self) {
        self.probes = None;
        self.detached = true;
    }
}
