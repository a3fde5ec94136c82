//! Evidence a trend alone lacks: how old the oldest live task is compared with the age at which
//! this site's tasks normally finish, and how many live tasks are idle. Plus number formatting.

use super::{DetectConfig, SiteSeries};

/// Evidence gathered once per site, shared by every window that is judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// -1..1: > 0 the live tasks are much older than this site's tasks normally get;
    /// < 0 (always -1) they are no older than tasks that finished normally (rules out `leak`).
    pub age: f64,
    /// 0..1: share of idle live tasks, rescaled between `idle_low` and `idle_full`.
    pub idle: f64,
    /// Words for the age evidence, if any.
    pub age_note: Option<String>,
    /// Words for the idle evidence, if any.
    pub idle_note: Option<String>,
    /// The normal lifetime the oldest live task was compared with (p99, else max finished age).
    pub reference_s: Option<f64>,
}

impl Evidence {
    /// True when the age of the live tasks contradicts a leak.
    pub fn contradicts(&self) -> bool {
        self.age < 0.0
    }
}

pub(crate) fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn finite_nonneg(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite() && *v >= 0.0)
}

/// Collects age and idle evidence for a site.
pub fn gather(s: &SiteSeries, cfg: &DetectConfig) -> Evidence {
    let (age, age_note) = age_evidence(s, cfg);
    let (idle, idle_note) = idle_evidence(s, cfg);
    let reference_s = finite_nonneg(s.finished_age_p99_s).or(finite_nonneg(s.max_finished_age_s));
    Evidence {
        age,
        idle,
        age_note,
        idle_note,
        reference_s,
    }
}

/// Age evidence in -1..1 and its wording.
pub fn age_evidence(s: &SiteSeries, cfg: &DetectConfig) -> (f64, Option<String>) {
    let Some(oldest) = finite_nonneg(s.oldest_live_age_s) else {
        return (0.0, None);
    };
    let p99 = finite_nonneg(s.finished_age_p99_s);
    let max_fin = finite_nonneg(s.max_finished_age_s);
    let Some(reference) = p99.or(max_fin) else {
        if s.finished_total == 0 && s.live.last().is_some_and(|&l| l > 0) {
            let score =
                cfg.none_finished_weight * clamp01(oldest / cfg.none_finished_full_s.max(1e-9));
            let note = format!(
                "none of its tasks has been seen to finish (oldest live {} old)",
                fmt_age(oldest)
            );
            return (score, Some(note));
        }
        return (0.0, None);
    };
    let what = if p99.is_some() {
        "normally finish within"
    } else {
        "have finished as late as"
    };
    if oldest <= reference {
        let note = format!(
            "its oldest live task is only {} old while tasks of this site {what} {}",
            fmt_age(oldest),
            fmt_age(reference)
        );
        return (-1.0, Some(note));
    }
    let ratio = oldest / reference.max(cfg.age_floor_s);
    let mut score = clamp01(ratio.log10() / cfg.age_ratio_full.max(1.0 + 1e-9).log10());
    let mut note = format!(
        "oldest live task {} old while tasks of this site {what} {}",
        fmt_age(oldest),
        fmt_age(reference)
    );
    match max_fin {
        Some(m) if oldest <= m => {
            score *= 0.5;
            note += &format!(" (though one finished at {})", fmt_age(m));
        }
        Some(m) if p99.is_some() && m > reference => {
            note += &format!(" and none older than {} ever finished", fmt_age(m));
        }
        _ => {}
    }
    (score, Some(note))
}

/// Idle evidence in 0..1 and its wording.
pub fn idle_evidence(s: &SiteSeries, cfg: &DetectConfig) -> (f64, Option<String>) {
    let Some(f) = s
        .idle_fraction
        .filter(|f| f.is_finite())
        .map(|f| f.clamp(0.0, 1.0))
    else {
        return (0.0, None);
    };
    let score = clamp01((f - cfg.idle_low) / (cfg.idle_full - cfg.idle_low).max(1e-9));
    let note = (score > 0.0).then(|| format!("{:.0}% of live tasks idle", f * 100.0));
    (score, note)
}

/// Human-readable age/duration: "0.01 s", "2.5 s", "18 s", "12 min".
pub fn fmt_age(secs: f64) -> String {
    let s = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if s >= 600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else if s == 0.0 {
        "0 s".to_string()
    } else {
        let decimals = ((-s.log10()).ceil() as usize + 1).min(9);
        let txt = format!("{s:.decimals$}");
        let txt = txt.trim_end_matches('0').trim_end_matches('.');
        format!("{txt} s")
    }
}

