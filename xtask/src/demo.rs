//! `cargo xtask demo`: leakprof on a bundled leaking tokio program.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{fixtures, util};

/// Kills the child when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a fixture and waits for its `ready pid=N` line.
pub fn start_fixture(
    bin: &Path,
    args: &[&str],
    stdin: Stdio,
) -> Result<(Guard, u32, BufReader<ChildStdout>)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line)?;
    let Some(pid) = line.strip_prefix("ready pid=").and_then(|r| r.split_whitespace().next()) else {
        let _ = child.kill();
        bail!("{} did not say it was ready: {line:?}", bin.display());
    };
    let pid = pid.parse()?;
    Ok((Guard(child), pid, out))
}

/// The demo needs only the stable toolchain: the census-only leakprof (no eBPF toolchain, no
/// apt package) and the one fixture it watches.
pub fn run(root: &Path, seconds: u32) -> Result<()> {
    // full debug info: where each leaked task waits; the leak runs 3 s before leakprof attaches,
    // so the census counts a backlog from its first sample
    let fixture = fixtures::build_one(root, "tokio-latest-debug2")?;
    util::cargo(root, &["build", "--release", "--quiet", "--locked", "-p", "profiler", "--no-default-features"], &[])?;
    let (_guard, pid, _out) = start_fixture(&fixture, &["mixed"], Stdio::null())?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    eprintln!("[xtask] demo target: {} mixed (pid {pid}, leaking for 3 s); watching it for {seconds} s", fixture.display());
    util::run(
        Command::new(root.join("target/release/leakprof"))
            .args(["--pid", &pid.to_string(), "--duration", &seconds.to_string()]),
    )
}
