//! Threads blocked in system calls (futex waits, reads, accepts, sleeps, ...), in any native
//! program (Rust std threads, `spawn_blocking` pools, C/C++), beside a task runtime or alone: a
//! /proc census finds the waiting threads and the call they wait in, older waits included
//! ([`census`]), and their stacks group them by syscall family and wait site ([`tracker`]); a
//! wait is timed from the census that first saw it. With `--probes` the `sys_enter/exit_futex`
//! tracepoints time each futex wait exactly ([`crate::bpf`]); they put every syscall of every
//! process on the kernel's traced path, so they are not on by default. A runtime's own idle
//! parking is told apart.
pub mod census;
pub mod tracker;

use std::collections::HashMap;

use anyhow::Result;

pub use tracker::{WaitKind, WaitSite};
use super::{RuntimeInfo, SiteDetail, Source, SourceKind, WaitDetail};
use crate::{
    bpf::{read_snapshot, AttachedProbes, KernelSide, LoadConfig},
    elf::ElfImage,
    model::SiteName,
    options::RunOptions,
    sample::{monotonic_ns, Sample, SiteObs},
    target::Target,
};

/// The wait-site tracker of one process, and the futex tracepoints with `--probes`.
pub struct Threads {
    probes: Option<AttachedProbes>,
    traced: bool,
    detached: bool,
    pub tracker: tracker::BlockedTracker,
    kernel: KernelSide,
    /// Wait sites by key: a site's key is its index here (sites are named by strings).
    keys: HashMap<String, u64>,
    names: Vec<String>,
    has_debug_info: bool,
}

impl Threads {
    pub fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Result<Threads> {
        let mut tracker = tracker::BlockedTracker::new(opts.pid, image.clone(), bias)?;
        tracker.measure_bytes = opts.measure_bytes;
        let probes = if opts.probes { Some(Self::trace(opts, target)?) } else { None };
        Ok(Threads {
            traced: probes.is_some(),
            probes,
            detached: false,
            tracker,
            kernel: KernelSide::default(),
            keys: HashMap::new(),
            names: Vec::new(),
            has_debug_info: image.has_debug_info(),
        })
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

    /// The key of a wait site, given on first sight.
    fn key(&mut self, site: &str) -> u64 {
        if let Some(&k) = self.keys.get(site) {
            return k;
        }
        let k = self.names.len() as u64;
        self.names.push(site.to_string());
        self.keys.insert(site.to_string(), k);
        k
    }

    fn site(&self, key: u64) -> Option<&WaitSite> {
        self.tracker.sites.get(self.names.get(key as usize)?)
    }
}

impl Source for Threads {
    fn kind(&self) -> SourceKind {
        SourceKind::Threads
    }

    /// Threads alone: collected by `census` (/proc), or `tracepoints` with `--probes`.
    fn info(&self) -> RuntimeInfo {
        RuntimeInfo {
            name: "native",
            version: None,
            birth_point: "none",
            method: if self.traced { "tracepoints" } else { "census" },
            attach_points: 0,
            attach_ms: 0.0,
            has_debug_info: self.has_debug_info,
        }
    }

    fn record_key(&self, key: u64) -> String {
        self.names.get(key as usize).cloned().unwrap_or_default()
    }

    /// One census of the waiting threads, by wait site.
    fn sample(&mut self) -> Result<Sample<u64>> {
        if self.detached {
            return Err(anyhow::anyhow!("already detached"));
        }
        let mut started = HashMap::new();
        if let Some(p) = self.probes.as_ref() {
            let snap = read_snapshot(p, false)?;
            self.kernel = snap.kernel_side();
            started = snap.futex_waits.iter().map(|(tid, w)| (*tid, w.start_ns)).collect();
        }
        let s = self.tracker.sample(monotonic_ns(), &started);
        let sites = s
            .sites
            .into_iter()
            .map(|o| SiteObs {
                key: self.key(&o.key),
                live: o.live,
                totals: o.totals,
                oldest_born_ns: o.oldest_born_ns,
                idle: o.idle,
            })
            .collect();
        Ok(Sample { now_ns: s.now_ns, sites })
    }

    fn name(&mut self, key: u64) -> SiteName {
        self.site(key).map_or_else(
            || SiteName { function: self.record_key(key), file: None, line: None },
            |w| SiteName { function: w.site.function.clone(), file: w.site.file.clone(), line: w.site.line },
        )
    }

    fn detail(&mut self, key: u64, _live: i64) -> SiteDetail {
        let wait = self.site(key).map(|w| WaitDetail {
            kind: w.kind,
            syscall: w.syscall,
            syscall_name: w.syscall_name.clone(),
            bytes: w.bytes.clone(),
            threads: w.threads,
            longest_wait_ns: w.longest_wait_ns,
            preexisting: w.preexisting,
            ended_waits: w.ended_waits,
            stack: w.stack.clone(),
        });
        SiteDetail { wait, ..SiteDetail::default() }
    }

    /// Kernel-side outcome counters of the futex tracepoints (None: not traced).
    fn kernel_stats(&self) -> Option<KernelSide> {
        self.traced.then(|| self.kernel.clone())
    }

    fn detach(&mut self) {
        self.probes = None;
        self.detached = true;
    }

    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
