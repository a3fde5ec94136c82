//! Judging one window of samples that ends now.

use super::evidence::{clamp01, fmt_age, fmt_rate, Evidence};
use super::noise::{autocorr_inflation, noise_sd, robust_sd, step_vs_line};
use super::trend::{downsample_indices, mann_kendall, median, normal_sf, theil_sen};
use super::{DetectConfig, Verdict, VerdictKind};

fn verdict(kind: VerdictKind, confidence: f64, growth_per_s: f64, reason: String) -> Verdict {
    Verdict {
        kind,
        confidence,
        growth_per_s,
        reason,
    }
}

pub(super) fn med(v: &[f64]) -> f64 {
    median(&mut v.to_vec()).unwrap_or(0.0)
}

/// Judges the samples of one window ending now. `prefix_max` (for suffix windows) is the highest
/// count before the window: a suffix window is only flagged if it reaches a new high.
/// `noise_hint` is a noise sd known from elsewhere (the samples before a suffix window).
pub(super) fn judge_window(
    t: &[f64],
    y: &[f64],
    prefix_max: Option<f64>,
    noise_hint: f64,
    max_points: usize,
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
    let idx = downsample_indices(n, max_points);
    let (td, yd): (Vec<f64>, Vec<f64>) = idx.iter().map(|&i| (t[i], y[i])).unzip();
    let mut mk = mann_kendall(&yd);
    let slope = theil_sen(&td, &yd).unwrap_or(0.0);
    // Autocorrelated noise wanders: widen the test accordingly.
    let inflation =
        autocorr_inflation(&td, &yd, slope, cfg.autocorr_q_none, cfg.autocorr_q_full);
    mk.z /= inflation.sqrt();
    mk.p_increase = normal_sf(mk.z);
    mk.p_two_sided = (2.0 * normal_sf(mk.z.abs())).min(1.0);
    let sd = noise_sd(t, y, slope).max(noise_hint).max(cfg.noise_floor);
    let rise = slope * span;
    let level = med(y);

    // The recent part of the window, where growth must persist.
    let cut = t[n - 1] - span * cfg.recent_fraction;
    let r0 = t
        .partition_point(|&x| x < cut)
        .min(n.saturating_sub(cfg.recent_min_points));
    let ridx = downsample_indices(n - r0, (max_points / 3).max(cfg.recent_min_points));
    let (rt, ry): (Vec<f64>, Vec<f64>) = ridx.iter().map(|&i| (t[r0 + i], y[r0 + i])).unzip();
    let rslope = theil_sen(&rt, &ry).unwrap_or(0.0);
    let rmk = mann_kendall(&ry);
    let still_rising = rslope >= (cfg.recent_ratio * slope).max(cfg.min_slope_per_s);

    if slope <= 0.0 || mk.s <= 0 || mk.p_increase >= cfg.alpha {
        let reason = if slope < 0.0 && mk.s < 0 && mk.p_two_sided < cfg.alpha {
            format!("decreasing ({} over {dur})", fmt_rate(slope))
        } else if still_rising && rise >= cfg.min_rise.max(cfg.noise_k * sd) {
            format!(
                "rising {} over {dur}, but not significantly so far",
                fmt_rate(slope)
            )
        } else {
            shape_reason(y, level, &dur, cfg)
        };
        return verdict(Ok, 0.0, slope, reason);
    }
    // Full credit at `alpha_full`, or at the p-value of a perfectly monotone series of this many
    // samples if that is larger: a clean rise over the fewest samples is as strong as they can be.
    let p_full = cfg.alpha_full.max(p_monotone(yd.len())).min(cfg.alpha * 0.999);
    let f_z = clamp01((cfg.alpha / mk.p_increase.max(1e-300)).log10() / (cfg.alpha / p_full).log10());
    let ok_conf = 0.25 * f_z;
    if slope < cfg.min_slope_per_s {
        return verdict(
            Ok,
            ok_conf,
            slope,
            format!("growing too slowly to matter ({})", fmt_rate(slope)),
        );
    }
    let noise_k = cfg.noise_k * (1.0 + cfg.noise_small_n.max(0.0) / n as f64).sqrt();
    if rise < cfg.min_rise.max(noise_k * sd) {
        let reason =
            format!("rise of {rise:.1} over {dur} is within noise (sd {sd:.1}) around {level:.0}");
        return verdict(Ok, ok_conf, slope, reason);
    }

    // Growth must persist into the recent part of the window.
    let rdur = fmt_age(t[n - 1] - t[r0]);
    let recent_level = med(&y[r0..]);
    if !still_rising || rmk.p_increase >= cfg.recent_alpha {
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
        return verdict(
            Ok,
            ok_conf,
            slope,
            format!("no higher than the earlier peak of {pm:.0}"),
        );
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
    let boost = (cfg.w_age * ev.age.max(0.0) + cfg.w_idle * ev.idle + cfg.w_mono * e_mono)
        .min(cfg.boost_cap);
    let score = clamp01(trend + (1.0 - trend) * boost.max(0.0));

    let last = y[n - 1];
    let fell_txt = if fell == 0 {
        "never fell".to_string()
    } else {
        format!("fell in {fell}")
    };
    let mut reason = format!(
        "{} for {dur} to {last:.0} live, grew in {rose} of {intervals} intervals ({fell_txt})",
        fmt_rate(slope)
    );
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
        Some(
            ev.age_note
                .clone()
                .unwrap_or_else(|| "live tasks are not older than normal".to_string()),
        )
    } else if score < cfg.leak_confidence && f_amount < 1.0 {
        Some(format!("only +{rise:.0} so far"))
    } else if score < cfg.leak_confidence {
        Some("the trend is not yet strong enough".to_string())
    } else {
        None
    };
    match blocker {
        None => verdict(Leak, score, slope, reason),
        Some(why) => {
            let conf = score.clamp(
                cfg.suspect_floor,
                (cfg.leak_confidence - 0.01).max(cfg.suspect_floor),
            );
            verdict(
                Suspect,
                conf,
                slope,
                format!("{reason}; not yet a leak: {why}"),
            )
        }
    }
}

