//! Root-only: attach to real tokio fixtures with `--probes` (exact births and finishes, the
//! census alongside) and check what leakprof counts. The census alone: tests/census.rs.
mod common;

use common::*;

/// `leakprof --pid PID --probes --duration S --format json`.
fn probed_report(pid: u32, seconds: u32) -> serde_json::Value {
    let out = run(&["--pid", &pid.to_string(), "--probes", "--duration", &seconds.to_string(), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A leaking site grows at about its spawn rate; healthy sites don't; the target survives.
fn leak_grows_healthy_stays(fixture_name: &str) {
    let mut fx = Fixture::start(fixture_name, &["mixed", "--rate", "20"]);
    let r = probed_report(fx.pid, 5);
    let leak = site(&r, "never_answered");
    let live = int(&leak["live"]);
    // live from the census: every task since the program started (5 s and attach time at 20/s)
    assert!((80..=200).contains(&live), "leak live={live} after 5 s at 20/s: {leak}");
    let spawned = int(&leak["spawned"]);
    assert!((60..=130).contains(&spawned), "births since attach, by the probes: {leak}");
    assert_eq!(int(&leak["finished"]), 0, "{leak}");
    let series: Vec<i64> = leak["series"].as_array().unwrap().iter().map(int).collect();
    assert!(series.len() >= 4, "{series:?}");
    assert!(series.windows(2).all(|w| w[1] >= w[0]), "leak series not monotonic: {series:?}");
    assert!(series.last().unwrap() - series[0] >= 40, "leak series did not grow: {series:?}");

    let short = site(&r, "healthy::short_request::");
    assert!(int(&short["finished"]) >= 50, "short_request should churn: {short}");
    assert!(int(&short["live"]) <= 10, "short_request must not accumulate: {short}");
    for s in r["sites"].as_array().unwrap() {
        assert!(int(&s["live"]) >= 0, "negative live count: {s}");
        if !s["function"].as_str().unwrap().contains("never_answered") {
            assert!(int(&s["live"]) <= 10, "healthy site grew: {s}");
        }
    }
    assert!(fx.running(), "the target died while or after being profiled");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(fx.running(), "the target died after detach");
}

#[test]
fn newest_tokio_leak_is_counted_and_healthy_sites_are_not() {
    if !bpf_available("newest_tokio_leak_is_counted_and_healthy_sites_are_not") {
        return;
    }
    leak_grows_healthy_stays("tokio-latest");
}

#[test]
fn tokio_1_38_leak_is_counted_and_healthy_sites_are_not() {
    if !bpf_available("tokio_1_38_leak_is_counted_and_healthy_sites_are_not") {
        return;
    }
    leak_grows_healthy_stays("tokio-1.38");
}

#[test]
fn v0_mangled_binary_names_its_sites() {
    if !bpf_available("v0_mangled_binary_names_its_sites") {
        return;
    }
    let fx = Fixture::start("tokio-latest-v0", &["mixed"]);
    let r = json_report(fx.pid, 3);
    let leak = site(&r, "leaks::never_answered");
    assert!(int(&leak["live"]) > 20, "{leak}");
}

#[test]
fn debug_info_gives_file_and_line() {
    if !bpf_available("debug_info_gives_file_and_line") {
        return;
    }
    let fx = Fixture::start("tokio-latest-debuginfo", &["mixed"]);
    let r = json_report(fx.pid, 3);
    assert_eq!(r["target"]["has_debug_info"], true);
    let leak = site(&r, "never_answered");
    let file = leak["file"].as_str().unwrap_or_else(|| panic!("no file: {leak}"));
    assert!(file.ends_with("leaks.rs"), "{leak}");
    assert!(int(&leak["line"]) > 0, "{leak}");
}

#[test]
fn json_document_has_the_versioned_schema() {
    if !bpf_available("json_document_has_the_versioned_schema") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let r = probed_report(fx.pid, 2);
    assert_eq!(r["schema"], "leakprof.report");
    assert_eq!(r["schema_version"], 6);
    assert_eq!(r["collection"]["method"], "census+uprobes");
    assert_eq!(r["target"]["pid"], fx.pid);
    assert_eq!(r["target"]["runtime"], "tokio");
    assert!(r["target"]["runtime_version"].as_str().unwrap().starts_with("1."), "{}", r["target"]);
    assert!(r["target"]["exe"].as_str().unwrap().ends_with("tokio-latest"));
    assert_eq!(r["collection"]["ended"], "duration");
    let n = r["sample_times_s"].as_array().unwrap().len();
    assert!(n >= 2);
    for s in r["sites"].as_array().unwrap() {
        for k in ["function", "live", "spawned", "finished", "finished_preexisting", "series", "key"] {
            assert!(!s[k].is_null(), "site lacks {k}: {s}");
        }
        assert_eq!(s["series"].as_array().unwrap().len(), n, "series not aligned: {s}");
    }
    for k in profiler_common::stat::NAMES {
        assert!(r["kernel_counters"][k].is_u64(), "kernel counter {k} missing: {}", r["kernel_counters"]);
    }
    assert!(r["kernel_counters"]["births"].as_u64().unwrap() > 0);
}

/// leakprof's own kernel-side cost, from the kernel's BPF statistics: each program that ran has
/// its runs (at least the outcomes it counted) and run time; the statistics are off again after.
#[test]
fn the_report_has_each_bpf_programs_runs_and_run_time() {
    if !bpf_available("the_report_has_each_bpf_programs_runs_and_run_time") {
        return;
    }
    let before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let r = probed_report(fx.pid, 3);
    let programs = r["collection"]["bpf_programs"].as_array().unwrap_or_else(|| panic!("no bpf_programs: {}", r["collection"]));
    let get = |name: &str| programs.iter().find(|p| p["program"] == name).unwrap_or_else(|| panic!("{name} missing: {programs:?}"));
    let k = &r["kernel_counters"];
    for (prog, outcomes) in [
        ("task_birth_bind_inner", k["births"].as_u64().unwrap()),
        ("task_finish_slot", k["finishes"].as_u64().unwrap() + k["finish_preexisting"].as_u64().unwrap()),
        ("futex_enter", k["futex_wait_begin"].as_u64().unwrap()),
    ] {
        let p = get(prog);
        let (runs, ns) = (p["runs"].as_u64().unwrap(), p["run_ns"].as_u64().unwrap());
        assert!(outcomes > 0 && runs >= outcomes, "{prog}: {runs} runs for {outcomes} outcomes");
        assert!(ns > 0 && ns / runs < 1_000_000, "{prog}: {ns} ns over {runs} runs");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap(), before, "statistics left switched on");
}

#[test]
fn tasks_alive_before_attach_are_live_but_not_births() {
    if !bpf_available("tasks_alive_before_attach_are_live_but_not_births") {
        return;
    }
    // The leak and the pool run for 3 s before leakprof attaches.
    let fx = Fixture::start("tokio-latest", &["mixed", "--rate", "20"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = probed_report(fx.pid, 3);
    let leak = site(&r, "never_answered");
    // the census counts the ~60 from before attach; the probes saw only the births since (~60)
    assert!(int(&leak["series"][0]) >= 50, "pre-attach tasks are live from the first sample: {leak}");
    assert!(int(&leak["spawned"]) <= 90, "pre-attach tasks were counted as births: {leak}");
    let preexisting: u64 = r["sites"].as_array().unwrap().iter().map(|s| s["finished_preexisting"].as_u64().unwrap()).sum();
    let counter = r["kernel_counters"]["finish_preexisting"].as_u64().unwrap();
    assert_eq!(preexisting, counter, "per-site and kernel counts of pre-existing finishes disagree");
    for s in r["sites"].as_array().unwrap() {
        assert!(int(&s["live"]) >= 0, "{s}");
        assert!(s["series"].as_array().unwrap().iter().all(|v| int(v) >= 0), "{s}");
    }
}

/// mini-redis (a real server) spawns its connection tasks through a copy of tokio's spawn path
/// with `bind_inner` inlined, so the birth probe never fires for them: leakprof must say so and
/// count that site's births from the census instead of reporting none.
#[test]
fn births_the_probes_miss_are_said_and_counted_by_the_census() {
    if !bpf_available("births_the_probes_miss_are_said_and_counted_by_the_census") {
        return;
    }
    // port 0: the server binds a free port itself and names it (no race for a port picked here)
    let (fx, port) = Fixture::start_with("mini-redis", &["0"], &[], Some("listening port="));
    let port: u16 = port.unwrap().parse().unwrap();
    let lp = leakprof()
        .args(["--pid", &fx.pid.to_string(), "--probes", "--duration", "6", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // 30 clients that connect and stay: 30 connection tasks born after attach, all live
    let clients: Vec<_> = (0..30).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let out = lp.wait_with_output().unwrap();
    drop(clients);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = r["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"].as_str().unwrap_or("").starts_with("mini_redis::server::Listener::run"))
        .unwrap_or_else(|| panic!("no connection-task site: {}", r["sites"]));
    assert_eq!(site["live"], 30, "{site}");
    assert!(site["spawned"].as_u64().unwrap() >= 30, "the census's births, not the probes' none: {site}");
    let warned = r["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("--probes missed task births at 1 site"));
    assert!(warned, "no warning about the missed births: {}", r["warnings"]);
}

/// tokio births at bind_inner are kept in slots by task id (`--max-tasks` of them). With 256
/// slots and about 1000 tasks alive, nearly every task's slot is taken by a later birth before it
/// finishes: its finish must still count as a finish of a task born since attach (its id is at
/// or above the first id after attach), never as one alive before attach, so the probes' spawned
/// minus finished stays the census's live count.
#[test]
fn finishes_after_their_slot_was_reused_still_count_as_born_since_attach() {
    if !bpf_available("finishes_after_their_slot_was_reused_still_count_as_born_since_attach") {
        return;
    }
    // nothing is spawned for 3 s: leakprof attaches first, so every task is born since attach
    let fx = Fixture::start("tokio-latest", &["healthy-high-stable", "--start-delay", "3"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--probes", "--max-tasks", "256", "--duration", "6", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = &r["kernel_counters"];
    let n = |name: &str| k[name].as_u64().unwrap_or_else(|| panic!("no {name}: {k}"));
    assert!(n("slot_reused") > 500, "slots were not reused: {k}");
    assert!(n("finish_untimed") > 500, "no finish after its slot was reused: {k}");
    assert_eq!(n("finish_preexisting"), 0, "tasks born since attach counted as alive before it: {k}");
    let churn = site(&r, "churn_task");
    let (spawned, finished, live) = (int(&churn["spawned"]), int(&churn["finished"]), int(&churn["live"]));
    assert!(finished > 1000, "{churn}");
    assert!((spawned - finished - live).abs() <= 50, "probes' spawned - finished = {} vs the census's live {live}: {churn}", spawned - finished);
}

/// With the census alongside, the probes time each site's first births on a CPU and then one in
/// eight (the clock is a third of a birth's cost): the lifetimes are of the timed tasks, and the
/// report says how many those are.
#[test]
fn lifetimes_are_measured_on_a_sample_of_births_and_say_how_many() {
    if !bpf_available("lifetimes_are_measured_on_a_sample_of_births_and_say_how_many") {
        return;
    }
    // ~1000 spawns/s, each task living 0.5-1.5 s
    let fx = Fixture::start("tokio-latest", &["healthy-high-stable"]);
    let r = probed_report(fx.pid, 5);
    let churn = site(&r, "churn_task");
    let finished = churn["finished"].as_u64().unwrap();
    let timed = churn["finished_timed"].as_u64().unwrap_or_else(|| panic!("no finished_timed: {churn}"));
    assert!(finished > 2000, "{churn}");
    assert!(timed > 100 && timed < finished / 3, "{timed} of {finished} finishes timed: {churn}");
    let p99 = churn["finished_lifetime_p99_s"].as_f64().unwrap();
    let max = churn["max_finished_lifetime_s"].as_f64().unwrap();
    assert!((0.5..=4.2).contains(&p99), "p99 lifetime {p99} s for tasks living 0.5-1.5 s: {churn}");
    assert!((0.4..=1.7).contains(&max), "longest lifetime {max} s for tasks living 0.5-1.5 s: {churn}");
    assert_eq!(churn["verdict"], "ok", "{churn}");
}
