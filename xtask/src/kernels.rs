//! `cargo xtask test-kernels`: the kernel matrix. Boots each of Debian's kernels (5.10, 6.1, 6.12:
//! `scripts/kernels.sh` fetches them) under qemu (TCG: this machine's KVM cannot run stock
//! kernels) with virtme-ng, the host's root filesystem shared read-only, and runs inside it, as
//! root, the smoke suite of `profiler/tests/kernel.rs` (the test command's own debug builds): the
//! kernel's features and every BPF program loaded, `--probes` on a tokio fixture (births,
//! finishes, the slots array, the futex tracepoints, the kernel's run-time counters, Ctrl-C
//! detaching everything) and on a Go fixture, the census of tokio, Go and threads. One line per
//! kernel, with its boot and suite times; `--bench` adds the probe cost measured in each guest.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, util};

/// The smoke suite: (test file, tests in it run by exact name). Its tests wait for what they
/// check rather than for a time, so that a guest under emulation (several times slower) passes
/// them as the host does.
pub const SMOKE: &[(&str, &[&str])] = &[(
    "kernel",
    &[
        "features_are_those_of_the_kernel_release",
        "probes_on_tokio_run_and_detach_leaving_nothing",
        "probes_on_go_count_births_and_exits",
        "the_census_reads_tokio_go_and_threads",
    ],
)];

/// Where virtme-ng lives (scripts/setup.sh installs it); its tools call each other by PATH.
const VNG_BIN: &str = "/opt/leakprof-vng/venv/bin";

/// One kernel's run.
pub struct KernelRun {
    pub label: String,
    pub version: String,
    pub passed: u64,
    pub failed: Vec<String>,
    /// From starting qemu to its exit.
    pub seconds: f64,
    /// The smoke suite's own time, by the guest's clock (the rest is boot and power-off, and
    /// the bench when one ran).
    pub suite_seconds: Option<f64>,
    /// The bench's time in the guest (0 without one).
    pub bench_seconds: f64,
    /// The bench's line, when one was asked for and printed one.
    pub bench: Option<String>,
    /// Why the guest did not run the suite (boot failed, timed out).
    pub broken: Option<String>,
}

/// The probe cost bench: tasks per round and rounds.
pub type Bench = Option<(u64, u32)>;

/// Fetches the kernels, builds the smoke suite, runs it in each; prints one line per kernel
/// (and the bench's, on this host too, with `bench`). Fails when any kernel fails.
pub fn run(root: &Path, labels: &[String], bench: Bench) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    if bench.is_some() {
        util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    }
    let runs = matrix(root, &bins, labels, bench)?;
    if let Some((tasks, rounds)) = bench {
        let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        eprintln!("[xtask] the same bench on this host ({})", host.trim());
        // on one CPU, as in the guests (one vCPU): one tokio worker, leakprof on the same CPU
        let out = Command::new("taskset").args(["-c", "1"]).args(bench_guest_argv(root, &bins, tasks, rounds)?).stderr(Stdio::inherit()).output()?;
        let line = bench_figures(&String::from_utf8_lossy(&out.stdout));
        let line = line.with_context(|| format!("the bench on this host printed no figures ({})", out.status))?;
        println!(
            "\nprobe cost, spawn+join of a trivial task, one CPU (the guests' one vCPU; here `taskset -c 1`), \
             {tasks} tasks x {rounds} rounds, median ns/task, tokio-latest multi-thread:"
        );
        for r in &runs {
            println!("  kernel {:<5} {:<24} {}", r.label, r.version, r.bench.as_deref().unwrap_or("(no figures)"));
        }
        println!("  host         {:<24} {line}", host.trim());
    }
    let bad = runs.iter().filter(|r| r.broken.is_some() || !r.failed.is_empty()).count();
    if bad > 0 {
        bail!("{bad} kernel(s) of the matrix failed");
    }
    Ok(())
}

/// The matrix on `labels` (all when empty), fixtures already built in `bins`.
pub fn matrix(root: &Path, bins: &Path, labels: &[String], bench: Bench) -> Result<Vec<KernelRun>> {
    let kernels = fetch(root, labels)?;
    let tests = build_smoke(root)?;
    let out_dir = root.join("target/kernels");
    std::fs::create_dir_all(&out_dir)?;
    let mut runs = Vec::new();
    for (label, version, vmlinuz) in kernels {
        let r = one_kernel(root, bins, &tests, &out_dir, &label, &version, &vmlinuz, bench)?;
        println!("{}", line(&r));
        runs.push(r);
    }
    Ok(runs)
}

