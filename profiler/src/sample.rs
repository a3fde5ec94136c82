//! What one sample of any runtime yields, runtime-neutral: per site, its counters, its oldest live
//! task and how many of its live tasks were seen idle. Runtimes produce it; the history, the
//! detector and the reports consume it.

/// A site's counters since attach (or since the census first saw its tasks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteTotals {
    pub spawned: u64,
    pub finished: u64,
    /// Finishes of tasks born before attach (probes only: those are never counted as live).
    pub finished_preexisting: u64,
    pub max_lifetime_ns: u64,
    /// Finished lifetimes, log2 buckets of microseconds (empty when not measured).
    pub lifetime_log2_us: Vec<u64>,
}

impl SiteTotals {
    /// Counts one finished task that lived `life_ns` (a census: from first seen or its
    /// estimated birth to the sample that no longer saw it).
    pub fn finish(&mut self, life_ns: u64) {
        use profiler_common::{lifetime_bucket, LIFETIME_BUCKETS};
        self.finished += 1;
        self.max_lifetime_ns = self.max_lifetime_ns.max(life_ns);
        if self.lifetime_log2_us.len() < LIFETIME_BUCKETS {
            self.lifetime_log2_us.resize(LIFETIME_BUCKETS, 0);
        }
        self.lifetime_log2_us[lifetime_bucket(life_ns)] += 1;
    }

    /// Tasks born since attach (or first seen) and still alive.
    pub fn live(&self) -> i64 {
        self.spawned as i64 - self.finished as i64
    }

    /// Finished tasks whose lifetime was measured (the histogram's sum); None when lifetimes are
    /// not kept per task (only `max_lifetime_ns`, of all of them).
    pub fn timed(&self) -> Option<u64> {
        (!self.lifetime_log2_us.is_empty()).then(|| self.lifetime_log2_us.iter().sum())
    }
}

/// One site as seen at one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteObs<K> {
    pub key: K,
    /// Live tasks (or waiting threads) now.
    pub live: i64,
    pub totals: SiteTotals,
    /// CLOCK_MONOTONIC ns at which the oldest live task was born (or its wait began).
    pub oldest_born_ns: Option<u64>,
    /// (idle, observed) live tasks whose run state was read this sample; None when not measured.
    pub idle: Option<(u64, u64)>,
}

/// One sample of one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample<K> {
    /// CLOCK_MONOTONIC ns of the sample.
    pub now_ns: u64,
    pub sites: Vec<SiteObs<K>>,
}

/// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
