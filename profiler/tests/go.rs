//! Root-only: Go fixtures built by both toolchains, normal and stripped: every classic goroutine
//! leak is flagged at the exact file:line of its `go` statement with the right wait reason, and
//! the healthy controls are not flagged. Run the way a user runs leakprof: `leakprof --pid`
//! attached to an already running program, with the default interval, at 5 and 10 leaked
//! goroutines per second, and every leak must be `leak` within 10 s.
mod common;

use std::path::Path;

use common::*;

/// The Go tests start a dozen fixtures each: one test at a time keeps the 2-core machine from
/// being so loaded that waiting goroutines are mostly caught runnable.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// (scenario, expected wait reason on Go 1.19, on newer Go); the site is the `// LEAK SITE` line.
const LEAKS: &[(&str, &str, &str)] = &[
    ("nil-send", "ChanSendNilChan", "ChanSendNilChan"),
    ("nil-recv", "ChanReceiveNilChan", "ChanReceiveNilChan"),
    ("send-no-receiver", "ChanSend", "ChanSend"),
    ("recv-no-sender", "ChanReceive", "ChanReceive"),
    ("mutex-never-unlocked", "Semacquire", "SyncMutexLock"),
    ("waitgroup-mismatch", "Semacquire", "SyncWaitGroupWait"),
    // a loop that sleeps 10 ms at a time is often just runnable when the machine is busy
    ("infinite-loop", "Sleep|runnable", "Sleep|runnable"),
    ("select-timeout-abandons-sender", "ChanSend", "ChanSend"),
    ("range-unclosed", "ChanReceive", "ChanReceive"),
    ("undrained-timer", "ChanReceive", "ChanReceive"),
];

/// (file, line) of the line of fixtures/go ending with `marker`.
fn marked_line(marker: &str) -> Option<(String, u32)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for (i, l) in text.lines().enumerate() {
            if l.ends_with(marker) {
                return Some((e.file_name().to_string_lossy().into_owned(), i as u32 + 1));
            }
        }
    }
    None
}

/// (file, line) of the `// LEAK SITE <scenario>` marker: the `go` statement.
fn leak_site(scenario: &str) -> (String, u32) {
    marked_line(&format!("// LEAK SITE {scenario}")).unwrap_or_else(|| panic!("no LEAK SITE marker for {scenario}"))
}

/// (file, line) where the scenario's goroutines block: the `// BLOCKS <scenario>` marker, else the
/// `go` statement's own line (a closure that blocks where it is spawned).
fn blocking_line(scenario: &str) -> (String, u32) {
    marked_line(&format!("// BLOCKS {scenario}")).unwrap_or_else(|| leak_site(scenario))
}

