//! Naming a task's future type from its vtable's `raw::poll<T, S>` function.
//!
//! v0 mangling names `T` in the `raw::poll` symbol itself. Legacy mangling drops generic
//! arguments, so the call graph below `raw::poll` is walked (direct calls and jumps) until a
//! function outside the runtime/library crates is reached: the future's own poll body, typically
//! `app::module::f::{{closure}}`. When the body was inlined, the drop glue reachable from
//! `raw::poll` still names the type (`drop_in_place<tokio::..::Stage<T>>`); identical-code folding
//! can give one drop-glue address several names, so the names of all reachable glue are
//! intersected.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::code::{best_location, panic_locations, scan_function, PanicRef, SourceLocation};
use crate::elf::lines::is_library_path;
use super::type_names::{body_matches_type, drop_glue_future_type, narrow, v0_future_type};
use crate::elf::names::crate_of;
use crate::elf::{ElfImage, FnSymbol};

/// What a task's future is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FutureName {
    /// The future type or its poll body, e.g. `app::worker::leaky::{{closure}}` (legacy) or
    /// `app::worker::leaky::{closure#0}` (v0); `<unknown future at 0x..>` when nothing was found.
    pub function: String,
    /// The demangled name of the symbol at the poll address.
    pub poll_symbol: String,
    /// ELF vaddr of the future's poll body when a call to it was found (for file:line).
    pub body_vaddr: Option<u64>,
    /// Where the body is, from the panic `Location`s its code refers to (no DWARF needed): the
    /// async fn's own `resumed after completion` location (its opening brace) or another
    /// location of application code inlined below `raw::poll`.
    pub location: Option<SourceLocation>,
    /// When identical-code folding left several possible types (and `function` joins them with
    /// ` | `): the candidates. [`super::Symbolizer`] narrows them down by location.
    pub candidates: Vec<String>,
}

/// How far the call graph below `raw::poll` is walked.
const MAX_DEPTH: usize = 8;
const MAX_FUNCTIONS: usize = 400;
/// Drop glue is read from functions at most this deep (raw::poll = 0, Harness::poll = 1, ..).
const GLUE_DEPTH: usize = 3;

/// Crates whose functions are walked through rather than reported.
const LIBRARY_CRATES: &[&str] = &[
    "tokio",
    "core",
    "std",
    "alloc",
    "tracing",
    "tracing_futures",
    "futures",
    "futures_util",
    "futures_core",
    "futures_task",
];

/// Library paths never worth walking into (panics, formatting, allocation, I/O).
const DEAD_ENDS: &[&str] = &[
    "core::panicking::",
    "core::fmt::",
    "core::result::unwrap_failed",
    "core::option::expect_failed",
    "core::cell::panic_",
    "std::panicking::begin_panic",
    "std::panicking::rust_panic",
    "std::thread::local::panic_access_error",
    "std::io::",
    "std::sys::",
    "std::rt::",
    "alloc::alloc::handle_alloc_error",
    "alloc::raw_vec::",
    "alloc::fmt::",
];

/// What to do with a callee found below `raw::poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// A function of the application (or of a crate not known to wrap futures): the body.
    Body,
    /// Runtime/library code: walk into it.
    Follow,
    /// Drop glue: do not walk into it, but it may name the future type.
    DropGlue,
    /// Anything else (C functions, panic paths, user `Drop` impls).
    Ignore,
}

/// Classifies a demangled callee name.
pub fn classify_callee(name: &str) -> Callee {
    if name.contains("::drop_in_place") {
        return Callee::DropGlue;
    }
    if name.ends_with(" as core::ops::drop::Drop>::drop") {
        return Callee::Ignore;
    }
    match crate_of(name) {
        None => Callee::Ignore,
        Some(c) if LIBRARY_CRATES.contains(&c) => {
            if DEAD_ENDS.iter().any(|d| name.starts_with(d)) {
                Callee::Ignore
            } else {
                Callee::Follow
            }
        }
        Some(_) => Callee::Body,
    }
}

/// Result of walking the call graph below `raw::poll`.
#[derive(Debug, Default)]
pub struct Walk<'a> {
    /// Functions outside the library crates, in breadth-first order.
    pub bodies: Vec<&'a FnSymbol>,
    /// Future types named by every reachable task-cell drop glue (intersection).
    pub drop_types: Option<BTreeSet<String>>,
    /// Library functions visited (entry addresses) in breadth-first order, from `raw::poll`.
    pub visited: Vec<u64>,
    /// Panic locations outside dependencies/std referred to by the visited library functions
    /// (application code inlined into them), in breadth-first order.
    pub inlined_locations: Vec<PanicRef>,
}

/// Walks direct calls/jumps (and calls through the GOT) breadth-first from `start`.
pub fn walk_calls(image: &ElfImage, start: u64) -> Walk<'_> {
    let mut walk = Walk::default();
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([(start, 0usize)]);
    while let Some((addr, depth)) = queue.pop_front() {
        if walk.visited.len() >= MAX_FUNCTIONS {
            break;
        }
        walk.visited.push(addr);
        let scan = scan_function(image, addr);
        walk.inlined_locations.extend(
            panic_locations(image, &scan)
                .into_iter()
                .filter(|r| !is_library_path(&r.location.file)),
        );
        for target in scan.targets {
            if !seen.insert(target) {
                continue;
            }
            let aliases = image.symbols_at_addr(target);
            let Some(first) = aliases.first() else {
                continue;
            };
            match classify_callee(&first.name) {
                Callee::Body => walk.bodies.push(first),
                Callee::Follow if depth + 1 < MAX_DEPTH => queue.push_back((target, depth + 1)),
                // Only the task's own Harness/Core code (near raw::poll) drops its cell; deeper
                // glue may belong to tasks that this future spawns.
                Callee::DropGlue if depth < GLUE_DEPTH => {
                    let types: BTreeSet<String> = aliases
                        .iter()
                        .filter_map(|s| drop_glue_future_type(&s.name))
                        .collect();
                    walk.drop_types = narrow(walk.drop_types.take(), types);
                }
                _ => {}
            }
        }
    }
    walk
}

