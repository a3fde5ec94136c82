//! Finding task headers in the heap: a header has a task vtable at +16 and its runtime's owner id
//! at +24. A header found this way is only a seed (it may be a freed cell): the runtime's lists
//! are then found from it and validated ([`super::lists`]). The scan is resumable and reads a
//! bounded number of bytes per call.
use std::collections::HashMap;

use super::{mem::Mem, vtables::Vtables};
use crate::target::Mapping;

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
}

impl HeapScan {
    pub fn new(regions: Vec<(u64, u64)>) -> Self {
        let at = regions.first().map_or(0, |r| r.0);
        HeapScan { regions, at, ..HeapScan::default() }
    }

    pub fn done(&self) -> bool {
        self.region >= self.regions.len()
    }

    /// Scans on for at most `budget` bytes; appends seeds of owners not `known`.
    pub fn scan(&mut self, mem: &mut dyn Mem, vt: &Vtables, budget: u64, known: &dyn Fn(u64) -> bool, out: &mut Vec<Seed>) {
        let mut left = budget;
        let mut buf = vec![0u8; CHUNK as usize + 32];
        while left > 0 && !self.done() {
            let (_, end) = self.regions[self.region];
            // overlap 32 bytes so a header across chunks is seen
            let n = (end - self.at).min(CHUNK + 32).min(left + 32);
            let b = &mut buf[..n as usize];
            if mem.read(self.at, b) {
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
            let step = n.saturating_sub(32).max(8).min(end - self.at);
            self.bytes += n;
            left = left.saturating_sub(n);
            self.at += step;
            if self.at + 32 >= end {
                self.region += 1;
                self.at = self.regions.get(self.region).map_or(0, |r| r.0);
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
        let mut scan = HeapScan::new(vec![(0x100_0000, 0x100_0000 + size as u64), (0x800_0000, 0x800_1000)]);
        let mut out = Vec::new();
        scan.scan(&mut mem, &vt(), CHUNK / 2, &|_| false, &mut out);
        assert!(out.is_empty() && !scan.done());
        scan.scan(&mut mem, &vt(), 16 * CHUNK, &|o| o == 2, &mut out);
        assert!(scan.done());
        assert_eq!(out.iter().map(|s| s.header).collect::<Vec<_>>(), vec![h1]);
        assert!(scan.bytes < 16 * CHUNK);
    }
}
