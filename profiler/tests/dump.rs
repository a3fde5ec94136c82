//! `leakprof dump`: one census of a live process (counts equal to the runtime's own, where each
//! task waits), of a core of it (gcore; a Go crash with GOTRACEBACK=crash) equal to the live dump
//! taken just before, `--diff` of two dumps flagging exactly the leaking site, hostile cores.
mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{fixture, int, leakprof, source_line, Fixture};
use serde_json::Value;

/// `leakprof dump ARGS --format json`, parsed (panics with stderr when it fails).
fn dump_json(args: &[&str]) -> Value {
    let out = leakprof().arg("dump").args(args).args(["--format", "json"]).output().expect("run leakprof");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "leakprof dump {args:?} failed: {}\nstderr: {stderr}\nstdout: {stdout}", out.status);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// `leakprof dump ARGS`'s error (it must fail): its stderr.
fn dump_error(args: &[&str]) -> String {
    let out = leakprof().arg("dump").args(args).output().expect("run leakprof");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "leakprof dump {args:?} should fail: {stderr}");
    assert!(stderr.lines().count() <= 2 && !stderr.contains("panicked"), "one clear sentence: {stderr}");
    stderr
}

fn sites(d: &Value) -> &Vec<Value> {
    d["sites"].as_array().expect("sites")
}

/// The site spawned at `line` of a file ending in `file` (Go names a site by its `go`
/// statement: `main.dumpTarget` at the line of `go dumpRecv(ch)`).
fn at_line<'a>(d: &'a Value, file: &str, line: u32) -> &'a Value {
    sites(d).iter().find(|s| s["file"].as_str().is_some_and(|f| f.ends_with(file)) && s["line"] == line).unwrap_or_else(|| panic!("no site at {file}:{line}: {d:#}"))
}

fn named<'a>(d: &'a Value, needle: &str) -> &'a Value {
    sites(d).iter().find(|s| s["function"].as_str().is_some_and(|f| f.contains(needle))).unwrap_or_else(|| {
        let names: Vec<&str> = sites(d).iter().filter_map(|s| s["function"].as_str()).collect();
        panic!("no site like {needle}: {names:#?}")
    })
}

const GO_RUNTIME_SITE: &str = "runtime (the Go runtime's own goroutines)";

/// Sites as compared between two dumps of one still process: label -> (live, states, where
/// they wait). The Go runtime's own goroutines come and go with its GC: left out.
fn by_site(d: &Value) -> BTreeMap<String, (i64, Value, Value)> {
    sites(d)
        .iter()
        .filter(|s| s["function"] != GO_RUNTIME_SITE)
        .map(|s| {
            let at: Vec<Value> = s["stuck_at"].as_array().unwrap().iter().map(|a| serde_json::json!([a["function"], a["line"], a["tasks"]])).collect();
            (format!("{} {} {}", s["function"], s["file"], s["line"]), (int(&s["live"]), s["states"].clone(), Value::from(at)))
        })
        .collect()
}

