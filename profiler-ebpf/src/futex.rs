//! Futex waits of the target's threads: syscalls:sys_enter_futex / sys_exit_futex tracepoints.
//! They fire for every process: the first thing they do is compare the thread group id.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use profiler_common::{is_futex_wait_op, stat, FutexWait};

use crate::{count, global};

#[map(name = "FUTEX_WAITS")]
static FUTEX_WAITS: HashMap<u32, FutexWait> = HashMap::with_max_entries(65536, 0);

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
    count(stat::FUTEX_WAIT_BEGIN);
    0
}

#[tracepoint]
pub fn futex_exit(_ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if (id >> 32) != global(&TARGET_TGID) {
        return 0;
    }
    if FUTEX_WAITS.remove(&(id as u32)).is_ok() {
        count(stat::FUTEX_WAIT_END);
    }
    0
}
