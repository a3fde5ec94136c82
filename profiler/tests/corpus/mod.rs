//! The detector corpus: cases (a series with its facts at every sample and what it is), replayed
//! sample by sample through the detector and its latch exactly as a run judges them.
pub mod recorded;
pub mod synthetic;

use leakprof::detect::{judge, DetectConfig, Facts, Latch, SiteSeries, VerdictKind};

/// A stretch of fewer samples than this not `leak` between two `leak`s is flicker.
pub const FLICKER_SAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// Must be `leak` within this many seconds of attach, never flicker, and be `leak` at the end.
    Leak { deadline_s: f64 },
    /// Must never be `leak` from this many seconds after attach on (0: never at all). A warm-up
    /// ramp watched from the program's start rises like a leak until it levels off.
    Healthy { from_s: f64 },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub label: Label,
    /// Seconds since attach of each sample, the live count and the facts at that sample.
    pub t: Vec<f64>,
    pub live: Vec<i64>,
    pub facts: Vec<Facts>,
}

/// What replaying a case gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub label: Label,
    /// Seconds since attach of the first and the last `leak`.
    pub first_leak_s: Option<f64>,
    pub last_leak_s: Option<f64>,
    /// Stretches of samples not `leak` between two `leak`s shorter than `FLICKER_SAMPLES`.
    pub flickers: usize,
    /// Samples not `leak` in the current stretch (after the first `leak`).
    pub gap: usize,
    /// The last verdict and its confidence.
    pub last: (VerdictKind, f64),
    /// The reason of the first `leak` (or of the last verdict).
    pub reason: String,
}

impl Outcome {
    /// Why this outcome breaks its case's requirement, if it does.
    pub fn failure(&self) -> Option<String> {
        match self.label {
            Label::Healthy { from_s } => {
                self.last_leak_s.filter(|&t| t >= from_s).map(|t| format!("healthy, but `leak` at {t:.1} s: {}", self.reason))
            }
            Label::Leak { deadline_s } => match self.first_leak_s {
                None => Some(format!("never `leak` (last {:?}: {})", self.last.0, self.reason)),
                Some(t) if t > deadline_s + 1e-9 => Some(format!("`leak` only at {t:.1} s, deadline {deadline_s:.0} s")),
                Some(_) if self.flickers > 0 => {
                    Some(format!("flickered: {} short stretches not `leak` between `leak`s", self.flickers))
                }
                Some(_) if self.gap > 0 => Some(format!("released: not `leak` for the last {} samples", self.gap)),
                Some(_) => None,
            },
        }
    }
}

/// Judges every prefix of the case in order, through one latch, as a session does.
pub fn replay(case: &Case, cfg: &DetectConfig) -> Outcome {
    let mut latch = Latch::default();
    let mut out = Outcome {
        name: case.name.clone(),
        label: case.label,
        first_leak_s: None,
        last_leak_s: None,
        flickers: 0,
        gap: 0,
        last: (VerdictKind::Ok, 0.0),
        reason: String::new(),
    };
    let healthy_from = match case.label {
        Label::Healthy { from_s } => Some(from_s),
        Label::Leak { .. } => None,
    };
    // CORPUS_TRACE=fragment prints every sample of the cases whose name contains it.
    let trace = std::env::var("CORPUS_TRACE").is_ok_and(|f| case.name.contains(&f));
    for k in 1..=case.t.len() {
        let raw = judge(&SiteSeries::new(&case.t[..k], &case.live[..k], &case.facts[k - 1]), cfg);
        if trace {
            println!("{} t={:.1} live={} raw {:?} {:.2} {}", case.name, case.t[k - 1], case.live[k - 1], raw.kind, raw.confidence, raw.reason);
        }
        let v = latch.update(case.t[k - 1], case.live[k - 1], raw, cfg);
        if v.kind == VerdictKind::Leak {
            out.last_leak_s = Some(case.t[k - 1]);
        }
        if v.kind == VerdictKind::Leak && healthy_from.is_some_and(|f| case.t[k - 1] >= f) {
            out.reason = v.reason.clone();
            break; // already a failure: no need to go on
        }
        if v.kind == VerdictKind::Leak && out.first_leak_s.is_none() {
            out.first_leak_s = Some(case.t[k - 1]);
            out.reason = v.reason.clone();
        } else if v.kind != VerdictKind::Leak && out.first_leak_s.is_some() {
            out.gap += 1;
        } else if v.kind == VerdictKind::Leak && out.gap > 0 {
            // back to `leak`: a short stretch is flicker; a long one is a pause of the leak itself
            // (a slow Poisson leak can sit still for half a minute)
            out.flickers += usize::from(out.gap < FLICKER_SAMPLES);
            out.gap = 0;
        }
        out.last = (v.kind, v.confidence);
        if out.first_leak_s.is_none() {
            out.reason = v.reason;
        }
    }
    out
}

/// Every case: synthetic and recorded.
pub fn all_cases() -> Vec<Case> {
    let mut v = synthetic::leaks();
    v.extend(synthetic::healthy_cases());
    v.extend(recorded::cases());
    v
}

/// Replays every case with `cfg`; returns the outcomes and the failures among them.
pub fn run(cases: &[Case], cfg: &DetectConfig) -> (Vec<Outcome>, Vec<String>) {
    let outcomes: Vec<Outcome> = cases.iter().map(|c| replay(c, cfg)).collect();
    let failures = outcomes.iter().filter_map(|o| o.failure().map(|f| format!("{}: {f}", o.name))).collect();
    (outcomes, failures)
}
