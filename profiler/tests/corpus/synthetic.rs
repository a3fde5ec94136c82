//! Synthetic live-count series of every shape the detector must judge: leaks over rates,
//! sampling intervals, jitter, drift against the program's own tick, missing samples, churn and
//! backlogs; and the healthy shapes that must never be called a leak.
use leakprof::detect::Facts;

use super::{Case, Label};

/// Tiny deterministic PRNG (PCG-style LCG constants), so the corpus needs no `rand`.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        let mut l = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        l.unit();
        l
    }
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Approximately standard normal (Irwin-Hall, 12 uniforms).
    pub fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
    /// Poisson(lambda) by normal approximation above 30, by inversion below.
    pub fn poisson(&mut self, lambda: f64) -> i64 {
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.gauss()).round().max(0.0) as i64;
        }
        let (l, mut k, mut p) = ((-lambda).exp(), 0, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// Sample times: every `dt` seconds from attach, with `drift` (relative) and `jitter` (share of
/// dt, uniform +-) and a `missing` share of samples dropped.
fn times(rng: &mut Lcg, dt: f64, span_s: f64, drift: f64, jitter: f64, missing: f64) -> Vec<f64> {
    let n = (span_s / dt).round() as usize;
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        let t = i as f64 * dt * (1.0 + drift) + (rng.unit() - 0.5) * 2.0 * jitter * dt;
        if rng.unit() >= missing {
            out.push(t);
        }
    }
    out
}

/// How a leak's samples are made.
#[derive(Clone, Copy, Debug)]
enum Leak {
    /// One task every 1/rate s exactly (a ticker), sampled with a slow drift against the tick.
    Ticks,
    /// Poisson arrivals.
    Poisson,
    /// Ticks under healthy churn (~20 short-lived tasks in flight, which do finish).
    Churn,
    /// Ticks, 20% of the samples missing and 20% jitter.
    Missing,
    /// Ticks on top of a backlog of 5,000 tasks leaked before attach.
    Backlog,
    /// Ticks sampled by a sampler whose phase wanders slowly against them (each sample a little
    /// late, by an amount that drifts over ~15 samples): increments like 9, 10, 10, 11, ... whose
    /// residuals are small but strongly autocorrelated (the Go census runs of issue #14).
    Beat,
}

/// Seconds within which a leak of `rate`/s must be `leak`, given its sample times `t`: never
/// before 10 s (a leak of 2/s at 1 s sampling is flagged within 10 s) nor before its
/// `min_samples`th sample (6, the fewest the detector judges, for a clean leak; more where Poisson
/// arrivals or churn add noise), and not before it rose by `rise` tasks (16 for a clean leak, more
/// with noise).
pub fn deadline_s(t: &[f64], rate: f64, rise: f64, min_samples: usize) -> f64 {
    let nth = t.get(min_samples - 1).copied().unwrap_or(f64::INFINITY);
    10.0f64.max(nth).max(rise / rate) + 1e-6
}

fn leak_case(kind: Leak, rate: f64, dt: f64, seed: u64, with_facts: bool) -> Case {
    let mut rng = Lcg::new(seed);
    let (rise, min_samples) = match kind {
        Leak::Churn => (48.0, 10),
        Leak::Poisson => (24.0, 7),
        _ => (16.0, 6),
    };
    // long enough to be found and then to show it stays found
    let span = (1.5 * rise / rate).max(60.0).max(12.0 * dt);
    let (drift, jitter, missing) = match kind {
        Leak::Missing => (0.003, 0.2, 0.2),
        _ => (0.003, 0.05, 0.0),
    };
    let mut t = times(&mut rng, dt, span, drift, jitter, missing);
    if matches!(kind, Leak::Beat) {
        for (i, ti) in t.iter_mut().enumerate() {
            *ti += 0.3 * dt * (i as f64 * std::f64::consts::TAU / 15.0).sin();
        }
    }
    let deadline = deadline_s(&t, rate, rise, min_samples);
    let phase = rng.unit() / rate;
    let base = if matches!(kind, Leak::Backlog) { 5000 } else { 0 };
    let mut arrivals = 0i64;
    let mut last_t = 0.0;
    let mut live = Vec::new();
    let mut facts = Vec::new();
    for &ti in &t {
        let leaked = match kind {
            Leak::Poisson => {
                arrivals += rng.poisson(rate * (ti - last_t).max(0.0));
                arrivals
            }
            _ => ((ti - phase) * rate).floor().max(0.0) as i64 + i64::from(ti >= phase),
        };
        last_t = ti;
        let churn = if matches!(kind, Leak::Churn) { rng.poisson(20.0) } else { 0 };
        live.push(base + leaked + churn);
        facts.push(if with_facts {
            Facts {
                finished_total: if matches!(kind, Leak::Churn) { (ti * 200.0) as u64 } else { 0 },
                oldest_live_age_s: Some(if base > 0 { ti + 3600.0 } else { ti }),
                finished_age_p99_s: matches!(kind, Leak::Churn).then_some(0.05),
                max_finished_age_s: matches!(kind, Leak::Churn).then_some(0.2),
                idle_fraction: Some(if matches!(kind, Leak::Churn) { 0.6 } else { 1.0 }),
            }
        } else {
            Facts::default()
        });
    }
    Case {
        name: format!("{kind:?} leak {rate}/s every {dt} s{}", if with_facts { "" } else { " (no facts)" }),
        label: Label::Leak { deadline_s: deadline },
        t,
        live,
        facts,
    }
}

