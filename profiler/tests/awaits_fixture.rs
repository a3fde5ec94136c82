//! The await decoder against the full-debug-info fixture (no root needed): the future of
//! `leaks::never_answered` tasks is found from its `raw::poll` and a synthetic copy of a task's
//! memory decodes to the `.await` it is suspended at.
//! Fixtures come from `cargo xtask fixtures` (fixtures/bin, or $LEAKPROF_FIXTURES); a missing one
//! is skipped, or fails the test under CI=true.

mod common;

use std::time::Instant;

use leakprof::elf::ElfImage;
use leakprof::runtimes::tokio::awaits::{AwaitFrame, AwaitIndex, FutureLoc};
use common::fixture_image as fixture;

/// A reader over `mem` mapped at runtime address `base`.
fn reader(base: u64, mem: &[u8]) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
    move |addr, buf| {
        let Some(start) = addr.checked_sub(base).and_then(|s| usize::try_from(s).ok()) else {
            return false;
        };
        match mem.get(start..start + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// (poll vaddr, future) of every `raw::poll` whose future is the async fn `function`.
fn futures_of(
    index: &mut AwaitIndex,
    image: &ElfImage,
    function: &str,
) -> Vec<(u64, std::sync::Arc<FutureLoc>)> {
    let want = format!("async fn {function}");
    image
        .symbols_named(|n| {
            n == "tokio::runtime::task::raw::poll"
                || n.starts_with("tokio::runtime::task::raw::poll::<")
        })
        .filter_map(|s| Some((s.addr, index.future_of(s.addr)?)))
        .filter(|(_, f)| f.type_name == want)
        .collect()
}

/// This process's resident set size (0 when unknown).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

const HEADER: u64 = 0x7f00_0000_1000;

#[test]
fn never_answered_is_suspended_at_its_oneshot_await() {
    let Some(image) = fixture("tokio-latest-debug2") else {
        return;
    };
    let rss = rss_kib();
    let t = Instant::now();
    let mut index = AwaitIndex::new(&image).expect("debug2 fixture has type info");
    let built = t.elapsed();

    let t = Instant::now();
    let polls: Vec<u64> = image
        .symbols_named(|n| n == "tokio::runtime::task::raw::poll")
        .map(|s| s.addr)
        .collect();
    assert!(polls.len() >= 20, "raw::poll symbols: {}", polls.len());
    let resolved = polls
        .iter()
        .filter(|&&p| index.future_of(p).is_some())
        .count();
    let all = t.elapsed();
    eprintln!(
        "index built in {built:?}; {resolved}/{} raw::poll futures resolved in {all:?}; RSS +{} KiB",
        polls.len(),
        rss_kib().saturating_sub(rss)
    );
    // every task of the fixture is an async fn or block
    assert!(
        resolved * 10 >= polls.len() * 9,
        "{resolved}/{}",
        polls.len()
    );

    // multi_thread and current_thread instances
    let found = futures_of(&mut index, &image, "tokio_fixture::leaks::never_answered");
    assert_eq!(
        found.len(),
        2,
        "{:?}",
        found.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    for (poll, fut) in found {
        assert!(fut.is_async());
        // Cell.core at 0x20, Core { scheduler, task_id, stage }, Stage::Running.__0 at 0x08
        assert!(
            fut.offset > 0x20 && fut.offset < 0x100,
            "{poll:#x}: future at {:#x}",
            fut.offset
        );
        let mut mem = vec![0u8; fut.offset as usize + 0x20];
        // `__state` is at 0x19 of `never_answered::{async_fn_env#0}`: 3 is Suspend0
        mem[fut.offset as usize + 0x19] = 3;
        let frames = index
            .suspended_at(&fut, HEADER, &mut reader(HEADER, &mem))
            .expect("suspended");
        assert_eq!(frames.len(), 1, "{frames:?}");
        let f: &AwaitFrame = &frames[0];
        assert_eq!(f.function, "tokio_fixture::leaks::never_answered");
        assert!(f.file.ends_with("tokio-src/leaks.rs"), "{}", f.file);
        assert_eq!(f.line, 24, "`reply.await.ok()` is leaks.rs:24");
        assert_eq!(f.awaiting, "tokio::sync::oneshot::Receiver<u64>");

        // Unresumed and Returned are not suspended
        for state in [0u8, 1] {
            mem[fut.offset as usize + 0x19] = state;
            assert_eq!(
                index.suspended_at(&fut, HEADER, &mut reader(HEADER, &mem)),
                None
            );
        }
        // a finished task is not decoded: `Stage<T>` has a u32 discriminant at its start, 8
        // bytes before the future (Running = 0, Finished = 1)
        mem[fut.offset as usize + 0x19] = 3;
        assert!(index
            .suspended_at(&fut, HEADER, &mut reader(HEADER, &mem))
            .is_some());
        mem[fut.offset as usize - 8] = 1;
        assert_eq!(
            index.suspended_at(&fut, HEADER, &mut reader(HEADER, &mem)),
            None
        );
        // unreadable memory
        assert_eq!(index.suspended_at(&fut, HEADER, &mut |_, _| false), None);
    }
}

/// A nested async fn: `recv_no_sender` awaits tokio's `Receiver::recv`, itself suspended in a
/// `poll_fn`.
#[test]
fn recv_no_sender_is_followed_into_tokio_recv() {
    let Some(image) = fixture("tokio-latest-debug2") else {
        return;
    };
    let mut index = AwaitIndex::new(&image).expect("debug2 fixture has type info");
    let found = futures_of(&mut index, &image, "tokio_fixture::leaks::recv_no_sender");
    assert_eq!(found.len(), 2);
    for (_, fut) in found {
        let at = fut.offset as usize;
        let mut mem = vec![0u8; at + 0x40];
        // outer `__state` at 0x30 (Suspend0); its `__awaitee` (recv's state machine) at 0x18,
        // whose `__state` is at 0x10 (Suspend0)
        mem[at + 0x30] = 3;
        mem[at + 0x18 + 0x10] = 3;
        let frames = index
            .suspended_at(&fut, HEADER, &mut reader(HEADER, &mem))
            .expect("suspended");
        let got: Vec<(&str, u32, &str)> = frames
            .iter()
            .map(|f| (f.function.as_str(), f.line, f.awaiting.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "tokio_fixture::leaks::recv_no_sender",
                    33,
                    "async fn tokio::sync::mpsc::bounded::{impl#0}::recv"
                ),
                (
                    "tokio::sync::mpsc::bounded::{impl#0}::recv",
                    245,
                    "core::future::poll_fn::PollFn<tokio::sync::mpsc::bounded::{impl#0}::recv::{async_fn#0}::{closure_env#0}<u64>>"
                ),
            ]
        );
        assert!(
            frames[1]
                .file
                .ends_with("tokio-1.54.1/src/sync/mpsc/bounded.rs"),
            "{}",
            frames[1].file
        );
        // the inner state machine not started yet: only the outer frame
        mem[at + 0x28] = 0;
        let frames = index
            .suspended_at(&fut, HEADER, &mut reader(HEADER, &mem))
            .expect("suspended");
        assert_eq!(frames.len(), 1);
    }
}

/// A small deterministic generator (xorshift).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Corrupted DWARF and random task memory: no panic, frames bounded.
#[test]
fn survives_corrupt_dwarf_and_random_memory() {
    use object::{Object, ObjectSection};
    let Some(image) = fixture("tokio-latest-debug2") else {
        return;
    };
    let polls: Vec<u64> = image
        .symbols_named(|n| n == "tokio::runtime::task::raw::poll")
        .map(|s| s.addr)
        .collect();
    let (start, len) = {
        let file = object::File::parse(image.data()).expect("elf");
        let info = file.section_by_name(".debug_info").expect(".debug_info");
        let (off, size) = info.file_range().expect("in file");
        (off as usize, size as usize)
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..4 {
        let mut data = image.data().to_vec();
        for _ in 0..200 * (round + 1) {
            let at = start + (next(&mut seed) as usize % len);
            data[at] = next(&mut seed) as u8;
        }
        let corrupt = ElfImage::from_vec(data).expect("still an ELF");
        let Some(mut index) = AwaitIndex::new(&corrupt) else {
            continue;
        };
        let mut resolved = 0;
        for &p in &polls {
            let Some(fut) = index.future_of(p) else {
                continue;
            };
            resolved += 1;
            let mut rng = next(&mut seed);
            let mut random = |_: u64, buf: &mut [u8]| {
                for b in buf.iter_mut() {
                    *b = next(&mut rng) as u8;
                }
                true
            };
            for _ in 0..16 {
                if let Some(frames) = index.suspended_at(&fut, HEADER, &mut random) {
                    assert!(!frames.is_empty() && frames.len() <= 8);
                }
            }
        }
        eprintln!(
            "round {round}: {resolved}/{} futures resolved from corrupt DWARF",
            polls.len()
        );
    }
}

#[test]
fn no_type_info_is_none() {
    for name in ["tokio-latest", "tokio-latest-debuginfo"] {
        let Some(image) = fixture(name) else { continue };
        assert!(AwaitIndex::new(&image).is_none(), "{name}");
    }
}
