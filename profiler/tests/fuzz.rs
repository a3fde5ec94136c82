//! Fuzzing the parsers that read other people's binaries, memory and files: every target runs
//! for a bounded time (`LEAKPROF_FUZZ_SECS`, 15 s by default) on inputs mutated from its seeds
//! (the fixture binaries, and the corpus kept in `profiler/tests/fuzz/<target>/seeds.txt`, one
//! input per line or `---`-separated block). A panic fails the test and saves the input under
//! `target/fuzz-failures/` to replay. No root needed.
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use leakprof::elf::ElfImage;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn budget() -> Duration {
    let secs = std::env::var("LEAKPROF_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15.0);
    Duration::from_secs_f64(secs)
}

/// One mutation of a seed: overwrite bytes, insert bytes, truncate.
#[derive(Debug, Clone)]
struct Mutation {
    seed: usize,
    writes: Vec<(usize, u8)>,
    insert: Option<(usize, Vec<u8>)>,
    truncate: Option<usize>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        any::<usize>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..24),
        proptest::option::of((any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16))),
        proptest::option::weighted(0.1, any::<usize>()),
    )
        .prop_map(|(seed, writes, insert, truncate)| Mutation { seed, writes, insert, truncate })
}

fn apply(seeds: &[Vec<u8>], m: &Mutation) -> Vec<u8> {
    let mut b = seeds[m.seed % seeds.len()].clone();
    if b.is_empty() {
        return m.writes.iter().map(|w| w.1).collect();
    }
    // writes cluster in the first 64 KiB, where headers and tables start, half of the time
    for &(at, v) in &m.writes {
        let n = if at % 2 == 0 { b.len().min(1 << 16) } else { b.len() };
        b[at % n] = v;
    }
    if let Some((at, bytes)) = &m.insert {
        let at = at % (b.len() + 1);
        b.splice(at..at, bytes.iter().copied());
    }
    if let Some(t) = m.truncate {
        b.truncate(t % (b.len() + 1));
    }
    b
}

/// Runs `f` on mutated seeds until the time budget is spent; a panic fails with the input saved.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, f: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut runner = TestRunner::default();
    let strategy = mutation();
    let (t0, mut runs) = (Instant::now(), 0u64);
    // the seeds themselves first
    for s in &seeds {
        check(name, s, &f);
    }
    while t0.elapsed() < budget() {
        let m = strategy.new_tree(&mut runner).expect("a mutation").current();
        check(name, &apply(&seeds, &m), &f);
        runs += 1;
    }
    eprintln!("{name}: {runs} mutated inputs in {:.1} s, no panic", t0.elapsed().as_secs_f64());
    assert!(runs > 0, "{name}: the budget allowed no run");
}

fn check(name: &str, input: &[u8], f: &impl Fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}-{:016x}", fxhash(input)));
        std::fs::write(&file, input).unwrap();
        panic!("{name}: panicked on the input saved in {}", file.display());
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

/// The corpus kept in the repository for `target`: lines, or `---`-separated blocks.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(target).join("seeds.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if text.contains("\n---\n") {
        text.split("\n---\n").map(|s| s.as_bytes().to_vec()).collect()
    } else {
        text.lines().map(|s| s.as_bytes().to_vec()).collect()
    }
}

fn binaries(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| std::fs::read(common::fixture(n)).unwrap()).collect()
}

#[test]
fn fuzz_demangled_name_parsing() {
    use leakprof::elf::names::*;
    fuzz("names", corpus("names"), |b| {
        let s = String::from_utf8_lossy(b);
        let _ = split_qualified(&s);
        let _ = strip_generics(&s);
        let _ = plain_path(&s);
        let _ = turbofish_args(&s);
        let _ = crate_of(&s);
        let _ = leakprof::elf::symbols::demangle(&s);
        let _ = leakprof::runtimes::tokio::probes::plan::classify(&s);
    });
}

#[test]
fn fuzz_elf_symbols_and_tokio_planning() {
    let seeds = binaries(&["tokio-latest", "tokio-latest-stripped", "plain"]);
    fuzz("elf", seeds, |b| {
        let Ok(img) = ElfImage::parse(b) else { return };
        let _ = img.symbol_at(0x1000);
        let _ = img.read_pointer(0x2000);
        let _ = img.data_symbol(&["NEXT_ID"]);
        let _ = leakprof::runtimes::tokio::probes::plan::plan(&img, img.data());
        let _ = leakprof::elf::debug_file::candidates(img.data(), Path::new("/x/app"), Path::new("/usr/lib/debug"));
    });
}

#[test]
fn fuzz_go_pclntab_buildinfo_and_allgs_locators() {
    use leakprof::runtimes::go::{allgs, buildinfo, locate, pclntab::Pclntab};
    let seeds = binaries(&["go-latest-stripped", "go1.19-pie"]);
    fuzz("go", seeds, |b| {
        let _ = buildinfo::go_version(b);
        let _ = Pclntab::parse(b);
        let Ok(img) = ElfImage::parse(b) else { return };
        let _ = buildinfo::go_version_image(&img);
        let _ = allgs::by_symbols(&img);
        if let Some((vaddr, _)) = locate::pclntab_bytes(&img) {
            if let Some(p) = Pclntab::from_image(&img) {
                let _ = locate::text_start(&img, &p, vaddr);
                let refs = allgs::allgadd_data_refs(&img, &p);
                let _ = allgs::pick_slice_static(&refs);
                let _ = p.func_for_pc(p.text_start() + 0x40);
            }
        }
    });
}

#[test]
fn fuzz_eh_frame_unwinding_of_arbitrary_stack_bytes() {
    use leakprof::unwind::{Regs, Unwinder};
    let image = ElfImage::open(common::fixture("tokio-latest")).unwrap();
    let mut unwinder = Unwinder::new(&image, 0x5555_0000_0000);
    let text = image.symbols().iter().map(|s| s.addr).collect::<Vec<u64>>();
    // stack bytes: random, or pointers into the code
    let seeds: Vec<Vec<u8>> = text.chunks(64).take(64).map(|c| c.iter().flat_map(|a| (a + 0x5555_0000_0000).to_le_bytes()).collect()).collect();
    let cell = std::cell::RefCell::new(&mut unwinder);
    fuzz("unwind", seeds, |b| {
        let ip = b.get(..8).map_or(0, |x| u64::from_le_bytes(x.try_into().unwrap()));
        let regs = Regs { ip, sp: 0x7ffd_0000_0000, bp: 0x7ffd_0000_0100 };
        let frames = cell.borrow_mut().unwind(regs, b, 64);
        assert!(frames.len() <= 64);
    });
}

#[test]
fn fuzz_config_file() {
    let dir = std::env::temp_dir().join(format!("leakprof-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("c.toml");
    fuzz("config", corpus("config"), |b| {
        std::fs::write(&path, b).unwrap();
        let _ = leakprof::ignore::IgnoreRules::new(&[], &[], Some(&path));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fuzz_recorded_series_reader() {
    fuzz("record", corpus("record"), |b| {
        let _ = leakprof::record::parse(&String::from_utf8_lossy(b));
    });
}
