//! Probe mode: uprobes on task birth (`bind_inner`, or the first poll on tokio 1.28) and finish
//! (`Schedule::release`): exact births and finishes between samples, lifetimes, spawn stacks.
use std::collections::{HashMap, HashSet};

use anyhow::Result;

use super::{
    plan::{BirthMode, TokioPlan},
    spawn_stacks::SpawnStacks,
};
use crate::runtimes::tokio::{probes, state as task_states};
use crate::{
    bpf::{drain_spawn_samples, read_snapshot, AttachedProbes, KernelSide, LoadConfig},
    elf::ElfImage,
    options::RunOptions,
    sample::{monotonic_ns, Sample},
    target::Target,
};

/// Live tasks per site whose state word is read each sample (idle vs busy evidence).
const STATES_PER_SITE: usize = 256;

/// One birth in LIFETIME_MASK_WITH_CENSUS + 1 is timed (beyond each site's first ones) when the
/// census runs alongside.
pub const LIFETIME_MASK_WITH_CENSUS: u64 = 7;

/// Where a tokio task's id is (births at bind_inner are kept by id).
#[derive(Debug, Clone, Copy)]
pub struct TaskIds {
    /// Offset of the id from the task header when every vtable has the same (0: read per task).
    pub id_offset: u64,
    /// Runtime address of tokio's id counter `NEXT_ID`, when the binary names it.
    pub next_id: Option<u64>,
}

pub struct Probed {
    pid: u32,
    pub plan: TokioPlan,
    probes: Option<AttachedProbes>,
    /// Attach points and attach time, kept after detaching.
    pub attached: (usize, f64),
    pub stacks: SpawnStacks,
    pub kernel: KernelSide,
}

impl Probed {
    pub fn attach(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64, plan: TokioPlan, ids: TaskIds, census: bool) -> Result<Probed> {
        let (lo, hi) = target.exe_range();
        let by_id = plan.birth_mode == BirthMode::BindInner;
        let cfg = LoadConfig {
            vtable_lo: lo,
            vtable_hi: hi,
            header_vtable_offset: 16,
            // births at bind_inner are kept in SLOTS by task id; TASKS serves births at the first poll
            max_tasks: if by_id { 1 } else { opts.max_tasks },
            slots: if by_id { opts.max_tasks } else { 0 },
            id_offset: ids.id_offset,
            // with the census alongside (it has every live task's age), time one birth in 8
            // beyond each site's first ones: the clock is a third of a birth's cost
            lifetime_mask: if by_id && census { LIFETIME_MASK_WITH_CENSUS } else { 0 },
            max_sites: opts.max_sites,
            stack_period: if by_id { opts.stack_period } else { 0 },
            watch_futex: false,
            target_tgid: opts.pid,
            empty_programs: opts.empty_probes,
        };
        let mut probes = AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &probes::probe_specs(&plan))?;
        // every task from NEXT_ID on is born after the probes attached: a finish of one whose
        // slot another task took is then still counted as born since attach
        if let (true, Some(addr)) = (by_id, ids.next_id) {
            if let Ok(first) = crate::target::memory::read_u64(opts.pid, addr) {
                probes.set_first_id(first)?;
            }
        }
        Ok(Probed {
            pid: opts.pid,
            attached: (probes.attached, probes.attach_ms),
            probes: Some(probes),
            stacks: SpawnStacks::new(image.clone(), bias),
            plan,
            kernel: KernelSide::default(),
        })
    }

    /// Births and finishes since attach; `read_states`: read live tasks' state words (when no
    /// census does).
    pub fn sample(&mut self, read_states: bool) -> Result<Sample<u64>> {
        let probes = self.probes.as_mut().ok_or_else(|| anyhow::anyhow!("already detached"))?;
        for s in drain_spawn_samples(probes) {
            self.stacks.add(&s);
        }
        let snap = read_snapshot(probes, true)?;
        let now_ns = monotonic_ns();
        let live: HashSet<(u64, u64)> = snap.tasks.iter().map(|t| (t.header, t.born_ns)).collect();
        self.stacks.refresh_live(|h, born| live.contains(&(h, born)));
        let mut idle: HashMap<u64, (u64, u64)> = HashMap::new();
        if read_states {
            for (vt, is_idle) in task_states::sample_idle(self.pid, &snap.tasks, STATES_PER_SITE) {
                let e = idle.entry(vt).or_default();
                e.0 += u64::from(is_idle);
                e.1 += 1;
            }
        }
        let sample = snap.to_sample(now_ns, |key| read_states.then(|| idle.get(&key).copied().unwrap_or_default()));
        self.kernel = snap.kernel_side();
        Ok(sample)
    }

    pub fn detach(&mut self) {
        self.probes = None;
    }
}
