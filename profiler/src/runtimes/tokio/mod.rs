//! tokio tasks. By default a [`census`]: every live task of every runtime read from the runtimes'
//! own task lists from outside each sample (no probe; tasks spawned before attach included). With
//! `--probes`, uprobes on task birth and finish ([`plan`], [`probes`], [`probed`]) add exact
//! births, finishes and lifetimes, and sampled spawn stacks ([`spawn_stacks`]); the census still
//! gives the live counts when it works. Sites are task vtables, named by future type ([`naming`],
//! [`symbolize`]).
pub mod attach_points;
pub mod awaits;
pub mod census;
pub mod naming;
pub mod plan;
pub mod probed;
pub mod probes;
pub mod spawn_stacks;
pub mod state;
pub mod stuck;
pub mod symbolize;
pub mod task_states;

use std::collections::HashSet;

use anyhow::{anyhow, Result};

use self::{
    awaits::AwaitIndex,
    census::TokioCensus,
    naming::Namer,
    plan::{BirthMode, PlanError, TokioPlan},
    probed::Probed,
    spawn_stacks::{created_by, frame_label},
    symbolize::Symbolizer,
};
use super::{Runtime, RuntimeInfo, SiteDetail};
use crate::{
    elf::ElfImage,
    model::{CensusStats, OldestTask, SiteName},
    options::RunOptions,
    sample::{monotonic_ns, Sample},
    target::Target,
};

/// A tokio program, attached.
pub struct Tokio {
    version: Option<String>,
    census: Option<TokioCensus>,
    probed: Option<Probed>,
    namer: Namer,
    /// DWARF types of the task futures (None: the binary has none).
    awaits: Option<AwaitIndex>,
    pid: u32,
    has_debug_info: bool,
    warnings: Vec<String>,
}

/// Why where-stuck is not read, when it is not.
pub const NO_TYPE_INFO: &str = "unavailable: the binary has no DWARF type info (build with debug = 2 to see the .await each task waits at)";

