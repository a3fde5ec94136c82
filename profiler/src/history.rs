//! Per-site time series built from successive kernel snapshots.
use std::collections::BTreeMap;

use crate::bpf::{KernelSnapshot, SiteTotals};

/// What is known of one site over the run.
#[derive(Debug, Clone, Default)]
pub struct SiteHistory {
    /// Live count at each sample (0 before the site was first seen).
    pub series: Vec<i64>,
    pub totals: SiteTotals,
    /// Birth time (CLOCK_MONOTONIC ns) of the oldest live task, at the last sample that read tasks.
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
}

/// Samples of every site, aligned on one time axis.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub times_s: Vec<f64>,
    pub sites: BTreeMap<u64, SiteHistory>,
    pub stats: Vec<u64>,
    /// CLOCK_MONOTONIC ns of the last sample.
    pub last_now_ns: u64,
}

impl History {
    /// Appends one sample taken `t_s` seconds after attach at monotonic time `now_ns`.
    pub fn push(&mut self, t_s: f64, now_ns: u64, snap: &KernelSnapshot, tasks_read: bool) {
        let n = self.times_s.len();
        self.times_s.push(t_s);
        self.last_now_ns = now_ns;
        self.stats.clone_from(&snap.stats);
        for (&vtable, totals) in &snap.sites {
            let h = self.sites.entry(vtable).or_insert_with(|| SiteHistory {
                series: vec![0; n],
                ..Default::default()
            });
            h.totals = totals.clone();
        }
        if tasks_read {
            for h in self.sites.values_mut() {
                h.oldest_born_ns = None;
            }
            for t in &snap.tasks {
                if let Some(h) = self.sites.get_mut(&t.vtable) {
                    h.oldest_born_ns = Some(h.oldest_born_ns.map_or(t.born_ns, |o| o.min(t.born_ns)));
                }
            }
        }
        for h in self.sites.values_mut() {
            h.series.push(h.totals.live().max(0));
        }
    }

    /// Adds observed task states: (vtable, idle?) pairs.
    pub fn add_states(&mut self, states: impl IntoIterator<Item = (u64, bool)>) {
        for (vtable, idle) in states {
            if let Some(h) = self.sites.get_mut(&vtable) {
                h.state_seen += 1;
                h.idle_seen += u64::from(idle);
            }
        }
    }

    /// Keeps only the newest `max` samples (a daemon's bounded retention).
    pub fn trim(&mut self, max: usize) {
        let n = self.times_s.len();
        if n <= max {
            return;
        }
        let cut = n - max;
        self.times_s.drain(..cut);
        for h in self.sites.values_mut() {
            let c = cut.min(h.series.len());
            h.series.drain(..c);
        }
    }

    /// Age in seconds of the oldest live task of a site, as of the last sample.
    pub fn oldest_age_s(&self, h: &SiteHistory) -> Option<f64> {
        h.oldest_born_ns
            .map(|b| self.last_now_ns.saturating_sub(b) as f64 / 1e9)
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

/// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::LiveTask;

    fn snap(sites: &[(u64, u64, u64)], tasks: &[(u64, u64)]) -> KernelSnapshot {
        KernelSnapshot {
            sites: sites
                .iter()
                .map(|&(v, s, f)| (v, SiteTotals { spawned: s, finished: f, ..Default::default() }))
                .collect(),
            stats: vec![1, 2],
            tasks: tasks
                .iter()
                .map(|&(v, b)| LiveTask { header: b, vtable: v, born_ns: b })
                .collect(),
            futex_waits: vec![],
        }
    }

    #[test]
    fn late_sites_are_zero_padded_and_ages_use_the_oldest_task() {
        let mut h = History::default();
        h.push(1.0, 10_000_000_000, &snap(&[(1, 5, 1)], &[(1, 9_000_000_000)]), true);
        h.push(2.0, 11_000_000_000, &snap(&[(1, 9, 2), (2, 3, 3)], &[(1, 9_500_000_000), (1, 8_000_000_000)]), true);
        assert_eq!(h.sites[&1].series, vec![4, 7]);
        assert_eq!(h.sites[&2].series, vec![0, 0]);
        assert_eq!(h.oldest_age_s(&h.sites[&1]), Some(3.0));
        assert_eq!(h.oldest_age_s(&h.sites[&2]), None);
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
}
