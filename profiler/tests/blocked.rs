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

/// Threads blocked in other syscalls than futex: each a leak at its wait site, the call named.
#[test]
fn native_threads_blocked_in_read_accept_and_sleep_are_leaks_with_the_syscall_named() {
    if !bpf_available("native_threads_blocked_in_read_accept_and_sleep_are_leaks_with_the_syscall_named") {
        return;
    }
    for (scenario, site_fn, family) in [
        ("read-leak", "plain_fixture::read_reply", "read"),
        ("accept-leak", "plain_fixture::serve_one", "accept"),
        ("sleep-leak", "plain_fixture::poll_until_ready", "sleep"),
    ] {
        let fx = Fixture::start("plain", &[scenario, "5"]);
        let r = run_json(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "8", "--format", "json", "--quiet"]);
        let s = blocked_site(&r, site_fn);
        assert_eq!((s["kind"].as_str(), s["syscall"].as_str()), (Some("wait"), Some(family)), "{scenario}: {s}");
        assert_eq!(s["verdict"], "leak", "{scenario}: {s}");
        assert!(int(&s["threads"]) >= 30, "{scenario}: {s}");
        let text = run(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "2"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(&format!("blocked in {family}")), "{scenario}: the text names the call: {text}");
    }
}

/// `spawn_blocking` closures blocked on a std Mutex held forever, the lock written in the closure
/// (inlined into tokio's BlockingTask::poll): a leak at the closure's line, not tokio's idle
/// parking, on the default release build, fat LTO + panic=abort, tokio 1.28 and a stripped
/// binary with its debug file beside it; tokio's own parked threads stay runtime_idle.
#[test]
fn a_spawn_blocking_closure_on_a_held_lock_is_a_leak_at_its_line_on_every_build() {
    if !bpf_available("a_spawn_blocking_closure_on_a_held_lock_is_a_leak_at_its_line_on_every_build") {
        return;
    }
    let line = i64::from(source_line("fixtures/tokio-src/local.rs", "state.lock().unwrap()"));
    for build in ["tokio-latest", "tokio-latest-lto", "tokio-1.28", "tokio-latest-split"] {
        let (fx, _) = Fixture::start_with(build, &["blocking-closure", "--rate", "5"], &[], Some("backlog spawned"));
        let r = run_json(&["--pid", &fx.pid.to_string(), "--duration", "8", "--format", "json", "--quiet"]);
        let b = r["blocked"].as_array().unwrap();
        let s = b
            .iter()
            .find(|s| s["line"].as_i64() == Some(line) && s["file"].as_str().is_some_and(|f| f.ends_with("local.rs")))
            .unwrap_or_else(|| panic!("{build}: no wait site at local.rs:{line}: {b:#?}"));
        assert_eq!((s["kind"].as_str(), s["verdict"].as_str()), (Some("wait"), Some("leak")), "{build}: {s}");
        assert!(int(&s["threads"]) >= 30, "{build}: {s}");
        let idle: Vec<&serde_json::Value> = b.iter().filter(|s| s["kind"] == "runtime_idle").collect();
        assert!(!idle.is_empty(), "{build}: tokio's parked workers are shown as runtime_idle: {b:#?}");
        for s in idle {
            assert_ne!(s["verdict"], "leak", "{build}: {s}");
        }
    }
}

/// Go's own threads (idle Ms, the netpoller, sysmon) are its runtime's parking, never a wait site.
#[test]
fn go_runtime_threads_are_runtime_idle() {
    if !bpf_available("go_runtime_threads_are_runtime_idle") {
        return;
    }
    let fx = Fixture::start("go-latest", &["recv-no-sender"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = run_json(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "4", "--format", "json", "--quiet"]);
    let b = r["blocked"].as_array().unwrap();
    assert!(!b.is_empty(), "{r}");
    for s in b {
        assert_eq!(s["kind"], "runtime_idle", "{s}");
    }
}
