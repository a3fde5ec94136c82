//! A dump as text: grouped like `go tool pprof -traces` output, but by spawn site: each site with
//! its count, states, ages and what it holds, then every distinct stack its tasks wait in.
use std::fmt::Write as _;

use super::{Dump, DumpSite};
use crate::{
    model::StackFrame,
    report::{blocked_in, held},
};

const RULE: &str = "-----------+-------------------------------------------------------";

fn place(function: &str, file: &Option<String>, line: Option<u32>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{function} ({f}:{l})"),
        (Some(f), None) => format!("{function} ({f})"),
        _ => function.to_string(),
    }
}

fn frame(f: &StackFrame) -> String {
    place(&f.function, &f.file, f.line)
}

/// What the dump is of, and how complete it is.
fn header(d: &Dump, out: &mut String) {
    let what = match &d.source.core {
        Some(core) => format!("core {core} of pid {} ({})", d.source.pid, d.source.exe),
        None => format!("pid {} ({})", d.source.pid, d.source.exe),
    };
    let version = d.runtime_version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    let c = &d.completeness;
    let unit = if d.runtime == "go" { "goroutines" } else { "tasks" };
    let _ = writeln!(out, "leakprof dump: {what}: {}{version}, {} {unit}, {} sites", d.runtime, c.tasks, d.sites.len());
    let stopped = if d.source.core.is_some() { "read from the core" } else if c.target_paused { "the process was stopped" } else { "the process was not stopped" };
    let _ = writeln!(out, "taken in {:.0} ms; {stopped}", c.elapsed_ms);
    if let Some(s) = &c.census {
        let walked = if s.complete { "every task list walked to its end" } else { "a task list changed under the walk: counts are partial" };
        let expected = s.tasks_expected.map(|n| format!("; the runtime's own count: {n}")).unwrap_or_default();
        let _ = writeln!(out, "complete: {walked} ({} lists, {} tasks read{expected})", s.runtimes, s.tasks_walked);
    }
    let _ = writeln!(
        out,
        "waits: read for {} of {} waiting {unit} (at most {} per site), {} not decoded",
        c.waits_read, c.waiting, c.waits_per_site_limit, c.waits_undecoded
    );
}

fn site(s: &DumpSite, out: &mut String) {
    let _ = writeln!(out, "{RULE}");
    let _ = writeln!(out, "{:>10} | {}", s.live, place(&s.function, &s.file, s.line));
    if !s.states.is_empty() {
        let states: Vec<String> = s.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "{:>10} |   states: {}", "", states.join(", "));
    }
    if let Some(a) = &s.ages {
        let est = if a.counter_read { "" } else { " (estimated from the ids)" };
        let _ = writeln!(
            out,
            "{:>10} |   ages: the oldest spawned {} tasks ago, the newest {} ago{est} (ids {}..{})",
            "", a.spawned_since_oldest, a.spawned_since_newest, a.oldest_id, a.newest_id
        );
    }
    if let Some(b) = &s.bytes_per_task {
        let _ = writeln!(out, "{:>10} |   holds: {}", "", held(s.bytes_estimate, s.live, b));
    }
    if s.waits_read > 0 {
        let by = s.waits_decoded_by.as_deref().map(|b| format!(", read from the {b}")).unwrap_or_default();
        let undecoded = if s.waits_undecoded > 0 { format!(", {} not decoded", s.waits_undecoded) } else { String::new() };
        let _ = writeln!(out, "{:>10} |   waits read: {}{undecoded}{by}", "", s.waits_read);
    }
    for st in &s.stacks {
        let mut frames = st.frames.iter();
        let first = frames.next().map(frame).unwrap_or_else(|| "(no frames)".into());
        let _ = writeln!(out, "{:>10} | {first}", st.tasks);
        for f in frames {
            let _ = writeln!(out, "{:>10} |   {}", "", frame(f));
        }
    }
}

/// The dump as text.
pub fn render_text(d: &Dump) -> String {
    let mut out = String::new();
    header(d, &mut out);
    for s in &d.sites {
        site(s, &mut out);
    }
    if !d.sites.is_empty() {
        let _ = writeln!(out, "{RULE}");
    }
    if !d.threads.is_empty() {
        let _ = writeln!(out, "threads blocked in syscalls:");
        for t in &d.threads {
            let call = blocked_in(&t.syscall, &t.syscall_name);
            let idle = if t.kind == "runtime_idle" { " [the runtime's idle workers]" } else { "" };
            let _ = writeln!(out, "{:>10} | {call} at {}{idle}, the longest for {:.0} s", t.threads, place(&t.function, &t.file, t.line), t.longest_wait_s);
            for f in &t.stack {
                let _ = writeln!(out, "{:>10} |   {}", "", frame(f));
            }
        }
    }
    for w in &d.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
