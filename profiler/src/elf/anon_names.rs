//! Qualified names for the anonymous functions DWARF names `{async_fn#0}`, `{async_block#1}`,
//! `{closure#0}` (the bodies of async fns, async blocks and closures).
//!
//! With full debug info an inlined body's abstract origin carries a linkage name, so addr2line
//! already gives its path. With `debug = "line-tables-only"` it does not: every such body is a
//! bare `{async_fn#0}` at the top of its unit, no namespace, no declaration line. What is left is
//! the source location of the frame and the out-of-line functions of the same file: each covers
//! the lines of its own calls (its direct inlined children's call lines, and its declaration line
//! when DWARF has it). The narrowest such span around the frame's line is the function the body
//! belongs to (e.g. the out-of-line copy of the same async fn, `app::run::{{closure}}`); when none
//! covers it, the frame is only qualified by the module the file's functions share.

mod scan;

use std::collections::HashMap;

use crate::elf::lines::normalize_path;

pub use scan::{build, Lookups};

/// One out-of-line function: the source lines of its own code in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    lo: u32,
    hi: u32,
    /// Demangled name (symbol or linkage name), e.g. `app::run::{{closure}}`.
    name: String,
}

/// Out-of-line function spans of one binary, by normalized source file.
#[derive(Debug, Default)]
pub struct AnonNames {
    by_file: HashMap<String, Vec<Span>>,
}

impl AnonNames {
    /// Records that function `name` has its own code at `lines` of `file`.
    pub fn add(&mut self, file: &str, lines: impl IntoIterator<Item = u32>, name: String) {
        let (mut lo, mut hi) = (u32::MAX, 0);
        for l in lines.into_iter().filter(|&l| l > 0) {
            lo = lo.min(l);
            hi = hi.max(l);
        }
        if lo <= hi {
            let spans = self.by_file.entry(normalize_path(file)).or_default();
            spans.push(Span { lo, hi, name });
        }
    }

    /// Sorts and deduplicates (several copies of one function give the same span).
    pub fn finish(&mut self) {
        for spans in self.by_file.values_mut() {
            spans.sort_unstable_by(|a, b| {
                (a.hi - a.lo, a.lo, &a.name).cmp(&(b.hi - b.lo, b.lo, &b.name))
            });
            spans.dedup();
            spans.shrink_to_fit();
        }
    }

