//! Reading the target's memory for a census: a [`Mem`] trait (so the list logic is testable on a
//! fake address space) and [`BlockReader`], which reads the target in 16 KiB blocks cached for one
//! sample: task cells allocated near each other cost one syscall per block, not one per task.
use std::collections::HashMap;

use crate::target::memory::{Memory as _, Process, ReadLimits};

/// An address space to read from.
pub trait Mem {
    /// Fills `buf` from `addr`; false when any byte is unreadable.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;

    /// Reads now, bypassing any cache (list heads, counters: the freshest values).
    fn read_fresh(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.read(addr, buf)
    }

    /// Bytes read from the target since the last sample began (0 for a fake address space).
    fn bytes_read(&self) -> u64 {
        0
    }

    fn u64_at(&mut self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_ne_bytes(b))
    }

    fn u64_fresh(&mut self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_fresh(addr, &mut b).then(|| u64::from_ne_bytes(b))
    }
}

const BLOCK: u64 = 16 * 1024;
/// Blocks read at most in one call: when the walk moves through memory in order (the block before
/// was read in this sample), the next ones not yet read come with the one asked for. A million
/// tasks' cells laid out in order take 16 times fewer calls; cells scattered across a big heap
/// still cost a block each.
const RUN: u64 = 16;

/// Reads the target in cached blocks; call [`BlockReader::new_sample`] before each walk. The cache
/// holds at most `max_bytes`: past it the block read longest ago is evicted and its buffer reused
/// (the walk moves forward through the heap, so a block is needed for a short while: a small
/// cache serves it, and no buffer is allocated or zeroed again sample after sample).
pub struct BlockReader {
    proc: Process,
    /// block index -> its slot in `buffers`, or None when the block could not be read.
    blocks: HashMap<u64, Option<usize>, foldhash::fast::RandomState>,
    buffers: Vec<Box<[u8]>>,
    /// The block index held by each slot, and the next slot to evict (a ring).
    owners: Vec<u64>,
    next_slot: usize,
    /// The blocks of the last two reads and their slots, the latest first: a task's words lie in
    /// one or two blocks, read one after another, so most reads skip the map.
    last: [Option<(u64, usize)>; 2],
    max_blocks: usize,
    /// Bytes read from the target since the last `new_sample`.
    pub bytes_read: u64,
}

impl BlockReader {
    /// `max_bytes`: the cache's bound. `limits`: what one sample may read (see
    /// [`BlockReader::start_budget`]).
    pub fn new(space: crate::target::Space, max_bytes: u64, limits: ReadLimits) -> Self {
        BlockReader {
            proc: Process::new(space, limits),
            blocks: HashMap::default(),
            buffers: Vec::new(),
            owners: Vec::new(),
            next_slot: 0,
            last: [None; 2],
            max_blocks: (max_bytes / BLOCK).max(2 * RUN) as usize,
            bytes_read: 0,
        }
    }

    /// Starts counting a sample's reads against the read budget.
    pub fn start_budget(&self) {
        self.proc.budget.new_sample();
    }

    /// The report's warning when the last sample ran out of budget.
    pub fn budget_warning(&self) -> Option<String> {
        self.proc.budget.warning(&self.proc.space.label())
    }

    /// Forgets what was read: the next reads see the target as it is now (the buffers are kept).
    pub fn new_sample(&mut self) {
        self.blocks.clear();
        self.next_slot = 0;
        self.last = [None; 2];
        self.bytes_read = 0;
    }

    /// The slot to read a new block into: a fresh buffer until the bound, then the oldest one's.
    fn take_slot(&mut self, index: u64) -> usize {
        let slot = if self.buffers.len() < self.max_blocks && self.next_slot == self.buffers.len() {
            self.buffers.push(vec![0u8; BLOCK as usize].into_boxed_slice());
            self.owners.push(index);
            self.buffers.len() - 1
        } else {
            let slot = self.next_slot % self.buffers.len().max(1);
            let old = self.owners[slot];
            if self.blocks.get(&old) == Some(&Some(slot)) {
                self.blocks.remove(&old);
            }
            self.owners[slot] = index;
            for l in &mut self.last {
                if l.is_some_and(|(_, s)| s == slot) {
                    *l = None;
                }
            }
            slot
        };
        self.next_slot = (slot + 1) % self.max_blocks;
        slot
    }

