//! Robust trend statistics: Mann-Kendall (tie-corrected, normal approximation), Theil-Sen slope,
//! median, and the downsampling that keeps these O(n^2) parts bounded.

/// Result of a Mann-Kendall test on a series taken in sample order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// S = sum over i<j of sign(y_j - y_i).
    pub s: i64,
    /// Variance of S under H0, corrected for ties.
    pub var_s: f64,
    /// Continuity-corrected normal score: (S-1)/sqrt(var) for S>0, (S+1)/sqrt(var) for S<0, else 0.
    pub z: f64,
    /// One-sided p-value for an upward trend, 1 - Phi(z).
    pub p_increase: f64,
    /// Two-sided p-value, 2 * (1 - Phi(|z|)).
    pub p_two_sided: f64,
}

/// Mann-Kendall trend test. Fewer than 2 points (or all equal) gives S=0, z=0, p=1.
pub fn mann_kendall(y: &[f64]) -> MannKendall {
    let n = y.len();
    let mut s: i64 = 0;
    for (i, &yi) in y.iter().enumerate() {
        // Branch-free sign sum; NaN compares neither way and counts as a tie.
        s += y[i + 1..]
            .iter()
            .map(|&yj| (yj > yi) as i64 - (yj < yi) as i64)
            .sum::<i64>();
    }
    let nf = n as f64;
    let mut var = nf * (nf - 1.0) * (2.0 * nf + 5.0);
    let mut sorted: Vec<f64> = y.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        var -= t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let var_s = (var / 18.0).max(0.0);
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0 {
        (s - 1) as f64 / var_s.sqrt()
    } else if s < 0 {
        (s + 1) as f64 / var_s.sqrt()
    } else {
        0.0
    };
    MannKendall {
        s,
        var_s,
        z,
        p_increase: normal_sf(z),
        p_two_sided: (2.0 * normal_sf(z.abs())).min(1.0),
    }
}

/// Upper tail of the standard normal, 1 - Phi(z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes `erfcc`, fractional error < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// Theil-Sen slope: median of (y_j - y_i)/(t_j - t_i) over pairs with t_j > t_i. None if no such pair.
pub fn theil_sen(t: &[f64], y: &[f64]) -> Option<f64> {
    let n = t.len().min(y.len());
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dt = t[j] - t[i];
            if dt > 0.0 {
                slopes.push((y[j] - y[i]) / dt);
            }
        }
    }
    median(&mut slopes)
}

/// Median (average of the two middle values for even length); reorders `v`. None if empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// Indices of at most `max` points spread evenly over `0..n`, always keeping the first and last.
pub fn downsample_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    (0..max)
        .map(|i| ((i as f64) * (n - 1) as f64 / (max - 1) as f64).round() as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mk_strictly_increasing_five() {
        // S = 10, var = 5*4*15/18 = 16.6667, z = 9/sqrt(16.6667) = 2.2045, p = 0.013743.
        let mk = mann_kendall(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(mk.s, 10);
        assert!(close(mk.var_s, 16.666_667, 1e-4));
        assert!(close(mk.z, 2.204_541, 1e-5));
        assert!(close(mk.p_increase, 0.013_743, 1e-5));
        assert!(close(mk.p_two_sided, 0.027_486, 1e-5));
    }

    #[test]
    fn mk_with_ties() {
        // Pairs of [1,2,2,3]: 5 up, 1 tie -> S = 5. var = (4*3*13 - 2*1*9)/18 = 7.6667.
        // z = 4/sqrt(7.6667) = 1.444630, p = 0.074281.
        let mk = mann_kendall(&[1.0, 2.0, 2.0, 3.0]);
        assert_eq!(mk.s, 5);
        assert!(close(mk.var_s, 7.666_667, 1e-4));
        assert!(close(mk.z, 1.444_630, 1e-5));
        assert!(close(mk.p_increase, 0.074_281, 1e-5));
    }

    #[test]
    fn mk_decreasing_mixed_and_degenerate() {
        // [3,1,2,0]: pairs (3,1)-,(3,2)-,(3,0)-,(1,2)+,(1,0)-,(2,0)- -> S = -4, var = 4*3*13/18 = 8.6667,
        // z = -3/sqrt(8.6667) = -1.019049, p_increase = 0.845910.
        let mk = mann_kendall(&[3.0, 1.0, 2.0, 0.0]);
        assert_eq!(mk.s, -4);
        assert!(close(mk.z, -1.019_049, 1e-5));
        assert!(close(mk.p_increase, 0.845_910, 1e-5));
        let flat = mann_kendall(&[7.0; 6]);
        assert_eq!((flat.s, flat.var_s, flat.z), (0, 0.0, 0.0));
        assert!(close(flat.p_increase, 0.5, 1e-7) && close(flat.p_two_sided, 1.0, 1e-7));
        for y in [&[][..], &[1.0][..]] {
            let mk = mann_kendall(y);
            assert_eq!(mk.s, 0);
            assert!(mk.p_increase.is_finite() && mk.p_two_sided.is_finite());
        }
    }

    #[test]
    fn normal_tail_values() {
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.644_854), 0.05, 1e-6));
        assert!(close(normal_sf(3.090_232), 0.001, 1e-7));
        assert!(close(normal_sf(-1.959_964), 0.975, 1e-6));
        assert!(normal_sf(40.0) >= 0.0 && normal_sf(-40.0) <= 1.0);
    }

    #[test]
    fn theil_sen_hand_values() {
        // Slopes of (0,0),(1,1),(2,2),(3,10): 1,1,10/3,1,4.5,8 -> median (1 + 10/3)/2 = 2.1667.
        let s = theil_sen(&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0, 2.0, 10.0]).unwrap();
        assert!(close(s, 13.0 / 6.0, 1e-12));
        // Irregular times: (0,0),(1,2),(3,6),(3.5,100): slopes 2,2,28.57,2,39.2,188 -> median (2+28.57)/2.
        let s = theil_sen(&[0.0, 1.0, 3.0, 3.5], &[0.0, 2.0, 6.0, 100.0]).unwrap();
        assert!(close(s, (2.0 + 100.0 / 3.5) / 2.0, 1e-12));
        // An outlier does not move an otherwise exact line with odd pair count.
        let s = theil_sen(&[0.0, 1.0, 2.0], &[5.0, 3.0, 1.0]).unwrap();
        assert!(close(s, -2.0, 1e-12));
        assert_eq!(theil_sen(&[1.0], &[1.0]), None);
        assert_eq!(theil_sen(&[1.0, 1.0], &[1.0, 5.0]), None);
    }

    #[test]
    fn median_and_downsampling() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(downsample_indices(5, 300), vec![0, 1, 2, 3, 4]);
        let d = downsample_indices(1000, 300);
        assert_eq!((d.len(), d[0], d[299]), (300, 0, 999));
        assert!(d.windows(2).all(|w| w[0] < w[1]));
    }
}
