//! `cargo xtask bench`: ns per spawned+joined task, bare vs probed, alternating rounds in one run.
use std::{
    io::{BufRead, BufReader, Read as _, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    thread::{sleep, JoinHandle},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{demo::start_fixture, fixtures, util};

pub fn run(root: &Path, tasks: u64, rounds: u32) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    // probe configurations measured against bare rounds, alternating in one fixture process; the
    // first is the physical limit: the same uprobes with programs that do nothing
    let configs: [(&str, &[&str]); 4] = [
        ("empty probes", &["--empty-probes", "--stack-period", "0", "--no-threads"]),
        ("probes", &["--probes", "--stack-period", "0", "--no-threads"]),
        ("+stacks", &["--probes", "--no-threads"]),
        ("+stacks+futex", &["--probes"]),
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
    crate::bench_go::go_bench(&leakprof, &bins, rounds)?;
    println!("\nspawn+join of a trivial task, {tasks} tasks x {rounds} rounds each, median ns/task:");
    print_table(&configs, &results);
    Ok(())
}

/// One row per fixture: bare, then each configuration with its ratio to bare and, for probe
/// configurations after the first (the empty-probe limit), their ratio to that limit.
pub(crate) fn print_table(configs: &[(&str, &[&str])], rows: &[(&str, f64, Vec<f64>)]) {
    print!("{:<28} {:>8}", "fixture", "bare");
    let vs_limit = |i: usize| i > 0 && configs[i].1.contains(&"--probes");
    for (i, (name, _)) in configs.iter().enumerate() {
        print!(" {name:>14} {:>7}", "x bare");
        if vs_limit(i) {
            print!(" {:>8}", "x limit");
        }
    }
    println!();
    for (label, bare, probed) in rows {
        print!("{label:<28} {bare:>8.0}");
        for (i, p) in probed.iter().enumerate() {
            print!(" {p:>14.0} {:>6.2}x", p / bare);
            if vs_limit(i) {
                print!(" {:>7.2}x", p / probed[0]);
            }
        }
        println!();
    }
}

/// Median ns/task of `rounds` bare rounds and `rounds` rounds per probe configuration,
/// alternating, in one fixture process.
pub(crate) fn measure(
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
    measure_with(leakprof, bin, &args, "ns_per_task=", configs, rounds, None)
}

/// Time leakprof runs after attaching before a measured round.
pub(crate) const SETTLE: Duration = Duration::from_millis(1500);

/// Like `measure`, for any fixture that runs a round per stdin line and prints `PREFIX<ns>`.
/// leakprof attaches to `target` when given (the fixture measured is then a bystander: what
/// leakprof costs the rest of the host), else to the fixture itself.
pub(crate) fn measure_with(
    leakprof: &Path,
    bin: &Path,
    args: &[&str],
    prefix: &str,
    configs: &[(&str, &[&str])],
    rounds: u32,
    target: Option<u32>,
) -> Result<(f64, Vec<f64>)> {
    let (mut guard, fixture_pid, mut out) = start_fixture(bin, args, Stdio::piped())?;
    let pid = target.unwrap_or(fixture_pid);
    let mut stdin = guard.0.stdin.take().unwrap();
    let mut round = |stdin: &mut std::process::ChildStdin| one_round(stdin, &mut out, prefix);
    round(&mut stdin)?; // warm-up
    let mut bare = vec![];
    let mut probed: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    for _ in 0..rounds {
        bare.push(round(&mut stdin)?);
        for (i, (_, extra)) in configs.iter().enumerate() {
            let prof = Attached::start(leakprof, pid, extra)?;
            // steady state: leakprof's first sample (heap scan, symbols, unwinding) is over
            sleep(SETTLE);
            probed[i].push(round(&mut stdin)?);
            prof.stop()?;
            sleep(Duration::from_millis(100));
        }
    }
    Ok((median(&mut bare), probed.iter_mut().map(|v| median(v)).collect()))
}

/// One round of a bench fixture: a line on its stdin starts it; its `PREFIX<value>` line ends it.
pub(crate) fn one_round(stdin: &mut std::process::ChildStdin, out: &mut impl BufRead, prefix: &str) -> Result<f64> {
    writeln!(stdin, "go")?;
    loop {
        let mut line = String::new();
        if out.read_line(&mut line)? == 0 {
            bail!("the bench fixture ended early");
        }
        if let Some(v) = line.trim().strip_prefix(prefix) {
            return Ok(v.parse()?);
        }
    }
}

/// leakprof attached to a process, its report going nowhere.
pub(crate) struct Attached {
    child: Child,
    /// The rest of its stderr, read meanwhile so it never blocks on a full pipe.
    stderr: JoinHandle<String>,
}

impl Attached {
    /// Starts leakprof on `pid` and waits for its stderr line saying it attached.
    pub(crate) fn start(leakprof: &Path, pid: u32, extra: &[&str]) -> Result<Attached> {
        Attached::start_cmd(Command::new(leakprof), pid, extra)
    }

    /// [`Attached::start`] of a command that runs leakprof (e.g. under `taskset`).
    pub(crate) fn start_cmd(mut cmd: Command, pid: u32, extra: &[&str]) -> Result<Attached> {
        let mut child = cmd
            .args(["--pid", &pid.to_string(), "--quiet", "--format", "json", "-o", "/dev/null"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start leakprof")?;
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line)? == 0 {
                let st = child.wait()?;
                bail!("leakprof {extra:?} ended ({st}) before attaching: {seen}");
            }
            seen += &line;
            if line.contains("attached") {
                break;
            }
        }
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            rest
        });
        Ok(Attached { child, stderr })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (detach and report), then waits for it to exit.
    pub(crate) fn stop(mut self) -> Result<()> {
        send_sigint(self.child.id());
        let st = self.child.wait()?;
        let rest = self.stderr.join().unwrap_or_default();
        if !st.success() {
            bail!("leakprof exited with {st}: {rest}");
        }
        Ok(())
    }
}

pub(crate) fn send_sigint(pid: u32) {
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The daemon's own CPU and memory while it watches `n` tokio and `n` Go targets for `secs`.
pub fn daemon(root: &Path, n: usize, secs: u64) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    let mut targets = Vec::new();
    for _ in 0..n {
        targets.push(start_fixture(&bins.join("tokio-latest"), &["send-no-receiver"], Stdio::null())?);
        targets.push(start_fixture(&bins.join("go-latest"), &["send-no-receiver"], Stdio::null())?);
    }
    let listen = "127.0.0.1:19499";
    let mut d = Command::new(&leakprof)
        .args(["daemon", "--listen", listen, "--name", "tokio-latest", "--name", "go-latest"])
        .stderr(Stdio::null())
        .spawn()?;
    let t0 = std::time::Instant::now();
    sleep(Duration::from_secs(secs));
    let cpu = proc_cpu_seconds(d.id());
    let rss = proc_status_kib(d.id(), "VmRSS");
    let sites = http_get(listen, "/api/report")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .map(|v| v.as_array().map(|a| a.iter().map(|r| r["sites"].as_array().map_or(0, |s| s.len())).sum::<usize>()).unwrap_or(0))
        .unwrap_or(0);
    send_sigint(d.id());
    d.wait()?;
    println!(
        "\ndaemon watching {} targets ({n} tokio + {n} Go, {sites} sites in all) for {:.0} s: \
         {:.1}% of one core, {:.1} MiB RSS",
        2 * n,
        t0.elapsed().as_secs_f64(),
        100.0 * cpu / t0.elapsed().as_secs_f64(),
        rss as f64 / 1024.0
    );
    drop(targets);
    Ok(())
}

pub(crate) fn proc_cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let f: Vec<String> = s.rsplit_once(')')?.1.split_whitespace().map(String::from).collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmPTE`, ...); 0 when unreadable.
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// leakprof's own cost over run length: RSS and CPU per sample with `sites` sites after 1 h, 24 h
/// and 7 days at 1 s (one process each), side by side.
pub fn history(root: &Path, sites: u64) -> Result<()> {
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler", "--example", "bench_history"], &[])?;
    let bin = root.join("target/release/examples/bench_history");
    for hours in [1, 24, 168] {
        util::run(Command::new(&bin).args([sites.to_string(), hours.to_string()]))?;
    }
    Ok(())
}

