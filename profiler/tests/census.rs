//! The tokio census (the default mode): tasks read from the runtimes' own lists from outside,
//! those spawned before attach included. Root only (reading another process's memory).
mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;

fn report(pid: u32, args: &[&str]) -> serde_json::Value {
    let pid = pid.to_string();
    let mut a = vec!["--pid", &pid, "--format", "json", "--quiet"];
    a.extend_from_slice(args);
    let out = run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "leakprof failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn sites_named<'a>(r: &'a serde_json::Value, needle: &str) -> Vec<&'a serde_json::Value> {
    r["sites"].as_array().unwrap().iter().filter(|s| s["function"].as_str().unwrap().contains(needle)).collect()
}

#[test]
fn backlog_is_counted_from_the_first_sample_and_growth_on_top_is_a_leak() {
    if !bpf_available("backlog_is_counted_from_the_first_sample_and_growth_on_top_is_a_leak") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["backlog-leak", "--rate", "2"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "10"]);
    assert_eq!(r["collection"]["method"], "census", "{}", r["collection"]);
    assert_eq!(r["target"]["attach_points"], 0);
    // nothing ran in the kernel: no task probe, and threads are watched through /proc (the futex
    // tracepoints would put every syscall on the host on the traced path; they come with --probes)
    assert!(r["kernel_counters"].is_null(), "{}", r["kernel_counters"]);
    assert!(r["collection"]["bpf_programs"].is_null(), "{}", r["collection"]);
    let c = &r["collection"]["census"];
    assert_eq!(c["runtimes"], 1, "{c} {}", r["warnings"]);
    assert!(int(&c["tasks_walked"]) >= 5000, "{c}");
    assert_eq!(c["tasks_expected"], c["tasks_walked"], "the walk agrees with the runtime's own count: {c}");
    let s = site(&r, "census::backlogged");
    let series: Vec<i64> = s["series"].as_array().unwrap().iter().map(int).collect();
    assert!(series[0] >= 5000, "the backlog is live from the first sample: {s}");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("tasks were already live at attach"), "{s}");
    assert_eq!(s["oldest_task"]["before_attach"], true, "{s}");
    assert!(int(&s["oldest_task"]["tasks_spawned_since"]) >= 5000, "{s}");
    assert!(int(&s["states"]["idle"]) >= 5000, "{s}");
}

#[test]
fn a_large_stable_backlog_is_ok() {
    if !bpf_available("a_large_stable_backlog_is_ok") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["healthy-backlog"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "8"]);
    let s = site(&r, "census::idle_connection");
    assert_eq!(int(&s["live"]), 5000, "{s}");
    assert_eq!(int(&s["series"][0]), 5000, "{s}");
    assert_eq!(s["verdict"], "ok", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("already live at attach"), "{s}");
}

#[test]
fn two_runtimes_in_one_process_are_both_read() {
    if !bpf_available("two_runtimes_in_one_process_are_both_read") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["two-runtimes"], &[], Some("runtimes ready"));
    let r = report(fx.pid, &["--duration", "10"]);
    assert_eq!(r["collection"]["census"]["runtimes"], 2, "{}", r["collection"]);
    // one future type, two schedulers: two vtables, two sites, both leaking
    let leaks = sites_named(&r, "leaks::never_answered");
    assert_eq!(leaks.len(), 2, "{}", r["sites"]);
    for s in leaks {
        assert_eq!(s["verdict"], "leak", "{s}");
    }
}

