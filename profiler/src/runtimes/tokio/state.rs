//! tokio's task state word (`Header::state`, offset 0 of the header, same layout 1.28..newest),
//! and reading it from the target for a sample of live tasks.
use std::collections::HashMap;

use crate::{bpf::LiveTask, target::read_u64_many};

/// The task is being polled.
pub const RUNNING: u64 = 0b0001;
/// The task's future has completed.
pub const COMPLETE: u64 = 0b0010;
/// The task is in a run queue (woken, waiting for a worker).
pub const NOTIFIED: u64 = 0b0100;

/// A task that is neither running nor scheduled nor done: it waits for a wake-up.
pub fn is_idle(state: u64) -> bool {
    state & (RUNNING | NOTIFIED | COMPLETE) == 0
}

/// The run state a census reports: "running", "notified" (in a run queue), "complete" (done,
/// not yet released) or "idle" (waiting for a wake-up).
pub fn name(state: u64) -> &'static str {
    if state & RUNNING != 0 {
        "running"
    } else if state & NOTIFIED != 0 {
        "notified"
    } else if state & COMPLETE != 0 {
        "complete"
    } else {
        "idle"
    }
}

/// Reads the state of up to `per_site` live tasks of each site (one syscall per 1024 tasks);
/// returns (vtable, idle) for each task read (probe mode). Unreadable tasks (finished
/// meanwhile) are skipped.
pub fn sample_idle(pid: u32, tasks: &[LiveTask], per_site: usize) -> Vec<(u64, bool)> {
    let mut taken: HashMap<u64, usize> = HashMap::new();
    let chosen: Vec<&LiveTask> = tasks
        .iter()
        .filter(|t| {
            let n = taken.entry(t.vtable).or_default();
            *n += 1;
            *n <= per_site
        })
        .collect();
    let addrs: Vec<u64> = chosen.iter().map(|t| t.header).collect();
    let states = read_u64_many(pid, &addrs);
    chosen
        .iter()
        .zip(states)
        .filter_map(|(t, s)| s.map(|s| (t.vtable, is_idle(s))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_means_not_running_not_notified_not_complete() {
        // ref count in the high bits, JOIN_INTEREST (0b1000) set: still idle
        assert!(is_idle((3 << 6) | 0b1000));
        assert!(!is_idle((1 << 6) | RUNNING));
        assert!(!is_idle((1 << 6) | NOTIFIED));
        assert!(!is_idle(COMPLETE));
        assert_eq!(name((2 << 6) | RUNNING | NOTIFIED), "running");
        assert_eq!(name(NOTIFIED), "notified");
        assert_eq!(name(COMPLETE), "complete");
        assert_eq!(name((1 << 6) | 0b1000), "idle");
    }
}
