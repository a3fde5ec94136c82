//! Runtime-neutral leak detector: judges one spawn site's live-count series.
//!
//! A site is flagged when its live count grows monotonically: a significant Mann-Kendall trend,
//! a Theil-Sen slope above a floor, a net rise above the series' own noise, and growth that
//! persists into the most recent third of the window (a ramp that levelled off is `ok`). Age and
//! idle evidence, the share of intervals in which the count did not fall, and the size of the
//! rise set the confidence. Windows ending now (whole, last 1/2, 1/4, 1/8) are judged so a leak
//! that starts late is not drowned by a long flat history.

mod evidence;
pub mod trend;

#[cfg(test)]
mod tests;

use evidence::{clamp01, fmt_age, fmt_rate, Evidence};
use serde::Serialize;
use trend::{downsample_indices, mann_kendall, median, noise_sd, step_vs_line, theil_sen};

/// One site's samples and side facts. `t_s` and `live` are paired by index (extra entries of the
/// longer one are ignored, as are samples with a non-finite time).
#[derive(Debug, Clone, Copy)]
pub struct SiteSeries<'a> {
    pub t_s: &'a [f64],
    pub live: &'a [i64],
    pub spawned_total: u64,
    pub finished_total: u64,
    pub oldest_live_age_s: Option<f64>,
    pub finished_age_p99_s: Option<f64>,
    pub max_finished_age_s: Option<f64>,
    pub idle_fraction: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    Ok,
    Suspect,
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

/// Thresholds. See `Default` for the values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectConfig {
    /// Fewer samples than this: `ok`, "too few samples".
    pub min_points: usize,
    /// `leak` needs at least this many samples ...
    pub min_points_leak: usize,
    /// ... spanning at least this many seconds.
    pub min_span_leak_s: f64,
    /// Longer windows are downsampled to this many points for the O(n^2) statistics.
    pub max_points: usize,
    /// One-sided Mann-Kendall p-value below which an upward trend counts at all.
    pub alpha: f64,
    /// p-value at which trend significance gets full credit.
    pub alpha_full: f64,
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
    /// The recent part of a window: its last third by time, at least `recent_min_points` samples.
    pub recent_fraction: f64,
    pub recent_min_points: usize,
    /// The recent slope must be at least this share of the window's slope ...
    pub recent_ratio: f64,
    /// ... and its own one-sided Mann-Kendall p-value below this.
    pub recent_alpha: f64,
    /// One jump and flat on both sides (step SSE < this x line SSE) is at most `suspect`.
    pub step_ratio: f64,
    /// Suffix windows tried besides the whole one: last 1/2, 1/4, ... (this many halvings) ...
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
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            min_points: 4,
            min_points_leak: 6,
            min_span_leak_s: 5.0,
            max_points: 300,
            alpha: 0.01,
            alpha_full: 1e-4,
            min_slope_per_s: 0.01,
            min_rise: 3.0,
            noise_k: 3.0,
            noise_small_n: 10.0,
            noise_floor: 0.5,
            full_rise: 16.0,
            full_rise_noise_k: 6.0,
            recent_fraction: 1.0 / 3.0,
            recent_min_points: 4,
            recent_ratio: 0.5,
            recent_alpha: 0.25,
            step_ratio: 0.25,
            sub_windows: 3,
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
        }
    }
}

/// Judges one site. Never panics; all numbers in the verdict are finite.
pub fn judge(s: &SiteSeries, cfg: &DetectConfig) -> Verdict {
    let (t, y): (Vec<f64>, Vec<f64>) =
        s.t_s.iter().zip(s.live).filter(|(t, _)| t.is_finite()).map(|(&t, &v)| (t, v as f64)).unzip();
    let ev = evidence::gather(s, cfg);
    let mut best = judge_window(&t, &y, None, 0.0, &ev, cfg);
    if let (Some(&first), Some(&last)) = (t.first(), t.last()) {
        for k in 1..=cfg.sub_windows {
            if best.kind == VerdictKind::Leak {
                break;
            }
            let cut = last - (last - first) * 0.5f64.powi(k as i32);
            let i0 = t.partition_point(|&x| x < cut);
            if t.len() - i0 < cfg.sub_min_points || last - t[i0] < cfg.sub_min_span_s || i0 == 0 {
                break;
            }
            let prefix_max = y[..i0].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let hint = window_noise(&t[..i0], &y[..i0], cfg).1;
            let v = judge_window(&t[i0..], &y[i0..], Some(prefix_max), hint, &ev, cfg);
            if v.kind != VerdictKind::Ok && (v.kind, v.confidence) > (best.kind, best.confidence) {
                best = v;
            }
        }
    }
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    Verdict { confidence: clamp01(best.confidence), growth_per_s: finite(best.growth_per_s), ..best }
}

