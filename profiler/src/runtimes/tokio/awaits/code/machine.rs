//! Async state machines recognised in one function's code ([`super::flow::Flow`]).
//!
//! rustc compiles an async fn (or block) to a `poll` that dispatches on its discriminant: 0
//! unresumed, 1 returned, 2 panicked, 3.. one per `.await`. The blocks of states 1 and 2 raise
//! `panic_const_async_fn_resumed` and `..._resumed_panic` with the same `core::panic::Location`,
//! the async fn's own definition: a dispatch whose states 1 and 2 both reach such a call with one
//! location is an async state machine, and nothing else is taken for one (drop glue and other
//! `match`es on the same byte have no such blocks). The block of each await state resumes the
//! awaited future: either an inlined one (another dispatch, on a byte of the same future) or a
//! call to its `poll` (the first call that is not a panic or drop glue), whose first argument, a
//! pointer into this future, says where the awaitee lies.

use std::collections::BTreeMap;

use super::flow::{Call, Flow, StateLoc, Val};
use crate::elf::ElfImage;
use crate::runtimes::tokio::naming::code::{read_panic_location, SourceLocation};

/// Instructions followed from a resume target to its awaitee.
const RESUME_STEPS: usize = 96;
/// Instructions of a resume path kept for line lookups.
const PATH_KEPT: usize = 16;
/// Instructions followed from a state-1/2 target to its panic call.
const PANIC_STEPS: usize = 12;

/// One recognised state machine, offsets from the function's entry `rdi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The dispatching `jmp` (or first compare branch).
    pub dispatch: u64,
    pub at: StateLoc,
    /// The async fn's definition, from its resumed-after-completion panic.
    pub location: SourceLocation,
    /// Its await points, by discriminant (3 = the first `.await`).
    pub awaits: BTreeMap<u64, Await>,
}

/// One `.await` of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Await {
    /// Where the state resumes.
    pub resume: u64,
    pub next: Next,
    /// The first instructions of the resume path (where the await's line is looked up: the
    /// first ones can be compiler-made, with no line).
    pub path: Vec<u64>,
}

/// What an await polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A machine inlined into the same function (index into [`Machines::list`]).
    Inner(usize),
    /// A call: the call instruction, the callee, and the awaitee's offset from this function's
    /// entry `rdi` when the first argument is a pointer into it.
    Call {
        ip: u64,
        callee: u64,
        arg: Option<i64>,
    },
    /// No call found (the awaited future's poll was inlined without a state machine).
    Inline,
}

/// The machines of one function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machines {
    pub list: Vec<Machine>,
    /// The machine the function itself is the poll of (not inlined into another await).
    pub entry: Option<usize>,
}

/// What the callee at an address is, for skipping calls that do not poll (by symbol, when the
/// binary has symbols).
fn skipped_callee(image: &ElfImage, callee: u64) -> bool {
    image.symbols_at_addr(callee).iter().any(|s| {
        let n = s.name.trim_start_matches('<');
        PLUMBING.iter().any(|p| n.starts_with(p)) || n.contains("::drop_slow")
    })
}

/// Callees a resume block may call before polling its awaitee: drop glue, the runtime's
/// thread-local context and budget, task-id guards.
const PLUMBING: &[&str] = &[
    "core::ptr::drop_in_place",
    "std::sys::thread_local::",
    "std::thread::local::",
    "std::sys::pal::",
    "tokio::runtime::coop::",
    "tokio::runtime::context::",
    "tokio::runtime::task::core::TaskIdGuard",
    "tokio::util::trace::",
    "alloc::alloc::",
    "__rust_alloc",
    "__rust_dealloc",
    "malloc",
    "free",
];

/// False when the callee has a symbol that is not an async fn's resumed-after-completion panic
/// (without symbols the shape alone decides).
fn resumed_panic(image: &ElfImage, callee: Option<u64>) -> bool {
    let Some(c) = callee else { return true };
    let names = image.symbols_at_addr(c);
    names.is_empty()
        || names.iter().any(|s| {
            s.name.contains("async_fn_resumed")
                || s.name.contains("async_gen_resumed")
                || s.name.contains("async_block_resumed")
        })
}

/// The panic location passed in `rdi` to a call, if the call is a panic with one.
fn panic_call(image: &ElfImage, call: &Call) -> Option<u64> {
    match call.rdi {
        Val::Const(a) => read_panic_location(image, a).map(|_| a),
        _ => None,
    }
}

/// From `ip`, straight-line (following in-function jumps), the first call within `steps`
/// instructions.
fn first_call(flow: &Flow, mut ip: u64, steps: usize) -> Option<&Call> {
    for _ in 0..steps {
        let i = flow.index_of(ip)?;
        let ins = &flow.insns[i];
        if let Some(c) = flow.calls.iter().find(|c| c.ip == ip) {
            return Some(c);
        }
        use iced_x86::{FlowControl, OpKind};
        match ins.flow_control() {
            FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                ip = ins.near_branch_target()
            }
            FlowControl::Return
            | FlowControl::Interrupt
            | FlowControl::Exception
            | FlowControl::IndirectBranch => return None,
            _ => ip = ins.next_ip(),
        }
    }
    None
}

/// Bytes from a compare chain's first branch within which its last one gives the default target.
const CHAIN_SPAN: u64 = 256;

