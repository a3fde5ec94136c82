//! The report as of the last sample: every site with its name, details and verdict.
use std::collections::BTreeMap;

use super::Session;
use crate::runtimes::SourceKind;
use crate::model::{
    BlockedSiteReport, BytesPerTask, Collection, EndReason, MemoryReport, Report, SiteReport, TargetInfo, VerdictKind,
    WaitKind, SCHEMA_NAME, SCHEMA_VERSION,
};

impl Session {
    /// The target's resident memory over the run and the limit that applies now.
    pub(super) fn memory(&self, times: &[f64]) -> MemoryReport {
        // both in time order: one merge walk
        let mut readings = self.rss.iter().peekable();
        let series = times
            .iter()
            .map(|&t| {
                while readings.next_if(|(x, _)| *x < t).is_some() {}
                readings.next_if(|(x, _)| *x == t).map(|&(_, b)| b)
            })
            .collect();
        let limit = crate::target::memory_limit::memory_limit(self.opts.pid);
        MemoryReport {
            rss_bytes: self.rss.last().map(|&(_, b)| b),
            rss_bytes_series: series,
            limit_bytes: limit.as_ref().map(|l| l.bytes),
            limit_source: limit.map(|l| l.source),
        }
    }

    /// Every task site as of the last sample, judged, worst first; what each holds, and for a
    /// leak how long until the memory limit at its rate.
    pub fn sites(&mut self, memory: &MemoryReport) -> Vec<SiteReport> {
        let ignore = self.opts.ignore.clone();
        let mut sites: Vec<SiteReport> = Vec::new();
        for w in self.of_kind(SourceKind::Tasks) {
            let probes = w.source.info().method.contains("uprobes");
            let h = &w.judged.history;
            for (key, s) in &h.sites {
                let t = &s.totals;
                let name = w.source.name(*key);
                let detail = w.source.detail(*key, s.live());
                let facts = h.facts(s);
                let v = w.judged.verdict(key);
                let reason = v.reason.clone() + &backlog_note(s.series.first().copied(), s.live(), detail.oldest_task.as_ref());
                let cost = ByteCost::of(detail.bytes.as_ref(), s.live(), v.growth_per_s, v.kind, memory);
                sites.push(SiteReport {
                    bytes_per_task: detail.bytes,
                    bytes_estimate: cost.bytes,
                    bytes_growth_per_hour_estimate: cost.growth_per_hour,
                    time_to_limit_s_estimate: cost.time_to_limit_s,
                    ignored_by: ignore.matching(&name.function, &detail.spawn_frames),
                    function: name.function,
                    file: name.file,
                    line: name.line,
                    poll_symbol: detail.symbol,
                    states: detail.states,
                    created_by: detail.created_by,
                    spawn_stacks: detail.spawn_stacks,
                    stuck_at: detail.stuck_at,
                    stuck_sampled: detail.stuck_sampled,
                    stuck_undecoded: detail.stuck_undecoded,
                    stuck_decoded_by: detail.stuck_decoded_by.map(str::to_owned),
                    stacks: detail.wait_stacks,
                    oldest_task: detail.oldest_task,
                    key: format!("{key:#x}"),
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
                });
            }
        }
        sites.sort_by_key(|s| std::cmp::Reverse(s.badness()));
        sites
    }

