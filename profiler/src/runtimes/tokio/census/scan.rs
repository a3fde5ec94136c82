//! Finding task headers in the heap: a header has a task vtable at +16 and its runtime's owner id
//! at +24. A header found this way is only a seed (it may be a freed cell): the runtime's lists
//! are then found from it and validated ([`super::lists`]). The scan is resumable and reads a
//! bounded number of bytes per call. Pages the target never touched (its pagemap says so) are
//! skipped unread: a big heap reserved but mostly untouched costs its touched bytes alone.
use std::collections::{HashMap, VecDeque};

use super::{mem::Mem, vtables::Vtables};
use crate::target::{resident::Pagemap, Mapping};

/// A candidate task header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub header: u64,
    pub vtable: u64,
    pub owner_id: u64,
}

const CHUNK: u64 = 1 << 20;
/// Seeds kept per owner id per pass: enough to get past a few stale cells.
const SEEDS_PER_OWNER: usize = 4;
/// Address space whose touched pages are looked up at once (16,384 pagemap entries, 128 KiB).
const WINDOW: u64 = 64 << 20;

/// Candidate headers in `buf` (read at `base`).
pub fn seeds_in(buf: &[u8], base: u64, vt: &Vtables, out: &mut Vec<Seed>) {
    let word = |i: usize| u64::from_ne_bytes(buf[i..i + 8].try_into().unwrap());
    let mut i = 0;
    while i + 32 <= buf.len() {
        let vtable = word(i + 16);
        if vt.get(vtable).is_some() {
            let (state, owner_id) = (word(i), word(i + 24));
            let refs = state >> 6;
            if (1..1 << 32).contains(&owner_id) && (1..1 << 24).contains(&refs) {
                out.push(Seed { header: base + i as u64, vtable, owner_id });
            }
        }
        i += 8;
    }
}

/// The mappings a task cell can live in: readable, writable, anonymous or the brk heap.
pub fn heap_regions(maps: &[Mapping]) -> Vec<(u64, u64)> {
    maps.iter()
        .filter(|m| m.readable() && m.writable())
        .filter(|m| match m.path.as_deref() {
            None | Some("[heap]") => true,
            Some(p) => p.starts_with("[anon:"),
        })
        .map(|m| (m.start, m.end))
        .collect()
}

/// A pass over the heap, resumable across calls.
#[derive(Debug, Default)]
pub struct HeapScan {
    regions: Vec<(u64, u64)>,
    region: usize,
    at: u64,
    per_owner: HashMap<u64, usize>,
    /// Bytes read by this pass so far.
    pub bytes: u64,
    /// The target's pagemap (None: a core, or pagemap unreadable: every byte is read).
    pagemap: Option<Pagemap>,
    /// Touched runs of the current region not yet scanned, up to `window_end` (looked up so far).
    runs: VecDeque<(u64, u64)>,
    window_end: u64,
    entries: Vec<u64>,
    /// Bytes of this pass skipped as never touched, and pagemap bytes read to know it (charged to
    /// the budget like the bytes scanned).
    pub untouched: u64,
    pub pagemap_bytes: u64,
}

impl HeapScan {
    pub fn new(regions: Vec<(u64, u64)>, pagemap: Option<Pagemap>) -> Self {
        let at = regions.first().map_or(0, |r| r.0);
        HeapScan { regions, at, pagemap, ..HeapScan::default() }
    }

    pub fn done(&self) -> bool {
        self.region >= self.regions.len()
    }

    fn next_region(&mut self) {
        self.region += 1;
        self.at = self.regions.get(self.region).map_or(0, |r| r.0);
        self.runs.clear();
        self.window_end = 0;
    }

    /// The touched run holding `at` or the first after it, below `end`, looking up windows of the
    /// pagemap as needed (their bytes taken from `left`). None: no touched page left in the
    /// region, or `left` spent (then `at` is where to go on from).
    fn touched_run(&mut self, end: u64, left: &mut u64) -> Option<(u64, u64)> {
        loop {
            while let Some(&(s, e)) = self.runs.front() {
                if e <= self.at {
                    self.runs.pop_front();
                    continue;
                }
                return Some((s.max(self.at), e));
            }
            let pm = self.pagemap.as_ref()?;
            let from = self.window_end.max(self.at) / pm.page_size() * pm.page_size();
            if from >= end || *left == 0 {
                return None;
            }
            let to = (from + WINDOW).min(end);
            match pm.touched(from, to, &mut self.entries) {
                Ok((runs, read)) => {
                    *left = left.saturating_sub(read);
                    self.pagemap_bytes += read;
                    let runs: Vec<(u64, u64)> = runs.into_iter().map(|(s, e)| (s.max(from), e.min(to))).filter(|r| r.0 < r.1).collect();
                    self.untouched += (to - from) - runs.iter().map(|r| r.1 - r.0).sum::<u64>();
                    self.runs.extend(runs);
                    self.window_end = to;
                    self.at = self.at.max(from);
                }
                // pagemap not readable here: read every byte from now on
                Err(_) => {
                    self.pagemap = None;
                    return Some((self.at, end));
                }
            }
        }
    }

