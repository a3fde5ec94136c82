//! `cargo xtask bench-redis`: a real tokio server's throughput under leakprof. mini-redis
//! (tokio's example Redis server, fixtures/mini-redis) loaded by `redis-benchmark` SET and GET,
//! bare rounds alternating with rounds under leakprof's census and under `--probes`, in one
//! server process; medians of the rounds and their ratios to bare.
use std::{
    io::BufRead as _,
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    bench::{median, Attached},
    demo::start_fixture,
    fixtures, util,
};

/// The tests measured, in `redis-benchmark -t` spelling and as its CSV names them.
const TESTS: [&str; 2] = ["SET", "GET"];

pub fn run(root: &Path, rounds: u32, requests: u64, clients: u32) -> Result<()> {
    if rounds == 0 || requests == 0 || clients == 0 {
        bail!("--rounds, --requests and --clients must be at least 1");
    }
    util::setup(root)?;
    let server = fixtures::build(root)?.join("mini-redis");
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");

    // port 0: the server binds a free one and names it
    let (_guard, pid, mut out) = start_fixture(&server, &["0"], Stdio::null())?;
    let mut line = String::new();
    out.read_line(&mut line)?;
    let port = line.trim().strip_prefix("listening port=").with_context(|| format!("mini-redis said {line:?}"))?.to_string();
    eprintln!("[xtask] mini-redis pid {pid} on 127.0.0.1:{port}");
    benchmark(&port, 10_000, clients)?; // warm-up

    let modes: [(&str, &[&str]); 2] = [("census", &[]), ("probes", &["--probes"])];
    // rps[mode][test]: bare is mode 0
    let mut rps = vec![vec![vec![]; TESTS.len()]; modes.len() + 1];
    for round in 1..=rounds {
        let mut line = vec![("bare", benchmark(&port, requests, clients)?)];
        for (label, extra) in modes {
            let prof = Attached::start(&leakprof, pid, extra)?;
            let r = benchmark(&port, requests, clients);
            prof.stop()?;
            line.push((label, r?));
            sleep(Duration::from_millis(100));
        }
        let mut log = format!("[xtask] round {round}/{rounds}:");
        for (m, (label, r)) in line.into_iter().enumerate() {
            log += &format!(" {label}");
            for (t, v) in r.into_iter().enumerate() {
                log += &format!(" {}={v:.0}", TESTS[t]);
                rps[m][t].push(v);
            }
        }
        eprintln!("{log}");
    }

    println!(
        "\nmini-redis under redis-benchmark, {requests} requests x {clients} clients, {rounds} rounds of each \
         (alternating), median requests/s:"
    );
    print!("{:<6} {:>10}", "test", "bare");
    for (label, _) in &modes {
        print!(" {label:>10} {:>7}", "ratio");
    }
    println!();
    for (t, name) in TESTS.iter().enumerate() {
        let bare = median(&mut rps[0][t]);
        print!("{name:<6} {bare:>10.0}");
        for under in &mut rps[1..] {
            let v = median(&mut under[t]);
            print!(" {v:>10.0} {:>6.3}x", v / bare);
        }
        println!();
    }
    Ok(())
}

/// One redis-benchmark run of SET and GET; requests per second of each, in `TESTS` order.
fn benchmark(port: &str, requests: u64, clients: u32) -> Result<Vec<f64>> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", port])
        .args(["-n", &requests.to_string(), "-c", &clients.to_string()])
        .args(["-t", "set,get", "--csv"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-benchmark (scripts/setup.sh installs redis-tools)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("redis-benchmark failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    parse_csv(&stdout).with_context(|| format!("redis-benchmark's output: {stdout:?}"))
}

/// Reads the `rps` column of each of `TESTS` from redis-benchmark's `--csv` output, by header.
fn parse_csv(csv: &str) -> Result<Vec<f64>> {
    let fields = |l: &str| l.split(',').map(|f| f.trim().trim_matches('"').to_string()).collect::<Vec<_>>();
    let mut lines = csv.lines().filter(|l| l.starts_with('"'));
    let first = fields(lines.next().context("no CSV lines")?);
    let mut rows: Vec<Vec<String>> = lines.map(fields).collect();
    // redis-benchmark before 6.2 prints no header: "SET","131578.95"
    let (test, rps) = if first.iter().any(|h| h == "test") {
        let col = |name: &str| first.iter().position(|h| h == name).with_context(|| format!("no {name:?} column"));
        (col("test")?, col("rps")?)
    } else {
        rows.push(first);
        (0, 1)
    };
    TESTS
        .iter()
        .map(|t| {
            let row = rows.iter().find(|r| r.get(test).is_some_and(|n| n == t)).with_context(|| format!("no {t} row"))?;
            row.get(rps).context("short row")?.parse::<f64>().with_context(|| format!("{t} rps"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_by_header() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"131578.95\",\"0.237\"\n\"GET\",\"104712.04\",\"0.266\"\n";
        assert_eq!(super::parse_csv(csv).unwrap(), vec![131578.95, 104712.04]);
        // columns in another order, other lines around
        let csv = "WARNING: x\n\"p50\",\"rps\",\"test\"\n\"1\",\"2.5\",\"GET\"\n\"1\",\"1.5\",\"SET\"\n";
        assert_eq!(super::parse_csv(csv).unwrap(), vec![1.5, 2.5]);
        // no header (before 6.2)
        assert_eq!(super::parse_csv("\"SET\",\"3\"\n\"GET\",\"4\"\n").unwrap(), vec![3.0, 4.0]);
    }
}
