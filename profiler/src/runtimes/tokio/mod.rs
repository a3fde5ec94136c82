//! tokio tasks, in four folders: by default a [`census`], every live task of every runtime read
//! from the runtimes' own task lists from outside each sample (no probe; tasks spawned before
//! attach included); with `--probes`, uprobes on task birth and finish ([`probes`]: the attach
//! plan, attach points, the probed counts and sampled spawn stacks) add exact births, finishes and
//! lifetimes, while the census still gives the live counts when it works; where tasks wait
//! ([`awaits`]: the DWARF decoder and the tally); sites are task vtables, named by future type
//! ([`naming`]). The task state word is [`state`].
pub mod awaits;
pub mod census;
pub mod naming;
pub mod probes;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{anyhow, bail, Result};

use self::{
    awaits::{code::CodeIndex, stuck, AwaitIndex},
    census::TokioCensus,
    naming::{symbolize::Symbolizer, Namer},
    probes::{
        plan::{self, BirthMode, PlanError, TokioPlan},
        probed::{self, Probed},
        spawn_stacks::{created_by, frame_label},
    },
};
use super::{RuntimeInfo, SiteDetail, Source};
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
    /// The task futures' state machines read from the machine code (always; DWARF comes first).
    code: CodeIndex,
    /// Which decoders `--await-decoder` allows.
    decoder: AwaitDecoder,
    /// Distinct await chains kept per site.
    chains_kept: usize,
    space: crate::target::Space,
    has_debug_info: bool,
    warnings: Vec<String>,
    /// Sites whose births the probes missed (the census saw more born since attach): their name,
    /// the census's count and the probes'.
    missed_births: BTreeMap<u64, (String, u64, u64)>,
    /// Where each site's sampled idle tasks wait, decoded during the last sample (so a report made
    /// after the target exited still has it).
    stuck: std::collections::HashMap<u64, crate::runtimes::Stuck>,
    /// Tasks read for where-stuck at the last sample, those decoded, and the ms it took.
    stuck_cost: (u64, u64, f64),
}

/// Births the census may see beyond the probes' before a site counts as missed by them.
const MISSED_SLACK: u64 = 8;

/// How where-stuck was read, for the report.
pub const FROM_DWARF: &str = "read from the binary's DWARF types";
pub const FROM_CODE: &str = "read from the machine code (the binary has no DWARF types)";
pub const FROM_CODE_CHOSEN: &str = "read from the machine code (--await-decoder code)";
pub const DWARF_MISSING: &str = "unavailable: --await-decoder dwarf and the binary has no DWARF types";

/// Which decoder reads where tasks wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AwaitDecoder {
    /// DWARF types where the binary has them, else the machine code.
    #[default]
    Auto,
    /// DWARF types only.
    Dwarf,
    /// The machine code only (to compare with DWARF, or when DWARF is wrong).
    Code,
}

