//! Go goroutines by census: each sample reads every g from outside and turns the change since
//! the last census into per-site counters keyed by the `go` statement (g.gopc): goroutines first
//! seen count as spawned (those alive before attach included), goroutines gone as finished.
use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::{
    pclntab::Pclntab,
    read::{read_goroutines, status, AllgsAddr},
    stack, GoPlan,
};
use crate::{
    model::StackFrame,
    runtimes::{Stuck, StuckTally},
    runtimes::go::layout::GoLayout,
    sample::{Sample, SiteObs, SiteTotals},
    target::memory::{Process, ReadLimits},
};

/// Distinct `go` statements counted apart per process; goroutines of further ones are counted
/// together under [`OTHER_SITES`] (a hostile or torn allgs cannot grow leakprof's memory without
/// bound: each site keeps a series).
pub const MAX_SITES: usize = 4096;
/// The key goroutines of sites past [`MAX_SITES`] are counted under.
pub const OTHER_SITES: u64 = u64::MAX;
/// The key of the Go runtime's own goroutines (started by `runtime.*` code: the GC's workers,
/// the finalizer goroutine, ...), counted together as one `runtime` row.
pub const RUNTIME_SITES: u64 = u64::MAX - 1;
/// The key of goroutines whose gopc is not a pc of the program's code (memory that is not a g).
pub const NO_GO_STATEMENT: u64 = u64::MAX - 2;
/// The main goroutine's gopc: no `go` statement started it.
pub const MAIN_GOROUTINE: u64 = 0;

/// Census state of one Go process.
pub struct GoCensus {
    /// How messages name the target (`pid 1234`, `core FILE`).
    label: String,
    /// gopc -> the site key it is counted under (see `site_key`), for the gopcs seen.
    keys: HashMap<u64, u64>,
    mem: Process,
    /// Goroutines counted under OTHER_SITES at the last census.
    pub folded: u64,
    at: AllgsAddr,
    layout: GoLayout,
    /// goid -> (gopc, first seen ns)
    seen: HashMap<u64, (u64, u64)>,
    totals: HashMap<u64, SiteTotals>,
    /// gopc -> state ("chan receive", "running", ...) -> live goroutines, at the last census.
    pub states: HashMap<u64, BTreeMap<String, u64>>,
    /// gopc -> entry function pc (startpc) of its goroutines.
    pub startpc: HashMap<u64, u64>,
    /// gopc -> where its goroutines wait, at the last census.
    pub stuck: HashMap<u64, Stuck>,
    /// gopc -> the stack bytes of its live goroutines (every one measured), at the last census.
    pub bytes: HashMap<u64, crate::model::BytesPerTask>,
    /// gopc -> the lowest and highest goid of its live goroutines, at the last census.
    pub goids: HashMap<u64, (u64, u64)>,
    /// The highest goid of the last census.
    pub max_goid: u64,
    /// Whether `bytes` is measured (`--no-bytes` turns it off).
    pub measure_bytes: bool,
    /// Waiting goroutines whose stacks are read per site and per census, distinct stacks kept.
    pub waits: crate::options::WaitSampling,
    pclntab: std::sync::Arc<Pclntab>,
    bias: u64,
    /// pc -> the user's own line there (see `stack::own_line`), computed once per pc.
    own_lines: HashMap<u64, Option<(String, u32)>>,
    /// goid -> the stack it was last unwound to, and what it was unwound from: a goroutine
    /// still parked where it was (same saved sp and pc, same stack, same wait) is not read again.
    stacks_seen: HashMap<u64, (ParkedAt, std::sync::Arc<Vec<(StackFrame, u64)>>)>,
    /// Whether most gs of allgs were dead at the last census.
    mostly_dead: bool,
}

/// Where a parked goroutine's stack was unwound from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParkedAt {
    sp: u64,
    pc: u64,
    stack_hi: u64,
    waitreason: u8,
}

impl GoCensus {
    pub fn new(space: crate::target::Space, plan: &GoPlan, bias: u64, limits: ReadLimits) -> Self {
        let at = match plan.allgs {
            AllgsAddr::Slice(a) => AllgsAddr::Slice(a + bias),
            AllgsAddr::PtrLen { ptr, len } => AllgsAddr::PtrLen { ptr: ptr + bias, len: len + bias },
        };
        GoCensus {
            label: space.label(),
            keys: HashMap::new(),
            mem: Process::new(space, limits),
            folded: 0,
            at,
            layout: plan.layout.clone(),
            seen: HashMap::new(),
            totals: HashMap::new(),
            states: HashMap::new(),
            startpc: HashMap::new(),
            stuck: HashMap::new(),
            bytes: HashMap::new(),
            goids: HashMap::new(),
            max_goid: 0,
            measure_bytes: true,
            waits: crate::options::WaitSampling::SAMPLED,
            pclntab: plan.pclntab.clone(),
            bias,
            own_lines: HashMap::new(),
            stacks_seen: HashMap::new(),
            mostly_dead: false,
        }
    }

