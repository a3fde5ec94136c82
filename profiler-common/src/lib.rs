//! Layouts and names shared by the eBPF programs and user space. Nothing else may define them.
#![no_std]

/// Map names (the `#[map]` statics in profiler-ebpf carry exactly these names).
pub mod maps {
    /// HashMap<u64 task header address, TaskRec>: tasks born since attach and not yet finished
    /// (Go, and tokio births at the first poll).
    pub const TASKS: &str = "TASKS";
    /// Array<TaskSlot>, mmapable, indexed by tokio task id & SLOT_MASK: tokio tasks born at
    /// bind_inner since attach and not yet finished (no hash operation per task).
    pub const SLOTS: &str = "SLOTS";
    /// Array<u64>, one entry: the first tokio task id not alive at attach (NEXT_ID read just
    /// after the probes attached; 0 = not known yet).
    pub const FIRST_ID: &str = "FIRST_ID";
    /// PerCpuHashMap<u64 vtable address, SiteCounters>: per future type counters.
    pub const SITES: &str = "SITES";
    /// PerCpuArray<u64>, indexed by [`crate::stat`]: every kernel-side outcome, failures included.
    pub const STATS: &str = "STATS";
    /// RingBuf of SpawnSample: sampled births with a copy of the spawning stack.
    pub const SPAWN_SAMPLES: &str = "SPAWN_SAMPLES";
    /// HashMap<u32 tid, FutexWait>: threads of the target now in a futex wait (since attach).
    pub const FUTEX_WAITS: &str = "FUTEX_WAITS";
}

/// Program names (the function names in profiler-ebpf).
pub mod progs {
    /// uprobe at entry of `OwnedTasks::bind_inner` (header in the 2nd argument).
    pub const BIRTH_BIND_INNER: &str = "task_birth_bind_inner";
    /// uprobe at entry of `task::raw::poll` (header in the 1st argument): first poll of an unseen task.
    pub const BIRTH_FIRST_POLL: &str = "task_birth_first_poll";
    /// uprobe at entry of `<Arc<Handle> as Schedule>::release` (&Task in the 2nd argument), with
    /// births at the first poll (TASKS).
    pub const FINISH_RELEASE: &str = "task_finish_release";
    /// The same finish point, with births at bind_inner (SLOTS, by task id).
    pub const FINISH_SLOT: &str = "task_finish_slot";
    /// Go: uprobe on each RET of runtime.newproc1 (RAX = the new g); the site is g.gopc, read
    /// at HEADER_VTABLE_OFFSET (set to gopc's offset in g). Never a uretprobe: Go moves stacks.
    pub const GO_BIRTH_RET: &str = "go_birth_ret";
    /// Go: uprobe at the entry of runtime.gdestroy (1.21+) / runtime.goexit0 (older): RAX = g.
    pub const GO_DEATH: &str = "go_death";
    /// tracepoint syscalls:sys_enter_futex: a thread of the target starts a futex wait.
    pub const FUTEX_ENTER: &str = "futex_enter";
    /// tracepoint syscalls:sys_exit_futex: the wait ended.
    pub const FUTEX_EXIT: &str = "futex_exit";
    /// A uprobe that does nothing: attached at the same points, it measures the cost of the
    /// traps alone (the physical limit of probe mode; `--empty-probes`, for benchmarks).
    pub const EMPTY_UPROBE: &str = "empty_uprobe";
}

/// Global variables set by user space before load (`EbpfLoader::set_global`).
pub mod globals {
    /// Lowest address of the target binary's mappings: a vtable below it is rejected.
    pub const VTABLE_LO: &str = "VTABLE_LO";
    /// One past the highest address of the target binary's mappings.
    pub const VTABLE_HI: &str = "VTABLE_HI";
    /// Spawn stack sampling: 0 = off; N = the first births of each site on each CPU and then
    /// every Nth birth on a CPU copy the spawning stack (only meaningful where the birth probe
    /// runs in the spawning thread: bind_inner, not first poll).
    pub const STACK_PERIOD: &str = "STACK_PERIOD";
    /// Thread group id of the target (futex tracepoints see every process).
    pub const TARGET_TGID: &str = "TARGET_TGID";
    /// Byte offset of the vtable pointer in tokio's task `Header` (`#[repr(C)]`, 16 in 1.28..newest).
    pub const HEADER_VTABLE_OFFSET: &str = "HEADER_VTABLE_OFFSET";
    /// Byte offset of the task id from the tokio task header when every task vtable of the
    /// binary has the same `id_offset`; 0 = read it from each task's vtable.
    pub const ID_OFFSET: &str = "ID_OFFSET";
    /// tokio births at bind_inner: beyond each site's first [`crate::TIMED_FIRST_PER_SITE`] births
    /// on a CPU, a birth is timed (its lifetime measured) when its count & LIFETIME_MASK is 0
    /// (0: every birth is timed).
    pub const LIFETIME_MASK: &str = "LIFETIME_MASK";
    /// Number of SLOTS minus one (a power of two minus one).
    pub const SLOT_MASK: &str = "SLOT_MASK";
}

