//! From a site's history to its verdict: the bridge between samples and the detector.
use crate::{
    detect::{judge, DetectConfig, SiteSeries, Verdict},
    history::{lifetime_quantile_s, History, SiteHistory},
};

/// Judges one site as of the last sample.
pub fn verdict(hist: &History, h: &SiteHistory, cfg: &DetectConfig) -> Verdict {
    let t = &h.totals;
    judge(
        &SiteSeries {
            t_s: &hist.times_s,
            live: &h.series,
            spawned_total: t.spawned,
            finished_total: t.finished,
            oldest_live_age_s: hist.oldest_age_s(h),
            finished_age_p99_s: lifetime_quantile_s(&t.lifetime_log2_us, 0.99),
            max_finished_age_s: (t.finished > 0).then(|| t.max_lifetime_ns as f64 / 1e9),
            idle_fraction: h.idle_fraction(),
        },
        cfg,
    )
}
