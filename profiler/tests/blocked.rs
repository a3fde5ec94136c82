//! Root-only: threads blocked in futex waits, grouped by wait site.
mod common;

use common::*;

fn blocked_site<'a>(r: &'a serde_json::Value, needle: &str) -> &'a serde_json::Value {
    let b = r["blocked"].as_array().expect("blocked array");
    b.iter()
        .find(|s| s["function"].as_str().is_some_and(|f| f.contains(needle)))
        .unwrap_or_else(|| {
            let names: Vec<&str> = b.iter().filter_map(|s| s["function"].as_str()).collect();
            panic!("no wait site like {needle}: {names:#?}")
        })
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn spawn_blocking_workers_stuck_on_a_held_mutex_are_a_leak_at_the_lock_site() {
    if !bpf_available("spawn_blocking_workers_stuck_on_a_held_mutex_are_a_leak_at_the_lock_site") {
        return;
    }
    let bin = fixture("tokio-latest");
    let r = run_json(&[
        "run", "--duration", "10", "--format", "json", "--quiet", "--", bin.to_str().unwrap(),
        "blocking-mutex", "--rate", "4",
    ]);
    let s = blocked_site(&r, "stacks::lock_shared_state");
    assert_eq!(s["kind"], "wait");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert!(int(&s["threads"]) >= 25, "{s}");
    // tokio's own parked workers are shown apart and never flagged
    for b in r["blocked"].as_array().unwrap() {
        if b["function"].as_str().unwrap().starts_with("tokio::runtime::") {
            assert_eq!(b["kind"], "runtime_idle", "{b}");
            assert_eq!(b["verdict"], "ok", "{b}");
        }
    }
}

#[test]
fn native_thread_pool_idling_on_a_condvar_is_never_flagged() {
    if !bpf_available("native_thread_pool_idling_on_a_condvar_is_never_flagged") {
        return;
    }
    let bin = fixture("plain");
    // --probes: the futex tracepoints time each wait as well
    let r = run_json(&["run", "--threads", "--probes", "--duration", "8", "--format", "json", "--quiet", "--", bin.to_str().unwrap(), "condvar-pool"]);
    assert_eq!(r["target"]["runtime"], "native");
    assert_eq!(r["collection"]["method"], "tracepoints");
    let k = &r["kernel_counters"];
    assert!(k["futex_wait_begin"].as_u64().unwrap() > 0 && k["futex_wait_end"].as_u64().unwrap() > 0, "{k}");
    let s = blocked_site(&r, "plain_fixture::pool_worker");
    assert_eq!(s["verdict"], "ok", "{s}");
    assert!(r["blocked"].as_array().unwrap().iter().all(|b| b["verdict"] != "leak"), "{}", r["blocked"]);
}

#[test]
fn native_threads_piling_up_on_a_lock_are_a_leak_and_older_waits_are_found() {
    if !bpf_available("native_threads_piling_up_on_a_lock_are_a_leak_and_older_waits_are_found") {
        return;
    }
    // started 2 s before attach: the waits already in progress are found through /proc
    let fx = Fixture::start("plain", &["mutex-leak", "4"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let r = run_json(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "8", "--format", "json", "--quiet"]);
    // without --probes: the /proc census alone, nothing in the kernel
    assert_eq!(r["collection"]["method"], "census");
    assert!(r["kernel_counters"].is_null(), "{}", r["kernel_counters"]);
    let s = blocked_site(&r, "plain_fixture::wait_for_config");
    assert_eq!(s["verdict"], "leak", "{s}");
    // whether a blocked thread is idle is not measured: the reason must not claim it
    assert!(!s["reason"].as_str().unwrap().contains("idle"), "{s}");
    assert_eq!(s["preexisting"], true, "{s}");
    let series: Vec<i64> = s["series"].as_array().unwrap().iter().map(int).collect();
    assert!(series[0] >= 5, "waits from before attach are counted from the first sample: {series:?}");
    // the failing gate covers wait sites too
    let gate = run(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "8", "--quiet", "--fail-on-leak"]);
    assert_eq!(gate.status.code(), Some(4));
}
