//! How a run collected its samples, and what that cost leakprof: the report's `collection`.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C / SIGTERM.
    Interrupted,
    /// The target process exited during the run.
    TargetExited,
    /// Still running (a report served by the daemon while it watches).
    Running,
    /// Reading the target failed inside leakprof (a caught panic: hostile bytes or a bug); the
    /// report covers the run until then and its warnings say what failed.
    ReadFailed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Collection {
    pub method: &'static str,
    pub interval_s: f64,
    pub duration_s: f64,
    pub samples: usize,
    pub ended: EndReason,
    /// leakprof's own time per interval, ms: the whole work of one sample (reading the census or
    /// the probes' maps, judging, naming, where-stuck, the per-interval view or the daemon's report).
    /// The last sample of a run is not timed: the final report's work follows it.
    pub sample_ms_mean: f64,
    /// The same after the first interval, whose sample carries one-time work (each site's code read
    /// for where-stuck, every live task seen for the first time): the steady cost. Null with fewer
    /// than two timed intervals.
    pub sample_ms_mean_after_first: Option<f64>,
    pub sample_ms_max: f64,
    /// Intervals stretched because their work took more than 20% of `interval_s` (leakprof stays
    /// at most 20% busy per target rather than fall behind), and the longest interval that gave.
    pub intervals_stretched: u64,
    pub longest_interval_s: f64,
    /// leakprof's own cost so far: its CPU time (user + system, s) and its peak resident set.
    pub leakprof_cpu_s: f64,
    pub leakprof_peak_rss_bytes: u64,
    /// tokio census: how the last sample's walk of the runtimes' task lists went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub census: Option<CensusStats>,
    /// leakprof's own kernel-side cost: each BPF program's runs and run time since attach, from
    /// the kernel's BPF statistics (switched on while leakprof's programs are loaded); absent
    /// when no program ran in the kernel (a census) or the kernel keeps no statistics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bpf_programs: Vec<BpfProgramCost>,
}

/// One BPF program's cost as the kernel counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfProgramCost {
    pub program: String,
    pub runs: u64,
    /// Time spent running it, ns (summed over CPUs).
    pub run_ns: u64,
}

/// How a tokio census read the runtimes' owned-task lists at the last sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CensusStats {
    /// Task lists found: one per runtime, and one per `LocalSet` (its `spawn_local` tasks).
    pub runtimes: usize,
    /// Runtimes and `LocalSet`s found, then dropped while attached (their tasks ended with them).
    pub runtimes_dropped: u64,
    /// `spawn_blocking` tasks queued in the runtimes' blocking pools for a thread (all of the
    /// pool's threads busy: at its cap), counted under their sites like other tasks; None until a
    /// pool's queue has been seen non-empty (its shape is recognised from its queued tasks).
    pub blocking_queued: Option<u64>,
    /// Live tasks read.
    pub tasks_walked: u64,
    /// The runtimes' own count of their live tasks (None when a runtime keeps none: tokio < 1.35).
    pub tasks_expected: Option<u64>,
    /// Whether every list was walked to its end (a list changing under the walk can cut it short).
    pub complete: bool,
    /// Bytes read from the target for this walk.
    pub bytes_read: u64,
    pub walk_ms: f64,
    /// Heap bytes scanned so far looking for runtimes: at attach, and in the background since
    /// (32 MiB per sample, a new pass every 2 s, for runtimes created later).
    pub heap_scanned_bytes: u64,
    /// Of those, the bytes scanned at attach, before the first report.
    pub heap_scanned_at_attach_bytes: u64,
    /// Heap bytes the scans skipped unread as never touched by the target (neither in memory nor
    /// in swap, per /proc/PID/pagemap): a big heap reserved but mostly untouched costs its
    /// touched bytes alone. 0 for a core (its untouched pages are not in it).
    #[serde(default)]
    pub heap_untouched_bytes: u64,
    /// How long the attach scan took (looking for runtimes before the first sample), ms.
    #[serde(default)]
    pub attach_scan_ms: f64,
    /// Seconds from the attach scan's start to the first runtime's task lists found (near 0 when
    /// found at attach; later for a runtime created after attach); None: none found yet.
    #[serde(default)]
    pub runtime_found_after_s: Option<f64>,
    /// How the `.await` each task waits at is known, or why it is not.
    pub where_stuck: String,
    /// Tasks whose await was read at the last sample (at most 32 per site), those decoded, and
    /// the time it took, ms (with the one-time reading of new sites' code, at their first sample).
    pub where_stuck_sampled: u64,
    pub where_stuck_decoded: u64,
    pub where_stuck_ms: f64,
}