/// The dispatches of a flow: (dispatch ip, where, value -> target, where other values go).
fn dispatches(flow: &Flow) -> Vec<(u64, StateLoc, BTreeMap<u64, u64>, Option<u64>)> {
    let mut out: Vec<(u64, StateLoc, BTreeMap<u64, u64>, Option<u64>)> = flow
        .tables
        .iter()
        .map(|t| (t.ip, t.at, t.targets.iter().copied().collect(), None))
        .collect();
    // compare chains: the equality branches on one discriminant (one byte of `self` is one
    // discriminant), the first branch to a value winning; the chain's last branch near its start
    // sends the values it did not test elsewhere
    let mut by_loc: BTreeMap<StateLoc, Vec<&super::flow::CompareEdge>> = BTreeMap::new();
    for e in &flow.compares {
        if !flow.tables.iter().any(|t| t.at == e.at) {
            by_loc.entry(e.at).or_default().push(e);
        }
    }
    for (at, edges) in by_loc {
        let first = edges[0].ip;
        let mut map = BTreeMap::new();
        for e in &edges {
            map.entry(e.value).or_insert(e.target);
        }
        let other = edges
            .iter()
            .take_while(|e| e.ip - first < CHAIN_SPAN)
            .last()
            .map(|e| e.other);
        out.push((first, at, map, other));
    }
    out
}

/// Recognises the state machines of `flow`.
pub fn machines(image: &ElfImage, flow: &Flow) -> Machines {
    let mut list = Vec::new();
    for (ip, at, targets, other) in dispatches(flow) {
        if !(1..=4).contains(&at.width) || at.off < 0 {
            continue;
        }
        let loc = |state: u64| {
            let call = first_call(flow, targets.get(&state).copied().or(other)?, PANIC_STEPS)?;
            Some((panic_call(image, call)?, call.callee))
        };
        let l1 = match (loc(1), loc(2)) {
            (Some((l1, c1)), Some((l2, c2)))
                if l1 == l2 && resumed_panic(image, c1) && resumed_panic(image, c2) =>
            {
                l1
            }
            // one block only: with panic = "abort" there is no `Panicked` state, and an async fn
            // that never returns has no reachable `Returned` one
            (Some((l, c)), None) | (None, Some((l, c))) if resumed_panic(image, c) => l,
            _ => continue,
        };
        let Some(location) = read_panic_location(image, l1) else {
            continue;
        };
        let awaits = targets
            .range(3..)
            .map(|(&state, &resume)| {
                (
                    state,
                    Await {
                        resume,
                        next: Next::Inline,
                        path: Vec::new(),
                    },
                )
            })
            .collect();
        list.push(Machine {
            dispatch: ip,
            at,
            location,
            awaits,
        });
    }
    // what each await polls, now that every machine's dispatch is known
    let dispatch_ips: Vec<u64> = list.iter().map(|m| m.dispatch).collect();
    let mut inner = vec![false; list.len()];
    for m in 0..list.len() {
        let states: Vec<u64> = list[m].awaits.keys().copied().collect();
        for s in states {
            let resume = list[m].awaits[&s].resume;
            let mut path = Vec::new();
            let next = resume_next(
                image,
                flow,
                resume,
                &dispatch_ips,
                list[m].dispatch,
                &mut path,
            );
            if let Next::Inner(j) = next {
                inner[j] = true;
            }
            let a = list[m].awaits.get_mut(&s).expect("state");
            a.next = next;
            a.path = path;
        }
    }
    let entry = (0..list.len())
        .filter(|&i| !inner[i])
        .min_by_key(|&i| list[i].dispatch);
    Machines { list, entry }
}

/// What the block resuming at `ip` polls.
fn resume_next(
    image: &ElfImage,
    flow: &Flow,
    mut ip: u64,
    dispatch_ips: &[u64],
    own: u64,
    path: &mut Vec<u64>,
) -> Next {
    use iced_x86::{FlowControl, OpKind};
    for _ in 0..RESUME_STEPS {
        if path.len() < PATH_KEPT {
            path.push(ip);
        }
        if let Some(j) = dispatch_ips
            .iter()
            .position(|&d| d == ip)
            .filter(|_| ip != own)
        {
            return Next::Inner(j);
        }
        let Some(i) = flow.index_of(ip) else {
            return Next::Inline;
        };
        let ins = &flow.insns[i];
        if let Some(c) = flow.calls.iter().find(|c| c.ip == ip) {
            match c.callee {
                Some(callee)
                    if panic_call(image, c).is_none() && !skipped_callee(image, callee) =>
                {
                    let arg = match c.rdi {
                        Val::Ptr(off) => Some(off),
                        _ => None,
                    };
                    return Next::Call { ip, callee, arg };
                }
                // a panic path, or a call through a register (a `dyn Future`): nothing to name
                None => return Next::Inline,
                _ if panic_call(image, c).is_some() => return Next::Inline,
                _ => {} // drop glue and the like: keep going
            }
        }
        match ins.flow_control() {
            FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                let t = ins.near_branch_target();
                if !flow.contains(t) {
                    return Next::Inline;
                }
                ip = t;
            }
            FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                return Next::Inline
            }
            FlowControl::IndirectBranch => {
                // an inlined machine's dispatch is the jump itself
                return match dispatch_ips.iter().position(|&d| d == ip) {
                    Some(j) if ip != own => Next::Inner(j),
                    _ => Next::Inline,
                };
            }
            _ => ip = ins.next_ip(),
        }
    }
    Next::Inline
}
