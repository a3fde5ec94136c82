//! Scenario tests: synthetic live-count series with expected verdicts.

use super::*;
use VerdictKind::{Leak, Ok as Fine, Suspect};

/// Tiny deterministic PRNG (PCG-style LCG constants), so tests need no `rand`.
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        let mut l = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        l.unit();
        l
    }
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in lo..=hi.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.unit() * (hi - lo + 1) as f64).floor() as i64
    }
    /// Approximately standard normal (Irwin-Hall, 12 uniforms).
    fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Side facts of a site at the time of judging (a function of the last sample time).
#[derive(Clone, Copy, Default)]
struct Facts {
    oldest: Option<f64>,
    p99: Option<f64>,
    max_fin: Option<f64>,
    idle: Option<f64>,
    finished: u64,
}

/// Facts of a leaking site whose healthy tasks finish within 10 ms; the first leaked task was
/// born at `leak_start` seconds.
fn leaky_facts(leak_start: f64) -> impl Fn(f64) -> Facts {
    move |now| Facts {
        oldest: Some((now - leak_start).max(0.0)),
        p99: Some(0.01),
        max_fin: Some(0.05),
        idle: Some(1.0),
        finished: 1000,
    }
}

fn no_facts(_: f64) -> Facts {
    Facts::default()
}

/// Samples at 1 s intervals starting at t = 0.
fn series(n: usize, mut f: impl FnMut(f64) -> i64) -> (Vec<f64>, Vec<i64>) {
    (0..n).map(|i| (i as f64, f(i as f64))).unzip()
}

/// Judges the first `k` samples and checks the output is well formed.
fn judge_at(t: &[f64], live: &[i64], k: usize, facts: &dyn Fn(f64) -> Facts) -> Verdict {
    let now = if k == 0 { 0.0 } else { t[k - 1] };
    let f = facts(now);
    let s = SiteSeries {
        t_s: &t[..k],
        live: &live[..k],
        spawned_total: f.finished + live[..k].last().copied().unwrap_or(0).max(0) as u64,
        finished_total: f.finished,
        oldest_live_age_s: f.oldest,
        finished_age_p99_s: f.p99,
        max_finished_age_s: f.max_fin,
        idle_fraction: f.idle,
    };
    let v = judge(&s, &DetectConfig::default());
    assert!(v.confidence.is_finite() && (0.0..=1.0).contains(&v.confidence), "{v:?}");
    assert!(v.growth_per_s.is_finite(), "{v:?}");
    assert!(!v.reason.is_empty() && !v.reason.contains("NaN") && !v.reason.contains("inf"), "{v:?}");
    match v.kind {
        Leak => assert!(v.confidence >= 0.8, "{v:?}"),
        Suspect => assert!((0.3..0.8).contains(&v.confidence), "{v:?}"),
        Fine => assert!(v.confidence < 0.3, "{v:?}"),
    }
    v
}

/// First sample count (>= `from`) at which the verdict is `kind`, if any.
fn first_at(t: &[f64], live: &[i64], from: usize, kind: VerdictKind, facts: &dyn Fn(f64) -> Facts) -> Option<usize> {
    (from..=t.len()).find(|&k| judge_at(t, live, k, facts).kind == kind)
}

#[test]
fn steady_leak_2_per_s_is_leak_within_10_s() {
    let (t, live) = series(120, |t| 2 * t as i64);
    for k in 0..4 {
        let v = judge_at(&t, &live, k, &no_facts);
        assert_eq!(v.kind, Fine, "{k}: {v:?}");
        assert!(v.reason.contains("too few samples"), "{v:?}");
    }
    for k in 4..6 {
        assert_ne!(judge_at(&t, &live, k, &no_facts).kind, Leak, "no leak before 6 samples");
    }
    for facts in [&no_facts as &dyn Fn(f64) -> Facts, &leaky_facts(0.0)] {
        for k in 10..=120 {
            let v = judge_at(&t, &live, k, facts);
            assert_eq!(v.kind, Leak, "{k}: {v:?}");
            assert!((v.growth_per_s - 2.0).abs() < 1e-9, "{v:?}");
        }
    }
    let v = judge_at(&t, &live, 19, &leaky_facts(0.0));
    assert!(v.reason.starts_with("+2.0/s for 18 s to 36 live, grew in 18 of 18 intervals"), "{}", v.reason);
    assert!(v.reason.contains("oldest live task 18 s old while tasks of this site normally finish within 0.01 s"));
    assert!(v.confidence > 0.95, "{v:?}");
}

