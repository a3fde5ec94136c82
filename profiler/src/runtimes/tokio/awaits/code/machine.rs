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

use super::flow::{Call, Env, Flow, StateLoc, Val};
use crate::runtimes::tokio::naming::code::SourceLocation;

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
fn skipped_callee(env: &dyn Env, callee: u64) -> bool {
    env.symbol_names(callee).iter().any(|s| {
        let n = s.trim_start_matches('<');
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
fn resumed_panic(env: &dyn Env, callee: Option<u64>) -> bool {
    let Some(c) = callee else { return true };
    let names = env.symbol_names(c);
    names.is_empty()
        || names.iter().any(|s| s.contains("async_fn_resumed") || s.contains("async_gen_resumed") || s.contains("async_block_resumed"))
}

/// The panic location passed in `rdi` to a call, if the call is a panic with one.
fn panic_call(env: &dyn Env, call: &Call) -> Option<u64> {
    match call.rdi {
        Val::Const(a) => env.panic_location(a).map(|_| a),
        _ => None,
    }
}

/// From `ip`, straight-line (following in-function jumps), the first call within `steps`
/// instructions.
fn first_call(flow: &Flow, ip: u64, steps: usize) -> Option<&Call> {
    flow.straight_line(ip).take(steps).find_map(|ins| flow.call_at(ins.ip()))
}

/// Bytes from a compare chain's first branch within which its last one gives the default target.
const CHAIN_SPAN: u64 = 256;

/// A dispatch: its ip, where its discriminant lies, value -> target, and where other values go.
type Dispatch = (u64, StateLoc, BTreeMap<u64, u64>, Option<u64>);

/// The dispatches of a flow.
fn dispatches(flow: &Flow) -> Vec<Dispatch> {
    // a table indexed by the discriminant minus a bias (the values below it, e.g. the
    // unresumed/returned/panicked states, tested by compares before it)
    let mut out: Vec<Dispatch> = flow
        .tables
        .iter()
        .map(|t| {
            let mut map: BTreeMap<u64, u64> = t.targets.iter().copied().collect();
            for e in flow.compares.iter().filter(|e| e.at == t.at && e.ip < t.ip) {
                map.entry(e.value).or_insert(e.target);
            }
            (t.ip, t.at, map, None)
        })
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
pub fn machines(env: &dyn Env, flow: &Flow) -> Machines {
    let mut list = Vec::new();
    let all = dispatches(flow);
    // the first dispatch on a byte of self with a target for 0 (unresumed): the function's own
    // state machine when it is one; when it is not recognised, no other machine of the function
    // (an awaitee inlined into it) may stand for the function's
    let first = all.iter().filter(|(_, at, map, _)| at.width == 1 && at.off >= 0 && map.contains_key(&0)).map(|d| d.0).min();
    for (ip, at, targets, other) in all {
        if !(1..=4).contains(&at.width) || at.off < 0 {
            continue;
        }
        let loc = |state: u64| {
            let call = first_call(flow, targets.get(&state).copied().or(other)?, PANIC_STEPS)?;
            Some((panic_call(env, call)?, call.callee))
        };
        let l1 = match (loc(1), loc(2)) {
            (Some((l1, c1)), Some((l2, c2)))
                if l1 == l2 && resumed_panic(env, c1) && resumed_panic(env, c2) =>
            {
                l1
            }
            // one block only: with panic = "abort" there is no `Panicked` state, and an async fn
            // that never returns has no reachable `Returned` one
            (Some((l, c)), None) | (None, Some((l, c))) if resumed_panic(env, c) => l,
            _ => continue,
        };
        let Some(location) = env.panic_location(l1) else {
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
                env,
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
        .min_by_key(|&i| list[i].dispatch)
        .filter(|&i| first.is_none_or(|f| list[i].dispatch <= f));
    Machines { list, entry }
}

/// What the block resuming at `ip` polls.
fn resume_next(
    env: &dyn Env,
    flow: &Flow,
    ip: u64,
    dispatch_ips: &[u64],
    own: u64,
    path: &mut Vec<u64>,
) -> Next {
    for ins in flow.straight_line(ip).take(RESUME_STEPS) {
        let ip = ins.ip();
        if path.len() < PATH_KEPT {
            path.push(ip);
        }
        // an inlined machine: its dispatch (the jump itself, or its first compare branch)
        if let Some(j) = dispatch_ips.iter().position(|&d| d == ip).filter(|_| ip != own) {
            return Next::Inner(j);
        }
        let Some(c) = flow.call_at(ip) else { continue };
        match c.callee {
            Some(callee) if panic_call(env, c).is_none() && !skipped_callee(env, callee) => {
                let arg = match c.rdi {
                    Val::Ptr(off) => Some(off),
                    _ => None,
                };
                return Next::Call { ip, callee, arg };
            }
            // a panic path, or a call through a register (a `dyn Future`): nothing to name
            None => return Next::Inline,
            _ if panic_call(env, c).is_some() => return Next::Inline,
            _ => {} // drop glue and the like: keep going
        }
    }
    Next::Inline
}

#[cfg(test)]
mod tests {
    use super::super::env::tests::TestEnv;
    use super::*;

    const BASE: u64 = 0x1000;
    const TABLE: u64 = 0x9000;
    const LOCATION: u64 = 0x8000;
    const RESUMED: u64 = 0x7000;
    const RESUMED_PANIC: u64 = 0x7010;
    const CHILD: u64 = 0x6000;

    /// A tiny assembler: the bytes of a function at BASE, with rip-relative operands and
    /// branches given by target.
    #[derive(Default)]
    struct Asm {
        code: Vec<u8>,
        /// (position of a rel32, its instruction's end, label)
        fixups: Vec<(usize, u64, &'static str)>,
        labels: BTreeMap<&'static str, u64>,
    }

    impl Asm {
        fn ip(&self) -> u64 {
            BASE + self.code.len() as u64
        }
        fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.code.extend_from_slice(b);
            self
        }
        fn label(&mut self, l: &'static str) -> &mut Self {
            self.labels.insert(l, self.ip());
            self
        }
        /// `opcode rel32` to an absolute address.
        fn rel(&mut self, opcode: &[u8], target: u64) -> &mut Self {
            let end = self.ip() + opcode.len() as u64 + 4;
            self.raw(opcode).raw(&((target as i64 - end as i64) as i32).to_le_bytes())
        }
        /// `opcode rel32` to a label.
        fn to(&mut self, opcode: &[u8], l: &'static str) -> &mut Self {
            let end = self.ip() + opcode.len() as u64 + 4;
            self.raw(opcode);
            self.fixups.push((self.code.len(), end, l));
            self.raw(&[0; 4])
        }
        fn done(&mut self) -> Vec<u8> {
            for &(at, end, l) in &self.fixups {
                let rel = (self.labels[l] as i64 - end as i64) as i32;
                self.code[at..at + 4].copy_from_slice(&rel.to_le_bytes());
            }
            self.code.clone()
        }
        // the instructions the tests use
        fn prologue(&mut self) -> &mut Self {
            self.raw(&[0x48, 0x89, 0xfb]) // mov rbx, rdi
        }
        fn load_state(&mut self) -> &mut Self {
            self.raw(&[0x0f, 0xb6, 0x47, 0x30]) // movzx eax, byte [rdi+0x30]
        }
        fn table_jump(&mut self) -> &mut Self {
            self.rel(&[0x48, 0x8d, 0x0d], TABLE) // lea rcx, [rip+TABLE]
                .raw(&[0x48, 0x63, 0x04, 0x81]) // movsxd rax, dword [rcx+rax*4]
                .raw(&[0x48, 0x01, 0xc8]) // add rax, rcx
                .raw(&[0xff, 0xe0]) // jmp rax
        }
        fn panic_block(&mut self, callee: u64) -> &mut Self {
            self.rel(&[0x48, 0x8d, 0x3d], LOCATION).rel(&[0xe8], callee).raw(&[0x0f, 0x0b]) // lea rdi,[rip+L]; call; ud2
        }
        fn await_block(&mut self) -> &mut Self {
            self.raw(&[0x48, 0x8d, 0x7b, 0x28]).rel(&[0xe8], CHILD).raw(&[0xc3]) // lea rdi,[rbx+0x28]; call CHILD; ret
        }
    }

    fn env(table: &[(u64, u64)]) -> TestEnv {
        let mut env = TestEnv::default();
        for &(i, target) in table {
            env.table.insert(TABLE + 4 * i, (target as i64 - TABLE as i64) as i32);
        }
        env.locations.insert(LOCATION, SourceLocation { file: "src/app.rs".into(), line: 7, column: Some(40) });
        env.names.insert(RESUMED, "core::panicking::panic_const::panic_const_async_fn_resumed".into());
        env.names.insert(RESUMED_PANIC, "core::panicking::panic_const::panic_const_async_fn_resumed_panic".into());
        env
    }

    fn recognise(code: &[u8], env: &TestEnv) -> Machines {
        let flow = Flow::from_code(code, BASE, env);
        machines(env, &flow)
    }

    fn one_await(m: &Machines) -> (StateLoc, Vec<(u64, Next)>) {
        let e = m.entry.expect("an entry machine");
        let m = &m.list[e];
        (m.at, m.awaits.iter().map(|(s, a)| (*s, a.next)).collect())
    }

    /// An async poll dispatching through a relative jump table: its code and the targets of
    /// states 0 (return), 1 and 2 (the completion panics) and 3 (poll the awaitee at self+0x28).
    fn table_poll() -> (Vec<u8>, [u64; 4]) {
        let mut a = Asm::default();
        a.prologue().load_state().table_jump();
        let s0 = a.ip();
        a.raw(&[0xc3]);
        let s1 = a.ip();
        a.panic_block(RESUMED);
        let s2 = a.ip();
        a.panic_block(RESUMED_PANIC);
        let s3 = a.ip();
        a.await_block();
        let code = a.done();
        (code, [s0, s1, s2, s3])
    }

    /// `match state` through a relative jump table: 0 starts, 1 and 2 panic with the async fn's
    /// location, 3 polls the awaitee at self+0x28.
    #[test]
    fn jump_table_dispatch() {
        let (code, [s0, s1, s2, s3]) = table_poll();
        let env = env(&[(0, s0), (1, s1), (2, s2), (3, s3)]);
        let m = recognise(&code, &env);
        let (at, awaits) = one_await(&m);
        assert_eq!(at, StateLoc { off: 0x30, width: 1 });
        assert_eq!(m.list[0].location.line, 7);
        assert!(matches!(awaits[..], [(3, Next::Call { callee: CHILD, arg: Some(0x28), .. })]), "{awaits:?}");
    }

    /// The same with compares: `test eax,eax; je s0; cmp eax,3; je s3; cmp eax,1; je s1; jmp s2`.
    #[test]
    fn compare_chain_dispatch() {
        let mut a = Asm::default();
        a.prologue().load_state();
        a.raw(&[0x85, 0xc0]).to(&[0x0f, 0x84], "s0"); // test eax,eax; je s0
        a.raw(&[0x83, 0xf8, 0x03]).to(&[0x0f, 0x84], "s3"); // cmp eax,3; je s3
        a.raw(&[0x83, 0xf8, 0x01]).to(&[0x0f, 0x84], "s1"); // cmp eax,1; je s1
        a.to(&[0xe9], "s2"); // jmp s2
        a.label("s0").raw(&[0xc3]);
        a.label("s1").panic_block(RESUMED);
        a.label("s2").panic_block(RESUMED_PANIC);
        a.label("s3").await_block();
        let code = a.done();
        let m = recognise(&code, &env(&[]));
        let (at, awaits) = one_await(&m);
        assert_eq!(at, StateLoc { off: 0x30, width: 1 });
        assert!(matches!(awaits[..], [(3, Next::Call { callee: CHILD, arg: Some(0x28), .. })]), "{awaits:?}");
    }

    /// A table indexed by the discriminant minus 3 (`add eax, -3` after the low states were
    /// tested), as when the discriminant's low values are spoken for: state 3 + i is entry i.
    #[test]
    fn biased_table_dispatch() {
        let mut a = Asm::default();
        a.prologue().load_state();
        a.raw(&[0x85, 0xc0]).to(&[0x0f, 0x84], "s0"); // test eax,eax; je s0
        a.raw(&[0x83, 0xf8, 0x01]).to(&[0x0f, 0x84], "s1"); // cmp eax,1; je s1
        a.raw(&[0x83, 0xf8, 0x02]).to(&[0x0f, 0x84], "s2"); // cmp eax,2; je s2
        a.raw(&[0x83, 0xc0, 0xfd]); // add eax, -3
        a.table_jump();
        a.label("s0").raw(&[0xc3]);
        a.label("s1").panic_block(RESUMED);
        a.label("s2").panic_block(RESUMED_PANIC);
        let s3 = a.ip();
        a.await_block();
        let s4 = a.ip();
        a.await_block();
        let code = a.done();
        let m = recognise(&code, &env(&[(0, s3), (1, s4)]));
        let (_, awaits) = one_await(&m);
        let states: Vec<u64> = awaits.iter().map(|(s, _)| *s).collect();
        assert_eq!(states, [3, 4], "{awaits:?}");
    }

    /// A `match` on a byte whose arms do not raise an async fn's completion panic is not a state
    /// machine (drop glue, an enum's match); a panic with a location through another function
    /// (named, not the async-fn one) neither.
    #[test]
    fn other_dispatches_are_refused() {
        let mut a = Asm::default();
        a.prologue().load_state().table_jump();
        let s0 = a.ip();
        a.raw(&[0xc3]);
        let s1 = a.ip();
        a.raw(&[0xc3]);
        let s2 = a.ip();
        a.raw(&[0xc3]);
        let s3 = a.ip();
        a.await_block();
        let code = a.done();
        let env_ = env(&[(0, s0), (1, s1), (2, s2), (3, s3)]);
        assert!(recognise(&code, &env_).list.is_empty());

        let mut a = Asm::default();
        a.prologue().load_state().table_jump();
        let s1 = a.ip();
        a.panic_block(0x7100);
        let s3 = a.ip();
        a.await_block();
        let code = a.done();
        let mut env_ = env(&[(0, s1), (1, s1), (2, s1), (3, s3)]);
        env_.names.insert(0x7100, "core::panicking::panic_bounds_check".into());
        assert!(recognise(&code, &env_).list.is_empty());
    }

    /// Table entries are read while they land on an instruction of the function: one pointing
    /// elsewhere ends the table (no state is invented from the bytes after it).
    #[test]
    fn table_ends_at_the_first_entry_outside_the_function() {
        let (code, [s0, s1, s2, s3]) = table_poll();
        let env_ = env(&[(0, s0), (1, s1), (2, s2), (3, s3), (4, 0x5_0000), (5, s3)]);
        let (_, awaits) = one_await(&recognise(&code, &env_));
        assert_eq!(awaits.len(), 1, "{awaits:?}");
    }
}
