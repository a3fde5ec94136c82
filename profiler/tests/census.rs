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
    // leakprof kept sampling: every 0.1 s, or, when a sample takes more than a fifth of that
    // (13,000 live tasks churning, a loaded machine), at the interval that keeps it a fifth busy
    // (MAX_BUSY) and never a stall
    let col = &r["collection"];
    let stretched_to = col["sample_ms_mean_after_first"].as_f64().unwrap_or(0.0) / 1000.0 / leakprof::session::MAX_BUSY;
    let expected = 5.0 / stretched_to.max(0.1);
    assert!(int(&col["samples"]) as f64 >= 0.7 * expected, "{expected:.0} samples expected: {col}");
    assert!(col["longest_interval_s"].as_f64().unwrap() < 1.0, "leakprof stalled: {col}");
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

/// The classic leaks of fixtures/tokio-src/leaks.rs: (scenario, the async fn its tasks run, a
/// word of what they await).
const CLASSIC: [(&str, &str, &str); 9] = [
    ("mixed", "leaks::never_answered", "oneshot::Receiver"),
    ("recv-no-sender", "leaks::recv_no_sender", "recv"),
    ("send-no-receiver", "leaks::query_replica", "send"),
    ("mutex-held", "leaks::wait_for_mutex", "lock"),
    ("barrier", "leaks::wait_at_barrier", "wait"),
    ("request-no-timeout", "leaks::request_without_timeout", "read"),
    ("infinite-loop", "leaks::spin_forever", "Sleep"),
    ("timeout-abandons-worker", "leaks::blocked_worker", "recv"),
    ("range-unclosed", "leaks::drain_channel", "recv"),
];

/// One classic leak run for a few seconds and reported with `args`: the JSON and the leaking
/// site (the one with most live tasks: identical-code folding can give it another leak's name).
fn classic_report(fixture: &str, fixture_args: &[&str], args: &[&str]) -> serde_json::Value {
    let fx = Fixture::start(fixture, fixture_args);
    std::thread::sleep(Duration::from_millis(1500));
    let mut a = vec!["--duration", "1"];
    a.extend_from_slice(args);
    // a fixture slowed by a loaded machine may not have leaked enough tasks to sample yet: report
    // again (its leaks only grow) until the leaking site has 12, for up to 12 s
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    loop {
        let r = report(fx.pid, &a);
        let most = r["sites"].as_array().into_iter().flatten().filter_map(|s| s["live"].as_i64()).max().unwrap_or(0);
        if most >= 12 || std::time::Instant::now() > deadline {
            return r;
        }
    }
}

fn most_live(r: &serde_json::Value) -> &serde_json::Value {
    r["sites"].as_array().unwrap().iter().max_by_key(|s| int(&s["live"])).expect("a site")
}

#[test]
fn where_stuck_names_the_await_each_leaked_task_waits_at() {
    if !bpf_available("where_stuck_names_the_await_each_leaked_task_waits_at") {
        return;
    }
    for (scenario, fun, awaiting) in CLASSIC {
        let r = classic_report("tokio-latest-debug2", &[scenario], &[]);
        assert_eq!(r["collection"]["census"]["where_stuck"], "read from the binary's DWARF types");
        let s = most_live(&r);
        assert_eq!(s["stuck_decoded_by"], "dwarf", "{scenario}: {s}");
        let top = &s["stuck_at"][0];
        assert!(top["file"].as_str().is_some_and(|f| f.ends_with("leaks.rs")), "{scenario}: {s}");
        assert_eq!(top["line"], marked_line(scenario), "{scenario}: {s}");
        if scenario != "request-no-timeout" {
            // (there the await is in an async block inside the fn)
            assert!(top["function"].as_str().unwrap().ends_with(fun), "{scenario}: {s}");
        }
        assert!(top["awaiting"].as_str().unwrap().contains(awaiting), "{scenario}: {s}");
        let (n, of) = (int(&top["tasks"]), int(&s["stuck_sampled"]));
        // spin_forever's tasks are between its yields now and then
        let share = if scenario == "infinite-loop" { 7 } else { 9 };
        assert!(n >= 10 && n * 10 >= of * share, "{scenario}: most sampled tasks wait there: {s}");
    }
}

/// Sampled tasks of a site decoded at an await of `fun` (its own or a block inside it), the
/// await's line when the binary has line tables, and what it awaits.
fn decoded_share(s: &serde_json::Value, fun: &str, file_line: Option<u32>) -> (i64, i64) {
    let here = |a: &serde_json::Value| {
        let f = a["function"].as_str().unwrap_or("");
        let named = f.contains(fun) || (f.starts_with("async fn at ") && f.contains("leaks.rs:"));
        let line_ok = file_line.is_none_or(|l| a["line"] == l);
        named && line_ok && a["awaiting"].as_str().is_some_and(|w| !w.is_empty()) && a["await_ordinal"].as_u64().is_some()
    };
    let n = s["stuck_at"].as_array().map_or(0, |v| v.iter().filter(|a| here(a)).map(|a| int(&a["tasks"])).sum());
    (n, s["stuck_sampled"].as_i64().unwrap_or(0))
}