/// One-sided Mann-Kendall p-value of a strictly increasing series of `n` samples (the smallest
/// p-value `n` samples can give).
fn p_monotone(n: usize) -> f64 {
    let nf = n as f64;
    let s = nf * (nf - 1.0) / 2.0;
    let var = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    if var <= 0.0 {
        return 1.0;
    }
    normal_sf((s - 1.0) / var.sqrt())
}

/// Why a window without a significant upward trend is fine.
fn shape_reason(y: &[f64], level: f64, dur: &str, cfg: &DetectConfig) -> String {
    let n = y.len();
    let diffs: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let step_sd = (robust_sd(&diffs) / std::f64::consts::SQRT_2).max(cfg.noise_floor);
    let band = cfg.min_rise.max(cfg.noise_k * step_sd);
    let third = (n / 3).max(1);
    let (start, recent) = (med(&y[..third]), med(&y[n - third..]));
    let peak = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let now = med(&y[n.saturating_sub(3)..]);
    if recent - start > band {
        format!("levelled off around {recent:.0} after rising from {start:.0} (no sustained growth over {dur})")
    } else if start - recent > band {
        format!("fell from {start:.0} to {recent:.0} over {dur}")
    } else if peak - level > band && (now - level).abs() <= band {
        format!("returns to baseline around {level:.0} after bursts up to {peak:.0} over {dur}")
    } else if peak - level > band {
        format!("bursts up to {peak:.0} over a baseline around {level:.0} for {dur}")
    } else {
        let sd = robust_sd(y);
        if sd > cfg.noise_floor {
            format!("stable around {level:.0} (sd {sd:.1}) for {dur}")
        } else {
            format!("stable around {level:.0} for {dur}")
        }
    }
}
