//! Reads live tasks' state words from the target to tell idle (waiting) tasks from busy ones.
use std::collections::HashMap;

use crate::{bpf::LiveTask, runtimes::tokio::state::is_idle, target::read_u64_many};

/// Reads the state of up to `per_site` live tasks of each site (one syscall per 1024 tasks);
/// returns (vtable, idle) for each task read. Unreadable tasks (finished meanwhile) are skipped.
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
