//! `cargo xtask bench-actix`: a real actix-web server's throughput under leakprof. The actix fixture
//! (fixtures/actix: every worker a current-thread runtime with a LocalSet) loaded by `ab`
//! (ApacheBench, keep-alive GET /), bare rounds alternating with rounds under leakprof's census,
//! under `--probes` and under `--probes --no-threads`, in one server process; each round under leakprof is compared with the mean of
//! the bare rounds just before and after it (this VM drifts), as `bench-redis` does.
use std::{io::BufRead as _, path::Path, process::Command, process::Stdio, thread::sleep, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::{
    bench::{median, Attached},
    bench_redis::median_and_middle_half,
    demo::start_fixture,
    fixtures, util,
};

/// Time leakprof runs before a measured round.
const SETTLE: Duration = Duration::from_secs(2);

pub fn run(root: &Path, rounds: u32, requests: u64, clients: u32) -> Result<()> {
    if rounds == 0 || requests == 0 || clients == 0 {
        bail!("--rounds, --requests and --clients must be at least 1");
    }
    util::setup(root)?;
    let server = fixtures::build(root)?.join("actix");
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");

    let (_guard, pid, mut out) = start_fixture(&server, &["0"], Stdio::null())?;
    let mut line = String::new();
    out.read_line(&mut line)?;
    let port = line.trim().strip_prefix("listening port=").with_context(|| format!("the actix fixture said {line:?}"))?.to_string();
    eprintln!("[xtask] actix fixture pid {pid} on 127.0.0.1:{port}");
    benchmark(&port, 10_000, clients)?; // warm-up

    // --probes also traces futex waits (every syscall on the host): apart, without them
    let modes: [(&str, &[&str]); 3] =
        [("census", &[]), ("probes", &["--probes"]), ("probes, no threads", &["--probes", "--no-threads"])];
    let mut bare: Vec<f64> = Vec::new();
    let mut under: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 1..=rounds + 1 {
        bare.push(benchmark(&port, requests, clients)?);
        let mut log = format!("[xtask] round {round}/{rounds}: bare {:.0}", bare[bare.len() - 1]);
        if round > rounds {
            eprintln!("{log} (closing)");
            break;
        }
        for (m, (label, extra)) in modes.iter().enumerate() {
            let prof = Attached::start(&leakprof, pid, extra)?;
            sleep(SETTLE);
            let r = benchmark(&port, requests, clients);
            prof.stop()?;
            let r = r?;
            log += &format!(" {label} {r:.0}");
            under[m].push(r);
            sleep(Duration::from_millis(100));
        }
        eprintln!("{log}");
    }

    println!(
        "\nactix-web (fixtures/actix, 2 workers) under ab -k, GET /, {requests} requests x {clients} clients, {rounds} \
         rounds of each (alternating; leakprof attached {} s before each measured round). Median requests/s, and each \
         round under leakprof divided by the mean of the bare rounds before and after it: median ratio [middle half]",
        SETTLE.as_secs()
    );
    print!("{:>10}", "bare");
    for (label, _) in &modes {
        print!(" {label:>18} {:>22}", "paired ratio");
    }
    println!();
    print!("{:>10.0}", median(&mut bare.clone()));
    for rounds_of in &under {
        let mut ratios: Vec<f64> = rounds_of.iter().enumerate().map(|(i, r)| r / ((bare[i] + bare[i + 1]) / 2.0)).collect();
        let (med, lo, hi) = median_and_middle_half(&mut ratios);
        print!(" {:>18.0} {med:>7.3}x [{lo:.3}-{hi:.3}]", median(&mut rounds_of.clone()));
    }
    println!();
    Ok(())
}

/// One `ab` run; its requests per second.
fn benchmark(port: &str, requests: u64, clients: u32) -> Result<f64> {
    let out = Command::new("ab")
        .args(["-q", "-k", "-c", &clients.to_string(), "-n", &requests.to_string()])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .context("cannot run ab (scripts/setup.sh installs apache2-utils)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("ab failed ({}): {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    parse_ab(&stdout).with_context(|| format!("ab's output: {stdout:?}"))
}

/// `Requests per second:    12345.67 [#/sec] (mean)` from ab's report.
fn parse_ab(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Requests per second:"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_ab_s_requests_per_second() {
        let text = "Concurrency Level:      8\nRequests per second:    23016.41 [#/sec] (mean)\nTime per request: 0.3\n";
        assert_eq!(super::parse_ab(text), Some(23016.41));
        assert_eq!(super::parse_ab("nothing"), None);
    }
}