/// The one line a kernel gets.
pub fn line(r: &KernelRun) -> String {
    // boot and power-off: qemu's time less what the guest timed
    let times = match r.suite_seconds {
        Some(suite) if r.bench_seconds > 0.0 => format!(
            "suite {suite:.0} s, bench {:.0} s, boot and power-off {:.0} s",
            r.bench_seconds,
            r.seconds - suite - r.bench_seconds
        ),
        Some(suite) => format!("suite {suite:.0} s, boot and power-off {:.0} s", r.seconds - suite),
        None => format!("qemu {:.0} s", r.seconds),
    };
    match (&r.broken, r.failed.is_empty()) {
        (Some(why), _) => format!("kernel {} ({}): did not run: {why} ({times})", r.label, r.version),
        (None, true) => format!("kernel {} ({}): {} smoke tests passed ({times})", r.label, r.version, r.passed),
        (None, false) => format!(
            "kernel {} ({}): {} passed, {} FAILED: {} ({times})",
            r.label,
            r.version,
            r.passed,
            r.failed.len(),
            r.failed.join(", "),
        ),
    }
}

/// (label, version, vmlinuz) of each kernel, fetched or from the cache.
fn fetch(root: &Path, labels: &[String]) -> Result<Vec<(String, String, PathBuf)>> {
    let out = Command::new("bash").arg(root.join("scripts/kernels.sh")).args(labels).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("scripts/kernels.sh failed: {}", out.status);
    }
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [label, version, vmlinuz] => Ok((label.to_string(), version.to_string(), PathBuf::from(vmlinuz))),
                _ => bail!("scripts/kernels.sh printed {l:?}"),
            }
        })
        .collect()
}

/// The smoke suite's test binaries, those `cargo test` builds (the test command has built them
/// already); their paths by test file.
fn build_smoke(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).args(["test", "--no-run", "--message-format=json", "-p", "profiler"]);
    for (file, _) in SMOKE {
        c.args(["--test", file]);
    }
    eprintln!("[xtask] {c:?}");
    let out = c.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("building the smoke suite failed: {}", out.status);
    }
    let mut bins = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) else { continue };
        if SMOKE.iter().any(|(f, _)| *f == name) && v["target"]["kind"][0] == "test" {
            bins.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if bins.len() != SMOKE.len() {
        bail!("built {} of the {} smoke test binaries", bins.len(), SMOKE.len());
    }
    Ok(bins)
}

