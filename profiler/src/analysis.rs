//! From a site's history to its verdict: the bridge between samples and the detector.
use crate::{
    blocked::WaitSite,
    detect::{judge, DetectConfig, Facts, SiteSeries, Verdict},
    history::{lifetime_quantile_s, History, SiteHistory},
};

/// A task site's facts as of the last sample.
pub fn task_facts(hist: &History, h: &SiteHistory) -> Facts {
    let t = &h.totals;
    Facts {
        finished_total: t.finished,
        oldest_live_age_s: hist.oldest_age_s(h),
        finished_age_p99_s: lifetime_quantile_s(&t.lifetime_log2_us, 0.99),
        max_finished_age_s: (t.finished > 0).then(|| t.max_lifetime_ns as f64 / 1e9),
        idle_fraction: h.idle_fraction(),
    }
}

/// Judges one task site as of the last sample.
pub fn verdict(hist: &History, h: &SiteHistory, cfg: &DetectConfig) -> Verdict {
    judge(&SiteSeries::new(&hist.times_s, &h.series, &task_facts(hist, h)), cfg)
}

/// A wait site's facts as of the last sample.
pub fn blocked_facts(w: &WaitSite) -> Facts {
    Facts {
        finished_total: w.ended_waits,
        oldest_live_age_s: (w.longest_wait_ns > 0).then(|| w.longest_wait_ns as f64 / 1e9),
        finished_age_p99_s: None,
        max_finished_age_s: (w.ended_waits > 0).then(|| w.max_ended_wait_ns as f64 / 1e9),
        idle_fraction: Some(1.0),
    }
}

/// Judges one wait site of blocked threads as of the last sample (`t` is the run's time axis;
/// a site first seen late has a shorter series, aligned on the end).
pub fn blocked_verdict(t: &[f64], w: &WaitSite, cfg: &DetectConfig) -> Verdict {
    let n = w.series.len().min(t.len());
    judge(&SiteSeries::new(&t[t.len() - n..], &w.series[w.series.len() - n..], &blocked_facts(w)), cfg)
}
