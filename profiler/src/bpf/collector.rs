//! Reads the kernel maps into plain user-space values.
use std::collections::HashMap;

use anyhow::{anyhow, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use profiler_common::{maps, stat, FutexWait, SiteCounters, SpawnSample, TaskRec, LIFETIME_BUCKETS};

use super::AttachedProbes;
use crate::model::BpfProgramCost;
pub use crate::sample::SiteTotals;
use crate::sample::{Sample, SiteObs};

fn add(t: &mut SiteTotals, c: &SiteCounters) {
    t.spawned += c.spawned;
    t.finished += c.finished;
    t.finished_preexisting += c.finished_preexisting;
    t.max_lifetime_ns = t.max_lifetime_ns.max(c.max_lifetime_ns);
    if t.lifetime_log2_us.len() < LIFETIME_BUCKETS {
        t.lifetime_log2_us.resize(LIFETIME_BUCKETS, 0);
    }
    for (a, b) in t.lifetime_log2_us.iter_mut().zip(c.lifetime_log2_us.iter()) {
        *a += *b;
    }
}

/// One live task (born since attach); `born_ns` 0: its birth was not timed.
#[derive(Debug, Clone, Copy)]
pub struct LiveTask {
    pub header: u64,
    pub vtable: u64,
    pub born_ns: u64,
}

/// Drains the sampled births (with their spawning stacks) sent since the last call.
pub fn drain_spawn_samples(p: &mut AttachedProbes) -> Vec<SpawnSample> {
    let mut out = Vec::new();
    while let Some(item) = p.spawn_samples.next() {
        if item.len() >= std::mem::size_of::<SpawnSample>() {
            // SAFETY: the kernel wrote a whole SpawnSample (repr(C), Pod); read unaligned.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SpawnSample>()) });
        }
    }
    out
}

/// Everything the kernel side knows at one instant.
#[derive(Debug, Clone, Default)]
pub struct KernelSnapshot {
    pub sites: HashMap<u64, SiteTotals>,
    pub stats: Vec<u64>,
    pub tasks: Vec<LiveTask>,
    /// Threads of the target in a futex wait that began since attach: (tid, wait).
    pub futex_waits: Vec<(u32, FutexWait)>,
    /// Each program's runs and run time (the kernel's statistics).
    pub programs: Vec<BpfProgramCost>,
}

/// What the kernel side did, kept from the last sample for the report: its outcome counters
/// (indexed by `profiler_common::stat`) and each program's runs and run time.
#[derive(Debug, Clone, Default)]
pub struct KernelSide {
    pub counters: Vec<u64>,
    pub programs: Vec<BpfProgramCost>,
}

impl KernelSnapshot {
    pub fn kernel_side(&self) -> KernelSide {
        KernelSide { counters: self.stats.clone(), programs: self.programs.clone() }
    }
}

impl KernelSnapshot {
    /// The snapshot as a runtime-neutral sample taken at `now_ns`: per site its counters, live
    /// count and oldest live task, and the (idle, observed) count `idle` gives for it.
    pub fn to_sample(&self, now_ns: u64, idle: impl Fn(u64) -> Option<(u64, u64)>) -> Sample<u64> {
        let mut oldest: HashMap<u64, u64> = HashMap::new();
        for t in self.tasks.iter().filter(|t| t.born_ns != 0) {
            let o = oldest.entry(t.vtable).or_insert(t.born_ns);
            *o = (*o).min(t.born_ns);
        }
        let sites = self
            .sites
            .iter()
            .map(|(&key, totals)| SiteObs {
                key,
                live: totals.live(),
                totals: totals.clone(),
                oldest_born_ns: oldest.get(&key).copied(),
                idle: idle(key),
            })
            .collect();
        Sample { now_ns, sites }
    }
}

/// Reads SITES and STATS, and (when `with_tasks`) the live task table.
pub fn read_snapshot(p: &AttachedProbes, with_tasks: bool) -> Result<KernelSnapshot> {
    let ebpf = &p.ebpf;
    let sites_map: PerCpuHashMap<&MapData, u64, SiteCounters> = PerCpuHashMap::try_from(
        ebpf.map(maps::SITES).ok_or_else(|| anyhow!("map SITES missing"))?,
    )?;
    let mut sites = HashMap::new();
    for item in sites_map.iter() {
        let (vtable, per_cpu) = item?;
        let t: &mut SiteTotals = sites.entry(vtable).or_default();
        for c in per_cpu.iter() {
            add(t, c);
        }
    }
    let stats_map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map(maps::STATS).ok_or_else(|| anyhow!("map STATS missing"))?,
    )?;
    let mut stats = vec![0u64; stat::COUNT as usize];
    for (i, s) in stats.iter_mut().enumerate() {
        *s = stats_map.get(&(i as u32), 0)?.iter().sum();
    }
    let tasks = match (with_tasks, &p.slots) {
        (false, _) => Vec::new(),
        (true, Some(slots)) => slots.live(),
        (true, None) => hash_map_tasks(p)?,
    };
    let mut futex_waits = Vec::new();
    if let Some(m) = ebpf.map(maps::FUTEX_WAITS) {
        let waits: BpfHashMap<&MapData, u32, FutexWait> = BpfHashMap::try_from(m)?;
        let mut seen = std::collections::HashSet::new();
        for (tid, w) in waits.iter().take(1 << 17).flatten() {
            if seen.insert(tid) {
                futex_waits.push((tid, w));
            }
        }
    }
    Ok(KernelSnapshot { sites, stats, tasks, futex_waits, programs: p.program_costs() })
}

/// The live tasks in the TASKS hash map (Go, tokio births at the first poll).
fn hash_map_tasks(p: &AttachedProbes) -> Result<Vec<LiveTask>> {
    let tasks_map: BpfHashMap<&MapData, u64, TaskRec> =
        BpfHashMap::try_from(p.ebpf.map(maps::TASKS).ok_or_else(|| anyhow!("map TASKS missing"))?)?;
    // Entries vanish while the target runs; the kernel then restarts the key walk from the
    // beginning, so dedupe and bound the walk.
    let cap = (p.max_tasks as usize).saturating_mul(2);
    let mut seen = std::collections::HashSet::new();
    let mut tasks = Vec::new();
    for (header, rec) in tasks_map.iter().take(cap).flatten() {
        if seen.insert(header) {
            tasks.push(LiveTask { header, vtable: rec.vtable, born_ns: rec.born_ns });
        }
    }
    Ok(tasks)
}