#[test]
fn leak_2_per_s_with_small_noise_is_leak_within_10_s() {
    for seed in 0..50 {
        let mut rng = Lcg::new(seed);
        let (t, live) = series(60, |t| 10 + 2 * t as i64 + rng.int(-1, 1));
        for k in 11..=60 {
            let v = judge_at(&t, &live, k, &no_facts);
            assert_eq!(v.kind, Leak, "seed {seed} k {k}: {v:?} {:?}", &live[..k]);
        }
    }
}

#[test]
fn leak_under_healthy_churn() {
    for seed in 0..20 {
        let mut rng = Lcg::new(100 + seed);
        // 1 leaked task per second under ~40 short-lived tasks in flight (sd ~6).
        let (t, live) = series(300, |t| t as i64 + 40 + (6.0 * rng.gauss()).round() as i64);
        let with_age = leaky_facts(0.0);
        let k = first_at(&t, &live, 2, Leak, &with_age).expect("flagged");
        assert!(k <= 61, "seed {seed}: leak only at {k}");
        assert!((k..=300).all(|k| judge_at(&t, &live, k, &with_age).kind == Leak), "seed {seed}");
        let k = first_at(&t, &live, 2, Leak, &no_facts).expect("flagged");
        assert!(k <= 91, "seed {seed}: leak only at {k} without age evidence");
    }
}

#[test]
fn slow_leak_one_per_5_s_goes_suspect_then_leak() {
    let (t, live) = series(200, |t| (t / 5.0).floor() as i64);
    let with_age = leaky_facts(5.0);
    for (facts, leak_by) in [(&with_age as &dyn Fn(f64) -> Facts, 61), (&no_facts, 121)] {
        for k in [21, 26, 31] {
            assert_eq!(judge_at(&t, &live, k, facts).kind, Suspect, "at {k}");
        }
        let first = first_at(&t, &live, 2, Leak, facts).unwrap();
        assert!((41..=leak_by).contains(&first), "leak at {first}");
        assert!((first..=200).all(|k| judge_at(&t, &live, k, facts).kind == Leak));
    }
    // With a little churn on top it still gets there within two minutes.
    for seed in 0..10 {
        let mut rng = Lcg::new(200 + seed);
        let (t, live) = series(200, |t| 3 + (t / 5.0).floor() as i64 + rng.int(-1, 1));
        let first = first_at(&t, &live, 2, Leak, &with_age).unwrap();
        assert!(first <= 121, "seed {seed}: leak at {first}");
    }
}

#[test]
fn fixed_pool_and_long_lived_tasks_are_ok() {
    // A pool of 8 workers spawned 2 s after attach, never finishing; idle most of the time.
    let (t, live) = series(300, |t| if t < 2.0 { 0 } else { 8 });
    let facts = |now: f64| Facts { oldest: Some((now - 2.0).max(0.0)), idle: Some(1.0), ..Facts::default() };
    for k in 0..=300 {
        let v = judge_at(&t, &live, k, &facts);
        assert_eq!(v.kind, Fine, "{k}: {v:?}");
    }
    assert!(judge_at(&t, &live, 300, &facts).reason.starts_with("stable around 8"));
    // Five tasks alive since attach.
    let (t, live) = series(300, |_| 5);
    for k in 0..=300 {
        assert_eq!(judge_at(&t, &live, k, &facts).kind, Fine);
    }
}

#[test]
fn warm_up_ramp_then_plateau_is_ok() {
    for seed in 0..20 {
        let mut rng = Lcg::new(300 + seed);
        // 5 new connections/s for 20 s, then a plateau of 100 with a little churn.
        let (t, live) = series(300, |t| (5.0 * t.min(20.0)) as i64 + rng.int(-3, 3));
        let facts = |now: f64| Facts { oldest: Some(now), ..Facts::default() };
        for k in 31..=300 {
            // From t = 30 on, the plateau is at least a third of the window.
            let v = judge_at(&t, &live, k, &facts);
            assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
            if k >= 45 {
                assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
            }
        }
        let v = judge_at(&t, &live, 60, &facts);
        assert!(v.reason.starts_with("levelled off around") && v.reason.contains("after rising from"), "{v:?}");
    }
    // A smooth saturating warm-up: 100 * (1 - exp(-t/10)).
    let (t, live) = series(300, |t| (100.0 * (1.0 - (-t / 10.0).exp())).round() as i64);
    for k in 45..=300 {
        assert_ne!(judge_at(&t, &live, k, &no_facts).kind, Leak, "{k}");
    }
    for k in 90..=300 {
        assert_eq!(judge_at(&t, &live, k, &no_facts).kind, Fine, "{k}");
    }
}