/// A tokio program (None when it has no tokio), attached.
pub fn detect(opts: &RunOptions, target: &Target, image: &ElfImage, bias: u64) -> Option<Result<Box<dyn Source>>> {
    let plan = plan::plan(image, image.data());
    if plan == Err(PlanError::NotTokio) {
        return None;
    }
    Some(Tokio::attach(opts, target, image, bias, plan).map(|t| Box::new(t) as Box<dyn Source>))
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
        let (vtables, next_id) = task_vtables(target, image, bias);
        let ids = probed::TaskIds { id_offset: vtables.uniform_id_offset().unwrap_or(0), next_id };
        let census = match open_census(target.space.clone(), vtables, next_id, opts.read_limits) {
            Ok(mut c) => {
                c.measure_bytes = opts.measure_bytes;
                c.headers_per_site = opts.waits.per_site;
                Some(c)
            }
            // a core file: nothing runs, so nothing can be probed
            Err(why) if target.space.pid().is_none() => bail!("{}: tokio census unavailable: {why}", target.space.label()),
            Err(why) => {
                warnings.push(format!("tokio census unavailable: {why}; counting with probes, so tasks alive before attach are not counted"));
                None
            }
        };
        let label = target.space.label();
        let probed = if opts.probes || census.is_none() {
            let plan = plan.map_err(|e| match &census {
                None => anyhow!("{label}: {e} (and {})", warnings.join("; ")),
                Some(_) => anyhow!("{label}: --probes: {e}"),
            })?;
            if plan.birth_mode == BirthMode::FirstPoll {
                warnings.push(
                    "this tokio has no bind_inner: a task is counted at its first poll, so with probes alone tasks alive \
                     before attach are counted as born when next polled"
                        .into(),
                );
            }
            Some(Probed::attach(opts, target, image, bias, plan, ids, census.is_some())?)
        } else {
            None
        };
        Ok(Tokio {
            version,
            census,
            probed,
            namer: Namer::new(target.space.clone(), bias, Symbolizer::new(image.clone())),
            awaits: if opts.await_decoder == AwaitDecoder::Code { None } else { AwaitIndex::new(image) },
            code: CodeIndex::new(image),
            decoder: opts.await_decoder,
            chains_kept: opts.waits.stacks_kept,
            space: target.space.clone(),
            has_debug_info: image.has_debug_info(),
            warnings,
            missed_births: BTreeMap::new(),
            stuck: Default::default(),
            stuck_cost: (0, 0, 0.0),
        })
    }
}

/// ELF address of tokio's task id counter, `tokio::runtime::task::id::Id::next::NEXT_ID` (not
/// `thread_id::ThreadId::next::NEXT_ID`, which a LocalSet links in and the symbol table may list
/// first), in legacy or v0 mangling.
pub fn next_id_symbol(image: &ElfImage) -> Option<u64> {
    image.data_symbol(&["5tokio", "2Id4next7NEXT_ID"])
}

/// The target's task vtables and the address of tokio's task id counter (`NEXT_ID`), if named.
fn task_vtables(target: &Target, image: &ElfImage, bias: u64) -> (census::vtables::Vtables, Option<u64>) {
    let polls: HashSet<u64> = plan::raw_polls(image).into_iter().map(|a| a.wrapping_add(bias)).collect();
    let next_id = next_id_symbol(image).map(|a| a.wrapping_add(bias));
    let text: Vec<(u64, u64)> = target.exe_maps.iter().filter(|m| m.executable()).map(|m| (m.start, m.end)).collect();
    (census::vtables::Vtables::from_image(image, bias, &text, (!polls.is_empty()).then_some(&polls)), next_id)
}

/// The census, or why it cannot work here.
fn open_census(
    space: crate::target::Space,
    vtables: census::vtables::Vtables,
    next_id: Option<u64>,
    limits: crate::target::memory::ReadLimits,
) -> Result<TokioCensus, String> {
    let c = TokioCensus::new(space, vtables, next_id, limits)?;
    if c.runtimes.is_empty() {
        if let Some((owner, why)) = c.failures.iter().next() {
            return Err(format!("found tasks of runtime #{owner} but not its task lists ({why})"));
        }
    }
    Ok(c)
}

