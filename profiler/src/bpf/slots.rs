//! The SLOTS array (tokio tasks born since attach, by task id), read through a shared read-only
//! mapping of the map: one pass over memory per sample instead of a syscall per slot.
use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::{anyhow, Result};
use aya::maps::{Map, MapData};
use profiler_common::TaskSlot;

use super::LiveTask;

pub struct SlotView {
    _map: MapData,
    ptr: *const TaskSlot,
    slots: usize,
    bytes: usize,
}

// SAFETY: the mapping is read-only from here and lives as long as the value.
unsafe impl Send for SlotView {}

impl SlotView {
    /// Maps `map` (an mmapable array of `slots` TaskSlot) read-only.
    pub fn new(map: Map, slots: u32) -> Result<Self> {
        let Map::Array(data) = map else {
            return Err(anyhow!("map SLOTS is not an array"));
        };
        let page = 4096usize;
        let bytes = (slots as usize * std::mem::size_of::<TaskSlot>()).div_ceil(page) * page;
        // SAFETY: a shared read-only mapping of a BPF array created with BPF_F_MMAPABLE, of at
        // most its size; unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ, libc::MAP_SHARED, data.fd().as_fd().as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(anyhow!("cannot map the SLOTS array: {}", std::io::Error::last_os_error()));
        }
        Ok(SlotView { _map: data, ptr: ptr.cast(), slots: slots as usize, bytes })
    }

    /// The tasks now in their slots. The kernel writes while this reads: a slot read half old,
    /// half new gives at worst one task with another's birth time, never a bad memory access.
    pub fn live(&self) -> Vec<LiveTask> {
        let mut out = Vec::new();
        for i in 0..self.slots {
            // SAFETY: i < slots, inside the mapping; volatile because the kernel writes it.
            let s = unsafe { std::ptr::read_volatile(self.ptr.add(i)) };
            if s.id != 0 {
                out.push(LiveTask { header: s.header, vtable: s.vtable, born_ns: s.born_ns });
            }
        }
        out
    }
}

impl Drop for SlotView {
    fn drop(&mut self) {
        // SAFETY: ptr/bytes came from the mmap in new.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.bytes) };
    }
}