#[test]
fn bursts_returning_to_baseline_are_ok() {
    for seed in 0..10 {
        let mut rng = Lcg::new(400 + seed);
        // Every 30 s a 6 s burst of +80 (ramping up and down over 2 s), baseline 20 +- 2.
        let burst = |t: f64| match (t as i64 + 20) % 30 {
            0 => 40,
            1..=4 => 80,
            5 => 40,
            _ => 0,
        };
        let (t, live) = series(300, |t| 20 + burst(t) + rng.int(-2, 2));
        let facts = |now: f64| Facts { oldest: Some(now.min(6.0)), p99: Some(6.0), finished: 500, ..Facts::default() };
        for k in 2..=300 {
            let v = judge_at(&t, &live, k, &facts);
            assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
            if burst(t[k - 1]) == 0 && k > 20 {
                assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
            }
        }
        let v = judge_at(&t, &live, 100, &facts);
        assert!(v.reason.starts_with("returns to baseline around 2"), "{v:?}");
    }
}

#[test]
fn high_stable_noisy_count_is_ok() {
    for seed in 0..10 {
        let mut rng = Lcg::new(500 + seed);
        let (t, live) = series(400, |_| 200 + (10.0 * rng.gauss()).round() as i64);
        let mut ar = 0.0;
        let (_, live_ar) = series(400, |_| {
            ar = 0.7 * ar + 6.0 * rng.gauss();
            200 + ar.round() as i64
        });
        for (name, live) in [("iid", &live), ("ar1", &live_ar)] {
            for k in 2..=400 {
                let v = judge_at(&t, live, k, &no_facts);
                assert_eq!(v.kind, Fine, "{name} seed {seed} k {k}: {v:?}");
            }
        }
        assert!(judge_at(&t, &live, 400, &no_facts).reason.starts_with("stable around 200 (sd "));
    }
}

#[test]
fn step_up_once_then_flat_is_ok_eventually() {
    for seed in 0..10 {
        let mut rng = Lcg::new(600 + seed);
        let (t, live) = series(240, |t| if t < 30.0 { 10 } else { 60 } + rng.int(-1, 1));
        for k in 2..=240 {
            let v = judge_at(&t, &live, k, &no_facts);
            assert_ne!(v.kind, Leak, "seed {seed} k {k}: {v:?}");
            if k >= 50 {
                assert_eq!(v.kind, Fine, "seed {seed} k {k}: {v:?}");
            }
        }
    }
}

#[test]
fn decreasing_is_ok() {
    let (t, live) = series(60, |t| 100 - t as i64);
    let v = judge_at(&t, &live, 60, &no_facts);
    assert_eq!(v.kind, Fine);
    assert_eq!(v.reason, "decreasing (-1.0/s over 59 s)");
    assert!((v.growth_per_s + 1.0).abs() < 1e-9);
    let mut rng = Lcg::new(7);
    let (t, live) = series(120, |t| 300 - (t / 2.0) as i64 + rng.int(-5, 5));
    assert!((2..=120).all(|k| judge_at(&t, &live, k, &no_facts).kind == Fine));
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let (t, live) = series(1, |_| 5);
    for k in [0, 1] {
        let v = judge_at(&t, &live, k, &no_facts);
        assert_eq!((v.kind, v.confidence, v.growth_per_s), (Fine, 0.0, 0.0));
        assert_eq!(v.reason, format!("too few samples ({k})"));
    }
    let cfg = DetectConfig::default();
    let base = SiteSeries {
        t_s: &[0.0, 1.0, f64::NAN, 3.0, 4.0, 5.0, 6.0, f64::INFINITY],
        live: &[0, 2, 4, 6, 8, 10],
        spawned_total: 0,
        finished_total: 0,
        oldest_live_age_s: Some(f64::NAN),
        finished_age_p99_s: Some(f64::INFINITY),
        max_finished_age_s: Some(-1.0),
        idle_fraction: Some(f64::NAN),
    };
    let v = judge(&base, &cfg);
    assert!(v.confidence.is_finite() && v.growth_per_s.is_finite(), "{v:?}");
    // Identical timestamps and huge counts.
    let same = SiteSeries { t_s: &[1.0; 8], live: &[i64::MAX, i64::MIN, 0, 1, 2, 3, 4, 5], ..base };
    let v = judge(&same, &cfg);
    assert!(v.confidence.is_finite() && v.growth_per_s.is_finite(), "{v:?}");
    assert_eq!(serde_json::to_string(&Leak).unwrap(), "\"leak\"");
    assert_eq!(serde_json::to_string(&Suspect).unwrap(), "\"suspect\"");
}

