//! One census of every source of an attached session, nothing judged: a [`Dump`].
use std::time::Instant;

use anyhow::Result;

use super::Session;
use crate::{
    dump::{Completeness, Dump, DumpSite, DumpSource, DumpThreads, SCHEMA, SCHEMA_VERSION},
    model::WaitKind,
    runtimes::SourceKind,
};

impl Session {
    /// Reads every source once and describes every site with live tasks; `taken_unix_s`: when
    /// (a live process: now; a core: when it was written), `started`: when the dump began.
    pub fn dump(mut self, taken_unix_s: f64, started: Instant, core: Option<String>) -> Result<Dump> {
        let limit = self.opts.waits.per_site;
        let (mut sites, mut threads) = (Vec::new(), Vec::new());
        let (mut tasks, mut waiting, mut read, mut undecoded) = (0u64, 0u64, 0u64, 0u64);
        let mut warnings = Vec::new();
        for w in &mut self.sources {
            let sample = w.source.sample()?;
            warnings.extend(w.source.warnings());
            match w.source.kind() {
                SourceKind::Tasks => {
                    for obs in sample.sites.iter().filter(|o| o.live > 0) {
                        let name = w.source.name(obs.key);
                        let d = w.source.detail(obs.key, obs.live);
                        tasks += obs.live as u64;
                        waiting += obs.idle.map_or(0, |(idle, _)| idle);
                        read += d.stuck_sampled;
                        undecoded += d.stuck_undecoded;
                        let bytes_estimate = d.bytes.as_ref().map(|b| b.median.saturating_mul(obs.live as u64));
                        sites.push(DumpSite {
                            function: name.function,
                            file: name.file,
                            line: name.line,
                            live: obs.live,
                            states: d.states,
                            ages: d.ages,
                            bytes_per_task: d.bytes,
                            bytes_estimate,
                            waits_read: d.stuck_sampled,
                            waits_undecoded: d.stuck_undecoded,
                            waits_decoded_by: d.stuck_decoded_by.map(str::to_owned),
                            stuck_at: d.stuck_at,
                            stacks: d.wait_stacks,
                        });
                    }
                }
                SourceKind::Threads => {
                    for obs in sample.sites.iter().filter(|o| o.live > 0) {
                        let Some(wait) = w.source.detail(obs.key, obs.live).wait else { continue };
                        let name = w.source.name(obs.key);
                        threads.push(DumpThreads {
                            function: name.function,
                            file: name.file,
                            line: name.line,
                            kind: if wait.kind == WaitKind::RuntimeIdle { "runtime_idle" } else { "wait" }.into(),
                            syscall: wait.syscall.into(),
                            syscall_name: wait.syscall_name,
                            threads: wait.threads,
                            longest_wait_s: wait.longest_wait_ns as f64 / 1e9,
                            stack: wait.stack,
                        });
                    }
                }
            }
            w.source.detach();
        }
        sites.sort_by(|a, b| (b.live, &a.function).cmp(&(a.live, &b.function)));
        threads.sort_by_key(|t| std::cmp::Reverse((t.kind == "wait", t.threads)));
        let info = self.runtime().map(|r| r.info());
        let census = self.runtime().and_then(|r| r.census_stats());
        if census.as_ref().is_some_and(|c| !c.complete) {
            warnings.push("a task list changed under the walk and was cut short: some tasks are not in the dump".into());
        }
        Ok(Dump {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            leakprof_version: env!("CARGO_PKG_VERSION").into(),
            taken_unix_s,
            source: DumpSource {
                kind: if core.is_some() { "core" } else { "process" }.into(),
                pid: self.target.pid,
                exe: self.target.exe.display().to_string(),
                core,
                symbols_file: self.symbols_file.clone(),
            },
            runtime: info.as_ref().map_or("native", |i| i.name).into(),
            runtime_version: info.and_then(|i| i.version),
            completeness: Completeness {
                target_paused: false,
                tasks,
                waiting,
                waits_read: read,
                waits_undecoded: undecoded,
                waits_per_site_limit: limit,
                elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                census,
            },
            sites,
            threads,
            warnings,
        })
    }
}
