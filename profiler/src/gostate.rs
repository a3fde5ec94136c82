//! Go goroutines by census: each sample reads every g from outside and turns the change since
//! the last census into the same per-site counters the kernel keeps for tokio tasks, keyed by
//! the `go` statement (g.gopc).
use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};
use profiler_common::{lifetime_bucket, LIFETIME_BUCKETS};

use crate::{
    bpf::{KernelSnapshot, LiveTask, SiteTotals},
    elf::ElfImage,
    gocensus::{read_goroutines, status, AllgsAddr},
    golang::{allgs, buildinfo, layout::GoLayout, pclntab::Pclntab, tables},
    target::read_u64,
};

/// What is needed to read and name a Go process's goroutines.
pub struct GoPlan {
    pub version: String,
    pub layout: GoLayout,
    pub pclntab: Pclntab,
    /// allgs as ELF virtual addresses.
    pub allgs: AllgsAddr,
    /// Where the layout came from: "dwarf" or "table".
    pub layout_source: &'static str,
}

/// Recognises a Go binary and finds what a census needs; None when it is not Go.
pub fn plan(image: &ElfImage, pid: u32, bias: u64) -> Option<Result<GoPlan>> {
    let version = buildinfo::go_version(image.data())?;
    Some(plan_go(image, pid, bias, version))
}

fn plan_go(image: &ElfImage, pid: u32, bias: u64, version: String) -> Result<GoPlan> {
    let (layout, layout_source) = match crate::golang::layout::from_dwarf(image.data()) {
        Some(l) => (l, "dwarf"),
        None => match tables::for_version(&version) {
            Some(l) => (l, "table"),
            None => bail!(
                "{version} is not a Go version leakprof knows and the binary has no DWARF to read \
                 the runtime's layout from (known: {}); rebuild without -w or add the toolchain \
                 to the table (profiler/src/golang/tables.rs)",
                tables::known_versions().join(", ")
            ),
        },
    };
    let pclntab = Pclntab::from_elf(image.data())
        .ok_or_else(|| anyhow!("{version}: no Go 1.18+ .gopclntab found in the binary"))?;
    let allgs = match allgs::by_symbols(image) {
        Some(a) => a,
        None => {
            let refs = allgs::allgadd_data_refs(image, &pclntab);
            let a = allgs::pick_slice_static(&refs)
                .or_else(|| allgs::pick_slice(&refs, |a| read_u64(pid, a + bias).ok()))
                .ok_or_else(|| anyhow!("{version}: cannot find runtime.allgs in this stripped binary"))?;
            AllgsAddr::Slice(a)
        }
    };
    Ok(GoPlan { version, layout, pclntab, allgs, layout_source })
}

/// Census state of one Go process.
pub struct GoCensus {
    pid: u32,
    at: AllgsAddr,
    layout: GoLayout,
    /// goid -> (gopc, first seen ns)
    seen: HashMap<u64, (u64, u64)>,
    totals: HashMap<u64, SiteTotals>,
    /// gopc -> state ("chan receive", "running", ...) -> live goroutines, at the last census.
    pub states: HashMap<u64, BTreeMap<String, u64>>,
    /// gopc -> entry function pc (startpc) of its goroutines.
    pub startpc: HashMap<u64, u64>,
}

impl GoCensus {
    pub fn new(pid: u32, plan: &GoPlan, bias: u64) -> Self {
        let at = match plan.allgs {
            AllgsAddr::Slice(a) => AllgsAddr::Slice(a + bias),
            AllgsAddr::PtrLen { ptr, len } => AllgsAddr::PtrLen { ptr: ptr + bias, len: len + bias },
        };
        GoCensus {
            pid,
            at,
            layout: plan.layout.clone(),
            seen: HashMap::new(),
            totals: HashMap::new(),
            states: HashMap::new(),
            startpc: HashMap::new(),
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

    /// One census as a snapshot (live goroutines as tasks; idle = waiting) plus (gopc, idle) states.
    pub fn census(&mut self, now_ns: u64) -> Result<(KernelSnapshot, Vec<(u64, bool)>)> {
        let gs = read_goroutines(self.pid, self.at, &self.layout.g)?;
        let mut live_ids = std::collections::HashSet::new();
        let mut tasks = Vec::new();
        let mut idle = Vec::new();
        self.states.clear();
        for g in gs.iter().filter(|g| g.is_live()) {
            live_ids.insert(g.goid);
            let (gopc, born) = *self.seen.entry(g.goid).or_insert_with(|| {
                self.totals.entry(g.gopc).or_default().spawned += 1;
                (g.gopc, now_ns)
            });
            self.startpc.entry(gopc).or_insert(g.startpc);
            tasks.push(LiveTask { header: g.goid, vtable: gopc, born_ns: born });
            idle.push((gopc, g.status == status::WAITING));
            let name = self.state_name(g.status, g.waitreason);
            *self.states.entry(gopc).or_default().entry(name).or_default() += 1;
        }
        let gone: Vec<u64> = self.seen.keys().filter(|id| !live_ids.contains(id)).copied().collect();
        for id in gone {
            let (gopc, born) = self.seen.remove(&id).unwrap();
            let t = self.totals.entry(gopc).or_default();
            let life = now_ns.saturating_sub(born);
            t.finished += 1;
            t.max_lifetime_ns = t.max_lifetime_ns.max(life);
            if t.lifetime_log2_us.len() < LIFETIME_BUCKETS {
                t.lifetime_log2_us.resize(LIFETIME_BUCKETS, 0);
            }
            t.lifetime_log2_us[lifetime_bucket(life)] += 1;
        }
        let snap = KernelSnapshot {
            sites: self.totals.clone(),
            stats: vec![0; profiler_common::stat::COUNT as usize],
            tasks,
            futex_waits: vec![],
        };
        Ok((snap, idle))
    }
}
