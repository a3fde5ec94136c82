//! Root-only: Ctrl-C, the target exiting, and the text report.
mod common;

use std::{thread::sleep, time::Duration};

use common::*;

#[test]
fn ctrl_c_detaches_and_still_prints_the_report() {
    if !bpf_available("ctrl_c_detaches_and_still_prints_the_report") {
        return;
    }
    let mut fx = Fixture::start("tokio-latest", &["mixed"]);
    let child = leakprof()
        .args(["--pid", &fx.pid.to_string(), "--format", "json", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(2500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["collection"]["ended"], "interrupted");
    assert!(int(&site(&r, "never_answered")["live"]) > 0);
    assert!(fx.running(), "target died");
}

#[test]
fn target_exiting_mid_run_ends_with_report_and_non_zero_exit() {
    if !bpf_available("target_exiting_mid_run_ends_with_report_and_non_zero_exit") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed", "--seconds", "2"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "20", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exited during the run"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["collection"]["ended"], "target_exited");
    assert!(int(&site(&r, "never_answered")["spawned"]) > 0);
}

#[test]
fn text_report_shows_intervals_and_a_final_table() {
    if !bpf_available("text_report_shows_intervals_and_a_final_table") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "3"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("live").count() >= 3, "no interval lines: {text}");
    assert!(text.contains("never_answered"), "{text}");
    assert!(text.contains("kernel: "), "{text}");
}
