//! `cargo xtask test-kernels`: the kernel matrix. Boots each of Debian's kernels (5.10, 6.1, 6.12:
//! `scripts/kernels.sh` fetches them) under qemu (TCG: this machine's KVM cannot run stock
//! kernels) with virtme-ng, the host's root filesystem shared read-only, and runs inside it, as
//! root, the smoke suite of `profiler/tests/kernel.rs` (release builds: emulation is slow): the
//! kernel's features and every BPF program loaded, `--probes` on a tokio fixture (births,
//! finishes, the slots array, the futex tracepoints, the kernel's run-time counters, Ctrl-C
//! detaching everything) and on a Go fixture, the census of tokio, Go and threads. One line per
//! kernel.
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
    pub seconds: f64,
    /// Why the guest did not run the suite (boot failed, timed out).
    pub broken: Option<String>,
}

/// Fetches the kernels, builds the smoke suite, runs it in each; prints one line per kernel.
/// Fails when any kernel fails.
pub fn run(root: &Path, labels: &[String]) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    let runs = matrix(root, &bins, labels)?;
    let bad = runs.iter().filter(|r| r.broken.is_some() || !r.failed.is_empty()).count();
    if bad > 0 {
        bail!("{bad} kernel(s) of the matrix failed");
    }
    Ok(())
}

/// The matrix on `labels` (all when empty), fixtures already built in `bins`.
pub fn matrix(root: &Path, bins: &Path, labels: &[String]) -> Result<Vec<KernelRun>> {
    let kernels = fetch(root, labels)?;
    let tests = build_smoke(root)?;
    let out_dir = root.join("target/kernels");
    std::fs::create_dir_all(&out_dir)?;
    let mut runs = Vec::new();
    for (label, version, vmlinuz) in kernels {
        let r = one_kernel(root, bins, &tests, &out_dir, &label, &version, &vmlinuz)?;
        println!("{}", line(&r));
        runs.push(r);
    }
    Ok(runs)
}

/// The one line a kernel gets.
pub fn line(r: &KernelRun) -> String {
    match (&r.broken, r.failed.is_empty()) {
        (Some(why), _) => format!("kernel {} ({}): did not run: {why} ({:.0} s)", r.label, r.version, r.seconds),
        (None, true) => format!("kernel {} ({}): {} smoke tests passed ({:.0} s, boot included)", r.label, r.version, r.passed, r.seconds),
        (None, false) => format!(
            "kernel {} ({}): {} passed, {} FAILED: {} ({:.0} s)",
            r.label,
            r.version,
            r.passed,
            r.failed.len(),
            r.failed.join(", "),
            r.seconds
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

/// Builds the smoke suite's test binaries in the release profile; their paths by test file.
fn build_smoke(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).args(["test", "--release", "--no-run", "--message-format=json", "-p", "profiler"]);
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

/// Boots `vmlinuz` and runs the smoke suite in it; its results from the files it wrote.
fn one_kernel(root: &Path, bins: &Path, tests: &[(String, PathBuf)], out_dir: &Path, label: &str, version: &str, vmlinuz: &Path) -> Result<KernelRun> {
    let dir = out_dir.join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // the guest's script: each test binary with its tests, its output kept in `dir`
    let mut script = String::from("set -u\ncd /tmp\n");
    script += &format!(
        "export CI=true LEAKPROF_FIXTURES={} LEAKPROF_SKIP_LOG={}/skipped.log\n",
        bins.display(),
        dir.display()
    );
    for (file, exe) in tests {
        let names = SMOKE.iter().find(|(f, _)| f == file).map(|(_, n)| n.join(" ")).unwrap_or_default();
        script += &format!("{} --exact --test-threads 1 {names} > {}/{file}.out 2>&1\n", exe.display(), dir.display());
    }
    script += &format!("uname -r > {}/uname\n", dir.display());
    let script_path = dir.join("smoke.sh");
    std::fs::write(&script_path, script)?;
    let t0 = Instant::now();
    let mut vng = Command::new("timeout");
    let path = format!("{VNG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    vng.env("PATH", path).args(["600", "vng", "--force-9p", "--disable-kvm", "--cpus", "1", "--memory", "2G", "--user", "root"])
        .args(["--rwdir", dir.to_str().unwrap(), "--run"])
        .arg(vmlinuz)
        .args(["--exec", &format!("bash {}", script_path.display())])
        .current_dir(root)
        .stdin(Stdio::null());
    eprintln!("[xtask] {vng:?}");
    let st = vng.output().context("cannot start vng")?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut r = KernelRun { label: label.into(), version: version.into(), passed: 0, failed: Vec::new(), seconds, broken: None };
    let booted = std::fs::read_to_string(dir.join("uname")).unwrap_or_default();
    if booted.trim() != version {
        let tail = String::from_utf8_lossy(&st.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        r.broken = Some(format!("the guest did not run the suite to its end (exit {}; {tail})", st.status));
    }
    for (file, _) in tests {
        let out = std::fs::read_to_string(dir.join(format!("{file}.out"))).unwrap_or_default();
        for l in out.lines() {
            if let Some(name) = l.strip_prefix("test ") {
                if name.ends_with(" ... ok") {
                    r.passed += 1;
                } else if let Some(n) = name.strip_suffix(" ... FAILED") {
                    r.failed.push(format!("{file}::{n}"));
                }
            }
        }
        let expected = SMOKE.iter().find(|(f, _)| f == file).map_or(0, |(_, n)| n.len());
        let seen = out.lines().filter(|l| l.starts_with("test ") && (l.ends_with(" ... ok") || l.ends_with(" ... FAILED"))).count();
        if seen < expected && r.broken.is_none() {
            r.failed.push(format!("{file}: {} of {expected} tests reported (see {}/{file}.out)", seen, dir.display()));
        }
    }
    if let Ok(skipped) = std::fs::read_to_string(dir.join("skipped.log")) {
        r.failed.extend(skipped.lines().map(|l| format!("skipped: {l}")));
    }
    Ok(r)
}
