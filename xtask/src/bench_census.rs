//! `cargo xtask bench-census`: what the tokio census costs, side by side in one run.
//! 1. The target: spawn+join of trivial tasks, bare rounds alternating with rounds under a census
//!    every 1 s and every 100 ms (ratios to bare).
//! 2. leakprof: one census of 10k, 100k and 1M live idle tasks (ms and bytes read per sample).
//! 3. tokio's own `Handle::dump()` of the same 100k tasks in a task-dump build, which stops the
//!    runtime while it walks them, against a census of that process.
//! 4. 100k `spawn_local` tasks in four LocalSets on four threads (actix's shape) next to 100k
//!    ordinary tasks in one runtime: ms and bytes read per sample (alone with `--local-only`).
//! 5. What measuring bytes per task costs: the census of 100k tokio tasks and of 100k goroutines
//!    with and without `--no-bytes`, alternating (alone with `--bytes-only`).
//! 6. Time to the first report on a big heap: a target with 16 GiB of heap reserved (64 MiB of it
//!    touched) next to one without, each building its runtime 3 s after leakprof attaches: the
//!    attach scan's time and bytes, the bytes skipped, when the runtime was found, and the
//!    target's page tables (alone with `--sparse-heap`).
use std::{
    io::{BufRead as _, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{bench::measure, demo::start_fixture, fixtures, util};

pub fn run(root: &Path, rounds: u32, local_only: bool, bytes_only: bool, walks_only: bool, sparse_only: bool) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    if local_only {
        return local_sets(&leakprof, &bins.join("tokio-latest"));
    }
    if bytes_only {
        return bytes_cost(&leakprof, &bins, rounds);
    }
    if walks_only {
        return walks(&leakprof, &bins.join("tokio-latest"));
    }
    if sparse_only {
        return sparse_heap(&leakprof, &bins.join("tokio-latest"));
    }

    let configs: [(&str, &[&str]); 2] =
        [("census 1s", &["--no-threads"]), ("census 100ms", &["--no-threads", "--interval", "0.1"])];
    let tasks = 1_000_000;
    let mut cost = vec![];
    for (label, flavor) in [("multi-thread", None), ("current-thread", Some("--current-thread"))] {
        let (bare, under) = measure(&leakprof, &bins.join("tokio-latest"), flavor, &configs, tasks, rounds)?;
        cost.push((label, bare, under));
    }

    let taskdump = bins.join("tokio-latest-taskdump");
    let (census, _) = census_of(&leakprof, &taskdump, 100_000, None, DUMP_BENCH)?;
    // one dump per process: a second Handle::dump() in one process sometimes never returns here
    let (mut dumps, mut hung) = (vec![], 0);
    for _ in 0..rounds {
        match census_of(&leakprof, &taskdump, 100_000, Some(1), DUMP_BENCH)?.1 {
            ms if ms.is_finite() => dumps.push(ms),
            _ => hung += 1,
        }
    }
    dumps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let dump = dumps.get(dumps.len() / 2).copied().unwrap_or(f64::NAN);

    println!("\ntarget: spawn+join of a trivial task, {tasks} tasks x {rounds} rounds each, median ns/task:");
    print!("{:<16} {:>8}", "scheduler", "bare");
    for (name, _) in &configs {
        print!(" {name:>13} {:>7}", "ratio");
    }
    println!();
    for (label, bare, under) in cost {
        print!("{label:<16} {bare:>8.0}");
        for p in under {
            print!(" {p:>13.0} {:>6.3}x", p / bare);
        }
        println!();
    }
    walks(&leakprof, &bins.join("tokio-latest"))?;
    println!(
        "\n100,000 idle tasks, task-dump build: leakprof census {:.1} ms per sample ({:.1} MB read), target not \
         stopped; tokio's Handle::dump() {dump:.1} ms (median of {} processes, {hung} more did not return within \
         30 s), the runtime stopped meanwhile",
        census.walk_ms,
        census.bytes as f64 / 1e6,
        dumps.len()
    );
    local_sets(&leakprof, &bins.join("tokio-latest"))?;
    sparse_heap(&leakprof, &bins.join("tokio-latest"))?;
    bytes_cost(&leakprof, &bins, rounds)
}

/// Time to the first report on a big heap: `late-runtime` with 0 and 16 GiB of untouched heap,
/// its runtime built 3 s after `ready` (leakprof started at once), one 8 s run each.
fn sparse_heap(leakprof: &Path, bin: &Path) -> Result<()> {
    let page_tables_kb = |pid: u32| crate::bench::proc_status_kib(pid, "VmPTE");
    println!("\nleakprof on a target whose runtime is built 3 s after attach, 1,000 tasks, next to a big untouched heap (8 s run):");
    println!(
        "{:>9} {:>14} {:>15} {:>16} {:>14} {:>15} {:>15}",
        "heap GiB", "attach scan ms", "attach scan MB", "untouched GB", "runtime built", "runtime found", "page tables +kB"
    );
    for gib in [0u64, 16] {
        let g = gib.to_string();
        let args = ["late-runtime", "--sparse-gib", &g, "--start-delay", "3", "--backlog", "1000"];
        let (_guard, pid, mut out) = start_fixture(bin, &args, Stdio::piped())?;
        let t0 = std::time::Instant::now();
        let pte = page_tables_kb(pid);
        // when the fixture says its backlog is spawned, on leakprof's clock (started just now)
        let built = std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("backlog spawned") {
                    return Some(t0.elapsed().as_secs_f64());
                }
                line.clear();
            }
            None
        });
        let v = census_report(leakprof, pid, 8)?;
        let c = &v["collection"]["census"];
        let pte_grown = page_tables_kb(pid).saturating_sub(pte);
        drop(_guard);
        let built = built.join().ok().flatten().map_or("-".into(), |s| format!("{s:.1} s"));
        let found = c["runtime_found_after_s"].as_f64().map_or("never".into(), |s| format!("{s:.1} s"));
        println!(
            "{gib:>9} {:>14.0} {:>15.0} {:>16.1} {built:>14} {found:>15} {pte_grown:>15}",
            c["attach_scan_ms"].as_f64().unwrap_or(f64::NAN),
            c["heap_scanned_at_attach_bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            c["heap_untouched_bytes"].as_u64().unwrap_or(0) as f64 / 1e9,
        );
    }
    println!("(runtime built: when the target said its tasks were spawned; runtime found: leakprof's runtime_found_after_s; both from leakprof's start)");
    Ok(())
}