fn verdict(kind: VerdictKind, confidence: f64, growth_per_s: f64, reason: String) -> Verdict {
    Verdict { kind, confidence, growth_per_s, reason }
}

fn med(v: &[f64]) -> f64 {
    median(&mut v.to_vec()).unwrap_or(0.0)
}

/// Theil-Sen slope and noise sd of a window (downsampled to `max_points` for the slope).
fn window_noise(t: &[f64], y: &[f64], cfg: &DetectConfig) -> (f64, f64) {
    let idx = downsample_indices(t.len(), cfg.max_points);
    let (td, yd): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (t[i], y[i])).unzip();
    let slope = theil_sen(&td, &yd).unwrap_or(0.0);
    (slope, noise_sd(t, y, slope))
}

/// Judges the samples of one window ending now. `prefix_max` (for suffix windows) is the highest
/// count before the window: a suffix window is only flagged if it reaches a new high.
/// `noise_hint` is a noise sd known from elsewhere (the samples before a suffix window).
fn judge_window(
    t: &[f64],
    y: &[f64],
    prefix_max: Option<f64>,
    noise_hint: f64,
    ev: &Evidence,
    cfg: &DetectConfig,
) -> Verdict {
    use VerdictKind::{Leak, Ok, Suspect};
    let n = t.len();
    if n < cfg.min_points.max(2) {
        return verdict(Ok, 0.0, 0.0, format!("too few samples ({n})"));
    }
    let span = t[n - 1] - t[0];
    let dur = fmt_age(span);
    let idx = downsample_indices(n, cfg.max_points);
    let (td, yd): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (t[i], y[i])).unzip();
    let mk = mann_kendall(&yd);
    let slope = theil_sen(&td, &yd).unwrap_or(0.0);
    let sd = noise_sd(t, y, slope).max(noise_hint).max(cfg.noise_floor);
    let rise = slope * span;
    let level = med(y);

    if slope <= 0.0 || mk.s <= 0 || mk.p_increase >= cfg.alpha {
        let reason = if slope < 0.0 && mk.s < 0 && mk.p_two_sided < cfg.alpha {
            format!("decreasing ({} over {dur})", fmt_rate(slope))
        } else {
            shape_reason(y, level, sd, &dur, cfg)
        };
        return verdict(Ok, 0.0, slope, reason);
    }
    let f_z = clamp01((cfg.alpha / mk.p_increase.max(1e-300)).log10() / (cfg.alpha / cfg.alpha_full).log10());
    let ok_conf = 0.25 * f_z;
    if slope < cfg.min_slope_per_s {
        return verdict(Ok, ok_conf, slope, format!("growing too slowly to matter ({})", fmt_rate(slope)));
    }
    let noise_k = cfg.noise_k * (1.0 + cfg.noise_small_n.max(0.0) / n as f64).sqrt();
    if rise < cfg.min_rise.max(noise_k * sd) {
        let reason = format!("rise of {rise:.1} over {dur} is within noise (sd {sd:.1}) around {level:.0}");
        return verdict(Ok, ok_conf, slope, reason);
    }

    // Growth must persist into the recent part of the window.
    let cut = t[n - 1] - span * cfg.recent_fraction;
    let r0 = t.partition_point(|&x| x < cut).min(n.saturating_sub(cfg.recent_min_points));
    let ridx = downsample_indices(n - r0, cfg.max_points);
    let (rt, ry): (Vec<f64>, Vec<f64>) = ridx.iter().map(|&i| (t[r0 + i], y[r0 + i])).unzip();
    let rslope = theil_sen(&rt, &ry).unwrap_or(0.0);
    let rmk = mann_kendall(&ry);
    let rdur = fmt_age(t[n - 1] - t[r0]);
    let recent_level = med(&y[r0..]);
    if rslope < (cfg.recent_ratio * slope).max(cfg.min_slope_per_s) || rmk.p_increase >= cfg.recent_alpha {
        let start = med(&y[..(n / 3).max(1)]);
        let peak = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let reason = if rslope < 0.0 && rmk.p_two_sided < cfg.alpha {
            format!("falling again for the last {rdur} after peaking at {peak:.0}")
        } else {
            format!("levelled off around {recent_level:.0} for the last {rdur} after rising from {start:.0}")
        };
        return verdict(Ok, ok_conf, slope, reason);
    }
    if let Some(pm) = prefix_max.filter(|&pm| recent_level <= pm) {
        return verdict(Ok, ok_conf, slope, format!("no higher than the earlier peak of {pm:.0}"));
    }
    if let Some(r) = ev.reference_s.filter(|&r| ev.contradicts() && r < span) {
        let reason = format!(
            "more load, not accumulation: no live task is older than {}, the age by which tasks of this site normally finish",
            fmt_age(r)
        );
        return verdict(Ok, ok_conf, slope, reason);
    }

    // Flagged: how sure are we?
    let fell = y.windows(2).filter(|w| w[1] < w[0]).count();
    let rose = y.windows(2).filter(|w| w[1] > w[0]).count();
    let intervals = n - 1;
    let mono = (intervals - fell) as f64 / intervals as f64;
    let f_amount = clamp01(rise / cfg.full_rise.max(cfg.full_rise_noise_k * sd));
    let trend = f_amount * (0.5 + 0.5 * f_z);
    let e_mono = clamp01((mono - cfg.mono_low) / (cfg.mono_full - cfg.mono_low).max(1e-9));
    let boost = (cfg.w_age * ev.age.max(0.0) + cfg.w_idle * ev.idle + cfg.w_mono * e_mono).min(cfg.boost_cap);
    let score = clamp01(trend + (1.0 - trend) * boost.max(0.0));

    let last = y[n - 1];
    let fell_txt = if fell == 0 { "never fell".to_string() } else { format!("fell in {fell}") };
    let mut reason =
        format!("{} for {dur} to {last:.0} live, grew in {rose} of {intervals} intervals ({fell_txt})", fmt_rate(slope));
    let age_note = ev.age_note.as_ref().filter(|_| !ev.contradicts());
    for note in [age_note, ev.idle_note.as_ref()].into_iter().flatten() {
        reason += ", ";
        reason += note;
    }
    let step = step_vs_line(&td, &yd).is_some_and(|r| r < cfg.step_ratio);
    let jump = y.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let blocker = if n < cfg.min_points_leak || span < cfg.min_span_leak_s {
        Some(format!("only {n} samples over {dur}"))
    } else if step {
        Some(format!("a single jump of +{jump:.0} so far"))
    } else if ev.contradicts() {
        Some(ev.age_note.clone().unwrap_or_else(|| "live tasks are not older than normal".to_string()))
    } else if score < cfg.leak_confidence {
        Some("not yet conclusive".to_string())
    } else {
        None
    };
    match blocker {
        None => verdict(Leak, score, slope, reason),
        Some(why) => {
            let conf = score.clamp(cfg.suspect_floor, (cfg.leak_confidence - 0.01).max(cfg.suspect_floor));
            verdict(Suspect, conf, slope, format!("{reason}; not yet a leak: {why}"))
        }
    }
}

/// Why a window without a significant upward trend is fine.
fn shape_reason(y: &[f64], level: f64, sd: f64, dur: &str, cfg: &DetectConfig) -> String {
    let peak = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let now = med(&y[y.len().saturating_sub(3)..]);
    let band = cfg.min_rise.max(cfg.noise_k * sd);
    if peak - level > band {
        if (now - level).abs() <= band {
            format!("returns to baseline around {level:.0} after bursts up to {peak:.0} over {dur}")
        } else {
            format!("bursts up to {peak:.0} over a baseline around {level:.0} for {dur}")
        }
    } else if sd > cfg.noise_floor {
        format!("stable around {level:.0} (sd {sd:.1}) for {dur}")
    } else {
        format!("stable around {level:.0} for {dur}")
    }
}
