//! `cargo xtask bench-dump`: `leakprof dump --pid` on 100,000 idle tokio tasks and 100,000 blocked
//! goroutines (wall time, the target never stopped), next to the runtimes' own dumps of the same
//! processes: tokio's `Handle::dump()` (a task-dump build; it stops the runtime while it walks)
//! and Go's `/debug/pprof/goroutine?debug=2` (it stops the world).
use std::{
    io::BufRead as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    bench::median,
    bench_go::{go_holding_100k, goroutine_dump_ms},
    bench_census::{census_of, DUMP_BENCH},
    demo::start_fixture,
    fixtures, util,
};

/// `leakprof dump --pid PID --format json` `rounds` times: median wall ms, and the last dump.
fn dumps(leakprof: &Path, pid: u32, rounds: u32) -> Result<(f64, serde_json::Value)> {
    let (mut ms, mut last) = (vec![], serde_json::Value::Null);
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let out = Command::new(leakprof).args(["dump", "--pid", &pid.to_string(), "--format", "json"]).output().context("cannot run leakprof")?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            bail!("leakprof dump failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        last = serde_json::from_slice(&out.stdout).context("leakprof dump's JSON")?;
    }
    Ok((median(&mut ms), last))
}

pub fn run(root: &Path, rounds: u32) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    let mut lines = vec![];

    // tokio: 100k idle connections in a task-dump build
    let taskdump = bins.join("tokio-latest-taskdump");
    let (_guard, pid, mut out) = start_fixture(&taskdump, &["dump-bench", "--backlog", "100000"], Stdio::piped())?;
    let mut line = String::new();
    while !line.starts_with("backlog spawned") {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("the tokio fixture ended before spawning its tasks");
        }
    }
    let (ms, d) = dumps(&leakprof, pid, rounds)?;
    drop(_guard);
    // Handle::dump(): one per process (a second one in a process sometimes never returns here)
    let mut handle = vec![];
    for _ in 0..rounds.max(1) {
        let v = census_of(&leakprof, &taskdump, 100_000, Some(1), DUMP_BENCH)?.1;
        if v.is_finite() {
            handle.push(v);
        }
    }
    lines.push(format!(
        "tokio, 100,000 idle tasks: leakprof dump --pid {ms:.0} ms wall (median of {rounds}; {} tasks, waits read for {}), \
         target not stopped | tokio Handle::dump() {:.0} ms (median of {} processes), runtime stopped meanwhile",
        d["completeness"]["tasks"],
        d["completeness"]["waits_read"],
        if handle.is_empty() { f64::NAN } else { median(&mut handle) },
        handle.len()
    ));

    // Go: 100k goroutines blocked in a receive, with the program's pprof endpoint
    for bin in ["go1.19", "go-latest"] {
        let (guard, addr) = go_holding_100k(&bins.join(bin))?;
        let (ms, d) = dumps(&leakprof, guard.0.id(), rounds)?;
        let go = goroutine_dump_ms(&addr, rounds)?;
        lines.push(format!(
            "{bin}, 100,000 blocked goroutines: leakprof dump --pid {ms:.0} ms wall (median of {rounds}; {} goroutines, \
             stacks read for {}), target not stopped | goroutine?debug=2 {:.0} ms (median of {rounds}), world stopped",
            d["completeness"]["tasks"],
            d["completeness"]["waits_read"],
            go
        ));
    }
    println!();
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