/// The census of 100k live tokio tasks and of 100k goroutines, with the byte figures and without
/// (`--no-bytes`), `rounds` 5 s runs of each alternating in one target process: mean sample ms
/// (median over the rounds) and, for tokio, bytes read per sample.
fn bytes_cost(leakprof: &Path, bins: &Path, rounds: u32) -> Result<()> {
    let one = |pid: u32, extra: &[&str]| -> Result<(f64, u64)> {
        let mut args = vec!["--pid".to_string(), pid.to_string(), "--duration".into(), "5".into(), "--no-threads".into()];
        args.extend(["--quiet", "--format", "json"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let r = Command::new(leakprof).args(&args).output().context("cannot run leakprof")?;
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).context("leakprof's report")?;
        Ok((v["collection"]["sample_ms_mean"].as_f64().unwrap_or(f64::NAN), v["collection"]["census"]["bytes_read"].as_u64().unwrap_or(0)))
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!("
what the byte figures cost: one census of 100,000 live tasks / goroutines, with and without --no-bytes, {rounds} alternating 5 s runs, median of the mean ms per sample:");
    println!("{:<26} {:>12} {:>12} {:>8} {:>14} {:>14}", "target", "with bytes", "--no-bytes", "ratio", "MB read with", "MB read w/o");
    for (label, bin, args, ready) in [
        ("tokio, 100k tasks", "tokio-latest", vec!["dump-bench", "--backlog", "100000"], "backlog spawned"),
        ("Go newest, 100k goroutines", "go-latest", vec!["hold", "100000"], "holding"),
    ] {
        let (_guard, pid, mut out) = start_fixture(&bins.join(bin), &args, Stdio::piped())?;
        let mut line = String::new();
        while !line.starts_with(ready) {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                bail!("{bin} ended before it was ready");
            }
        }
        let (mut with, mut without, mut mb) = (vec![], vec![], (0u64, 0u64));
        for _ in 0..rounds.max(1) {
            let (ms, b) = one(pid, &[])?;
            with.push(ms);
            mb.0 = b;
            let (ms, b) = one(pid, &["--no-bytes"])?;
            without.push(ms);
            mb.1 = b;
        }
        let (w, wo) = (median(&mut with), median(&mut without));
        // the Go census reports no byte count of its reads
        let mb_of = |b: u64| if b == 0 { "-".to_string() } else { format!("{:.1}", b as f64 / 1e6) };
        println!("{label:<26} {w:>12.1} {wo:>12.1} {:>7.3}x {:>14} {:>14}", w / wo, mb_of(mb.0), mb_of(mb.1));
    }
    Ok(())
}

/// 100k idle connections in one multi-thread runtime (the fixture's `dump-bench`).
pub(crate) const DUMP_BENCH: &[&str] = &["dump-bench"];

/// One census of 100k tasks spawned locally in four LocalSets, next to 100k ordinary tasks.
fn local_sets(leakprof: &Path, bin: &Path) -> Result<()> {
    let n = 100_000;
    let ordinary = census_of(leakprof, bin, n, None, DUMP_BENCH)?.0;
    let local = census_of(leakprof, bin, n, None, &["local-four", "--rate", "0"])?.0;
    println!("
leakprof: one census of {n} live idle tasks, ordinary (one multi-thread runtime) vs spawn_local in 4 LocalSets on 4 threads:");
    println!("{:<22} {:>10} {:>10} {:>12} {:>10}", "tasks", "read", "walk ms", "sample ms", "MB read");
    for (label, w) in [("ordinary", &ordinary), ("local, 4 LocalSets", &local)] {
        println!("{label:<22} {:>10} {:>10.1} {:>12.1} {:>10.1}", w.walked, w.walk_ms, w.sample_ms, w.bytes as f64 / 1e6);
    }
    println!(
        "ratio local/ordinary: walk {:.2}x, MB read {:.2}x",
        local.walk_ms / ordinary.walk_ms,
        local.bytes as f64 / ordinary.bytes as f64
    );
    Ok(())
}

/// leakprof's side: one census of 10k, 100k and 1M live idle tasks, per sample (the steady cost:
/// the mean after the first sample), and leakprof's own peak RSS and CPU over the 5 s run (alone
/// with `--walks-only`).
fn walks(leakprof: &Path, bin: &Path) -> Result<()> {
    let mut rows = vec![];
    for n in [10_000u64, 100_000, 1_000_000] {
        rows.push((n, census_of(leakprof, bin, n, None, DUMP_BENCH)?.0));
    }
    println!("\nleakprof: one census of N live idle tasks (multi-thread, tokio-latest), per sample after the first, over a 5 s run:");
    println!(
        "{:>10} {:>10} {:>10} {:>12} {:>10} {:>14} {:>9} {:>9} {:>10}",
        "tasks", "read", "walk ms", "sample ms", "MB read", "attach scan MB", "samples", "RSS MB", "CPU s"
    );
    for (n, w) in rows {
        println!(
            "{n:>10} {:>10} {:>10.1} {:>12.1} {:>10.1} {:>14.0} {:>9} {:>9.0} {:>10.2}",
            w.walked,
            w.walk_ms,
            w.sample_ms,
            w.bytes as f64 / 1e6,
            w.scanned as f64 / 1e6,
            w.samples,
            w.rss as f64 / 1e6,
            w.cpu_s
        );
    }
    Ok(())
}

/// What one census run reported (the last sample, and the mean sample time).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    walked: u64,
    walk_ms: f64,
    sample_ms: f64,
    bytes: u64,
    scanned: u64,
    samples: u64,
    rss: u64,
    cpu_s: f64,
}

/// Starts `scenario --backlog n` (`dump-bench` for dumps); runs a 5 s census on it, or (`dumps`)
/// that many Handle::dump()s; returns the census and the median dump ms.
pub(crate) fn census_of(leakprof: &Path, bin: &Path, n: u64, dumps: Option<u32>, scenario: &[&str]) -> Result<(Walk, f64)> {
    let backlog = n.to_string();
    let mut args = scenario.to_vec();
    args.extend(["--backlog", &backlog]);
    let (mut guard, pid, mut out) = start_fixture(bin, &args, Stdio::piped())?;
    let mut line = String::new();
    while !line.starts_with("backlog spawned") {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("{} ended before spawning its tasks", bin.display());
        }
    }
    let mut walk = Walk::default();
    if dumps.is_none() {
        let v = census_report(leakprof, pid, 5)?;
        let c = &v["collection"]["census"];
        walk = Walk {
            walked: c["tasks_walked"].as_u64().unwrap_or(0),
            walk_ms: c["walk_ms"].as_f64().unwrap_or(f64::NAN),
            sample_ms: v["collection"]["sample_ms_mean_after_first"].as_f64().unwrap_or(f64::NAN),
            bytes: c["bytes_read"].as_u64().unwrap_or(0),
            scanned: c["heap_scanned_at_attach_bytes"].as_u64().unwrap_or(0),
            samples: v["collection"]["samples"].as_u64().unwrap_or(0),
            rss: v["collection"]["leakprof_peak_rss_bytes"].as_u64().unwrap_or(0),
            cpu_s: v["collection"]["leakprof_cpu_s"].as_f64().unwrap_or(f64::NAN),
        };
        if walk.walked < n {
            bail!("census read {} of {n} tasks: {c}", walk.walked);
        }
    }
    // each dump is waited for at most 30 s (a dump that never returns is reported, not waited on)
    let mut ms = vec![];
    let mut stdin = guard.0.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    for _ in 0..dumps.unwrap_or(0) {
        writeln!(stdin, "go")?;
        let line = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                eprintln!("[xtask] Handle::dump() did not return within 30 s");
                ms.push(f64::INFINITY);
                break;
            }
        };
        match line.trim().strip_prefix("dump_ms=").and_then(|v| v.split_whitespace().next()) {
            Some(v) => ms.push(v.parse::<f64>().with_context(|| format!("{line:?}"))?),
            None => bail!("no dump from {}: {line:?}", bin.display()),
        }
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((walk, ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN)))
}

/// A `secs` census run of leakprof on `pid` (threads off), its JSON report.
fn census_report(leakprof: &Path, pid: u32, secs: u32) -> Result<serde_json::Value> {
    let r = Command::new(leakprof)
        .args(["--pid", &pid.to_string(), "--duration", &secs.to_string(), "--no-threads", "--quiet", "--format", "json"])
        .output()
        .context("cannot run leakprof")?;
    serde_json::from_slice(&r.stdout).context("leakprof's report")
}
