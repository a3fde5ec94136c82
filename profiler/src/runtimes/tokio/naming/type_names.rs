//! Future type names found in symbol names: v0 `raw::poll::<T, S>` arguments and tokio task
//! cell drop glue (`drop_in_place<tokio::runtime::task::core::Stage<T>>`), legacy or v0 form.

use std::collections::BTreeSet;

use crate::elf::names::{split_qualified, turbofish_args};

/// The future type named by a v0 `raw::poll::<T, S>` symbol, with tokio's auto-boxing
/// (`Pin<Box<T>>`) removed. None for legacy names (no generic arguments).
pub fn v0_future_type(raw_poll_name: &str) -> Option<String> {
    let args = turbofish_args(raw_poll_name);
    args.first().map(|t| unwrap_pin_box(t).to_owned())
}

/// `core::pin::Pin<alloc::boxed::Box<T>>` -> `T` (tokio boxes large futures); other types unchanged.
pub fn unwrap_pin_box(ty: &str) -> &str {
    ty.strip_prefix("core::pin::Pin<")
        .and_then(|t| t.strip_suffix('>'))
        .and_then(unwrap_box)
        .unwrap_or(ty)
}

/// `alloc::boxed::Box<T>` or `alloc::boxed::Box<T, alloc::alloc::Global>` -> `T`.
fn unwrap_box(ty: &str) -> Option<&str> {
    let inner = ty.strip_prefix("alloc::boxed::Box<")?.strip_suffix('>')?;
    let inner = inner
        .strip_suffix(", alloc::alloc::Global")
        .or_else(|| inner.strip_suffix(",alloc::alloc::Global"))
        .unwrap_or(inner);
    Some(inner.trim())
}

/// The future type `T` named by drop glue of a tokio task cell (`drop_in_place<..Stage<T>>`,
/// `CoreStage<T>`, `Core<T,S>`, `Cell<T,S>`, optionally inside `Box<..>`), legacy or v0 form.
pub fn drop_glue_future_type(name: &str) -> Option<String> {
    let start = name.find("drop_in_place")? + "drop_in_place".len();
    let inner = name[start..].strip_prefix("::").unwrap_or(&name[start..]);
    let mut ty = inner.strip_prefix('<')?.strip_suffix('>')?.trim();
    if let Some(t) = unwrap_box(ty) {
        ty = t;
    }
    const CELLS: [&str; 4] = ["Stage<", "CoreStage<", "Core<", "Cell<"];
    let rest = ty.strip_prefix("tokio::runtime::task::core::")?;
    let args = CELLS
        .iter()
        .find_map(|c| rest.strip_prefix(c))?
        .strip_suffix('>')?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_type_extraction() {
        let n = "tokio::runtime::task::raw::poll::<app::worker::leaky::{closure#0}, \
                 alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>>";
        assert_eq!(
            v0_future_type(n).unwrap(),
            "app::worker::leaky::{closure#0}"
        );
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
        assert_eq!(
            unwrap_pin_box("core::pin::Pin<alloc::boxed::Box<a::B<c::D>, alloc::alloc::Global>>"),
            "a::B<c::D>"
        );
        assert_eq!(
            unwrap_pin_box("core::pin::Pin<&mut a::B>"),
            "core::pin::Pin<&mut a::B>"
        );
    }

    #[test]
    fn drop_glue_types() {
        let legacy = "core::ptr::drop_in_place<tokio::runtime::task::core::Stage<app::worker::leaky::{{closure}}>>";
        assert_eq!(
            drop_glue_future_type(legacy).unwrap(),
            "app::worker::leaky::{{closure}}"
        );
        let legacy = "core::ptr::drop_in_place<alloc::boxed::Box<tokio::runtime::task::core::Cell<\
                      app::c::{{closure}},alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>>>>";
        assert_eq!(
            drop_glue_future_type(legacy).unwrap(),
            "app::c::{{closure}}"
        );
        let v0 = "core::ptr::drop_in_place::<tokio::runtime::task::core::CoreStage<core::pin::Pin<\
                  alloc::boxed::Box<app::big::huge_state::{closure#0}>>>>";
        assert_eq!(
            drop_glue_future_type(v0).unwrap(),
            "app::big::huge_state::{closure#0}"
        );
        assert_eq!(
            drop_glue_future_type("core::ptr::drop_in_place<tokio::time::sleep::Sleep>"),
            None
        );
        assert_eq!(
            drop_glue_future_type("core::ptr::drop_in_place<app::main::{{closure}}>"),
            None
        );
    }

    #[test]
    fn narrowing() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let ab = Some(set(&["a", "b"]));
        assert_eq!(narrow(None, set(&["a", "b"])), ab);
        assert_eq!(narrow(ab.clone(), set(&["b", "c"])), Some(set(&["b"])));
        assert_eq!(
            narrow(ab.clone(), set(&["x"])),
            ab,
            "disjoint glue is ignored"
        );
        assert_eq!(narrow(ab.clone(), set(&[])), ab);
        assert_eq!(narrow(None, set(&[])), None);
    }

    #[test]
    fn body_type_matching() {
        assert!(body_matches_type(
            "app::w::leaky::{{closure}}",
            "app::w::leaky::{{closure}}"
        ));
        assert!(body_matches_type(
            "<app::Conn as core::future::future::Future>::poll",
            "app::Conn"
        ));
        assert!(body_matches_type("app::Conn::poll_inner", "app::Conn"));
        assert!(!body_matches_type(
            "app::w::helper",
            "app::w::leaky::{{closure}}"
        ));
    }
}