    fn state_name(&self, st: u32, reason: u8) -> String {
        match st {
            1 => "runnable".into(),
            2 => "running".into(),
            3 => "syscall".into(),
            status::WAITING => self.layout.wait_reason(reason),
            10 => "leaked".into(),
            other => format!("status{other}"),
        }
    }

    /// One census: live goroutines per `go` statement, the oldest first-seen time, how many wait.
    pub fn census(&mut self, now_ns: u64) -> Result<Sample<u64>> {
        self.mem.budget.new_sample();
        // status words first when most gs were dead at the last census (a program that starts and
        // ends goroutines flat out), every g's fields at once when most were live
        let (gs, allgs_len) = read_goroutines(&self.mem, self.at, &self.layout.g, self.mostly_dead)?;
        let live_now = gs.iter().filter(|g| g.is_live()).count() as u64;
        self.mostly_dead = allgs_len > 2 * live_now;
        let mut live_ids = std::collections::HashSet::new();
        let mut per_site: HashMap<u64, (i64, u64, u64, u64)> = HashMap::new(); // live, oldest, idle, seen
        let mut stacks: HashMap<u64, Vec<u64>> = HashMap::new();
        self.states.clear();
        self.goids.clear();
        self.max_goid = 0;
        self.folded = 0;
        for g in gs.iter().filter(|g| g.is_live()) {
            live_ids.insert(g.goid);
            let (gopc, born) = *self.seen.entry(g.goid).or_insert_with(|| {
                let key = match self.keys.get(&g.gopc) {
                    Some(&k) => k,
                    None => {
                        let k = site_key(&self.pclntab, self.bias, &self.totals, g.gopc);
                        if self.keys.len() < 4 * MAX_SITES {
                            self.keys.insert(g.gopc, k);
                        }
                        k
                    }
                };
                self.totals.entry(key).or_default().spawned += 1;
                (key, now_ns)
            });
            self.folded += u64::from(gopc == OTHER_SITES);
            self.startpc.entry(gopc).or_insert(g.startpc);
            let e = per_site.entry(gopc).or_insert((0, born, 0, 0));
            e.0 += 1;
            e.1 = e.1.min(born);
            e.2 += u64::from(g.status == status::WAITING);
            e.3 += 1;
            let ids = self.goids.entry(gopc).or_insert((g.goid, g.goid));
            *ids = (ids.0.min(g.goid), ids.1.max(g.goid));
            self.max_goid = self.max_goid.max(g.goid);
            let name = self.state_name(g.status, g.waitreason);
            *self.states.entry(gopc).or_default().entry(name).or_default() += 1;
            if let Some(n) = g.stack_bytes().filter(|_| self.measure_bytes) {
                stacks.entry(gopc).or_default().push(n);
            }
        }
        self.bytes = stacks
            .into_iter()
            .filter_map(|(k, mut v)| crate::model::BytesPerTask::of("goroutine stack", &mut v).map(|b| (k, b)))
            .collect();
        self.read_stacks(&gs);
        let gone: Vec<u64> = self.seen.keys().filter(|id| !live_ids.contains(id)).copied().collect();
        for id in gone {
            let (gopc, born) = self.seen.remove(&id).unwrap();
            self.totals.entry(gopc).or_default().finish(now_ns.saturating_sub(born));
        }
        let sites = self
            .totals
            .iter()
            .map(|(&key, totals)| {
                let (live, oldest, idle, seen) = per_site.get(&key).copied().unwrap_or_default();
                SiteObs {
                    key,
                    live,
                    totals: totals.clone(),
                    oldest_born_ns: (live > 0).then_some(oldest),
                    idle: Some((idle, seen)),
                }
            })
            .collect();
        Ok(Sample { now_ns, sites })
    }

