//! One pass over a unit's DIEs: the `tokio::runtime::task::raw::poll<T, S>` subprograms, the
//! `tokio::runtime::task::core::Cell<T, S>` structures, and the scope (namespace path) of every
//! named type, which DWARF only gives through the tree.

use std::collections::HashMap;

use super::dwarf::{udata, Debug, Die};

/// Most DIEs read per unit (the largest unit of a 20 MB binary has about 200k).
const MAX_DIES: usize = 4_000_000;

/// A `raw::poll<T, S>` or `Cell<T, S>` with its type parameters (global offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generic {
    /// The code address of a poll function; the DIE's global offset for a Cell.
    pub at: u64,
    pub t: Option<u64>,
    pub s: Option<u64>,
    /// The type of a poll function's `harness` variable (`Harness<T, S>`, pointing to the cell).
    pub harness: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct UnitScan {
    pub polls: Vec<Generic>,
    pub cells: Vec<Generic>,
    /// (global offset of a named type, index in `scopes`), sorted.
    type_scopes: Vec<(u64, u32)>,
    scopes: Vec<String>,
}

impl UnitScan {
    /// The scope (e.g. `tokio::sync::oneshot`) of the type at global offset `global`.
    pub fn scope_of(&self, global: u64) -> Option<&str> {
        let i = self
            .type_scopes
            .binary_search_by_key(&global, |e| e.0)
            .ok()?;
        self.scopes
            .get(self.type_scopes[i].1 as usize)
            .map(String::as_str)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Poll,
    Cell,
}

fn is_scope(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_namespace
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type
    )
}

fn is_named_type(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_enumeration_type
    )
}

/// Scans unit `u` of `debug`.
pub(super) fn scan_unit(debug: &Debug, u: usize) -> UnitScan {
    let mut out = UnitScan::default();
    let Some(unit) = debug.unit(u) else {
        return out;
    };
    let mut interned: HashMap<String, u32> = HashMap::new();
    // (depth, name) of the enclosing scopes.
    let mut stack: Vec<(isize, String)> = Vec::new();
    let mut path = String::new();
    let mut scope_id: Option<u32> = None;
    let mut pending: Option<(Kind, isize, Generic)> = None;
    let mut cursor = unit.entries();
    let mut n = 0usize;
    while let Ok(Some(die)) = cursor.next_dfs() {
        n += 1;
        if n > MAX_DIES {
            break;
        }
        let depth = die.depth();
        if let Some((kind, d, g)) = pending {
            if depth <= d {
                match kind {
                    Kind::Poll => out.polls.push(g),
                    Kind::Cell => out.cells.push(g),
                }
                pending = None;
            } else if depth == d + 1 && die.tag() == gimli::DW_TAG_template_type_parameter {
                let ty = debug.reference(u, die, gimli::DW_AT_type);
                let mut g = g;
                match debug.string(u, die, gimli::DW_AT_name).as_deref() {
                    Some("T") => g.t = ty,
                    Some("S") => g.s = ty,
                    _ => {}
                }
                pending = Some((kind, d, g));
            } else if kind == Kind::Poll
                && g.harness.is_none()
                && matches!(
                    die.tag(),
                    gimli::DW_TAG_variable | gimli::DW_TAG_formal_parameter
                )
                && debug.string(u, die, gimli::DW_AT_name).as_deref() == Some("harness")
            {
                let mut g = g;
                g.harness = debug.reference(u, die, gimli::DW_AT_type);
                pending = Some((kind, d, g));
            }
        }
        if stack.last().is_some_and(|(d, _)| *d >= depth) {
            while stack.last().is_some_and(|(d, _)| *d >= depth) {
                stack.pop();
            }
            path = join(&stack);
            scope_id = None;
        }
        let tag = die.tag();
        if !(is_scope(tag) || tag == gimli::DW_TAG_subprogram) {
            continue;
        }
        let Some(name) = debug.string(u, die, gimli::DW_AT_name) else {
            continue;
        };
        if is_named_type(tag) {
            let id = *scope_id.get_or_insert_with(|| {
                let next = out.scopes.len() as u32;
                *interned.entry(path.clone()).or_insert_with(|| {
                    out.scopes.push(path.clone());
                    next
                })
            });
            if let Some(g) = debug.global(u, die.offset()) {
                out.type_scopes.push((g, id));
                if tag == gimli::DW_TAG_structure_type
                    && name.starts_with("Cell<")
                    && path == "tokio::runtime::task::core"
                {
                    pending = Some((
                        Kind::Cell,
                        depth,
                        Generic {
                            at: g,
                            t: None,
                            s: None,
                            harness: None,
                        },
                    ));
                }
            }
        } else if tag == gimli::DW_TAG_subprogram && is_raw_poll(&path, &name) {
            if let Some(pc) = low_pc(debug, u, die) {
                pending = Some((
                    Kind::Poll,
                    depth,
                    Generic {
                        at: pc,
                        t: None,
                        s: None,
                        harness: None,
                    },
                ));
            }
        }
        if is_scope(tag) && die.has_children() {
            stack.push((depth, name));
            path = join(&stack);
            scope_id = None;
        }
    }
    if let Some((kind, _, g)) = pending {
        match kind {
            Kind::Poll => out.polls.push(g),
            Kind::Cell => out.cells.push(g),
        }
    }
    out.type_scopes.sort_unstable();
    out
}

fn join(stack: &[(isize, String)]) -> String {
    let mut s = String::new();
    for (i, (_, name)) in stack.iter().enumerate() {
        if i > 0 {
            s.push_str("::");
        }
        s.push_str(name);
    }
    s
}

/// `tokio::runtime::task::raw::poll` (named `poll<T, S>` in DWARF).
fn is_raw_poll(scope: &str, name: &str) -> bool {
    scope.ends_with("runtime::task::raw") && (name == "poll" || name.starts_with("poll<"))
}

fn low_pc(debug: &Debug, u: usize, die: &Die) -> Option<u64> {
    let unit = debug.unit(u)?;
    let v = die.attr_value(gimli::DW_AT_low_pc)?;
    let pc = debug.dwarf.attr_address(unit, v).ok()??;
    // A zero address is a function the linker dropped.
    (pc != 0 && udata(die, gimli::DW_AT_inline).is_none()).then_some(pc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_poll_scope() {
        assert!(is_raw_poll(
            "tokio::runtime::task::raw",
            "poll<a::f::{async_fn_env#0}, S>"
        ));
        assert!(is_raw_poll("tokio::runtime::task::raw", "poll"));
        assert!(!is_raw_poll(
            "tokio::runtime::task::harness::{impl#1}",
            "poll<T, S>"
        ));
        assert!(!is_raw_poll("tokio::runtime::task::raw", "poll_future<T>"));
    }

    #[test]
    fn joins_scopes() {
        let s = vec![(1, "tokio".to_string()), (2, "sync".to_string())];
        assert_eq!(join(&s), "tokio::sync");
        assert_eq!(join(&[]), "");
    }
}
