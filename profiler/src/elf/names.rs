//! Structure of demangled Rust names (legacy and v0 forms), without a full parser.
//!
//! Legacy: `tokio::runtime::task::list::OwnedTasks<S>::bind_inner`, `tokio::runtime::task::raw::poll`.
//! v0: `<tokio::runtime::task::list::OwnedTasks<alloc::sync::Arc<..>>>::bind_inner`,
//! `tokio::runtime::task::raw::poll::<app::f::{closure#0}, alloc::sync::Arc<..>>`.
//! Both: `<alloc::sync::Arc<..> as tokio::runtime::task::Schedule>::release`.

/// Byte index of the bracket closing the one that opens at `open` (`<`, `(`, `[` or `{`), skipping
/// the `>` of `->`.
fn matching_close(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    for i in open..b.len() {
        match b[i] {
            b'<' | b'(' | b'[' | b'{' => depth += 1,
            b'>' if i > 0 && b[i - 1] == b'-' => {}
            b'>' | b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits `s` at top-level occurrences of `sep` (outside any bracket).
fn split_top_level<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'<' | b'(' | b'[' | b'{' => depth += 1,
            b'>' if i > 0 && b[i - 1] == b'-' => {}
            b'>' | b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            // bytes, not `s[i..]`: `i` need not be a char boundary in a non-ASCII name
            _ if depth == 0 && b[i..].starts_with(sep.as_bytes()) => {
                parts.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// A trait or inherent method path: `<Self as Trait>::rest`, `<Self>::rest` (v0 inherent), or
/// legacy's `module::<impl Trait for Self>::rest` / `module::<impl Self>::rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualified<'a> {
    /// The module holding the impl block (legacy `<impl ..>` form only).
    pub module: Option<&'a str>,
    pub self_ty: &'a str,
    pub trait_path: Option<&'a str>,
    /// What follows `>::` (may be empty).
    pub rest: &'a str,
}

/// Parses the qualified forms described at [`Qualified`]; None for plain paths.
pub fn split_qualified(name: &str) -> Option<Qualified<'_>> {
    let (module, open, sep) = if name.starts_with('<') {
        (None, 0, " as ")
    } else {
        let at = find_top_level(name, "::<impl ")?;
        (Some(&name[..at]), at + 2, " for ")
    };
    let close = matching_close(name, open)?;
    let inner = &name[open + 1..close];
    let inner = if module.is_some() {
        inner.strip_prefix("impl ")?
    } else {
        inner
    };
    let after = &name[close + 1..];
    let rest = after.strip_prefix("::").unwrap_or(after);
    let parts = split_top_level(inner, sep);
    let (self_ty, trait_path) = match (parts.as_slice(), module) {
        ([self_ty, trait_path], None) => (*self_ty, Some(*trait_path)),
        ([trait_path, self_ty], Some(_)) => (*self_ty, Some(*trait_path)),
        _ => (inner, None),
    };
    Some(Qualified {
        module,
        self_ty,
        trait_path,
        rest,
    })
}

/// Byte index of the first occurrence of `pat` outside any bracket.
fn find_top_level(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    for i in 0..b.len() {
        if depth == 0 && b[i..].starts_with(pat.as_bytes()) {
            return Some(i);
        }
        match b[i] {
            b'<' | b'(' | b'[' | b'{' => depth += 1,
            b'>' if i > 0 && b[i - 1] == b'-' => {}
            b'>' | b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Removes every generic argument list (`<..>` after a path segment, and `::<..>`).
pub fn strip_generics(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let c = path.as_bytes()[i];
        if c == b'<' {
            match matching_close(path, i) {
                Some(close) => {
                    if out.ends_with("::") {
                        out.truncate(out.len() - 2);
                    }
                    i = close + 1;
                    continue;
                }
                None => return out,
            }
        }
        let ch = path[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The path of a function without generic arguments, with v0's `<Type>::method` unwrapped to
/// `Type::method`. None for trait methods (`<A as B>::m`).
pub fn plain_path(name: &str) -> Option<String> {
    match split_qualified(name) {
        None => Some(strip_generics(name)),
        Some(q) if q.trait_path.is_none() && q.module.is_none() => {
            let joined = if q.rest.is_empty() {
                q.self_ty.to_owned()
            } else {
                format!("{}::{}", q.self_ty, q.rest)
            };
            Some(strip_generics(&joined))
        }
        Some(_) => None,
    }
}

/// The generic arguments of the last path segment written as a turbofish (`f::<A, B>`), as v0
/// mangling prints them for generic functions. Empty when there are none (legacy mangling).
pub fn turbofish_args(name: &str) -> Vec<&str> {
    let Some(pos) = name.rfind("::<").filter(|_| name.ends_with('>')) else {
        return Vec::new();
    };
    // The `::<` must be the one whose group closes at the very end.
    let mut open = pos + 2;
    loop {
        if matching_close(name, open) == Some(name.len() - 1) {
            break;
        }
        match name[..open].rfind("::<") {
            Some(p) => open = p + 2,
            None => return Vec::new(),
        }
    }
    split_top_level(&name[open + 1..name.len() - 1], ", ")
        .into_iter()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// The crate a (demangled) function belongs to: the first path segment, or for
/// `<Self as Trait>::m` the crate of `Self` (of `Trait` when `Self` is a reference to a generic
/// parameter or a primitive). None for names that are not Rust paths (C functions).
pub fn crate_of(name: &str) -> Option<&str> {
    match split_qualified(name) {
        Some(q) => type_crate(q.self_ty)
            .or_else(|| q.module.and_then(first_segment_or_all))
            .or_else(|| q.trait_path.and_then(type_crate)),
        None => first_segment(name),
    }
}

fn type_crate(ty: &str) -> Option<&str> {
    let mut t = ty.trim();
    for prefix in ["&", "mut ", "*const ", "*mut ", "dyn ", "[", "(", "impl "] {
        while let Some(s) = t.strip_prefix(prefix) {
            t = s.trim_start();
        }
    }
    if t.starts_with('<') {
        return crate_of(t);
    }
    first_segment(t)
}

fn first_segment_or_all(path: &str) -> Option<&str> {
    first_segment(path).or(Some(path).filter(|p| is_ident(p)))
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn first_segment(path: &str) -> Option<&str> {
    let end = path.find("::")?;
    let seg = &path[..end];
    is_ident(seg).then_some(seg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_identifiers_never_panic() {
        // identifiers may be any XID characters: a multi-byte char before `::`, `<`, ` as `
        let names = [
            "crate::ä::<Vec<ü>>::f",
            "<ñ::T as ß::Tr>::m",
            "app::日本::<語>::{closure#0}",
            "<ф<ц> as ш>::щ<э>",
            "ö",
            "<é as ::x>",
        ];
        for n in names {
            for (i, _) in n.char_indices() {
                let s = &n[i..];
                let _ = split_qualified(s);
                let _ = strip_generics(s);
                let _ = plain_path(s);
                let _ = turbofish_args(s);
                let _ = crate_of(s);
            }
        }
        assert_eq!(plain_path("app::ä::f").as_deref(), Some("app::ä::f"));
        assert_eq!(strip_generics("app::ä<ü>::f"), "app::ä::f");
        assert_eq!(turbofish_args("f::<ä, ü>"), vec!["ä", "ü"]);
    }

    const V0_POLL: &str = "tokio::runtime::task::raw::poll::<app::worker::leaky::{closure#0}, \
        alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>>";

    #[test]
    fn qualified_names() {
        let q = split_qualified(
            "<alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle> as \
             tokio::runtime::task::Schedule>::release",
        )
        .unwrap();
        assert_eq!(
            q.self_ty,
            "alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>"
        );
        assert_eq!(q.trait_path, Some("tokio::runtime::task::Schedule"));
        assert_eq!(q.rest, "release");
        let q = split_qualified("<a::B<c::D>>::f").unwrap();
        assert_eq!((q.self_ty, q.trait_path, q.rest), ("a::B<c::D>", None, "f"));
        assert!(split_qualified("a::b").is_none());
        let q = split_qualified(
            "tokio::runtime::scheduler::multi_thread::worker::<impl tokio::runtime::task::Schedule \
             for alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>>::release",
        )
        .unwrap();
        assert_eq!(
            q.module,
            Some("tokio::runtime::scheduler::multi_thread::worker")
        );
        assert_eq!(
            q.self_ty,
            "alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>"
        );
        assert_eq!(q.trait_path, Some("tokio::runtime::task::Schedule"));
        assert_eq!(q.rest, "release");
        let q = split_qualified("a::b::<impl a::C<T>>::f").unwrap();
        assert_eq!((q.self_ty, q.trait_path, q.rest), ("a::C<T>", None, "f"));
    }

    #[test]
    fn plain_paths() {
        assert_eq!(
            plain_path("tokio::runtime::task::list::OwnedTasks<S>::bind_inner").unwrap(),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            plain_path(
                "<tokio::runtime::task::list::OwnedTasks<alloc::sync::Arc<x::H>>>::bind_inner"
            )
            .unwrap(),
            "tokio::runtime::task::list::OwnedTasks::bind_inner"
        );
        assert_eq!(
            plain_path(V0_POLL).unwrap(),
            "tokio::runtime::task::raw::poll"
        );
        assert_eq!(plain_path("f::<fn() -> u8>::g").unwrap(), "f::g");
        assert!(plain_path("<a::B as c::D>::e").is_none());
    }

    #[test]
    fn turbofish() {
        assert_eq!(
            turbofish_args(V0_POLL),
            [
                "app::worker::leaky::{closure#0}",
                "alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>"
            ]
        );
        assert!(turbofish_args("tokio::runtime::task::raw::poll").is_empty());
        assert_eq!(
            turbofish_args("a::f::<(u8, u16), [u8; 4]>"),
            ["(u8, u16)", "[u8; 4]"]
        );
        assert_eq!(
            turbofish_args("a::g::<b::C<d::E>>::f::<x::Y<z::W, fn(u8) -> u8>>"),
            ["x::Y<z::W, fn(u8) -> u8>"]
        );
    }

    #[test]
    fn crates() {
        assert_eq!(crate_of("app::worker::leaky::{{closure}}"), Some("app"));
        assert_eq!(
            crate_of("<app::Foo as core::future::future::Future>::poll"),
            Some("app")
        );
        assert_eq!(
            crate_of("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            Some("core")
        );
        assert_eq!(
            crate_of("<&mut F as core::future::future::Future>::poll"),
            Some("core")
        );
        assert_eq!(crate_of("<[T] as core::fmt::Debug>::fmt"), Some("core"));
        assert_eq!(crate_of("memcpy"), None);
        assert_eq!(
            crate_of("app::<impl core::future::future::Future for app::Conn>::poll"),
            Some("app")
        );
        assert_eq!(
            crate_of("futures_util::x::<impl core::future::future::Future for F>::poll"),
            Some("futures_util")
        );
    }
}
