//! Shared helpers of the integration tests: fixtures, the BPF gate, running leakprof.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

/// Where `cargo xtask fixtures` puts the fixture programs.
pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("LEAKPROF_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bin")
    });
    let p = dir.join(name);
    assert!(p.exists(), "fixture {} is missing: run `cargo xtask fixtures` first", p.display());
    p
}

/// True when this machine can run the BPF tests. Without BPF: under CI (CI=true) this FAILS the
/// test; elsewhere it prints why the test is skipped and returns false.
pub fn bpf_available(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root")
    } else if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        Some("the kernel has no uprobe PMU (CONFIG_UPROBES)")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: needs BPF but {why} (CI=true: failing instead of skipping)");
            }
            eprintln!("SKIPPED {test}: needs BPF, {why}");
            false
        }
    }
}

/// A running fixture, killed when dropped.
pub struct Fixture {
    pub child: Child,
    pub pid: u32,
}

impl Fixture {
    pub fn start(name: &str, args: &[&str]) -> Fixture {
        let bin = fixture(name);
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("ready pid=")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{} did not print `ready pid=`: {line:?}", bin.display()));
        Fixture { child, pid }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn leakprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leakprof"))
}

/// Runs leakprof to completion.
pub fn run(args: &[&str]) -> Output {
    leakprof().args(args).output().expect("cannot run leakprof")
}

/// Runs `leakprof --pid PID --duration S --format json` and parses the report.
pub fn json_report(pid: u32, seconds: u32) -> serde_json::Value {
    let out = run(&["--pid", &pid.to_string(), "--duration", &seconds.to_string(), "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "leakprof failed: {}\nstderr: {stderr}\nstdout: {stdout}", out.status);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// The site whose function contains `needle` (panics with the site list if none).
pub fn site<'a>(report: &'a serde_json::Value, needle: &str) -> &'a serde_json::Value {
    let sites = report["sites"].as_array().expect("sites array");
    sites
        .iter()
        .find(|s| s["function"].as_str().is_some_and(|f| f.contains(needle)))
        .unwrap_or_else(|| {
            let names: Vec<&str> = sites.iter().filter_map(|s| s["function"].as_str()).collect();
            panic!("no site named like {needle}; sites: {names:#?}")
        })
}

pub fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}