/// The application (non-dependency) panic location that stands for a function's code.
fn own_location(image: &ElfImage, addr: u64) -> Option<SourceLocation> {
    let refs = panic_locations(image, &scan_function(image, addr));
    best_location(refs.iter().filter(|r| !is_library_path(&r.location.file)))
}

/// Chooses the name from the future types known for a `raw::poll` (from its v0 name or from
/// drop glue) and the bodies reached from it (breadth-first order). Returns the name (None if
/// nothing is known), the index of the body used, and the candidate types left when several
/// remain (identical-code folding).
pub fn choose_name(
    types: &BTreeSet<String>,
    bodies: &[&str],
) -> (Option<String>, Option<usize>, Vec<String>) {
    if types.is_empty() {
        return (
            bodies.first().map(|b| (*b).to_owned()),
            (!bodies.is_empty()).then_some(0),
            Vec::new(),
        );
    }
    let body = bodies
        .iter()
        .position(|b| types.iter().any(|t| body_matches_type(b, t)));
    match (types.len(), body) {
        (1, _) => (types.first().cloned(), body, Vec::new()),
        (_, Some(i)) => (Some(bodies[i].to_owned()), Some(i), Vec::new()),
        (_, None) => {
            let all: Vec<String> = types.iter().cloned().collect();
            (Some(all.join(" | ")), None, all)
        }
    }
}

/// Names the future whose vtable `poll` entry is at ELF vaddr `poll_vaddr`.
pub fn future_name(image: &ElfImage, poll_vaddr: u64) -> FutureName {
    let aliases = image.symbols_at_addr(poll_vaddr);
    let poll_symbol = match aliases.first().or_else(|| image.symbol_at(poll_vaddr)) {
        Some(s) => s.name.clone(),
        None => format!("<no symbol at {poll_vaddr:#x}>"),
    };
    let v0_types: BTreeSet<String> = aliases
        .iter()
        .filter_map(|s| v0_future_type(&s.name))
        .collect();
    let walk = walk_calls(image, poll_vaddr);
    // The type, by the most reliable source available.
    let types = if v0_types.is_empty() {
        walk.drop_types.clone().unwrap_or_default()
    } else {
        v0_types
    };
    let body_names: Vec<&str> = walk.bodies.iter().map(|b| b.name.as_str()).collect();
    let (function, body, candidates) = choose_name(&types, &body_names);
    let body = body.map(|i| walk.bodies[i]);
    let location = body
        .and_then(|b| own_location(image, b.addr))
        .or_else(|| best_location(&walk.inlined_locations));
    FutureName {
        function: function.unwrap_or_else(|| format!("<unknown future at {poll_vaddr:#x}>")),
        poll_symbol,
        body_vaddr: body.map(|b| b.addr),
        location,
        candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callee_classes() {
        assert_eq!(
            classify_callee("app::worker::leaky::{{closure}}"),
            Callee::Body
        );
        assert_eq!(
            classify_callee("<app::Conn as core::future::future::Future>::poll"),
            Callee::Body
        );
        assert_eq!(
            classify_callee("hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch"),
            Callee::Body
        );
        assert_eq!(
            classify_callee("tokio::runtime::task::harness::Harness<T,S>::poll"),
            Callee::Follow
        );
        assert_eq!(
            classify_callee("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            Callee::Follow
        );
        assert_eq!(classify_callee("std::panicking::try"), Callee::Follow);
        assert_eq!(
            classify_callee("core::panicking::panic_fmt"),
            Callee::Ignore
        );
        assert_eq!(
            classify_callee("<app::Guard as core::ops::drop::Drop>::drop"),
            Callee::Ignore
        );
        assert_eq!(
            classify_callee("core::ptr::drop_in_place<app::X>"),
            Callee::DropGlue
        );
        assert_eq!(classify_callee("memcpy"), Callee::Ignore);
        assert_eq!(classify_callee("_Unwind_Resume"), Callee::Ignore);
    }

    #[test]
    fn name_choice() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let (f, b, c) = choose_name(&set(&[]), &["app::f::{{closure}}"]);
        assert_eq!(
            (f.as_deref(), b, c.len()),
            (Some("app::f::{{closure}}"), Some(0), 0)
        );
        assert_eq!(choose_name(&set(&[]), &[]), (None, None, vec![]));
        // One type: the type wins, a matching body is kept for its address.
        let (f, b, _) = choose_name(
            &set(&["app::g::{{closure}}"]),
            &["app::helper", "app::g::{{closure}}"],
        );
        assert_eq!((f.as_deref(), b), (Some("app::g::{{closure}}"), Some(1)));
        // Folded drop glue: a body picks among the candidates.
        let two = set(&["app::a::{{closure}}", "app::b::{{closure}}"]);
        let (f, b, c) = choose_name(&two, &["app::b::{{closure}}"]);
        assert_eq!(
            (f.as_deref(), b, c.len()),
            (Some("app::b::{{closure}}"), Some(0), 0)
        );
        let (f, b, c) = choose_name(&two, &["app::helper"]);
        assert_eq!(
            f.as_deref(),
            Some("app::a::{{closure}} | app::b::{{closure}}")
        );
        assert_eq!((b, c.len()), (None, 2));
    }
}