#[test]
fn heavy_churn_neither_crashes_nor_stalls_the_target() {
    if !bpf_available("heavy_churn_neither_crashes_nor_stalls_the_target") {
        return;
    }
    let (mut fx, _) = Fixture::start_with("tokio-latest", &["churn"], &[], None);
    // the fixture prints `spawned=<total>` every 100 ms: read them as they come
    let stdout = fx.child.stdout.take().unwrap();
    let progress = std::thread::spawn(move || {
        let mut seen: Vec<(Instant, u64)> = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("spawned=").and_then(|n| n.parse().ok()) {
                seen.push((Instant::now(), n));
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let r = report(fx.pid, &["--duration", "5", "--interval", "0.1"]);
    let t1 = Instant::now();
    assert!(fx.running(), "the target must survive the census");
    let c = &r["collection"]["census"];
    assert_eq!(c["runtimes"], 1, "{c} {}", r["warnings"]);
    assert!(c["complete"].is_boolean() && c["bytes_read"].as_u64().is_some(), "completeness is reported: {c}");
    assert!(int(&r["collection"]["samples"]) >= 40, "{}", r["collection"]);
    let _ = fx.child.kill();
    let seen = progress.join().unwrap();
    let during: Vec<&(Instant, u64)> = seen.iter().filter(|(t, _)| *t >= t0 && *t <= t1).collect();
    assert!(during.len() >= 20, "the target kept reporting progress while watched: {} lines", during.len());
    let gaps = during.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(gaps < Duration::from_secs(1), "the target stalled for {gaps:?}");
    let spawned = during.last().unwrap().1 - during[0].1;
    assert!(spawned > 10_000, "the target kept spawning: {spawned}");
}

#[test]
fn tokio_1_28_with_one_task_list_is_read_and_probes_still_work() {
    if !bpf_available("tokio_1_28_with_one_task_list_is_read_and_probes_still_work") {
        return;
    }
    for ct in [false, true] {
        let args: &[&str] = if ct { &["mixed", "--current-thread"] } else { &["mixed"] };
        let fx = Fixture::start("tokio-1.28", args);
        std::thread::sleep(Duration::from_secs(2));
        let r = report(fx.pid, &["--duration", "10"]);
        let c = &r["collection"]["census"];
        assert_eq!(c["runtimes"], 1, "{c} {}", r["warnings"]);
        assert!(c["tasks_expected"].is_null(), "tokio 1.28 keeps no count: {c}");
        let s = site(&r, "leaks::never_answered");
        assert_eq!(s["verdict"], "leak", "{s}");
        assert!(int(&s["series"][0]) >= 30, "alive before attach, counted: {s}");
    }
    let fx = Fixture::start("tokio-1.28", &["mixed"]);
    let r = report(fx.pid, &["--duration", "10", "--probes"]);
    assert_eq!(r["collection"]["method"], "census+uprobes");
    assert_eq!(r["target"]["birth_point"], "first_poll");
    assert_eq!(site(&r, "leaks::never_answered")["verdict"], "leak");
}

#[test]
fn probes_with_the_census_give_births_since_attach_and_the_backlog() {
    if !bpf_available("probes_with_the_census_give_births_since_attach_and_the_backlog") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["backlog-leak", "--rate", "5"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "10", "--probes"]);
    assert_eq!(r["collection"]["method"], "census+uprobes");
    assert!(int(&r["target"]["attach_points"]) > 0);
    let s = site(&r, "census::backlogged");
    assert!(int(&s["series"][0]) >= 5000, "live counts come from the census: {s}");
    let spawned = int(&s["spawned"]);
    assert!((30..=70).contains(&spawned), "births come from the probes (5/s for 10 s): {s}");
    assert_eq!(s["verdict"], "leak", "{s}");
}

/// The line of fixtures/tokio-src/leaks.rs marked `// AWAITS <scenario>`.
fn marked_line(scenario: &str) -> u32 {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tokio-src/leaks.rs")).unwrap();
    let mark = format!("// AWAITS {scenario}");
    let i = src.lines().position(|l| l.trim_end().ends_with(&mark)).unwrap_or_else(|| panic!("no {mark}"));
    i as u32 + 1
}

#[test]
fn where_stuck_names_the_await_each_leaked_task_waits_at() {
    if !bpf_available("where_stuck_names_the_await_each_leaked_task_waits_at") {
        return;
    }
    let cases = [
        ("mixed", "leaks::never_answered", "oneshot::Receiver"),
        ("recv-no-sender", "leaks::recv_no_sender", "recv"),
        ("send-no-receiver", "leaks::query_replica", "send"),
        ("mutex-held", "leaks::wait_for_mutex", "lock"),
        ("barrier", "leaks::wait_at_barrier", "wait"),
        ("timeout-abandons-worker", "leaks::blocked_worker", "recv"),
        ("range-unclosed", "leaks::drain_channel", "recv"),
    ];
    for (scenario, fun, awaiting) in cases {
        let fx = Fixture::start("tokio-latest-debug2", &[scenario]);
        std::thread::sleep(Duration::from_secs(2));
        let r = report(fx.pid, &["--duration", "2"]);
        assert_eq!(r["collection"]["census"]["where_stuck"], "read from the binary's DWARF types");
        let s = site(&r, fun);
        let top = &s["stuck_at"][0];
        assert!(top["file"].as_str().is_some_and(|f| f.ends_with("leaks.rs")), "{scenario}: {s}");
        assert_eq!(top["line"], marked_line(scenario), "{scenario}: {s}");
        assert!(top["function"].as_str().unwrap().ends_with(fun), "{scenario}: {s}");
        assert!(top["awaiting"].as_str().unwrap().contains(awaiting), "{scenario}: {s}");
        let (n, of) = (int(&top["tasks"]), int(&s["stuck_sampled"]));
        assert!(n >= 10 && n * 10 >= of * 9, "{scenario}: most sampled tasks wait there: {s}");
    }
    // without type info: said once, no guess
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    std::thread::sleep(Duration::from_secs(1));
    let r = report(fx.pid, &["--duration", "2"]);
    assert!(r["collection"]["census"]["where_stuck"].as_str().unwrap().starts_with("unavailable"), "{}", r["collection"]);
    assert!(r["sites"].as_array().unwrap().iter().all(|s| s["stuck_at"].is_null()), "{}", r["sites"]);
}
