//! Runtime-neutral leak detector: judges one spawn site's live-count series.
//!
//! A site is flagged when its live count keeps growing: a significant Mann-Kendall trend (its
//! variance widened when the noise is autocorrelated), a Theil-Sen slope above a floor, a net
//! rise well above the series' own noise, and growth that persists into the most recent third of
//! the window (a ramp that levelled off, a single step, bursts that return are `ok`). If no live
//! task is older than the age by which this site's tasks normally finish, growth is load, not
//! accumulation. The size of the rise, its significance, the share of intervals in which the
//! count did not fall, and age and idle evidence set the confidence. Besides the whole window,
//! suffix windows (last 1/2, 1/4, ...) are judged, so a leak that starts late is not drowned by
//! a long flat history; they must reach a new high and beat the noise that preceded them.

mod evidence;
pub mod latch;
pub mod noise;
pub mod trend;
mod window;

#[cfg(test)]
mod tests;

use evidence::clamp01;
pub use latch::Latch;
use noise::noise_sd;
use serde::{Deserialize, Serialize};
use window::{judge_window, med};

/// One site's samples and side facts. `t_s` and `live` are paired by index (extra entries of the
/// longer one are ignored, as are samples with a non-finite time).
///
/// Nothing here depends on how a runtime counts: how many tasks were "spawned" is deliberately
/// absent (Go's census counts goroutines alive before attach as spawned, tokio's probes do not),
/// so the same series and facts get the same verdict whichever runtime they came from.
#[derive(Debug, Clone, Copy)]
pub struct SiteSeries<'a> {
    pub t_s: &'a [f64],
    pub live: &'a [i64],
    /// Tasks of this site seen to finish (0: none has, as far as the collector can tell).
    pub finished_total: u64,
    pub oldest_live_age_s: Option<f64>,
    pub finished_age_p99_s: Option<f64>,
    pub max_finished_age_s: Option<f64>,
    pub idle_fraction: Option<f64>,
}

/// A site's side facts as of one sample: what the detector uses besides the live-count series.
/// Owned and serializable, so `--record` can store them and a replay can feed them back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub finished_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_live_age_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_age_p99_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_finished_age_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_fraction: Option<f64>,
}

impl<'a> SiteSeries<'a> {
    /// A series with its facts.
    pub fn new(t_s: &'a [f64], live: &'a [i64], f: &Facts) -> Self {
        SiteSeries {
            t_s,
            live,
            finished_total: f.finished_total,
            oldest_live_age_s: f.oldest_live_age_s,
            finished_age_p99_s: f.finished_age_p99_s,
            max_finished_age_s: f.max_finished_age_s,
            idle_fraction: f.idle_fraction,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    /// No sustained growth (or too few samples to say).
    Ok,
    /// Growth worth watching; not (yet) conclusive: see the reason.
    Suspect,
    /// Sustained growth with enough samples, size, significance and evidence.
    Leak,
}

/// `confidence` is how strongly the site looks like a leak (a ranking key): `leak` >= 0.8,
/// `suspect` in [0.3, 0.8), `ok` < 0.3 (0 when there is no upward trend at all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    pub confidence: f64,
    /// Theil-Sen slope of the judged window, live tasks per second.
    pub growth_per_s: f64,
    pub reason: String,
}

/// Thresholds. See `Default` for the values; each is checked against the detector corpus
/// (`profiler/tests/detector_corpus.rs`, table in `docs/detector.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectConfig {
    /// Fewer samples than this: `ok`, "too few samples" (6 is the fewest with which a perfectly
    /// monotonic series reaches Mann-Kendall p < 0.01).
    pub min_points: usize,
    /// `leak` needs at least this many samples ...
    pub min_points_leak: usize,
    /// ... spanning at least this many seconds.
    pub min_span_leak_s: f64,
    /// Longer windows are downsampled to this many points for the O(n^2) statistics.
    pub max_points: usize,
    /// ... and suffix windows to this many (there are up to `sub_windows` of them per judgement).
    pub sub_max_points: usize,
    /// One-sided Mann-Kendall p-value below which an upward trend counts at all.
    pub alpha: f64,
    /// p-value at which trend significance gets full credit.
    pub alpha_full: f64,
    /// The autocorrelation correction of the trend test applies in full where the rise is at most
    /// `autocorr_q_none` residual sds, not at all from `autocorr_q_full` residual sds on.
    pub autocorr_q_none: f64,
    pub autocorr_q_full: f64,
    /// Theil-Sen slopes below this (tasks/s) are ignored.
    pub min_slope_per_s: f64,
    /// The trend's rise (slope x window) must reach this many tasks ...
    pub min_rise: f64,
    /// ... and `noise_k * sqrt(1 + noise_small_n / n)` noise standard deviations (n samples).
    pub noise_k: f64,
    pub noise_small_n: f64,
    /// Noise estimates are floored at this (tasks).
    pub noise_floor: f64,
    /// A rise of this many tasks (or `full_rise_noise_k` noise sds if larger) gets full credit.
    pub full_rise: f64,
    pub full_rise_noise_k: f64,
    /// The recent part of a window: its last half by time, at least `recent_min_points` samples.
    pub recent_fraction: f64,
    pub recent_min_points: usize,
    /// The recent slope must be at least this share of the window's slope ...
    pub recent_ratio: f64,
    /// ... and its own one-sided Mann-Kendall p-value below this.
    pub recent_alpha: f64,
    /// One jump and flat on both sides (step SSE < this x line SSE) is at most `suspect`.
    pub step_ratio: f64,
    /// Suffix windows tried besides the whole one: the last 1/2, 1/4, ... of the samples (this many
    /// halvings) ...
    pub sub_windows: u32,
    /// ... if they hold at least this many samples over at least this many seconds. A suffix window
    /// is judged against the noise of the samples before it, and must reach a new high.
    pub sub_min_points: usize,
    pub sub_min_span_s: f64,
    /// Oldest live task this many times older than the normal lifetime: full age evidence.
    pub age_ratio_full: f64,
    /// Normal lifetimes shorter than this (s) are treated as this.
    pub age_floor_s: f64,
    /// When nothing ever finished: evidence weight, reached when the oldest live task is this old.
    pub none_finished_weight: f64,
    pub none_finished_full_s: f64,
    /// Idle share mapped linearly from `idle_low` (no evidence) to `idle_full` (full evidence).
    pub idle_low: f64,
    pub idle_full: f64,
    /// Share of non-falling intervals mapped from `mono_low` (none) to `mono_full` (full).
    pub mono_low: f64,
    pub mono_full: f64,
    /// Evidence weights; their sum is capped at `boost_cap` and fills that share of the gap to 1.
    pub w_age: f64,
    pub w_idle: f64,
    pub w_mono: f64,
    pub boost_cap: f64,
    /// Confidence needed for `leak`; flagged sites below it are `suspect` (at least `suspect_floor`).
    pub leak_confidence: f64,
    pub suspect_floor: f64,
    /// A site judged `leak` stays `leak` through this many samples in a row whose window alone
    /// falls short, or this share of the samples it was judged `leak`, if more (see `latch`).
    pub leak_hold_samples: u32,
    pub leak_hold_fraction: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            min_points: 6,
            min_points_leak: 6,
            min_span_leak_s: 5.0,
            max_points: 300,
            sub_max_points: 150,
            alpha: 0.01,
            alpha_full: 1e-4,
            autocorr_q_none: 4.0,
            autocorr_q_full: 16.0,
            min_slope_per_s: 0.01,
            min_rise: 3.0,
            noise_k: 4.0,
            noise_small_n: 20.0,
            noise_floor: 0.5,
            full_rise: 16.0,
            full_rise_noise_k: 6.0,
            recent_fraction: 0.5,
            recent_min_points: 4,
            recent_ratio: 0.5,
            recent_alpha: 0.25,
            step_ratio: 0.25,
            sub_windows: 8,
            sub_min_points: 20,
            sub_min_span_s: 20.0,
            age_ratio_full: 10.0,
            age_floor_s: 0.001,
            none_finished_weight: 0.3,
            none_finished_full_s: 30.0,
            idle_low: 0.5,
            idle_full: 0.95,
            mono_low: 0.6,
            mono_full: 0.95,
            w_age: 0.35,
            w_idle: 0.1,
            w_mono: 0.15,
            boost_cap: 0.5,
            leak_confidence: 0.8,
            suspect_floor: 0.3,
            leak_hold_samples: 6,
            leak_hold_fraction: 0.5,
        }
    }
}