/// Signed growth rate: "+2.0/s", "+0.20/s", "+1.5/min".
pub fn fmt_rate(per_s: f64) -> String {
    let r = if per_s.is_finite() { per_s } else { 0.0 };
    let a = r.abs();
    if a >= 10.0 {
        format!("{r:+.0}/s")
    } else if a >= 1.0 {
        format!("{r:+.1}/s")
    } else if a >= 0.1 {
        format!("{r:+.2}/s")
    } else if a * 60.0 >= 1.0 {
        format!("{:+.1}/min", r * 60.0)
    } else {
        format!("{:+.2}/min", r * 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(oldest: Option<f64>, p99: Option<f64>, max_fin: Option<f64>) -> SiteSeries<'static> {
        SiteSeries {
            t_s: &[],
            live: &[7],
            finished_total: if p99.is_some() || max_fin.is_some() {
                50
            } else {
                0
            },
            oldest_live_age_s: oldest,
            finished_age_p99_s: p99,
            max_finished_age_s: max_fin,
            idle_fraction: None,
        }
    }

    #[test]
    fn age_scores() {
        let cfg = DetectConfig::default();
        let (a, note) = age_evidence(&site(Some(18.0), Some(0.01), Some(0.02)), &cfg);
        assert_eq!(a, 1.0);
        let note = note.unwrap();
        assert!(
            note.contains("18 s old") && note.contains("0.01 s") && note.contains("0.02 s"),
            "{note}"
        );
        // 3x the normal lifetime: partial credit log10(3) = 0.477.
        let (a, _) = age_evidence(&site(Some(3.0), Some(1.0), None), &cfg);
        assert!((a - 3f64.log10()).abs() < 1e-9);
        // Some task lived longer and still finished: halved.
        let (a, _) = age_evidence(&site(Some(30.0), Some(1.0), Some(40.0)), &cfg);
        assert!((a - 0.5).abs() < 1e-9);
        // Live tasks no older than normal: contradiction.
        let (a, note) = age_evidence(&site(Some(5.0), Some(60.0), Some(90.0)), &cfg);
        assert_eq!(a, -1.0);
        assert!(note.unwrap().contains("only 5.0 s old"));
        // Nothing ever finished: weak, capped evidence.
        let (a, note) = age_evidence(&site(Some(60.0), None, None), &cfg);
        assert!((a - cfg.none_finished_weight).abs() < 1e-9);
        assert!(note.unwrap().contains("none of its tasks has been seen to finish"));
        assert_eq!(
            age_evidence(&site(None, Some(1.0), None), &cfg),
            (0.0, None)
        );
        assert_eq!(
            age_evidence(&site(Some(f64::NAN), Some(1.0), None), &cfg),
            (0.0, None)
        );
        // A zero p99 must not divide by zero.
        let (a, _) = age_evidence(&site(Some(2.0), Some(0.0), None), &cfg);
        assert_eq!(a, 1.0);
    }

    #[test]
    fn idle_scores() {
        let cfg = DetectConfig::default();
        let mut s = site(None, None, None);
        for (f, want) in [
            (Some(1.0), 1.0),
            (Some(0.3), 0.0),
            (None, 0.0),
            (Some(f64::NAN), 0.0),
        ] {
            s.idle_fraction = f;
            assert_eq!(idle_evidence(&s, &cfg).0, want, "{f:?}");
        }
        s.idle_fraction = Some(0.95);
        assert_eq!(
            idle_evidence(&s, &cfg).1.as_deref(),
            Some("95% of live tasks idle")
        );
    }

    #[test]
    fn formatting() {
        let ages = [
            (0.01, "0.01 s"),
            (0.0123, "0.012 s"),
            (0.5, "0.5 s"),
            (2.54, "2.5 s"),
            (18.2, "18 s"),
        ];
        for (s, want) in ages {
            assert_eq!(fmt_age(s), want);
        }
        assert_eq!(fmt_age(0.0), "0 s");
        assert_eq!(fmt_age(f64::NAN), "0 s");
        assert_eq!(fmt_age(900.0), "15 min");
        assert_eq!(fmt_rate(2.0), "+2.0/s");
        assert_eq!(fmt_rate(0.2), "+0.20/s");
        assert_eq!(fmt_rate(-1.5), "-1.5/s");
        assert_eq!(fmt_rate(1.0 / 60.0), "+1.0/min");
        assert_eq!(fmt_rate(f64::INFINITY), "+0.00/min");
    }
}
