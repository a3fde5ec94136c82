//! Recorded series: `leakprof --record` runs of the fixture scenarios (tokio census and probes, Go
//! census, Go probes, blocked threads), kept in `profiler/tests/series/` and made by
//! `cargo xtask record-series`. Each site is labelled from what its scenario is known to leak.
use std::{collections::BTreeMap, path::Path};

use leakprof::{
    detect::Facts,
    record::{parse, SiteKind},
};

use super::{Case, Label};

/// Seconds within which a recorded leak (2-10 leaked per second in every recording) must be `leak`.
pub const RECORDED_DEADLINE_S: f64 = 10.0;

/// The leaking site of a tokio or native fixture scenario: a function path fragment.
fn leaking_function(scenario: &str) -> Option<&'static str> {
    Some(match scenario {
        "recv-no-sender" => "leaks::recv_no_sender",
        "send-no-receiver" => "leaks::query_replica",
        "mutex-held" => "leaks::wait_for_mutex",
        "barrier" => "leaks::wait_at_barrier",
        "request-no-timeout" => "leaks::request_without_timeout",
        "infinite-loop" => "leaks::spin_forever",
        "timeout-abandons-worker" => "leaks::blocked_worker",
        "range-unclosed" => "leaks::drain_channel",
        "mixed" => "leaks::never_answered",
        "backlog-leak" => "census::backlogged",
        "blocking-mutex" => "stacks::lock_shared_state",
        "mutex-leak" => "plain_fixture::wait_for_config",
        _ => return None,
    })
}

/// From when a healthy site must never be `leak`: from the start, but for a warm-up ramp watched
/// from its start (the census attaches while `healthy-ramp` still rises, for 5 s), which looks
/// exactly like a leak until it levels off and is then held `leak` by the latch (6 samples):
/// `ok` is required from 14 s on (its census recording lasts 30 s). Launched under `leakprof run`,
/// the probes see the ramp from its first task and judge it `ok` throughout.
fn healthy_from(scenario: &str, method: &str) -> f64 {
    if scenario == "healthy-ramp" && method == "census" {
        14.0
    } else {
        0.0
    }
}

/// (file name, line) of the `// LEAK SITE <scenario>` marker in fixtures/go, if any.
pub fn go_leak_site(scenario: &str) -> Option<(String, u32)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go");
    for e in std::fs::read_dir(&dir).ok()?.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for (i, l) in text.lines().enumerate() {
            if l.ends_with(&format!("// LEAK SITE {scenario}")) {
                return Some((e.file_name().to_string_lossy().into_owned(), i as u32 + 1));
            }
        }
    }
    None
}

struct SiteRec {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    /// (t, live, facts) from the sample where the site first appeared.
    points: Vec<(f64, i64, Facts)>,
    kind: SiteKind,
}

/// The recordings' directory.
pub fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/series")
}

/// Every site of every recording as a case.
pub fn cases() -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, samples) = parse(&text).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let scenario = header.cmdline.get(1).cloned().unwrap_or_default();
        let go_site = (header.runtime == "go").then(|| go_leak_site(&scenario)).flatten();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let times: Vec<f64> = samples.iter().map(|s| s.t_s).collect();
        let mut sites: BTreeMap<(u8, String), SiteRec> = BTreeMap::new();
        for s in &samples {
            for r in &s.sites {
                let e = sites.entry((r.kind as u8, r.key.clone())).or_insert_with(|| SiteRec {
                    function: r.function.clone(),
                    file: r.file.clone(),
                    line: r.line,
                    points: Vec::new(),
                    kind: r.kind,
                });
                e.points.push((s.t_s, r.live, r.facts));
            }
        }
        for (_, site) in sites {
            let is_leak = match &go_site {
                Some((file, line)) => {
                    site.line == Some(*line) && site.file.as_deref().is_some_and(|f| f.ends_with(&format!("/{file}")))
                }
                None => leaking_function(&scenario).is_some_and(|p| site.function.contains(p)),
            };
            // Task sites are zero before they are first seen (as in a run); wait sites start there.
            let first = site.points[0].0;
            let pad: Vec<(f64, i64, Facts)> = match site.kind {
                SiteKind::Task => times.iter().take_while(|&&t| t < first).map(|&t| (t, 0, Facts::default())).collect(),
                SiteKind::Wait => Vec::new(),
            };
            let pts: Vec<_> = pad.into_iter().chain(site.points).collect();
            let where_ = match (&site.file, site.line) {
                (Some(f), Some(l)) => format!(" {}:{l}", f.rsplit('/').next().unwrap_or(f)),
                _ => String::new(),
            };
            out.push(Case {
                name: format!("{stem}: {}{where_}", site.function),
                label: if is_leak {
                    Label::Leak { deadline_s: RECORDED_DEADLINE_S }
                } else {
                    Label::Healthy { from_s: healthy_from(&scenario, &header.method) }
                },
                t: pts.iter().map(|p| p.0).collect(),
                live: pts.iter().map(|p| p.1).collect(),
                facts: pts.iter().map(|p| p.2).collect(),
            });
        }
    }
    out
}
