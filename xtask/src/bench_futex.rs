//! `cargo xtask bench-futex`: what the futex tracepoints cost, side by side in one run.
//! The tracepoints (syscalls:sys_enter_futex / sys_exit_futex) fire for every futex call on the
//! host, and switching any syscall tracepoint on sends every syscall of every process through the
//! kernel's traced syscall path. So:
//! 1. a bystander: a futex ping-pong (two threads, a Mutex and a Condvar) and a getppid() loop in
//!    a process that is NOT the target, bare rounds alternating with rounds while leakprof watches
//!    another process's threads by the /proc census (`--threads`, the default) and while it traces
//!    their futex waits (`--threads --probes`);
//! 2. the target itself: the same ping-pong when it is the watched process (its waits are
//!    recorded; its wakes' exits close no wait).
use std::{path::Path, process::Stdio};

use anyhow::Result;

use crate::{bench::measure_with, demo::start_fixture, fixtures, util};

pub fn run(root: &Path, rounds: u32) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    let plain = bins.join("plain");
    // the traced target: a healthy pool of threads idling on a Condvar
    let (_target, target_pid, _out) = start_fixture(&plain, &["condvar-pool"], Stdio::null())?;
    let configs: [(&str, &[&str]); 2] = [("census", &["--threads"]), ("futex tracing", &["--threads", "--probes"])];
    let mut rows = vec![];
    for (label, args, prefix, units) in [
        ("bystander futex ping-pong", ["futex-bench", "100000"], "ns_per_roundtrip=", "ns/round trip"),
        ("bystander getppid()", ["syscall-bench", "2000000"], "ns_per_syscall=", "ns/syscall"),
    ] {
        let (bare, under) = measure_with(&leakprof, &plain, &args, prefix, &configs, rounds, Some(target_pid))?;
        rows.push((label, units, bare, under));
    }
    let (bare, under) =
        measure_with(&leakprof, &plain, &["futex-bench", "100000"], "ns_per_roundtrip=", &configs, rounds, None)?;
    rows.push(("target futex ping-pong", "ns/round trip", bare, under));
    println!("\nthreads watched by the /proc census and by futex tracing, {rounds} rounds each, medians (rounds alternate):");
    println!("{:<28} {:>14} {:>10} {:>10} {:>7} {:>10} {:>7}", "process", "unit", "bare", "census", "ratio", "traced", "ratio");
    for (label, units, bare, under) in rows {
        let (census, traced) = (under[0], under[1]);
        println!("{label:<28} {units:>14} {bare:>10.1} {census:>10.1} {:>6.3}x {traced:>10.1} {:>6.3}x", census / bare, traced / bare);
    }
    Ok(())
}
