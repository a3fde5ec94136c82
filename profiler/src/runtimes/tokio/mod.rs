//! tokio tasks: uprobes on tokio's task birth (`OwnedTasks::bind_inner`, or the first poll on
//! tokio 1.28) and finish (`Schedule::release`) points, found in the executable's symbols
//! ([`plan`], [`probes`]); live tasks' state words read from outside ([`task_states`]); sampled
//! spawn stacks ([`spawn_stacks`]); sites named by future type ([`naming`], [`symbolize`]).
pub mod attach_points;
pub mod naming;
pub mod plan;
pub mod probes;
pub mod spawn_stacks;
pub mod state;
pub mod symbolize;
pub mod task_states;

use anyhow::Result;

use self::{
    naming::Namer,
    plan::{BirthMode, PlanError, TokioPlan},
    spawn_stacks::{created_by, frame_label, SpawnStacks},
    symbolize::Symbolizer,
};
use super::{Runtime, RuntimeInfo, SiteDetail};
use crate::{
    bpf::{drain_spawn_samples, read_snapshot, AttachedProbes, LoadConfig},
    elf::ElfImage,
    model::SiteName,
    sample::{monotonic_ns, Sample},
    options::RunOptions,
    target::Target,
};

/// Live tasks per site whose state word is read each sample (idle vs busy evidence).
const STATES_PER_SITE: usize = 256;

/// A tokio program with its probes attached.
pub struct Tokio {
    pid: u32,
    plan: TokioPlan,
    probes: Option<AttachedProbes>,
    /// Attach points and attach time, kept after detaching.
    attached: (usize, f64),
    stacks: SpawnStacks,
    namer: Namer,
    has_debug_info: bool,
    stats: Vec<u64>,
}

/// A tokio program (None when it has no tokio), attached.
pub fn detect(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Option<Result<Box<dyn Runtime>>> {
    let plan = match plan::plan(image, image.data()) {
        Err(PlanError::NotTokio) => return None,
        Err(e) => return Some(Err(anyhow::anyhow!("pid {}: {e}", opts.pid))),
        Ok(p) => p,
    };
    Some(Tokio::attach(opts, target, image, bias, plan).map(|t| Box::new(t) as Box<dyn Runtime>))
}

impl Tokio {
    fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64, plan: TokioPlan) -> Result<Tokio> {
        let (lo, hi) = target.exe_range();
        let cfg = LoadConfig {
            vtable_lo: lo,
            vtable_hi: hi,
            header_vtable_offset: 16,
            max_tasks: opts.max_tasks,
            max_sites: opts.max_sites,
            stack_period: if plan.birth_mode == BirthMode::BindInner { opts.stack_period } else { 0 },
            watch_futex: false,
            target_tgid: opts.pid,
        };
        let probes = AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &probes::probe_specs(&plan))?;
        Ok(Tokio {
            pid: opts.pid,
            attached: (probes.attached, probes.attach_ms),
            probes: Some(probes),
            stacks: SpawnStacks::new(image.clone(), bias),
            namer: Namer::new(opts.pid, bias, Symbolizer::new(image.clone())),
            has_debug_info: image.has_debug_info(),
            plan,
            stats: Vec::new(),
        })
    }
}

impl Runtime for Tokio {
    fn info(&self) -> RuntimeInfo {
        RuntimeInfo {
            name: "tokio",
            version: self.plan.version.clone(),
            birth_point: probes::birth_point_name(&self.plan),
            method: "uprobes",
            attach_points: self.attached.0,
            attach_ms: self.attached.1,
            has_debug_info: self.has_debug_info,
        }
    }

    fn sample(&mut self) -> Result<Sample<u64>> {
        let probes = self.probes.as_mut().ok_or_else(|| anyhow::anyhow!("already detached"))?;
        for s in drain_spawn_samples(probes) {
            self.stacks.add(&s);
        }
        let snap = read_snapshot(probes, true)?;
        let now_ns = monotonic_ns();
        let live: std::collections::HashSet<(u64, u64)> = snap.tasks.iter().map(|t| (t.header, t.born_ns)).collect();
        self.stacks.refresh_live(|h, born| live.contains(&(h, born)));
        // the state word says idle or busy
        let mut idle: std::collections::HashMap<u64, (u64, u64)> = std::collections::HashMap::new();
        for (vt, is_idle) in task_states::sample_idle(self.pid, &snap.tasks, STATES_PER_SITE) {
            let e = idle.entry(vt).or_default();
            e.0 += u64::from(is_idle);
            e.1 += 1;
        }
        let sample = snap.to_sample(now_ns, |key| Some(idle.get(&key).copied().unwrap_or_default()));
        self.stats = snap.stats;
        Ok(sample)
    }

    fn name(&mut self, key: u64) -> SiteName {
        self.namer.name(key).0.clone()
    }

    fn detail(&mut self, key: u64, live: i64) -> SiteDetail {
        let symbol = self.namer.name(key).1.clone();
        let spawn_stacks = self.stacks.stacks(key, live, self.namer.lines());
        SiteDetail {
            symbol,
            created_by: spawn_stacks.first().and_then(created_by).map(frame_label),
            spawn_frames: spawn_stacks.iter().flat_map(|s| s.frames.iter().skip(1).map(|f| f.function.clone())).collect(),
            spawn_stacks,
            ..SiteDetail::default()
        }
    }

    fn kernel_stats(&self) -> Option<Vec<u64>> {
        Some(self.stats.clone())
    }

    fn detach(&mut self) {
        self.probes = None;
    }

    fn warnings(&self) -> Vec<String> {
        if self.plan.birth_mode == BirthMode::FirstPoll {
            vec!["this tokio has no bind_inner: a task is counted at its first poll, so tasks alive before attach \
                  are counted as born when next polled"
                .to_string()]
        } else {
            Vec::new()
        }
    }
}