fn run_go(bin: &str, scenario: &str, secs: u32) -> serde_json::Value {
    let b = fixture(bin);
    let s = secs.to_string();
    let out = run(&["run", "--duration", &s, "--format", "json", "--quiet", "--", b.to_str().unwrap(), scenario, "10"]);
    assert!(out.status.success(), "{bin} {scenario}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Starts the fixture, then attaches `leakprof --pid PID --duration 10` with the default
/// interval, as a user would on a running program.
fn attach_go(bin: &str, scenario: &str, rate: &str) -> serde_json::Value {
    let fx = Fixture::start(bin, &[scenario, rate]);
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "10", "--format", "json", "--quiet"]);
    assert!(out.status.success(), "{bin} {scenario} {rate}/s: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn check_binary(bin: &str, old: bool, rate: &'static str) {
    // all scenarios of this binary at once: the census costs the targets nothing
    let handles: Vec<_> = LEAKS
        .iter()
        .map(|&(scenario, r119, rnew)| {
            let bin = bin.to_string();
            std::thread::spawn(move || (scenario, if old { r119 } else { rnew }, attach_go(&bin, scenario, rate)))
        })
        .collect();
    let healthy: Vec<_> = ["healthy-pool", "healthy-bursts"]
        .into_iter()
        .map(|s| {
            let bin = bin.to_string();
            std::thread::spawn(move || (s, attach_go(&bin, s, rate)))
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (scenario, reason, r) = h.join().unwrap();
        assert_eq!(r["target"]["runtime"], "go");
        assert_eq!(r["collection"]["interval_s"], 1.0);
        assert_eq!(r["collection"]["method"], "census");
        assert!(r.get("kernel_counters").is_none(), "a census runs nothing in the kernel: {}", r["kernel_counters"]);
        let (file, line) = leak_site(scenario);
        let leaks: Vec<&serde_json::Value> =
            r["sites"].as_array().unwrap().iter().filter(|s| s["verdict"] == "leak").collect();
        let at_site = leaks.iter().find(|s| {
            s["file"].as_str().is_some_and(|f| f.ends_with(&format!("/{file}"))) && s["line"] == line
        });
        match at_site {
            None => failures.push(format!(
                "{bin} {rate}/s {scenario}: no leak at {file}:{line}; leaks: {:?}; sites: {}",
                leaks.iter().map(|s| format!("{}:{}", s["file"], s["line"])).collect::<Vec<_>>(),
                r["sites"].as_array().unwrap().iter().map(|s| format!("{} {}:{} {}", s["verdict"], s["file"], s["line"], s["reason"])).collect::<Vec<_>>().join(" | ")
            )),
            Some(s) => {
                // where they are stuck: the blocking line, for (nearly) every sampled goroutine
                let (bfile, bline) = blocking_line(scenario);
                let top = &s["stuck_at"][0];
                let at_line = top["file"].as_str().is_some_and(|f| f.ends_with(&format!("/{bfile}"))) && top["line"] == bline;
                let (n, of) = (top["tasks"].as_u64().unwrap_or(0), s["stuck_sampled"].as_u64().unwrap_or(0));
                if !at_line || n * 10 < of * 9 || of == 0 {
                    failures.push(format!("{bin} {rate}/s {scenario}: expected stuck at {bfile}:{bline}, got {} of {of}: {}", n, s["stuck_at"]));
                }
                if s["stacks"][0]["frames"].as_array().is_none_or(|f| f.len() < 3) {
                    failures.push(format!("{bin} {rate}/s {scenario}: no whole stack: {}", s["stacks"]));
                }
                let states = s["states"].as_object().unwrap();
                let top = states.iter().max_by_key(|(_, v)| v.as_u64().unwrap()).map(|(k, _)| k.as_str());
                if !top.is_some_and(|t| reason.split('|').any(|r| r == t)) {
                    failures.push(format!("{bin} {rate}/s {scenario}: waits on {states:?}, expected mostly {reason}"));
                }
                if leaks.len() > 1 {
                    failures.push(format!("{bin} {rate}/s {scenario}: more than one leak: {leaks:?}"));
                }
            }
        }
    }
    for h in healthy {
        let (scenario, r) = h.join().unwrap();
        for s in r["sites"].as_array().unwrap() {
            if s["verdict"] == "leak" {
                failures.push(format!("{bin} {rate}/s {scenario}: healthy site flagged: {s}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! go_binary {
    ($name:ident, $bin:literal, $old:literal) => {
        #[test]
        fn $name() {
            if !bpf_available(stringify!($name)) {
                return;
            }
            let _one_at_a_time = serial();
            for rate in ["5", "10"] {
                check_binary($bin, $old, rate);
            }
        }
    };
}

go_binary!(go_1_19_leaks_at_their_go_statements_within_10_s_of_attach, "go1.19", true);
go_binary!(go_1_19_stripped_leaks_at_their_go_statements_within_10_s_of_attach, "go1.19-stripped", true);
go_binary!(go_latest_leaks_at_their_go_statements_within_10_s_of_attach, "go-latest", false);
go_binary!(go_latest_stripped_leaks_at_their_go_statements_within_10_s_of_attach, "go-latest-stripped", false);
go_binary!(go_1_19_pie_leaks_at_their_go_statements_within_10_s_of_attach, "go1.19-pie", true);
go_binary!(go_latest_pie_leaks_at_their_go_statements_within_10_s_of_attach, "go-latest-pie", false);

#[test]
fn http_response_body_never_closed_leaks_in_net_http() {
    if !bpf_available("http_response_body_never_closed_leaks_in_net_http") {
        return;
    }
    let _one_at_a_time = serial();
    let r = run_go("go-latest", "http-body-not-closed", 12);
    let leak = r["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["verdict"] == "leak")
        .unwrap_or_else(|| panic!("no leak: {}", r["sites"]));
    assert!(leak["function"].as_str().unwrap().starts_with("net/http."), "{leak}");
}

/// The second way of collecting: uprobes on runtime.newproc1's RETs and gdestroy/goexit0.
fn check_probe_mode(bin: &str) {
    let b = fixture(bin);
    let out = run(&[
        "run", "--probes", "--duration", "10", "--format", "json", "--quiet", "--", b.to_str().unwrap(), "nil-send",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["collection"]["method"], "uprobes");
    assert_eq!(r["target"]["birth_point"], "newproc1_ret");
    assert_eq!(r["collection"]["ended"], "duration", "the target must survive the probes");
    assert!(r["kernel_counters"]["births"].as_u64().unwrap() > 0, "{}", r["kernel_counters"]);
    let (file, line) = leak_site("nil-send");
    let leak = site(&r, "main.nilSend");
    assert_eq!(leak["verdict"], "leak", "{leak}");
    assert!(leak["file"].as_str().unwrap().ends_with(&file) && leak["line"] == line, "{leak}");
    let healthy = site(&r, "main.shortRequest");
    assert!(int(&healthy["finished"]) > 50, "exits are seen: {healthy}");
    assert!(int(&healthy["live"]) <= 5, "{healthy}");
}

#[test]
fn go_1_19_probe_mode_counts_births_and_exits() {
    if !bpf_available("go_1_19_probe_mode_counts_births_and_exits") {
        return;
    }
    let _one_at_a_time = serial();
    check_probe_mode("go1.19");
}

#[test]
fn go_latest_stripped_probe_mode_counts_births_and_exits() {
    if !bpf_available("go_latest_stripped_probe_mode_counts_births_and_exits") {
        return;
    }
    let _one_at_a_time = serial();
    check_probe_mode("go-latest-stripped");
}

/// Starts a Go fixture serving net/http/pprof; returns it with the pprof address.
fn start_with_pprof(bin: &str, args: &[&str]) -> (Fixture, String) {
    let (fx, addr) = Fixture::start_with(bin, args, &[("LEAKFIXTURE_PPROF", "1")], Some("pprof "));
    (fx, addr.unwrap())
}

/// The `go` statements (file name, line) of the goroutines Go's own goroutineleak profile reports,
/// with how many of each. In the debug=2 format every goroutine is printed, the leaked ones with
/// `(leaked)` in their header, and `created by ...` followed by the statement's file:line.
fn goroutineleak_sites(addr: &str) -> std::collections::BTreeMap<(String, u32), u64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /debug/pprof/goroutineleak?debug=2 HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for block in body.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| !l.starts_with("goroutine "));
        if !lines.next().is_some_and(|h| h.contains("(leaked)")) {
            continue;
        }
        let rest: Vec<&str> = lines.collect();
        for w in rest.windows(2) {
            if w[0].starts_with("created by ") {
                let loc = w[1].split_whitespace().next().unwrap_or("");
                if let Some((file, line)) = loc.rsplit_once(':') {
                    let name = file.rsplit('/').next().unwrap_or(file).to_string();
                    if let Ok(l) = line.parse() {
                        *out.entry((name, l)).or_default() += 1;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_leak_go_goroutineleak_profile_reports_is_flagged_and_more() {
    if !bpf_available("every_leak_go_goroutineleak_profile_reports_is_flagged_and_more") {
        return;
    }
    let _one_at_a_time = serial();
    // Go 1.27 reports goroutines blocked on something nothing else can reach; leakprof must flag
    // each of those at the same `go` statement, and also the leaks the profile cannot see: a
    // channel kept reachable from a global (recv-no-sender, range-unclosed), a mutex held by a
    // closure that a live goroutine keeps (mutex-never-unlocked), goroutines that never block on
    // a primitive (the infinite loop that sleeps).
    let scenarios = [
        "nil-send", "nil-recv", "send-no-receiver", "waitgroup-mismatch", "select-timeout-abandons-sender",
        "recv-no-sender", "range-unclosed", "mutex-never-unlocked", "infinite-loop",
    ];
    let handles: Vec<_> = scenarios
        .iter()
        .map(|&sc| {
            std::thread::spawn(move || {
                let (fx, addr) = start_with_pprof("go-latest", &[sc, "10"]);
                let out = run(&["--pid", &fx.pid.to_string(), "--duration", "10", "--format", "json", "--quiet"]);
                assert!(out.status.success(), "{sc}: {}", String::from_utf8_lossy(&out.stderr));
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                (sc, goroutineleak_sites(&addr), r)
            })
        })
        .collect();
    let (mut failures, mut missed_by_go) = (Vec::new(), Vec::new());
    for h in handles {
        let (sc, reported, r) = h.join().unwrap();
        let leaks: std::collections::BTreeSet<(String, u32)> = r["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["verdict"] == "leak")
            .filter_map(|s| Some((s["file"].as_str()?.rsplit('/').next()?.to_string(), s["line"].as_u64()? as u32)))
            .collect();
        let ours: Vec<&(String, u32)> = reported.keys().filter(|(f, _)| f == "leaks.go").collect();
        for site in &ours {
            if !leaks.contains(*site) {
                failures.push(format!("{sc}: goroutineleak reports {site:?}, leakprof's leaks are {leaks:?}"));
            }
        }
        let site = leak_site(sc);
        if !leaks.contains(&site) {
            failures.push(format!("{sc}: leakprof did not flag {site:?}"));
        }
        if !reported.contains_key(&site) {
            missed_by_go.push(sc);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // what the profile cannot see, leakprof still flags (checked above for every scenario)
    assert_eq!(
        missed_by_go,
        ["recv-no-sender", "range-unclosed", "mutex-never-unlocked", "infinite-loop"],
        "the profile's blind spots changed"
    );
    // and the profile does see the unreachable ones
    for sc in ["nil-send", "nil-recv", "send-no-receiver"] {
        assert!(!missed_by_go.contains(&sc), "goroutineleak missed {sc}: {missed_by_go:?}");
    }
}
