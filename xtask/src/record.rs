//! `cargo xtask record-series`: records the detector's inputs (`leakprof --record`) while the
//! fixture scenarios run, into profiler/tests/series/, the recorded half of the detector corpus.
//! Each collection method is covered: tokio probes (newest and 1.38), Go census (1.19 and newest,
//! attached with --pid at 5 and 10 leaks/s), Go probes, and threads blocked in futex waits.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Result};

use crate::{demo::start_fixture, fixtures, util};

const TOKIO_LEAKS: &[&str] = &[
    "recv-no-sender", "send-no-receiver", "mutex-held", "barrier", "request-no-timeout", "infinite-loop",
    "timeout-abandons-worker", "range-unclosed", "mixed",
];
const TOKIO_HEALTHY: &[&str] = &["healthy-pool", "healthy-ramp", "healthy-bursts", "healthy-high-stable", "healthy-long-lived"];
const GO_SCENARIOS: &[&str] = &[
    "nil-send", "nil-recv", "send-no-receiver", "recv-no-sender", "mutex-never-unlocked", "waitgroup-mismatch",
    "infinite-loop", "select-timeout-abandons-sender", "range-unclosed", "undrained-timer", "healthy-pool",
    "healthy-bursts",
];

/// One recording: its file name, and how to run it.
struct Job {
    name: String,
    how: How,
    /// Seconds watched, when not `--seconds` (a warm-up ramp needs to be seen level for a while).
    secs: Option<u32>,
}

enum How {
    /// `leakprof run FLAGS -- PROGRAM ARGS`: launched under leakprof.
    Run(Vec<String>, PathBuf, Vec<String>),
    /// `PROGRAM ARGS` started first, then `leakprof --pid`.
    Pid(PathBuf, Vec<String>),
}

fn jobs(bins: &Path) -> Vec<Job> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut v = Vec::new();
    for sc in TOKIO_LEAKS.iter().chain(TOKIO_HEALTHY) {
        v.push(Job { name: format!("tokio-latest-probes-{sc}"), how: How::Run(s(&["--probes"]), bins.join("tokio-latest"), s(&[sc])), secs: None });
        // the census, attached to the running program
        // a ramp watched from its start is judged once it has been level a while (see the corpus)
        let secs = (*sc == "healthy-ramp").then_some(30);
        v.push(Job { name: format!("tokio-latest-census-{sc}"), how: How::Pid(bins.join("tokio-latest"), s(&[sc])), secs });
    }
    for sc in ["mixed", "healthy-pool", "healthy-bursts"] {
        v.push(Job { name: format!("tokio-1.38-probes-{sc}"), how: How::Run(s(&["--probes"]), bins.join("tokio-1.38"), s(&[sc])), secs: None });
        v.push(Job { name: format!("tokio-1.28-census-{sc}"), how: How::Pid(bins.join("tokio-1.28"), s(&[sc])), secs: None });
    }
    v.push(Job {
        name: "tokio-latest-probes-mixed-rate2".into(),
        how: How::Run(s(&["--probes"]), bins.join("tokio-latest"), s(&["mixed", "--rate", "2"])),
        secs: None,
    });
    for (name, args) in [
        ("backlog-leak", &["backlog-leak", "--rate", "2"][..]),
        ("healthy-backlog", &["healthy-backlog"][..]),
        ("mixed-current-thread", &["mixed", "--current-thread"][..]),
    ] {
        v.push(Job { name: format!("tokio-latest-census-{name}"), how: How::Pid(bins.join("tokio-latest"), s(args)), secs: None });
    }
    for bin in ["go1.19", "go-latest"] {
        for rate in ["5", "10"] {
            for sc in GO_SCENARIOS {
                v.push(Job { name: format!("{bin}-census-{sc}-{rate}"), how: How::Pid(bins.join(bin), s(&[sc, rate])), secs: None });
            }
        }
    }
    for sc in ["nil-send", "recv-no-sender", "healthy-pool"] {
        v.push(Job {
            name: format!("go-latest-probes-{sc}"),
            how: How::Run(s(&["--probes"]), bins.join("go-latest"), s(&[sc, "10"])),
            secs: None,
        });
    }
    v.push(Job {
        name: "threads-tokio-blocking-mutex".into(),
        how: How::Run(vec![], bins.join("tokio-latest"), s(&["blocking-mutex", "--rate", "4"])),
        secs: None,
    });
    for sc in ["mutex-leak", "condvar-pool"] {
        v.push(Job { name: format!("threads-plain-{sc}"), how: How::Run(s(&["--threads"]), bins.join("plain"), s(&[sc, "4"])), secs: None });
    }
    v
}

pub fn run(root: &Path, seconds: u32, parallel: usize, only: Option<&str>) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    let out_dir = root.join("profiler/tests/series");
    std::fs::create_dir_all(&out_dir)?;
    let all: Vec<Job> = jobs(&bins).into_iter().filter(|j| only.is_none_or(|o| j.name.starts_with(o))).collect();
    let secs = seconds.to_string();
    for batch in all.chunks(parallel.max(1)) {
        let mut running = Vec::new();
        for job in batch {
            let file = out_dir.join(format!("{}.jsonl", job.name));
            let mut cmd = Command::new(&leakprof);
            let mut guard = None;
            match &job.how {
                How::Run(flags, ..) => {
                    cmd.arg("run").args(flags);
                }
                How::Pid(prog, args) => {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let (g, pid, out) = start_fixture(prog, &args, Stdio::null())?;
                    guard = Some((g, out));
                    cmd.args(["--pid", &pid.to_string()]);
                }
            }
            let secs = job.secs.map_or(secs.clone(), |n| n.to_string());
            cmd.args(["--duration", &secs, "--quiet", "--format", "json", "-o", "/dev/null", "--record"]).arg(&file);
            if let How::Run(_, prog, args) = &job.how {
                cmd.arg("--").arg(prog).args(args);
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            eprintln!("[xtask] recording {}", job.name);
            running.push((job.name.clone(), cmd.spawn()?, guard));
        }
        for (name, child, guard) in running {
            let out = child.wait_with_output()?;
            drop(guard);
            if !out.status.success() {
                bail!("recording {name} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    eprintln!("[xtask] {} recordings in {}", all.len(), out_dir.display());
    Ok(())
}
