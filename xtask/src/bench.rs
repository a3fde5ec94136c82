//! `cargo xtask bench`: ns per spawned+joined task, bare vs probed, alternating rounds in one run.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{demo::start_fixture, fixtures, util};

pub fn run(root: &Path, tasks: u64, rounds: u32) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    // probe configurations measured against bare rounds, alternating in one fixture process
    let configs: [(&str, &[&str]); 3] = [
        ("probes only", &["--stack-period", "0", "--no-threads"]),
        ("+stacks", &["--no-threads"]),
        ("+stacks+futex", &[]),
    ];
    let mut results = vec![];
    for (label, bin, flavor) in [
        ("tokio-latest multi-thread", "tokio-latest", None),
        ("tokio-latest current-thread", "tokio-latest", Some("--current-thread")),
        ("tokio-1.38 multi-thread", "tokio-1.38", None),
    ] {
        let (bare, probed) = measure(&leakprof, &bins.join(bin), flavor, &configs, tasks, rounds)?;
        results.push((label, bare, probed));
    }
    go_bench(&leakprof, &bins, rounds)?;
    println!("\nspawn+join of a trivial task, {tasks} tasks x {rounds} rounds each, median ns/task:");
    print!("{:<28} {:>8}", "fixture", "bare");
    for (name, _) in &configs {
        print!(" {name:>14} {:>7}", "ratio");
    }
    println!();
    for (label, bare, probed) in results {
        print!("{label:<28} {bare:>8.0}");
        for p in probed {
            print!(" {p:>14.0} {:>6.2}x", p / bare);
        }
        println!();
    }
    Ok(())
}

/// Median ns/task of `rounds` bare rounds and `rounds` rounds per probe configuration,
/// alternating, in one fixture process.
fn measure(
    leakprof: &Path,
    bin: &Path,
    flavor: Option<&str>,
    configs: &[(&str, &[&str])],
    tasks: u64,
    rounds: u32,
) -> Result<(f64, Vec<f64>)> {
    let n = tasks.to_string();
    let mut args = vec!["spawn-bench", n.as_str()];
    args.extend(flavor);
    measure_with(leakprof, bin, &args, "ns_per_task=", configs, rounds)
}

/// Like `measure`, for any fixture that runs a round per stdin line and prints `PREFIX<ns>`.
fn measure_with(
    leakprof: &Path,
    bin: &Path,
    args: &[&str],
    prefix: &str,
    configs: &[(&str, &[&str])],
    rounds: u32,
) -> Result<(f64, Vec<f64>)> {
    let (mut guard, pid, mut out) = start_fixture(bin, args, Stdio::piped())?;
    let mut stdin = guard.0.stdin.take().unwrap();
    let mut round = |stdin: &mut std::process::ChildStdin| -> Result<f64> {
        writeln!(stdin, "go")?;
        loop {
            let mut line = String::new();
            if out.read_line(&mut line)? == 0 {
                bail!("spawn-bench ended early");
            }
            if let Some(v) = line.trim().strip_prefix(prefix) {
                return Ok(v.parse()?);
            }
        }
    };
    round(&mut stdin)?; // warm-up
    let mut bare = vec![];
    let mut probed: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    for _ in 0..rounds {
        bare.push(round(&mut stdin)?);
        for (i, (_, extra)) in configs.iter().enumerate() {
            let mut prof = Command::new(leakprof)
                .args(["--pid", &pid.to_string(), "--quiet", "--format", "json", "-o", "/dev/null"])
                .args(*extra)
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot start leakprof")?;
            // wait for "attached"
            let mut err = BufReader::new(prof.stderr.take().unwrap());
            let mut line = String::new();
            err.read_line(&mut line)?;
            if !line.contains("attached") {
                bail!("leakprof did not attach: {line}");
            }
            probed[i].push(round(&mut stdin)?);
            // SIGINT: detach and report
            send_sigint(prof.id());
            prof.wait()?;
            sleep(Duration::from_millis(100));
        }
    }
    Ok((median(&mut bare), probed.iter_mut().map(|v| median(v)).collect()))
}

fn send_sigint(pid: u32) {
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Go: goroutine create+exit bare, under probes, under a census every 100 ms; and the time one
/// census of 100,000 goroutines takes (leakprof's side; the target is not stopped).
fn go_bench(leakprof: &Path, bins: &Path, rounds: u32) -> Result<()> {
    let configs: [(&str, &[&str]); 2] =
        [("probes", &["--go-probes"]), ("census/100ms", &["--interval", "0.1"])];
    println!("\ngoroutine create+exit, 200000 per round x {rounds} rounds, median ns/goroutine:");
    print!("{:<22} {:>8}", "fixture", "bare");
    for (name, _) in &configs {
        print!(" {name:>14} {:>7}", "ratio");
    }
    println!();
    for bin in ["go1.19", "go-latest"] {
        let (bare, probed) = measure_with(
            leakprof,
            &bins.join(bin),
            &["spawn-bench", "200000"],
            "ns_per_goroutine=",
            &configs,
            rounds,
        )?;
        print!("{bin:<22} {bare:>8.0}");
        for p in probed {
            print!(" {p:>14.0} {:>6.2}x", p / bare);
        }
        println!();
    }
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
