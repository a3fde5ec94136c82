//! Per-site time series built from successive samples, bounded in memory whatever the run length:
//! at most `capacity` samples are kept; when full, the older half is thinned to every other
//! sample, so the recent past stays at full resolution and the long tail is kept ever more sparsely
//! (a run of a day at 1 s keeps about `capacity` points spread over the whole day).
use std::collections::BTreeMap;

use crate::{
    detect::Facts,
    sample::{Sample, SiteTotals},
};

/// Samples kept by default: one hour at full resolution at 1 s, then thinned.
pub const DEFAULT_CAPACITY: usize = 3600;
/// Sites tracked per source at most: with `capacity` points each, this bounds leakprof's memory
/// per target whatever the target (a hostile one cannot make it keep a series per garbage key).
pub const MAX_SITES: usize = 4096;

/// What is known of one site over the run.
#[derive(Debug, Clone, Default)]
pub struct SiteHistory {
    /// Live count at each kept sample (0 before the site was first seen).
    pub series: Vec<i64>,
    pub totals: SiteTotals,
    /// Birth time (CLOCK_MONOTONIC ns) of the oldest live task, at the last sample.
    pub oldest_born_ns: Option<u64>,
    /// Live tasks seen idle / seen at all, summed over the samples that read task states.
    pub idle_seen: u64,
    pub state_seen: u64,
}

impl SiteHistory {
    /// Share of observed live tasks that were idle (waiting, not scheduled), if any was observed.
    pub fn idle_fraction(&self) -> Option<f64> {
        (self.state_seen > 0).then(|| self.idle_seen as f64 / self.state_seen as f64)
    }

    /// The live count at the last sample.
    pub fn live(&self) -> i64 {
        self.series.last().copied().unwrap_or(0)
    }
}

/// Samples of every site of one source, aligned on one time axis.
#[derive(Debug, Clone)]
pub struct History<K> {
    pub times_s: Vec<f64>,
    pub sites: BTreeMap<K, SiteHistory>,
    /// CLOCK_MONOTONIC ns of the last sample.
    pub last_now_ns: u64,
    /// Sites of the last sample not tracked because [`MAX_SITES`] were already: (sites, live).
    pub untracked: (usize, i64),
    /// CLOCK_MONOTONIC ns of the first sample: a task born no later was alive at attach.
    pub first_now_ns: Option<u64>,
    capacity: usize,
}

impl<K: Ord + Clone> Default for History<K> {
    fn default() -> Self {
        History::with_capacity(DEFAULT_CAPACITY)
    }
}

impl<K: Ord + Clone> History<K> {
    /// A history keeping at most `capacity` samples (at least 16).
    pub fn with_capacity(capacity: usize) -> Self {
        History { times_s: Vec::new(), sites: BTreeMap::new(), last_now_ns: 0, untracked: (0, 0), first_now_ns: None, capacity: capacity.max(16) }
    }

    /// Appends one sample taken `t_s` seconds after attach. Sites not in the sample count 0 live.
    pub fn push(&mut self, t_s: f64, sample: &Sample<K>) {
        if self.times_s.len() >= self.capacity {
            self.thin();
        }
        let n = self.times_s.len();
        self.times_s.push(t_s);
        self.last_now_ns = sample.now_ns;
        self.first_now_ns.get_or_insert(sample.now_ns);
        for h in self.sites.values_mut() {
            h.oldest_born_ns = None;
            h.series.push(0);
        }
        self.untracked = (0, 0);
        for o in &sample.sites {
            if self.sites.len() >= MAX_SITES && !self.sites.contains_key(&o.key) {
                self.untracked.0 += 1;
                self.untracked.1 += o.live.max(0);
                continue;
            }
            let h = self.sites.entry(o.key.clone()).or_insert_with(|| SiteHistory {
                series: vec![0; n + 1],
                ..Default::default()
            });
            h.totals.clone_from(&o.totals);
            h.oldest_born_ns = o.oldest_born_ns;
            *h.series.last_mut().unwrap() = o.live.max(0);
            if let Some((idle, seen)) = o.idle {
                h.idle_seen += idle;
                h.state_seen += seen;
            }
        }
    }

    /// Keeps every other sample of the older half (the newest half untouched).
    fn thin(&mut self) {
        let half = self.times_s.len() / 2;
        let keep = |i: usize| i >= half || i.is_multiple_of(2);
        let mut i = 0;
        self.times_s.retain(|_| {
            i += 1;
            keep(i - 1)
        });
        for h in self.sites.values_mut() {
            let mut i = 0;
            h.series.retain(|_| {
                i += 1;
                keep(i - 1)
            });
        }
    }

    /// Age in seconds of the oldest live task of a site, as of the last sample.
    pub fn oldest_age_s(&self, h: &SiteHistory) -> Option<f64> {
        h.oldest_born_ns.map(|b| self.last_now_ns.saturating_sub(b) as f64 / 1e9)
    }

    /// Whether the site's oldest live task was alive at the first sample (its age a lower bound).
    pub fn oldest_alive_at_attach(&self, h: &SiteHistory) -> bool {
        matches!((h.oldest_born_ns, self.first_now_ns), (Some(b), Some(f)) if b <= f)
    }

    /// A site's facts as of the last sample (what the detector uses besides the series).
    pub fn facts(&self, h: &SiteHistory) -> Facts {
        let t = &h.totals;
        Facts {
            finished_total: t.finished,
            oldest_live_age_s: self.oldest_age_s(h),
            finished_age_p99_s: lifetime_quantile_s(&t.lifetime_log2_us, 0.99),
            // tokio probes time only some births: no timed finish, no longest lifetime
            max_finished_age_s: (t.finished > 0 && t.timed() != Some(0)).then(|| t.max_lifetime_ns as f64 / 1e9),
            idle_fraction: h.idle_fraction(),
        }
    }