    /// Number of spans kept.
    pub fn len(&self) -> usize {
        self.by_file.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name to show for an anonymous frame `name` (e.g. `{async_fn#0}<u64>`) whose code at
    /// the symbolized pc is at `file:line`: `app::f` for an async fn body,
    /// `app::f::{async_block#0}` for a block or closure. None when `name` is not anonymous or
    /// nothing in `file` is known.
    /// Without a line, only the module is known.
    pub fn qualify(&self, name: &str, file: &str, line: Option<u32>) -> Option<String> {
        if !is_anonymous(name) {
            return None;
        }
        let spans = self.by_file.get(&normalize_path(file))?;
        // Sorted narrowest first: the first span around the line is the innermost function.
        let around = |s: &&Span| line.is_some_and(|l| s.lo <= l && l <= s.hi);
        if let Some(s) = spans.iter().find(around) {
            return Some(qualify_with(name, &s.name));
        }
        let module = common_module(spans.iter().map(|s| s.name.as_str()))?;
        Some(format!("{module}::{}", bare(name)))
    }
}

/// True for a DWARF name of an anonymous body: `{async_fn#0}`, `{closure#1}<T>`, `{{closure}}`.
pub fn is_anonymous(name: &str) -> bool {
    name.starts_with('{')
}

/// `name` without generic arguments: `{async_fn#0}<u64>` -> `{async_fn#0}`.
fn bare(name: &str) -> &str {
    match name.find("}<") {
        Some(i) => &name[..=i],
        None => name,
    }
}

/// True for an anonymous path segment (`{{closure}}`, `{closure#0}`, `{async_block#1}`).
fn is_anonymous_segment(seg: &str) -> bool {
    seg.starts_with('{') && seg.ends_with('}')
}

/// The named item an anonymous function's path belongs to: `app::f::{{closure}}::{{closure}}`
/// -> `app::f` (the path is cut at `::` outside brackets only).
pub fn named_path(path: &str) -> &str {
    let mut end = path.len();
    while let Some(i) = path[..end].rfind("::") {
        if !is_anonymous_segment(&path[i + 2..end]) {
            break;
        }
        end = i;
    }
    &path[..end]
}

/// The name of anonymous frame `name` inside function `enclosing` (a symbol or linkage name):
/// the enclosing named item for an async fn body, plus `::{async_block#N}` / `::{closure#N}`
/// for a block or a closure.
pub fn qualify_with(name: &str, enclosing: &str) -> String {
    let item = named_path(enclosing);
    let name = bare(name);
    if item.is_empty() {
        return enclosing.to_owned();
    }
    if name.starts_with("{async_fn#") {
        item.to_owned()
    } else {
        format!("{item}::{name}")
    }
}

/// The module path every one of `names` starts with (`app::scenarios` for `app::scenarios::run`
/// and `app::scenarios::f::{{closure}}`); None when they share nothing.
fn common_module<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut common: Option<Vec<&str>> = None;
    for name in names.filter(|n| !n.starts_with('<')) {
        let item = named_path(name);
        // The module of an item is its path without the item's own name.
        let segs: Vec<&str> = match item.rfind("::") {
            Some(i) if !item.contains('<') => item[..i].split("::").collect(),
            _ => continue,
        };
        common = Some(match common {
            None => segs,
            Some(c) => c
                .iter()
                .zip(&segs)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    let c = common?;
    (!c.is_empty()).then(|| c.join("::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_paths() {
        assert_eq!(named_path("app::f::{{closure}}"), "app::f");
        assert_eq!(named_path("app::f::{closure#0}::{closure#1}"), "app::f");
        assert_eq!(named_path("app::f"), "app::f");
        assert_eq!(
            named_path("app::g<app::f::{{closure}}>::{{closure}}"),
            "app::g<app::f::{{closure}}>"
        );
        assert_eq!(named_path("{{closure}}"), "{{closure}}");
    }

    #[test]
    fn qualifies_by_kind() {
        let run = "app::scenarios::run_never_answered::{{closure}}";
        assert_eq!(
            qualify_with("{async_fn#0}", run),
            "app::scenarios::run_never_answered"
        );
        assert_eq!(
            qualify_with("{async_fn#0}<u64>", "app::f::{closure#0}"),
            "app::f"
        );
        assert_eq!(
            qualify_with("{async_block#1}", "app::run::{{closure}}"),
            "app::run::{async_block#1}"
        );
        assert_eq!(
            qualify_with("{closure#0}<T>", "app::run"),
            "app::run::{closure#0}"
        );
    }

    fn index() -> AnonNames {
        let mut a = AnonNames::default();
        a.add(
            "/src/./scenarios.rs",
            [20, 30, 44],
            "app::scenarios::run::{{closure}}".into(),
        );
        a.add(
            "/src/scenarios.rs",
            [56, 57, 62],
            "app::scenarios::run_never_answered::{{closure}}".into(),
        );
        a.add(
            "/src/scenarios.rs",
            [56, 62],
            "app::scenarios::run_never_answered::{{closure}}".into(),
        );
        a.add(
            "/src/scenarios.rs",
            [60, 61],
            "app::scenarios::run_never_answered::{{closure}}::{{closure}}".into(),
        );
        a.add("/src/scenarios.rs", [0], "app::nothing".into());
        a.finish();
        a
    }

    #[test]
    fn innermost_span_names_the_frame() {
        let a = index();
        assert_eq!(a.len(), 3);
        let q = |n, l| a.qualify(n, "/src/scenarios.rs", Some(l));
        assert_eq!(
            q("{async_fn#0}", 62).as_deref(),
            Some("app::scenarios::run_never_answered")
        );
        assert_eq!(
            q("{async_fn#0}", 30).as_deref(),
            Some("app::scenarios::run")
        );
        assert_eq!(
            q("{async_block#0}", 61).as_deref(),
            Some("app::scenarios::run_never_answered::{async_block#0}")
        );
        // Between functions: only the module is known.
        assert_eq!(
            q("{async_fn#0}<u64>", 49).as_deref(),
            Some("app::scenarios::{async_fn#0}")
        );
        assert_eq!(q("named", 62), None);
        assert_eq!(a.qualify("{async_fn#0}", "/src/other.rs", Some(62)), None);
        assert_eq!(
            a.qualify("{closure#2}", "/src/scenarios.rs", None)
                .as_deref(),
            Some("app::scenarios::{closure#2}")
        );
    }

    #[test]
    fn modules_in_common() {
        let m = |v: &[&str]| common_module(v.iter().copied());
        assert_eq!(
            m(&["a::b::f", "a::b::g::{{closure}}"]).as_deref(),
            Some("a::b")
        );
        assert_eq!(m(&["a::b::f", "a::c::g"]).as_deref(), Some("a"));
        assert_eq!(m(&["a::f", "b::g"]), None);
        assert_eq!(m(&["<a::S as b::T>::f"]), None);
        assert_eq!(m(&[]), None);
    }
}
