//! leakprof at scale: a sample that outgrows the interval stretches it (leakprof stays at most a
//! fifth busy per target) instead of falling behind.
mod common;

use common::{int, run, Fixture};

/// 105,000 live tasks read every 10 ms: each sample takes tens of ms, so the interval is
/// stretched, the time spent sampling stays near a fifth of the run, and the report says so.
#[test]
fn a_sample_longer_than_a_fifth_of_the_interval_stretches_it() {
    // 70,000 + 35,000 parked tasks, then still
    let (fx, _) = Fixture::start_with("tokio-latest", &["dump-target", "--backlog", "70000"], &[], Some("alive_tasks="));
    let out = run(&["--pid", &fx.pid.to_string(), "--interval", "10ms", "--duration", "4", "--no-threads", "--quiet", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &r["collection"];
    assert!(int(&c["census"]["tasks_walked"]) >= 100_000, "{c}");
    let (samples, mean_ms, duration_s) = (int(&c["samples"]) as f64, c["sample_ms_mean"].as_f64().unwrap(), c["duration_s"].as_f64().unwrap());
    assert!(mean_ms > 10.0, "a census of 100k tasks takes longer than the 10 ms interval: {c}");
    assert!(int(&c["intervals_stretched"]) >= 1 && c["longest_interval_s"].as_f64().unwrap() > 0.04, "{c}");
    // busy at most a fifth of the time, give or take the first sample and the last interval
    let busy = samples * mean_ms / 1e3 / duration_s;
    assert!(busy < 0.3, "leakprof sampled {samples} times at {mean_ms:.0} ms in {duration_s:.1} s: {busy:.2} busy");
    let warned = r["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("stretched"));
    assert!(warned, "{:#}", r["warnings"]);
}

/// A 16 GiB heap reserved but untouched, and a runtime built 2 s after attach: the attach scan
/// reads the touched heap alone (never the untouched pages, which would map zero pages into the
/// target's page tables), the background scan finds the late runtime, and the report says what
/// was skipped and when the runtime was found.
#[test]
fn a_big_untouched_heap_is_skipped_and_a_late_runtime_found() {
    let (fx, _) = Fixture::start_with("tokio-latest", &["late-runtime", "--sparse-gib", "16", "--start-delay", "2", "--backlog", "500"], &[], Some("sparse_heap"));
    let page_tables = || {
        let s = std::fs::read_to_string(format!("/proc/{}/status", fx.pid)).unwrap();
        s.lines().find_map(|l| l.strip_prefix("VmPTE:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap()
    };
    let pte_before = page_tables();
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "8", "--no-threads", "--quiet", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &r["collection"]["census"];
    // the touched heap is ~70 MB; the scan used to read up to 4 GiB of zeros at attach
    assert!(int(&c["heap_scanned_at_attach_bytes"]) < 512 << 20, "{c}");
    assert!(int(&c["heap_untouched_bytes"]) >= 15 << 30, "{c}");
    let found = c["runtime_found_after_s"].as_f64().unwrap_or_else(|| panic!("the late runtime was never found: {c}"));
    assert!(found > 1.0, "found before it was built? {c}");
    assert!(int(&common::site(&r, "backlogged")["live"]) >= 500, "{:#}", r["sites"]);
    // reading 4 GiB of untouched pages grew the target's page tables by ~8 MB
    let grown = page_tables().saturating_sub(pte_before);
    assert!(grown < 2048, "the target's page tables grew by {grown} kB under the scan");
}
