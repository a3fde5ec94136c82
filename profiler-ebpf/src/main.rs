//! Kernel side of leakprof: thin uprobes that only record task births and finishes into maps.
//! Every outcome, failures included, is counted in STATS; all judgement lives in user space.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::ProbeContext,
};
mod futex;
mod slots;

use profiler_common::{
    lifetime_bucket, stat, SiteCounters, SpawnSample, TaskRec, STACK_CHUNK, STACK_FIRST_PER_SITE,
    STACK_WINDOW,
};

/// Default capacities; user space overrides them with `EbpfLoader::set_max_entries`.
#[map(name = "TASKS")]
static TASKS: HashMap<u64, TaskRec> = HashMap::with_max_entries(1 << 20, 0);
#[map(name = "SITES")]
static SITES: PerCpuHashMap<u64, SiteCounters> = PerCpuHashMap::with_max_entries(4096, 0);
#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Sampled births with their spawning stacks (2 MiB: about 500 samples between two reads).
#[map(name = "SPAWN_SAMPLES")]
static SPAWN_SAMPLES: RingBuf = RingBuf::with_byte_size(2 << 20, 0);

#[no_mangle]
static STACK_PERIOD: u64 = 0;
#[no_mangle]
static VTABLE_LO: u64 = 0;
#[no_mangle]
static VTABLE_HI: u64 = 0;
#[no_mangle]
pub(crate) static HEADER_VTABLE_OFFSET: u64 = 16;

static ZERO_SITE: SiteCounters = SiteCounters::ZERO;

#[inline(always)]
pub(crate) fn count(idx: u32) {
    if let Some(p) = STATS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub(crate) fn global(v: &'static u64) -> u64 {
    unsafe { core::ptr::read_volatile(v) }
}

/// Reads the vtable pointer of the task whose header is at `header` and checks that it points into
/// the target binary (a task vtable is a static of the binary). None (counted) otherwise.
#[inline(always)]
pub(crate) fn read_vtable(header: u64) -> Option<u64> {
    if header == 0 {
        count(stat::READ_ERRORS);
        return None;
    }
    let addr = header.wrapping_add(global(&HEADER_VTABLE_OFFSET));
    let vtable = match unsafe { bpf_probe_read_user(addr as *const u64) } {
        Ok(v) => v,
        Err(_) => {
            count(stat::READ_ERRORS);
            return None;
        }
    };
    checked_vtable(vtable)
}

/// `vtable` when it points into the target binary (a task vtable is a static of the binary);
/// None (counted) otherwise.
#[inline(always)]
pub(crate) fn checked_vtable(vtable: u64) -> Option<u64> {
    if vtable < global(&VTABLE_LO) || vtable >= global(&VTABLE_HI) {
        count(stat::BAD_VTABLE);
        return None;
    }
    Some(vtable)
}

/// The task header behind the `&Task` in a probe's 2nd argument (`Schedule::release`); None
/// (counted) when it cannot be read.
#[inline(always)]
pub(crate) fn header_of_task_ref(ctx: &ProbeContext) -> Option<u64> {
    let task_ref: u64 = ctx.arg(1).unwrap_or(0);
    if task_ref == 0 {
        count(stat::READ_ERRORS);
        return None;
    }
    match unsafe { bpf_probe_read_user(task_ref as *const u64) } {
        Ok(h) => Some(h),
        Err(_) => {
            count(stat::READ_ERRORS);
            None
        }
    }
}

#[inline(always)]
pub(crate) fn site(vtable: u64) -> Option<*mut SiteCounters> {
    if let Some(p) = SITES.get_ptr_mut(&vtable) {
        return Some(p);
    }
    // BPF_NOEXIST: another CPU may have created it meanwhile; either way look it up again.
    let _ = SITES.insert(&vtable, &ZERO_SITE, BPF_NOEXIST as u64);
    let p = SITES.get_ptr_mut(&vtable);
    if p.is_none() {
        count(stat::SITES_MAP_FULL);
    }
    p
}

/// Records that the task at `header` finished (or was found stale), updating its site's counters.
#[inline(always)]
pub(crate) fn close_task(rec: &TaskRec, now: u64) {
    let Some(s) = site(rec.vtable) else {
        count(stat::FINISH_NO_SITE);
        return;
    };
    let lifetime = now.saturating_sub(rec.born_ns);
    let b = lifetime_bucket(lifetime);
    unsafe {
        (*s).finished += 1;
        if lifetime > (*s).max_lifetime_ns {
            (*s).max_lifetime_ns = lifetime;
        }
        if b < profiler_common::LIFETIME_BUCKETS {
            (*s).lifetime_log2_us[b] += 1;
        }
    }
}

/// Records that a task born since attach but not timed finished.
#[inline(always)]
pub(crate) fn close_untimed(vtable: u64) {
    match site(vtable) {
        Some(s) => unsafe { (*s).finished += 1 },
        None => count(stat::FINISH_NO_SITE),
    }
}

/// Whether this birth is sampled: the first births of each site on this CPU, then every
/// STACK_PERIOD-th birth on this CPU.
#[inline(always)]
pub(crate) fn sampled(site_spawned_this_cpu: u64) -> bool {
    let period = global(&STACK_PERIOD);
    if period == 0 {
        return false;
    }
    if site_spawned_this_cpu <= STACK_FIRST_PER_SITE {
        return true;
    }
    match STATS.get(stat::BIRTHS) {
        Some(b) => *b % period == 0,
        None => false,
    }
}

/// Sends the spawning stack of the task at `header` to user space (copied in chunks: a copy
/// that runs past the top of the stack keeps what came before).
#[inline(always)]
pub(crate) fn sample_stack(ctx: &ProbeContext, header: u64, vtable: u64, born_ns: u64) {
    let Some(mut entry) = SPAWN_SAMPLES.reserve::<SpawnSample>(0) else {
        count(stat::STACK_RING_FULL);
        return;
    };
    let out = entry.as_mut_ptr();
    let regs = unsafe { &*ctx.regs };
    let sp = regs.rsp;
    let mut len = 0usize;
    let mut i = 0usize;
    while i < STACK_WINDOW / STACK_CHUNK {
        let off = i * STACK_CHUNK;
        // SAFETY: off + STACK_CHUNK <= STACK_WINDOW, inside the reserved entry.
        let dst = unsafe {
            core::slice::from_raw_parts_mut(
                (&raw mut (*out).stack.data).cast::<u8>().add(off),
                STACK_CHUNK,
            )
        };
        if unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf((sp + off as u64) as *const u8, dst) }
            .is_err()
        {
            break;
        }
        len = off + STACK_CHUNK;
        i += 1;
    }
    if len == 0 {
        entry.discard(0);
        count(stat::STACK_READ_ERRORS);
        return;
    }
    unsafe {
        (*out).header = header;
        (*out).vtable = vtable;
        (*out).born_ns = born_ns;
        (*out).stack.ip = regs.rip;
        (*out).stack.sp = sp;
        (*out).stack.bp = regs.rbp;
        (*out).stack.len = len as u64;
    }
    entry.submit(0);
    count(stat::STACK_SAMPLES);
}

