//! Two dumps of one program compared: the sites whose live count grew between them, with the
//! growth per hour from the two timestamps. A verdict from two moments, for when attaching for
//! minutes is not possible; a site counts as grown only past what chance explains.
use std::collections::BTreeMap;

use serde::Serialize;

use super::Dump;

/// One site in either dump.
#[derive(Debug, Clone, Serialize)]
pub struct SiteChange {
    pub site: String,
    pub live_before: i64,
    pub live_after: i64,
    pub change: i64,
    pub change_per_hour: f64,
    /// Grew past chance: by more than [`noise`] of its earlier count.
    pub grew: bool,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub schema: &'static str,
    pub before_unix_s: f64,
    pub after_unix_s: f64,
    pub interval_s: f64,
    pub exe: String,
    /// Every site of either dump, the grown ones first, then by change.
    pub sites: Vec<SiteChange>,
    /// The labels of the sites that grew.
    pub grown: Vec<String>,
    pub warnings: Vec<String>,
}

/// The change a site's live count can make by chance: a site of n live tasks that start and end
/// at random (a queue in steady state) moves by about sqrt(n) between two moments; three times
/// that, and at least 3 tasks.
pub fn noise(before: i64) -> f64 {
    3.0 * (before.max(1) as f64).sqrt() + 2.0
}

/// Compares `before` with `after` (swapped when given in the wrong order).
pub fn diff(before: &Dump, after: &Dump) -> Diff {
    let (a, b) = if after.taken_unix_s < before.taken_unix_s { (after, before) } else { (before, after) };
    let mut warnings = Vec::new();
    if a.source.exe != b.source.exe {
        warnings.push(format!(
            "the dumps are of different executables ({} and {}): sites are matched by name",
            a.source.exe, b.source.exe
        ));
    }
    if a.source.pid != b.source.pid || a.source.kind != b.source.kind {
        warnings.push(format!(
            "the dumps are of different processes (pid {} and pid {}): a site that grew may only have had less time to \
             fill in the first",
            a.source.pid, b.source.pid
        ));
    }
    let interval_s = (b.taken_unix_s - a.taken_unix_s).max(0.0);
    if interval_s < 1.0 {
        warnings.push(format!("the dumps are {interval_s:.3} s apart: growth per hour is not meaningful"));
    }
    let mut live: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in &a.sites {
        live.entry(s.label()).or_default().0 += s.live;
    }
    for s in &b.sites {
        live.entry(s.label()).or_default().1 += s.live;
    }
    let mut sites: Vec<SiteChange> = live
        .into_iter()
        .map(|(site, (x, y))| {
            let change = y - x;
            SiteChange {
                site,
                live_before: x,
                live_after: y,
                change,
                change_per_hour: if interval_s >= 1.0 { change as f64 * 3600.0 / interval_s } else { 0.0 },
                grew: change as f64 > noise(x),
            }
        })
        .collect();
    sites.sort_by(|x, y| (y.grew, y.change, &x.site).cmp(&(x.grew, x.change, &y.site)));
    let grown = sites.iter().filter(|s| s.grew).map(|s| s.site.clone()).collect();
    Diff {
        schema: "leakprof-dump-diff",
        before_unix_s: a.taken_unix_s,
        after_unix_s: b.taken_unix_s,
        interval_s,
        exe: b.source.exe.clone(),
        sites,
        grown,
        warnings,
    }
}

/// The comparison as text: the grown sites, then the others that changed.
pub fn render_text(d: &Diff) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "leakprof dump --diff: {} dumps {:.0} s apart", d.exe, d.interval_s);
    if d.grown.is_empty() {
        let _ = writeln!(out, "no site grew past chance (a site of n tasks moves by about 3*sqrt(n)+2 at random)");
    } else {
        let _ = writeln!(out, "GREW: {} site(s) gained tasks past chance between the dumps", d.grown.len());
    }
    for s in d.sites.iter().filter(|s| s.change != 0 || s.grew) {
        let mark = if s.grew { "GREW  " } else { "      " };
        let _ = writeln!(
            out,
            "{mark}{:>7} -> {:<7} {:>+7} ({:+.0}/h)  {}",
            s.live_before, s.live_after, s.change, s.change_per_hour, s.site
        );
    }
    let unchanged = d.sites.iter().filter(|s| s.change == 0 && !s.grew).count();
    if unchanged > 0 {
        let _ = writeln!(out, "{unchanged} site(s) unchanged");
    }
    for w in &d.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::tests::dump;

    #[test]
    fn flags_the_grown_site_only_with_its_rate() {
        let a = dump(1000.0, &[("leak", 100), ("steady", 400), ("gone", 5)]);
        let b = dump(1010.0, &[("leak", 200), ("steady", 430), ("new", 2)]);
        let d = diff(&b, &a); // given in the wrong order: swapped
        assert_eq!(d.grown, vec!["leak (src/main.rs:1)".to_string()], "{d:#?}");
        assert_eq!(d.interval_s, 10.0);
        let leak = &d.sites[0];
        assert_eq!((leak.live_before, leak.live_after, leak.change), (100, 200, 100));
        assert!((leak.change_per_hour - 36_000.0).abs() < 1e-6);
        // 400 -> 430 is within 3*sqrt(400)+2 = 62; a new site of 2 is within 5
        assert!(d.sites.iter().filter(|s| s.site.starts_with("steady") || s.site.starts_with("new")).all(|s| !s.grew));
        let text = render_text(&d);
        assert!(text.contains("GREW: 1 site(s)") && text.contains("+36000/h"), "{text}");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn dumps_of_two_processes_are_compared_with_a_warning() {
        let a = dump(0.0, &[("x", 1)]);
        let mut b = dump(0.5, &[("x", 1)]);
        b.source.pid = 8;
        let d = diff(&a, &b);
        assert!(d.grown.is_empty());
        assert!(d.warnings.iter().any(|w| w.contains("different processes")), "{:?}", d.warnings);
        assert!(d.warnings.iter().any(|w| w.contains("not meaningful")), "{:?}", d.warnings);
    }

    #[test]
    fn a_dump_reads_back_and_other_json_is_refused() {
        let a = dump(3.0, &[("x", 4)]);
        let back = Dump::from_json(&a.to_json(), "a.json").unwrap();
        assert_eq!(back.sites[0].live, 4);
        let err = Dump::from_json("{\"schema\": \"leakprof\"}", "r.json").unwrap_err().to_string();
        assert!(err.contains("r.json is not a leakprof dump"), "{err}");
    }
}
