//! `cargo xtask bench-go`: what leakprof costs a Go program and what it gives.
//! 1. Where goroutines are stuck: the census with stacks of 100,000 blocked goroutines against the
//!    program's own `goroutine?debug=2` (which stops the world).
//! 2. Goroutine create+exit flat out, bare against empty probes and `--probes`.
//! 3. The census's cost to that program ([`census_cost`], alone with `--census-only`): long
//!    alternating rounds with the noise floor beside the ratio, with the target sharing both cores
//!    with leakprof and pinned apart from it; and the kernel's counters of what each side did.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    bench::{http_get, measure_with, median, print_table, Attached},
    demo::start_fixture,
    fixtures, util,
};

/// Go: goroutine create+exit bare and under probes; and the time one
/// census of 100,000 goroutines takes (leakprof's side; the target is not stopped).
pub(crate) fn go_bench(leakprof: &Path, bins: &Path, rounds: u32) -> Result<()> {
    // the census's cost is measured apart ([`census_cost`]): rounds of 200,000 are far shorter
    // than its 1 s interval
    let configs: [(&str, &[&str]); 2] = [("empty probes", &["--empty-probes"]), ("probes", &["--probes"])];
    let mut rows = vec![];
    for bin in ["go1.19", "go-latest"] {
        let (bare, probed) = measure_with(
            leakprof,
            &bins.join(bin),
            &["spawn-bench", "200000"],
            GO_PREFIX,
            &configs,
            rounds,
            None,
        )?;
        rows.push((bin, bare, probed));
    }
    println!("\ngoroutine create+exit, 200000 per round x {rounds} rounds, median ns/goroutine:");
    print_table(&configs, &rows);
    for bin in ["go1.19", "go-latest"] {
        let (_guard, pid, _out) = start_fixture(&bins.join(bin), &["hold", "100000"], Stdio::null())?;
        sleep(Duration::from_secs(2));
        let out = Command::new(leakprof)
            .args(["--pid", &pid.to_string(), "--duration", "5", "--quiet", "--format", "json"])
            .output()?;
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        println!(
            "{bin}: census of 100,000 goroutines: {:.1} ms mean, {:.1} ms max per sample (leakprof side)",
            r["collection"]["sample_ms_mean"].as_f64().unwrap_or(f64::NAN),
            r["collection"]["sample_ms_max"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}


/// The Go fixture holding 100,000 blocked goroutines, with its pprof endpoint: the process and
/// the endpoint's address, 2 s after it said where (the goroutines are all blocked by then).
pub(crate) fn go_holding_100k(bin: &Path) -> Result<(crate::demo::Guard, String)> {
    let mut child = Command::new(bin)
        .args(["hold", "100000"])
        .env("LEAKFIXTURE_PPROF", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line)?;
        if let Some(a) = line.trim().strip_prefix("pprof ") {
            addr = Some(a.to_string());
            break;
        }
    }
    let guard = crate::demo::Guard(child);
    let addr = addr.with_context(|| format!("{} did not print its pprof address", bin.display()))?;
    sleep(Duration::from_secs(2));
    Ok((guard, addr))
}

/// The median ms of `n` of the program's own goroutine dumps (`goroutine?debug=2`, which stops
/// the world) from the pprof endpoint at `addr`.
pub(crate) fn goroutine_dump_ms(addr: &str, n: u32) -> Result<f64> {
    let mut ms = Vec::new();
    for _ in 0..n.max(1) {
        let t0 = std::time::Instant::now();
        let body = http_get(addr, "/debug/pprof/goroutine?debug=2").unwrap_or_default();
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if body.len() < 1000 {
            bail!("the goroutine dump came back empty");
        }
    }
    Ok(median(&mut ms))
}

/// Go, where goroutines are stuck: the census with stacks against the program's own goroutine
/// dump (`/debug/pprof/goroutine?debug=2`, which stops the world), on the same 100,000 blocked
/// goroutines; and the target's cost under the census, against bare, in one run.
pub fn go_stacks(root: &Path, rounds: u32, census_only: bool) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    if census_only {
        return census_cost(&leakprof, &bins, rounds.max(8));
    }
    for bin in ["go1.19", "go-latest"] {
        let (guard, addr) = go_holding_100k(&bins.join(bin))?;
        let pid = guard.0.id();
        let r = Command::new(&leakprof).args(["--pid", &pid.to_string(), "--duration", "5", "--quiet", "--format", "json"]).output()?;
        let r: serde_json::Value = serde_json::from_slice(&r.stdout)?;
        let site = r["sites"].as_array().and_then(|s| s.iter().max_by_key(|s| s["live"].as_i64().unwrap_or(0))).cloned().unwrap_or_default();
        let dump_ms = goroutine_dump_ms(&addr, 3)?;
        println!(
            "{bin}: 100,000 blocked goroutines: leakprof census with stacks {:.1} ms mean / {:.1} ms max per sample \
             ({} stacks read, stuck at {}:{}), target not stopped; pprof goroutine?debug=2 {:.0} ms median (stops the world)",
            r["collection"]["sample_ms_mean"].as_f64().unwrap_or(f64::NAN),
            r["collection"]["sample_ms_max"].as_f64().unwrap_or(f64::NAN),
            site["stuck_sampled"],
            site["stuck_at"][0]["file"].as_str().unwrap_or("?").rsplit('/').next().unwrap_or("?"),
            site["stuck_at"][0]["line"],
            dump_ms
        );
        drop(guard);
    }
    go_bench(&leakprof, &bins, rounds)?;
    census_cost(&leakprof, &bins, rounds.max(8))
}

/// Goroutines per round of the census cost: about 1-2 s a round, a census or two in each.
const COST_ROUND: &str = "2000000";

/// The census's cost (every 1 s, the default) to a Go program creating and ending goroutines flat
/// out, Go 1.19 and the newest: `rounds` triples of rounds in one process (bare, under the census,
/// bare again), in two set-ups: sharing both cores (GOMAXPROCS 2, leakprof anywhere: what a busy
/// 2-core host pays, leakprof's CPU included) and pinned apart (the target on CPU 0 with one P,
/// leakprof on CPU 1: what the reads cost inside the target). The noise floor is the second bare
/// round against the first, by the same median: a ratio within it is no measured cost. Every
/// round follows the same pause (leakprof's attach and settling).
pub(crate) fn census_cost(leakprof: &Path, bins: &Path, rounds: u32) -> Result<()> {
    println!(
        "\ncensus every 1 s on goroutine create+exit flat out, {COST_ROUND} per round, {rounds} triples (bare, census, bare) per row, median ns/goroutine:"
    );
    println!(
        "{:<10} {:<44} {:>7} {:>7} {:>7} {:>12} {:>12} {:>14}",
        "fixture", "set-up", "bare", "census", "ratio", "noise floor", "pair ratios", "leakprof CPU"
    );
    for bin in ["go1.19", "go-latest"] {
        for pinned in [false, true] {
            let label = if pinned { "pinned: target 1 P on CPU 0, leakprof CPU 1" } else { "shared: target 2 Ps, leakprof, 2 cores" };
            let target = pinned_to(pinned.then_some("0"), &bins.join(bin));
            let t = Triples::run(target, leakprof, pinned, rounds)?;
            println!(
                "{bin:<10} {label:<44} {:>7.0} {:>7.0} {:>6.3}x {:>11.3}x {:>12} {:>13.1}%",
                t.bare,
                t.census,
                t.census / t.bare,
                t.floor,
                format!("{:.2}-{:.2}", t.pairs.0, t.pairs.1),
                t.cpu_share * 100.0
            );
        }
    }
    println!(
        "(noise floor: the median of the second bare rounds over the first; pair ratios: the least and greatest census/bare of one triple; \
         leakprof CPU: its CPU time over its run, a share of one core)"
    );
    kernel_counters(leakprof, &bins.join("go-latest"))
}

/// Medians of the triples of one set-up, and leakprof's CPU share while attached.
struct Triples {
    bare: f64,
    census: f64,
    floor: f64,
    pairs: (f64, f64),
    cpu_share: f64,
}

impl Triples {
    fn run(mut target: Command, leakprof: &Path, pinned: bool, rounds: u32) -> Result<Triples> {
        let mut child = target.args(["spawn-bench", COST_ROUND]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("cannot start the Go fixture")?;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        let guard = crate::demo::Guard(child);
        let mut line = String::new();
        out.read_line(&mut line)?;
        let pid: u32 = line.strip_prefix("ready pid=").and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok()).context("no ready line")?;
        let mut round = || -> Result<f64> { crate::bench::one_round(&mut stdin, &mut out, GO_PREFIX) };
        round()?; // warm-up
        let (mut bare, mut census, mut again, mut pairs, mut cpu) = (vec![], vec![], vec![], vec![], (0.0, 0.0));
        // every round follows the same pause: the one leakprof's attach and settling take (Go's
        // scavenger returns memory while the program idles, so a round after a pause pays page
        // faults that one right after another round does not)
        let mut pause = crate::bench::SETTLE;
        for _ in 0..rounds {
            sleep(pause);
            bare.push(round()?);
            let t0 = std::time::Instant::now();
            let prof = Attached::start_cmd(pinned_to(pinned.then_some("1"), leakprof), pid, &["--no-threads"])?;
            sleep(crate::bench::SETTLE);
            pause = t0.elapsed();
            let (cpu0, t1) = (crate::bench::proc_cpu_seconds(prof.pid()), std::time::Instant::now());
            census.push(round()?);
            cpu.0 += crate::bench::proc_cpu_seconds(prof.pid()) - cpu0;
            cpu.1 += t1.elapsed().as_secs_f64();
            prof.stop()?;
            sleep(pause);
            again.push(round()?);
            pairs.push(census.last().unwrap() / bare.last().unwrap());
        }
        drop(guard);
        let (lo, hi) = pairs.iter().fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        let (b, a) = (median(&mut bare), median(&mut again));
        Ok(Triples { bare: b, census: median(&mut census), floor: a / b, pairs: (lo, hi), cpu_share: cpu.0 / cpu.1.max(1e-9) })
    }
}

/// How the Go fixture's spawn-bench reports a round.
const GO_PREFIX: &str = "ns_per_goroutine=";

/// `program`, on CPU `cpu` alone when given (a Go program then runs one P).
fn pinned_to(cpu: Option<&str>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(program).env("GOMAXPROCS", "1");
            c
        }
        None => Command::new(program),
    }
}

