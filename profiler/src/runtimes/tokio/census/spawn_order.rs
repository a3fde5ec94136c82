//! Spawn order from task ids. tokio hands out task ids from one process-wide counter
//! (`task::Id::next`'s `NEXT_ID`), in spawn order. Reading that counter (or, in a binary without
//! symbols, the highest id seen) at each sample gives, for any task id: whether it was spawned
//! before attach, how many tasks were spawned after it, and, for tasks spawned since attach, an
//! estimate of when (between the two samples whose counters bracket it).
use super::mem::Mem;

/// Timeline points kept (thinned when full).
const MAX_POINTS: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct SpawnOrder {
    /// Runtime address of `NEXT_ID`, when the binary names it.
    counter: Option<u64>,
    /// (sample ns, next id) at each sample, oldest first.
    timeline: Vec<(u64, u64)>,
}

impl SpawnOrder {
    pub fn new(counter: Option<u64>) -> Self {
        SpawnOrder { counter, timeline: Vec::new() }
    }

    /// Whether the exact counter is read (else the highest id seen stands in for it).
    pub fn exact(&self) -> bool {
        self.counter.is_some()
    }

    /// Records the counter at a sample; `max_seen`: the highest live task id just read.
    pub fn observe(&mut self, mem: &mut dyn Mem, max_seen: Option<u64>, now_ns: u64) -> u64 {
        let read = self.counter.and_then(|a| mem.u64_fresh(a));
        let prev = self.timeline.last().map_or(0, |p| p.1);
        let next = read.unwrap_or(0).max(max_seen.map_or(0, |m| m + 1)).max(prev);
        self.push(now_ns, next);
        next
    }

    fn push(&mut self, now_ns: u64, next: u64) {
        if self.timeline.len() >= MAX_POINTS {
            // keep the first point (attach) and every other one after it
            let first = self.timeline[0];
            let rest: Vec<(u64, u64)> = self.timeline[1..].iter().step_by(2).copied().collect();
            self.timeline = std::iter::once(first).chain(rest).collect();
        }
        self.timeline.push((now_ns, next));
    }

    /// Whether task `id` was spawned before the first sample.
    pub fn before_attach(&self, id: u64) -> bool {
        self.timeline.first().is_some_and(|&(_, n)| id < n)
    }

    /// Tasks spawned after task `id`, as of the last sample.
    pub fn spawned_since(&self, id: u64) -> u64 {
        self.timeline.last().map_or(0, |&(_, n)| n.saturating_sub(id + 1))
    }

    /// When task `id` was spawned (CLOCK_MONOTONIC ns), estimated from the samples whose counters
    /// bracket it; None for tasks spawned before the first sample.
    pub fn born_ns(&self, id: u64) -> Option<u64> {
        if self.before_attach(id) {
            return None;
        }
        let k = self.timeline.iter().position(|&(_, n)| n > id)?;
        let (t1, n1) = self.timeline[k];
        let (t0, n0) = self.timeline[k.checked_sub(1)?];
        let frac = (id - n0) as f64 / (n1 - n0).max(1) as f64;
        Some(t0 + ((t1 - t0) as f64 * frac) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::tokio::census::mem::FakeMem;

    #[test]
    fn ids_tell_before_attach_how_many_since_and_when() {
        let mut mem = FakeMem::default();
        mem.regions.push((0x1000, vec![0u8; 8]));
        let mut o = SpawnOrder::new(Some(0x1000));
        mem.put_u64(0x1000, 5001);
        assert_eq!(o.observe(&mut mem, Some(4990), 1_000), 5001);
        mem.put_u64(0x1000, 5101);
        o.observe(&mut mem, Some(5050), 2_000);
        assert!(o.before_attach(10));
        assert!(!o.before_attach(5001));
        assert_eq!(o.spawned_since(10), 5090);
        assert_eq!(o.born_ns(10), None);
        // id 5051 is half way between the counters of the two samples
        assert_eq!(o.born_ns(5051), Some(1_500));
    }

    #[test]
    fn without_the_counter_the_highest_id_stands_in_and_never_goes_back() {
        let mut mem = FakeMem::default();
        let mut o = SpawnOrder::new(None);
        assert!(!o.exact());
        assert_eq!(o.observe(&mut mem, Some(99), 1), 100);
        assert_eq!(o.observe(&mut mem, Some(50), 2), 100);
        assert_eq!(o.observe(&mut mem, None, 3), 100);
    }

    #[test]
    fn the_timeline_is_bounded_and_keeps_attach() {
        let mut mem = FakeMem::default();
        let mut o = SpawnOrder::new(None);
        for i in 0..10_000u64 {
            o.observe(&mut mem, Some(i * 10), i);
        }
        assert!(o.timeline.len() <= MAX_POINTS);
        assert_eq!(o.timeline[0], (0, 1));
        assert_eq!(o.timeline.last().unwrap().1, 99_991);
    }
}
