//! pprof output: a gzip-compressed profile.proto of live tasks by spawn stack, goroutines by the
//! stack they wait in, and blocked threads by wait stack, readable by `go tool pprof` and Grafana Pyroscope.
mod builder;
pub(crate) mod proto;

use builder::{Frame, ProfileBuilder};

use crate::model::Report;

/// Sample types, in value order. `bytes`: what a sample's live tasks hold, their count times
/// the site's median measured bytes per task (an estimate; 0 where nothing was measured), so
/// `go tool pprof -sample_index=bytes` ranks sites by memory.
pub const SAMPLE_TYPES: [(&str, &str); 4] =
    [("live_tasks", "count"), ("spawned_tasks", "count"), ("blocked_threads", "count"), ("bytes", "bytes")];

/// Splits `total` over `weights` so the parts are integers that sum to `total` (largest remainder).
pub fn apportion(total: i64, weights: &[u64]) -> Vec<i64> {
    let sum: u64 = weights.iter().sum();
    if sum == 0 || total <= 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|&w| total as f64 * w as f64 / sum as f64).collect();
    let mut parts: Vec<i64> = exact.iter().map(|x| x.floor() as i64).collect();
    let mut rest = total - parts.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order {
        if rest == 0 {
            break;
        }
        parts[i] += 1;
        rest -= 1;
    }
    parts
}

/// The gzip-compressed profile.proto of a report.
pub fn to_pprof(r: &Report) -> Vec<u8> {
    let mut b = ProfileBuilder::new(&SAMPLE_TYPES, &r.target.exe);
    for s in &r.sites {
        let leaf = Frame { function: &s.function, file: s.file.as_deref(), line: s.line };
        let per_task = s.bytes_per_task.as_ref().map_or(0, |b| b.median as i64);
        let labels = [("kind", "task"), ("verdict", verdict_str(s.verdict))];
        // Go: live goroutines by the whole stack they wait in (sampled), innermost first; tokio:
        // by their await chains, unless the probes gave spawn stacks (who spawned them is then the
        // stack, as `go tool pprof -traces` readers of a spawn-path profile expect)
        let go = s.stuck_decoded_by.as_deref() == Some("stack");
        if !s.stacks.is_empty() && (go || s.spawn_stacks.is_empty()) {
            let w: Vec<u64> = s.stacks.iter().map(|st| st.tasks).collect();
            let live = apportion(s.live, &w);
            let spawned = apportion(s.spawned as i64, &w);
            let kind = if go { "goroutine" } else { "task" };
            for (i, st) in s.stacks.iter().enumerate() {
                let stack: Vec<Frame> =
                    st.frames.iter().map(|f| Frame { function: &f.function, file: f.file.as_deref(), line: f.line }).collect();
                b.add_sample(&[live[i], spawned[i], 0, live[i] * per_task], &stack, &[("kind", kind), ("verdict", verdict_str(s.verdict))]);
            }
            continue;
        }
        if s.spawn_stacks.is_empty() {
            b.add_sample(&[s.live.max(0), s.spawned as i64, 0, s.live.max(0) * per_task], &[leaf], &labels);
            continue;
        }
        let live_w: Vec<u64> = s.spawn_stacks.iter().map(|p| p.live_samples).collect();
        let all_w: Vec<u64> = s.spawn_stacks.iter().map(|p| p.samples).collect();
        let live = apportion(s.live, if live_w.iter().sum::<u64>() > 0 { &live_w } else { &all_w });
        let spawned = apportion(s.spawned as i64, &all_w);
        for (i, p) in s.spawn_stacks.iter().enumerate() {
            let mut stack = vec![leaf];
            stack.extend(p.frames.iter().map(|f| Frame { function: &f.function, file: f.file.as_deref(), line: f.line }));
            b.add_sample(&[live[i], spawned[i], 0, live[i] * per_task], &stack, &labels);
        }
    }
    for w in &r.blocked {
        let mut stack: Vec<Frame> = w
            .stack
            .iter()
            .map(|f| Frame { function: &f.function, file: f.file.as_deref(), line: f.line })
            .collect();
        if stack.is_empty() {
            stack.push(Frame { function: &w.function, file: w.file.as_deref(), line: w.line });
        }
        let kind = match w.kind {
            crate::runtimes::threads::tracker::WaitKind::Wait => "blocked_thread",
            crate::runtimes::threads::tracker::WaitKind::RuntimeIdle => "runtime_idle",
        };
        b.add_sample(&[0, 0, w.threads.max(0), 0], &stack, &[("kind", kind), ("verdict", verdict_str(w.verdict))]);
    }
    b.add_comment(&format!("leakprof {} pid {} {}", r.leakprof_version, r.target.pid, r.target.exe));
    b.finish((r.collection.duration_s * 1e9) as i64)
}

/// Sample types of a dump's profile.
pub const DUMP_SAMPLE_TYPES: [(&str, &str); 2] = [("tasks", "count"), ("bytes", "bytes")];

/// The gzip-compressed profile.proto of a dump: each site's tasks by the stack they wait in (the
/// site's own frame at the root, so `go tool pprof -traces` and flame graphs group by spawn site),
/// the tasks whose wait was not read under the site's frame alone; blocked threads by their stack.
pub fn dump_to_pprof(d: &crate::dump::Dump) -> Vec<u8> {
    let mut b = ProfileBuilder::new(&DUMP_SAMPLE_TYPES, &d.source.exe);
    let kind = if d.runtime == "go" { "goroutine" } else { "task" };
    for s in &d.sites {
        let site = Frame { function: &s.function, file: s.file.as_deref(), line: s.line };
        let per_task = s.bytes_per_task.as_ref().map_or(0, |b| b.median as i64);
        let mut placed = 0;
        for st in &s.stacks {
            let mut stack: Vec<Frame> = st.frames.iter().map(|f| Frame { function: &f.function, file: f.file.as_deref(), line: f.line }).collect();
            stack.push(site);
            let n = st.tasks as i64;
            placed += n;
            b.add_sample(&[n, n * per_task], &stack, &[("kind", kind)]);
        }
        let rest = (s.live - placed).max(0);
        if rest > 0 {
            b.add_sample(&[rest, rest * per_task], &[site], &[("kind", kind)]);
        }
    }
    for t in &d.threads {
        let mut stack: Vec<Frame> = t.stack.iter().map(|f| Frame { function: &f.function, file: f.file.as_deref(), line: f.line }).collect();
        if stack.is_empty() {
            stack.push(Frame { function: &t.function, file: t.file.as_deref(), line: t.line });
        }
        let kind = if t.kind == "runtime_idle" { "runtime_idle" } else { "blocked_thread" };
        b.add_sample(&[t.threads.max(0), 0], &stack, &[("kind", kind)]);
    }
    b.add_comment(&format!("leakprof dump {} pid {} {}", d.leakprof_version, d.source.pid, d.source.exe));
    b.finish((d.completeness.elapsed_ms * 1e6) as i64)
}

fn verdict_str(v: crate::model::VerdictKind) -> &'static str {
    match v {
        crate::model::VerdictKind::Leak => "leak",
        crate::model::VerdictKind::Suspect => "suspect",
        crate::model::VerdictKind::Ok => "ok",
    }
}

#[cfg(test)]
mod tests;
