//! Where to probe an unmodified tokio (1.28 .. 1.5x) release binary.
//!
//! Birth: `OwnedTasks<S>::bind_inner` (header in rsi) where it exists, else every
//! `task::raw::poll` monomorphisation (header in rdi; the first poll of an unseen header is the
//! birth). Finish: `<Arc<scheduler::..::Handle> as task::Schedule>::release` (&Task in rsi),
//! and with first-poll births the `LocalSet`'s `<Arc<local::Shared> as Schedule>::release` too.
//! A `spawn_local` task is bound by `LocalOwnedTasks::bind`, inlined into each spawn path: no
//! probe sees it born at `bind_inner`; the census counts it, and the merge says so.
//! The matching is a pure function over `(demangled name, vaddr)` pairs: see [`plan_symbols`].

use super::attach_points::{dedup_points, AttachPoint};
use crate::elf::names::{plain_path, split_qualified};
use crate::elf::ElfImage;

/// How births are observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthMode {
    /// `OwnedTasks::bind_inner(&self, task, notified)`: the header is the 2nd argument (rsi).
    BindInner,
    /// `raw::poll(ptr)`: the header is the 1st argument (rdi); the first poll of an unseen header
    /// counts as its birth (tokio 1.28 has no `bind_inner`).
    FirstPoll,
}

/// The uprobes to attach for one tokio binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokioPlan {
    /// tokio version found in the binary's panic-location strings, e.g. "1.38.2".
    pub version: Option<String>,
    pub birth_mode: BirthMode,
    pub birth: Vec<AttachPoint>,
    /// `Schedule::release` of the runtime schedulers: &Task (a pointer to the header) in rsi.
    pub finish: Vec<AttachPoint>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no tokio symbols found: the target does not look like a tokio program; check the pid or path")]
    NotTokio,
    #[error(
        "the binary has no symbol table (stripped) and no debug file was found: pass one with --symbols FILE, or \
         install it where its build id points (/usr/lib/debug/.build-id/xx/rest.debug) or where its .gnu_debuglink \
         names it (next to the binary, in .debug/ beside it, or under /usr/lib/debug/); or rebuild without strip"
    )]
    Stripped,
    #[error(
        "tokio {} found but {missing} is missing (inlined or renamed in this version); \
         build with a supported tokio (1.28 or newer) or report the version",
        version.as_deref().unwrap_or("(unknown version)")
    )]
    Unsupported {
        version: Option<String>,
        missing: String,
    },
}

/// What a tokio function is to the profiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    BindInner,
    RawPoll,
    Release,
    /// `Schedule::release` of a `LocalSet` (`Arc<tokio::task::local::Shared>`): a `spawn_local`
    /// task's finish. Probed when births are seen at the first poll (which local tasks pass
    /// too); `bind_inner` sees no local task born, so with it local tasks are the census's.
    LocalRelease,
}

const SCHEDULERS: [&str; 3] = ["multi_thread", "current_thread", "multi_thread_alt"];

/// Classifies one demangled name (legacy or v0 form).
pub fn classify(name: &str) -> Option<Role> {
    if is_scheduler_release(name) {
        return Some(Role::Release);
    }
    if is_local_release(name) {
        return Some(Role::LocalRelease);
    }
    match plain_path(name)?.as_str() {
        "tokio::runtime::task::list::OwnedTasks::bind_inner" => Some(Role::BindInner),
        "tokio::runtime::task::raw::poll" => Some(Role::RawPoll),
        _ => None,
    }
}

