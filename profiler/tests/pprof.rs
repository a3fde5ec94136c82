//! Root-only: `--format pprof` writes a profile that `go tool pprof` reads.
mod common;

use std::process::Command;

use common::*;

const GO: &str = "/usr/lib/go-1.19/bin/go";

/// `go tool pprof ARGS FILE` with a throwaway environment; None (skip) without Go outside CI.
fn go_pprof(args: &[&str], file: &std::path::Path) -> Option<String> {
    if !std::path::Path::new(GO).exists() {
        common::skip_or_fail("go_pprof", &format!("{GO} is missing (scripts/setup.sh installs golang-1.19-go)"));
        return None;
    }
    let tmp = std::env::temp_dir().join(format!("leakprof-go-{}", std::process::id()));
    let out = Command::new(GO)
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("HOME", &tmp)
        .env("GOCACHE", tmp.join("cache"))
        .env("GOPATH", tmp.join("path"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .output()
        .expect("go tool pprof runs");
    assert!(out.status.success(), "go tool pprof failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn go_tool_pprof_reads_live_tasks_by_spawn_stack() {
    if !bpf_available("go_tool_pprof_reads_live_tasks_by_spawn_stack") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakprof-pprof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leaks.pb.gz");
    let bin = fixture("tokio-latest");
    let out = run(&[
        // spawn stacks come from the probes
        "run", "--probes", "--duration", "4", "--quiet", "--format", "pprof", "-o", file.to_str().unwrap(), "--",
        bin.to_str().unwrap(), "two-callers",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let Some(top) = go_pprof(&["-top", "-sample_index=live_tasks"], &file) else {
        return;
    };
    let line = top
        .lines()
        .find(|l| l.contains("tokio_fixture::stacks::shared_job"))
        .unwrap_or_else(|| panic!("leaking site missing from pprof -top:\n{top}"));
    let flat: i64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(flat >= 40, "{line}");
    // the spawn path is in the stacks: the leaky caller appears under the future
    let traces = go_pprof(&["-traces", "-sample_index=live_tasks"], &file).unwrap();
    assert!(traces.contains("caller_leaky"), "{traces}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn go_tool_pprof_shows_goroutines_by_the_stack_they_wait_in() {
    if !bpf_available("go_tool_pprof_shows_goroutines_by_the_stack_they_wait_in") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakprof-pprof-go-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("goroutines.pb.gz");
    let fx = Fixture::start("go-latest-stripped", &["send-no-receiver", "20"]);
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "3", "--quiet", "--format", "pprof", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let Some(top) = go_pprof(&["-top", "-sample_index=live_tasks"], &file) else {
        return;
    };
    // the leaf of the leaking goroutines' stacks is where they park; the sender is on the stack
    assert!(top.contains("runtime.gopark"), "{top}");
    let traces = go_pprof(&["-traces", "-sample_index=live_tasks"], &file).unwrap();
    assert!(traces.contains("runtime.chansend1") && traces.contains("main.queryAll"), "{traces}");
    let lines = go_pprof(&["-top", "-cum", "-lines", "-sample_index=live_tasks"], &file).unwrap();
    assert!(lines.contains("leaks.go:46"), "the blocking line is in the profile:\n{lines}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `-sample_index=bytes` ranks sites by the memory their tasks hold: the 64 KiB futures' site
/// first, far above the 1 KiB one spawned as often.
#[test]
fn go_tool_pprof_ranks_sites_by_bytes() {
    if !bpf_available("go_tool_pprof_ranks_sites_by_bytes") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakprof-pprof-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bytes.pb.gz");
    let (fx, _) = Fixture::start_with("tokio-latest", &["big-futures", "--rate", "10"], &[], Some("future_bytes"));
    let out = run(&["--pid", &fx.pid.to_string(), "--duration", "3", "--quiet", "--format", "pprof", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let Some(top) = go_pprof(&["-top", "-sample_index=bytes"], &file) else {
        return;
    };
    let row = |name: &str| top.lines().position(|l| l.contains(name)).unwrap_or_else(|| panic!("no {name} in:\n{top}"));
    assert!(row("hold_64k") < row("hold_1k"), "the 64 KiB site holds more:\n{top}");
    assert!(top.contains("MB") || top.contains("kB"), "bytes are shown as bytes:\n{top}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pprof_needs_an_output_file() {
    let out = run(&["--pid", "1", "--format", "pprof"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-o FILE"));
}
