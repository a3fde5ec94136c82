//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser of
//! untrusted bytes, the targets of `fuzz/fuzz_targets/` (see docs/fuzzing.md).
//!
//! Builds the fuzz crate without a sanitizer (safe Rust; overflow checks on), replays every input
//! kept under `fuzz/regressions/<target>/`, then fuzzes each target for `secs` seconds on a
//! temporary corpus seeded from `fuzz/corpus/<target>/`, the regressions and, when they are
//! built, a few fixture binaries (never committed). Any crash, timeout or out-of-memory fails
//! the command, naming the input.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

/// A target, the largest input libFuzzer makes for it, and the fixture binaries added to its
/// run corpus when present (`LEAKPROF_FIXTURES` or fixtures/bin).
struct Target {
    name: &'static str,
    max_len: usize,
    fixtures: &'static [&'static str],
}

const TARGETS: &[Target] = &[
    Target { name: "elf", max_len: 64 << 10, fixtures: &["plain", "tokio-latest-stripped", "tokio-latest"] },
    Target { name: "names", max_len: 4 << 10, fixtures: &[] },
    Target { name: "go_pclntab", max_len: 16 << 10, fixtures: &[] },
    Target { name: "go_elf", max_len: 64 << 10, fixtures: &["go1.19-stripped", "go1.19-pie"] },
    Target { name: "go_memory", max_len: 16 << 10, fixtures: &[] },
    Target { name: "tokio_vtables", max_len: 16 << 10, fixtures: &[] },
    Target { name: "tokio_lists", max_len: 4 << 10, fixtures: &[] },
    Target { name: "awaits", max_len: 64 << 10, fixtures: &["tokio-latest", "tokio-1.28"] },
    Target { name: "code", max_len: 16 << 10, fixtures: &[] },
    Target { name: "unwind", max_len: 32 << 10, fixtures: &[] },
    Target { name: "config", max_len: 4 << 10, fixtures: &[] },
    Target { name: "series", max_len: 16 << 10, fixtures: &[] },
    Target { name: "core", max_len: 64 << 10, fixtures: &[] },
];

/// How many fuzz targets there are (each is one check of `cargo xtask test`).
pub fn target_count() -> usize {
    TARGETS.len()
}

/// What libFuzzer's final statistics said of one run.
#[derive(Debug, Default)]
struct Stats {
    execs: Option<u64>,
    execs_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
}

/// Builds the fuzz crate, then replays and fuzzes every target (or only `only`) for `secs` s each.
pub fn run(root: &Path, secs: u64, only: Option<&str>) -> Result<()> {
    chosen(only)?; // a wrong name said before the build
    build(root)?;
    run_built(root, secs, only)
}

/// Every target, or only `only`; an error naming the targets when there is no such one.
fn chosen(only: Option<&str>) -> Result<Vec<&'static Target>> {
    let targets: Vec<&Target> = TARGETS.iter().filter(|t| only.is_none_or(|o| o == t.name)).collect();
    if targets.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        bail!("no fuzz target {:?} (targets: {})", only.unwrap_or(""), names.join(", "));
    }
    Ok(targets)
}