/// Byte offset of `id_offset` in tokio's task `Vtable` (seven function pointers, then
/// `trailer_offset`, `scheduler_offset`, `id_offset`; 1.28..newest).
pub const VTABLE_ID_OFFSET: u64 = 72;

/// Per task state, written at birth, removed at finish.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskRec {
    /// The task's vtable pointer: identifies the future type (the site).
    pub vtable: u64,
    /// bpf_ktime_get_ns() at birth (CLOCK_MONOTONIC).
    pub born_ns: u64,
}
const _: () = assert!(core::mem::size_of::<TaskRec>() == 16);

/// A tokio task born since attach, in SLOTS at its id & SLOT_MASK; `id` 0 = free (tokio's ids
/// start at 1). Written at birth, `id` cleared at finish.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskSlot {
    pub id: u64,
    pub header: u64,
    /// The task's vtable pointer (the site).
    pub vtable: u64,
    /// bpf_ktime_get_ns() at birth; 0 when the birth was not timed (see globals::LIFETIME_MASK).
    pub born_ns: u64,
}
const _: () = assert!(core::mem::size_of::<TaskSlot>() == 32);

/// Bytes of user stack copied per spawn sample, in [`STACK_CHUNK`] pieces so a copy that runs
/// past the end of the stack mapping keeps what came before.
pub const STACK_WINDOW: usize = 4096;
pub const STACK_CHUNK: usize = 512;

/// Registers and a window of the user stack at a birth, unwound in user space (.eh_frame).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackSample {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Valid bytes in `data` (a multiple of STACK_CHUNK).
    pub len: u64,
    pub data: [u8; STACK_WINDOW],
}
const _: () = assert!(core::mem::size_of::<StackSample>() == 32 + STACK_WINDOW);

/// Births of a site timed per CPU before LIFETIME_MASK applies.
pub const TIMED_FIRST_PER_SITE: u64 = 64;

/// Births of a site sampled per CPU before the period applies.
pub const STACK_FIRST_PER_SITE: u64 = 4;

/// One sampled birth: which task, which site, and its spawning stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SpawnSample {
    pub header: u64,
    pub vtable: u64,
    /// The task's birth time as in TASKS: (header, born_ns) tells this task from a later one
    /// that reuses its memory.
    pub born_ns: u64,
    pub stack: StackSample,
}
const _: () = assert!(core::mem::size_of::<SpawnSample>() == 24 + 32 + STACK_WINDOW);

/// A futex wait in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FutexWait {
    /// bpf_ktime_get_ns() at sys_enter_futex.
    pub start_ns: u64,
    pub uaddr: u64,
    /// futex op without FUTEX_PRIVATE_FLAG / FUTEX_CLOCK_REALTIME.
    pub op: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FutexWait>() == 24);

/// Futex ops that block (FUTEX_WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2).
pub fn is_futex_wait_op(op: u32) -> bool {
    matches!(op & 127, 0 | 6 | 9 | 11 | 13)
}

/// Number of log2 buckets of task lifetimes, in microseconds (bucket i holds [2^i, 2^(i+1)) us; bucket 0 holds < 2 us).
pub const LIFETIME_BUCKETS: usize = 32;

/// Per site (future type) counters; one copy per CPU, summed in user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteCounters {
    /// Tasks of this site born since attach.
    pub spawned: u64,
    /// Tasks born since attach that finished.
    pub finished: u64,
    /// Tasks that were already alive at attach and finished since (never counted as live).
    pub finished_preexisting: u64,
    /// Longest lifetime of a finished task, in ns.
    pub max_lifetime_ns: u64,
    /// Histogram of lifetimes of finished tasks, log2 of microseconds (tokio births at bind_inner:
    /// of the timed ones only; its sum is how many were timed).
    pub lifetime_log2_us: [u64; LIFETIME_BUCKETS],
}
const _: () = assert!(core::mem::size_of::<SiteCounters>() == 32 + 8 * LIFETIME_BUCKETS);

