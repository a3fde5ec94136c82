//! `leakprof dump`: every task, goroutine and blocked thread of a process at one moment, by spawn
//! site (or wait site), with where they wait: read from a live process without stopping it, or
//! from a core file. Nothing is judged over time; two dumps compared ([`diff`]) give the sites
//! that grew between them. This file is the dump's model (JSON, read back by `--diff`).
pub mod command;
pub mod diff;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use text::render_text;

use crate::model::{AgeSpread, BytesPerTask, CensusStats, StackFrame, StuckAt, WaitStack};

pub const SCHEMA: &str = "leakprof-dump";
pub const SCHEMA_VERSION: u32 = 1;

/// One dump of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dump {
    pub schema: String,
    pub schema_version: u32,
    pub leakprof_version: String,
    /// Wall-clock time of the dump, seconds since the epoch: when the live process was read, or
    /// when the core file was written (its modification time).
    pub taken_unix_s: f64,
    pub source: DumpSource,
    /// "tokio", "go", or "native" (blocked threads only).
    pub runtime: String,
    pub runtime_version: Option<String>,
    pub completeness: Completeness,
    /// Task or goroutine sites, most live first.
    pub sites: Vec<DumpSite>,
    /// Threads blocked in syscalls, by wait site, most first (live processes).
    pub threads: Vec<DumpThreads>,
    pub warnings: Vec<String>,
}

/// What was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpSource {
    /// "process" or "core".
    pub kind: String,
    /// The process's pid (a core: the pid it had).
    pub pid: u32,
    pub exe: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub core: Option<String>,
    /// The separate debug file symbols came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub symbols_file: Option<String>,
}

/// How complete the dump is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completeness {
    /// Whether the target was stopped for the dump: never (its memory is read while it runs).
    pub target_paused: bool,
    /// Tasks or goroutines counted.
    pub tasks: u64,
    /// Of those, the waiting ones, and the ones whose wait was read (at most
    /// `waits_per_site_limit` per site) and could not be decoded.
    pub waiting: u64,
    pub waits_read: u64,
    pub waits_undecoded: u64,
    pub waits_per_site_limit: usize,
    /// The time the dump took, ms (reading, naming, decoding waits).
    pub elapsed_ms: f64,
    /// tokio: how its task lists were walked (whether to their end, the runtime's own count).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub census: Option<CensusStats>,
}

/// One spawn site: its live tasks and where they wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpSite {
    /// tokio: the task's future type; Go: the function the goroutines run.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub live: i64,
    /// Live tasks by state (tokio: idle/running/notified/queued; Go: the wait reason).
    pub states: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ages: Option<AgeSpread>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes_per_task: Option<BytesPerTask>,
    /// live x the median measured bytes per task.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes_estimate: Option<u64>,
    /// Waiting tasks whose wait was read, and of those the ones not decoded.
    pub waits_read: u64,
    pub waits_undecoded: u64,
    /// "dwarf", "code" (tokio), "stack" (Go).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waits_decoded_by: Option<String>,
    /// Where they wait, most first.
    pub stuck_at: Vec<StuckAt>,
    /// Every distinct await chain or goroutine stack read, innermost first, most common first.
    pub stacks: Vec<WaitStack>,
}

impl DumpSite {
    /// The name sites are matched by across dumps (addresses differ between processes).
    pub fn label(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{} ({f}:{l})", self.function),
            _ => self.function.clone(),
        }
    }
}

/// Threads waiting at one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpThreads {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// "wait" (a lock, a condvar, a read...) or "runtime_idle" (the runtime's own parked workers).
    pub kind: String,
    pub syscall: String,
    pub syscall_name: String,
    pub threads: i64,
    pub longest_wait_s: f64,
    pub stack: Vec<StackFrame>,
}