    /// Wait sites of blocked threads, judged, worst first.
    pub fn blocked_sites(&mut self) -> Vec<BlockedSiteReport> {
        let ignore = self.opts.ignore.clone();
        let mut out: Vec<BlockedSiteReport> = Vec::new();
        for w in self.of_kind(SourceKind::Threads) {
            let keys: Vec<u64> = w.judged.history.sites.keys().copied().collect();
            for key in keys {
                let Some(wait) = w.source.detail(key, 0).wait else { continue };
                let name = w.source.name(key);
                let v = w.judged.verdict(&key);
                let idle = wait.kind == WaitKind::RuntimeIdle;
                let frames: Vec<String> = wait.stack.iter().map(|f| f.function.clone()).collect();
                let growth_per_s = v.growth_per_s;
                let (verdict, confidence, reason) = wait_verdict(idle, v);
                out.push(BlockedSiteReport {
                    ignored_by: ignore.matching(&name.function, &frames),
                    function: name.function,
                    file: name.file,
                    line: name.line,
                    kind: wait.kind,
                    syscall: wait.syscall.to_string(),
                    syscall_name: wait.syscall_name,
                    bytes_per_thread: wait.bytes,
                    threads: wait.threads,
                    series: w.judged.history.sites.get(&key).map(|s| s.series.clone()).unwrap_or_default(),
                    longest_wait_s: wait.longest_wait_ns as f64 / 1e9,
                    preexisting: wait.preexisting,
                    ended_waits: wait.ended_waits,
                    growth_per_s,
                    stack: wait.stack,
                    verdict,
                    confidence,
                    reason,
                });
            }
        }
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
        let sides = self.kernel_sides();
        for s in sides.iter().map(|(_, k)| &k.counters) {
            let acc = sum.get_or_insert_with(|| vec![0; s.len()]);
            acc.resize(acc.len().max(s.len()), 0);
            for (a, b) in acc.iter_mut().zip(s) {
                *a += b;
            }
        }
        let sum = sum?;
        // only the counters of what ran: task probes' and futex tracepoints' apart
        let tasks_ran = sides.iter().any(|(k, _)| *k == SourceKind::Tasks);
        let threads_ran = sides.iter().any(|(k, _)| *k == SourceKind::Threads);
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
        self.kernel_sides().into_iter().flat_map(|(_, k)| k.programs).collect()
    }

    /// What the kernel side of each source that ran probes did, with the source's kind.
    fn kernel_sides(&self) -> Vec<(SourceKind, crate::bpf::KernelSide)> {
        self.sources.iter().filter_map(|w| Some((w.source.kind(), w.source.kernel_stats()?))).collect()
    }

    /// The report as of the last sample, without detaching (the daemon serves it while running).
    pub fn report(&mut self, ended: EndReason) -> Report {
        let mut warnings: Vec<String> = self.sources.iter().flat_map(|w| w.source.warnings()).collect();
        warnings.extend(self.warnings.iter().cloned());
        for w in &self.sources {
            let (sites, live) = w.judged.history.untracked;
            let what = if w.source.kind() == SourceKind::Tasks { "task" } else { "wait" };
            if sites > 0 {
                warnings.push(format!(
                    "{sites} {what} sites beyond leakprof's cap of {} per source are not tracked ({live} live at the last sample)",
                    crate::history::MAX_SITES
                ));
            }
        }
        if self.stretched.0 > 0 {
            warnings.push(format!(
                "a sample took up to {:.0} ms, more than {:.0}% of the {:.1} s interval: {} interval(s) were stretched (the \
                 longest to {:.1} s) so leakprof stays a small cost beside the target",
                self.sample_ms.max,
                super::MAX_BUSY * 100.0,
                self.opts.interval.as_secs_f64(),
                self.stretched.0,
                self.stretched.1.as_secs_f64()
            ));
        }
        let kernel_counters = self.kernel_counters();
        for &i in &profiler_common::stat::FAILURES {
            let name = profiler_common::stat::NAMES[i as usize];
            if let Some(&n) = kernel_counters.as_ref().and_then(|k| k.get(name)).filter(|&&n| n > 0) {
                warnings.push(format!("kernel side: {name}={n} (some tasks could not be recorded; counts are lower bounds)"));
            }
        }
        let info = self.runtime().map(|r| r.info());
        let sample_times_s = self.times_s().to_vec();
        let memory = self.memory(&sample_times_s);
        let sites = self.sites(&memory);
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
                sample_ms_mean: self.sample_ms.mean(),
                sample_ms_mean_after_first: self.sample_ms.mean_after_first(),
                sample_ms_max: self.sample_ms.max,
                leakprof_cpu_s: crate::target::ProcStat::read(None).map_or(0.0, |s| (s.utime + s.stime) as f64 / clock_ticks()),
                leakprof_peak_rss_bytes: crate::target::memory_limit::own_peak_rss_bytes().unwrap_or(0),
                intervals_stretched: self.stretched.0,
                longest_interval_s: self.stretched.1.as_secs_f64().max(self.opts.interval.as_secs_f64()),
                census: self.runtime().and_then(|r| r.census_stats()),
                bpf_programs: self.bpf_programs(),
            },
            program_exit_code: None,
            memory: Some(memory),
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
        self.runtime().map_or("native", |r| r.info().name)
    }

    /// The run's time axis: every source is pushed at the same instants and thinned alike.
    pub(super) fn times_s(&self) -> &[f64] {
        self.sources.first().map_or(&[], |w| &w.judged.history.times_s)
    }

    /// How live counts were collected: the runtime's way; for threads alone "census" (/proc), or
    /// "tracepoints" with `--probes` (the /proc census and the futex tracepoints).
    pub(super) fn method(&self) -> &'static str {
        self.runtime().or_else(|| self.sources.first().map(|w| &*w.source)).map_or("census", |s| s.info().method)
    }
}