/// A tokio program (None when it has no tokio), attached.
pub fn detect(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Option<Result<Box<dyn Runtime>>> {
    let plan = plan::plan(image, image.data());
    if plan == Err(PlanError::NotTokio) {
        return None;
    }
    Some(Tokio::attach(opts, target, image, bias, plan).map(|t| Box::new(t) as Box<dyn Runtime>))
}

impl Tokio {
    fn attach(
        opts: &RunOptions,
        target: &Target,
        image: &ElfImage,
        bias: u64,
        plan: Result<TokioPlan, PlanError>,
    ) -> Result<Tokio> {
        let version = plan.as_ref().ok().and_then(|p| p.version.clone()).or_else(|| plan::detect_tokio_version(image.data()));
        let mut warnings = Vec::new();
        let census = match open_census(opts.pid, target, image, bias) {
            Ok(c) => Some(c),
            Err(why) => {
                warnings.push(format!("tokio census unavailable: {why}; counting with probes, so tasks alive before attach are not counted"));
                None
            }
        };
        let probed = if opts.probes || census.is_none() {
            let plan = plan.map_err(|e| match &census {
                None => anyhow!("pid {}: {e} (and {})", opts.pid, warnings.join("; ")),
                Some(_) => anyhow!("pid {}: --probes: {e}", opts.pid),
            })?;
            if plan.birth_mode == BirthMode::FirstPoll {
                warnings.push(
                    "this tokio has no bind_inner: a task is counted at its first poll, so with probes alone tasks alive \
                     before attach are counted as born when next polled"
                        .into(),
                );
            }
            Some(Probed::attach(opts, target, image, bias, plan)?)
        } else {
            None
        };
        Ok(Tokio {
            version,
            census,
            probed,
            namer: Namer::new(opts.pid, bias, Symbolizer::new(image.clone())),
            awaits: AwaitIndex::new(image),
            pid: opts.pid,
            has_debug_info: image.has_debug_info(),
            warnings,
        })
    }
}

/// The census, or why it cannot work here.
fn open_census(pid: u32, target: &Target, image: &ElfImage, bias: u64) -> Result<TokioCensus, String> {
    let polls: HashSet<u64> = image
        .symbols()
        .iter()
        .filter(|s| plan::classify(&s.name) == Some(plan::Role::RawPoll))
        .map(|s| s.addr.wrapping_add(bias))
        .collect();
    let next_id = image.data_symbol(&["5tokio", "4next7NEXT_ID"]).map(|a| a.wrapping_add(bias));
    let text: Vec<(u64, u64)> = target.exe_maps.iter().filter(|m| m.executable()).map(|m| (m.start, m.end)).collect();
    let vtables = census::vtables::Vtables::from_image(image, bias, &text, (!polls.is_empty()).then_some(&polls));
    let c = TokioCensus::new(pid, vtables, next_id)?;
    if c.runtimes.is_empty() {
        if let Some((owner, why)) = c.failures.iter().next() {
            return Err(format!("found tasks of runtime #{owner} but not its task lists ({why})"));
        }
    }
    Ok(c)
}

/// The census's live counts with the probes' exact births, finishes and lifetimes.
fn merge(census: Sample<u64>, probes: Sample<u64>) -> Sample<u64> {
    let mut sites = census.sites;
    for p in probes.sites {
        match sites.iter_mut().find(|s| s.key == p.key) {
            Some(s) => {
                s.totals = p.totals;
                s.oldest_born_ns = match (s.oldest_born_ns, p.oldest_born_ns) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => sites.push(p),
        }
    }
    Sample { now_ns: census.now_ns, sites }
}

impl Runtime for Tokio {
    fn info(&self) -> RuntimeInfo {
        let (birth_point, method) = match (&self.census, &self.probed) {
            (Some(_), Some(p)) => (probes::birth_point_name(&p.plan), "census+uprobes"),
            (None, Some(p)) => (probes::birth_point_name(&p.plan), "uprobes"),
            _ => ("census", "census"),
        };
        RuntimeInfo {
            name: "tokio",
            version: self.version.clone(),
            birth_point,
            method,
            attach_points: self.probed.as_ref().map_or(0, |p| p.attached.0),
            attach_ms: self.probed.as_ref().map_or(0.0, |p| p.attached.1),
            has_debug_info: self.has_debug_info,
        }
    }

    fn sample(&mut self) -> Result<Sample<u64>> {
        let census = self.census.as_mut().map(|c| c.census(monotonic_ns()));
        let probed = match self.probed.as_mut() {
            Some(p) => Some(p.sample(census.is_none())?),
            None => None,
        };
        match (census, probed) {
            (Some(c), Some(p)) => Ok(merge(c, p)),
            (Some(s), None) | (None, Some(s)) => Ok(s),
            (None, None) => Err(anyhow!("already detached")),
        }
    }

    fn name(&mut self, key: u64) -> SiteName {
        self.namer.name(key).0.clone()
    }

    fn detail(&mut self, key: u64, live: i64) -> SiteDetail {
        let symbol = self.namer.name(key).1.clone();
        let spawn_stacks = match self.probed.as_mut() {
            Some(p) => p.stacks.stacks(key, live, self.namer.lines()),
            None => Vec::new(),
        };
        let stuck = match (&self.census, self.awaits.as_mut()) {
            (Some(c), Some(index)) => match (c.headers.get(&key), self.namer.poll_vaddr(key)) {
                (Some(hs), Ok(poll)) => stuck::stuck(index, self.pid, poll, hs),
                _ => None,
            },
            _ => None,
        }
        .unwrap_or_default();
        let (states, oldest_task) = match &self.census {
            Some(c) => (
                c.states.get(&key).cloned().unwrap_or_default(),
                c.oldest.get(&key).map(|&id| OldestTask {
                    task_id: id,
                    before_attach: c.order.before_attach(id),
                    tasks_spawned_since: c.order.spawned_since(id),
                }),
            ),
            None => Default::default(),
        };
        SiteDetail {
            symbol,
            created_by: spawn_stacks.first().and_then(created_by).map(frame_label),
            spawn_frames: spawn_stacks.iter().flat_map(|s| s.frames.iter().skip(1).map(|f| f.function.clone())).collect(),
            spawn_stacks,
            states,
            oldest_task,
            stuck_sampled: stuck.sampled,
            stuck_at: stuck.at,
            wait_stacks: stuck.stacks,
        }
    }

    fn kernel_stats(&self) -> Option<crate::bpf::KernelSide> {
        self.probed.as_ref().map(|p| p.kernel.clone())
    }

    fn detach(&mut self) {
        if let Some(p) = self.probed.as_mut() {
            p.detach();
        }
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.warnings.clone();
        if let Some(c) = &self.census {
            if c.runtimes.is_empty() {
                w.push(format!("tokio census: no runtime with live tasks found ({} task vtables known)", c.vtable_count()));
            }
            w.extend(c.failures.iter().map(|(o, why)| format!("tokio census: tasks of runtime #{o} seen but not counted: {why}")));
        }
        w
    }

    fn census_stats(&self) -> Option<CensusStats> {
        let where_stuck = if self.awaits.is_some() { "read from the binary's DWARF types" } else { NO_TYPE_INFO };
        self.census.as_ref().map(|c| CensusStats { where_stuck: where_stuck.into(), ..c.stats.clone() })
    }
}