/// Builds without DWARF types: default release (symbols only), line-tables-only, and fat LTO +
/// one codegen unit + panic = "abort". Where each leaked task waits comes from the machine code.
#[test]
fn where_stuck_is_read_from_the_machine_code_of_release_builds() {
    if !bpf_available("where_stuck_is_read_from_the_machine_code_of_release_builds") {
        return;
    }
    let mut failures = Vec::new();
    // three builds; then an older tokio, and the current-thread scheduler
    let runs = ["tokio-latest", "tokio-latest-debuginfo", "tokio-latest-lto"]
        .into_iter()
        .flat_map(|fixture| CLASSIC.iter().map(move |c| (fixture, None, *c)))
        .chain([("tokio-1.38", None), ("tokio-latest", Some("--current-thread"))].into_iter().flat_map(|(fixture, extra)| [CLASSIC[1], CLASSIC[3]].map(|c| (fixture, extra, c))));
    for (fixture, extra, (scenario, fun, awaiting)) in runs {
        let lines = fixture == "tokio-latest-debuginfo";
        let fixture_args: Vec<&str> = [Some(scenario), extra].into_iter().flatten().collect();
        let r = classic_report(fixture, &fixture_args, &[]);
        assert!(
            r["collection"]["census"]["where_stuck"].as_str().unwrap().starts_with("read from the machine code"),
            "{fixture}: {}",
            r["collection"]
        );
        let s = most_live(&r);
        if fixture == "tokio-latest-lto" && scenario == "infinite-loop" {
            // an async fn that never returns, built with panic = "abort", has no completion
            // panic to be recognised by: its tasks are counted as undecoded, never guessed
            assert_eq!(s["stuck_undecoded"], s["stuck_sampled"], "{fixture} {scenario}: {s}");
            assert!(s["stuck_sampled"].as_i64().unwrap_or(0) >= 10, "{fixture} {scenario}: {s}");
            continue;
        }
        assert_eq!(s["stuck_decoded_by"], "code", "{fixture} {scenario}: {s}");
        let (n, of) = decoded_share(s, fun, lines.then(|| marked_line(scenario)));
        let named = s["stuck_at"][0]["awaiting"].as_str().unwrap_or("");
        // the awaited callee by name; an inlined library async fn is named by where it is
        // defined without line tables (`async fn at tokio-1.x/src/...`), and with them by the
        // out-of-line functions of its file, which may be its type's only
        let callee_named = named.contains(awaiting) || named.contains("tokio");
        if !(of >= 10 && n * 10 >= of * 9 && callee_named) {
            failures.push(format!("{fixture} {extra:?} {scenario}: {n} of {of} decoded there: {s}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The debug = 2 fixture has both: the machine-code decoder agrees with the DWARF one on the
/// await line of at least 95% of the sampled tasks.
#[test]
fn the_code_decoder_agrees_with_dwarf() {
    if !bpf_available("the_code_decoder_agrees_with_dwarf") {
        return;
    }
    for (scenario, _, _) in CLASSIC {
        let fx = Fixture::start("tokio-latest-debug2", &[scenario]);
        std::thread::sleep(Duration::from_millis(1500));
        let lines = |decoder: &str| -> std::collections::BTreeMap<u64, i64> {
            let r = report(fx.pid, &["--duration", "1", "--await-decoder", decoder]);
            let s = most_live(&r).clone();
            let mut m = std::collections::BTreeMap::new();
            for a in s["stuck_at"].as_array().into_iter().flatten() {
                *m.entry(a["line"].as_u64().unwrap_or(0)).or_default() += int(&a["tasks"]);
            }
            m.insert(u64::MAX, int(&s["stuck_sampled"]));
            m
        };
        let (dwarf, code) = (lines("dwarf"), lines("code"));
        let sampled = dwarf[&u64::MAX].max(code[&u64::MAX]);
        if scenario == "infinite-loop" {
            // never idle: its tasks move between two awaits (yield_now, sleep) in the second
            // between the two reads, so the shares differ; each decoder decodes them all, to
            // the same lines
            let decoded = |m: &std::collections::BTreeMap<u64, i64>| m.iter().filter(|(l, _)| **l != u64::MAX && **l != 0).map(|(_, n)| n).sum::<i64>();
            let main = |m: &std::collections::BTreeMap<u64, i64>| m.iter().filter(|(l, n)| **l != u64::MAX && **l != 0 && **n * 4 >= m[&u64::MAX]).map(|(l, _)| *l).collect::<Vec<_>>();
            assert!(decoded(&dwarf) * 100 >= dwarf[&u64::MAX] * 95 && decoded(&code) * 100 >= code[&u64::MAX] * 95, "{scenario}: dwarf {dwarf:?} code {code:?}");
            assert!(main(&dwarf).iter().all(|l| code.contains_key(l)) && main(&code).iter().all(|l| dwarf.contains_key(l)), "{scenario}: dwarf {dwarf:?} code {code:?}");
            continue;
        }
        // tasks at the same line by both (the two reads are a second apart: shares, not tasks)
        let agree: i64 = dwarf.iter().filter(|(l, _)| **l != u64::MAX && **l != 0).map(|(l, n)| (*n).min(code.get(l).copied().unwrap_or(0))).sum();
        assert!(sampled >= 10 && agree * 100 >= sampled * 95, "{scenario}: dwarf {dwarf:?} code {code:?}");
    }
}

/// A binary stripped of everything (no symbols, no debug file): every classic leak's site is
/// named by its async fn's file:line and its tasks' awaits by ordinal and the awaited async fn's
/// location.
#[test]
fn stripped_binaries_name_sites_and_awaits_from_the_code() {
    if !bpf_available("stripped_binaries_name_sites_and_awaits_from_the_code") {
        return;
    }
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tokio-src/leaks.rs")).unwrap();
    for (scenario, fun, _) in CLASSIC {
        let r = classic_report("tokio-latest-stripped", &[scenario], &[]);
        let s = most_live(&r);
        // the async fn's definition line: `pub async fn <name>(`
        let name = fun.rsplit("::").next().unwrap();
        let def = src.lines().position(|l| l.contains(&format!("async fn {name}("))).unwrap() as u64 + 1;
        let f = s["function"].as_str().unwrap();
        assert!(f.starts_with("async fn at ") && f.contains("leaks.rs:"), "{scenario}: {s}");
        // identical-code folding may give two leaks one body: the line is one of theirs
        assert!(s["file"].as_str().unwrap().ends_with("leaks.rs"), "{scenario}: {s}");
        if !matches!(scenario, "recv-no-sender" | "timeout-abandons-worker") {
            assert_eq!(s["line"], def, "{scenario}: {s}");
        }
        if scenario == "infinite-loop" {
            continue; // (default release: decoded; checked below like the others)
        }
        let top = &s["stuck_at"][0];
        assert!(top["await_ordinal"].as_u64().is_some_and(|n| n >= 1), "{scenario}: {s}");
        assert!(top["awaiting"].as_str().is_some_and(|w| w.contains("async fn at ") || w.contains("code at 0x")), "{scenario}: {s}");
        let (n, of) = decoded_share(s, "async fn at ", None);
        assert!(of >= 10 && n * 10 >= of * 9, "{scenario}: {s}");
    }
}

/// The line of fixtures/tokio-src/local.rs holding `text`.
fn local_line(text: &str) -> u32 {
    source_line("fixtures/tokio-src/local.rs", text)
}

/// `spawn_local` tasks: one LocalSet on a current-thread runtime, then four sets on four
/// threads (actix-rt's shape); each a leak at its site, the backlog counted from the first sample.
#[test]
fn local_set_leaks_are_counted_from_the_first_sample_on_one_set_and_on_four() {
    if !bpf_available("local_set_leaks_are_counted_from_the_first_sample_on_one_set_and_on_four") {
        return;
    }
    for (scenario, sets) in [("local-leak", 1), ("local-four", 4)] {
        let (fx, _) = Fixture::start_with(
            "tokio-latest",
            &[scenario, "--current-thread", "--backlog", "2000", "--rate", "20"],
            &[],
            Some("backlog spawned"),
        );
        let r = report(fx.pid, &["--duration", "10"]);
        let c = &r["collection"]["census"];
        assert!(int(&c["runtimes"]) >= sets, "{scenario}: every LocalSet's list is read: {c} {}", r["warnings"]);
        let s = site(&r, "local::awaiting_reply");
        let series: Vec<i64> = s["series"].as_array().unwrap().iter().map(int).collect();
        assert!(series[0] >= 2000, "{scenario}: the backlog is live from the first sample: {series:?}");
        assert_eq!(s["verdict"], "leak", "{scenario}: {s}");
        assert_eq!(s["line"], local_line("pub async fn awaiting_reply"), "{scenario}: {s}");
        assert!(int(&s["states"]["idle"]) >= 2000, "{scenario}: {s}");
        // where they wait, from the machine code (the release build has no DWARF types)
        assert!(s["stuck_at"].as_array().is_some_and(|a| !a.is_empty()), "{scenario}: {s}");
        assert!(r["warnings"].as_array().unwrap().iter().all(|w| !w.as_str().unwrap().contains("not counted")), "{}", r["warnings"]);
    }
}

#[test]
fn a_healthy_local_set_with_2000_long_lived_tasks_is_ok() {
    if !bpf_available("a_healthy_local_set_with_2000_long_lived_tasks_is_ok") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["local-healthy", "--rate", "50"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "10"]);
    let s = site(&r, "local::long_lived_local");
    assert_eq!(int(&s["live"]), 2000, "{s}");
    assert_eq!(s["verdict"], "ok", "{s}");
    assert!(r["sites"].as_array().unwrap().iter().all(|s| s["verdict"] == "ok"), "{}", r["sites"]);
    // with --probes on a tokio without bind_inner (births at the first poll), the LocalSet's
    // finishes are probed too: the short local tasks are seen to finish, none left over
    let (fx, _) = Fixture::start_with("tokio-1.28", &["local-healthy", "--rate", "50"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "8", "--probes"]);
    assert_eq!(r["target"]["birth_point"], "first_poll", "{}", r["target"]);
    let short = site(&r, "local::short_local");
    assert!(int(&short["finished"]) > 100 && int(&short["live"]) < 10, "{short}");
    assert_eq!(short["verdict"], "ok", "{short}");
    assert_eq!(int(&site(&r, "local::long_lived_local")["live"]), 2000);
}

/// A LocalSet dropped while attached cancels its tasks: they end with it, never a leak.
#[test]
fn a_local_set_dropped_while_attached_ends_its_tasks() {
    if !bpf_available("a_local_set_dropped_while_attached_ends_its_tasks") {
        return;
    }
    let (fx, _) = Fixture::start_with("tokio-latest", &["local-dropped"], &[], Some("backlog spawned"));
    let r = report(fx.pid, &["--duration", "10"]);
    let s = site(&r, "local::until_set_dropped");
    assert_ne!(s["verdict"], "leak", "{s}");
    assert!(int(&s["finished"]) >= 300, "the dropped set's tasks are counted as ended: {s}");
    let series: Vec<i64> = s["series"].as_array().unwrap().iter().map(int).collect();
    assert!(series.iter().all(|&n| n <= 300), "never more than one set's tasks: {series:?}");
    assert!(int(&r["collection"]["census"]["runtimes_dropped"]) >= 1, "{}", r["collection"]["census"]);
}

/// A `spawn_blocking` leak fills the pool (its cap lowered to 16 threads), then its queue: the
/// queued tasks keep the site growing, a leak at the closure's line.
#[test]
fn a_spawn_blocking_leak_stays_a_leak_past_the_pool_s_cap() {
    if !bpf_available("a_spawn_blocking_leak_stays_a_leak_past_the_pool_s_cap") {
        return;
    }
    let (fx, _) = Fixture::start_with(
        "tokio-latest",
        &["blocking-closure", "--rate", "10", "--max-blocking", "16"],
        &[],
        Some("backlog spawned"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let r = report(fx.pid, &["--duration", "10"]);
    assert!(int(&r["collection"]["census"]["blocking_queued"]) > 50, "{}", r["collection"]["census"]);
    let s = site(&r, "BlockingTask<tokio_fixture::local::run_blocking_closure");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert_eq!(s["line"], local_line("state.lock().unwrap()"), "{s}");
    assert!(int(&s["states"]["queued"]) > 50, "{s}");
    // the pool's 16 threads: a wait at the same closure, not the runtime's idle parking
    let b = r["blocked"].as_array().unwrap();
    let t = b.iter().find(|b| b["function"].as_str().unwrap().contains("run_blocking_closure")).unwrap_or_else(|| panic!("{b:#?}"));
    assert_eq!((t["kind"].as_str(), t["syscall"].as_str(), int(&t["threads"])), (Some("wait"), Some("futex"), 16), "{t}");
}

/// tokio's task id counter is told from the ThreadId counter of the same name (a LocalSet links
/// that one in; the fixture's symbol table lists it first): with the wrong one, `--probes` took
/// every task born since attach for one alive before it.
#[test]
fn the_task_id_counter_is_not_the_thread_id_counter() {
    for name in ["tokio-latest", "tokio-1.38", "tokio-1.28", "tokio-latest-v0"] {
        let Some(image) = fixture_image(name) else { panic!("no fixture {name}") };
        let at = leakprof::runtimes::tokio::next_id_symbol(&image).unwrap_or_else(|| panic!("{name}: no NEXT_ID"));
        let thread_ids = image.data_symbol(&["8ThreadId4next7NEXT_ID"]);
        assert!(thread_ids.is_some(), "{name}: the fixture links tokio's ThreadId counter too");
        assert_ne!(Some(at), thread_ids, "{name}");
    }
}
