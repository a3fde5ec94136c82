//! The report: what a run found, as plain data shared by every output format.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::detect::VerdictKind;

mod collection;
pub use collection::{BpfProgramCost, CensusStats, Collection, EndReason};

/// Bumped on any incompatible change of the JSON document.
pub const SCHEMA_VERSION: u32 = 6;
pub const SCHEMA_NAME: &str = "leakprof.report";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub schema_version: u32,
    pub leakprof_version: &'static str,
    pub target: TargetInfo,
    pub collection: Collection,
    /// Launched by `leakprof run`: the program's exit code, when it exited.
    pub program_exit_code: Option<i32>,
    /// Seconds since attach of each sample; every site's `series` is aligned with it.
    pub sample_times_s: Vec<f64>,
    /// The target's resident memory and the limit that applies to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryReport>,
    /// Sites, worst first.
    pub sites: Vec<SiteReport>,
    /// Threads blocked in syscalls (futex waits, reads, accepts, sleeps, ...), by wait site, worst
    /// first (empty unless threads are watched: tokio programs by default, any with --threads).
    pub blocked: Vec<BlockedSiteReport>,
    /// The daemon's `--top-k`: sites beyond the reported ones, folded (absent when none were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_sites: Option<OtherSites>,
    /// Every kernel-side outcome counter (failures included), by name; absent when nothing ran in
    /// the kernel (a Go census without --threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_counters: Option<BTreeMap<String, u64>>,
    pub warnings: Vec<String>,
}

/// The target's memory: what it holds and what it may hold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryReport {
    /// Resident set (`VmRSS`) at the last sample, bytes.
    pub rss_bytes: Option<u64>,
    /// Resident set at each of `sample_times_s` (null where it could not be read).
    pub rss_bytes_series: Vec<Option<u64>>,
    /// The memory limit that applies: the target's cgroup limit (the smallest up its path), else
    /// the machine's memory; and where it was read.
    pub limit_bytes: Option<u64>,
    pub limit_source: Option<String>,
}

/// Sites folded out of a report: how many, and their live tasks together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OtherSites {
    pub sites: usize,
    pub live: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub exe: String,
    /// "tokio", "go", or "native" (blocked threads only).
    pub runtime: &'static str,
    pub runtime_version: Option<String>,
    /// How task births are observed ("bind_inner", "first_poll", "census", "newproc1_ret", "none").
    pub birth_point: &'static str,
    pub attach_points: usize,
    pub attach_ms: f64,
    pub has_debug_info: bool,
    /// The separate debug file symbols and DWARF were read from (`--symbols`, build id, debuglink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols_file: Option<String>,
}

/// A site's oldest live task (tokio census: task ids are handed out in spawn order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldestTask {
    pub task_id: u64,
    /// Spawned before leakprof attached.
    pub before_attach: bool,
    /// Tasks spawned in the process after it.
    pub tasks_spawned_since: u64,
}

