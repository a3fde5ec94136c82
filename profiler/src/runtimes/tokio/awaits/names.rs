//! Readable names for DWARF types: async state machines named by their function, allocator
//! noise removed.

/// True for a compiler-generated async state machine type name, e.g. `{async_fn_env#0}`,
/// `{async_block_env#1}`, `{async_fn_env#0}<u64>` (generic fns append their arguments).
pub fn is_env(name: &str) -> bool {
    name.starts_with("{async_")
        && name
            .split('}')
            .next()
            .is_some_and(|head| head.contains("_env#"))
}

/// The function (or block) a state machine type belongs to: `scope` for an async fn,
/// `scope::{async_block#N}` for a block. None when `name` is not a state machine.
pub fn env_function(scope: &str, name: &str) -> Option<String> {
    if !is_env(name) {
        return None;
    }
    let scope = &without_async_fn_scopes(scope);
    let head = name.split('}').next().unwrap_or(name);
    if head.starts_with("{async_fn_env#") || scope.is_empty() {
        return Some(if scope.is_empty() {
            head.to_string() + "}"
        } else {
            scope.to_string()
        });
    }
    // `{async_block_env#1` -> `{async_block#1}`
    let item = head.replacen("_env#", "#", 1);
    Some(format!("{scope}::{item}}}"))
}

/// `scope` without the `{async_fn#N}` segments DWARF puts between an async fn and the blocks
/// and closures inside it.
fn without_async_fn_scopes(scope: &str) -> String {
    scope
        .split("::")
        .filter(|seg| {
            !seg.strip_prefix("{async_fn#")
                .and_then(|r| r.strip_suffix('}'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("::")
}

/// `scope::name`, or `name` when the scope is empty.
pub fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}::{name}")
    }
}

/// A type name without the default allocator arguments (`, alloc::alloc::Global`).
pub fn readable(type_name: &str) -> String {
    type_name.replace(", alloc::alloc::Global", "")
}

/// How an awaited type is shown: `async fn <path>` / `async block <path>` for state machines, the
/// readable type name otherwise.
pub fn awaiting(scope: &str, name: &str) -> String {
    match env_function(scope, name) {
        Some(f) if name.starts_with("{async_fn_env#") => format!("async fn {f}"),
        Some(f) => format!("async block {f}"),
        None => readable(&qualify(scope, name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_names() {
        assert!(is_env("{async_fn_env#0}"));
        assert!(is_env("{async_block_env#2}"));
        assert!(is_env("{async_fn_env#0}<u64>"));
        assert!(!is_env("{closure_env#0}"));
        assert!(!is_env("Receiver<u64>"));
        assert_eq!(
            env_function("tokio_fixture::leaks::never_answered", "{async_fn_env#0}").as_deref(),
            Some("tokio_fixture::leaks::never_answered")
        );
        assert_eq!(
            env_function("app::main", "{async_block_env#1}").as_deref(),
            Some("app::main::{async_block#1}")
        );
        assert_eq!(
            env_function(
                "tokio::sync::mpsc::bounded::{impl#0}::recv",
                "{async_fn_env#0}<u64>"
            )
            .as_deref(),
            Some("tokio::sync::mpsc::bounded::{impl#0}::recv")
        );
        assert_eq!(env_function("a", "Sleep"), None);
        assert_eq!(
            env_function("app::req::{async_fn#0}", "{async_block_env#0}").as_deref(),
            Some("app::req::{async_block#0}")
        );
    }

    #[test]
    fn awaited_types() {
        assert_eq!(
            awaiting("tokio::sync::oneshot", "Receiver<u64>"),
            "tokio::sync::oneshot::Receiver<u64>"
        );
        assert_eq!(awaiting("app::f", "{async_fn_env#0}"), "async fn app::f");
        assert_eq!(
            awaiting("app::f", "{async_block_env#0}"),
            "async block app::f::{async_block#0}"
        );
        assert_eq!(
            awaiting(
                "core::pin",
                "Pin<alloc::boxed::Box<dyn core::future::future::Future<Output=()>, alloc::alloc::Global>>"
            ),
            "core::pin::Pin<alloc::boxed::Box<dyn core::future::future::Future<Output=()>>>"
        );
        assert_eq!(awaiting("", "u8"), "u8");
    }
}