impl SiteCounters {
    pub const ZERO: SiteCounters = SiteCounters {
        spawned: 0,
        finished: 0,
        finished_preexisting: 0,
        max_lifetime_ns: 0,
        lifetime_log2_us: [0; LIFETIME_BUCKETS],
    };
}

/// Bucket index of a lifetime, shared so both sides agree.
#[inline(always)]
pub fn lifetime_bucket(lifetime_ns: u64) -> usize {
    let us = lifetime_ns / 1000;
    if us < 2 {
        return 0;
    }
    let b = 63 - us.leading_zeros() as usize;
    if b >= LIFETIME_BUCKETS {
        LIFETIME_BUCKETS - 1
    } else {
        b
    }
}

/// Indexes into the STATS array. Every path of every program bumps exactly one "outcome" counter,
/// failures included, so nothing is lost silently.
pub mod stat {
    /// A birth was recorded.
    pub const BIRTHS: u32 = 0;
    /// A finish of a task born since attach was recorded.
    pub const FINISHES: u32 = 1;
    /// A finish of a task that was alive before attach (not in TASKS): counted per site apart.
    pub const FINISH_PREEXISTING: u32 = 2;
    /// TASKS was full: the birth could not be recorded.
    pub const TASKS_MAP_FULL: u32 = 3;
    /// SITES was full: a new site could not be created.
    pub const SITES_MAP_FULL: u32 = 4;
    /// Reading target memory (header, vtable, &Task) failed.
    pub const READ_ERRORS: u32 = 5;
    /// The vtable pointer read from a header did not lie in the target binary: not a task header.
    pub const BAD_VTABLE: u32 = 6;
    /// A birth found its header already in TASKS (its finish was missed); the stale task was closed.
    pub const BIRTH_STALE_REPLACED: u32 = 7;
    /// First-poll mode: a poll of an already known task (not a birth).
    pub const POLL_KNOWN: u32 = 8;
    /// A finish of a task whose site entry could not be found (counters could not be updated).
    pub const FINISH_NO_SITE: u32 = 9;
    /// A spawn stack sample was sent to user space.
    pub const STACK_SAMPLES: u32 = 10;
    /// Not even the first chunk of the user stack could be read.
    pub const STACK_READ_ERRORS: u32 = 11;
    /// A futex wait of the target began / ended.
    pub const FUTEX_WAIT_BEGIN: u32 = 12;
    pub const FUTEX_WAIT_END: u32 = 13;
    /// FUTEX_WAITS was full.
    pub const FUTEX_MAP_FULL: u32 = 14;
    /// The spawn sample ring buffer was full: a sample was dropped (not a count error).
    pub const STACK_RING_FULL: u32 = 15;
    /// A birth took the slot of a task still alive, born SLOTS births before it: that task's
    /// finish is still counted, without its lifetime.
    pub const SLOT_REUSED: u32 = 16;
    /// A task born since attach finished after its slot was reused: counted, lifetime unmeasured.
    pub const FINISH_UNTIMED: u32 = 17;
    pub const COUNT: u32 = 18;

    /// Names for reports, in index order.
    pub const NAMES: [&str; COUNT as usize] = [
        "births",
        "finishes",
        "finish_preexisting",
        "tasks_map_full",
        "sites_map_full",
        "read_errors",
        "bad_vtable",
        "birth_stale_replaced",
        "poll_known",
        "finish_no_site",
        "stack_samples",
        "stack_read_errors",
        "futex_wait_begin",
        "futex_wait_end",
        "futex_map_full",
        "stack_ring_full",
        "slot_reused",
        "finish_untimed",
    ];

    /// Counters that mean data was lost or is uncertain (shown as warnings when non-zero).
    pub const FAILURES: [u32; 6] =
        [TASKS_MAP_FULL, SITES_MAP_FULL, READ_ERRORS, BAD_VTABLE, FINISH_NO_SITE, FUTEX_MAP_FULL];
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    unsafe impl aya::Pod for TaskRec {}
    unsafe impl aya::Pod for TaskSlot {}
    unsafe impl aya::Pod for SiteCounters {}
    unsafe impl aya::Pod for StackSample {}
    unsafe impl aya::Pod for SpawnSample {}
    unsafe impl aya::Pod for FutexWait {}
}
