//! Root-only scenario suite: every classic leak pattern is flagged `leak` at its own site, and no
//! healthy site is flagged, by the census (the default) and by the probes (`--probes`). Each
//! scenario is launched under `leakprof run` from its first instruction.
mod common;

use common::*;

/// Runs `leakprof run [--probes] --duration S --format json -- tokio-fixture ARGS` and returns the
/// report; a leading "--probes" in `args` goes to leakprof.
fn run_scenario(fixture_name: &str, args: &[&str], seconds: u32) -> serde_json::Value {
    let bin = fixture(fixture_name);
    let secs = seconds.to_string();
    let (probes, args) = match args.split_first() {
        Some((&"--probes", rest)) => (true, rest),
        _ => (false, args),
    };
    let mut cmd = vec!["run", "--duration", &secs, "--format", "json", "--quiet"];
    if probes {
        cmd.push("--probes");
    }
    cmd.push("--");
    let bin_s = bin.to_str().unwrap();
    cmd.push(bin_s);
    cmd.extend_from_slice(args);
    let out = run(&cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "leakprof run failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn summary(r: &serde_json::Value) -> String {
    r["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {} live={} ({})", s["verdict"], s["function"], s["live"], s["reason"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `leak_site`: the one site that must be `leak`; every other site must not be `leak`, and when
/// `strict_ok` every other site must be `ok` (not even `suspect`).
fn check(fixture_name: &str, scenario: &str, leak_site: Option<&str>, seconds: u32, strict_ok: bool) {
    check_with(fixture_name, &[scenario], leak_site, seconds, strict_ok);
}

/// `check` with the fixture's arguments; a leading "--probes" is passed to leakprof instead.
fn check_with(fixture_name: &str, args: &[&str], leak_site: Option<&str>, seconds: u32, strict_ok: bool) {
    let scenario = args.iter().find(|a| !a.starts_with("--")).copied().unwrap_or("mixed");
    let r = run_scenario(fixture_name, args, seconds);
    let probes = args.first() == Some(&"--probes");
    let method = r["collection"]["method"].as_str().unwrap();
    assert_eq!(method, if probes { "census+uprobes" } else { "census" }, "{scenario}");
    let all = summary(&r);
    for s in r["sites"].as_array().unwrap() {
        let f = s["function"].as_str().unwrap();
        let is_leak_site = leak_site.is_some_and(|l| f.contains(l));
        let v = s["verdict"].as_str().unwrap();
        if is_leak_site {
            assert_eq!(v, "leak", "{scenario}: {f} should be a leak\n{all}");
            assert!(s["confidence"].as_f64().unwrap() >= 0.8, "{all}");
            assert!(s["growth_per_s"].as_f64().unwrap() > 5.0, "{all}");
        } else if strict_ok {
            assert_eq!(v, "ok", "{scenario}: {f} is healthy\n{all}");
        } else {
            assert_ne!(v, "leak", "{scenario}: {f} is healthy\n{all}");
        }
    }
    if let Some(l) = leak_site {
        site(&r, l); // present at all
    }
}

macro_rules! leak_scenario {
    ($name:ident, $probed:ident, $scenario:literal, $site:literal) => {
        #[test]
        fn $name() {
            if !bpf_available(stringify!($name)) {
                return;
            }
            check("tokio-latest", $scenario, Some($site), 10, false);
        }

        #[test]
        fn $probed() {
            if !bpf_available(stringify!($probed)) {
                return;
            }
            check_with("tokio-latest", &["--probes", $scenario], Some($site), 10, false);
        }
    };
}

macro_rules! healthy_scenario {
    ($name:ident, $scenario:literal, $seconds:literal) => {
        #[test]
        fn $name() {
            if !bpf_available(stringify!($name)) {
                return;
            }
            check("tokio-latest", $scenario, None, $seconds, true);
        }
    };
}

leak_scenario!(receive_nobody_sends_to, receive_nobody_sends_to_probes, "recv-no-sender", "leaks::recv_no_sender");
leak_scenario!(send_nobody_receives_query_all, send_nobody_receives_query_all_probes, "send-no-receiver", "leaks::query_replica");
leak_scenario!(lock_never_unlocked, lock_never_unlocked_probes, "mutex-held", "leaks::wait_for_mutex");
leak_scenario!(barrier_never_reached, barrier_never_reached_probes, "barrier", "leaks::wait_at_barrier");
leak_scenario!(request_without_timeout, request_without_timeout_probes, "request-no-timeout", "leaks::request_without_timeout");
leak_scenario!(infinite_loop, infinite_loop_probes, "infinite-loop", "leaks::spin_forever");
leak_scenario!(timeout_abandons_worker, timeout_abandons_worker_probes, "timeout-abandons-worker", "leaks::blocked_worker");
leak_scenario!(consumer_of_unclosed_channel, consumer_of_unclosed_channel_probes, "range-unclosed", "leaks::drain_channel");
leak_scenario!(never_answered_oneshot, never_answered_oneshot_probes, "mixed", "leaks::never_answered");

healthy_scenario!(fixed_pool_is_ok, "healthy-pool", 8);
healthy_scenario!(warm_up_ramp_that_plateaus_is_ok, "healthy-ramp", 14);
healthy_scenario!(bursts_back_to_baseline_are_ok, "healthy-bursts", 12);
healthy_scenario!(high_stable_count_is_ok, "healthy-high-stable", 10);
healthy_scenario!(fixed_long_lived_set_is_ok, "healthy-long-lived", 8);

#[test]
fn leak_of_two_per_second_is_flagged_within_ten_seconds() {
    if !bpf_available("leak_of_two_per_second_is_flagged_within_ten_seconds") {
        return;
    }
    let r = run_scenario("tokio-latest", &["mixed", "--rate", "2"], 10);
    let leak = site(&r, "never_answered");
    assert_eq!(leak["verdict"], "leak", "{}", summary(&r));
}

#[test]
fn older_tokio_leak_is_flagged() {
    if !bpf_available("older_tokio_leak_is_flagged") {
        return;
    }
    check("tokio-1.38", "mixed", Some("leaks::never_answered"), 10, false);
    check_with("tokio-1.38", &["--probes", "mixed"], Some("leaks::never_answered"), 10, false);
}

#[test]
fn fail_on_leak_gates_ci_and_ignore_rules_lift_it() {
    if !bpf_available("fail_on_leak_gates_ci_and_ignore_rules_lift_it") {
        return;
    }
    let bin = fixture("tokio-latest");
    let b = bin.to_str().unwrap();
    let gate = run(&["run", "--fail-on-leak", "--duration", "8", "--quiet", "--", b, "mixed"]);
    assert_eq!(gate.status.code(), Some(4), "{}", String::from_utf8_lossy(&gate.stderr));
    assert!(String::from_utf8_lossy(&gate.stderr).contains("never_answered"));
    let ignored = run(&[
        "run", "--fail-on-leak", "--duration", "8", "--quiet", "--ignore", "*::leaks::*", "--", b, "mixed",
    ]);
    assert_eq!(ignored.status.code(), Some(0), "{}", String::from_utf8_lossy(&ignored.stdout));
    let healthy = run(&["run", "--fail-on-leak", "--duration", "6", "--quiet", "--", b, "healthy-pool"]);
    assert_eq!(healthy.status.code(), Some(0), "{}", String::from_utf8_lossy(&healthy.stdout));
}

#[test]
fn fail_on_leak_works_with_pid_too() {
    if !bpf_available("fail_on_leak_works_with_pid_too") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--fail-on-leak", "--duration", "8", "--quiet"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn run_passes_on_the_program_exit_code() {
    if !bpf_available("run_passes_on_the_program_exit_code") {
        return;
    }
    let bin = fixture("tokio-latest");
    // the fixture exits 0 after 3 s: leakprof exits 0 and reports the exit code (3 s, not 2: with
    // 2 the last sample could fall on the exit, and a suite-loaded fixture had spawned only its
    // first second's 20 tasks by the sample before)
    let out = run(&["run", "--format", "json", "--quiet", "--", bin.to_str().unwrap(), "mixed", "--seconds", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["program_exit_code"], 0);
    assert_eq!(r["collection"]["ended"], "target_exited");
    assert!(int(&site(&r, "never_answered")["spawned"]) > 20, "tasks from the first instruction on are seen");
    assert!(int(&site(&r, "pool_worker")["live"]) == 4, "boot-time tasks are seen under run");
}

#[test]
fn spawn_stacks_name_the_spawner_and_created_by_rules_ignore_it() {
    if !bpf_available("spawn_stacks_name_the_spawner_and_created_by_rules_ignore_it") {
        return;
    }
    // release build, no frame pointers: the stack is unwound from .eh_frame
    let r = run_scenario("tokio-latest", &["--probes", "mixed"], 4);
    let pool = site(&r, "pool_worker");
    let by = pool["created_by"].as_str().unwrap_or_else(|| panic!("no created_by: {pool}"));
    assert!(by.contains("tokio_fixture::healthy::start_pool"), "{by}");
    let frames = pool["spawn_stacks"][0]["frames"].as_array().unwrap();
    assert!(frames[0]["function"].as_str().unwrap().contains("bind_inner"), "{pool}");
    assert!(frames.len() >= 4, "{pool}");
    assert!(r["kernel_counters"]["stack_samples"].as_u64().unwrap() > 0);

    let bin = fixture("tokio-latest");
    let out = run(&[
        "run", "--probes", "--fail-on-leak", "--duration", "8", "--quiet", "--format", "json",
        "--ignore-created-by", "tokio_fixture::scenarios::*", "--", bin.to_str().unwrap(), "mixed",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leak = site(&r, "never_answered");
    assert_eq!(leak["verdict"], "leak", "{leak}");
    assert_eq!(leak["ignored_by"], "created_by:tokio_fixture::scenarios::*", "{leak}");
    assert_eq!(out.status.code(), Some(0), "an ignored leak must not fail the gate");
}

#[test]
fn one_future_type_spawned_from_two_callers_is_split_by_spawn_path() {
    if !bpf_available("one_future_type_spawned_from_two_callers_is_split_by_spawn_path") {
        return;
    }
    let r = run_scenario("tokio-latest", &["--probes", "two-callers"], 8);
    let s = site(&r, "stacks::shared_job");
    let stacks = s["spawn_stacks"].as_array().unwrap();
    let path_of = |needle: &str| {
        stacks
            .iter()
            .find(|p| p["frames"].as_array().unwrap().iter().any(|f| f["function"].as_str().unwrap().contains(needle)))
            .unwrap_or_else(|| panic!("no spawn path through {needle}: {s}"))
    };
    let leaky = path_of("caller_leaky");
    let healthy = path_of("caller_healthy");
    let live = int(&s["live"]);
    assert!(int(&leaky["live_estimate"]) >= live * 9 / 10, "leaky path should hold the live tasks: {s}");
    assert!(int(&healthy["live_estimate"]) <= live / 10, "healthy path should hold none: {s}");
    assert!(healthy["samples"].as_u64().unwrap() > 0, "the healthy path was sampled too: {s}");
}

/// A real actix-web server (fixtures/actix: every worker a current-thread runtime with a
/// LocalSet). Healthy under load from `ab`: every site ok. Then a route that leaves a task behind
/// (`actix_rt::spawn` = `spawn_local`), hit 5 times a second: that task's site is a leak.
#[test]
fn an_actix_web_server_is_ok_under_load_and_its_leaking_route_is_found() {
    if !bpf_available("an_actix_web_server_is_ok_under_load_and_its_leaking_route_is_found") {
        return;
    }
    let (fx, line) = Fixture::start_with("actix", &["0"], &[], Some("listening port="));
    let port = line.unwrap().trim().trim_start_matches("listening port=").to_string();
    let pid = fx.pid.to_string();
    let report = |secs: &str| {
        let out = run(&["--pid", &pid, "--duration", secs, "--format", "json", "--quiet"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // healthy: 12 s of keep-alive GET / from 8 clients
    let ab = std::process::Command::new("ab")
        .args(["-q", "-k", "-c", "8", "-t", "12", "-n", "100000000", &format!("http://127.0.0.1:{port}/")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ab (apache2-utils, installed by scripts/setup.sh)");
    let r = report("10");
    let ab_out = ab.wait_with_output().unwrap();
    let ab_text = String::from_utf8_lossy(&ab_out.stdout);
    assert!(ab_text.contains("Complete requests"), "ab ran: {ab_text} {}", String::from_utf8_lossy(&ab_out.stderr));
    assert!(int(&r["collection"]["census"]["runtimes"]) >= 2, "the workers' LocalSets are read: {}", r["collection"]);
    for s in r["sites"].as_array().unwrap().iter().chain(r["blocked"].as_array().unwrap()) {
        assert_ne!(s["verdict"], "leak", "healthy under load: {s}");
    }
    // the leaking route, 5 requests a second
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, port) = (stop.clone(), port.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())) {
                    let _ = c.write_all(b"GET /subscribe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let _ = c.read_to_end(&mut Vec::new());
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
    };
    let r = report("15");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    client.join().unwrap();
    let s = site(&r, "actix_fixture::watch_updates");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert!(s["file"].as_str().is_some_and(|f| f.ends_with("main.rs")), "{s}");
    assert!(int(&s["live"]) >= 60, "{s}");
    assert!(s["stuck_at"].as_array().is_some_and(|a| !a.is_empty()), "where they wait: {s}");
}