impl Dump {
    /// The JSON text of a dump.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a dump serializes")
    }

    /// Reads a dump written by `leakprof dump --format json`.
    pub fn from_json(text: &str, path: &str) -> anyhow::Result<Dump> {
        let d: Dump = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{path} is not a leakprof dump ({e}): write one with `leakprof dump --pid PID --format json -o FILE`"))?;
        if d.schema != SCHEMA {
            anyhow::bail!("{path} is a {:?} document, not a leakprof dump", d.schema);
        }
        if d.schema_version > SCHEMA_VERSION {
            anyhow::bail!("{path} is a dump of schema version {} (this leakprof reads up to {SCHEMA_VERSION}): use a newer leakprof", d.schema_version);
        }
        Ok(d)
    }
}

/// Dumps for the unit tests of the comparison and the output formats.
#[cfg(test)]
pub mod tests {
    use super::*;

    /// A dump taken at `t` of sites (function, live), each at src/main.rs:1.
    pub fn dump(t: f64, sites: &[(&str, i64)]) -> Dump {
        Dump {
            schema: crate::dump::SCHEMA.into(),
            schema_version: 1,
            leakprof_version: "x".into(),
            taken_unix_s: t,
            source: DumpSource { kind: "process".into(), pid: 7, exe: "/app".into(), core: None, symbols_file: None },
            runtime: "tokio".into(),
            runtime_version: None,
            completeness: Completeness {
                target_paused: false,
                tasks: 0,
                waiting: 0,
                waits_read: 0,
                waits_undecoded: 0,
                waits_per_site_limit: 0,
                elapsed_ms: 0.0,
                census: None,
            },
            sites: sites
                .iter()
                .map(|&(f, live)| DumpSite {
                    function: f.into(),
                    file: Some("src/main.rs".into()),
                    line: Some(1),
                    live,
                    states: Default::default(),
                    ages: None,
                    bytes_per_task: None,
                    bytes_estimate: None,
                    waits_read: 0,
                    waits_undecoded: 0,
                    waits_decoded_by: None,
                    stuck_at: vec![],
                    stacks: vec![],
                })
                .collect(),
            threads: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn text_groups_every_stack_under_its_site() {
        let mut d = dump(0.0, &[("app::conn", 5), ("app::idle", 2)]);
        let f = |n: &str| StackFrame { function: n.into(), file: Some("src/conn.rs".into()), line: Some(9) };
        d.sites[0].stacks = vec![WaitStack { tasks: 4, frames: vec![f("app::read"), f("app::conn")] }, WaitStack { tasks: 1, frames: vec![f("app::write")] }];
        d.sites[0].waits_read = 5;
        d.completeness.tasks = 7;
        let t = render_text(&d);
        assert!(t.contains("tokio, 7 tasks, 2 sites"), "{t}");
        assert!(t.contains("the process was not stopped"), "{t}");
        let conn = t.find("app::conn (src/main.rs:1)").unwrap();
        let four = t.find("         4 | app::read (src/conn.rs:9)").unwrap();
        let one = t.find("         1 | app::write").unwrap();
        let idle = t.find("app::idle").unwrap();
        assert!(conn < four && four < one && one < idle, "each stack under its site, most first: {t}");
    }

    #[test]
    fn pprof_puts_each_stack_under_its_site_and_the_unread_rest_at_the_site() {
        use prost::Message as _;
        use std::io::Read as _;
        let mut d = dump(0.0, &[("app::conn", 5)]);
        let f = |n: &str| StackFrame { function: n.into(), file: None, line: None };
        d.sites[0].stacks = vec![WaitStack { tasks: 3, frames: vec![f("app::read")] }];
        let gz = crate::report::pprof::dump_to_pprof(&d);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut raw).unwrap();
        let p = crate::report::pprof::proto::Profile::decode(raw.as_slice()).unwrap();
        let tasks: Vec<i64> = p.sample.iter().map(|s| s.value[0]).collect();
        assert_eq!(tasks, vec![3, 2], "3 by their stack, the 2 unread at the site alone");
        assert_eq!(p.sample[0].location_id.len(), 2, "the stack's frame, then the site's at the root");
        assert_eq!(p.sample[1].location_id.len(), 1);
    }
}
