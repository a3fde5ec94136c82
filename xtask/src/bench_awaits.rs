//! `cargo xtask bench-awaits`: the machine-code await decoder, measured.
//! 1. Per binary (the fixtures' build profiles, tokio versions, mini-redis): the one-time
//!    analysis (ms, RSS) and decoding 32 tasks per site on 10 and 100 sites from memory
//!    (`profiler/examples/code_awaits.rs`).
//! 2. Per build profile, live: the classic leaks of fixtures/tokio-src/leaks.rs each run for a
//!    few seconds and reported after 3 samples; the share of sampled tasks whose await was decoded
//!    and the time the last sample spent on it (the census line of the report; the one-time
//!    reading of the code and line tables is in the first samples, and in table 1).
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{demo::start_fixture, fixtures, util};

const CLASSIC: [&str; 9] = [
    "mixed",
    "recv-no-sender",
    "send-no-receiver",
    "mutex-held",
    "barrier",
    "request-no-timeout",
    "infinite-loop",
    "timeout-abandons-worker",
    "range-unclosed",
];

pub fn run(root: &Path) -> Result<()> {
    util::setup(root)?;
    let bins = fixtures::build(root)?;
    util::cargo(root, &["build", "--release", "--quiet", "-p", "profiler", "--bins", "--example", "code_awaits"], &[])?;
    let leakprof = root.join("target/release/leakprof");
    let b = |n: &str| bins.join(n).display().to_string();
    println!("\none-time analysis and decoding from memory, per binary:");
    let status = Command::new(root.join("target/release/examples/code_awaits"))
        .args([
            b("tokio-latest"),
            b("tokio-latest-debuginfo"),
            b("tokio-latest-lto"),
            b("tokio-latest-os"),
            format!("{}={}", b("tokio-latest-stripped"), b("tokio-latest")),
            b("tokio-1.38"),
            b("tokio-1.28"),
            b("mini-redis"),
        ])
        .status()?;
    anyhow::ensure!(status.success(), "code_awaits failed");

    println!("\nlive, the 9 classic leaks, one report each:");
    println!("{:<26} {:>8} {:>8} {:>8} {:>17}", "build", "sampled", "decoded", "share", "last_sample_ms");
    let profiles: [(&str, &str, &[&str]); 7] = [
        ("default release", "tokio-latest", &[]),
        ("opt-level = \"s\"", "tokio-latest-os", &[]),
        ("line-tables-only", "tokio-latest-debuginfo", &[]),
        ("fat LTO + panic=abort", "tokio-latest-lto", &[]),
        ("stripped (strip-all)", "tokio-latest-stripped", &[]),
        ("tokio 1.38", "tokio-1.38", &[]),
        ("debug = 2, code decoder", "tokio-latest-debug2", &["--await-decoder", "code"]),
    ];
    for (label, bin, extra) in profiles {
        let (mut sampled, mut decoded, mut ms) = (0u64, 0u64, 0.0f64);
        for scenario in CLASSIC {
            let (guard, pid, _out) = start_fixture(&bins.join(bin), &[scenario], Stdio::null())?;
            std::thread::sleep(Duration::from_millis(1500));
            let pid = pid.to_string();
            let out = Command::new(&leakprof)
                .args(["--pid", &pid, "--duration", "3", "--format", "json", "--quiet", "--no-threads"])
                .args(extra)
                .output()?;
            drop(guard);
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| format!("{bin} {scenario}: not JSON"))?;
            let c = &r["collection"]["census"];
            sampled += c["where_stuck_sampled"].as_u64().unwrap_or(0);
            decoded += c["where_stuck_decoded"].as_u64().unwrap_or(0);
            ms += c["where_stuck_ms"].as_f64().unwrap_or(0.0);
        }
        let share = if sampled > 0 { 100.0 * decoded as f64 / sampled as f64 } else { f64::NAN };
        println!("{label:<26} {sampled:>8} {decoded:>8} {share:>7.1}% {:>17.2}", ms / CLASSIC.len() as f64);
    }
    Ok(())
}