/// Every synthetic leak: rates 0.2-50/s, intervals 0.5-5 s, each way of making samples.
pub fn leaks() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 1000;
    for &rate in &[0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0] {
        for &dt in &[0.5, 1.0, 2.0, 5.0] {
            for kind in [Leak::Ticks, Leak::Poisson, Leak::Churn, Leak::Missing, Leak::Backlog, Leak::Beat] {
                seed += 1;
                out.push(leak_case(kind, rate, dt, seed, true));
                if matches!(kind, Leak::Ticks | Leak::Poisson) && dt == 1.0 {
                    out.push(leak_case(kind, rate, dt, seed + 50_000, false));
                }
            }
        }
    }
    out
}

fn healthy(name: &str, dt: f64, span: f64, seed: u64, f: impl FnMut(&mut Lcg, f64) -> (i64, Facts)) -> Case {
    healthy_from(name, dt, span, seed, 0.0, f)
}

/// A healthy shape that must not be `leak` from `from_s` on.
fn healthy_from(
    name: &str,
    dt: f64,
    span: f64,
    seed: u64,
    from_s: f64,
    mut f: impl FnMut(&mut Lcg, f64) -> (i64, Facts),
) -> Case {
    let mut rng = Lcg::new(seed);
    let t = times(&mut rng, dt, span, 0.003, 0.05, 0.0);
    let (live, facts) = t.iter().map(|&ti| f(&mut rng, ti)).unzip();
    Case { name: name.to_string(), label: Label::Healthy { from_s }, t, live, facts }
}

/// A warm-up that rises for 20 s (about 100 tasks, never finishing) rises like a leak; it must be
/// `ok` again from 60 s on (the saturating one still makes a new high now and then until ~45 s).
const RAMP_OK_FROM_S: f64 = 60.0;

/// Facts of a site whose tasks finish within `p99` s and whose oldest live task is `oldest` s old.
fn young(oldest: f64, p99: f64, t: f64) -> Facts {
    Facts {
        finished_total: (t * 50.0) as u64 + 1,
        oldest_live_age_s: Some(oldest),
        finished_age_p99_s: Some(p99),
        max_finished_age_s: Some(p99 * 2.0),
        idle_fraction: Some(0.5),
    }
}

/// Facts of a fixed set of long-lived tasks that never finish, alive since attach.
fn resident(t: f64) -> Facts {
    Facts { oldest_live_age_s: Some(t), idle_fraction: Some(1.0), ..Facts::default() }
}

/// Every healthy shape, at 1 s (and some at 0.5 s and 5 s), for 5 minutes of samples.
pub fn healthy_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (i, &dt) in [0.5f64, 1.0, 5.0].iter().enumerate() {
        let s = 2000 + 100 * i as u64;
        let span = 300.0 * dt.max(1.0);
        out.push(healthy(&format!("fixed pool of 8 every {dt} s"), dt, span, s, |r, t| {
            (8 - i64::from(r.unit() < 0.03), resident(t))
        }));
        out.push(healthy(&format!("churn of ~20 short requests every {dt} s"), dt, span, s + 1, |r, t| {
            (r.poisson(20.0), young(0.05, 0.05, t))
        }));
        out.push(healthy_from(&format!("warm-up ramp to 100 then plateau every {dt} s"), dt, span, s + 2, RAMP_OK_FROM_S, |r, t| {
            ((5.0 * t.min(20.0)) as i64 + (r.unit() * 7.0) as i64 - 3, resident(t))
        }));
        out.push(healthy_from(&format!("saturating warm-up every {dt} s"), dt, span, s + 3, RAMP_OK_FROM_S, |_, t| {
            ((100.0 * (1.0 - (-t / 10.0).exp())).round() as i64, resident(t))
        }));
        out.push(healthy(&format!("bursts back to baseline every {dt} s"), dt, span, s + 4, |r, t| {
            let burst = if t % 20.0 < 3.0 { 50 } else { 0 };
            (10 + burst + r.poisson(2.0), young(2.0, 3.0, t))
        }));
        out.push(healthy(&format!("high stable count every {dt} s"), dt, span, s + 5, |r, t| {
            (r.poisson(5000.0), young(0.5, 1.0, t))
        }));
        let mut x = 100.0;
        out.push(healthy(&format!("mean-reverting random walk every {dt} s"), dt, span, s + 6, move |r, t| {
            x += 2.0 * r.gauss() - 0.05 * (x - 100.0);
            (x.round() as i64, young(5.0, 10.0, t))
        }));
        let mut y = 100i64;
        out.push(healthy(&format!("bounded random walk every {dt} s"), dt, span, s + 7, move |r, t| {
            y = (y + if r.unit() < 0.5 { -1 } else { 1 }).clamp(80, 120);
            (y, young(20.0, 60.0, t))
        }));
        out.push(healthy(&format!("sawtooth fill and drain every {dt} s"), dt, span, s + 8, |_, t| {
            ((2.0 * (t % 20.0)) as i64, young(t % 20.0, 20.0, t))
        }));
        out.push(healthy(&format!("one step up then flat every {dt} s"), dt, span, s + 9, |_, t| {
            (if t < 30.0 { 10 } else { 60 }, resident(t))
        }));
        out.push(healthy(&format!("more load, young tasks every {dt} s"), dt, span, s + 10, |r, t| {
            ((20.0 + 0.5 * t) as i64 + r.poisson(3.0), young(0.5, 1.0, t))
        }));
        out.push(healthy(&format!("slow daily-like wave, young tasks every {dt} s"), dt, span, s + 11, |r, t| {
            let v = 100.0 + 30.0 * (t / 600.0 * std::f64::consts::TAU).sin();
            (v.round() as i64 + r.poisson(2.0), young(1.0, 2.0, t))
        }));
    }
    out
}
