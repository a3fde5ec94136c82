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
use super::lines::is_library_path;
use crate::elf::names::{crate_of, split_qualified, turbofish_args};
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

/// The future type named by a v0 `raw::poll::<T, S>` symbol, with tokio's auto-boxing
/// (`Pin<Box<T>>`) removed. None for legacy names (no generic arguments).
pub fn v0_future_type(raw_poll_name: &str) -> Option<String> {
    let args = turbofish_args(raw_poll_name);
    args.first().map(|t| unwrap_pin_box(t).to_owned())
}

/// `core::pin::Pin<alloc::boxed::Box<T>>` -> `T` (tokio boxes large futures); other types unchanged.
pub fn unwrap_pin_box(ty: &str) -> &str {
    ty.strip_prefix("core::pin::Pin<alloc::boxed::Box<")
        .and_then(|t| t.strip_suffix(">>"))
        .map(str::trim)
        .unwrap_or(ty)
}

/// The future type `T` named by drop glue of a tokio task cell (`drop_in_place<..Stage<T>>`,
/// `CoreStage<T>`, `Core<T,S>`, `Cell<T,S>`, optionally inside `Box<..>`), legacy or v0 form.
pub fn drop_glue_future_type(name: &str) -> Option<String> {
    let start = name.find("drop_in_place")? + "drop_in_place".len();
    let inner = name[start..].strip_prefix("::").unwrap_or(&name[start..]);
    let mut ty = inner.strip_prefix('<')?.strip_suffix('>')?.trim();
    if let Some(t) = ty.strip_prefix("alloc::boxed::Box<").and_then(|t| t.strip_suffix('>')) {
        ty = t;
    }
    const CELLS: [&str; 4] = ["Stage<", "CoreStage<", "Core<", "Cell<"];
    let rest = ty.strip_prefix("tokio::runtime::task::core::")?;
    let args = CELLS.iter().find_map(|c| rest.strip_prefix(c))?.strip_suffix('>')?;
    let first = split_commas(args).into_iter().next()?;
    Some(unwrap_pin_box(first).to_owned())
}