/// The census's live counts with the probes' exact births, finishes and lifetimes, except at
/// sites where the census saw more tasks born since attach than the probes did (a spawn path
/// with tokio's birth point inlined into it): those keep the census's counts and are returned as
/// (site, census births, probe births).
fn merge(census: Sample<u64>, probes: Sample<u64>, census_born: &HashMap<u64, u64>) -> (Sample<u64>, Vec<(u64, u64, u64)>) {
    let born = |key: u64| census_born.get(&key).copied().unwrap_or(0);
    let mut missed: Vec<(u64, u64, u64)> =
        census.sites.iter().filter(|s| born(s.key) > MISSED_SLACK && !probes.sites.iter().any(|p| p.key == s.key)).map(|s| (s.key, born(s.key), 0)).collect();
    let mut sites = census.sites;
    for p in probes.sites {
        match sites.iter_mut().find(|s| s.key == p.key) {
            Some(s) => {
                if born(p.key) > p.totals.spawned + MISSED_SLACK {
                    missed.push((p.key, born(p.key), p.totals.spawned));
                } else {
                    s.totals = p.totals;
                }
                s.oldest_born_ns = match (s.oldest_born_ns, p.oldest_born_ns) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => sites.push(p),
        }
    }
    (Sample { now_ns: census.now_ns, sites }, missed)
}

impl Tokio {
    /// Where the sampled idle tasks of every site wait, read from the target now (their cells
    /// change as they run): decoded during the sample, reported from what was decoded.
    fn decode_stuck(&mut self) {
        let t0 = std::time::Instant::now();
        self.decode_stuck_sites();
        let sampled: u64 = self.stuck.values().map(|s| s.sampled).sum();
        let undecoded: u64 = self.stuck.values().map(|s| s.undecoded).sum();
        self.stuck_cost = (sampled, sampled - undecoded.min(sampled), t0.elapsed().as_secs_f64() * 1e3);
    }

    fn decode_stuck_sites(&mut self) {
        self.stuck.clear();
        let Some(c) = &self.census else { return };
        for (&key, hs) in &c.headers {
            let Ok(poll) = self.namer.poll_vaddr(key) else { continue };
            let from_dwarf = self.awaits.as_mut().and_then(|index| stuck::stuck(index, &self.space, poll, hs, self.chains_kept));
            let s = match from_dwarf {
                Some(s) => Some(s),
                None if self.decoder != AwaitDecoder::Dwarf => {
                    stuck::stuck_from_code(&mut self.code, self.namer.lines(), &self.space, poll, c.trailer_offset(key), hs, self.chains_kept)
                }
                None => None,
            };
            if let Some(s) = s {
                self.stuck.insert(key, s);
            }
        }
    }
}

impl Source for Tokio {
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
        self.decode_stuck();
        let probed = match self.probed.as_mut() {
            Some(p) => Some(p.sample(census.is_none())?),
            None => None,
        };
        match (census, probed) {
            (Some(c), Some(p)) => {
                // only a birth probe inside the spawn path can be inlined away; a first-poll birth
                // probe is reached through the task's vtable (and a task not yet polled is not born)
                let at_bind = self.probed.as_ref().is_some_and(|p| p.plan.birth_mode == BirthMode::BindInner);
                let born = self.census.as_ref().filter(|_| at_bind).map(|c| &c.born_since_attach);
                let (merged, missed) = merge(c, p, born.unwrap_or(&HashMap::new()));
                for (key, by_census, by_probes) in missed {
                    let name = self.namer.name(key).0.function.clone();
                    self.missed_births.insert(key, (name, by_census, by_probes));
                }
                Ok(merged)
            }
            (Some(s), None) | (None, Some(s)) => Ok(s),
            (None, None) => Err(anyhow!("already detached")),
        }
    }

    fn name(&mut self, key: u64) -> SiteName {
        let name = self.namer.name(key).0.clone();
        if !name.function.starts_with("<unknown future") {
            return name;
        }
        // no symbol names it: the async fn's own location, from its code
        match self.namer.poll_vaddr(key).ok().and_then(|poll| self.code.future_location(poll)) {
            Some(l) => SiteName {
                function: format!("async fn at {}", awaits::code::short_path(&l)),
                file: Some(crate::elf::lines::normalize_path(&l.file)),
                line: Some(l.line),
            },
            None => name,
        }
    }

    fn detail(&mut self, key: u64, live: i64) -> SiteDetail {
        let symbol = self.namer.name(key).1.clone();
        let spawn_stacks = match self.probed.as_mut() {
            Some(p) => p.stacks.stacks(key, live, self.namer.lines()),
            None => Vec::new(),
        };
        let stuck = self.stuck.get(&key).cloned().unwrap_or_default();
        let (states, oldest_task, ages) = match &self.census {
            Some(c) => (
                c.states.get(&key).cloned().unwrap_or_default(),
                c.oldest.get(&key).map(|&id| OldestTask {
                    task_id: id,
                    before_attach: c.order.before_attach(id),
                    tasks_spawned_since: c.order.spawned_since(id),
                }),
                c.oldest.get(&key).zip(c.newest.get(&key)).map(|(&o, &n)| crate::model::AgeSpread {
                    oldest_id: o,
                    newest_id: n,
                    spawned_since_oldest: c.order.spawned_since(o),
                    spawned_since_newest: c.order.spawned_since(n),
                    counter_read: c.order.exact(),
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
            ages,
            stuck_sampled: stuck.sampled,
            stuck_undecoded: stuck.undecoded,
            stuck_decoded_by: stuck.decoder,
            stuck_at: stuck.at,
            wait_stacks: stuck.stacks,
            wait: None,
            bytes: self.census.as_ref().and_then(|c| c.bytes.get(&key).cloned()),
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
            w.extend(c.budget_warning());
        }
        if let Some((name, by_census, by_probes)) = self.missed_births.values().max_by_key(|m| m.1) {
            w.push(format!(
                "--probes missed task births at {} site(s) (e.g. {name}: the census saw {by_census} tasks born since attach, \
                 the probes {by_probes}): those tasks pass no bind_inner (LocalSet tasks from spawn_local never do, \
                 and tokio inlines bind_inner into some spawn paths); those sites' spawned, finished and lifetimes come from the census (tasks living less than an interval are not \
                 counted there)",
                self.missed_births.len()
            ));
        }
        w
    }

    fn census_stats(&self) -> Option<CensusStats> {
        let where_stuck = match (self.decoder, self.awaits.is_some()) {
            (AwaitDecoder::Code, _) => FROM_CODE_CHOSEN,
            (_, true) => FROM_DWARF,
            (AwaitDecoder::Auto, false) => FROM_CODE,
            (AwaitDecoder::Dwarf, false) => DWARF_MISSING,
        };
        let (where_stuck_sampled, where_stuck_decoded, where_stuck_ms) = self.stuck_cost;
        self.census.as_ref().map(|c| CensusStats {
            where_stuck: where_stuck.into(),
            where_stuck_sampled,
            where_stuck_decoded,
            where_stuck_ms,
            ..c.stats.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{SiteObs, SiteTotals};

    fn site(key: u64, live: i64, spawned: u64, finished: u64) -> SiteObs<u64> {
        SiteObs { key, live, totals: SiteTotals { spawned, finished, ..Default::default() }, oldest_born_ns: None, idle: None }
    }

    #[test]
    fn probe_counts_replace_the_census_s_unless_the_probes_missed_births() {
        // site 1: both saw its births; site 2: the census saw 40 born since attach, the probes
        // none (bind_inner inlined into its spawn path); site 3: the probes never saw it at all
        let census = Sample { now_ns: 5, sites: vec![site(1, 10, 12, 2), site(2, 40, 40, 0), site(3, 20, 20, 0)] };
        let probes = Sample { now_ns: 5, sites: vec![site(1, 0, 15, 5), site(2, 0, 0, 0)] };
        let born = HashMap::from([(1, 12), (2, 40), (3, 20)]);
        let (merged, mut missed) = merge(census, probes, &born);
        let by_key = |k: u64| merged.sites.iter().find(|s| s.key == k).unwrap();
        assert_eq!((by_key(1).live, by_key(1).totals.spawned, by_key(1).totals.finished), (10, 15, 5), "the probes' exact counts");
        assert_eq!((by_key(2).live, by_key(2).totals.spawned), (40, 40), "the census's counts, not the probes' zero");
        assert_eq!((by_key(3).live, by_key(3).totals.spawned), (20, 20));
        missed.sort();
        assert_eq!(missed, vec![(2, 40, 0), (3, 20, 0)]);
        // within the slack (tasks born between the probes' attach and the census's first sample)
        let census = Sample { now_ns: 5, sites: vec![site(1, 8, 8, 0)] };
        let probes = Sample { now_ns: 5, sites: vec![site(1, 0, 2, 0)] };
        let (_, missed) = merge(census, probes, &HashMap::from([(1, 2 + MISSED_SLACK)]));
        assert!(missed.is_empty());
    }
}