    /// Reads block `index` and, when the walk moves through memory in order (the block before it,
    /// or after it, was read in this sample), up to [`RUN`] - 1 more not yet read in the same
    /// direction, in one call. A run cut short by unreadable memory leaves the block where it
    /// stopped unreadable (its bytes are then read one access at a time) and those after it
    /// unread; block `index` itself is then read alone if the run did not reach it.
    fn read_blocks(&mut self, index: u64) {
        let read = |i: Option<u64>| i.is_some_and(|i| self.blocks.get(&i).is_some_and(|b| b.is_some()));
        let (up, down) = (read(index.checked_sub(1)), !read(index.checked_sub(1)) && read(index.checked_add(1)));
        let free = |i: Option<u64>| i.is_some_and(|i| !self.blocks.contains_key(&i));
        let mut run = 1;
        while run < RUN && ((up && free(index.checked_add(run))) || (down && free(index.checked_sub(run)))) {
            run += 1;
        }
        if run > 1 && !self.proc.budget.fits(run * BLOCK) {
            run = 1;
        }
        let first = if down { index - (run - 1) } else { index };
        self.read_run(first, run);
        if !self.blocks.contains_key(&index) {
            self.read_run(index, 1);
        }
    }

    /// Reads blocks `first..first + run` in one call (see [`BlockReader::read_blocks`]).
    fn read_run(&mut self, first: u64, run: u64) {
        if !self.proc.budget.charge(run * BLOCK) {
            self.blocks.insert(first, None);
            return;
        }
        let slots: Vec<usize> = (0..run).map(|k| self.take_slot(first + k)).collect();
        let got = {
            let mut bufs: Vec<&mut [u8]> = slots
                .iter()
                // SAFETY: the slots of one run are distinct (each taken in turn from the ring,
                // which is longer than a run), so each buffer is borrowed once; the borrows end
                // with this block, before `self.buffers` is used again
                .map(|&slot| unsafe { std::slice::from_raw_parts_mut(self.buffers[slot].as_mut_ptr(), BLOCK as usize) })
                .collect();
            self.proc.space.read_run(first * BLOCK, &mut bufs)
        };
        let whole = got as u64 / BLOCK;
        self.bytes_read += whole * BLOCK;
        for (k, &slot) in slots.iter().enumerate() {
            match (k as u64).cmp(&whole) {
                std::cmp::Ordering::Less => {
                    self.blocks.insert(first + k as u64, Some(slot));
                }
                std::cmp::Ordering::Equal => {
                    self.blocks.insert(first + k as u64, None);
                }
                std::cmp::Ordering::Greater => {}
            }
        }
    }

    fn block(&mut self, index: u64) -> Option<&[u8]> {
        if let Some((_, slot)) = self.last[0].filter(|&(i, _)| i == index) {
            return Some(&self.buffers[slot]);
        }
        if let Some(hit) = self.last[1].filter(|&(i, _)| i == index) {
            self.last.swap(0, 1);
            return Some(&self.buffers[hit.1]);
        }
        if !self.blocks.contains_key(&index) {
            self.read_blocks(index);
        }
        match self.blocks.get(&index) {
            Some(&Some(slot)) => {
                self.last = [Some((index, slot)), self.last[0]];
                Some(&self.buffers[slot])
            }
            _ => None,
        }
    }
}

impl Mem for BlockReader {
    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = addr.checked_add(buf.len() as u64) else {
            return false;
        };
        let mut at = addr;
        while at < end {
            let index = at / BLOCK;
            let off = (at % BLOCK) as usize;
            let n = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            let dst = &mut buf[(at - addr) as usize..][..n];
            match self.block(index) {
                Some(b) => dst.copy_from_slice(&b[off..off + n]),
                // a block at a mapping's edge: read just these bytes
                None => {
                    if self.proc.read(at, dst).is_err() {
                        return false;
                    }
                    self.bytes_read += n as u64;
                }
            }
            at += n as u64;
        }
        true
    }

    fn read_fresh(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let ok = self.proc.read(addr, buf).is_ok();
        self.bytes_read += buf.len() as u64 * u64::from(ok);
        ok
    }
}

