//! `cargo xtask bench-redis`: a real tokio server's throughput under leakprof. mini-redis
//! (tokio's example Redis server, fixtures/mini-redis) loaded by `redis-benchmark` SET and GET,
//! bare rounds alternating with rounds under leakprof's census and under `--probes`, in one
//! server process. This VM's throughput drifts in slow and fast spells (single rounds vary by
//! ±20%), so each round under leakprof is compared with the mean of the bare rounds just before and
//! just after it, and the median of those paired ratios is reported with their middle half.
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
    // bare[round][test]; under[mode][round][test]; a last bare round closes the sequence
    let mut bare: Vec<Vec<f64>> = Vec::new();
    let mut under: Vec<Vec<Vec<f64>>> = vec![Vec::new(); modes.len()];
    for round in 1..=rounds + 1 {
        bare.push(benchmark(&port, requests, clients)?);
        let mut log = format!("[xtask] round {round}/{rounds}: bare {}", fmt(&bare[bare.len() - 1]));
        if round > rounds {
            eprintln!("{log} (closing)");
            break;
        }
        for (m, (label, extra)) in modes.iter().enumerate() {
            let prof = Attached::start(&leakprof, pid, extra)?;
            // steady state: the attach-time heap scan and symbol work are over
            sleep(SETTLE);
            let r = benchmark(&port, requests, clients);
            prof.stop()?;
            let r = r?;
            log += &format!(" {label} {}", fmt(&r));
            under[m].push(r);
            sleep(Duration::from_millis(100));
        }
        eprintln!("{log}");
    }

    println!(
        "\nmini-redis under redis-benchmark, {requests} requests x {clients} clients, {rounds} rounds of each \
         (alternating; leakprof attached {} s before each measured round). Median requests/s, and each round \
         under leakprof divided by the mean of the bare rounds before and after it: median ratio [middle half]",
        SETTLE.as_secs()
    );
    print!("{:<6} {:>10}", "test", "bare");
    for (label, _) in &modes {
        print!(" {label:>10} {:>22}", "paired ratio");
    }
    println!();
    for (t, name) in TESTS.iter().enumerate() {
        let mut b: Vec<f64> = bare.iter().map(|r| r[t]).collect();
        print!("{name:<6} {:>10.0}", median(&mut b));
        for rounds_of in &under {
            let mut v: Vec<f64> = rounds_of.iter().map(|r| r[t]).collect();
            let mut ratios: Vec<f64> = rounds_of.iter().enumerate().map(|(i, r)| r[t] / ((bare[i][t] + bare[i + 1][t]) / 2.0)).collect();
            let (med, lo, hi) = median_and_middle_half(&mut ratios);
            print!(" {:>10.0} {med:>7.3}x [{lo:.3}-{hi:.3}]", median(&mut v));
        }
        println!();
    }
    Ok(())
}

/// Time leakprof runs before a measured round.
const SETTLE: Duration = Duration::from_secs(2);

fn fmt(r: &[f64]) -> String {
    TESTS.iter().zip(r).map(|(t, v)| format!("{t}={v:.0}")).collect::<Vec<_>>().join(" ")
}

/// The median of `v` and its first and third quartiles (nearest rank).
pub(crate) fn median_and_middle_half(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
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
    fn median_and_quartiles_by_nearest_rank() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(super::median_and_middle_half(&mut v), (3.0, 2.0, 4.0));
        assert_eq!(super::median_and_middle_half(&mut [7.0]), (7.0, 7.0, 7.0));
    }

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