fn gcore(pid: u32, dir: &Path) -> PathBuf {
    let prefix = dir.join("core");
    let out = Command::new("gcore").arg("-o").arg(&prefix).arg(pid.to_string()).output().expect("gcore is installed (gdb, scripts/setup.sh)");
    let core = PathBuf::from(format!("{}.{pid}", prefix.display()));
    assert!(core.exists(), "gcore wrote no core: {}", String::from_utf8_lossy(&out.stderr));
    core
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leakprof-dump-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// tokio: the dump's count equals `num_alive_tasks`, each site's every task has its wait read,
/// at the `.await` of its source line; then a gcore of it gives the same dump, site by site.
#[test]
fn tokio_dump_counts_as_the_runtime_does_and_its_core_dumps_the_same() {
    let (fx, alive) = Fixture::start_with("tokio-latest-debug2", &["dump-target", "--backlog", "400"], &[], Some("alive_tasks="));
    let alive: i64 = alive.unwrap().parse().unwrap();
    assert_eq!(alive, 600, "the fixture's runtime counts its 400 + 200 tasks");
    let pid = fx.pid.to_string();
    let live = dump_json(&["--pid", &pid]);
    let total: i64 = sites(&live).iter().map(|s| int(&s["live"])).sum();
    assert_eq!(total, alive, "{live:#}");
    assert_eq!(live["completeness"]["tasks"], alive);
    assert_eq!(live["completeness"]["target_paused"], false);
    assert_eq!(live["completeness"]["census"]["complete"], true);
    let reply = named(&live, "parked_on_reply");
    assert_eq!(int(&reply["live"]), 400);
    assert_eq!(int(&reply["waits_read"]), 400, "every task's wait read: {reply:#}");
    let top = &reply["stuck_at"][0];
    assert_eq!(top["line"], source_line("fixtures/tokio-src/dump.rs", "reply.await"), "{reply:#}");
    assert!(top["awaiting"].as_str().unwrap().contains("oneshot::Receiver"), "{reply:#}");
    let stacked: i64 = reply["stacks"].as_array().unwrap().iter().map(|s| int(&s["tasks"])).sum();
    assert_eq!(stacked, 400, "every distinct await chain with its count: {reply:#}");
    let lock = named(&live, "parked_on_lock");
    assert_eq!(int(&lock["live"]), 200);
    assert_eq!(lock["stuck_at"][0]["line"], source_line("fixtures/tokio-src/dump.rs", "lock.lock().await"), "{lock:#}");
    assert!(lock["ages"]["spawned_since_oldest"].as_u64().unwrap() >= 199, "{lock:#}");

    let dir = tmpdir("tokio");
    let core = gcore(fx.pid, &dir);
    let from_core = dump_json(&["--core", core.to_str().unwrap()]);
    assert_eq!(from_core["source"]["kind"], "core");
    assert_eq!(from_core["source"]["pid"], fx.pid);
    assert_eq!(by_site(&from_core), by_site(&live), "the core's dump equals the live one");

    // text: grouped by site, every stack under it
    let out = leakprof().args(["dump", "--core", core.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("read from the core") && text.contains("parked_on_reply"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Go: the dump's goroutines (but the runtime's own) equal `runtime.NumGoroutine()`, each
/// waiting at its line; on 1.19 and the newest.
#[test]
fn go_dump_counts_as_num_goroutine_and_its_core_dumps_the_same() {
    let recv_line = source_line("fixtures/go/dump.go", "<-ch // LEAK SITE");
    for bin in ["go1.19", "go-latest"] {
        let (fx, n) = Fixture::start_with(bin, &["dump-target", "300"], &[], Some("goroutines="));
        let n: i64 = n.unwrap().parse().unwrap();
        let live = dump_json(&["--pid", &fx.pid.to_string()]);
        let ours: i64 = sites(&live).iter().filter(|s| s["function"] != GO_RUNTIME_SITE).map(|s| int(&s["live"])).sum();
        assert_eq!(ours, n, "{bin}: {live:#}");
        let recv = at_line(&live, "dump.go", source_line("fixtures/go/dump.go", "go dumpRecv(ch)"));
        assert_eq!(int(&recv["live"]), 300, "{bin}");
        assert_eq!(int(&recv["waits_read"]), 300, "{bin}: every goroutine's stack read");
        assert_eq!(recv["stuck_at"][0]["line"], recv_line, "{bin}: {recv:#}");
        assert_eq!(int(&at_line(&live, "dump.go", source_line("fixtures/go/dump.go", "go dumpLock(mu)"))["live"]), 150, "{bin}");
        assert_eq!(int(&named(&live, "main goroutine")["live"]), 1, "{bin}: the main goroutine is its own site");
        let dir = tmpdir(bin);
        let core = gcore(fx.pid, &dir);
        let from_core = dump_json(&["--core", core.to_str().unwrap()]);
        assert_eq!(by_site(&from_core), by_site(&live), "{bin}: the core's dump equals the live one");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Restores the kernel's core pattern when dropped.
struct CorePattern(String);

impl Drop for CorePattern {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/core_pattern", &self.0);
    }
}

/// A Go program that crashed (GOTRACEBACK=crash, SIGQUIT) leaves a kernel core: its dump equals
/// the live dump taken just before the crash.
#[test]
fn a_go_crash_core_dumps_as_the_process_did() {
    let dir = tmpdir("crash");
    let old = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    if std::fs::write("/proc/sys/kernel/core_pattern", format!("{}/core.%p", dir.display())).is_err() {
        return common::skip_or_fail("a_go_crash_core_dumps_as_the_process_did", "cannot set /proc/sys/kernel/core_pattern (not root?)");
    }
    let _restore = CorePattern(old.trim().to_string());
    let bin = fixture("go-latest");
    // (the crash's goroutine traceback goes to stderr: to /dev/null, not a pipe nobody drains)
    let sh = format!("ulimit -c unlimited && exec {} dump-target 200 2>/dev/null", bin.display());
    let (mut fx, n) = Fixture::start_at(Path::new("/bin/sh"), &["-c", &sh], &[("GOTRACEBACK", "crash")], Some("goroutines="));
    assert!(n.is_some());
    let live = dump_json(&["--pid", &fx.pid.to_string()]);
    // SAFETY: a signal to the fixture we started.
    unsafe { libc::kill(fx.pid as i32, libc::SIGQUIT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let core = dir.join(format!("core.{}", fx.pid));
    while fx.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    while !core.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(core.exists(), "no core at {} after SIGQUIT with GOTRACEBACK=crash", core.display());
    let from_core = dump_json(&["--core", core.to_str().unwrap(), "--exe", bin.to_str().unwrap()]);
    assert_eq!(by_site(&from_core), by_site(&live), "the crash core's dump equals the live one");
    let _ = std::fs::remove_dir_all(dir);
}

/// Two dumps of a leaking program 10 s apart: `--diff` flags exactly its leaking site, with
/// the growth per hour; `--fail-on-leak` exits 4.
#[test]
fn diff_of_two_dumps_flags_exactly_the_leaking_site() {
    let fx = Fixture::start("tokio-latest", &["recv-no-sender", "--rate", "20"]);
    let dir = tmpdir("diff");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let pid = fx.pid.to_string();
    let ok = |p: &Path| leakprof().args(["dump", "--pid", &pid, "--format", "json", "-o", p.to_str().unwrap()]).status().unwrap().success();
    assert!(ok(&a));
    std::thread::sleep(Duration::from_secs(10));
    assert!(ok(&b));
    let out = leakprof().args(["dump", "--diff", a.to_str().unwrap(), b.to_str().unwrap(), "--format", "json", "--fail-on-leak"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let grown: Vec<&str> = d["grown"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    assert_eq!(grown.len(), 1, "{d:#}");
    assert!(grown[0].contains("leaks::recv_no_sender"), "{d:#}");
    let per_hour = d["sites"][0]["change_per_hour"].as_f64().unwrap();
    // 20 per second, give or take the interval's edges
    assert!((40_000.0..=100_000.0).contains(&per_hour), "{d:#}");
    let text = String::from_utf8_lossy(&leakprof().args(["dump", "--diff", a.to_str().unwrap(), b.to_str().unwrap()]).output().unwrap().stdout).to_string();
    assert!(text.contains("GREW: 1 site(s)"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Hostile and mismatched cores: one clear sentence each.
#[test]
fn bad_cores_get_one_clear_sentence_each() {
    let fx = Fixture::start("tokio-latest", &["dump-target", "--backlog", "10"]);
    std::thread::sleep(Duration::from_millis(500));
    let dir = tmpdir("bad");
    let core = gcore(fx.pid, &dir);
    // cut short, as by a disk that filled up while the kernel wrote it
    let bytes = std::fs::read(&core).unwrap();
    let cut = dir.join("cut.core");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = dump_error(&["--core", cut.to_str().unwrap()]);
    assert!(e.contains("truncated"), "{e}");
    // another program's executable
    let other = fixture("go-latest");
    let e = dump_error(&["--core", core.to_str().unwrap(), "--exe", other.to_str().unwrap()]);
    assert!(e.contains("build id") && e.contains("--exe"), "{e}");
    // not a core at all
    let e = dump_error(&["--core", other.to_str().unwrap()]);
    assert!(e.contains("not a core"), "{e}");
    // a dump --diff of something that is not a dump
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"schema\": \"x\"}").unwrap();
    let e = dump_error(&["--diff", junk.to_str().unwrap(), junk.to_str().unwrap()]);
    assert!(e.contains("not a leakprof dump"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