/// What each side did in the kernel during one bare round and one round under the census (the
/// kernel's own counters, by `perf stat` on each process): the target's CPU time, context
/// switches, page faults, its `mmap_lock` taken and kernel lock contentions; leakprof's CPU time
/// and the `mmap_lock` acquisitions its `process_vm_readv` calls made. Skipped without perf.
fn kernel_counters(leakprof: &Path, bin: &Path) -> Result<()> {
    const EVENTS: &str = "task-clock,context-switches,page-faults,mmap_lock:mmap_lock_start_locking,lock:contention_begin";
    if Command::new("perf").arg("--version").output().map_or(true, |o| !o.status.success()) {
        println!("\nkernel counters: skipped, perf is not installed (apt install linux-perf)");
        return Ok(());
    }
    let stat = |pid: u32| -> Result<std::process::Child> {
        Ok(Command::new("perf").args(["stat", "-x,", "-e", EVENTS, "-p", &pid.to_string()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?)
    };
    let counts = |child: std::process::Child| -> Result<Vec<(String, f64)>> {
        crate::bench::send_sigint(child.id());
        let out = child.wait_with_output()?;
        Ok(String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let v = f.first()?.parse::<f64>().ok()?;
                Some((f.get(2)?.rsplit(':').next()?.to_string(), v))
            })
            .collect())
    };
    let (mut guard, pid, mut out) = start_fixture(bin, &["spawn-bench", COST_ROUND], Stdio::piped())?;
    let mut stdin = guard.0.stdin.take().context("the fixture's stdin")?;
    crate::bench::one_round(&mut stdin, &mut out, GO_PREFIX)?;
    let mut rows = vec![];
    for under in [false, true] {
        // the same pause before each round (see Triples::run)
        let prof = if under { Some(Attached::start(leakprof, pid, &["--no-threads"])?) } else { None };
        sleep(crate::bench::SETTLE);
        let t = stat(pid)?;
        let l = prof.as_ref().map(|p| stat(p.pid())).transpose()?;
        sleep(Duration::from_millis(300));
        let ns = crate::bench::one_round(&mut stdin, &mut out, GO_PREFIX)?;
        rows.push((under, ns, counts(t)?, l.map(counts).transpose()?));
        if let Some(p) = prof {
            p.stop()?;
        }
    }
    drop(guard);
    println!("\nkernel counters, Go newest, one round of {COST_ROUND} goroutines each (perf stat -p on each process):");
    for (under, ns, t, l) in rows {
        let f = |v: &[(String, f64)], k: &str| v.iter().find(|(n, _)| n == k).map_or("-".to_string(), |(_, x)| format!("{x:.0}"));
        println!(
            "{:<14} {ns:>5.0} ns/goroutine | target: CPU {} ms, {} context switches, {} page faults, mmap_lock taken {}, lock contentions {}{}",
            if under { "census 1 s" } else { "bare" },
            f(&t, "task-clock"),
            f(&t, "context-switches"),
            f(&t, "page-faults"),
            f(&t, "mmap_lock_start_locking"),
            f(&t, "contention_begin"),
            l.map_or(String::new(), |l| format!(
                " | leakprof: CPU {} ms, the mmap_lock taken {} (process_vm_readv), lock contentions {}",
                f(&l, "task-clock"),
                f(&l, "mmap_lock_start_locking"),
                f(&l, "contention_begin")
            ))
        );
    }
    Ok(())
}
