//! The detector corpus, no BPF needed: synthetic series of every shape plus series recorded from
//! real runs of the scenario suites, replayed sample by sample through the detector and its latch.
//! Every leak must be `leak` by its deadline and stay so; no healthy series may ever be `leak`.
//! The threshold sweep shows that every default of `DetectConfig` sits inside the range the corpus
//! allows (`cargo test -p profiler --test detector_corpus -- --nocapture` prints the tables).
mod corpus;

use corpus::{all_cases, recorded, run, Label, Outcome};
use leakprof::detect::{DetectConfig, VerdictKind};

fn table(outcomes: &[Outcome]) -> String {
    let mut s = format!("{:<70} {:>8} {:>9} {:>7} {:>5}\n", "shape", "verdict", "detected", "by", "conf");
    for o in outcomes {
        let (kind, conf) = o.last;
        let kind = match (o.first_leak_s, kind) {
            (Some(_), _) => "leak",
            (None, VerdictKind::Suspect) => "suspect",
            (None, _) => "ok",
        };
        let by = match o.label {
            Label::Leak { deadline_s } => format!("{deadline_s:.0} s"),
            Label::Healthy { from_s: 0.0 } => "never".into(),
            Label::Healthy { from_s } => format!("ok@{from_s:.0}"),
        };
        let at = o.first_leak_s.map_or("-".into(), |t| format!("{t:.1} s"));
        let flag = if o.failure().is_some() { "  <-- FAIL" } else { "" };
        s += &format!("{:<70} {kind:>8} {at:>9} {by:>7} {conf:>5.2}{flag}\n", o.name);
    }
    s
}

