//! Noise and shape statistics: robust and plain spreads, a deliberately high noise estimate,
//! the autocorrelation correction for Mann-Kendall, and a step-vs-line fit.

use super::trend::median;

/// Robust standard deviation: 1.4826 * median absolute deviation from the median. 0 if empty.
pub fn robust_sd(v: &[f64]) -> f64 {
    let mut w = v.to_vec();
    let Some(m) = median(&mut w) else { return 0.0 };
    for x in w.iter_mut() {
        *x = (*x - m).abs();
    }
    1.4826 * median(&mut w).unwrap_or(0.0)
}

/// Sample standard deviation with `dof_lost` degrees of freedom used up. 0 if too short.
pub fn sample_sd(v: &[f64], dof_lost: usize) -> f64 {
    if v.len() <= dof_lost {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - dof_lost) as f64).sqrt()
}

/// Noise scale of `y` around a trend of `slope`, deliberately on the high side: the largest of the
/// plain and robust spreads of the detrended levels and of the detrended first differences
/// (divided by sqrt 2). Bursts, curvature and autocorrelation all push it up, never down.
pub fn noise_sd(t: &[f64], y: &[f64], slope: f64) -> f64 {
    let resid: Vec<f64> = t.iter().zip(y).map(|(t, y)| y - slope * t).collect();
    let diffs: Vec<f64> = resid.windows(2).map(|w| w[1] - w[0]).collect();
    let levels = robust_sd(&resid).max(sample_sd(&resid, 2));
    let steps = robust_sd(&diffs).max(sample_sd(&diffs, 1)) / std::f64::consts::SQRT_2;
    let sd = levels.max(steps);
    if sd.is_finite() {
        sd
    } else {
        0.0
    }
}

/// Variance inflation for a Mann-Kendall test on autocorrelated data (AR(1) approximation of the
/// Hamed-Rao correction): with lag-1 autocorrelation rho of the residuals around `slope`,
/// significant at the 5% level (rho > 1.96/sqrt n), var(S) is multiplied by (1+rho)/(1-rho),
/// rho capped at 0.9. 1 otherwise.
///
/// The correction only matters where the residual noise is material next to the rise: wandering
/// noise of sd `s` can fake a trend of a few `s`, never one of many. So the inflation is scaled by
/// the ratio q = rise / residual sd: in full at q <= `q_none`, not at all at q >= `q_full`,
/// log-linearly in between. A clean leak whose samples beat slowly against the program's own
/// ticks has a large rho but residuals of a task or two against a rise of hundreds: no inflation.
pub fn autocorr_inflation(t: &[f64], y: &[f64], slope: f64, q_none: f64, q_full: f64) -> f64 {
    let n = t.len().min(y.len());
    if n < 4 {
        return 1.0;
    }
    let resid: Vec<f64> = t[..n].iter().zip(y).map(|(t, y)| y - slope * t).collect();
    let m = resid.iter().sum::<f64>() / n as f64;
    let den: f64 = resid.iter().map(|r| (r - m) * (r - m)).sum();
    if den <= 0.0 || !den.is_finite() {
        return 1.0;
    }
    let rho = resid
        .windows(2)
        .map(|w| (w[0] - m) * (w[1] - m))
        .sum::<f64>()
        / den;
    if rho <= 1.96 / (n as f64).sqrt() {
        return 1.0;
    }
    let rho = rho.min(0.9);
    let full = (1.0 + rho) / (1.0 - rho);
    let rise = (slope * (t[n - 1] - t[0])).abs();
    let sd = (den / (n - 1) as f64).sqrt();
    full_to_none(full, rise / sd.max(1e-12), q_none, q_full)
}

/// `full` at q <= lo, 1 at q >= hi, log-linear in q between (a NaN q counts as material).
fn full_to_none(full: f64, q: f64, lo: f64, hi: f64) -> f64 {
    if q >= hi {
        1.0
    } else if q.is_nan() || q <= lo || lo <= 0.0 {
        full
    } else {
        1.0 + (full - 1.0) * (hi.ln() - q.ln()) / (hi.ln() - lo.ln())
    }
}

