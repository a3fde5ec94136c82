//! What a leak costs in memory: bytes per task measured against the fixture's own sizes, and the
//! time to the memory limit against the time the fixture takes to reach it in a cgroup.
mod common;

use std::time::{Duration, Instant};

use common::*;

fn report(pid: u32, secs: &str) -> serde_json::Value {
    let out = run(&["--pid", &pid.to_string(), "--duration", secs, "--format", "json", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `future_bytes hold_1k=N hold_64k=M`: the futures' sizes as the fixture measured them.
fn future_bytes(line: &str) -> (u64, u64) {
    let field = |k: &str| -> u64 {
        let at = line.find(k).unwrap_or_else(|| panic!("{k} in {line:?}")) + k.len();
        line[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    (field("hold_1k="), field("hold_64k="))
}

/// A task of a 1 KiB and of a 64 KiB future (the latter boxed by tokio 1.54, not by 1.38): what
/// each holds is within 10% of its future's size, give or take the task cell's own header and
/// trailer (at most 512 bytes).
#[test]
fn bytes_per_task_are_the_futures_sizes_on_tokio_1_38_and_newest() {
    if !bpf_available("bytes_per_task_are_the_futures_sizes_on_tokio_1_38_and_newest") {
        return;
    }
    for build in ["tokio-latest", "tokio-1.38"] {
        let (fx, line) = Fixture::start_with(build, &["big-futures", "--rate", "10"], &[], Some("future_bytes"));
        let (small, large) = future_bytes(&line.unwrap());
        let r = report(fx.pid, "4");
        for (name, truth) in [("memory::hold_1k", small), ("memory::hold_64k", large)] {
            let s = site(&r, name);
            let b = &s["bytes_per_task"];
            let median = int(&b["median"]) as u64;
            assert!(median.abs_diff(truth) <= truth / 10 + 512, "{build} {name}: {median} bytes per task, the future is {truth}: {b}");
            assert!(int(&b["measured"]) >= 20, "{build} {name}: {b}");
            assert_eq!(int(&s["bytes_estimate"]) as u64, int(&s["live"]) as u64 * median, "{build} {name}: {s}");
        }
        let counts = site(&r, "memory::hold_64k")["bytes_per_task"]["counts"].as_str().unwrap().to_string();
        let boxed = build == "tokio-latest";
        assert_eq!(counts.contains("boxed future"), boxed, "{build}: {counts}");
        assert!(int(&r["memory"]["rss_bytes"]) > 0, "{}", r["memory"]);
        // one reading per sample, on the report's time axis, growing with the leak
        let series: Vec<i64> = r["memory"]["rss_bytes_series"].as_array().unwrap().iter().map(int).collect();
        assert_eq!(series.len(), r["sample_times_s"].as_array().unwrap().len(), "{}", r["memory"]);
        assert!(series.last() > series.first(), "{series:?}");
    }
}

/// The cgroup memory hierarchy of this machine: (directory for a new cgroup, limit file, v2).
fn new_cgroup(name: &str) -> Option<(std::path::PathBuf, &'static str)> {
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return Some((v1.join(name), "memory.limit_in_bytes"));
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).unwrap_or_default();
    controllers.contains("memory").then(|| (v2.join(name), "memory.max"))
}

/// A leak in a cgroup with a memory limit: the time to the limit said at the report is within
/// 25% of the time the fixture then takes to be killed at the limit.
#[test]
fn time_to_the_cgroup_limit_comes_true() {
    if !bpf_available("time_to_the_cgroup_limit_comes_true") {
        return;
    }
    let Some((dir, limit_file)) = new_cgroup(&format!("leakprof-ttl-{}", std::process::id())) else {
        skip_or_fail("time_to_the_cgroup_limit_comes_true", "no cgroup memory controller to make a limited cgroup in");
        return;
    };
    let (mut fx, _) = Fixture::start_with("tokio-latest", &["big-futures", "--rate", "20"], &[], Some("future_bytes"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Remove(dir.clone());
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024
    };
    // about 1.3 MB/s: 60 MB above its size now is reached in about 45 s
    let limit = rss(fx.pid) + (60 << 20);
    std::fs::write(dir.join(limit_file), limit.to_string()).unwrap();
    std::fs::write(dir.join("cgroup.procs"), fx.pid.to_string()).unwrap();
    let r = report(fx.pid, "8");
    let said_at = Instant::now();
    assert_eq!(r["memory"]["limit_bytes"].as_u64(), Some(limit), "{}", r["memory"]);
    let s = site(&r, "memory::hold_64k");
    assert_eq!(s["verdict"], "leak", "{s}");
    let estimate = s["time_to_limit_s_estimate"].as_f64().unwrap_or_else(|| panic!("no time to limit: {s}"));
    // the kernel kills the fixture when it passes the limit
    while fx.running() {
        assert!(said_at.elapsed() < Duration::from_secs(300), "the fixture never reached its limit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let actual = said_at.elapsed().as_secs_f64();
    assert!((estimate - actual).abs() <= actual * 0.25, "said {estimate:.0} s to the limit, took {actual:.0} s");
}

/// Goroutines whose stacks grew by deep recursion: the stack bytes per goroutine are within 10%
/// of what the Go runtime itself counts (its `MemStats.StackInuse` growth per goroutine, printed
/// by the fixture), on Go 1.19 and the newest Go.
#[test]
fn goroutine_stack_bytes_match_the_runtime_s_own_count() {
    if !bpf_available("goroutine_stack_bytes_match_the_runtime_s_own_count") {
        return;
    }
    for build in ["go1.19", "go-latest"] {
        let (fx, line) = Fixture::start_with(build, &["deep-stacks", "5"], &[], Some("stack_bytes_per_goroutine="));
        let truth: u64 = line.unwrap().trim().trim_start_matches("stack_bytes_per_goroutine=").parse().unwrap();
        let r = report(fx.pid, "3");
        let s = site(&r, "main.deepLeak");
        let b = &s["bytes_per_task"];
        assert_eq!(b["counts"], "goroutine stack", "{build}: {b}");
        assert_eq!(int(&b["measured"]), int(&s["live"]), "{build}: every goroutine is measured: {s}");
        let median = int(&b["median"]) as u64;
        assert!(median.abs_diff(truth) <= truth / 10, "{build}: {median} bytes per goroutine, the runtime counts {truth}: {b}");
    }
}