/// The default config, or with CORPUS_SET="name=value,..." applied (to try values by hand).
fn config() -> DetectConfig {
    let mut v = serde_json::to_value(DetectConfig::default()).unwrap();
    for kv in std::env::var("CORPUS_SET").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (k, val) = kv.split_once('=').expect("CORPUS_SET: name=value");
        v[k] = serde_json::from_str(val).expect("a JSON value");
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn every_leak_is_flagged_by_its_deadline_and_no_healthy_series_ever_is() {
    let cases = all_cases();
    let (outcomes, failures) = run(&cases, &config());
    println!("{}", table(&outcomes));
    let leaks = outcomes.iter().filter(|o| matches!(o.label, Label::Leak { .. })).count();
    println!("{} cases ({leaks} leaks), {} failures", outcomes.len(), failures.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn recordings_cover_every_collection_method() {
    let dir = recorded::dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `cargo xtask record-series`", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for source in ["tokio-latest-probes-", "tokio-1.38-probes-", "go1.19-census-", "go-latest-census-", "go-latest-probes-", "threads-"] {
        assert!(names.iter().any(|n| n.starts_with(source)), "no recording from {source}*: {names:?}");
    }
    let cases = recorded::cases();
    let leaks = cases.iter().filter(|c| matches!(c.label, Label::Leak { .. })).count();
    assert!(leaks >= 20 && cases.len() > leaks * 2, "{leaks} leaking of {} recorded sites", cases.len());
}

/// One threshold of `DetectConfig`, how to set it, and the values tried.
struct Knob {
    name: &'static str,
    set: fn(&mut DetectConfig, f64),
    get: fn(&DetectConfig) -> f64,
    values: &'static [f64],
}

macro_rules! knob {
    ($field:ident, $ty:ty, [$($v:expr),*]) => {
        Knob {
            name: stringify!($field),
            set: |c, v| c.$field = v as $ty,
            get: |c| c.$field as f64,
            values: &[$($v),*],
        }
    };
}

/// One knob's row of the sweep, and the failures at its default (`at_default`: the corpus run
/// once with the defaults, shared by every row).
fn sweep(k: &Knob, cases: &[corpus::Case], base: &DetectConfig, at_default: &[String]) -> (String, Vec<String>) {
    let default = (k.get)(base);
    assert!(k.values.iter().any(|v| (v - default).abs() < 1e-12), "{}: the default {default} is not in the sweep", k.name);
    let mut row = format!("{:<18}", k.name);
    let mut bad = Vec::new();
    for &v in k.values {
        let failures = if (v - default).abs() < 1e-12 {
            at_default.to_vec()
        } else {
            let mut cfg = base.clone();
            (k.set)(&mut cfg, v);
            run(cases, &cfg).1
        };
        let mark = if (v - default).abs() < 1e-12 { "*" } else { "" };
        row += &format!(" {mark}{v}: {}", failures.len());
        if (v - default).abs() < 1e-12 && !failures.is_empty() {
            bad.push(format!("{} = {v}: {} failures, e.g. {}", k.name, failures.len(), failures[0]));
        }
    }
    (row, bad)
}

/// Each threshold is swept one at a time around its default; the default must pass the corpus
/// and the printed range shows how much room it has on each side.
#[test]
fn every_threshold_sits_inside_the_range_the_corpus_allows() {
    let knobs = [
        knob!(alpha, f64, [0.001, 0.003, 0.01, 0.03, 0.1]),
        knob!(alpha_full, f64, [1e-6, 1e-5, 1e-4, 1e-3]),
        // 1e9: the autocorrelation correction applied whatever the rise (as before #14)
        knob!(autocorr_q_none, f64, [2.0, 4.0, 8.0]),
        knob!(autocorr_q_full, f64, [8.0, 16.0, 32.0, 64.0, 1e9]),
        knob!(min_rise, f64, [1.0, 2.0, 3.0, 5.0, 8.0]),
        knob!(noise_k, f64, [2.0, 3.0, 4.0, 5.0, 6.0]),
        knob!(noise_small_n, f64, [0.0, 10.0, 20.0, 40.0]),
        knob!(full_rise, f64, [8.0, 16.0, 32.0]),
        knob!(full_rise_noise_k, f64, [3.0, 6.0, 12.0]),
        knob!(recent_fraction, f64, [0.25, 1.0 / 3.0, 0.5, 0.66]),
        knob!(recent_ratio, f64, [0.25, 0.5, 0.75]),
        knob!(recent_alpha, f64, [0.1, 0.25, 0.5]),
        knob!(step_ratio, f64, [0.1, 0.25, 0.5]),
        knob!(min_points_leak, usize, [4.0, 6.0, 8.0]),
        knob!(min_span_leak_s, f64, [3.0, 5.0, 8.0]),
        knob!(leak_confidence, f64, [0.7, 0.8, 0.9]),
        knob!(w_age, f64, [0.2, 0.35, 0.5]),
        knob!(w_mono, f64, [0.05, 0.15, 0.3]),
        knob!(boost_cap, f64, [0.3, 0.5, 0.7]),
        knob!(leak_hold_samples, u32, [0.0, 3.0, 6.0, 10.0]),
        knob!(leak_hold_fraction, f64, [0.0, 0.25, 0.5, 1.0]),
        knob!(max_points, usize, [150.0, 300.0, 600.0]),
        knob!(sub_max_points, usize, [75.0, 150.0, 300.0]),
        knob!(sub_windows, u32, [4.0, 8.0, 12.0]),
        knob!(sub_min_points, usize, [10.0, 20.0, 40.0]),
        knob!(none_finished_weight, f64, [0.15, 0.3, 0.5]),
        knob!(w_idle, f64, [0.0, 0.1, 0.2]),
    ];
    let cases = all_cases();
    let base = DetectConfig::default();
    let at_default = run(&cases, &base).1;
    let mut report = String::new();
    let mut bad: Vec<String> = Vec::new();
    // two knobs at a time (the machine has two cores)
    let rows: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = knobs
            .chunks(knobs.len().div_ceil(2))
            .map(|chunk| {
                let (cases, base, at_default) = (&cases, &base, &at_default);
                scope.spawn(move || chunk.iter().map(|k| sweep(k, cases, base, at_default)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for (row, failures) in rows {
        report += &row;
        report += "\n";
        bad.extend(failures);
    }
    println!("failures per value (* = default):\n{report}");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