/// Replays and fuzzes every target (or only `only`), the fuzz crate already built by [`build`]
/// (`cargo xtask test` builds it while the tests build): one line each; fails naming every
/// target that failed.
pub fn run_built(root: &Path, secs: u64, only: Option<&str>) -> Result<()> {
    let targets = chosen(only)?;
    let t0 = Instant::now();
    let fixtures = std::env::var_os("LEAKPROF_FIXTURES").map_or_else(|| root.join("fixtures/bin"), PathBuf::from);
    let tmp = std::env::temp_dir().join(format!("leakprof-fuzz-{}", std::process::id()));
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for t in targets {
        match one(root, &tmp, &fixtures, t, secs) {
            Ok(line) => {
                println!("{line}");
                lines.push(line);
            }
            Err(e) => {
                println!("fuzz {:<13} FAILED: {e:#}", t.name);
                failures.push(format!("{}: {e:#}", t.name));
            }
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    if !failures.is_empty() {
        bail!("{} fuzz target(s) failed:\n{}", failures.len(), failures.join("\n"));
    }
    eprintln!("[xtask] {} fuzz target(s), {secs} s each, all clean, {:.0} s in all", lines.len(), t0.elapsed().as_secs_f64());
    Ok(())
}

/// Builds the fuzz crate (quick when it is built already).
pub fn build(root: &Path) -> Result<()> {
    let version = cargo_fuzz(root).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("`cargo +nightly fuzz` is not installed: run `cargo xtask setup` (scripts/setup.sh) first");
    }
    let t0 = Instant::now();
    crate::util::run(cargo_fuzz(root).args(["build", "-s", "none"]))?;
    eprintln!("[xtask] fuzz crate built in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// `cargo +nightly fuzz` in the repository root, without what an enclosing `cargo xtask` put in
/// the environment (its toolchain, its cargo, a target directory: the fuzz crate has its own).
fn cargo_fuzz(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root).args(["+nightly", "fuzz"]);
    for k in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR", "RUSTFLAGS"] {
        c.env_remove(k);
    }
    c
}

/// The built fuzzer of `target` (cargo fuzz's layout).
fn binary(root: &Path, target: &str) -> PathBuf {
    root.join("fuzz/target/x86_64-unknown-linux-gnu/release").join(target)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Replays the target's regressions, then fuzzes it; its summary line.
fn one(root: &Path, tmp: &Path, fixtures: &Path, t: &Target, secs: u64) -> Result<String> {
    let limits = ["-rss_limit_mb=2048".to_string(), "-timeout=10".to_string()];
    // 1. every kept crash input, one run each
    let regressions = files_in(&root.join("fuzz/regressions").join(t.name));
    for input in &regressions {
        let out = Command::new(binary(root, t.name))
            .args(&limits)
            .arg(input)
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("cannot run the {} fuzzer", t.name))?;
        if !out.status.success() {
            let log = String::from_utf8_lossy(&out.stderr);
            eprintln!("{}", tail(&log, 40));
            bail!("the kept input {} fails again ({})", input.display(), out.status);
        }
    }
    // 2. a run corpus: the seeds, the regressions, fixture binaries when built
    let corpus = tmp.join(t.name);
    let _ = fs::remove_dir_all(&corpus);
    fs::create_dir_all(&corpus)?;
    let mut seeds = 0;
    for f in files_in(&root.join("fuzz/corpus").join(t.name)).iter().chain(&regressions) {
        fs::copy(f, corpus.join(f.file_name().unwrap()))?;
        seeds += 1;
    }
    let mut max_len = t.max_len;
    let mut added = 0;
    for name in t.fixtures {
        let f = fixtures.join(name);
        if let Ok(meta) = fs::metadata(&f) {
            fs::copy(&f, corpus.join(format!("fixture-{name}")))?;
            max_len = max_len.max(meta.len() as usize);
            added += 1;
        }
    }
    // 3. fuzz
    let log_path = tmp.join(format!("{}.log", t.name));
    let log = fs::File::create(&log_path)?;
    let st = cargo_fuzz(root)
        .args(["run", "-s", "none", t.name])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .args(&limits)
        .arg(format!("-max_len={max_len}"))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start cargo fuzz run {}", t.name))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if !st.success() {
        eprintln!("{}", tail(&text, 60));
        let input = text
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_string()))
            .unwrap_or_else(|| "(no input saved: see the log above)".into());
        bail!("crash, timeout or out-of-memory ({st}); input: {input}");
    }
    let s = stats(&text);
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    Ok(format!(
        "fuzz {:<13} {:>9} execs in {secs} s, {:>7} execs/s, cov {:>5}, ft {:>6} ({seeds} seeds{})",
        t.name,
        show(s.execs),
        show(s.execs_per_sec),
        show(s.cov),
        show(s.ft),
        if added > 0 { format!(" + {added} fixture binaries") } else { String::new() },
    ))
}

/// libFuzzer's final figures: `stat::` lines (-print_final_stats=1) and the last `cov:`/`ft:`.
fn stats(log: &str) -> Stats {
    let mut s = Stats::default();
    for line in log.lines() {
        let stat = |name: &str| line.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(v) = stat("stat::number_of_executed_units:") {
            s.execs = Some(v);
        }
        if let Some(v) = stat("stat::average_exec_per_sec:") {
            s.execs_per_sec = Some(v);
        }
        if line.starts_with('#') {
            let field = |k: &str| {
                let mut it = line.split_whitespace();
                it.position(|w| w == k)?;
                it.next()?.parse::<u64>().ok()
            };
            if let (Some(c), Some(f)) = (field("cov:"), field("ft:")) {
                (s.cov, s.ft) = (Some(c), Some(f));
            }
        }
    }
    s
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log = "#1000\tNEW    cov: 10 ft: 20 corp: 3/1Kb\n#2000\tDONE   cov: 446 ft: 1250 corp: 258/66Kb lim: 4201 exec/s: 72684 rss: 54Mb\nDone 654161 runs in 9 second(s)\nstat::number_of_executed_units: 654161\nstat::average_exec_per_sec:     72684\n";
        let s = stats(log);
        assert_eq!((s.execs, s.execs_per_sec, s.cov, s.ft), (Some(654161), Some(72684), Some(446), Some(1250)));
    }
}