    /// Bytes held by the series (for the memory benchmark).
    pub fn series_bytes(&self) -> usize {
        self.times_s.capacity() * 8 + self.sites.values().map(|h| h.series.capacity() * 8).sum::<usize>()
    }
}

/// Upper bound, in seconds, of the log2-microsecond bucket holding quantile `q` of finished lifetimes.
pub fn lifetime_quantile_s(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let want = (total as f64 * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, &c) in buckets.iter().enumerate() {
        acc += c;
        if acc >= want {
            return Some((1u64 << (i + 1)) as f64 / 1e6);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::SiteObs;

    fn obs(key: u64, live: i64, born: Option<u64>) -> SiteObs<u64> {
        SiteObs { key, live, totals: SiteTotals::default(), oldest_born_ns: born, idle: Some((1, 2)) }
    }

    #[test]
    fn late_sites_are_zero_padded_and_ages_use_the_oldest_task() {
        let mut h = History::default();
        h.push(1.0, &Sample { now_ns: 10_000_000_000, sites: vec![obs(1, 4, Some(9_000_000_000))] });
        h.push(2.0, &Sample { now_ns: 11_000_000_000, sites: vec![obs(1, 7, Some(8_000_000_000)), obs(2, 0, None)] });
        h.push(3.0, &Sample { now_ns: 12_000_000_000, sites: vec![obs(2, 3, None)] });
        assert_eq!(h.sites[&1].series, vec![4, 7, 0]);
        assert_eq!(h.sites[&2].series, vec![0, 0, 3]);
        assert_eq!(h.oldest_age_s(&h.sites[&1]), None, "gone from the last sample");
        assert_eq!(h.sites[&1].idle_fraction(), Some(0.5));
        let mut h2 = History::default();
        h2.push(1.0, &Sample { now_ns: 11_000_000_000, sites: vec![obs(1, 7, Some(8_000_000_000))] });
        assert_eq!(h2.oldest_age_s(&h2.sites[&1]), Some(3.0));
    }

    #[test]
    fn memory_is_bounded_and_the_recent_past_kept_whole() {
        let mut h: History<u64> = History::with_capacity(100);
        for i in 0..100_000u64 {
            h.push(i as f64, &Sample { now_ns: i, sites: vec![obs(7, i as i64, None)] });
            assert!(h.times_s.len() <= 100);
            assert_eq!(h.times_s.len(), h.sites[&7].series.len());
        }
        // the newest samples at full resolution, the oldest kept sparsely back to the start
        let t = &h.times_s;
        assert_eq!(t[t.len() - 1], 99_999.0);
        assert!(t[t.len() - 40..].windows(2).all(|w| w[1] - w[0] == 1.0), "{:?}", &t[t.len() - 40..]);
        assert!(t[0] < 1_000.0, "the tail reaches back: {}", t[0]);
        assert!(t.windows(2).all(|w| w[1] > w[0]));
        // series and times stay paired
        assert!(t.iter().zip(&h.sites[&7].series).all(|(t, v)| *t as i64 == *v));
    }

    /// A source that reports a new key every sample (garbage from hostile memory) used to grow
    /// one series per key without bound.
    #[test]
    fn sites_past_the_cap_are_counted_not_kept() {
        let mut h: History<u64> = History::with_capacity(16);
        for i in 0..(MAX_SITES as u64 + 100) {
            h.push(i as f64, &Sample { now_ns: i, sites: vec![obs(i, 2, None), obs(u64::MAX, 1, None)] });
        }
        assert_eq!(h.sites.len(), MAX_SITES);
        assert_eq!(h.untracked, (1, 2), "the last sample's new key was not tracked");
        assert!(h.sites.contains_key(&u64::MAX), "a tracked site keeps being tracked");
        assert_eq!(h.sites[&u64::MAX].live(), 1);
    }

    #[test]
    fn quantiles_of_log2_buckets() {
        let mut b = vec![0u64; 32];
        assert_eq!(lifetime_quantile_s(&b, 0.99), None);
        b[3] = 99; // [8, 16) us
        b[20] = 1; // about 1-2 s
        assert_eq!(lifetime_quantile_s(&b, 0.99), Some(16e-6));
        assert_eq!(lifetime_quantile_s(&b, 1.0), Some((1u64 << 21) as f64 / 1e6));
    }

    #[test]
    fn a_longest_lifetime_is_given_only_when_some_finish_was_timed() {
        let with = |finished: u64, max_lifetime_ns: u64, lifetime_log2_us: Vec<u64>| {
            let mut h = History::default();
            let totals = SiteTotals { spawned: 10, finished, max_lifetime_ns, lifetime_log2_us, ..Default::default() };
            h.push(1.0, &Sample { now_ns: 1, sites: vec![SiteObs { totals, ..obs(1, 2, None) }] });
            h.facts(&h.sites[&1]).max_finished_age_s
        };
        // tokio probes with the census: 8 finished, none timed (their births were not)
        assert_eq!(with(8, 0, vec![0; 32]), None, "not a longest lifetime of 0 s");
        let mut b = vec![0; 32];
        b[20] = 1;
        assert_eq!(with(8, 1_500_000_000, b), Some(1.5));
        // threads' waits keep only the longest, no histogram
        assert_eq!(with(3, 2_000_000_000, Vec::new()), Some(2.0));
    }
}