/// How old a site's live tasks are in spawn order: runtimes hand out task ids (tokio's task id,
/// Go's goid) in the order tasks are spawned, so "spawned since" counts the tasks spawned in the
/// whole process after each one. A snapshot has no clock: this is its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeSpread {
    pub oldest_id: u64,
    pub newest_id: u64,
    /// Tasks spawned in the process after the site's oldest live one, and after its newest.
    pub spawned_since_oldest: u64,
    pub spawned_since_newest: u64,
    /// Whether the process's id counter was read (tokio's `NEXT_ID`); else the highest live id
    /// stands for it, and for Go ids are handed out to each P in batches of 16: "spawned since" is
    /// then an estimate (to within the batches).
    pub counter_read: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    /// The async fn / future type of the site, e.g. `app::conn::handle::{{closure}}`.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// tokio: the symbol the site's vtable points at (raw::poll<T, S>); Go: the goroutines'
    /// entry function.
    pub poll_symbol: String,
    /// Live tasks of the site by state at the last sample: Go, by wait reason or run state
    /// ("ChanReceive", "Select", "SyncMutexLock", "running", ...); tokio census, by the task's state
    /// word ("idle", "notified", "running"); empty with tokio probes alone.
    pub states: BTreeMap<String, u64>,
    /// The site's identity in this process, a runtime address: the task vtable (tokio), the
    /// `go` statement's pc (Go: g.gopc).
    pub key: String,
    /// Live tasks: every live task (tokio census, Go census), or those born since attach (probes
    /// alone).
    pub live: i64,
    pub spawned: u64,
    pub finished: u64,
    /// Tasks already alive at attach that finished since; never counted in `live`.
    pub finished_preexisting: u64,
    /// Age of the oldest live task: since its birth (probes; tokio census, estimated from its id),
    /// or since first seen when it was alive at attach (a lower bound: see the next field).
    pub oldest_age_s: Option<f64>,
    /// True when `oldest_age_s` is a lower bound: the oldest live task was already alive when
    /// leakprof's first sample saw it (the text report shows `>=`).
    pub oldest_age_is_lower_bound: bool,
    /// True when `spawned` and `finished` are births and finishes seen by probes (`--probes`);
    /// false in census mode, where `spawned` counts tasks first seen by a census (those alive at
    /// attach included) and `finished` tasks no longer seen.
    pub births_measured: bool,
    /// True when the two lifetimes below are estimates (census mode: from the samples that first
    /// and last saw a task, or its id), false when probes timed them.
    pub lifetimes_estimated: bool,
    /// Longest lifetime of a task of this site that finished (of those timed). An estimate in
    /// census mode (`lifetimes_estimated`): from the sample that first saw the task (or its id's
    /// place in spawn order) to the first that no longer did, so within an interval either way.
    pub max_finished_lifetime_s: Option<f64>,
    /// p99 lifetime of finished tasks (upper bound of its log2 bucket; of those timed). An
    /// estimate in census mode, as above.
    pub finished_lifetime_p99_s: Option<f64>,
    /// Finished tasks whose lifetime was measured, which the two lifetimes above are of: tokio
    /// probes with the census time each site's first 64 births per CPU and then one in 8; None
    /// where only the longest lifetime is kept (threads' waits).
    pub finished_timed: Option<u64>,
    /// Live count at each of `sample_times_s`.
    pub series: Vec<i64>,
    /// `leak`, `suspect` or `ok`.
    pub verdict: VerdictKind,
    /// How strongly the site looks like a leak, 0..1 (`leak` >= 0.8).
    pub confidence: f64,
    /// Robust (Theil-Sen) slope of the live count, tasks per second.
    pub growth_per_s: f64,
    /// The verdict in words.
    pub reason: String,
    /// Share of observed live tasks that were idle (waiting for a wake-up), when observed.
    pub idle_fraction: Option<f64>,
    /// The ignore rule that matched this site (it is then never a failure).
    pub ignored_by: Option<String>,
    /// Who spawns this site's tasks: the most sampled spawn stack's first frame outside the
    /// runtime and std, as `function (file:line)`.
    pub created_by: Option<String>,
    /// Distinct sampled spawn stacks (innermost frame first), most sampled first.
    pub spawn_stacks: Vec<SpawnStack>,
    /// Where the site's sampled waiting tasks wait: tokio, the innermost `.await` in the user's
    /// code; Go, where its goroutines are blocked (the first frame outside the runtime and
    /// its blocking machinery), most first, out of `stuck_sampled` whose stacks were read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stuck_at: Vec<StuckAt>,
    #[serde(skip_serializing_if = "is_zero")]
    pub stuck_sampled: u64,
    /// Of the `stuck_sampled` tasks, those whose wait could not be decoded (a discriminant the
    /// code has no await for, an offset past the task): counted, never guessed.
    #[serde(skip_serializing_if = "is_zero")]
    pub stuck_undecoded: u64,
    /// How `stuck_at` was read: `dwarf` (the binary's DWARF types), `code` (its machine code:
    /// builds without type info), `stack` (Go: goroutine stacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_decoded_by: Option<String>,
    /// Whole stacks of sampled waiting tasks (tokio: await chains; Go: goroutine stacks),
    /// innermost first, most common first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<WaitStack>,
    /// tokio census: the oldest live task, by spawn order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_task: Option<OldestTask>,
    /// What each of the site's measured tasks holds (absent when none was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_task: Option<BytesPerTask>,
    /// An estimate: `live` x the median of `bytes_per_task` (exact when every live task was
    /// measured, `bytes_per_task.measured == live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_estimate: Option<u64>,
    /// An estimate: `growth_per_s` x the median bytes per task, per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_growth_per_hour_estimate: Option<f64>,
    /// An estimate, for a `leak` site: seconds until the target's resident memory reaches its
    /// limit (`memory.limit_bytes`) if this site alone goes on growing at this rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_limit_s_estimate: Option<f64>,
}

