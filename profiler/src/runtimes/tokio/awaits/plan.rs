//! From DWARF layouts to a decoding plan: where the future and the `Stage` discriminant lie in a
//! task `Cell<T, S>`, and every async state machine reachable through `.await`s of the future.

use std::collections::HashMap;
use std::rc::Rc;

use super::decode::{DiscrLoc, EnvPlan, Hop, Inner, StagePlan, StatePlan, SuspendPlan, MAX_DEPTH};
use super::dwarf::Debug;
use super::layout::{pointee, read_layout, type_name, Layout};
use super::names::{awaiting, env_function, is_env};
use super::scan::{scan_unit, UnitScan};

/// Most structure layouts read for one future.
const MAX_LAYOUTS: usize = 2048;
/// Most structures visited looking for `Stage<T>` inside a `Cell<T, S>`.
const MAX_STAGE_VISITS: usize = 64;
/// How deep a wrapper (e.g. `tokio::time::Timeout<F>`) is searched for the one state machine it
/// holds.
const MAX_WRAPPER_DEPTH: usize = 2;

/// Wrappers that do not count against [`MAX_WRAPPER_DEPTH`]: `Pin<Box<F>>` is
/// `Pin { Box { Unique { NonNull { *const F } } } }`.
fn is_smart_pointer(name: &str) -> bool {
    ["Pin<", "Box<", "Unique<", "NonNull<", "ManuallyDrop<"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The future of a task cell, found.
pub(super) struct CellPlan {
    pub stage: StagePlan,
    /// Offset of the future from the cell (task header) start, and its type.
    pub future_offset: u64,
    pub future_ty: u64,
}

pub(super) struct Planner<'a> {
    debug: &'a Debug,
    scans: &'a mut HashMap<usize, UnitScan>,
    layouts: HashMap<u64, Option<Rc<Layout>>>,
    pub envs: Vec<EnvPlan>,
    /// Type -> env index; None while being built (a cycle) or when it is no state machine.
    env_ids: HashMap<u64, Option<usize>>,
}

impl<'a> Planner<'a> {
    pub fn new(debug: &'a Debug, scans: &'a mut HashMap<usize, UnitScan>) -> Self {
        Planner {
            debug,
            scans,
            layouts: HashMap::new(),
            envs: Vec::new(),
            env_ids: HashMap::new(),
        }
    }

    fn layout(&mut self, global: u64) -> Option<Rc<Layout>> {
        if let Some(l) = self.layouts.get(&global) {
            return l.clone();
        }
        if self.layouts.len() >= MAX_LAYOUTS {
            return None;
        }
        let l = read_layout(self.debug, global).map(Rc::new);
        self.layouts.insert(global, l.clone());
        l
    }

    /// The scope (namespace path) of the type at `global`.
    fn scope(&mut self, global: u64) -> String {
        let Some((u, _)) = self.debug.locate(global) else {
            return String::new();
        };
        let debug = self.debug;
        let scan = self.scans.entry(u).or_insert_with(|| scan_unit(debug, u));
        scan.scope_of(global).unwrap_or_default().to_string()
    }

    /// (scope, name) of the type at `global`.
    fn label(&mut self, global: u64) -> (String, String) {
        let name = type_name(self.debug, global)
            .map(|(n, _)| n)
            .unwrap_or_else(|| "?".into());
        (self.scope(global), name)
    }

    /// The readable qualified name of the type at `global`.
    pub fn readable_name(&mut self, global: u64) -> String {
        let (scope, name) = self.label(global);
        awaiting(&scope, &name)
    }

    /// Finds `Stage<T>` in the cell structure at `cell` and the future in its `Running` variant.
    pub fn cell(&mut self, cell: u64) -> Option<CellPlan> {
        let mut queue = std::collections::VecDeque::from([(cell, 0u64, 0usize)]);
        let mut visits = 0;
        while let Some((ty, offset, depth)) = queue.pop_front() {
            visits += 1;
            if visits > MAX_STAGE_VISITS {
                return None;
            }
            let Some(layout) = self.layout(ty) else {
                continue;
            };
            if layout.name.starts_with("Stage<") {
                if let Some(plan) = self.stage(&layout, offset) {
                    return Some(plan);
                }
                continue;
            }
            if depth < 6 {
                for m in &layout.members {
                    if let (Some(t), Some(off)) = (m.ty, offset.checked_add(m.offset)) {
                        queue.push_back((t, off, depth + 1));
                    }
                }
            }
        }
        None
    }

    fn stage(&mut self, stage: &Layout, offset: u64) -> Option<CellPlan> {
        let vp = stage.variants.as_ref()?;
        let running = vp
            .variants
            .iter()
            .position(|v| v.member.name == "Running")?;
        let member = &vp.variants[running].member;
        let inner = self.layout(member.ty?)?;
        let fut = inner.member("__0")?;
        Some(CellPlan {
            stage: StagePlan {
                discr: DiscrLoc {
                    offset: offset.checked_add(vp.discr.offset)?,
                    size: vp.discr.size,
                },
                values: vp.variants.iter().map(|v| v.value).collect(),
                running,
            },
            future_offset: offset.checked_add(member.offset)?.checked_add(fut.offset)?,
            future_ty: fut.ty?,
        })
    }

    /// The state machine at `global`, or the one a wrapper at `global` holds (by value, or
    /// through a `Box`/`Pin` of a concrete type): how to reach it from `global`'s start.
    pub fn env_within(&mut self, global: u64, depth: usize) -> Option<Inner> {
        if let Some(env) = self.env(global, depth) {
            return Some(Inner {
                path: Vec::new(),
                env,
            });
        }
        let (path, inner) = self.unique_env_member(global, MAX_WRAPPER_DEPTH, MAX_DEPTH)?;
        Some(Inner {
            path,
            env: self.env(inner, depth)?,
        })
    }

    fn is_env_type(&mut self, global: u64) -> bool {
        self.layout(global)
            .is_some_and(|l| is_env(&l.name) && l.variants.is_some())
    }

    /// The only state machine held in the members of `global` (not inside variants: which one is
    /// live is only known at runtime), searched `levels` wrappers deep (smart pointers do not
    /// count, but all count against `nesting`, which bounds the recursion on cyclic DWARF): (the
    /// path to it, its type).
    fn unique_env_member(
        &mut self,
        global: u64,
        levels: usize,
        nesting: usize,
    ) -> Option<(Vec<Hop>, u64)> {
        if levels == 0 || nesting == 0 {
            return None;
        }
        let layout = self.layout(global)?;
        let mut found = None;
        for m in &layout.members {
            let Some(ty) = m.ty else { continue };
            let hit = if self.is_env_type(ty) {
                Some((vec![Hop::Add(m.offset)], ty))
            } else if let Some(pointee) = pointee(self.debug, ty) {
                self.is_env_type(pointee)
                    .then(|| (vec![Hop::Add(m.offset), Hop::Deref], pointee))
            } else {
                let next = match self.layout(ty) {
                    Some(l) if is_smart_pointer(&l.name) => levels,
                    Some(_) => levels - 1,
                    None => 0,
                };
                self.unique_env_member(ty, next, nesting - 1)
                    .map(|(mut path, t)| {
                        path.insert(0, Hop::Add(m.offset));
                        (path, t)
                    })
            };
            if let Some(h) = hit {
                if found.is_some() {
                    return None; // several (a join or select): which one is pending is unknown
                }
                found = Some(h);
            }
        }
        found
    }

    /// The plan of the async state machine type at `global` (and of those it awaits).
    pub fn env(&mut self, global: u64, depth: usize) -> Option<usize> {
        if let Some(id) = self.env_ids.get(&global) {
            return *id;
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        let layout = self.layout(global)?;
        let vp = layout.variants.as_ref().filter(|_| is_env(&layout.name))?;
        self.env_ids.insert(global, None);
        let scope = self.scope(global);
        let function = env_function(&scope, &layout.name)?;
        let mut states = Vec::with_capacity(vp.variants.len());
        for v in &vp.variants {
            let suspend = match v.member.ty.and_then(|t| self.layout(t)) {
                Some(state) if state.name.starts_with("Suspend") => Some(self.suspend(
                    &state,
                    v.member.offset,
                    v.member.file.clone(),
                    v.member.line,
                    depth,
                )),
                _ => None,
            };
            states.push(StatePlan {
                value: v.value,
                suspend,
            });
        }
        self.envs.push(EnvPlan {
            function,
            discr: vp.discr,
            states,
        });
        let id = self.envs.len() - 1;
        self.env_ids.insert(global, Some(id));
        Some(id)
    }

    fn suspend(
        &mut self,
        state: &Layout,
        state_offset: u64,
        file: Option<String>,
        line: Option<u32>,
        depth: usize,
    ) -> SuspendPlan {
        let awaitee = state.member("__awaitee");
        let (awaiting, inner) = match awaitee.and_then(|a| Some((a.ty?, a.offset))) {
            Some((ty, offset)) => {
                let name = self.readable_name(ty);
                let inner = self.env_within(ty, depth + 1).and_then(|mut inner| {
                    inner
                        .path
                        .insert(0, Hop::Add(state_offset.checked_add(offset)?));
                    Some(inner)
                });
                (name, inner)
            }
            None => ("?".to_string(), None),
        };
        SuspendPlan {
            file: file.unwrap_or_default(),
            line: line.unwrap_or(0),
            awaiting,
            inner,
        }
    }
}