#[inline(always)]
/// Records a birth; returns the site's vtable, its births so far on this CPU and the birth time.
fn record_birth(header: u64) -> Option<(u64, u64, u64)> {
    let vtable = read_vtable(header)?;
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(old) = unsafe { TASKS.get(&header) } {
        // The same header is born again: the previous task's finish was missed. Close it.
        let old = *old;
        close_task(&old, now);
        count(stat::BIRTH_STALE_REPLACED);
    }
    let rec = TaskRec { vtable, born_ns: now };
    if TASKS.insert(&header, &rec, 0).is_err() {
        count(stat::TASKS_MAP_FULL);
        return None;
    }
    let spawned = match site(vtable) {
        Some(s) => unsafe {
            (*s).spawned += 1;
            (*s).spawned
        },
        None => {
            let _ = TASKS.remove(&header);
            return None;
        }
    };
    count(stat::BIRTHS);
    Some((vtable, spawned, now))
}

/// `task::raw::poll(header)`: in first-poll mode a task is born the first time it is polled.
#[uprobe]
pub fn task_birth_first_poll(ctx: ProbeContext) -> u32 {
    let header: u64 = ctx.arg(0).unwrap_or(0);
    if unsafe { TASKS.get(&header) }.is_some() {
        count(stat::POLL_KNOWN);
        return 0;
    }
    record_birth(header);
    0
}

/// `<Arc<Handle> as Schedule>::release(&self, task: &Task<Self>)`: read the header through &Task.
#[uprobe]
pub fn task_finish_release(ctx: ProbeContext) -> u32 {
    if let Some(header) = header_of_task_ref(&ctx) {
        record_finish(header);
    }
    0
}

/// Go: at a RET of runtime.newproc1, RAX holds the new g (Go's register ABI).
#[uprobe]
pub fn go_birth_ret(ctx: ProbeContext) -> u32 {
    let g = unsafe { (*ctx.regs).rax };
    record_birth(g);
    0
}

/// Go: entry of runtime.gdestroy / goexit0, RAX = the dying g.
#[uprobe]
pub fn go_death(ctx: ProbeContext) -> u32 {
    let g = unsafe { (*ctx.regs).rax };
    record_finish(g);
    0
}

/// Records that the task (or goroutine) at `header` finished.
#[inline(always)]
fn record_finish(header: u64) {
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(rec) = unsafe { TASKS.get(&header) } {
        let rec = *rec;
        let _ = TASKS.remove(&header);
        close_task(&rec, now);
        count(stat::FINISHES);
        return;
    }
    // Alive before attach (or its birth was lost and counted): count it apart, never as live.
    let Some(vtable) = read_vtable(header) else {
        return;
    };
    match site(vtable) {
        Some(s) => unsafe { (*s).finished_preexisting += 1 },
        None => count(stat::FINISH_NO_SITE),
    }
    count(stat::FINISH_PREEXISTING);
}

/// Does nothing: the same attach points with this program measure what the traps alone cost.
#[uprobe]
pub fn empty_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