/// Boots `vmlinuz` and runs the smoke suite (and the bench) in it; its results from the files it
/// wrote.
#[allow(clippy::too_many_arguments)]
fn one_kernel(
    root: &Path,
    bins: &Path,
    tests: &[(String, PathBuf)],
    out_dir: &Path,
    label: &str,
    version: &str,
    vmlinuz: &Path,
    bench: Bench,
) -> Result<KernelRun> {
    let dir = out_dir.join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    // the guest's script: each test binary with its tests, its output kept in `dir`, the suite
    // timed by the guest's clock
    let mut script = String::from("set -u\ncd /tmp\n");
    script += &format!("export CI=true LEAKPROF_FIXTURES={} LEAKPROF_SKIP_LOG={d}/skipped.log\n", bins.display());
    script += &format!("date +%s.%N > {d}/suite.start\n");
    for (file, exe) in tests {
        let names = SMOKE.iter().find(|(f, _)| f == file).map(|(_, n)| n.join(" ")).unwrap_or_default();
        script += &format!("{} --exact --test-threads 1 {names} > {d}/{file}.out 2>&1\n", exe.display());
    }
    script += &format!("date +%s.%N > {d}/suite.end\n");
    if let Some((tasks, rounds)) = bench {
        script += &format!("{} > {d}/bench.out 2>&1\n", bench_guest_argv(root, bins, tasks, rounds)?.join(" "));
        script += &format!("date +%s.%N > {d}/bench.end\n");
    }
    script += &format!("uname -r > {d}/uname\n");
    let script_path = dir.join("smoke.sh");
    std::fs::write(&script_path, script)?;
    let t0 = Instant::now();
    let mut vng = Command::new("timeout");
    let path = format!("{VNG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let limit = if bench.is_some() { "1800" } else { "600" };
    vng.env("PATH", path).args([limit, "vng", "--force-9p", "--disable-kvm", "--cpus", "1", "--memory", "2G", "--user", "root"])
        .args(["--rwdir", dir.to_str().unwrap(), "--run"])
        .arg(vmlinuz)
        .args(["--exec", &format!("bash {}", script_path.display())])
        .current_dir(root)
        .stdin(Stdio::null());
    eprintln!("[xtask] {vng:?}");
    let st = vng.output().context("cannot start vng")?;
    let seconds = t0.elapsed().as_secs_f64();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let stamp = |name: &str| read(name).trim().parse::<f64>().ok();
    let suite_seconds = stamp("suite.start").zip(stamp("suite.end")).map(|(a, b)| b - a);
    let bench_seconds = stamp("suite.end").zip(stamp("bench.end")).map_or(0.0, |(a, b)| b - a);
    let bench = bench_figures(&read("bench.out"));
    let mut r = KernelRun {
        label: label.into(),
        version: version.into(),
        passed: 0,
        failed: Vec::new(),
        seconds,
        suite_seconds,
        bench_seconds,
        bench,
        broken: None,
    };
    if read("uname").trim() != version {
        let tail = String::from_utf8_lossy(&st.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        r.broken = Some(format!("the guest did not run the suite to its end (exit {}; {tail})", st.status));
    }
    for (file, _) in tests {
        let out = read(&format!("{file}.out"));
        let mut seen = 0;
        for name in out.lines().filter_map(|l| l.strip_prefix("test ")) {
            if name.ends_with(" ... ok") {
                r.passed += 1;
                seen += 1;
            } else if let Some(n) = name.strip_suffix(" ... FAILED") {
                r.failed.push(format!("{file}::{n}"));
                seen += 1;
            }
        }
        let expected = SMOKE.iter().find(|(f, _)| f == file).map_or(0, |(_, n)| n.len());
        if seen < expected && r.broken.is_none() {
            r.failed.push(format!("{file}: {seen} of {expected} tests reported (see {d}/{file}.out)"));
        }
    }
    r.failed.extend(read("skipped.log").lines().map(|l| format!("skipped: {l}")));
    Ok(r)
}

/// This very binary (when cargo rebuilt it meanwhile, the new one at the same path).
fn xtask_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")).map_or(exe.clone(), PathBuf::from))
}

/// How the bench's one line starts.
const BENCH_PREFIX: &str = "probe cost: ";

/// The command that runs the bench with the binaries already built (in a guest, or on the host).
fn bench_guest_argv(root: &Path, bins: &Path, tasks: u64, rounds: u32) -> Result<Vec<String>> {
    let path = |p: &Path| p.display().to_string();
    Ok(vec![
        path(&xtask_exe()?),
        "bench-guest".into(),
        "--leakprof".into(),
        path(&root.join("target/release/leakprof")),
        "--fixtures".into(),
        path(bins),
        "--tasks".into(),
        tasks.to_string(),
        "--rounds".into(),
        rounds.to_string(),
    ])
}

/// The figures of the bench's line in what it printed.
fn bench_figures(out: &str) -> Option<String> {
    out.lines().find_map(|l| l.strip_prefix(BENCH_PREFIX)).map(str::to_string)
}

/// The bench's configurations, each against bare rounds: the same uprobes with programs that do
/// nothing (the physical limit), the probes without stacks and threads, and `--probes` as users
/// run it (stacks and the futex tracepoints).
const BENCH_CONFIGS: [(&str, &[&str]); 3] = [
    ("empty probes", &["--empty-probes", "--stack-period", "0", "--no-threads"]),
    ("probes", &["--probes", "--stack-period", "0", "--no-threads"]),
    ("--probes", &["--probes"]),
];

/// `bench-guest`: the bench with binaries already built (inside a guest); prints its line.
pub fn bench_guest(leakprof: &Path, bins: &Path, tasks: u64, rounds: u32) -> Result<()> {
    println!("{BENCH_PREFIX}{}", bench_line(leakprof, bins, tasks, rounds)?);
    Ok(())
}

/// ns per spawned+joined task on tokio-latest (multi-thread), bare and under each configuration
/// with its ratio to bare.
fn bench_line(leakprof: &Path, bins: &Path, tasks: u64, rounds: u32) -> Result<String> {
    let (bare, probed) = crate::bench::measure(leakprof, &bins.join("tokio-latest"), None, &BENCH_CONFIGS, tasks, rounds)?;
    let mut line = format!("bare {bare:.0}");
    for ((name, _), p) in BENCH_CONFIGS.iter().zip(&probed) {
        line += &format!(", {name} {p:.0} ({:.2}x)", p / bare);
    }
    Ok(line)
}