    /// Scans on for at most `budget` bytes; appends seeds of owners not `known`.
    pub fn scan(&mut self, mem: &mut dyn Mem, vt: &Vtables, budget: u64, known: &dyn Fn(u64) -> bool, out: &mut Vec<Seed>) {
        let mut left = budget;
        let mut buf = vec![0u8; CHUNK as usize + 32];
        while left > 0 && !self.done() {
            let (_, end) = self.regions[self.region];
            let stop = if self.pagemap.is_some() {
                match self.touched_run(end, &mut left) {
                    Some((s, e)) => {
                        self.at = s;
                        e
                    }
                    None if left == 0 => break,
                    None => {
                        self.next_region();
                        continue;
                    }
                }
            } else {
                end
            };
            // overlap 32 bytes so a header across chunks is seen (a run's end is followed by an
            // untouched page, all zeros: no header goes on there)
            let n = (stop - self.at).min(CHUNK + 32).min(left + 32);
            let b = &mut buf[..n as usize];
            // one read per chunk, around the block cache (nothing here is read twice)
            if mem.read_fresh(self.at, b) {
                let mut found = Vec::new();
                seeds_in(b, self.at, vt, &mut found);
                for s in found {
                    let k = self.per_owner.entry(s.owner_id).or_default();
                    if !known(s.owner_id) && *k < SEEDS_PER_OWNER && !out.contains(&s) {
                        *k += 1;
                        out.push(s);
                    }
                }
            }
            let step = if self.at + n >= stop { n } else { n.saturating_sub(32).max(8) };
            self.bytes += n;
            left = left.saturating_sub(n);
            self.at += step;
            if self.at + 32 >= end {
                self.next_region();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::tokio::census::{mem::FakeMem, vtables::VtInfo};

    fn vt() -> Vtables {
        Vtables::from_pairs([(0x5000, VtInfo { trailer_offset: 128, scheduler_offset: 32, id_offset: 40 })])
    }

    #[test]
    fn finds_headers_with_a_vtable_an_owner_and_references() {
        let mut buf = vec![0u8; 256];
        let put = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        put(&mut buf, 64, 3 << 6); // state: 3 refs
        put(&mut buf, 80, 0x5000);
        put(&mut buf, 88, 2);
        put(&mut buf, 128 + 16, 0x5000); // no refs, no owner: not a header
        let mut out = Vec::new();
        seeds_in(&buf, 0x10_000, &vt(), &mut out);
        assert_eq!(out, vec![Seed { header: 0x10_040, vtable: 0x5000, owner_id: 2 }]);
    }

    #[test]
    fn scan_is_bounded_and_resumes_across_chunks_and_regions() {
        let mut mem = FakeMem::default();
        let size = 3 * CHUNK as usize;
        mem.regions.push((0x100_0000, vec![0u8; size]));
        mem.regions.push((0x800_0000, vec![0u8; 4096]));
        // a header straddling the first chunk boundary, one in the second region
        let h1 = 0x100_0000 + CHUNK - 16;
        for (h, owner) in [(h1, 1), (0x800_0100, 2)] {
            mem.put_u64(h, 1 << 6);
            mem.put_u64(h + 16, 0x5000);
            mem.put_u64(h + 24, owner);
        }
        let mut scan = HeapScan::new(vec![(0x100_0000, 0x100_0000 + size as u64), (0x800_0000, 0x800_1000)], None);
        let mut out = Vec::new();
        scan.scan(&mut mem, &vt(), CHUNK / 2, &|_| false, &mut out);
        assert!(out.is_empty() && !scan.done());
        scan.scan(&mut mem, &vt(), 16 * CHUNK, &|o| o == 2, &mut out);
        assert!(scan.done());
        assert_eq!(out.iter().map(|s| s.header).collect::<Vec<_>>(), vec![h1]);
        assert!(scan.bytes < 16 * CHUNK);
    }
}
