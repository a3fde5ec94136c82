//! Where a tokio task's future is suspended, from DWARF type info (`debug = 2` builds) or, without it, from the machine code.
//!
//! A task is a `tokio::runtime::task::core::Cell<T, S>` whose header is its first field. The
//! `raw::poll<T, S>` subprogram at a vtable's poll address has a `harness: Harness<T, S>`
//! variable pointing to the `Cell<T, S>` type (else a `Cell` with the same `T` and `S` is looked
//! for in the units of the poll function, `T` and `S`: units refer to each other's types). The
//! cell gives where `Stage<T>` lies, its discriminant, and the future in its `Running` variant.
//! An async fn's future is a `{async_fn_env#0}` structure whose variant part, keyed by
//! `__state`, has one `SuspendN` variant per `.await` (declared at the `.await`'s line) holding
//! the awaited future in `__awaitee`; nested state machines are followed from there, also inside
//! a wrapper holding exactly one (`Coop<F>`, `Timeout<F>`, `Pin<Box<F>>` of a concrete `F`).
//!
//! Everything DWARF-derived is computed in [`AwaitIndex::future_of`] (lazily, per poll function);
//! [`AwaitIndex::suspended_at`] only reads a few bytes per frame of target memory.
//!
//! Modules: [`dwarf`] loads sections and units, [`scan`] indexes a unit in one pass, [`layout`]
//! reads a structure, [`plan`] turns layouts into offsets, [`decode`] reads target memory with
//! them, [`names`] makes type names readable. Without DWARF types, [`code`] reads the same from
//! the machine code; [`stuck`] tallies what either decoded.

pub mod code;
mod decode;
mod dwarf;
mod layout;
mod names;
mod plan;
mod scan;
pub mod stuck;

use std::collections::HashMap;
use std::sync::Arc;

use self::decode::{decode, follow, is_running, EnvPlan, Inner, StagePlan};
use self::dwarf::Debug;
use self::plan::Planner;
use self::scan::{scan_unit, UnitScan};

/// Most units searched for one poll address (identical-code folding can put several there).
const MAX_UNITS_PER_ADDR: usize = 16;

/// DWARF-derived layouts of task futures, built lazily per poll function.
pub struct AwaitIndex {
    debug: Debug,
    scans: HashMap<usize, UnitScan>,
    futures: HashMap<u64, Option<Arc<FutureLoc>>>,
}

/// Where the future of one kind of task lies and how to decode its suspend points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FutureLoc {
    /// Offset of the future (`T`) from the task header.
    pub offset: u64,
    /// The future's type, readable (`async fn app::f` for an async fn).
    pub type_name: String,
    stage: StagePlan,
    /// The state machine of the future (or the one it wraps), from the future's start.
    root: Option<Inner>,
    envs: Vec<EnvPlan>,
}

impl FutureLoc {
    /// True when the future (or a wrapper around it) is an async state machine that can be decoded.
    pub fn is_async(&self) -> bool {
        self.root.is_some()
    }
}

/// One suspend point: the `.await` a state machine is stopped at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwaitFrame {
    /// The async fn (or block) path, e.g. "tokio_fixture::leaks::never_answered".
    pub function: String,
    /// decl_file of the suspend point as written in DWARF, and its line.
    pub file: String,
    pub line: u32,
    /// The awaited future's type, shortened to be readable.
    pub awaiting: String,
}

impl AwaitIndex {
    /// None when the binary has no type debug info (no DWARF structure types for tasks).
    pub fn new(image: &crate::elf::ElfImage) -> Option<AwaitIndex> {
        if !image.has_debug_info() {
            return None;
        }
        let debug = Debug::load(image.dwarf_data())?;
        Some(AwaitIndex {
            debug,
            scans: HashMap::new(),
            futures: HashMap::new(),
        })
    }