/// A fake address space for tests: regions of bytes at addresses.
#[cfg(test)]
#[derive(Default)]
pub struct FakeMem {
    pub regions: Vec<(u64, Vec<u8>)>,
}

#[cfg(test)]
impl FakeMem {
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        for (base, bytes) in &mut self.regions {
            if addr >= *base && addr + 8 <= *base + bytes.len() as u64 {
                let o = (addr - *base) as usize;
                bytes[o..o + 8].copy_from_slice(&v.to_ne_bytes());
                return;
            }
        }
        panic!("no region holds {addr:#x}");
    }
}

#[cfg(test)]
impl Mem for FakeMem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        for (base, bytes) in &self.regions {
            if addr >= *base && addr + buf.len() as u64 <= *base + bytes.len() as u64 {
                let o = (addr - *base) as usize;
                buf.copy_from_slice(&bytes[o..o + buf.len()]);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_reader_reads_across_blocks_and_counts_bytes() {
        let data: Vec<u64> = (0..20_000).collect();
        let base = data.as_ptr() as u64;
        let mut r = BlockReader::new(crate::target::Space::Live(std::process::id()), 1 << 20, ReadLimits::default());
        // a read straddling a block boundary
        let at = (base / BLOCK + 2) * BLOCK - 8; // both blocks inside `data`
        let i = (at - base) / 8;
        let mut b = [0u8; 16];
        assert!(r.read(at, &mut b));
        assert_eq!(u64::from_ne_bytes(b[..8].try_into().unwrap()), i);
        assert_eq!(u64::from_ne_bytes(b[8..].try_into().unwrap()), i + 1);
        // the second block was read in order: the blocks after it came with it
        let read = r.bytes_read;
        assert!((2 * BLOCK..=(1 + RUN) * BLOCK).contains(&read), "{read}");
        // cached: no more bytes
        assert_eq!(r.u64_at(at + 8), Some(i + 1));
        assert_eq!(r.u64_at(at + 8 * 2048), Some(i + 2048));
        assert_eq!(r.bytes_read, read);
        assert_eq!(r.u64_at(8), None);
        r.new_sample();
        assert_eq!(r.bytes_read, 0);
    }

    #[test]
    fn a_run_read_in_order_stops_at_unreadable_memory() {
        let len = 9 * BLOCK as usize;
        // SAFETY: a private anonymous mapping of our own, unmapped below
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED);
        let a = (p as u64).div_ceil(BLOCK) * BLOCK;
        // four readable blocks from `a`, then none
        // SAFETY: inside the mapping; the words are written before they are read
        unsafe {
            for k in 0..4 {
                ((a + k * BLOCK + 8) as *mut u64).write(k + 1);
            }
            assert_eq!(libc::mprotect((a + 4 * BLOCK) as *mut libc::c_void, (p as u64 + len as u64 - a - 4 * BLOCK) as usize, libc::PROT_NONE), 0);
        }
        let mut r = BlockReader::new(crate::target::Space::Live(std::process::id()), 1 << 20, ReadLimits::default());
        assert_eq!(r.u64_at(a + 8), Some(1));
        assert_eq!(r.bytes_read, BLOCK);
        // in order: the run asks for 16 blocks, gets 3
        assert_eq!(r.u64_at(a + BLOCK + 8), Some(2));
        assert_eq!(r.bytes_read, 4 * BLOCK);
        assert_eq!((r.u64_at(a + 2 * BLOCK + 8), r.u64_at(a + 3 * BLOCK + 8)), (Some(3), Some(4)));
        assert_eq!(r.bytes_read, 4 * BLOCK);
        assert_eq!(r.u64_at(a + 4 * BLOCK), None);
        // downward (a list walked newest first): the run goes down from the block asked for,
        // into memory that may not be readable below `a`; every word still reads right
        r.new_sample();
        assert_eq!(r.u64_at(a + 3 * BLOCK + 8), Some(4));
        for k in (0..3).rev() {
            assert_eq!(r.u64_at(a + k * BLOCK + 8), Some(k + 1));
        }
        assert!(r.bytes_read >= 4 * BLOCK);
        // SAFETY: the mapping made above
        unsafe { libc::munmap(p, len) };
    }
}
