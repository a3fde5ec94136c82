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
fn go_target_killed_mid_run_keeps_its_report() {
    if !bpf_available("go_target_killed_mid_run_keeps_its_report") {
        return;
    }
    // the census reads the target's memory every interval; a kill at any moment must end the
    // run with the report so far and exit 3, as for every runtime
    for (i, delay_ms) in [2300u64, 2800, 3500].into_iter().enumerate() {
        let mut fx = Fixture::start("go-latest", &["nil-send", "50"]);
        let child = leakprof()
            .args(["--pid", &fx.pid.to_string(), "--duration", "20", "--interval", "0.1", "--format", "json", "--quiet"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        sleep(Duration::from_millis(delay_ms));
        fx.child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "run {i}: {stderr}");
        assert!(stderr.contains("exited during the run"), "run {i}: {stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("run {i}: {e}: {stderr}"));
        assert_eq!(r["collection"]["ended"], "target_exited");
        assert!(int(&site(&r, "main.nilSend")["live"]) > 10, "run {i}: {}", r["sites"]);
    }
}

/// The per-interval blocks of the text view: (seconds since attach, live count of the site whose
/// function contains `site`) for each `[    1.0s] verdict ...` header line, in output order.
/// Only the per-interval view prints those headers; the final table's header has no timestamp.
fn interval_blocks(text: &str, site: &str) -> Vec<(f64, Option<i64>)> {
    let mut blocks: Vec<(f64, Option<i64>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            if let Some((t, header)) = rest.split_once("s] ") {
                if let (Ok(t), true) = (t.trim().parse::<f64>(), header.starts_with("verdict")) {
                    blocks.push((t, None));
                    continue;
                }
            }
        }
        // rows of the current block are indented under its header: "           ok   20  ...  site"
        if let (Some(last), true) = (blocks.last_mut(), line.starts_with("           ")) {
            if last.1.is_none() && line.contains(site) {
                last.1 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok());
            }
        }
    }
    blocks
}

#[test]
fn text_report_shows_intervals_and_a_final_table() {
    if !bpf_available("text_report_shows_intervals_and_a_final_table") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // the per-interval view: one timestamped block per sample, each with its own live count
    let blocks = interval_blocks(&text, "never_answered");
    assert!(blocks.len() >= 2, "fewer than 2 interval updates: {blocks:?}\n{text}");
    assert!(
        blocks.windows(2).all(|w| w[1].0 > w[0].0),
        "interval timestamps do not increase: {blocks:?}\n{text}"
    );
    let lives: Vec<i64> = blocks
        .iter()
        .map(|b| b.1.unwrap_or_else(|| panic!("interval block at {}s has no never_answered row: {text}", b.0)))
        .collect();
    assert!(
        lives.last() > lives.first(),
        "the leaking site's live count did not grow from update to update: {lives:?}\n{text}"
    );
    // then the final table, after the last update
    let final_at = text.find("leakprof ").unwrap_or_else(|| panic!("no final report: {text}"));
    let last_update = text.rfind("s] verdict").unwrap();
    assert!(last_update < final_at, "an interval update came after the final report: {text}");
    let final_table = &text[final_at..];
    assert!(final_table.contains("never_answered"), "{text}");
    // a census: nothing ran in the kernel, so no kernel counters are printed
    assert!(!final_table.contains("kernel: "), "{text}");
}
