//! Plain-text rendering: the per-interval view and the final table.
use std::fmt::Write as _;

use crate::model::{EndReason, Report, SiteReport, VerdictKind};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of at most `width` characters (the series is downsampled by taking maxima).
pub fn sparkline(series: &[i64], width: usize) -> String {
    if series.is_empty() || width == 0 {
        return String::new();
    }
    let chunk = series.len().div_ceil(width);
    let pts: Vec<i64> = series.chunks(chunk).map(|c| *c.iter().max().unwrap()).collect();
    let lo = *pts.iter().min().unwrap();
    let hi = *pts.iter().max().unwrap();
    pts.iter()
        .map(|&v| {
            if hi == lo {
                if hi == 0 { BARS[0] } else { BARS[3] }
            } else {
                BARS[(((v - lo) as f64 / (hi - lo) as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

fn location(s: &SiteReport) -> String {
    match (&s.file, s.line) {
        (Some(f), Some(l)) => format!("{f}:{l}"),
        (Some(f), None) => f.clone(),
        _ => String::new(),
    }
}

fn age(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        // below 999.5 ms, which would round to "1000ms"
        Some(s) if s < 0.9995 => format!("{:.0}ms", s * 1e3),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn verdict_label(s: &SiteReport) -> String {
    if s.ignored_by.is_some() {
        return "ignored".into();
    }
    match s.verdict {
        VerdictKind::Leak => "LEAK".into(),
        VerdictKind::Suspect => "suspect".into(),
        VerdictKind::Ok => "ok".into(),
    }
}

/// The detector's score (0..1, not a probability; `leak` needs 0.8), blank for `ok`.
fn score(verdict: VerdictKind, confidence: f64) -> String {
    if verdict == VerdictKind::Ok {
        String::new()
    } else {
        format!("{confidence:.2}")
    }
}

/// The oldest live task's age, `>=` when it was alive before leakprof's first sample.
fn oldest(s: &SiteReport) -> String {
    let a = age(s.oldest_age_s);
    if s.oldest_age_is_lower_bound && s.oldest_age_s.is_some() {
        format!(">={a}")
    } else {
        a
    }
}

/// Births and finishes are columns only when probes counted them (in census mode `spawned`
/// would repeat `live`).
fn header(probes: bool) -> String {
    let counts = if probes { format!(" {:>8} {:>8}", "spawned", "finished") } else { String::new() };
    format!("{:<8} {:>5} {:>7}{counts} {:>9} {:>8}  {:<20}  site", "verdict", "score", "live", "rate/s", "oldest", "live over time")
}

fn row(s: &SiteReport, spark_width: usize, probes: bool) -> String {
    let counts = if probes { format!(" {:>8} {:>8}", s.spawned, s.finished) } else { String::new() };
    format!(
        "{:<8} {:>5} {:>7}{counts} {:>+9.2} {:>8}  {:<20}  {}",
        verdict_label(s),
        score(s.verdict, s.confidence),
        s.live,
        s.growth_per_s,
        oldest(s),
        sparkline(&s.series, spark_width),
        s.function
    )
}

/// Whether these sites' births were counted by probes.
fn probed(sites: &[SiteReport]) -> bool {
    sites.iter().any(|s| s.births_measured)
}

/// The per-interval view: elapsed time and the `top` worst sites.
pub fn interval_lines(t_s: f64, sites: &[SiteReport], top: usize) -> String {
    let mut out = String::new();
    let probes = probed(sites);
    let _ = writeln!(out, "[{t_s:7.1}s] {}", header(probes));
    for s in sites.iter().take(top) {
        let _ = writeln!(out, "           {}", row(s, 20, probes));
    }
    if sites.len() > top {
        let _ = writeln!(out, "           ... {} more sites", sites.len() - top);
    }
    out
}

/// The final report.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let t = &r.target;
    let _ = writeln!(
        out,
        "leakprof {}: pid {} {} ({} {}), {}, {} samples over {:.1}s{}",
        r.leakprof_version,
        t.pid,
        t.exe,
        t.runtime,
        t.runtime_version.as_deref().unwrap_or("version unknown"),
        if t.attach_points == 0 {
            "read from outside (no probe)".to_string()
        } else {
            format!("{} attach points via {}", t.attach_points, t.birth_point)
        },
        r.collection.samples,
        r.collection.duration_s,
        match r.collection.ended {
            EndReason::Duration => "",
            EndReason::Interrupted => " (interrupted)",
            EndReason::TargetExited => " (target exited)",
            EndReason::Running => " (running)",
            EndReason::ReadFailed => " (reading the target failed)",
        }
    );
    if let Some(c) = &r.collection.census {
        let _ = writeln!(out, "{}", census_line(c));
    }
    let leaks = r.leaks().count();
    let blocked_leaks = r.blocked.iter().filter(|b| b.verdict == VerdictKind::Leak).count();
    if r.sites.is_empty() {
        let _ = writeln!(out, "no task was spawned or finished since attach");
    } else {
        let _ = writeln!(
            out,
            "{}",
            match leaks {
                0 => "no leaking site found".to_string(),
                1 => "1 leaking site".to_string(),
                n => format!("{n} leaking sites"),
            }
        );
        let probes = probed(&r.sites);
        let _ = writeln!(out, "{}", header(probes));
        for s in &r.sites {
            let _ = writeln!(out, "{}", row(s, 20, probes));
            let loc = location(s);
            let mut detail = vec![];
            if !loc.is_empty() {
                detail.push(loc);
            }
            if let Some(c) = &s.created_by {
                detail.push(format!("created by {c}"));
            }
            // spawn paths, when their callers differ (stacks that differ only deeper are one row)
            let mut paths: Vec<(String, i64)> = Vec::new();
            for p in &s.spawn_stacks {
                let label = crate::runtimes::tokio::probes::spawn_stacks::path_label(p, 2);
                match paths.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, n)) => *n += p.live_estimate,
                    None => paths.push((label, p.live_estimate)),
                }
            }
            if paths.len() > 1 {
                let shown: Vec<String> =
                    paths.iter().take(3).map(|(l, n)| format!("~{n} live via {l}")).collect();
                detail.push(format!("spawn paths: {}", shown.join(", ")));
            }
            detail.push(s.reason.clone());
            if !s.states.is_empty() {
                let st: Vec<String> = s.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let what = if r.target.runtime == "go" { "goroutines" } else { "tasks" };
                detail.push(format!("{what}: {}", st.join(", ")));
            }
            if let Some(i) = s.idle_fraction.filter(|_| !s.reason.contains("idle")) {
                detail.push(format!("{:.0}% of live tasks idle", i * 100.0));
            }
            if let Some(o) = &s.oldest_task {
                detail.push(oldest_note(o));
            }
            if s.finished_preexisting > 0 {
                detail.push(format!("{} tasks from before attach finished", s.finished_preexisting));
            }
            if let Some(rule) = &s.ignored_by {
                detail.push(format!("ignored by {rule}"));
            }
            let _ = writeln!(out, "{:<8} {}", "", detail.join("; "));
            if let Some(line) = cost_line(s, r.memory.as_ref()) {
                let _ = writeln!(out, "{:<8} {line}", "");
            }
            if let Some(line) = stuck_line(s) {
                let _ = writeln!(out, "{:<8} {line}", "");
            }
        }
    }
    if !r.blocked.is_empty() {
        let _ = writeln!(
            out,
            "threads blocked in syscalls{}:",
            if blocked_leaks > 0 { format!(" ({blocked_leaks} leaking wait site(s))") } else { String::new() }
        );
        let _ = writeln!(
            out,
            "{:<12} {:>5} {:>7} {:>9} {:>8}  {:<20}  wait site",
            "verdict", "score", "threads", "rate/s", "longest", "threads over time"
        );
        for b in &r.blocked {
            let idle = b.kind == crate::runtimes::threads::tracker::WaitKind::RuntimeIdle;
            let label = match (idle, b.verdict) {
                (true, VerdictKind::Leak) => "LEAK (idle)".to_string(),
                (true, _) => "runtime idle".to_string(),
                _ if b.ignored_by.is_some() => "ignored".to_string(),
                (_, VerdictKind::Leak) => "LEAK".to_string(),
                (_, VerdictKind::Suspect) => "suspect".to_string(),
                _ => "ok".to_string(),
            };
            let sc = if idle && b.verdict != VerdictKind::Leak { String::new() } else { score(b.verdict, b.confidence) };
            let longest = if b.preexisting { format!(">={}", age(Some(b.longest_wait_s))) } else { age(Some(b.longest_wait_s)) };
            let _ = writeln!(
                out,
                "{:<12} {:>5} {:>7} {:>+9.2} {:>8}  {:<20}  {}",
                label,
                sc,
                b.threads,
                b.growth_per_s,
                longest,
                sparkline(&b.series, 20),
                b.function
            );
            let loc = match (&b.file, b.line) {
                (Some(f), Some(l)) => format!("{f}:{l}; "),
                _ => String::new(),
            };
            let holds = b
                .bytes_per_thread
                .as_ref()
                .map(|p| format!("stacks hold {} ({} x {} resident); ", bytes_label((b.threads.max(0) as u64 * p.median) as f64), b.threads, bytes_label(p.median as f64)))
                .unwrap_or_default();
            let _ = writeln!(out, "{:<12} {loc}{}; {holds}{}", "", blocked_in(&b.syscall, &b.syscall_name), b.reason);
        }
    }
    if let Some(k) = &r.kernel_counters {
        let counters: Vec<String> = k.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "kernel: {}", counters.join(" "));
    }
    if let Some(line) = bpf_cost_line(&r.collection.bpf_programs) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(code) = r.program_exit_code {
        let _ = writeln!(out, "program exit code: {code}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// "kernel cost: task_birth_bind_inner 100000 runs 312 ns/run, ..." for the programs that ran.
fn bpf_cost_line(programs: &[crate::model::BpfProgramCost]) -> Option<String> {
    let ran: Vec<String> = programs
        .iter()
        .filter(|p| p.runs > 0)
        .map(|p| format!("{} {} runs {:.0} ns/run", p.program, p.runs, p.run_ns as f64 / p.runs as f64))
        .collect();
    (!ran.is_empty()).then(|| format!("kernel cost: {}", ran.join(", ")))
}

/// "oldest live task spawned before attach, ~N tasks ago" (task ids are handed out in spawn order).
fn oldest_note(o: &crate::model::OldestTask) -> String {
    let when = if o.before_attach { "spawned before attach, " } else { "" };
    format!("oldest live task #{} {when}~{} tasks ago", o.task_id, o.tasks_spawned_since)
}

/// Bytes in the units people read: `512 B`, `38 MB`, `2.0 GiB` (powers of two for limits, which
/// are set in them; powers of ten otherwise).
fn bytes_label(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.0} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.0} kB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}

/// `~13 h`, `~25 min`, `~40 s`.
fn duration_label(s: f64) -> String {
    match s {
        s if s >= 2.0 * 86400.0 => format!("~{:.0} days", s / 86400.0),
        s if s >= 2.0 * 3600.0 => format!("~{:.0} h", s / 3600.0),
        s if s >= 120.0 => format!("~{:.0} min", s / 60.0),
        s => format!("~{s:.0} s"),
    }
}

/// "holds 38 MB (2000 x 19 kB task cell, 32 measured), +140 MB/h; at this rate the 2.0 GiB
/// cgroup v1 memory limit is reached in ~13 h" (the figures are estimates: see `SiteReport`).
fn cost_line(s: &SiteReport, memory: Option<&crate::model::MemoryReport>) -> Option<String> {
    let per = s.bytes_per_task.as_ref()?;
    let mut line = format!("holds {}", held(s.bytes_estimate, s.live, per));
    if let Some(g) = s.bytes_growth_per_hour_estimate.filter(|g| *g > 0.0 && s.verdict != VerdictKind::Ok) {
        line += &format!(", +{}/h", bytes_label(g));
    }
    if let (Some(t), Some(m)) = (s.time_to_limit_s_estimate, memory) {
        let limit = m.limit_bytes.map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_default();
        let what = match m.limit_source.as_deref() {
            Some(src) if src.starts_with("cgroup v2") => format!("the {limit} cgroup v2 memory limit"),
            Some(src) if src.starts_with("cgroup v1") => format!("the {limit} cgroup v1 memory limit"),
            _ => format!("the machine's {limit} of memory"),
        };
        line += &format!("; at this rate {what} is reached in {}", duration_label(t));
    }
    Some(line)
}

/// What `live` tasks hold: "6 MB (87 x 66 kB task cell, 32 measured)".
pub fn held(estimate: Option<u64>, live: i64, per: &crate::model::BytesPerTask) -> String {
    format!(
        "{} ({} x {} {}, {} measured)",
        bytes_label(estimate.unwrap_or(0) as f64),
        live,
        bytes_label(per.median as f64),
        per.counts,
        per.measured
    )
}

/// "in futex wait", "blocked in read", "blocked in read (recvfrom)": threads waiting in a call
/// of `family`, first seen as `name`.
pub fn blocked_in(family: &str, name: &str) -> String {
    match (family, name) {
        ("futex", _) => "in futex wait".to_string(),
        (f, n) if f == n || f == "other" => format!("blocked in {n}"),
        (f, n) => format!("blocked in {f} ({n})"),
    }
}

/// "census: 2 runtimes/LocalSets, 5026 of 5026 live tasks read (complete), 2.2 MB in 2.1 ms" (a
/// `LocalSet`'s tasks are in a list of their own, found like a runtime's).
fn census_line(c: &crate::model::CensusStats) -> String {
    let of = c.tasks_expected.map(|e| format!(" of {e}")).unwrap_or_default();
    let complete = if c.complete { "complete" } else { "incomplete: a list changed under the walk" };
    let mut line = format!(
        "census: {} runtime{}/LocalSet{}, {}{of} live tasks read ({complete}), {:.1} MB in {:.1} ms",
        c.runtimes,
        if c.runtimes == 1 { "" } else { "s" },
        if c.runtimes == 1 { "" } else { "s" },
        c.tasks_walked,
        c.bytes_read as f64 / 1e6,
        c.walk_ms
    );
    if c.where_stuck_sampled > 0 {
        let how = if c.where_stuck.contains("machine code") { "from the machine code" } else { "from DWARF types" };
        line += &format!(
            "; where tasks wait: {} of {} sampled decoded {how} in {:.1} ms",
            c.where_stuck_decoded, c.where_stuck_sampled, c.where_stuck_ms
        );
    }
    line
}

/// "stuck at FILE:LINE in FUNCTION (N of M sampled); also at ..." for a site whose waiting tasks'
/// stacks were read.
fn stuck_line(s: &SiteReport) -> Option<String> {
    let place = |a: &crate::model::StuckAt| {
        let file = a.file.as_deref().map(|f| f.rsplit('/').next().unwrap_or(f));
        let nth = a.await_ordinal.map(|n| format!(" at its {} .await", ordinal(n))).unwrap_or_default();
        let at = match (file, a.line) {
            (Some(f), Some(l)) => format!("{f}:{l} in {}{nth}", a.function),
            _ => format!("{}{nth}", a.function),
        };
        match &a.awaiting {
            Some(w) => format!("{at} awaiting {w}"),
            None => at,
        }
    };
    let first = s.stuck_at.first()?;
    let mut line = format!("stuck at {} ({} of {} sampled)", place(first), first.tasks, s.stuck_sampled);
    for a in s.stuck_at.iter().skip(1).take(2) {
        line += &format!("; also at {} ({})", place(a), a.tasks);
    }
    if s.stuck_undecoded > 0 {
        line += &format!("; {} sampled not decoded", s.stuck_undecoded);
    }
    Some(line)
}

/// 1st, 2nd, 3rd, 4th, .. 11th, 12th, 13th, .. 21st.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_leak_s_cost_and_time_to_the_limit_in_words() {
        let mut s = crate::model::tests::site("app::f", VerdictKind::Leak, 2000);
        s.bytes_per_task = Some(crate::model::BytesPerTask { counts: "task cell".into(), measured: 32, min: 19_000, median: 19_000, max: 20_000 });
        s.bytes_estimate = Some(38_000_000);
        s.bytes_growth_per_hour_estimate = Some(140e6);
        s.time_to_limit_s_estimate = Some(13.0 * 3600.0);
        let m = crate::model::MemoryReport {
            rss_bytes: Some(1 << 30),
            rss_bytes_series: vec![],
            limit_bytes: Some(2 << 30),
            limit_source: Some("cgroup v1 /sys/fs/cgroup/memory/app/memory.limit_in_bytes".into()),
        };
        assert_eq!(
            cost_line(&s, Some(&m)).unwrap(),
            "holds 38 MB (2000 x 19 kB task cell, 32 measured), +140 MB/h; at this rate the 2.0 GiB cgroup v1 memory limit is reached in ~13 h"
        );
        s.verdict = VerdictKind::Ok;
        s.time_to_limit_s_estimate = None;
        assert_eq!(cost_line(&s, Some(&m)).unwrap(), "holds 38 MB (2000 x 19 kB task cell, 32 measured)");
        s.bytes_per_task = None;
        assert_eq!(cost_line(&s, Some(&m)), None);
    }
    use super::*;

    use crate::model::tests::site;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].into_iter().map(ordinal).collect();
        assert_eq!(got, ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]);
    }

    #[test]
    fn sparkline_shapes() {
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[0, 0, 0], 10), "▁▁▁");
        assert_eq!(sparkline(&[5, 5], 10), "▄▄");
        assert_eq!(sparkline(&[0, 7], 10), "▁█");
        let s = sparkline(&(0..100).collect::<Vec<_>>(), 10);
        assert_eq!(s.chars().count(), 10);
        assert!(s.ends_with('█') && s.starts_with('▁'));
    }

    #[test]
    fn interval_view_lists_top_sites_with_verdicts() {
        let sites = vec![site("a::leak", VerdictKind::Leak, 20), site("b::ok", VerdictKind::Ok, 0)];
        let s = interval_lines(3.0, &sites, 1);
        assert!(s.contains("LEAK      0.93"), "{s}");
        assert!(s.contains("a::leak"), "{s}");
        assert!(s.contains("1 more sites"), "{s}");
    }

    #[test]
    fn rows_show_rate_age_sparkline_and_reason() {
        let r = row(&site("a::leak", VerdictKind::Leak, 20), 20, true);
        assert!(r.contains("+2.00") && r.contains("4.0s") && r.contains("▁▅█"), "{r}");
        let mut ign = site("p::pool", VerdictKind::Ok, 4);
        ign.ignored_by = Some("function:p::*".into());
        assert!(row(&ign, 20, true).starts_with("ignored"));
        // census mode: no spawned/finished columns; an age from before attach is a lower bound
        let mut c = site("a::leak", VerdictKind::Leak, 20);
        (c.births_measured, c.oldest_age_is_lower_bound) = (false, true);
        assert!(!header(false).contains("spawned") && header(true).contains("spawned"));
        let r = row(&c, 20, false);
        assert!(r.contains(">=4.0s") && r.contains("LEAK      0.93      20"), "{r}");
    }
}
