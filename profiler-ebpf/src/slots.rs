//! tokio tasks born at `bind_inner`: each task since attach sits in SLOTS at its task id (tokio's
//! ids count up from 1), so a birth and a finish are array writes and reads, not hash map
//! operations. A finish whose slot does not hold its id is a task alive before attach (id below
//! FIRST_ID) or one whose slot a task born SLOTS births later took (counted, lifetime unmeasured).
//! Only some births are timed (LIFETIME_MASK): the clock is a third of a birth's cost.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::Array,
    programs::ProbeContext,
};
use profiler_common::{stat, TaskRec, TaskSlot, TIMED_FIRST_PER_SITE, VTABLE_ID_OFFSET};

use crate::{
    checked_vtable, close_task, close_untimed, count, global, header_of_task_ref, read_vtable, sample_stack, sampled, site,
    HEADER_VTABLE_OFFSET,
};

/// BPF_F_MMAPABLE: user space reads the live tasks through a mapping, not a syscall per slot.
const BPF_F_MMAPABLE: u32 = 1 << 10;

#[map(name = "SLOTS")]
static SLOTS: Array<TaskSlot> = Array::with_max_entries(1 << 20, BPF_F_MMAPABLE);
#[map(name = "FIRST_ID")]
static FIRST_ID: Array<u64> = Array::with_max_entries(1, 0);

#[no_mangle]
static ID_OFFSET: u64 = 0;
#[no_mangle]
static LIFETIME_MASK: u64 = 0;
#[no_mangle]
static SLOT_MASK: u64 = (1 << 20) - 1;

/// Largest id offset taken from a vtable (the id lies in the task's cell, after the header).
const MAX_ID_OFFSET: u64 = 4096;

/// The id of the task at `header` whose vtable is `vtable` (0: read it only when needed).
#[inline(always)]
fn task_id(header: u64, vtable: u64) -> Option<u64> {
    let mut off = global(&ID_OFFSET);
    if off == 0 {
        let vt = if vtable != 0 { vtable } else { read_vtable(header)? };
        off = match unsafe { bpf_probe_read_user((vt + VTABLE_ID_OFFSET) as *const u64) } {
            Ok(o) if o > 0 && o < MAX_ID_OFFSET => o,
            _ => {
                count(stat::READ_ERRORS);
                return None;
            }
        };
    }
    match unsafe { bpf_probe_read_user((header + off) as *const u64) } {
        Ok(id) if id != 0 => Some(id),
        _ => {
            count(stat::READ_ERRORS);
            None
        }
    }
}

/// The vtable and id of the task at `header`: one read of the header's words from the vtable
/// on when the id lies among them (tokio 1.28..newest: vtable @16, id @40), else two.
#[inline(always)]
fn vtable_and_id(header: u64) -> Option<(u64, u64)> {
    let vt_off = global(&HEADER_VTABLE_OFFSET);
    let k = global(&ID_OFFSET).wrapping_sub(vt_off) / 8;
    if header == 0 || k == 0 || k >= 4 || global(&ID_OFFSET) % 8 != 0 {
        let vtable = read_vtable(header)?;
        return Some((vtable, task_id(header, vtable)?));
    }
    let Ok(words) = (unsafe { bpf_probe_read_user((header + vt_off) as *const [u64; 4]) }) else {
        count(stat::READ_ERRORS);
        return None;
    };
    let vtable = checked_vtable(words[0])?;
    let id = words[(k & 3) as usize];
    if id == 0 {
        count(stat::READ_ERRORS);
        return None;
    }
    Some((vtable, id))
}

/// `OwnedTasks<S>::bind_inner(&self, task: Task<S>, notified)`: Task<S> is one pointer, the header.
#[uprobe]
pub fn task_birth_bind_inner(ctx: ProbeContext) -> u32 {
    let header: u64 = ctx.arg(1).unwrap_or(0);
    let Some((vtable, id)) = vtable_and_id(header) else {
        return 0;
    };
    let Some(s) = site(vtable) else {
        return 0;
    };
    let spawned = unsafe {
        (*s).spawned += 1;
        (*s).spawned
    };
    // the clock costs as much as the rest of the birth: time a site's first births on this CPU,
    // then one in LIFETIME_MASK + 1, and every birth whose stack is sampled
    let stack = sampled(spawned);
    let timed = stack || spawned <= TIMED_FIRST_PER_SITE || spawned & global(&LIFETIME_MASK) == 0;
    let born_ns = if timed { unsafe { bpf_ktime_get_ns() } } else { 0 };
    if let Some(slot) = SLOTS.get_ptr_mut((id & global(&SLOT_MASK)) as u32) {
        unsafe {
            if (*slot).id != 0 {
                count(stat::SLOT_REUSED);
            }
            (*slot).header = header;
            (*slot).vtable = vtable;
            (*slot).born_ns = born_ns;
            (*slot).id = id;
        }
    }
    count(stat::BIRTHS);
    if stack {
        sample_stack(&ctx, header, vtable, born_ns);
    }
    0
}

/// `<Arc<Handle> as Schedule>::release(&self, task: &Task<Self>)`: read the header through &Task.
#[uprobe]
pub fn task_finish_slot(ctx: ProbeContext) -> u32 {
    let Some(header) = header_of_task_ref(&ctx) else {
        return 0;
    };
    let Some(id) = task_id(header, 0) else {
        return 0;
    };
    if let Some(slot) = SLOTS.get_ptr_mut((id & global(&SLOT_MASK)) as u32) {
        let rec = unsafe {
            if (*slot).id != id {
                None
            } else {
                (*slot).id = 0;
                Some(TaskRec { vtable: (*slot).vtable, born_ns: (*slot).born_ns })
            }
        };
        if let Some(rec) = rec {
            if rec.born_ns != 0 {
                close_task(&rec, unsafe { bpf_ktime_get_ns() });
            } else {
                close_untimed(rec.vtable);
            }
            count(stat::FINISHES);
            return 0;
        }
    }
    let Some(vtable) = read_vtable(header) else {
        return 0;
    };
    let Some(s) = site(vtable) else {
        count(stat::FINISH_NO_SITE);
        return 0;
    };
    let first = FIRST_ID.get(0).copied().unwrap_or(0);
    if first != 0 && id >= first {
        unsafe { (*s).finished += 1 };
        count(stat::FINISH_UNTIMED);
    } else {
        unsafe { (*s).finished_preexisting += 1 };
        count(stat::FINISH_PREEXISTING);
    }
    0
}