/// Judges one site. Never panics; all numbers in the verdict are finite.
pub fn judge(s: &SiteSeries, cfg: &DetectConfig) -> Verdict {
    let (t, y): (Vec<f64>, Vec<f64>) = s
        .t_s
        .iter()
        .zip(s.live)
        .filter(|(t, _)| t.is_finite())
        .map(|(&t, &v)| (t, v as f64))
        .unzip();
    let ev = evidence::gather(s, cfg);
    let mut best = judge_window(&t, &y, None, 0.0, cfg.max_points, &ev, cfg);
    if let Some(&last) = t.last() {
        // suffix windows by sample count (the last half, quarter, ... of the samples): as by time
        // for evenly spaced samples, and the same work whatever span a long, thinned history covers
        for k in 1..=cfg.sub_windows {
            if best.kind == VerdictKind::Leak {
                break;
            }
            let i0 = t.len() - (t.len() >> k);
            if t.len() - i0 < cfg.sub_min_points || i0 >= t.len() || last - t[i0] < cfg.sub_min_span_s || i0 == 0 {
                break;
            }
            let prefix_max = y[..i0].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // Cheap pre-check of the new-high rule (the last third must top everything before).
            let r0 = t.partition_point(|&x| x < last - (last - t[i0]) * cfg.recent_fraction);
            let r0 = r0
                .min(t.len().saturating_sub(cfg.recent_min_points))
                .clamp(i0, t.len() - 1);
            if med(&y[r0..]) <= prefix_max {
                continue;
            }
            let mut v = judge_window(&t[i0..], &y[i0..], Some(prefix_max), 0.0, cfg.sub_max_points, &ev, cfg);
            if v.kind != VerdictKind::Ok {
                // Also judge against the noise of the samples just before the window (same count);
                // a larger noise can only make the verdict milder, so this runs only when needed.
                let j0 = i0.saturating_sub(t.len() - i0);
                let hint = noise_sd(&t[j0..i0], &y[j0..i0], 0.0);
                v = judge_window(&t[i0..], &y[i0..], Some(prefix_max), hint, cfg.sub_max_points, &ev, cfg);
            }
            if v.kind != VerdictKind::Ok && (v.kind, v.confidence) > (best.kind, best.confidence) {
                best = v;
            }
        }
    }
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    Verdict {
        confidence: clamp01(best.confidence),
        growth_per_s: finite(best.growth_per_s),
        ..best
    }
}
