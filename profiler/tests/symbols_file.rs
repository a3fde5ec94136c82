//! Separate debug files: a stripped executable whose symbols and DWARF are in another file is
//! profiled like the unstripped one, the file found by its .gnu_debuglink, by its build id, or
//! given with --symbols; a debug file of another build is refused. Root only (attaching).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leakprof-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts `bin mixed` (any path) and waits for its `ready` line.
fn start(bin: &Path) -> Fixture {
    let mut child = Command::new(bin).arg("mixed").stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("ready pid="), "{line}");
    let pid = child.id();
    Fixture { child, pid }
}

/// `leakprof --pid PID --probes --duration 8 --format json EXTRA...` with `env`.
fn probed(pid: u32, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let pid = pid.to_string();
    let mut args = vec!["--pid", &pid, "--probes", "--duration", "8", "--format", "json", "--quiet"];
    args.extend_from_slice(extra);
    leakprof().args(&args).envs(env.iter().copied()).output().unwrap()
}

/// The run found the leak at its named site with file:line, from the debug file's symbols and DWARF.
fn check_named(out: &std::process::Output, debug_file_like: &str) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used = r["target"]["symbols_file"].as_str().unwrap_or_default();
    assert!(used.contains(debug_file_like), "symbols from {used:?}, expected {debug_file_like}");
    assert_eq!(r["collection"]["method"], "census+uprobes", "probes need the symbols: {}", r["collection"]);
    let s = site(&r, "leaks::never_answered");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert!(s["file"].as_str().is_some_and(|f| f.ends_with("leaks.rs")), "DWARF lines from the debug file: {s}");
}

#[test]
fn debug_file_next_to_the_binary_is_found_by_its_debuglink() {
    if !bpf_available("debug_file_next_to_the_binary_is_found_by_its_debuglink") {
        return;
    }
    let fx = start(&fixture("tokio-latest-split"));
    std::thread::sleep(Duration::from_secs(1));
    check_named(&probed(fx.pid, &[], &[]), "tokio-latest-split.debug");
}

#[test]
fn debug_file_under_the_build_id_directory_is_found() {
    if !bpf_available("debug_file_under_the_build_id_directory_is_found") {
        return;
    }
    // the executable alone in a directory (its debuglink leads nowhere), the debug file under a
    // debug root by build id
    let dir = temp_dir("buildid");
    let exe = dir.join("app");
    std::fs::copy(fixture("tokio-latest-split"), &exe).unwrap();
    let id = leakprof::elf::debug_file::build_id(&std::fs::read(&exe).unwrap()).expect("the fixture has a build id");
    let h = leakprof::elf::debug_file::hex(&id);
    let root = dir.join("debug");
    let by_id = root.join(".build-id").join(&h[..2]);
    std::fs::create_dir_all(&by_id).unwrap();
    std::fs::copy(fixture("tokio-latest-split.debug"), by_id.join(format!("{}.debug", &h[2..]))).unwrap();
    let fx = start(&exe);
    std::thread::sleep(Duration::from_secs(1));
    check_named(&probed(fx.pid, &[], &[("LEAKPROF_DEBUG_ROOT", root.to_str().unwrap())]), ".build-id");
    drop(fx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn symbols_flag_gives_the_debug_file_and_a_mismatched_one_is_refused() {
    if !bpf_available("symbols_flag_gives_the_debug_file_and_a_mismatched_one_is_refused") {
        return;
    }
    let dir = temp_dir("symbols");
    let exe = dir.join("app");
    std::fs::copy(fixture("tokio-latest-split"), &exe).unwrap();
    let fx = start(&exe);
    std::thread::sleep(Duration::from_secs(1));
    let dbg = fixture("tokio-latest-split.debug");
    check_named(&probed(fx.pid, &["--symbols", dbg.to_str().unwrap()], &[]), "tokio-latest-split.debug");
    // another build's symbols: refused, with why
    let other = fixture("tokio-1.38");
    let out = probed(fx.pid, &["--symbols", other.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not belong to this executable") && err.contains("build id"), "{err}");
    drop(fx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stripped_with_no_debug_file_anywhere_names_the_three_ways() {
    if !bpf_available("stripped_with_no_debug_file_anywhere_names_the_three_ways") {
        return;
    }
    let fx = Fixture::start("tokio-latest-stripped", &["mixed"]);
    let out = probed(fx.pid, &[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for way in ["--symbols", ".build-id", ".gnu_debuglink"] {
        assert!(err.contains(way), "{way} not named: {err}");
    }
}