/// Ratio of the squared error of the best single-step fit (two constant levels) to that of a
/// least-squares line. Small means "one jump, flat on both sides". None if undefined (n < 3 or
/// the line fits perfectly).
pub fn step_vs_line(t: &[f64], y: &[f64]) -> Option<f64> {
    let n = t.len().min(y.len());
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let (mt, my) = (
        t[..n].iter().sum::<f64>() / nf,
        y[..n].iter().sum::<f64>() / nf,
    );
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (t[i] - mt, y[i] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let sse_line = if sxx > 0.0 {
        (syy - sxy * sxy / sxx).max(0.0)
    } else {
        syy
    };
    if sse_line <= 1e-9 * (1.0 + syy) {
        return None;
    }
    // Prefix sums of centred values keep the SSE differences numerically tame.
    let (mut s1, mut s2) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    for i in 0..n {
        let d = y[i] - my;
        s1[i + 1] = s1[i] + d;
        s2[i + 1] = s2[i] + d * d;
    }
    let sse = |a: usize, b: usize| {
        let (m, s, q) = ((b - a) as f64, s1[b] - s1[a], s2[b] - s2[a]);
        (q - s * s / m).max(0.0)
    };
    let best = (1..n)
        .map(|k| sse(0, k) + sse(k, n))
        .fold(f64::INFINITY, f64::min);
    Some(best / sse_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn spreads() {
        // |x - 3| of [1,2,3,4,100] = 2,1,0,1,97 -> MAD 1.
        assert!(close(robust_sd(&[1.0, 2.0, 3.0, 4.0, 100.0]), 1.4826, 1e-9));
        assert_eq!(robust_sd(&[]), 0.0);
        assert!(close(
            sample_sd(&[1.0, 2.0, 3.0, 4.0], 1),
            (5.0f64 / 3.0).sqrt(),
            1e-12
        ));
        assert_eq!(sample_sd(&[1.0], 1), 0.0);
    }

    #[test]
    fn noise_estimate() {
        // Exact line: no noise. Line plus alternating +-1: residuals +-1 (robust sd 1.4826), detrended
        // differences +-2 (7 of them, sample sd sqrt(32/7)) / sqrt 2 = sqrt(16/7) = 1.5119 wins.
        let t: Vec<f64> = (0..8).map(f64::from).collect();
        assert_eq!(noise_sd(&t, &t, 1.0), 0.0);
        let y: Vec<f64> = (0..8).map(|i| i as f64 + [1.0, -1.0][i % 2]).collect();
        assert!(close(noise_sd(&t, &y, 1.0), (16.0f64 / 7.0).sqrt(), 1e-9));
        assert_eq!(noise_sd(&[], &[], 1.0), 0.0);
    }

    #[test]
    fn autocorrelation() {
        // A slow sine wave has lag-1 autocorrelation ~0.99, capped at 0.9: (1 + 0.9)/(1 - 0.9) = 19.
        let wave: Vec<f64> = (0..40)
            .map(|i| (i as f64 / 40.0 * std::f64::consts::TAU).sin() * 10.0)
            .collect();
        let t40: Vec<f64> = (0..40).map(f64::from).collect();
        assert!(close(autocorr_inflation(&t40, &wave, 0.0, 4.0, 16.0), 19.0, 1e-9));
        // Alternating residuals are negatively correlated, an exact line has none: no inflation.
        let t: Vec<f64> = (0..8).map(f64::from).collect();
        let y: Vec<f64> = (0..8).map(|i| i as f64 + [1.0, -1.0][i % 2]).collect();
        assert_eq!(autocorr_inflation(&t, &y, 1.0, 4.0, 16.0), 1.0);
        assert_eq!(autocorr_inflation(&t, &t, 1.0, 4.0, 16.0), 1.0);
        // The same wave on top of a rise of 1000: the wander is immaterial, no inflation; on a
        // rise of 8x its sd (halfway between 4 and 16 on a log scale), half of it.
        let rising: Vec<f64> = (0..40).map(|i| wave[i] + 1000.0 / 39.0 * i as f64).collect();
        assert_eq!(autocorr_inflation(&t40, &rising, 1000.0 / 39.0, 4.0, 16.0), 1.0);
        let sd = {
            let m = wave.iter().sum::<f64>() / 40.0;
            (wave.iter().map(|w| (w - m) * (w - m)).sum::<f64>() / 39.0).sqrt()
        };
        let slope = 8.0 * sd / 39.0;
        let half: Vec<f64> = (0..40).map(|i| wave[i] + slope * i as f64).collect();
        assert!(close(autocorr_inflation(&t40, &half, slope, 4.0, 16.0), 10.0, 1e-6));
    }

    #[test]
    fn step_or_line() {
        let t: Vec<f64> = (0..10).map(f64::from).collect();
        let step: Vec<f64> = (0..10).map(|i| if i < 5 { 0.0 } else { 50.0 }).collect();
        assert!(step_vs_line(&t, &step).unwrap() < 1e-9);
        let line: Vec<f64> = (0..10)
            .map(|i| 2.0 * i as f64 + [0.0, 0.5][i % 2])
            .collect();
        assert!(step_vs_line(&t, &line).unwrap() > 1.0);
        assert_eq!(step_vs_line(&t, &t), None);
        assert_eq!(step_vs_line(&t[..2], &step[..2]), None);
    }
}
