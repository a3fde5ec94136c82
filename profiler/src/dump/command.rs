//! `leakprof dump`: what to read (a pid, a core, two dumps to compare) and what to write.
use std::{
    path::Path,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, bail, Result};

use super::{diff, Dump};
use crate::{
    cli::DumpArgs,
    report::Format,
    session::{contained, Session},
};

/// The document to write and the exit status (4: `--fail-on-leak` and a site grew).
pub struct Output {
    pub doc: Vec<u8>,
    pub exit: i32,
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A dump of a live process: one census, the process never stopped.
pub fn dump_pid(args: &DumpArgs, pid: u32) -> Result<Dump> {
    let started = Instant::now();
    let taken = unix_s(SystemTime::now());
    let session = Session::attach(args.run_options(pid))?;
    contained(pid, || session.dump(taken, started, None))
}

/// A dump of a core file, its executable found through its notes or given.
pub fn dump_core(args: &DumpArgs, core: &Path) -> Result<Dump> {
    let started = Instant::now();
    let written = std::fs::metadata(core).and_then(|m| m.modified()).map(unix_s).unwrap_or(0.0);
    let name = core.display().to_string();
    contained(0, || {
        let target = crate::target::snapshot::open_core(core, args.exe.as_deref())?;
        let session = Session::attach_to(args.run_options(target.pid), target)?;
        session.dump(written, started, Some(name.clone()))
    })
}

/// One side of `--diff`: a JSON dump, or a core file (dumped now).
fn load(args: &DumpArgs, path: &Path) -> Result<Dump> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"\x7fELF") {
        return dump_core(args, path);
    }
    Dump::from_json(&String::from_utf8_lossy(&bytes), &path.display().to_string())
}

/// Runs the dump the arguments ask for.
pub fn run(args: &DumpArgs) -> Result<Output> {
    if let Some(paths) = &args.diff {
        let (a, b) = (load(args, &paths[0])?, load(args, &paths[1])?);
        let d = diff::diff(&a, &b);
        let doc = match args.format {
            Format::Text => diff::render_text(&d).into_bytes(),
            Format::Json => (serde_json::to_string_pretty(&d)? + "\n").into_bytes(),
            Format::Pprof => bail!("--diff writes text or json, not pprof"),
        };
        let exit = if args.fail_on_leak && !d.grown.is_empty() { 4 } else { 0 };
        return Ok(Output { doc, exit });
    }
    let dump = match (args.pid, &args.core) {
        (Some(pid), _) => dump_pid(args, pid)?,
        (None, Some(core)) => dump_core(args, core)?,
        (None, None) => bail!("say what to dump: --pid PID, --core FILE, or --diff A B"),
    };
    let doc = match args.format {
        Format::Text => super::render_text(&dump).into_bytes(),
        Format::Json => (dump.to_json() + "\n").into_bytes(),
        Format::Pprof => crate::report::pprof::dump_to_pprof(&dump),
    };
    Ok(Output { doc, exit: 0 })
}