#[test]
fn leak_starting_late_is_found_quickly() {
    let mut rng = Lcg::new(8);
    let (t, live) = series(700, |t| 50 + rng.int(-2, 2) + if t >= 600.0 { (t - 600.0) as i64 } else { 0 });
    assert!((2..=600).all(|k| judge_at(&t, &live, k, &no_facts).kind == Fine));
    let first = first_at(&t, &live, 600, Leak, &leaky_facts(600.0)).unwrap();
    assert!(first <= 640, "leak at {first}");
}

#[test]
fn young_live_tasks_veto_a_leak() {
    // Long-lived sessions (normally ~10 min) ramping up: growth, but nothing is unusually old.
    let (t, live) = series(120, |t| t as i64);
    let facts = |now: f64| Facts { oldest: Some(now), p99: Some(600.0), max_fin: Some(900.0), finished: 50, ..Facts::default() };
    let v = judge_at(&t, &live, 120, &facts);
    assert_eq!(v.kind, Suspect, "{v:?}");
    assert!(v.reason.contains("not yet a leak: its oldest live task is only"), "{}", v.reason);
}

#[test]
fn irregular_sampling_and_long_series() {
    let mut rng = Lcg::new(9);
    let mut now = 0.0;
    let (t, live): (Vec<f64>, Vec<i64>) = (0..40)
        .map(|_| {
            now += 0.5 + rng.unit();
            (now, (2.0 * now).round() as i64)
        })
        .unzip();
    let k = (1..=40).find(|&k| t[k - 1] - t[0] >= 10.0).unwrap();
    assert_eq!(judge_at(&t, &live, k, &no_facts).kind, Leak);
    // 5000 samples: downsampled, still right, and fast enough.
    let (t, live) = series(5000, |t| 1000 + (t / 10.0) as i64 + rng.int(-5, 5));
    let started = std::time::Instant::now();
    assert_eq!(judge_at(&t, &live, 5000, &no_facts).kind, Leak);
    let (t, live) = series(5000, |_| 1000 + rng.int(-30, 30));
    assert_eq!(judge_at(&t, &live, 5000, &no_facts).kind, Fine);
    assert!(started.elapsed().as_secs_f64() < 5.0);
}

#[test]
#[ignore]
fn explore() {
    let show = |name: &str, t: &[f64], live: &[i64], facts: &dyn Fn(f64) -> Facts| {
        let mut last = String::new();
        for k in 2..=t.len() {
            let v = judge_at(t, live, k, facts);
            let tag = format!("{:?}", v.kind);
            if tag != last || v.kind != Fine && k % 20 == 0 {
                println!("{name} k={k} {tag} {:.2} {}", v.confidence, v.reason);
                last = tag;
            }
        }
    };
    for seed in 0..3 {
        let mut rng = Lcg::new(100 + seed);
        let (t, live) = series(300, |t| t as i64 + 40 + (6.0 * rng.gauss()).round() as i64);
        show(&format!("churn{seed}"), &t, &live, &leaky_facts(0.0));
        show(&format!("churn-noage{seed}"), &t, &live, &no_facts);
    }
    for seed in 0..10 {
        let mut rng = Lcg::new(500 + seed);
        let (t, live) = series(400, |_| 200 + (10.0 * rng.gauss()).round() as i64);
        show(&format!("iid{seed}"), &t, &live, &no_facts);
        let mut ar = 0.0;
        let (_, live_ar) = series(400, |_| {
            ar = 0.7 * ar + 6.0 * rng.gauss();
            200 + ar.round() as i64
        });
        show(&format!("ar{seed}"), &t, &live_ar, &no_facts);
    }
}
