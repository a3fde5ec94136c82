//! The kernel leakprof runs on: the features `--probes` needs, asked of this kernel, are the ones
//! its release should have, and it loads every one of leakprof's BPF programs (`leakprof
//! features`). Run on the host by the test command, and in
//! every kernel of the matrix by `cargo xtask test-kernels`.
mod common;

use common::{bpf_available, run};

/// One test at a time: each loads BPF programs, and one checks that none is left loaded after.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn features_are_those_of_the_kernel_release() {
    let _one = serial();
    if !bpf_available("features_are_those_of_the_kernel_release") {
        return;
    }
    let out = run(&["features", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let release = f["release"].as_str().unwrap().to_string();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap());
    let version = (v.next().unwrap(), v.next().unwrap());
    for feat in f["features"].as_array().unwrap() {
        let since = (feat["since"][0].as_u64().unwrap() as u32, feat["since"][1].as_u64().unwrap() as u32);
        if version >= since {
            assert_eq!(feat["present"], true, "kernel {release} should have {feat} (Linux {}.{}+)", since.0, since.1);
        }
    }
    // every one of leakprof's BPF programs is loaded (verified) by this kernel
    assert!(f.get("programs_unchecked").is_none(), "{f:#}");
    let progs = f["programs"].as_array().unwrap();
    assert!(progs.len() >= 9, "{f:#}");
    for p in progs {
        assert_eq!(p["loads"], true, "kernel {release} refused {p}");
    }
    // every feature --probes needs is there: the text says so, with the minimum
    let text = String::from_utf8(run(&["features"]).stdout).unwrap();
    assert!(text.contains("--probes: yes (needs Linux 5.8+)"), "{text}");
}

/// leakprof on `pid` with `args`: waits (however long attaching takes: a guest under emulation
/// is slow) for it to say it attached, lets it run `secs`, stops it with Ctrl-C; its exit status
/// and JSON report.
fn attached_run(pid: u32, args: &[&str], secs: u64) -> (std::process::ExitStatus, serde_json::Value) {
    use std::io::BufRead as _;
    let mut child = common::leakprof()
        .args(["--pid", &pid.to_string(), "--format", "json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            let out = child.wait_with_output().unwrap();
            panic!("leakprof ended before attaching ({}): {seen}{}", out.status, String::from_utf8_lossy(&out.stdout));
        }
        seen += &line;
        if line.contains("attached to pid") {
            break;
        }
    }
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    std::thread::sleep(std::time::Duration::from_secs(secs));
    // SAFETY: a signal to our own child
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let rest = drain.join().unwrap();
    let r = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no report ({e}): {seen}{rest}"));
    (out.status, r)
}

/// `--probes` on a tokio program: every uprobe program and the futex tracepoints run in this
/// kernel (births, finishes, futex waits, each program's runs in the kernel's statistics, births
/// through the mapped slots array), Ctrl-C ends it with the report, and nothing stays loaded.
#[test]
fn probes_on_tokio_run_and_detach_leaving_nothing() {
    let _one = serial();
    if !bpf_available("probes_on_tokio_run_and_detach_leaving_nothing") {
        return;
    }
    let (progs, links) = (common::bpf_ids(common::BPF_PROG_GET_NEXT_ID), common::bpf_ids(common::BPF_LINK_GET_NEXT_ID));
    let mut fx = common::Fixture::start("tokio-latest", &["mixed"]);
    let (status, r) = attached_run(fx.pid, &["--probes"], 4);
    assert!(status.success(), "{status}");
    assert_eq!(r["collection"]["ended"], "interrupted");
    assert_eq!(r["target"]["birth_point"], "bind_inner", "{}", r["target"]);
    let k = &r["kernel_counters"];
    for c in ["births", "finishes", "futex_wait_begin"] {
        assert!(k[c].as_u64().unwrap_or(0) > 0, "{c}: {k}");
    }
    let ran: Vec<&str> = r["collection"]["bpf_programs"]
        .as_array()
        .unwrap_or_else(|| panic!("no bpf_programs: {}", r["collection"]))
        .iter()
        .filter(|p| p["runs"].as_u64().unwrap_or(0) > 0)
        .filter_map(|p| p["program"].as_str())
        .collect();
    for p in ["task_birth_bind_inner", "task_finish_slot", "futex_enter", "futex_exit"] {
        assert!(ran.contains(&p), "{p} did not run: {ran:?}");
    }
    assert!(common::int(&common::site(&r, "never_answered")["live"]) > 0);
    assert!(fx.running(), "the target died under the probes");
    assert_eq!(common::bpf_ids(common::BPF_PROG_GET_NEXT_ID), progs, "programs left loaded");
    assert_eq!(common::bpf_ids(common::BPF_LINK_GET_NEXT_ID), links, "links left attached");
}

/// `--probes` on a Go program: the birth and exit uprobes run (no uretprobe on Go code).
#[test]
fn probes_on_go_count_births_and_exits() {
    let _one = serial();
    if !bpf_available("probes_on_go_count_births_and_exits") {
        return;
    }
    let mut fx = common::Fixture::start("go-latest", &["nil-send"]);
    let (status, r) = attached_run(fx.pid, &["--probes"], 4);
    assert!(status.success(), "{status}");
    assert_eq!(r["collection"]["method"], "uprobes");
    let k = &r["kernel_counters"];
    assert!(k["births"].as_u64().unwrap_or(0) > 0, "{k}");
    assert!(common::int(&common::site(&r, "main.shortRequest")["finished"]) > 0, "exits are seen");
    assert!(common::int(&common::site(&r, "main.nilSend")["live"]) > 0);
    assert!(fx.running(), "the target died under the probes");
}

/// The census (no BPF): tokio tasks, goroutines and blocked threads read from outside.
#[test]
fn the_census_reads_tokio_go_and_threads() {
    let _one = serial();
    if !bpf_available("the_census_reads_tokio_go_and_threads") {
        return;
    }
    let tokio = common::Fixture::start("tokio-latest", &["mixed"]);
    let (status, r) = attached_run(tokio.pid, &[], 3);
    assert!(status.success() && r["collection"]["method"] == "census", "{status} {}", r["collection"]);
    assert!(common::int(&r["collection"]["census"]["tasks_walked"]) > 0, "{}", r["collection"]);
    assert!(common::int(&common::site(&r, "never_answered")["live"]) > 0);
    let go = common::Fixture::start("go-latest", &["nil-send"]);
    let (status, r) = attached_run(go.pid, &[], 3);
    assert!(status.success(), "{status}");
    assert!(common::int(&common::site(&r, "main.nilSend")["live"]) > 0);
    let plain = common::Fixture::start("plain", &["mutex-leak", "4"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (status, r) = attached_run(plain.pid, &["--threads"], 3);
    assert!(status.success(), "{status}");
    let waits: i64 = r["blocked"].as_array().unwrap().iter().filter(|b| b["function"].as_str().is_some_and(|f| f.contains("wait_for_config"))).map(|b| common::int(&b["threads"])).sum();
    assert!(waits > 0, "{:#}", r["blocked"]);
}