    /// The layout of the future of tasks whose `raw::poll<T,S>` is at ELF vaddr `poll_vaddr`
    /// (cached inside; None: not found).
    pub fn future_of(&mut self, poll_vaddr: u64) -> Option<Arc<FutureLoc>> {
        if let Some(f) = self.futures.get(&poll_vaddr) {
            return f.clone();
        }
        let f = self.build(poll_vaddr).map(Arc::new);
        self.futures.insert(poll_vaddr, f.clone());
        f
    }

    fn build(&mut self, poll_vaddr: u64) -> Option<FutureLoc> {
        let mut polls = Vec::new();
        for u in self
            .debug
            .units_at(poll_vaddr)
            .into_iter()
            .take(MAX_UNITS_PER_ADDR)
        {
            let scan = self.scan(u);
            polls.extend(
                scan.polls
                    .iter()
                    .filter(|p| p.at == poll_vaddr && p.t.is_some())
                    .copied(),
            );
        }
        let mut found: Vec<FutureLoc> = Vec::new();
        for p in polls {
            // `Cell<T, S>` may be described in the unit of the poll function or in the one of its
            // type parameters (units refer to each other's types).
            let mut units: Vec<usize> = [p.t, p.s]
                .into_iter()
                .flatten()
                .filter_map(|g| Some(self.debug.locate(g)?.0))
                .chain(self.debug.units_at(poll_vaddr))
                .collect();
            units.dedup();
            let harness = p
                .harness
                .and_then(|h| layout::cell_of_harness(&self.debug, h));
            let cell = harness.or_else(|| {
                units.into_iter().take(MAX_UNITS_PER_ADDR).find_map(|u| {
                    self.scan(u)
                        .cells
                        .iter()
                        .find(|c| c.t == p.t && c.s == p.s)
                        .map(|c| c.at)
                })
            });
            if let Some(f) = cell.and_then(|c| self.plan_cell(c)) {
                found.push(f);
            }
        }
        found.dedup();
        // Folded code shared by futures of different layouts: cannot tell which one a task has.
        match found.len() {
            1 => found.pop(),
            _ => None,
        }
    }

    fn scan(&mut self, u: usize) -> &UnitScan {
        let debug = &self.debug;
        self.scans.entry(u).or_insert_with(|| scan_unit(debug, u))
    }

    fn plan_cell(&mut self, cell: u64) -> Option<FutureLoc> {
        let mut planner = Planner::new(&self.debug, &mut self.scans);
        let c = planner.cell(cell)?;
        let type_name = planner.readable_name(c.future_ty);
        let root = planner.env_within(c.future_ty, 0);
        Some(FutureLoc {
            offset: c.future_offset,
            type_name,
            stage: c.stage,
            root,
            envs: planner.envs,
        })
    }

    /// Where the task at runtime address `header` is suspended, outermost first; None when
    /// unreadable or not suspended.
    pub fn suspended_at(
        &self,
        fut: &FutureLoc,
        header: u64,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> Option<Vec<AwaitFrame>> {
        let root = fut.root.as_ref()?;
        if !is_running(&fut.stage, header, read) {
            return None;
        }
        let base = follow(&root.path, header.checked_add(fut.offset)?, read)?;
        let frames = decode(&fut.envs, root.env, base, read);
        (!frames.is_empty()).then_some(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index and layouts are kept by the (threaded) caller.
    #[test]
    fn shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<AwaitIndex>();
        check::<Arc<FutureLoc>>();
    }

    /// The test binary itself is built with full debug info: it has types, and no task poll at 0.
    #[test]
    fn own_binary_has_types() {
        let Ok(image) = crate::elf::ElfImage::open("/proc/self/exe") else {
            return;
        };
        if !image.has_debug_info() {
            return; // built without debug info
        }
        let mut index = AwaitIndex::new(&image).expect("type info in a debug build");
        assert!(index.future_of(0).is_none());
        assert!(index.futures.contains_key(&0), "misses are cached too");
    }
}
