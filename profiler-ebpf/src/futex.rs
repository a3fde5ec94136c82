//! Futex waits of the target's threads: syscalls:sys_enter_futex / sys_exit_futex tracepoints.
//! They fire for every process: the first thing they do is compare the thread group id.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, HashMap},
    programs::TracePointContext,
};
use profiler_common::{is_futex_wait_op, stat, FutexWait};

use crate::{count, global};

#[map(name = "FUTEX_WAITS")]
static FUTEX_WAITS: HashMap<u32, FutexWait> = HashMap::with_max_entries(65536, 0);

/// Waits in FUTEX_WAITS per slot `tid % WAIT_SLOTS`: an exit whose slot is zero closes no wait
/// and does no hash work (most exits of a busy target are of FUTEX_WAKE calls). Threads sharing a
/// slot only cost a hash lookup that finds nothing.
const WAIT_SLOTS: u32 = 1 << 16;
#[map(name = "FUTEX_WAIT_SLOTS")]
static FUTEX_WAIT_SLOTS: Array<u64> = Array::with_max_entries(WAIT_SLOTS, 0);

#[inline(always)]
fn slot(tid: u32) -> Option<*mut u64> {
    FUTEX_WAIT_SLOTS.get_ptr_mut(tid & (WAIT_SLOTS - 1))
}

/// `*p += v` as one atomic instruction (BPF_ATOMIC | BPF_ADD; the BPF target has no atomic
/// read-modify-write in `core`). Adding `u64::MAX` subtracts one.
#[inline(always)]
fn atomic_add(p: *mut u64, v: u64) {
    // SAFETY: p points at a u64 value of an array map (8-byte aligned, lives as long as the map).
    unsafe { core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) v) };
}

#[no_mangle]
static TARGET_TGID: u64 = 0;

/// Offsets in the syscalls:sys_enter_futex record (see its tracefs `format`).
const UADDR_OFF: usize = 16;
const OP_OFF: usize = 24;

#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if (id >> 32) != global(&TARGET_TGID) {
        return 0;
    }
    let op: u64 = unsafe { ctx.read_at(OP_OFF) }.unwrap_or(u64::MAX);
    if !is_futex_wait_op(op as u32) {
        return 0;
    }
    let uaddr: u64 = unsafe { ctx.read_at(UADDR_OFF) }.unwrap_or(0);
    let w = FutexWait { start_ns: unsafe { bpf_ktime_get_ns() }, uaddr, op: (op as u32) & 127, _pad: 0 };
    if FUTEX_WAITS.insert(&(id as u32), &w, 0).is_err() {
        count(stat::FUTEX_MAP_FULL);
        return 0;
    }
    if let Some(s) = slot(id as u32) {
        atomic_add(s, 1);
    }
    count(stat::FUTEX_WAIT_BEGIN);
    0
}

#[tracepoint]
pub fn futex_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if (id >> 32) != global(&TARGET_TGID) {
        return 0;
    }
    let Some(s) = slot(id as u32) else { return 0 };
    if unsafe { core::ptr::read_volatile(s) } == 0 {
        return 0;
    }
    if FUTEX_WAITS.remove(&(id as u32)).is_ok() {
        atomic_add(s, u64::MAX);
        count(stat::FUTEX_WAIT_END);
    }
    0
}
