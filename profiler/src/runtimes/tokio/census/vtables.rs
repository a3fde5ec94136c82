//! tokio's task vtables in the target: each `(future, scheduler)` pair has one static `Vtable`
//! (`task/raw.rs`: seven function pointers, then `trailer_offset`, `scheduler_offset`,
//! `id_offset`; the same 1.28..newest). They are found in the executable's data as the dynamic
//! loader relocates it (read from the file and its relocations, so a program stopped before its
//! loader ran, under `leakprof run`, is read too), by their shape, cross-checked against the
//! `raw::poll` symbols when the binary has them; so a stripped binary's vtables are found too.
use std::collections::{HashMap, HashSet};

use crate::elf::{ElfImage, LoadSegment};

/// What the census needs of one vtable (offsets from the task header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtInfo {
    pub trailer_offset: u64,
    pub scheduler_offset: u64,
    pub id_offset: u64,
}

/// The task vtables of one process, by runtime address.
#[derive(Debug, Clone, Default)]
pub struct Vtables {
    /// Looked up for every task read (when its vtable is not the last one's): foldhash, not SipHash (keys are the binary's own
    /// vtable addresses, not chosen by the target).
    map: HashMap<u64, VtInfo, foldhash::fast::FixedState>,
    lo: u64,
    hi: u64,
}

/// Bytes of the executable's data read at most when looking for vtables.
const MAX_DATA_BYTES: u64 = 256 << 20;
const WORDS: usize = 10;

impl Vtables {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, VtInfo)>) -> Self {
        let map: HashMap<u64, VtInfo, foldhash::fast::FixedState> = pairs.into_iter().collect();
        let lo = map.keys().copied().min().unwrap_or(1);
        let hi = map.keys().copied().max().map_or(0, |h| h + 1);
        Vtables { map, lo, hi }
    }

    /// The vtable at `addr`, if `addr` is one.
    #[inline]
    pub fn get(&self, addr: u64) -> Option<&VtInfo> {
        if addr < self.lo || addr >= self.hi {
            return None;
        }
        self.map.get(&addr)
    }

    /// The offset of the task id from the header, when every vtable of a task a runtime or a
    /// `LocalSet` owns has the same one (their scheduler is one pointer: the id right after it).
    /// The blocking pool's tasks (a larger or empty scheduler) are never bound to a list, so
    /// never seen at `bind_inner`: they do not count.
    pub fn uniform_id_offset(&self) -> Option<u64> {
        let mut offs = self.map.values().filter(|v| v.id_offset == v.scheduler_offset + 8).map(|v| v.id_offset);
        let first = offs.next()?;
        offs.all(|o| o == first).then_some(first)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Finds the vtables in the executable's file-backed data, as relocated (`bias`: runtime minus
    /// ELF address). `text`: runtime ranges of its code; `polls`: runtime addresses of
    /// `raw::poll` (None for a binary without symbols). Keys are runtime addresses.
    pub fn from_image(image: &ElfImage, bias: u64, text: &[(u64, u64)], polls: Option<&HashSet<u64>>) -> Vtables {
        let text: Vec<(u64, u64)> = text.iter().map(|&(a, b)| (a.wrapping_sub(bias), b.wrapping_sub(bias))).collect();
        let polls: Option<HashSet<u64>> = polls.map(|p| p.iter().map(|a| a.wrapping_sub(bias)).collect());
        let mut found = Vec::new();
        let mut budget = MAX_DATA_BYTES;
        for seg in image.load_segments() {
            let Some((lo, hi)) = file_backed(seg, image.data().len() as u64, budget) else {
                continue;
            };
            if hi <= lo || text.iter().any(|&(a, b)| lo >= a && hi <= b) {
                continue;
            }
            budget -= hi - lo;
            let words: Vec<u64> = (lo..hi).step_by(8).map(|v| image.read_pointer(v).unwrap_or(0)).collect();
            found.extend(find_in(&words, lo, &text, polls.as_ref()).into_iter().map(|(a, i)| (a.wrapping_add(bias), i)));
        }
        Vtables::from_pairs(found)
    }
}

/// The 8-aligned vaddr range of `seg`'s data that the file (of `file_len` bytes) holds, at most
/// `budget` bytes: a header claiming more than the file has (a truncated or hostile binary) cost
/// up to [`MAX_DATA_BYTES`] of zeros read word by word.
fn file_backed(seg: &LoadSegment, file_len: u64, budget: u64) -> Option<(u64, u64)> {
    let in_file = seg.file_size.min(file_len.saturating_sub(seg.file_offset));
    let lo = seg.vaddr.checked_next_multiple_of(8)?;
    Some((lo, seg.vaddr.saturating_add(in_file).min(lo.saturating_add(budget)) & !7))
}

