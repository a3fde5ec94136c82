//! Plain-text rendering: a line block per interval while running, a table at the end.
use std::fmt::Write as _;

use crate::model::{EndReason, Report, SiteReport};

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
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1e3),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) => format!("{:.1}m", s / 60.0),
    }
}

/// The lines printed after each sample: time and the `top` sites by live count.
pub fn interval_lines(t_s: f64, sites: &[(String, i64, u64, u64)], top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "[{t_s:7.1}s] {:>8} {:>9} {:>9}  site", "live", "spawned", "finished");
    for (name, live, spawned, finished) in sites.iter().take(top) {
        let _ = writeln!(out, "           {live:>8} {spawned:>9} {finished:>9}  {name}");
    }
    if sites.len() > top {
        let _ = writeln!(out, "           ... {} more sites", sites.len() - top);
    }
    out
}

/// The final report as a table.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let t = &r.target;
    let _ = writeln!(
        out,
        "leakprof {}: pid {} {} ({} {}), {} attach points via {}, {} samples over {:.1}s{}",
        r.leakprof_version,
        t.pid,
        t.exe,
        t.runtime,
        t.runtime_version.as_deref().unwrap_or("version unknown"),
        t.attach_points,
        t.birth_point,
        r.collection.samples,
        r.collection.duration_s,
        match r.collection.ended {
            EndReason::Duration => "",
            EndReason::Interrupted => " (interrupted)",
            EndReason::TargetExited => " (target exited)",
        }
    );
    if r.sites.is_empty() {
        let _ = writeln!(out, "no task was spawned or finished since attach");
    } else {
        let _ = writeln!(
            out,
            "{:>7} {:>8} {:>8} {:>7} {:>8}  {:<20}  site",
            "live", "spawned", "finished", "pre-ex", "oldest", "live over time"
        );
        for s in &r.sites {
            let loc = location(s);
            let _ = writeln!(
                out,
                "{:>7} {:>8} {:>8} {:>7} {:>8}  {:<20}  {}{}",
                s.live,
                s.spawned,
                s.finished,
                s.finished_preexisting,
                age(s.oldest_age_s),
                sparkline(&s.series, 20),
                s.function,
                if loc.is_empty() { String::new() } else { format!("  ({loc})") }
            );
        }
        let _ = writeln!(
            out,
            "pre-ex = tasks alive before attach that finished since (not counted as live)"
        );
    }
    let counters: Vec<String> = r.kernel_counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "kernel: {}", counters.join(" "));
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_shapes() {
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(sparkline(&[0, 0, 0], 10), "▁▁▁");
        assert_eq!(sparkline(&[5, 5], 10), "▄▄");
        assert_eq!(sparkline(&[0, 7], 10), "▁█");
        // downsampled to the width, keeping maxima
        let s = sparkline(&(0..100).collect::<Vec<_>>(), 10);
        assert_eq!(s.chars().count(), 10);
        assert!(s.ends_with('█') && s.starts_with('▁'));
    }

    #[test]
    fn interval_block_lists_top_sites() {
        let sites = vec![("a".to_string(), 10, 12, 2), ("b".to_string(), 0, 5, 5)];
        let s = interval_lines(3.0, &sites, 1);
        assert!(s.contains("      10        12         2  a"), "{s}");
        assert!(s.contains("1 more sites"));
    }
}
