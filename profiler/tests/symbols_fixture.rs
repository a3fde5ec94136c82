//! The ELF, plan and naming modules against the real fixture binaries (no root needed).
//! Fixtures come from `cargo xtask fixtures` (fixtures/bin, or $LEAKPROF_FIXTURES); a missing one
//! is skipped, or fails the test under CI=true.

mod common;

use std::path::Path;

use leakprof::runtimes::tokio::probes::plan::{classify, plan, BirthMode, PlanError, Role};
use leakprof::runtimes::tokio::naming::symbolize::Symbolizer;
use common::fixture_image as fixture;

/// Every spawned `async fn` of fixtures/tokio-src (see fixtures/README.md).
const SITES: &[&str] = &[
    "bench::bench_round",
    "bench::trivial_task",
    "census::backlogged",
    "census::churn_job",
    "census::idle_connection",
    "healthy::burst_job",
    "healthy::churn_task",
    "healthy::long_lived_service",
    "healthy::pool_feeder",
    "healthy::pool_worker",
    "healthy::ramp_worker",
    "healthy::short_request",
    "healthy::short_request_driver",
    "leaks::blocked_worker",
    "leaks::drain_channel",
    "leaks::hold_mutex_forever",
    "leaks::never_answered",
    "leaks::query_all",
    "leaks::query_replica",
    "leaks::recv_no_sender",
    "leaks::request_with_timeout",
    "leaks::request_without_timeout",
    "leaks::silent_server",
    "leaks::spin_forever",
    "leaks::wait_at_barrier",
    "leaks::wait_for_mutex",
];

/// `tokio_fixture::leaks::x::{{closure}}` / `..::{closure#0}` -> `leaks::x`.
fn site_of(function: &str) -> Option<&str> {
    let f = function.strip_prefix("tokio_fixture::")?;
    Some(
        f.strip_suffix("::{{closure}}")
            .or_else(|| f.strip_suffix("::{closure#0}"))
            .unwrap_or(f),
    )
}

