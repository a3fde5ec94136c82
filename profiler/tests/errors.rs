//! Bad input: one clear sentence, a non-zero exit, nothing attached.
mod common;

use common::*;

fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let out = run(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn no_such_pid() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("no_such_pid") {
        return;
    }
    let (code, err) = stderr_of(&["--pid", "999999999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no process with pid 999999999"), "{err}");
}

#[test]
fn not_root() {
    // Runs leakprof as `nobody`; needs root to switch users, else nothing to check. Under CI
    // (CI=true) that FAILS the test instead of skipping it.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("not_root", "the test switches to user nobody, which needs root");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_leakprof"))
        .args(["--pid", "1"])
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // another user's process: the missing right, and what to do
    assert!(err.contains("cannot read the memory of pid 1") && err.contains("CAP_SYS_PTRACE") && err.contains("sudo"), "{err}");
}

/// `setpriv` as `nobody` with every capability dropped, running `args`.
fn as_nobody(prog: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]).arg(prog).args(args);
    c
}

/// The census needs only the right to read the target's memory: an unprivileged user profiles
/// its own tokio, Go and native programs; `--probes` is refused with the capability it needs.
#[test]
fn an_unprivileged_user_profiles_its_own_processes_by_census() {
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("an_unprivileged_user_profiles_its_own_processes_by_census", "the test switches to user nobody, which needs root");
        return;
    }
    let leakprof = std::path::Path::new(env!("CARGO_BIN_EXE_leakprof"));
    for (fixture, args, extra, needle) in [
        ("tokio-latest", &["mixed"][..], &[][..], "never_answered"),
        ("go-latest", &["recv-no-sender"][..], &[][..], "recvNoSender"),
        ("plain", &["mutex-leak", "4"][..], &["--threads"][..], "wait_for_config"),
    ] {
        let mut child = as_nobody(&fixture_dir().join(fixture), args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        let pid = line.strip_prefix("ready pid=").and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("{fixture}: {line:?}")).to_string();
        let out = as_nobody(leakprof, &[&["--pid", &pid, "--duration", "10", "--format", "json"][..], extra].concat()).output().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{fixture}: {err}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{fixture}: {e}: {err}"));
        let leaking: Vec<&str> = r["sites"]
            .as_array()
            .unwrap()
            .iter()
            .chain(r["blocked"].as_array().unwrap())
            .filter(|s| s["verdict"] == "leak")
            .map(|s| s["function"].as_str().unwrap())
            .collect();
        assert!(leaking.iter().any(|f| f.contains(needle)), "{fixture}: no leak at {needle}: {leaking:?}\n{err}");
    }
    // --probes needs BPF: refused with the capability to add
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let out = as_nobody(leakprof, &["--pid", &fx.pid.to_string(), "--probes", "--duration", "2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--probes loads eBPF programs") && err.contains("CAP_BPF"), "{err}");
}

