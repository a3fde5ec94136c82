//! Prints the tokio probe plan of a binary and the future name behind every `raw::poll`.
//!
//! `cargo run -p profiler --example plan -- path/to/binary`

use anyhow::Context as _;
use leakprof::elf::ElfImage;
use leakprof::runtimes::tokio::probes::plan::{classify, plan, Role};
use leakprof::runtimes::tokio::naming::code::scan_function;
use leakprof::runtimes::tokio::naming::symbolize::Symbolizer;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: plan <binary>")?;
    let started = std::time::Instant::now();
    let image = ElfImage::open(&path)?;
    println!(
        "{path}: {} function symbols, pie={}, symtab={}, debug_info={} (parsed in {:?})",
        image.symbols().len(),
        image.is_pie(),
        image.has_symtab(),
        image.has_debug_info(),
        started.elapsed()
    );
    match plan(&image, image.data()) {
        Ok(p) => {
            println!("tokio {:?}, birth mode {:?}", p.version, p.birth_mode);
            for (kind, points) in [("birth", &p.birth), ("finish", &p.finish)] {
                println!("{kind}: {} point(s)", points.len());
                for pt in points {
                    println!(
                        "  {:#x} (file {:#x}) {}",
                        pt.vaddr, pt.file_offset, pt.symbol
                    );
                }
            }
        }
        Err(e) => println!("no plan: {e}"),
    }
    let mut polls: Vec<u64> = image
        .symbols()
        .iter()
        .filter(|s| classify(&s.name) == Some(Role::RawPoll))
        .map(|s| s.addr)
        .collect();
    polls.dedup();
    let mut symbolizer = Symbolizer::new(image);
    println!(
        "{} raw::poll address(es), line table: {}",
        polls.len(),
        symbolizer.lines().is_some()
    );
    for addr in polls {
        let t = std::time::Instant::now();
        let named = symbolizer.name_future(addr).clone();
        let body = named
            .name
            .body_vaddr
            .map(|b| format!("{b:#x}"))
            .unwrap_or_else(|| "-".into());
        let loc = named
            .location
            .map(|(f, l)| format!("{f}:{l}"))
            .or(named.name.location.map(|l| format!("{l} (panic location)")))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {addr:#x} {} [body {body}] at {loc} ({:?})",
            named.name.function,
            t.elapsed()
        );
        // With DWARF, the name of Harness::poll (raw::poll's jump target) carries T: a cross-check.
        let harness = scan_function(symbolizer.image(), addr)
            .targets
            .first()
            .copied();
        let dwarf = harness.and_then(|h| symbolizer.lines()?.frames(h).pop()?.function);
        if let Some(dwarf) = dwarf {
            println!("      dwarf: {dwarf}");
        }
    }
    Ok(())
}