/// Splits `A,B<C,D>, E` at top-level commas.
fn split_commas(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' | '{' => depth += 1,
            '>' if i > 0 && s.as_bytes()[i - 1] == b'-' => {}
            '>' | ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// True when a body function's name fits a type named by drop glue (`T` itself, a closure or
/// method of it, or `<T as Future>::poll`).
pub fn body_matches_type(body: &str, ty: &str) -> bool {
    if body == ty || body.starts_with(&format!("{ty}::")) {
        return true;
    }
    split_qualified(body).is_some_and(|q| unwrap_pin_box(q.self_ty) == ty)
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
            let Some(first) = aliases.first() else { continue };
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

/// Intersects the candidate types with the names of one more drop-glue address; a set that
/// would leave nothing (glue of another task) is ignored.
pub fn narrow(prev: Option<BTreeSet<String>>, types: BTreeSet<String>) -> Option<BTreeSet<String>> {
    match prev {
        _ if types.is_empty() => prev,
        None => Some(types),
        Some(prev) => {
            let both: BTreeSet<String> = prev.intersection(&types).cloned().collect();
            Some(if both.is_empty() { prev } else { both })
        }
    }
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
pub fn choose_name(types: &BTreeSet<String>, bodies: &[&str]) -> (Option<String>, Option<usize>, Vec<String>) {
    if types.is_empty() {
        return (bodies.first().map(|b| (*b).to_owned()), (!bodies.is_empty()).then_some(0), Vec::new());
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
    let v0_types: BTreeSet<String> = aliases.iter().filter_map(|s| v0_future_type(&s.name)).collect();
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
    fn v0_type_extraction() {
        let n = "tokio::runtime::task::raw::poll::<app::worker::leaky::{closure#0}, \
                 alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>>";
        assert_eq!(v0_future_type(n).unwrap(), "app::worker::leaky::{closure#0}");
        let n = "tokio::runtime::task::raw::poll::<core::pin::Pin<alloc::boxed::Box<app::big::{closure#0}>>, \
                 alloc::sync::Arc<tokio::task::local::Shared>>";
        assert_eq!(v0_future_type(n).unwrap(), "app::big::{closure#0}");
        let n = "tokio::runtime::task::raw::poll::<tokio::runtime::blocking::task::BlockingTask<\
                 <app::S as app::T<u8, (u16, u32)>>::go::{closure#0}>, tokio::runtime::blocking::schedule::BlockingSchedule>";
        assert_eq!(
            v0_future_type(n).unwrap(),
            "tokio::runtime::blocking::task::BlockingTask<<app::S as app::T<u8, (u16, u32)>>::go::{closure#0}>"
        );
        assert_eq!(v0_future_type("tokio::runtime::task::raw::poll"), None);
    }

    #[test]
    fn drop_glue_types() {
        let legacy = "core::ptr::drop_in_place<tokio::runtime::task::core::Stage<app::worker::leaky::{{closure}}>>";
        assert_eq!(drop_glue_future_type(legacy).unwrap(), "app::worker::leaky::{{closure}}");
        let legacy = "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<\
                      app::c::{{closure}},alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>>>>";
        assert_eq!(drop_glue_future_type(legacy).unwrap(), "app::c::{{closure}}");
        let v0 = "core::ptr::drop_in_place::<tokio::runtime::task::core::CoreStage<core::pin::Pin<\
                  alloc::boxed::Box<app::big::huge_state::{closure#0}>>>>";
        assert_eq!(drop_glue_future_type(v0).unwrap(), "app::big::huge_state::{closure#0}");
        assert_eq!(drop_glue_future_type("core::ptr::drop_in_place<tokio::time::sleep::Sleep>"), None);
        assert_eq!(drop_glue_future_type("core::ptr::drop_in_place<app::main::{{closure}}>"), None);
    }

    #[test]
    fn callee_classes() {
        assert_eq!(classify_callee("app::worker::leaky::{{closure}}"), Callee::Body);
        assert_eq!(classify_callee("<app::Conn as core::future::future::Future>::poll"), Callee::Body);
        assert_eq!(classify_callee("hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch"), Callee::Body);
        assert_eq!(classify_callee("tokio::runtime::task::harness::Harness<T,S>::poll"), Callee::Follow);
        assert_eq!(classify_callee("<core::pin::Pin<P> as core::future::future::Future>::poll"), Callee::Follow);
        assert_eq!(classify_callee("std::panicking::try"), Callee::Follow);
        assert_eq!(classify_callee("core::panicking::panic_fmt"), Callee::Ignore);
        assert_eq!(classify_callee("<app::Guard as core::ops::drop::Drop>::drop"), Callee::Ignore);
        assert_eq!(classify_callee("core::ptr::drop_in_place<app::X>"), Callee::DropGlue);
        assert_eq!(classify_callee("memcpy"), Callee::Ignore);
        assert_eq!(classify_callee("_Unwind_Resume"), Callee::Ignore);
    }

    #[test]
    fn narrowing() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let ab = Some(set(&["a", "b"]));
        assert_eq!(narrow(None, set(&["a", "b"])), ab);
        assert_eq!(narrow(ab.clone(), set(&["b", "c"])), Some(set(&["b"])));
        assert_eq!(narrow(ab.clone(), set(&["x"])), ab, "disjoint glue is ignored");
        assert_eq!(narrow(ab.clone(), set(&[])), ab);
        assert_eq!(narrow(None, set(&[])), None);
    }

    #[test]
    fn name_choice() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let (f, b, c) = choose_name(&set(&[]), &["app::f::{{closure}}"]);
        assert_eq!((f.as_deref(), b, c.len()), (Some("app::f::{{closure}}"), Some(0), 0));
        assert_eq!(choose_name(&set(&[]), &[]), (None, None, vec![]));
        // One type: the type wins, a matching body is kept for its address.
        let (f, b, _) = choose_name(&set(&["app::g::{{closure}}"]), &["app::helper", "app::g::{{closure}}"]);
        assert_eq!((f.as_deref(), b), (Some("app::g::{{closure}}"), Some(1)));
        // Folded drop glue: a body picks among the candidates.
        let two = set(&["app::a::{{closure}}", "app::b::{{closure}}"]);
        let (f, b, c) = choose_name(&two, &["app::b::{{closure}}"]);
        assert_eq!((f.as_deref(), b, c.len()), (Some("app::b::{{closure}}"), Some(0), 0));
        let (f, b, c) = choose_name(&two, &["app::helper"]);
        assert_eq!(f.as_deref(), Some("app::a::{{closure}} | app::b::{{closure}}"));
        assert_eq!((b, c.len()), (None, 2));
    }

    #[test]
    fn body_type_matching() {
        assert!(body_matches_type("app::w::leaky::{{closure}}", "app::w::leaky::{{closure}}"));
        assert!(body_matches_type("<app::Conn as core::future::future::Future>::poll", "app::Conn"));
        assert!(body_matches_type("app::Conn::poll_inner", "app::Conn"));
        assert!(!body_matches_type("app::w::helper", "app::w::leaky::{{closure}}"));
    }
}