/// Root with every capability but CAP_SYS_PTRACE dropped: the census of another user's process
/// works; --probes is refused.
#[test]
fn the_census_needs_only_cap_sys_ptrace() {
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("the_census_needs_only_cap_sys_ptrace", "the test drops capabilities, which needs root");
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let ptrace_only = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--inh-caps=-all,+sys_ptrace", "--ambient-caps=-all,+sys_ptrace", "--bounding-set=-all,+sys_ptrace", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_leakprof"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = ptrace_only(&["--pid", &fx.pid.to_string(), "--duration", "10", "--format", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(site(&r, "never_answered")["verdict"], "leak", "{err}");
    let out = ptrace_only(&["--pid", &fx.pid.to_string(), "--probes", "--duration", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--probes loads eBPF programs"), "{err}");
}

#[test]
fn not_a_tokio_program() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("not_a_tokio_program") {
        return;
    }
    let fx = Fixture::start("plain", &[]);
    let (code, err) = stderr_of(&["--pid", &fx.pid.to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not look like a tokio program"), "{err}");
}

#[test]
fn stripped_binary_is_read_by_the_census_but_cannot_be_probed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("stripped_binary_is_read_by_the_census_but_cannot_be_probed") {
        return;
    }
    let fx = Fixture::start("tokio-latest-stripped", &["mixed"]);
    // probes need the symbols of their attach points
    let (code, err) = stderr_of(&["--pid", &fx.pid.to_string(), "--probes", "--duration", "2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("stripped"), "{err}");
    // the census finds the task vtables by their shape
    let r = json_report(fx.pid, 8);
    assert_eq!(r["collection"]["census"]["runtimes"], 1, "{}", r["collection"]);
    let leaks: Vec<&serde_json::Value> =
        r["sites"].as_array().unwrap().iter().filter(|s| s["verdict"] == "leak").collect();
    assert_eq!(leaks.len(), 1, "{}", r["sites"]);
    // no symbol names it: its async fn's own location, read from its code (never_answered)
    assert!(leaks[0]["function"].as_str().unwrap().starts_with("async fn at "), "{}", leaks[0]);
    assert!(leaks[0]["file"].as_str().is_some_and(|f| f.ends_with("leaks.rs")), "{}", leaks[0]);
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tokio-src/leaks.rs")).unwrap();
    let line = src.lines().position(|l| l.contains("async fn never_answered(")).unwrap() + 1;
    assert_eq!(leaks[0]["line"], line, "{}", leaks[0]);
}

#[test]
fn bad_flags_are_usage_errors() {
    let (code, err) = stderr_of(&["--pid", "1", "--interval", "-3"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _) = stderr_of(&[]);
    assert_eq!(code, Some(2));
}

/// `leakprof ARGS` with a deadline: (exit code, stderr, stdout, how long it took).
fn timed(args: &[&str]) -> (Option<i32>, String, String, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let out = run(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), String::from_utf8_lossy(&out.stdout).into_owned(), t0.elapsed())
}

#[test]
fn target_exiting_during_attach_is_a_clear_message_never_a_hang() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("target_exiting_during_attach_is_a_clear_message_never_a_hang") {
        return;
    }
    let (progs, links) = (bpf_ids(BPF_PROG_GET_NEXT_ID), bpf_ids(BPF_LINK_GET_NEXT_ID));
    // the target ends at varying points of the attach, probes and census alike
    for (i, delay) in [0.05f64, 0.2, 0.5, 1.0].into_iter().enumerate() {
        let mut fx = Fixture::start("tokio-latest", &["mixed", "--seconds", &delay.to_string()]);
        let probes = if i % 2 == 0 { "--probes" } else { "--no-threads" };
        let (code, err, _, took) = timed(&["--pid", &fx.pid.to_string(), probes, "--duration", "5", "--quiet"]);
        let _ = fx.child.wait();
        assert!(took < std::time::Duration::from_secs(20), "took {took:?}: {err}");
        match code {
            // attached, then it ended: the report, and why it ended
            Some(3) => assert!(err.contains("exited"), "{err}"),
            // it ended before or while attaching: one sentence naming the pid
            Some(1) => assert!(err.contains(&fx.pid.to_string()), "{err}"),
            other => panic!("exit {other:?} when the target ended after {delay} s: {err}"),
        }
        assert_kernel_lists_back(&progs, &links);
    }
}

/// Nothing left attached: the kernel's lists of BPF programs and links are as before (the kernel
/// frees a closed program or link a moment later: allow it 3 s).
fn assert_kernel_lists_back(progs: &std::collections::BTreeSet<u32>, links: &std::collections::BTreeSet<u32>) {
    let t0 = std::time::Instant::now();
    loop {
        let (p, l) = (bpf_ids(BPF_PROG_GET_NEXT_ID), bpf_ids(BPF_LINK_GET_NEXT_ID));
        if p.is_subset(progs) && l.is_subset(links) {
            return;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(3),
            "left in the kernel: programs {:?}, links {:?}",
            p.difference(progs).collect::<Vec<_>>(),
            l.difference(links).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Tests that load BPF run one at a time here, so the kernel's lists change only by their doing.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn target_that_execs_ends_the_run_with_its_report() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("target_that_execs_ends_the_run_with_its_report") {
        return;
    }
    let fx = Fixture::start("plain", &["exec-after", "2"]);
    let (code, err, out, took) = timed(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "20", "--format", "json", "--quiet"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(took < std::time::Duration::from_secs(15), "the exec was not noticed: {took:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["collection"]["ended"], "target_exited");
    assert!(r["warnings"].to_string().contains("replaced its program (exec)"), "{}", r["warnings"]);
}

#[test]
fn ten_thousand_threads_are_read_in_bounded_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("ten_thousand_threads_are_read_in_bounded_time") {
        return;
    }
    let (fx, _) = Fixture::start_with("plain", &["many-threads", "10000"], &[], Some("threads ready"));
    let (code, err, out, took) = timed(&["--pid", &fx.pid.to_string(), "--threads", "--duration", "4", "--format", "json", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let blocked: i64 = r["blocked"].as_array().unwrap().iter().map(|b| b["threads"].as_i64().unwrap_or(0)).max().unwrap_or(0);
    assert!(blocked >= 9_000, "the 10,000 waiting threads are seen: {}", r["blocked"]);
}

/// The target exits and another process of the same program gets its pid before leakprof looks
/// again (the kernel's `ns_last_pid` makes the next process take it): leakprof ends with the
/// target's report instead of reading the newcomer as if it were the target.
#[test]
fn a_pid_reused_by_another_process_is_not_taken_for_the_target() {
    use std::{process::Stdio, time::{Duration, Instant}};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !bpf_available("a_pid_reused_by_another_process_is_not_taken_for_the_target") {
        return;
    }
    let (progs, links) = (bpf_ids(BPF_PROG_GET_NEXT_ID), bpf_ids(BPF_LINK_GET_NEXT_ID));
    for _attempt in 0..5 {
        let mut fx = Fixture::start("tokio-latest", &["mixed"]);
        let pid = fx.pid;
        let lp = leakprof()
            .args(["--pid", &pid.to_string(), "--probes", "--interval", "2s", "--duration", "40", "--format", "json", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(5)); // attached and sampled
        // between two samples (2 s apart): the target ends and its pid goes to a twin at once
        let t0 = Instant::now();
        let _ = fx.child.kill();
        let _ = fx.child.wait();
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("root can set ns_last_pid");
        let twin = Fixture::start("tokio-latest", &["mixed"]);
        let took_pid = t0.elapsed();
        let out = lp.wait_with_output().unwrap();
        let (stderr, stdout) = (String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        if twin.pid != pid || took_pid > Duration::from_millis(500) {
            eprintln!("attempt lost the race: twin got pid {} (wanted {pid}) after {took_pid:?}", twin.pid);
            continue;
        }
        assert_eq!(out.status.code(), Some(3), "the run went on with another process under pid {pid}: {stderr}");
        assert!(t0.elapsed() < Duration::from_secs(10), "the target's end was noticed after {:?}", t0.elapsed());
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["collection"]["ended"], "target_exited", "{stdout}");
        assert_kernel_lists_back(&progs, &links);
        return;
    }
    panic!("no attempt got the target's pid for the twin (other processes took it)");
}
