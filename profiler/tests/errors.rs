//! Bad input: one clear sentence, a non-zero exit, nothing attached.
mod common;

use common::*;

fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let out = run(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn no_such_pid() {
    if !bpf_available("no_such_pid") {
        return;
    }
    let (code, err) = stderr_of(&["--pid", "999999999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no process with pid 999999999"), "{err}");
}

#[test]
fn not_root() {
    // Runs leakprof as `nobody`; needs root to switch users, else nothing to check. Under CI
    // (CI=true) that FAILS the test instead of skipping it.
    if unsafe { libc::geteuid() } != 0 {
        let why = "the test switches to user nobody, which needs root";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("not_root: {why} (CI=true: failing instead of skipping)");
        }
        eprintln!("SKIPPED not_root: {why}");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_leakprof"))
        .args(["--pid", "1"])
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}

#[test]
fn not_a_tokio_program() {
    if !bpf_available("not_a_tokio_program") {
        return;
    }
    let fx = Fixture::start("plain", &[]);
    let (code, err) = stderr_of(&["--pid", &fx.pid.to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not look like a tokio program"), "{err}");
}

#[test]
fn stripped_binary_is_read_by_the_census_but_cannot_be_probed() {
    if !bpf_available("stripped_binary_is_read_by_the_census_but_cannot_be_probed") {
        return;
    }
    let fx = Fixture::start("tokio-latest-stripped", &["mixed"]);
    // probes need the symbols of their attach points
    let (code, err) = stderr_of(&["--pid", &fx.pid.to_string(), "--probes", "--duration", "2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("stripped"), "{err}");
    // the census finds the task vtables by their shape
    let r = json_report(fx.pid, 8);
    assert_eq!(r["collection"]["census"]["runtimes"], 1, "{}", r["collection"]);
    let leaks: Vec<&serde_json::Value> =
        r["sites"].as_array().unwrap().iter().filter(|s| s["verdict"] == "leak").collect();
    assert_eq!(leaks.len(), 1, "{}", r["sites"]);
    assert!(leaks[0]["function"].as_str().unwrap().starts_with("<unknown future"), "{}", leaks[0]);
}

#[test]
fn bad_flags_are_usage_errors() {
    let (code, err) = stderr_of(&["--pid", "1", "--interval", "-3"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _) = stderr_of(&[]);
    assert_eq!(code, Some(2));
}
