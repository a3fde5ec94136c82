//! The report as of the last sample: every site with its name, details and verdict.
use std::collections::BTreeMap;

use super::Session;
use crate::model::{
    BlockedSiteReport, Collection, EndReason, Report, SiteReport, TargetInfo, VerdictKind, WaitKind, SCHEMA_NAME,
    SCHEMA_VERSION,
};

impl Session {
    /// Every task site as of the last sample, judged, worst first.
    pub fn sites(&mut self) -> Vec<SiteReport> {
        let Some(rt) = self.runtime.as_mut() else {
            return Vec::new();
        };
        let h = &self.tasks.history;
        let probes = rt.info().method.contains("uprobes");
        let mut sites: Vec<SiteReport> = h
            .sites
            .iter()
            .map(|(key, s)| {
                let t = &s.totals;
                let name = rt.name(*key);
                let detail = rt.detail(*key, s.live());
                let facts = h.facts(s);
                let v = self.tasks.verdict(key);
                let reason = v.reason.clone() + &backlog_note(s.series.first().copied(), s.live(), v.kind, detail.oldest_task.as_ref());
                SiteReport {
                    ignored_by: self.opts.ignore.matching(&name.function, &detail.spawn_frames),
                    function: name.function,
                    file: name.file,
                    line: name.line,
                    poll_symbol: detail.symbol,
                    states: detail.states,
                    created_by: detail.created_by,
                    spawn_stacks: detail.spawn_stacks,
                    stuck_at: detail.stuck_at,
                    stuck_sampled: detail.stuck_sampled,
                    stacks: detail.wait_stacks,
                    oldest_task: detail.oldest_task,
                    vtable: format!("{key:#x}"),
                    live: s.live(),
                    spawned: t.spawned,
                    finished: t.finished,
                    finished_preexisting: t.finished_preexisting,
                    oldest_age_s: facts.oldest_live_age_s,
                    oldest_age_is_lower_bound: h.oldest_alive_at_attach(s),
                    births_measured: probes,
                    lifetimes_estimated: !probes,
                    max_finished_lifetime_s: facts.max_finished_age_s,
                    finished_lifetime_p99_s: facts.finished_age_p99_s,
                    finished_timed: t.timed(),
                    series: s.series.clone(),
                    verdict: v.kind,
                    confidence: v.confidence,
                    growth_per_s: v.growth_per_s,
                    reason,
                    idle_fraction: facts.idle_fraction,
                }
            })
            .collect();
        sites.sort_by_key(|s| std::cmp::Reverse(s.badness()));
        sites
    }

