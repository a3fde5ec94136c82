//! Prometheus exposition of the daemon's reports (prometheus-client's text encoder).
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::model::{Report, VerdictKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    pid: String,
    exe: String,
    runtime: String,
    site: String,
    location: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    pid: String,
    exe: String,
    runtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    pid: String,
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    pid: String,
    counter: String,
}

/// The daemon's own health.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub attached_targets: usize,
    pub attach_failures: u64,
    pub detached_targets: u64,
    /// Targets whose reading panicked inside leakprof (hostile bytes or a bug): detached alone.
    pub target_panics: u64,
    /// Targets detached because leakprof's own memory passed --max-rss-mib.
    pub shed_targets: u64,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Renders all reports and the daemon's health in the Prometheus text format.
pub fn render(reports: &[Report], health: &Health) -> String {
    let mut reg = Registry::with_prefix("leakprof");
    let live = Family::<SiteLabels, Gauge>::default();
    let spawned = Family::<SiteLabels, Counter>::default();
    let finished = Family::<SiteLabels, Counter>::default();
    let growth = Family::<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let leak = Family::<SiteLabels, Gauge>::default();
    let confidence = Family::<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let blocked = Family::<SiteLabels, Gauge>::default();
    let up = Family::<TargetLabels, Gauge>::default();
    let kernel = Family::<CounterLabels, Gauge>::default();
    let other = Family::<TargetLabels, Gauge>::default();
    let other_live = Family::<TargetLabels, Gauge>::default();
    let bpf_runs = Family::<ProgramLabels, Counter>::default();
    let bpf_seconds = Family::<ProgramLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let site_bytes = Family::<SiteLabels, Gauge>::default();
    let site_bytes_growth = Family::<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let time_to_limit = Family::<SiteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let mem_limit = Family::<TargetLabels, Gauge>::default();
    let mem_rss = Family::<TargetLabels, Gauge>::default();
    for r in reports {
        let t = TargetLabels { pid: r.target.pid.to_string(), exe: r.target.exe.clone(), runtime: r.target.runtime.to_string() };
        up.get_or_create(&t).set(i64::from(r.collection.ended == crate::model::EndReason::Running));
        let folded = r.other_sites.unwrap_or(crate::model::OtherSites { sites: 0, live: 0 });
        other.get_or_create(&t).set(folded.sites as i64);
        other_live.get_or_create(&t).set(folded.live);
        if let Some(m) = &r.memory {
            if let Some(b) = m.limit_bytes {
                mem_limit.get_or_create(&t).set(b.min(i64::MAX as u64) as i64);
            }
            if let Some(b) = m.rss_bytes {
                mem_rss.get_or_create(&t).set(b.min(i64::MAX as u64) as i64);
            }
        }
        for s in &r.sites {
            let l = SiteLabels {
                pid: t.pid.clone(),
                exe: t.exe.clone(),
                runtime: t.runtime.clone(),
                site: s.function.clone(),
                location: match (&s.file, s.line) {
                    (Some(f), Some(n)) => format!("{f}:{n}"),
                    _ => String::new(),
                },
            };
            live.get_or_create(&l).set(s.live);
            if let Some(b) = s.bytes_estimate {
                site_bytes.get_or_create(&l).set(b.min(i64::MAX as u64) as i64);
            }
            if let Some(g) = s.bytes_growth_per_hour_estimate {
                site_bytes_growth.get_or_create(&l).set(g);
            }
            if let Some(t) = s.time_to_limit_s_estimate {
                time_to_limit.get_or_create(&l).set(t);
            }
            spawned.get_or_create(&l).inc_by(s.spawned);
            finished.get_or_create(&l).inc_by(s.finished);
            growth.get_or_create(&l).set(s.growth_per_s);
            confidence.get_or_create(&l).set(s.confidence);
            leak.get_or_create(&l).set(match (s.verdict, s.ignored_by.is_some()) {
                (_, true) | (VerdictKind::Ok, _) => 0,
                (VerdictKind::Suspect, _) => 1,
                (VerdictKind::Leak, _) => 2,
            });
        }
        for b in &r.blocked {
            let l = SiteLabels {
                pid: t.pid.clone(),
                exe: t.exe.clone(),
                runtime: t.runtime.clone(),
                site: b.function.clone(),
                // the wait kind and the syscall family: `Wait:read`, `RuntimeIdle:futex`
                location: format!("{:?}:{}", b.kind, b.syscall),
            };
            blocked.get_or_create(&l).set(b.threads);
        }
        for (k, v) in r.kernel_counters.iter().flatten() {
            kernel.get_or_create(&CounterLabels { pid: t.pid.clone(), counter: k.clone() }).set(*v as i64);
        }
        for p in &r.collection.bpf_programs {
            let l = ProgramLabels { pid: t.pid.clone(), program: p.program.clone() };
            bpf_runs.get_or_create(&l).inc_by(p.runs);
            bpf_seconds.get_or_create(&l).inc_by(p.run_ns as f64 / 1e9);
        }
    }
    reg.register("site_live", "Live tasks/goroutines per spawn site", live);
    reg.register("site_spawned", "Tasks/goroutines of the site seen born since attach (counter)", spawned);
    reg.register("site_finished", "Tasks/goroutines of the site seen finished since attach (counter)", finished);
    reg.register("site_growth_per_second", "Robust growth rate of the site's live count", growth);
    reg.register("site_verdict", "0 ok, 1 suspect, 2 leak (ignored sites are 0)", leak);
    reg.register("site_confidence", "Leak confidence 0..1", confidence);
    reg.register("site_bytes", "Bytes the site's live tasks hold (estimate: live x median measured bytes per task)", site_bytes);
    reg.register("site_bytes_growth_per_hour", "The site's byte growth (estimate: growth rate x median bytes per task)", site_bytes_growth);
    reg.register(
        "site_time_to_limit_seconds",
        "Leaking sites: seconds until the target's memory limit at the site's byte growth (estimate)",
        time_to_limit,
    );
    reg.register("target_memory_limit_bytes", "The memory limit that applies to the target (cgroup, else the machine)", mem_limit);
    reg.register("target_rss_bytes", "The target's resident set", mem_rss);
    reg.register("blocked_threads", "Threads blocked in a syscall per wait site (location: kind:syscall family)", blocked);
    reg.register("target_up", "1 while the target is attached and running", up);
    reg.register("other_sites", "Sites beyond --top-k, not reported one by one", other);
    reg.register("other_sites_live", "Live tasks/goroutines of the sites beyond --top-k, together", other_live);
    reg.register("kernel_events", "Kernel-side outcome counters, failures included", kernel);
    reg.register("bpf_program_runs", "Runs of each of leakprof's BPF programs (kernel BPF statistics)", bpf_runs);
    reg.register("bpf_program_run_seconds", "Time spent in each of leakprof's BPF programs, all CPUs", bpf_seconds);
    let probes = Gauge::<i64>::default();
    probes.set(reports.iter().filter(|r| r.collection.ended == crate::model::EndReason::Running).map(|r| r.target.attach_points as i64).sum());
    reg.register("attached_probes", "Probe links (uprobes, tracepoints) held on running targets", probes);
    let attached = Gauge::<i64>::default();
    attached.set(health.attached_targets as i64);
    reg.register("attached_targets", "Targets the daemon has probes or a census on", attached);
    let failures = Gauge::<i64>::default();
    failures.set(health.attach_failures as i64);
    reg.register("attach_failures", "Targets that could not be attached", failures);
    let detached = Gauge::<i64>::default();
    detached.set(health.detached_targets as i64);
    reg.register("detached_targets", "Targets detached after they exited", detached);
    let panics = Gauge::<i64>::default();
    panics.set(health.target_panics as i64);
    reg.register(
        "target_panics",
        "Targets detached because reading them panicked inside leakprof (the daemon goes on)",
        panics,
    );
    let shed = Gauge::<i64>::default();
    shed.set(health.shed_targets as i64);
    reg.register("shed_targets", "Targets detached because leakprof's own memory passed --max-rss-mib", shed);
    let cpu = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.set(health.cpu_seconds);
    reg.register("process_cpu_seconds", "leakprof's own CPU time", cpu);
    let rss = Gauge::<i64>::default();
    rss.set(health.rss_bytes as i64);
    reg.register("process_resident_memory_bytes", "leakprof's own resident memory", rss);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String");
    out
}

/// leakprof's own CPU seconds and RSS bytes, from /proc/self.
pub fn own_usage() -> (f64, u64) {
    let tick = 100.0; // USER_HZ
    let cpu = crate::target::ProcStat::read(None).map_or(0.0, |s| (s.utime + s.stime) as f64 / tick);
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096;
    (cpu, rss)
}
