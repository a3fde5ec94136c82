//! The machine-code await decoder against the fixture binaries (no root needed): the task
//! futures below each `raw::poll` are found, with their async fn's location, in every build
//! profile and tokio version the fixtures have.
//! Fixtures come from `cargo xtask fixtures` (fixtures/bin, or $LEAKPROF_FIXTURES); a missing one
//! is skipped, or fails the test under CI=true.
mod common;

use common::fixture_image as fixture;
use leakprof::runtimes::tokio::probes::plan;
use leakprof::runtimes::tokio::awaits::code::CodeIndex;


#[test]
fn task_futures_are_found_in_the_code_of_every_build() {
    // (fixture, least share of raw::poll functions whose future is found): the others poll
    // blocking tasks and plain futures, which have no state machine
    for (name, least) in [
        ("tokio-latest", 0.75),
        ("tokio-latest-debuginfo", 0.75),
        ("tokio-latest-lto", 0.6),
        ("tokio-latest-debug2", 0.75),
        ("tokio-1.38", 0.75),
        ("tokio-1.28", 0.75),
    ] {
        let Some(image) = fixture(name) else { continue };
        let mut index = CodeIndex::new(&image);
        let polls = plan::raw_polls(&image);
        assert!(polls.len() >= 20, "{name}: {} raw::poll", polls.len());
        let mut locations = Vec::new();
        for &p in &polls {
            if let Some(l) = index.future_location(p) {
                locations.push(l);
            }
        }
        let share = locations.len() as f64 / polls.len() as f64;
        assert!(share >= least, "{name}: {} of {} futures found", locations.len(), polls.len());
        // every leak of leaks.rs is among them, at its async fn's opening line
        let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tokio-src/leaks.rs")).unwrap();
        for f in ["never_answered", "wait_for_mutex", "wait_at_barrier", "query_replica", "drain_channel"] {
            let line = src.lines().position(|l| l.contains(&format!("async fn {f}("))).unwrap() as u32 + 1;
            assert!(
                locations.iter().any(|l| l.file.ends_with("leaks.rs") && l.line == line),
                "{name}: {f} (leaks.rs:{line}) not found among {locations:?}"
            );
        }
    }
}

/// Without any symbol, the same functions are found (function bounds from .eh_frame).
#[test]
fn stripped_binaries_have_the_same_futures() {
    let (Some(full), Some(stripped)) = (fixture("tokio-latest"), fixture("tokio-latest-stripped")) else { return };
    assert!(!stripped.has_symtab());
    let (mut a, mut b) = (CodeIndex::new(&full), CodeIndex::new(&stripped));
    let polls = plan::raw_polls(&full);
    let mut same = 0;
    for &p in &polls {
        let (x, y) = (a.future_location(p), b.future_location(p));
        assert!(x.is_none() || y.is_some(), "{p:#x}: {x:?} found with symbols, not without");
        same += usize::from(x.is_some() && x == y);
    }
    assert!(same * 4 >= polls.len() * 3, "{same} of {}", polls.len());
}

/// The seeds of the `code` fuzz target (fuzz/corpus/make_seeds.py) are async polls the analysis
/// recognises, so the fuzzer starts from inputs that reach every stage.
#[test]
fn code_fuzz_seeds_are_recognised() {
    use leakprof::runtimes::tokio::awaits::code::{flow, machine};
    for seed in ["jump-table", "compare-chain"] {
        let path = format!("{}/../fuzz/corpus/code/{seed}", env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let env = flow::SliceEnv { base: 0x1000, bytes: &data };
        let f = flow::Flow::from_code(&data, 0x1000, &env);
        let ms = machine::machines(&env, &f);
        let m = &ms.list[ms.entry.expect("an entry machine")];
        assert_eq!((m.at.off, m.location.file.as_str(), m.location.line), (0x30, "src/app.rs", 7), "{seed}");
        assert!(matches!(m.awaits[&3].next, machine::Next::Call { callee: 0x3000, arg: Some(0x28), .. }), "{seed}: {m:?}");
    }
}