    /// Wait sites of blocked threads, judged, worst first.
    pub fn blocked_sites(&self) -> Vec<BlockedSiteReport> {
        let Some(th) = &self.threads else {
            return Vec::new();
        };
        let h = &self.waits.history;
        let mut out: Vec<BlockedSiteReport> = th
            .tracker
            .sites
            .iter()
            .map(|(key, w)| {
                let v = self.waits.verdict(key);
                let idle = w.kind == WaitKind::RuntimeIdle;
                BlockedSiteReport {
                    function: w.site.function.clone(),
                    file: w.site.file.clone(),
                    line: w.site.line,
                    kind: w.kind,
                    threads: w.threads,
                    series: h.sites.get(key).map(|s| s.series.clone()).unwrap_or_default(),
                    longest_wait_s: w.longest_wait_ns as f64 / 1e9,
                    preexisting: w.preexisting,
                    ended_waits: w.ended_waits,
                    verdict: if idle { VerdictKind::Ok } else { v.kind },
                    confidence: if idle { 0.0 } else { v.confidence },
                    growth_per_s: v.growth_per_s,
                    reason: if idle { format!("runtime worker(s) parked idle; {}", v.reason) } else { v.reason },
                    stack: w.stack.clone(),
                    ignored_by: {
                        let frames: Vec<String> = w.stack.iter().map(|f| f.function.clone()).collect();
                        self.opts.ignore.matching(&w.site.function, &frames)
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (b.kind == WaitKind::Wait, b.verdict, (b.confidence * 1e6) as i64, b.threads)
                .cmp(&(a.kind == WaitKind::Wait, a.verdict, (a.confidence * 1e6) as i64, a.threads))
        });
        out
    }

    /// Kernel-side outcome counters of every probe that ran, by name (None: nothing ran in the
    /// kernel, e.g. a Go census without --threads).
    fn kernel_counters(&self) -> Option<BTreeMap<String, u64>> {
        let mut sum: Option<Vec<u64>> = None;
        let (tasks, threads) = self.kernel_sides();
        for s in tasks.iter().chain(&threads).map(|k| &k.counters) {
            let acc = sum.get_or_insert_with(|| vec![0; s.len()]);
            acc.resize(acc.len().max(s.len()), 0);
            for (a, b) in acc.iter_mut().zip(s) {
                *a += b;
            }
        }
        let sum = sum?;
        // only the counters of what ran: task probes' and futex tracepoints' apart
        let (tasks_ran, threads_ran) = (tasks.is_some(), threads.is_some());
        Some(
            profiler_common::stat::NAMES
                .iter()
                .zip(sum.iter().chain(std::iter::repeat(&0)))
                .filter(|(k, _)| if k.starts_with("futex_") { threads_ran } else { tasks_ran })
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        )
    }

    /// Each BPF program's runs and run time, task probes' and futex tracepoints' together.
    fn bpf_programs(&self) -> Vec<crate::model::BpfProgramCost> {
        let (tasks, threads) = self.kernel_sides();
        tasks.into_iter().chain(threads).flat_map(|k| k.programs).collect()
    }

    /// What the kernel side of the task probes and of the futex tracing did (None: it did not run).
    fn kernel_sides(&self) -> (Option<crate::bpf::KernelSide>, Option<crate::bpf::KernelSide>) {
        (self.runtime.as_ref().and_then(|r| r.kernel_stats()), self.threads.as_ref().and_then(|t| t.kernel_stats()))
    }

    /// The report as of the last sample, without detaching (the daemon serves it while running).
    pub fn report(&mut self, ended: EndReason) -> Report {
        let mut warnings: Vec<String> = self.runtime.as_ref().map(|r| r.warnings()).unwrap_or_default();
        warnings.extend(self.warnings.iter().cloned());
        for (what, (sites, live)) in [("task", self.tasks.history.untracked), ("wait", self.waits.history.untracked)] {
            if sites > 0 {
                warnings.push(format!(
                    "{sites} {what} sites beyond leakprof's cap of {} per source are not tracked ({live} live at the last sample)",
                    crate::history::MAX_SITES
                ));
            }
        }
        let kernel_counters = self.kernel_counters();
        for &i in &profiler_common::stat::FAILURES {
            let name = profiler_common::stat::NAMES[i as usize];
            if let Some(&n) = kernel_counters.as_ref().and_then(|k| k.get(name)).filter(|&&n| n > 0) {
                warnings.push(format!("kernel side: {name}={n} (some tasks could not be recorded; counts are lower bounds)"));
            }
        }
        let info = self.runtime.as_ref().map(|r| r.info());
        let sample_times_s = self.times_s().to_vec();
        let sites = self.sites();
        Report {
            schema: SCHEMA_NAME,
            schema_version: SCHEMA_VERSION,
            leakprof_version: env!("CARGO_PKG_VERSION"),
            target: TargetInfo {
                pid: self.opts.pid,
                exe: self.target.exe.display().to_string(),
                runtime: self.runtime_name(),
                runtime_version: info.as_ref().and_then(|i| i.version.clone()),
                birth_point: info.as_ref().map_or("none", |i| i.birth_point),
                attach_points: info.as_ref().map_or(0, |i| i.attach_points),
                attach_ms: info.as_ref().map_or(0.0, |i| i.attach_ms),
                has_debug_info: info.as_ref().is_some_and(|i| i.has_debug_info),
                symbols_file: self.symbols_file.clone(),
            },
            collection: Collection {
                method: self.method(),
                interval_s: self.opts.interval.as_secs_f64(),
                duration_s: self.started.elapsed().as_secs_f64(),
                samples: self.samples,
                ended,
                sample_ms_mean: self.sample_ms.0 / self.samples.max(1) as f64,
                sample_ms_max: self.sample_ms.1,
                census: self.runtime.as_ref().and_then(|r| r.census_stats()),
                bpf_programs: self.bpf_programs(),
            },
            program_exit_code: None,
            sample_times_s,
            sites,
            blocked: self.blocked_sites(),
            other_sites: None,
            kernel_counters,
            warnings,
        }
    }

    /// "tokio", "go", or "native" for a program watched for blocked threads only.
    pub(super) fn runtime_name(&self) -> &'static str {
        self.runtime.as_ref().map_or("native", |r| r.info().name)
    }

    /// The run's time axis: the task sites' samples, or the wait sites' for threads alone (both
    /// are pushed at the same instants and thinned alike).
    pub(super) fn times_s(&self) -> &[f64] {
        if self.runtime.is_some() { &self.tasks.history.times_s } else { &self.waits.history.times_s }
    }

    /// How live counts were collected: the runtime's way; for threads alone "census" (/proc), or
    /// "tracepoints" with `--probes` (the /proc census and the futex tracepoints).
    pub(super) fn method(&self) -> &'static str {
        match (&self.runtime, &self.threads) {
            (Some(r), _) => r.info().method,
            (None, Some(t)) if t.traced() => "tracepoints",
            _ => "census",
        }
    }
}

/// Tasks already live at the first sample from which a site counts as having a backlog.
const BACKLOG_MIN: i64 = 100;

/// When the census saw a backlog at attach, which evidence decided the verdict: growth since
/// attach, never the size of the backlog.
fn backlog_note(first: Option<i64>, live: i64, kind: VerdictKind, oldest: Option<&crate::model::OldestTask>) -> String {
    let Some(first) = first.filter(|&f| f >= BACKLOG_MIN) else {
        return String::new();
    };
    if !oldest.is_some_and(|o| o.before_attach) {
        return String::new();
    }
    // a fact about the series, not a claim about which evidence decided (the reason before it says that)
    let _ = kind;
    format!("; {first} tasks were already live at attach ({live} now)")
}