/// The bytes the measured tasks of one site hold, per task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default, Deserialize)]
pub struct BytesPerTask {
    /// What is counted: `task cell` (the allocator's chunk holding the tokio task), `task cell +
    /// boxed future` (a future tokio boxed because it was large), `task cell (layout)` (no
    /// allocator chunk header could be read: the cell from its header to the end of its trailer),
    /// `goroutine stack` (`g.stack.hi - g.stack.lo`).
    pub counts: String,
    /// Tasks measured at the last sample (tokio: the sampled ones; Go: every live goroutine).
    pub measured: u64,
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl BytesPerTask {
    /// The summary of `values` (one per measured task); None when there are none.
    pub fn of(counts: &str, values: &mut [u64]) -> Option<BytesPerTask> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        Some(BytesPerTask {
            counts: counts.to_string(),
            measured: values.len() as u64,
            min: values[0],
            median: values[values.len() / 2],
            max: values[values.len() - 1],
        })
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A place where tasks wait, and how many of those sampled wait there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize)]
pub struct StuckAt {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// tokio: the future awaited there (its type, or its poll function when read from the code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<String>,
    /// tokio, read from the machine code: which `.await` of `function` it is (1 = the first);
    /// `line` is then the await's line when the binary has line tables, else None.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub await_ordinal: Option<u64>,
    /// Sampled goroutines (Go) or tasks (tokio) waiting there.
    pub tasks: u64,
}

/// A whole stack of waiting tasks (innermost first), and how many of those sampled had it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize)]
pub struct WaitStack {
    /// Sampled tasks or goroutines with this stack.
    pub tasks: u64,
    pub frames: Vec<StackFrame>,
}

impl SiteReport {
    /// Sort key, worst first: not ignored, verdict, confidence, live count.
    /// The order sites are reported in, worst first: not ignored, then by verdict (leaks first),
    /// then by what they cost (bytes held), then by confidence and live count.
    pub fn badness(&self) -> (bool, VerdictKind, u64, i64, i64) {
        (self.ignored_by.is_none(), self.verdict, self.bytes_estimate.unwrap_or(0), (self.confidence * 1e6) as i64, self.live)
    }
}

impl Report {
    /// Sites judged `leak` that no ignore rule covers.
    pub fn leaks(&self) -> impl Iterator<Item = &SiteReport> {
        self.sites
            .iter()
            .filter(|s| s.verdict == VerdictKind::Leak && s.ignored_by.is_none())
    }

    /// Names of everything judged `leak`: task sites and wait sites.
    pub fn leak_names(&self) -> Vec<String> {
        let tasks = self.leaks().map(|s| s.function.clone());
        let waits = self
            .blocked
            .iter()
            .filter(|b| b.verdict == VerdictKind::Leak && b.ignored_by.is_none())
            .map(|b| format!("threads blocked in {}", b.function));
        tasks.chain(waits).collect()
    }
}

/// Threads blocked at one wait site (a lock, a condition variable, ... named by the first frame
/// of their stack outside the waiting machinery).
#[derive(Debug, Clone, Serialize)]
pub struct BlockedSiteReport {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// `wait`, or `runtime_idle` for a runtime's parked idle workers (judged too: a group of
    /// them that keeps growing is a finding).
    pub kind: WaitKind,
    /// What its threads are blocked in: the syscall's family (`futex`, `read` (read, recv*),
    /// `write` (write, send*), `accept`, `connect`, `poll` (poll, select, epoll_wait),
    /// `sleep` (nanosleep, clock_nanosleep, pause), `wait` (wait4, waitid), `lock` (flock,
    /// fcntl F_SETLKW), `other`), and the call first seen there (`recvfrom`).
    pub syscall: String,
    pub syscall_name: String,
    /// What each waiting thread's stack holds (resident bytes of its stack mapping, from
    /// /proc/PID/smaps), measured on every waiting thread when its wait was first seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_thread: Option<BytesPerTask>,
    /// Threads waiting there at the last sample.
    pub threads: i64,
    /// Threads waiting there at each of `sample_times_s`.
    pub series: Vec<i64>,
    /// Longest current wait (for waits older than attach: since first seen, a lower bound).
    pub longest_wait_s: f64,
    /// Some wait here began before attach (found by the census of /proc/PID/task).
    pub preexisting: bool,
    pub ended_waits: u64,
    pub verdict: VerdictKind,
    pub confidence: f64,
    pub growth_per_s: f64,
    pub reason: String,
    /// The stack of the first thread seen waiting there, innermost first.
    pub stack: Vec<StackFrame>,
    /// The ignore rule that matched this wait site (`--ignore` by its function, or by any
    /// function of its stack); it is then never a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_by: Option<String>,
}

/// One distinct spawn stack of a site, with how many samples had it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpawnStack {
    /// Sampled births with this stack.
    pub samples: u64,
    /// Of those, tasks still alive at the last sample.
    pub live_samples: u64,
    /// The site's live count apportioned to this stack by its share of live samples.
    pub live_estimate: i64,
    /// Innermost first (the birth probe's function first).
    pub frames: Vec<StackFrame>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash, Deserialize)]
