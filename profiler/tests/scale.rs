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
