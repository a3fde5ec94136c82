//! `cargo xtask test`: set-up, fixtures, the whole suite, and a closing count that says what did
//! not run. Tests that cannot run here (no BPF, not root, a tool missing) record themselves in
//! $LEAKPROF_SKIP_LOG (profiler/tests/common: `skip_or_fail`); under CI (CI=true) they fail
//! instead, and `--require-bpf` makes any skip fail the run here too.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, util};

/// Passed, failed and ignored tests summed over cargo's `test result:` lines.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

/// Adds one `test result: ok. 12 passed; 0 failed; 1 ignored; ...` line to `c`.
pub fn add_result_line(c: &mut Counts, line: &str) {
    let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => c.passed += n,
            "failed" => c.failed += n,
            "ignored" => c.ignored += n,
            _ => {}
        }
    }
}

pub fn run(root: &Path, require_bpf: bool) -> Result<()> {
    let started = std::time::Instant::now();
    util::setup(root)?;
    // the builds the suite's later checks need (the fuzz crate, the census-only leakprof) made
    // meanwhile, while the fixtures and the tests build, at the lowest CPU priority: they take what
    // those builds leave idle, and are done before any test runs (the tests that time leakprof's
    // samples must not share the machine with them)
    let builds = {
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            // nice is per thread on Linux, and what this thread starts inherits it
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            let t0 = std::time::Instant::now();
            let fuzz = crate::fuzz::build(&root);
            let census_only = build_census_only(&root);
            eprintln!("[xtask] background builds (fuzz crate, census-only leakprof) done in {:.0} s", t0.elapsed().as_secs_f64());
            (fuzz, census_only)
        })
    };
    let dir = fixtures::build(root)?;
    eprintln!("[xtask] fixtures built at {:.0} s", started.elapsed().as_secs_f64());
    let skip_log = root.join("target/skipped-tests.log");
    std::fs::create_dir_all(root.join("target"))?;
    let _ = std::fs::remove_file(&skip_log);
    let root_user = unsafe { libc::geteuid() } == 0;
    if !root_user {
        eprintln!(
            "[xtask] not running as root: the BPF, census and daemon tests (most of the suite) will be skipped; \
             run `sudo cargo xtask test` for the whole suite"
        );
    }
    // default-members: every crate but profiler-ebpf, which only builds for the BPF target; the
    // tests built first, then run once the background builds are done
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo).current_dir(root).args(["test", "--no-fail-fast", "--no-run"]).status();
    eprintln!("[xtask] tests built at {:.0} s ({})", started.elapsed().as_secs_f64(), built.map_or_else(|e| e.to_string(), |s| s.to_string()));
    let (fuzz_built, census_only_built) = builds.join().map_err(|_| anyhow::anyhow!("the background builds panicked"))?;
    eprintln!("[xtask] background builds joined at {:.0} s", started.elapsed().as_secs_f64());
    let mut c = Command::new(&cargo);
    c.current_dir(root)
        .args(["test", "--no-fail-fast"])
        .env("LEAKPROF_FIXTURES", &dir)
        .env("LEAKPROF_SKIP_LOG", &skip_log)
        .stdout(Stdio::piped());
    eprintln!("[xtask] {c:?}");
    let mut child = c.spawn().context("cannot start cargo test")?;
    let mut counts = Counts::default();
    let out = std::io::stdout();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        add_result_line(&mut counts, &line);
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
    }
    let status = child.wait()?;
    eprintln!("[xtask] cargo test done at {:.0} s", started.elapsed().as_secs_f64());
    // the census-only build (no eBPF toolchain): run on a leaking fixture
    match census_only_built.and_then(|bin| census_only_smoke(&bin, &dir)) {
        Ok(()) => counts.passed += 1,
        Err(e) => {
            eprintln!("[xtask] the census-only build failed its smoke test: {e:#}");
            counts.failed += 1;
        }
    }
    // the kernel matrix, a bounded subset (LEAKPROF_TEST_KERNELS, default the oldest and the newest:
    // `cargo xtask test-kernels` runs all three), one check per kernel: its VMs (one core, under
    // emulation) run while the fuzzers (one core) do
    let kernels: Vec<String> = std::env::var("LEAKPROF_TEST_KERNELS")
        .unwrap_or_else(|_| "5.10 6.12".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    let matrix = if kernels.is_empty() || !root_user {
        None
    } else {
        let (root2, dir2) = (root.to_path_buf(), dir.clone());
        Some(std::thread::spawn(move || crate::kernels::matrix(&root2, &dir2, &kernels, None)))
    };
    // coverage-guided fuzzing of every parser of untrusted bytes, each target for a bounded time
    // (LEAKPROF_FUZZ_SECS, 10 s by default): one check per target
    let fuzz_secs = std::env::var("LEAKPROF_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let fuzz = fuzz_built.and_then(|()| crate::fuzz::run_built(root, fuzz_secs, None));
    let mut matrix_failed = false;
    if let Some(m) = matrix {
        match m.join().map_err(|_| anyhow::anyhow!("the kernel matrix panicked")).and_then(|r| r) {
            Ok(runs) => {
                for r in &runs {
                    if r.broken.is_none() && r.failed.is_empty() {
                        counts.passed += 1;
                    } else {
                        counts.failed += 1;
                        matrix_failed = true;
                    }
                }
            }
            Err(e) => {
                eprintln!("[xtask] the kernel matrix failed: {e:#}");
                counts.failed += 1;
                matrix_failed = true;
            }
        }
    }
    match &fuzz {
        Ok(()) => counts.passed += crate::fuzz::target_count() as u64,
        Err(e) => {
            eprintln!("[xtask] fuzzing failed: {e:#}");
            counts.failed += 1;
        }
    }
    eprintln!("[xtask] kernel matrix and fuzzing done at {:.0} s", started.elapsed().as_secs_f64());
    let skipped: Vec<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for s in &skipped {
        let (test, why) = s.split_once('\t').unwrap_or((s, ""));
        eprintln!("[xtask] SKIPPED {test}: {why}");
    }
    // the closing line: passed counts tests that returned, skipped ones included
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed.saturating_sub(skipped.len() as u64),
        counts.failed,
        skipped.len()
    );
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    fuzz?;
    if matrix_failed {
        bail!("the kernel matrix failed (its lines above)");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !skipped.is_empty() && (ci || require_bpf) {
        bail!("{} test(s) skipped for want of BPF, root or a tool, and {} forbids skips", skipped.len(), if ci { "CI=true" } else { "--require-bpf" });
    }
    if !root_user {
        eprintln!("[xtask] not root: {} test(s) did not really run (see SKIPPED above)", skipped.len());
    }
    Ok(())
}

/// Builds leakprof without the `probes` feature (what `cargo install --path profiler
/// --no-default-features` builds: stable toolchain, no LLVM, no bpf-linker); its path.
fn build_census_only(root: &Path) -> Result<std::path::PathBuf> {
    let target_dir = root.join("target/census-only");
    util::cargo(
        root,
        &["build", "--quiet", "--locked", "-p", "profiler", "--no-default-features", "--target-dir", target_dir.to_str().unwrap()],
        &[],
    )?;
    Ok(target_dir.join("debug/leakprof"))
}

/// Finds a leak in a fixture by census with the census-only build, and checks that `--probes`
/// says how to get a full build.
fn census_only_smoke(bin: &Path, fixtures: &Path) -> Result<()> {
    let (_guard, pid, _out) = crate::demo::start_fixture(&fixtures.join("tokio-latest"), &["mixed"], Stdio::null())?;
    let out = Command::new(bin).args(["--pid", &pid.to_string(), "--duration", "10", "--format", "json"]).output()?;
    if !out.status.success() {
        bail!("census-only leakprof exited {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).context("census-only leakprof's JSON")?;
    let leak = r["sites"].as_array().into_iter().flatten().any(|s| s["verdict"] == "leak" && s["function"].as_str().is_some_and(|f| f.contains("never_answered")));
    if !leak {
        bail!("census-only leakprof did not find the fixture's leak: {}", r["sites"]);
    }
    let probes = Command::new(bin).args(["--pid", &pid.to_string(), "--probes", "--duration", "1"]).output()?;
    let err = String::from_utf8_lossy(&probes.stderr);
    if probes.status.code() != Some(1) || !err.contains("built without the `probes` feature") {
        bail!("census-only leakprof given --probes: exit {}, {err}", probes.status);
    }
    println!("census-only build: leak found by census, --probes refused with how to get a full build");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cargo_result_lines() {
        let mut c = Counts::default();
        add_result_line(&mut c, "test result: ok. 186 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 5.20s");
        add_result_line(&mut c, "test result: FAILED. 6 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1s");
        add_result_line(&mut c, "running 3 tests");
        assert_eq!(c, Counts { passed: 192, failed: 1, ignored: 2 });
    }
}