    /// Why the last census was cut short or folded sites, for the report.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.mem.budget.warning(&self.label).into_iter().collect();
        if self.folded > 0 {
            w.push(format!(
                "{}: more than {MAX_SITES} distinct go statements: {} goroutines of the others are counted together as one row",
                self.label, self.folded
            ));
        }
        w
    }

    /// Unwinds a bounded sample of each site's waiting goroutines and tallies where they wait.
    fn read_stacks(&mut self, gs: &[super::read::Goroutine]) {
        let mut per_site: HashMap<u64, StuckTally> = HashMap::new();
        let mut total = 0;
        // a goroutine the GC suspended to scan its stack is _Gwaiting with waitReasonPreempted for
        // a moment, parked wherever it ran (often its entry's stack check): not where it waits
        let preempted = (0..=u8::MAX).find(|&n| self.layout.wait_reason(n) == "Preempted");
        let mut unwound_now = std::collections::HashSet::new();
        for g in gs.iter().filter(|g| g.status == status::WAITING && Some(g.waitreason) != preempted) {
            let Some(&(key, _)) = self.seen.get(&g.goid) else { continue };
            let e = per_site.entry(key).or_default();
            if e.sampled() >= self.waits.per_site as u64 || total >= self.waits.per_sample {
                continue;
            }
            let parked = ParkedAt { sp: g.sched_sp, pc: g.sched_pc, stack_hi: g.stack_hi, waitreason: g.waitreason };
            let unwound = match self.stacks_seen.get(&g.goid) {
                Some((at, frames)) if *at == parked => frames.clone(),
                _ => {
                    let frames = std::sync::Arc::new(stack::unwind(&self.mem, &self.pclntab, self.bias, g.sched_sp, g.sched_pc, g.stack_hi));
                    self.stacks_seen.insert(g.goid, (parked, frames.clone()));
                    frames
                }
            };
            unwound_now.insert(g.goid);
            if unwound.is_empty() {
                continue;
            }
            total += 1;
            let mut frames: Vec<StackFrame> = unwound.iter().map(|(f, _)| f.clone()).collect();
            let at = stack::stuck_frame(&unwound).map(|i| {
                // the user's own line, when the blocking call was inlined into the user's function
                let pcln = &self.pclntab;
                let own = self.own_lines.entry(unwound[i].1).or_insert_with(|| stack::own_line(pcln, unwound[i].1));
                if let Some((file, line)) = own.clone() {
                    frames[i].file = Some(file);
                    frames[i].line = Some(line);
                }
                (frames[i].clone(), None)
            });
            e.add(at, frames);
        }
        // only the goroutines sampled now are remembered (bounded by the sample's size)
        self.stacks_seen.retain(|goid, _| unwound_now.contains(goid));
        self.stuck = per_site.into_iter().map(|(gopc, t)| (gopc, crate::runtimes::Stuck { decoder: Some("stack"), ..t.into_stuck(self.waits.stacks_kept) })).collect();
    }
}

/// The site a new goroutine is counted under: its `go` statement when gopc is a pc of the
/// program's code; [`MAIN_GOROUTINE`] for the main goroutine; [`RUNTIME_SITES`] for a `go`
/// statement in the runtime itself; [`NO_GO_STATEMENT`] for a gopc outside the code (bytes that
/// are not a g); [`OTHER_SITES`] once [`MAX_SITES`] sites are known.
fn site_key<V>(pcln: &Pclntab, bias: u64, known: &HashMap<u64, V>, gopc: u64) -> u64 {
    if known.contains_key(&gopc) {
        return gopc;
    }
    if gopc == 0 {
        return MAIN_GOROUTINE;
    }
    let Some(f) = pcln.func_for_pc(gopc.wrapping_sub(bias).wrapping_sub(1)) else {
        return NO_GO_STATEMENT;
    };
    // the main goroutine is started by the runtime's entry code: its gopc is in runtime.rt0_go, or
    // in the ABI wrapper of runtime.newproc that rt0_go calls (which the pclntab names newproc;
    // a `go` statement's gopc is in the function that holds it, never in newproc itself)
    if matches!(f.name.trim_end_matches(".abi0"), "runtime.rt0_go" | "runtime.newproc") {
        return MAIN_GOROUTINE;
    }
    if f.name.starts_with("runtime.") {
        return RUNTIME_SITES;
    }
    if known.len() >= MAX_SITES {
        return OTHER_SITES;
    }
    gopc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sites were keyed by g.gopc as read, unvalidated and never bounded: a torn allgs (or
    /// hostile memory) made one site per garbage word, each with a series.
    #[test]
    fn sites_are_bounded_and_keyed_only_by_code_addresses() {
        let pcln = Pclntab::parse(&crate::runtimes::go::pclntab::tests::synthetic()).unwrap();
        let f = pcln.funcs().next().unwrap();
        let mut known: HashMap<u64, ()> = HashMap::new();
        assert_eq!(site_key(&pcln, 0, &known, 0xdead_beef_0000), NO_GO_STATEMENT, "not code");
        assert_eq!(site_key(&pcln, 0, &known, 0), MAIN_GOROUTINE);
        assert_eq!(site_key(&pcln, 0, &known, f.entry + 1), f.entry + 1);
        for k in 1..=MAX_SITES as u64 {
            known.insert(k << 32, ());
        }
        assert_eq!(site_key(&pcln, 0, &known, f.entry + 1), OTHER_SITES, "past the cap");
        assert_eq!(site_key(&pcln, 0, &known, 5 << 32), 5 << 32, "a known site stays itself");
    }
}