pub struct StackFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Why threads wait at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A lock, condition variable or other user-level wait: judged for growth.
    Wait,
    /// A runtime's idle worker parking (tokio workers, blocking-pool keep-alive, Go's scheduler):
    /// shown apart; a leak only when their number keeps growing.
    RuntimeIdle,
}


/// A site's name as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteName {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Reports and sites for the unit tests of the output formats.
#[cfg(test)]
pub mod tests {
    use super::*;

    /// A site of `live` tasks, `leak` with confidence 0.93 or as given.
    pub fn site(function: &str, verdict: VerdictKind, live: i64) -> SiteReport {
        SiteReport {
            function: function.into(),
            file: Some("src/a.rs".into()),
            line: Some(3),
            poll_symbol: String::new(),
            states: Default::default(),
            key: "0x1".into(),
            live,
            spawned: live as u64,
            finished: 0,
            finished_preexisting: 0,
            oldest_age_s: Some(4.0),
            oldest_age_is_lower_bound: false,
            births_measured: true,
            lifetimes_estimated: false,
            max_finished_lifetime_s: None,
            finished_lifetime_p99_s: None,
            finished_timed: None,
            series: vec![0, live / 2, live],
            verdict,
            confidence: if verdict == VerdictKind::Leak { 0.93 } else { 0.0 },
            growth_per_s: 2.0,
            reason: "+2.0/s for 10 s".into(),
            idle_fraction: Some(1.0),
            ignored_by: None,
            created_by: None,
            spawn_stacks: vec![],
            stuck_at: vec![],
            stuck_sampled: 0,
            stuck_undecoded: 0,
            stuck_decoded_by: None,
            stacks: vec![],
            oldest_task: None,
            bytes_per_task: None,
            bytes_estimate: None,
            bytes_growth_per_hour_estimate: None,
            time_to_limit_s_estimate: None,
        }
    }

    /// A finished tokio report with these sites.
    pub fn report(sites: Vec<SiteReport>) -> Report {
        Report {
            schema: SCHEMA_NAME,
            schema_version: SCHEMA_VERSION,
            leakprof_version: "0.1.0",
            target: TargetInfo {
                pid: 1,
                exe: "/bin/app".into(),
                runtime: "tokio",
                runtime_version: None,
                birth_point: "bind_inner",
                attach_points: 4,
                attach_ms: 1.0,
                has_debug_info: false,
                symbols_file: None,
            },
            collection: Collection {
                method: "uprobes",
                interval_s: 1.0,
                duration_s: 2.0,
                samples: 2,
                ended: EndReason::Duration,
                sample_ms_mean: 1.0,
                sample_ms_mean_after_first: Some(1.0),
                sample_ms_max: 1.0,
                intervals_stretched: 0,
                longest_interval_s: 1.0,
                leakprof_cpu_s: 0.1,
                leakprof_peak_rss_bytes: 20 << 20,
                census: None,
                bpf_programs: Vec::new(),
            },
            program_exit_code: None,
            sample_times_s: vec![1.0],
            sites,
            blocked: vec![],
            memory: None,
            other_sites: None,
            kernel_counters: None,
            warnings: vec![],
        }
    }

    /// A report of `n` sites with 0, 1, 2, ... live tasks, the first a leak.
    pub fn report_with_sites(n: usize) -> Report {
        let kinds = |i: usize| if i == 0 { VerdictKind::Leak } else { VerdictKind::Ok };
        report((0..n).map(|i| site(&format!("app::site{i}"), kinds(i), i as i64)).collect())
    }

    /// `--fail-on-leak` respects ignore rules for wait sites of blocked threads too.
    #[test]
    fn an_ignored_wait_site_is_no_failure() {
        let mut r = report_with_sites(0);
        let blocked = |ignored_by: Option<&str>| BlockedSiteReport {
            function: "app::lock_shared".into(),
            file: None,
            line: None,
            kind: WaitKind::Wait,
            syscall: "futex".into(),
            syscall_name: "futex".into(),
            bytes_per_thread: None,
            threads: 9,
            series: vec![1, 5, 9],
            longest_wait_s: 3.0,
            preexisting: false,
            ended_waits: 0,
            verdict: VerdictKind::Leak,
            confidence: 0.9,
            growth_per_s: 4.0,
            reason: String::new(),
            stack: vec![],
            ignored_by: ignored_by.map(str::to_string),
        };
        r.blocked = vec![blocked(None)];
        assert_eq!(r.leak_names(), ["threads blocked in app::lock_shared"]);
        r.blocked = vec![blocked(Some("function:app::*"))];
        assert!(r.leak_names().is_empty());
    }
}
