//! Scenario tests: synthetic live-count series with expected verdicts, and the helpers they share.

mod healthy;
mod leaks;

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
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
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
        finished_total: f.finished,
        oldest_live_age_s: f.oldest,
        finished_age_p99_s: f.p99,
        max_finished_age_s: f.max_fin,
        idle_fraction: f.idle,
    };
    let v = judge(&s, &DetectConfig::default());
    assert!(
        v.confidence.is_finite() && (0.0..=1.0).contains(&v.confidence),
        "{v:?}"
    );
    assert!(v.growth_per_s.is_finite(), "{v:?}");
    assert!(
        !v.reason.is_empty() && !v.reason.contains("NaN") && !v.reason.contains("inf"),
        "{v:?}"
    );
    match v.kind {
        Leak => assert!(v.confidence >= 0.8, "{v:?}"),
        Suspect => assert!((0.3..0.8).contains(&v.confidence), "{v:?}"),
        Fine => assert!(v.confidence < 0.3, "{v:?}"),
    }
    v
}

/// Sample counts to judge at: every one up to `dense`, then every `step`-th (keeps debug tests fast).
fn checkpoints(from: usize, dense: usize, to: usize, step: usize) -> impl Iterator<Item = usize> {
    (from..=to).filter(move |&k| k <= dense || k % step == 0 || k == to)
}

/// First sample count (>= `from`) at which the verdict is `kind`, if any.
fn first_at(
    t: &[f64],
    live: &[i64],
    from: usize,
    kind: VerdictKind,
    facts: &dyn Fn(f64) -> Facts,
) -> Option<usize> {
    (from..=t.len()).find(|&k| judge_at(t, live, k, facts).kind == kind)
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
        finished_total: 0,
        oldest_live_age_s: Some(f64::NAN),
        finished_age_p99_s: Some(f64::INFINITY),
        max_finished_age_s: Some(-1.0),
        idle_fraction: Some(f64::NAN),
    };
    let v = judge(&base, &cfg);
    assert!(
        v.confidence.is_finite() && v.growth_per_s.is_finite(),
        "{v:?}"
    );
    // Timestamps out of order.
    let shuffled = SiteSeries {
        t_s: &[5.0, 1.0, 9.0, 2.0, 0.0, 7.0, 3.0, 8.0],
        live: &[0, 1, 2, 3, 4, 5, 6, 7],
        ..base
    };
    let v = judge(&shuffled, &cfg);
    assert!(
        v.confidence.is_finite() && v.growth_per_s.is_finite(),
        "{v:?}"
    );
    // Identical timestamps and huge counts.
    let same = SiteSeries {
        t_s: &[1.0; 8],
        live: &[i64::MAX, i64::MIN, 0, 1, 2, 3, 4, 5],
        ..base
    };
    let v = judge(&same, &cfg);
    assert!(
        v.confidence.is_finite() && v.growth_per_s.is_finite(),
        "{v:?}"
    );
    assert_eq!(serde_json::to_string(&Leak).unwrap(), "\"leak\"");
    assert_eq!(serde_json::to_string(&Suspect).unwrap(), "\"suspect\"");
}