/// What a site's tasks cost in memory (estimates from the measured tasks' median).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ByteCost {
    bytes: Option<u64>,
    growth_per_hour: Option<f64>,
    time_to_limit_s: Option<f64>,
}

impl ByteCost {
    fn of(per_task: Option<&BytesPerTask>, live: i64, growth_per_s: f64, verdict: VerdictKind, memory: &MemoryReport) -> ByteCost {
        let Some(per_task) = per_task else { return ByteCost::default() };
        let median = per_task.median as f64;
        let growth = growth_per_s * median; // bytes per second
        let time_to_limit_s = match (verdict, memory.limit_bytes, memory.rss_bytes) {
            (VerdictKind::Leak, Some(limit), Some(rss)) if growth > 0.0 => Some(limit.saturating_sub(rss) as f64 / growth),
            _ => None,
        };
        ByteCost {
            bytes: Some((live.max(0) as u64).saturating_mul(per_task.median)),
            growth_per_hour: Some(growth * 3600.0),
            time_to_limit_s,
        }
    }
}

/// Tasks already live at the first sample from which a site counts as having a backlog.
const BACKLOG_MIN: i64 = 100;

/// When the census saw a backlog at attach, says so (a fact about the series; the reason before
/// it says which evidence decided the verdict).
fn backlog_note(first: Option<i64>, live: i64, oldest: Option<&crate::model::OldestTask>) -> String {
    let Some(first) = first.filter(|&f| f >= BACKLOG_MIN) else {
        return String::new();
    };
    if !oldest.is_some_and(|o| o.before_attach) {
        return String::new();
    }
    format!("; {first} tasks were already live at attach ({live} now)")
}

/// A wait site's verdict, confidence and reason: a runtime's idle threads are `ok` unless their
/// number keeps growing (then judged like any site, and the reason says so).
fn wait_verdict(idle: bool, v: crate::detect::Verdict) -> (VerdictKind, f64, String) {
    match (idle, v.kind) {
        (true, VerdictKind::Leak) => (
            v.kind,
            v.confidence,
            format!("runtime worker(s) parked idle, but more of them at every look: threads started and never reused or ended; {}", v.reason),
        ),
        (true, _) => (VerdictKind::Ok, 0.0, format!("runtime worker(s) parked idle; {}", v.reason)),
        _ => (v.kind, v.confidence, v.reason),
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of /proc's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: VerdictKind, confidence: f64) -> crate::detect::Verdict {
        crate::detect::Verdict { kind, confidence, growth_per_s: 2.0, reason: "why".into() }
    }

    #[test]
    fn idle_runtime_threads_are_ok_unless_they_keep_growing() {
        let (kind, confidence, reason) = wait_verdict(true, v(VerdictKind::Suspect, 0.5));
        assert_eq!((kind, confidence), (VerdictKind::Ok, 0.0));
        assert!(reason.starts_with("runtime worker(s) parked idle; why"), "{reason}");
        let (kind, confidence, reason) = wait_verdict(true, v(VerdictKind::Leak, 0.9));
        assert_eq!((kind, confidence), (VerdictKind::Leak, 0.9));
        assert!(reason.contains("more of them at every look"), "{reason}");
        assert_eq!(wait_verdict(false, v(VerdictKind::Suspect, 0.5)), (VerdictKind::Suspect, 0.5, "why".to_string()));
    }
}