/// Vtables among `words` (read at `base`): seven pointers into `text`, then offsets of the
/// shape tokio gives them (the scheduler right after the 32+ byte header, the task id right after
/// the scheduler, the trailer after the future). The scheduler is one pointer for a runtime's
/// or a `LocalSet`'s tasks (`Arc<..>`), other sizes for the blocking pool's (`BlockingSchedule`
/// is empty in older tokio, 16 bytes of task hooks in 1.54), so the id is 0 to 32 bytes after it.
pub fn find_in(words: &[u64], base: u64, text: &[(u64, u64)], polls: Option<&HashSet<u64>>) -> Vec<(u64, VtInfo)> {
    let in_text = |p: u64| text.iter().any(|&(a, b)| p >= a && p < b);
    let mut out = Vec::new();
    if words.len() < WORDS {
        return out;
    }
    for i in 0..=words.len() - WORDS {
        let w = &words[i..i + WORDS];
        let (trailer, sched, id) = (w[7], w[8], w[9]);
        let shape = sched % 8 == 0
            && (32..=512).contains(&sched)
            && (sched..=sched + 32).contains(&id)
            && id % 8 == 0
            && trailer % 8 == 0
            && trailer >= id + 8
            && trailer <= 16 << 20;
        if !shape || !w[..7].iter().all(|&p| in_text(p)) {
            continue;
        }
        if polls.is_some_and(|s| !s.contains(&w[0])) {
            continue;
        }
        out.push((base + 8 * i as u64, VtInfo { trailer_offset: trailer, scheduler_offset: sched, id_offset: id }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: (u64, u64) = (0x1000, 0x9000);

    fn vtable(poll: u64, trailer: u64) -> Vec<u64> {
        vec![poll, 0x1100, 0x1200, 0x1300, 0x1400, 0x1500, 0x1600, trailer, 32, 40]
    }

    /// A load segment whose end passes u64::MAX made the vtable scan's bound overflow.
    #[test]
    fn a_segment_at_the_top_of_the_address_space_is_scanned_without_overflow() {
        let img = crate::elf::ElfImage::parse(&crate::elf::tests::elf_with_segment(0, u64::MAX - 0x3f, 0xb8)).unwrap();
        assert!(Vtables::from_image(&img, 0, &[TEXT], None).is_empty());
    }

    #[test]
    fn finds_vtables_by_shape_and_poll_symbol() {
        let mut words = vec![7, 0x2000];
        words.extend(vtable(0x2000, 256));
        words.extend([0, 0]);
        words.extend(vtable(0x3000, 128));
        // wrong shape: id not just after the scheduler
        let mut bad = vtable(0x2000, 256);
        bad[9] = 72;
        words.extend(bad);
        let all = find_in(&words, 0x10_000, &[TEXT], None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, 0x10_010);
        assert_eq!(all[0].1, VtInfo { trailer_offset: 256, scheduler_offset: 32, id_offset: 40 });
        let polls: HashSet<u64> = [0x3000].into();
        let some = find_in(&words, 0x10_000, &[TEXT], Some(&polls));
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].1.trailer_offset, 128);
        let vt = Vtables::from_pairs(all);
        assert!(vt.get(0x10_010).is_some());
        assert!(vt.get(0x10_018).is_none());
        assert!(vt.get(0).is_none());
    }

    /// The elf fuzz target's input (fuzz/regressions/elf/): a 10 KiB file whose data segment
    /// claimed 256 MiB: 32 M words read (zeros past the file's end) and a 256 MB vector, for
    /// every binary looked at. Only what the file holds is read now.
    #[test]
    fn only_the_bytes_the_file_holds_are_searched() {
        let seg = |file_offset, file_size| LoadSegment { vaddr: 0x40_0004, mem_size: 1 << 30, file_offset, file_size };
        assert_eq!(file_backed(&seg(0x100, 256 << 20), 0x2900, MAX_DATA_BYTES), Some((0x40_0008, 0x40_2800)));
        assert_eq!(file_backed(&seg(0x100, 0x1000), 0x2900, MAX_DATA_BYTES), Some((0x40_0008, 0x40_1000)));
        assert_eq!(file_backed(&seg(0x100, 0x1000), 0x2900, 0x10), Some((0x40_0008, 0x40_0018)));
        let (lo, hi) = file_backed(&seg(0x3000, 0x1000), 0x2900, MAX_DATA_BYTES).unwrap();
        assert!(hi <= lo, "past the file's end: nothing");
        let top = LoadSegment { vaddr: u64::MAX - 3, mem_size: 8, file_offset: 0, file_size: 8 };
        assert_eq!(file_backed(&top, 0x2900, MAX_DATA_BYTES), None);
    }

    #[test]
    fn the_uniform_id_offset_leaves_blocking_tasks_out() {
        let vt = |id_offset| VtInfo { trailer_offset: 256, scheduler_offset: 32, id_offset };
        let v = Vtables::from_pairs([(0x10, vt(40)), (0x20, vt(40)), (0x30, vt(48)), (0x40, vt(32))]);
        assert_eq!(v.uniform_id_offset(), Some(40));
        let v = Vtables::from_pairs([(0x10, vt(40)), (0x20, VtInfo { trailer_offset: 256, scheduler_offset: 40, id_offset: 48 })]);
        assert_eq!(v.uniform_id_offset(), None);
    }

    #[test]
    fn a_blocking_task_s_vtable_has_a_larger_scheduler() {
        // BlockingSchedule holds the task hooks (16 bytes): the id is 16 bytes after it
        let mut w = vtable(0x2000, 256);
        w[9] = 48;
        assert_eq!(find_in(&w, 0, &[TEXT], None)[0].1, VtInfo { trailer_offset: 256, scheduler_offset: 32, id_offset: 48 });
        w[9] = 44;
        assert!(find_in(&w, 0, &[TEXT], None).is_empty(), "an id is 8-aligned");
    }

    #[test]
    fn pointers_outside_text_are_not_a_vtable() {
        let mut w = vtable(0x2000, 256);
        w[3] = 0x20_000;
        assert!(find_in(&w, 0, &[TEXT], None).is_empty());
    }
}