/// ELF addresses of the binary's `raw::poll<T, S>` functions (one per task type), by symbol,
/// sorted.
pub fn raw_polls(image: &ElfImage) -> Vec<u64> {
    let mut v: Vec<u64> = image.symbols().iter().filter(|s| classify(&s.name) == Some(Role::RawPoll)).map(|s| s.addr).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `<alloc::sync::Arc<tokio::runtime::scheduler::{multi_thread,current_thread,..}::..Handle[, A]>
/// as tokio::runtime::task::Schedule>::release` (legacy: `..::worker::<impl tokio::runtime::task::Schedule
/// for alloc::sync::Arc<..Handle>>::release`), but not BlockingSchedule or LocalSet's Shared.
fn is_scheduler_release(name: &str) -> bool {
    let Some(q) = split_qualified(name) else {
        return false;
    };
    if q.rest != "release" || q.trait_path != Some("tokio::runtime::task::Schedule") {
        return false;
    }
    let Some(inner) = q
        .self_ty
        .strip_prefix("alloc::sync::Arc<tokio::runtime::scheduler::")
    else {
        return false;
    };
    // v0 prints Arc's allocator parameter too: `Arc<..::Handle, alloc::alloc::Global>`.
    let ty = inner.split([',', '>']).next().unwrap_or(inner);
    let module = ty.split("::").next().unwrap_or("");
    SCHEDULERS.contains(&module) && ty.ends_with("Handle")
}

/// `<alloc::sync::Arc<tokio::task::local::Shared> as tokio::runtime::task::Schedule>::release`
/// (legacy: `tokio::task::local::<impl tokio::runtime::task::Schedule for alloc::sync::Arc<..Shared>>::release`).
fn is_local_release(name: &str) -> bool {
    split_qualified(name).is_some_and(|q| {
        q.rest == "release"
            && q.trait_path == Some("tokio::runtime::task::Schedule")
            && q.self_ty.strip_prefix("alloc::sync::Arc<tokio::task::local::Shared").is_some_and(|t| t.starts_with(['>', ',']))
    })
}

/// True when a name belongs to tokio at all (for telling "not tokio" from "unsupported tokio").
fn is_tokio_name(name: &str) -> bool {
    name.starts_with("tokio::") || name.contains("<tokio::") || name.contains(" tokio::")
}

/// Builds the plan from `(demangled name, vaddr)` pairs; `file_offset` converts a vaddr.
pub fn plan_symbols<'a>(
    symbols: impl IntoIterator<Item = (&'a str, u64)>,
    version: Option<String>,
    file_offset: impl Fn(u64) -> Option<u64>,
) -> Result<TokioPlan, PlanError> {
    let (mut bind, mut poll, mut release, mut local_release) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut any_tokio = false;
    for (name, vaddr) in symbols {
        any_tokio |= is_tokio_name(name);
        match classify(name) {
            Some(Role::BindInner) => bind.push((name, vaddr)),
            Some(Role::RawPoll) => poll.push((name, vaddr)),
            Some(Role::Release) => release.push((name, vaddr)),
            Some(Role::LocalRelease) => local_release.push((name, vaddr)),
            None => {}
        }
    }
    if !any_tokio {
        return Err(PlanError::NotTokio);
    }
    let (birth_mode, birth) = match dedup_points(bind, &file_offset) {
        b if !b.is_empty() => (BirthMode::BindInner, b),
        _ => (BirthMode::FirstPoll, dedup_points(poll, &file_offset)),
    };
    if birth_mode == BirthMode::FirstPoll {
        release.extend(local_release);
    }
    let finish = dedup_points(release, &file_offset);
    let missing = match (birth.is_empty(), finish.is_empty()) {
        (true, true) => "both OwnedTasks::bind_inner/task::raw::poll and Schedule::release",
        (true, false) => "OwnedTasks::bind_inner and task::raw::poll (task birth)",
        (false, true) => "<Arc<scheduler Handle> as Schedule>::release (task finish)",
        (false, false) => {
            return Ok(TokioPlan {
                version,
                birth_mode,
                birth,
                finish,
            })
        }
    };
    Err(PlanError::Unsupported {
        version,
        missing: missing.to_owned(),
    })
}

/// Plans the probes for a parsed tokio binary; `data` is the file (for the version scan).
pub fn plan(image: &ElfImage, data: &[u8]) -> Result<TokioPlan, PlanError> {
    let version = detect_tokio_version(data);
    if !image.has_symtab() {
        // Without symbols, tokio's source paths in panic locations still tell a tokio program.
        return Err(if version.is_some() { PlanError::Stripped } else { PlanError::NotTokio });
    }
    plan_symbols(
        image.symbols().iter().map(|s| (s.name.as_str(), s.addr)),
        version,
        |v| image.vaddr_to_file_offset(v),
    )
}

/// The tokio version named by source paths compiled into the binary (panic locations such as
/// `.../tokio-1.38.2/src/runtime/...`); the most frequent one wins.
pub fn detect_tokio_version(data: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"tokio-";
    let mut counts: Vec<(&[u8], usize)> = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(&data[i..], NEEDLE) {
        let start = i + pos;
        i = start + NEEDLE.len();
        if start > 0 && !matches!(data[start - 1], b'/' | b'\\') {
            continue;
        }
        let rest = &data[i..data.len().min(i + 48)];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
            .count();
        let ver = &rest[..len];
        let tail = &rest[len..];
        if !ver.first().is_some_and(u8::is_ascii_digit)
            || !(tail.starts_with(b"/src/") || tail.starts_with(b"\\src\\"))
        {
            continue;
        }
        match counts.iter_mut().find(|(v, _)| *v == ver) {
            Some((_, n)) => *n += 1,
            None => counts.push((ver, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(v, _)| String::from_utf8_lossy(v).into_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARC_MT: &str =
        "alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>";

    fn release(ty: &str) -> String {
        format!("<{ty} as tokio::runtime::task::Schedule>::release")
    }

    fn plan_of(syms: &[(&str, u64)]) -> Result<TokioPlan, PlanError> {
        plan_symbols(syms.iter().copied(), Some("1.38.2".into()), |v| {
            Some(v - 0x1000)
        })
    }

    #[test]
    fn classifies_legacy_impl_form() {
        let mt = "tokio::runtime::scheduler::multi_thread::worker::<impl tokio::runtime::task::Schedule \
                  for alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle>>::release";
        assert_eq!(classify(mt), Some(Role::Release));
        let ct = "tokio::runtime::scheduler::current_thread::<impl tokio::runtime::task::Schedule \
                  for alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>>::release";
        assert_eq!(classify(ct), Some(Role::Release));
        let local = "tokio::task::local::<impl tokio::runtime::task::Schedule \
                     for alloc::sync::Arc<tokio::task::local::Shared>>::release";
        assert_eq!(classify(local), Some(Role::LocalRelease));
        assert_eq!(
            classify("tokio::runtime::io::registration_set::RegistrationSet::release"),
            None
        );
    }

    #[test]
    fn classifies_legacy_names() {
        assert_eq!(
            classify("tokio::runtime::task::list::OwnedTasks<S>::bind_inner"),
            Some(Role::BindInner)
        );
        assert_eq!(
            classify("tokio::runtime::task::raw::poll"),
            Some(Role::RawPoll)
        );
        assert_eq!(classify(&release(ARC_MT)), Some(Role::Release));
        assert_eq!(
            classify(&release(
                "alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>"
            )),
            Some(Role::Release)
        );
        assert_eq!(
            classify("tokio::runtime::task::list::OwnedTasks<S>::bind"),
            None
        );
        assert_eq!(classify("tokio::runtime::task::raw::poll_future"), None);
        assert_eq!(
            classify("tokio::runtime::task::list::OwnedTasks<S>::bind_inner::{{closure}}"),
            None
        );
    }

    #[test]
    fn classifies_v0_names() {
        assert_eq!(
            classify(&format!(
                "<tokio::runtime::task::list::OwnedTasks<{ARC_MT}>>::bind_inner"
            )),
            Some(Role::BindInner)
        );
        assert_eq!(
            classify(&format!(
                "tokio::runtime::task::raw::poll::<app::worker::{{closure#0}}, {ARC_MT}>"
            )),
            Some(Role::RawPoll)
        );
        assert_eq!(
            classify(&release(
                "alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle, alloc::alloc::Global>"
            )),
            Some(Role::Release)
        );
    }

    #[test]
    fn rejects_blocking_release_and_tells_local_release_apart() {
        assert_eq!(
            classify("<tokio::runtime::blocking::schedule::BlockingSchedule as tokio::runtime::task::Schedule>::release"),
            None
        );
        assert_eq!(classify(&release("alloc::sync::Arc<tokio::task::local::Shared>")), Some(Role::LocalRelease));
        assert_eq!(
            classify("tokio::task::local::<impl tokio::runtime::task::Schedule for alloc::sync::Arc<tokio::task::local::Shared>>::release"),
            Some(Role::LocalRelease)
        );
        assert_eq!(classify(&release("alloc::sync::Arc<tokio::task::local::SharedOther>")), None);
        assert_eq!(
            classify("<alloc::sync::Arc<tokio::runtime::scheduler::multi_thread::handle::Handle> as tokio::runtime::task::Schedule>::schedule"),
            None
        );
    }

    #[test]
    fn bind_inner_mode_with_icf_dedup() {
        let rel = release(ARC_MT);
        let p = plan_of(&[
            (
                "tokio::runtime::task::list::OwnedTasks<S>::bind_inner",
                0x5000,
            ),
            (
                "tokio::runtime::task::list::OwnedTasks<S>::bind_inner",
                0x5000,
            ),
            (
                "tokio::runtime::task::list::OwnedTasks<S>::bind_inner",
                0x6000,
            ),
            ("tokio::runtime::task::raw::poll", 0x7000),
            (&rel, 0x8000),
            (&rel, 0x8000),
            (&release("alloc::sync::Arc<tokio::task::local::Shared>"), 0x9000),
        ])
        .unwrap();
        assert_eq!(p.birth_mode, BirthMode::BindInner);
        assert_eq!(p.birth.len(), 2);
        assert_eq!(p.birth[0].file_offset, 0x4000);
        // a LocalSet's finish is not probed: bind_inner sees no local task born
        assert_eq!(p.finish.len(), 1);
        assert_eq!(p.version.as_deref(), Some("1.38.2"));
    }

    #[test]
    fn first_poll_fallback() {
        let rel = release("alloc::sync::Arc<tokio::runtime::scheduler::current_thread::Handle>");
        let p = plan_of(&[
            ("tokio::runtime::task::raw::poll", 0x7000),
            ("tokio::runtime::task::raw::poll", 0x7100),
            ("tokio::runtime::task::raw::poll", 0x7100),
            (&rel, 0x8000),
            (&release("alloc::sync::Arc<tokio::task::local::Shared>"), 0x9000),
        ])
        .unwrap();
        assert_eq!(p.birth_mode, BirthMode::FirstPoll);
        assert_eq!(p.birth.len(), 2);
        // local tasks pass the first poll too: their finish is probed
        assert_eq!(p.finish.iter().map(|f| f.vaddr).collect::<Vec<_>>(), vec![0x8000, 0x9000]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            plan_of(&[("main", 0x1000), ("memcpy", 0x2000)]),
            Err(PlanError::NotTokio)
        );
        let e = plan_of(&[("tokio::runtime::task::raw::poll", 0x7000)]).unwrap_err();
        assert!(
            matches!(&e, PlanError::Unsupported { missing, .. } if missing.contains("release"))
        );
        assert!(e.to_string().contains("1.38.2"));
        let rel = release(ARC_MT);
        let e = plan_of(&[(&rel, 0x7000)]).unwrap_err();
        assert!(matches!(&e, PlanError::Unsupported { missing, .. } if missing.contains("birth")));
    }

    #[test]
    fn version_scan() {
        let data = b"xx/home/u/.cargo/registry/src/index.registry-1949cf8c6b5b557f/tokio-1.38.2/src/runtime/a.rs\0\
            /tokio-1.38.2/src/b.rs /tokio-macros-2.3.0/src/lib.rs /tokio-1.9.0/src/x.rs \
            xtokio-1.1.1/src/ /tokio-util-0.7.1/src/ /tokio-1.38.2";
        assert_eq!(detect_tokio_version(data).as_deref(), Some("1.38.2"));
        assert_eq!(
            detect_tokio_version(b"C:\\r\\tokio-1.54.1\\src\\lib.rs").as_deref(),
            Some("1.54.1")
        );
        assert_eq!(detect_tokio_version(b"no version here tokio-"), None);
    }
}
