//! A runtime's blocking-pool queue: `spawn_blocking` tasks waiting for a thread. Once the pool
//! has its cap of threads (512 by default) all busy, new blocking tasks queue here, so a
//! `spawn_blocking` leak goes on growing in this queue after its threads stop growing.
//!
//! The pool is reached from the runtime handle (`blocking_spawner: Spawner { inner: Arc<Inner> }`)
//! and its queue is a `VecDeque<Task>` inside a mutex (one, or one per shard in newer tokio);
//! each element is the task's header pointer and a flag (16 bytes). It is found by shape, from a
//! non-empty queue: a pointer among the handle's words leads to a block holding a `VecDeque`
//! (capacity, buffer pointer, head, length, as rustc lays it out) whose queued elements are task
//! headers of no runtime (a blocking task is never bound to a list: owner id 0) with a task
//! vtable. Slots outside head..head+len keep stale pointers, so the layout is fixed, not guessed
//! among permutations that could read them. With tokio's sharded pool queue, only the first
//! shard found non-empty is read.
use super::{lists::read_words, mem::Mem, vtables::Vtables, walk::TaskSeen};

/// Where one queue's `VecDeque` fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingQueue {
    pub buf_at: u64,
    pub cap_at: u64,
    pub head_at: u64,
    pub len_at: u64,
}

/// Bytes of the handle whose words are followed, and bytes read behind each.
const HANDLE_BYTES: usize = 8192;
const INNER_BYTES: usize = 1024;
const MAX_QUEUE: u64 = 1 << 22;
const ELEM: u64 = 16;

/// The address of element `i` of a queue buffer at `buf` (None past the address space: the
/// target's memory is not trusted).
fn slot(buf: u64, i: u64) -> Option<u64> {
    buf.checked_add(ELEM.checked_mul(i)?)
}

fn words(mem: &mut dyn Mem, addr: u64, n: usize) -> Option<Vec<u64>> {
    Some(read_words(mem, addr, n)).filter(|w| !w.is_empty())
}

/// Whether `h` is a queued blocking task: a task vtable, owner id 0, references held.
fn is_blocking_header(mem: &mut dyn Mem, vt: &Vtables, h: u64) -> bool {
    if h == 0 || !h.is_multiple_of(8) {
        return false;
    }
    let mut b = [0u8; 32];
    if !mem.read(h, &mut b) {
        return false;
    }
    let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
    vt.get(w(16)).is_some() && w(24) == 0 && (1..1 << 24).contains(&(w(0) >> 6))
}

/// Finds a non-empty blocking queue behind the runtime handle at `handle`.
pub fn find(mem: &mut dyn Mem, vt: &Vtables, handle: u64) -> Option<BlockingQueue> {
    let hw = words(mem, handle, HANDLE_BYTES)?;
    for &p in &hw {
        if p == 0 || !p.is_multiple_of(8) || p == handle || p < 0x10000 {
            continue;
        }
        let Some(w) = words(mem, p, INNER_BYTES) else { continue };
        for i in 1..w.len().saturating_sub(2) {
            let buf = w[i];
            if buf == 0 || !buf.is_multiple_of(8) || buf < 0x10000 {
                continue;
            }
            // `VecDeque { head, len, buf: RawVec { ptr, cap } }` as rustc lays it out:
            // capacity, buffer, head, length (the capacity's niche puts the RawVec first)
            let (c, h, l) = (i - 1, i + 1, i + 2);
            let (cap, head, len) = (w[c], w[h], w[l]);
            if cap == 0 || cap > MAX_QUEUE || len == 0 || len > cap || head >= cap {
                continue;
            }
            // every queued element (the first 64) a blocking task's header
            let valid = (0..len.min(64)).all(|k| {
                slot(buf, (head + k) % cap).and_then(|a| mem.u64_at(a)).is_some_and(|t| is_blocking_header(mem, vt, t))
            });
            if valid {
                let at = |j: usize| p.wrapping_add(8 * j as u64);
                return Some(BlockingQueue { buf_at: at(i), cap_at: at(c), head_at: at(h), len_at: at(l) });
            }
        }
    }
    None
}

/// The tasks queued now (at most `max`), or None when the queue no longer reads as one.
pub fn read(mem: &mut dyn Mem, vt: &Vtables, q: &BlockingQueue, max: u64, out: &mut Vec<TaskSeen>) -> Option<u64> {
    let (buf, cap, head, len) = (mem.u64_fresh(q.buf_at)?, mem.u64_fresh(q.cap_at)?, mem.u64_fresh(q.head_at)?, mem.u64_fresh(q.len_at)?);
    if len > cap || cap > MAX_QUEUE || (cap > 0 && head >= cap) {
        return None;
    }
    let mut n = 0;
    for k in 0..len.min(max) {
        let Some(h) = slot(buf, (head + k) % cap).and_then(|a| mem.u64_at(a)) else { continue };
        if !is_blocking_header(mem, vt, h) {
            continue;
        }
        let mut b = [0u8; 24];
        if !mem.read(h, &mut b) {
            continue;
        }
        let vtable = u64::from_ne_bytes(b[16..24].try_into().unwrap());
        let Some(info) = vt.get(vtable) else { continue };
        let Some(id) = h.checked_add(info.id_offset).and_then(|a| mem.u64_at(a)) else { continue };
        out.push(TaskSeen { owner: 0, header: h, vtable, id, state: u64::from_ne_bytes(b[0..8].try_into().unwrap()) });
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::tokio::census::{lists::tests::vt, lists::tests::VT, mem::FakeMem};

    #[test]
    fn finds_and_reads_a_wrapped_queue_behind_the_handle() {
        let mut mem = FakeMem::default();
        let (handle, inner, buf, cells) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64, 0x40_0000u64);
        mem.regions.push((handle, vec![0u8; 4096]));
        mem.regions.push((inner, vec![0u8; 2048]));
        mem.regions.push((buf, vec![0u8; 16 * 8]));
        mem.regions.push((cells, vec![0u8; 256 * 4]));
        mem.put_u64(handle + 0x40, inner);
        // VecDeque at inner + 0x60: cap 8, buf, head 6, len 3 (wraps around)
        for (k, v) in [(0x60, 8), (0x68, buf), (0x70, 6), (0x78, 3)] {
            mem.put_u64(inner + k, v);
        }
        for (k, slot) in [6u64, 7, 0].into_iter().enumerate() {
            let h = cells + 256 * k as u64;
            mem.put_u64(h, 1 << 6);
            mem.put_u64(h + 16, VT);
            mem.put_u64(h + 40, 100 + k as u64); // id
            mem.put_u64(buf + 16 * slot, h);
        }
        let q = find(&mut mem, &vt(), handle).expect("queue found");
        assert_eq!(q, BlockingQueue { buf_at: inner + 0x68, cap_at: inner + 0x60, head_at: inner + 0x70, len_at: inner + 0x78 });
        let mut out = Vec::new();
        assert_eq!(read(&mut mem, &vt(), &q, 100, &mut out), Some(3));
        assert_eq!(out.iter().map(|t| t.id).collect::<Vec<_>>(), vec![100, 101, 102]);
        // a task bound to a runtime (owner id set) is not a queued blocking task
        mem.put_u64(cells + 24, 3);
        out.clear();
        assert_eq!(read(&mut mem, &vt(), &q, 100, &mut out), Some(2));
        // an empty queue is not found (nothing to validate it by)
        mem.put_u64(inner + 0x78, 0);
        assert_eq!(find(&mut mem, &vt(), handle), None);
    }
}