fn check_tokio_fixture(name: &str, version_prefix: &str, dwarf: bool) {
    let Some(image) = fixture(name) else { return };
    assert!(image.has_symtab() && image.is_pie());
    assert_eq!(image.has_debug_info(), dwarf, "{name}: debug info");

    let p = plan(&image, image.data()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let version = p.version.clone().unwrap_or_default();
    assert!(
        version.starts_with(version_prefix),
        "{name}: version {version}"
    );
    assert_eq!(p.birth_mode, BirthMode::BindInner, "{name}");
    assert!(!p.birth.is_empty(), "{name}: no birth point");
    // multi_thread and current_thread release (the fixture can run either).
    assert_eq!(p.finish.len(), 2, "{name}: {:?}", p.finish);
    for pt in p.birth.iter().chain(&p.finish) {
        let off = pt.file_offset as usize;
        assert_eq!(
            image.read_at_vaddr(pt.vaddr, 16),
            image.data().get(off..off + 16),
            "{name}: file offset of {}",
            pt.symbol
        );
    }

    let mut polls: Vec<u64> = image
        .symbols_named(|n| classify(n) == Some(Role::RawPoll))
        .map(|s| s.addr)
        .collect();
    polls.dedup();
    let mut symbolizer = Symbolizer::new(image);
    let mut named = Vec::new();
    for addr in polls {
        let n = symbolizer.name_future(addr).clone();
        if let Some(site) = site_of(&n.name.function) {
            let module = site.split("::").next().unwrap_or_default();
            let (file, _) = n
                .location
                .clone()
                .unwrap_or_else(|| panic!("{name}: {site} has no location"));
            assert!(
                file.ends_with(&format!("{module}.rs")),
                "{name}: {site} at {file}"
            );
            named.push(site.to_owned());
        }
    }
    for site in SITES {
        assert!(
            named.iter().any(|n| n == site),
            "{name}: {site} not named; got {named:?}"
        );
    }
    assert!(
        named.iter().all(|n| !n.contains(" | ")),
        "{name}: ambiguous {named:?}"
    );
}

#[test]
fn tokio_1_38_legacy() {
    check_tokio_fixture("tokio-1.38", "1.38.", false);
}

#[test]
fn tokio_latest_legacy() {
    check_tokio_fixture("tokio-latest", "1.", false);
}

#[test]
fn tokio_latest_v0() {
    check_tokio_fixture("tokio-latest-v0", "1.", false);
}

#[test]
fn tokio_latest_debuginfo() {
    check_tokio_fixture("tokio-latest-debuginfo", "1.", true);
}

#[test]
fn stripped_is_refused() {
    let Some(image) = fixture("tokio-latest-stripped") else {
        return;
    };
    assert!(!image.has_symtab());
    assert_eq!(plan(&image, image.data()), Err(PlanError::Stripped));
}

#[test]
fn plain_is_not_tokio() {
    let Some(image) = fixture("plain") else {
        return;
    };
    assert_eq!(plan(&image, image.data()), Err(PlanError::NotTokio));
}

/// Line-tables-only DWARF names async fn bodies `{async_fn#0}` with no path. In
/// `run_never_answered`'s body (out of line in this fixture), the spawn at scenarios.rs:62 must be
/// named by the function; the async block inlined into `request_without_timeout` by its
/// function and kind.
#[test]
fn anonymous_frames_are_qualified() {
    use leakprof::elf::lines::LineTable;
    use leakprof::unwind::symbolize_frames;

    let Some(image) = fixture("tokio-latest-debuginfo") else {
        return;
    };
    let lines = LineTable::load(image.data()).expect("DWARF");
    let body = |name: &str| -> Vec<(u64, u64)> {
        let found: Vec<_> = image
            .symbols_named(|n| n == name)
            .map(|s| (s.addr, s.size))
            .collect();
        assert!(!found.is_empty(), "no {name}");
        found
    };
    // the line of run_never_answered's spawn, in the fixture's source
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tokio-src/scenarios.rs")).unwrap();
    let spawn_line = src.lines().position(|l| l.contains("tokio::spawn(leaks::never_answered(rx));")).unwrap() as u32 + 1;
    let mut spawns = 0;
    for (addr, size) in body("tokio_fixture::scenarios::run_never_answered::{{closure}}") {
        for pc in addr..addr + size {
            let raw = lines.frames(pc);
            let frames = symbolize_frames(&image, Some(&lines), 0, &[pc]);
            assert_eq!(raw.len(), frames.len());
            let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
            for (r, f) in raw.iter().zip(&frames) {
                if r.function.as_deref() == Some("{async_fn#0}") && f.line == Some(spawn_line) {
                    assert_eq!(
                        f.function, "tokio_fixture::scenarios::run_never_answered",
                        "{pc:#x}"
                    );
                    spawns += 1;
                }
            }
            assert!(
                names.iter().all(|n| !n.starts_with('{')),
                "{pc:#x}: {names:#?}"
            );
        }
    }
    assert!(spawns > 0, "no {{async_fn#0}} frame at the spawn line");

    let mut blocks = 0;
    for (addr, size) in body("tokio_fixture::leaks::request_without_timeout::{{closure}}") {
        for pc in addr..addr + size {
            let raw = lines.frames(pc);
            let frames = symbolize_frames(&image, Some(&lines), 0, &[pc]);
            for (r, f) in raw.iter().zip(&frames) {
                if r.function.as_deref() == Some("{async_block#0}")
                    && f.inlined
                    && f.line.is_some_and(|l| l > 0)
                {
                    assert_eq!(
                        f.function,
                        "tokio_fixture::leaks::request_without_timeout::{async_block#0}",
                        "{pc:#x}"
                    );
                    blocks += 1;
                }
            }
        }
    }
    assert!(
        blocks > 0,
        "no inlined async block in request_without_timeout"
    );
}

#[test]
fn a_separate_debug_file_brings_symbols_and_dwarf_and_must_be_of_the_same_build() {
    let (Some(split), Some(other)) = (fixture("tokio-latest-split"), fixture("tokio-1.38")) else {
        return;
    };
    assert!(!split.has_symtab() && !split.has_debug_info());
    let dbg_path = common::fixture_dir().join("tokio-latest-split.debug");
    let merged = split.with_debug_file(std::fs::read(&dbg_path).unwrap(), &dbg_path).unwrap();
    assert!(merged.has_symtab() && merged.has_debug_info());
    assert_eq!(merged.data(), split.data(), "code and data stay the executable's");
    assert_ne!(merged.dwarf_data(), merged.data(), "DWARF comes from the debug file");
    let p = plan(&merged, merged.data()).unwrap();
    assert_eq!(p.birth_mode, BirthMode::BindInner);
    let wrong = split.with_debug_file(other.data().to_vec(), Path::new("tokio-1.38")).unwrap_err();
    assert!(wrong.contains("build id"), "{wrong}");
}
