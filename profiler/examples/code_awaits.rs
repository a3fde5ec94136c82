//! What the machine-code await decoder costs, per binary: the one-time analysis (every task
//! future found below the `raw::poll` functions: ms, and leakprof's RSS growth), then the decoding
//! of 32 tasks per site on 10 and 100 sites from memory (the reads of a live target come on top:
//! one small `process_vm_readv` per level, see the census line of a report).
//!
//! Usage: cargo run --release -p profiler --example code_awaits -- BIN[=SYMBOLS_FROM] ...
//! (`=SYMBOLS_FROM`: a stripped BIN's `raw::poll` addresses from the unstripped build.)
use std::time::Instant;

use leakprof::elf::ElfImage;
use leakprof::runtimes::tokio::probes::plan;
use leakprof::runtimes::tokio::awaits::code::{CodeIndex, Decoded, Root};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}


/// A task's bytes with every level of its root at its first await (as far as the code says
/// where each lies), for decoding from memory.
fn task_at_first_await(index: &mut CodeIndex, root: Root) -> Vec<u8> {
    let mut mem = vec![0u8; 16 << 10];
    let (mut func, mut machine, mut base) = (root.func, root.machine, root.base);
    for _ in 0..8 {
        let Some((_, ms)) = index.machines(func) else { break };
        let Some(m) = ms.list.get(machine) else { break };
        let Some((&state, a)) = m.awaits.iter().next() else { break };
        let Some(off) = usize::try_from(base + m.at.off).ok().filter(|o| *o < mem.len()) else { break };
        mem[off] = state as u8;
        match a.next {
            leakprof::runtimes::tokio::awaits::code::machine::Next::Inner(j) => machine = j,
            leakprof::runtimes::tokio::awaits::code::machine::Next::Call { callee, arg: Some(arg), .. } => match index.machines(callee) {
                Some((start, c)) if start == callee && c.entry.is_some() => (func, machine, base) = (callee, c.entry.unwrap(), base + arg),
                _ => break,
            },
            _ => break,
        }
    }
    mem
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: code_awaits BIN[=SYMBOLS_FROM] ...");
        std::process::exit(2);
    }
    if std::env::var_os("CODE_AWAITS_ONE").is_none() {
        println!(
            "{:<28} {:>6} {:>7} {:>11} {:>10} {:>16} {:>17}",
            "binary", "polls", "found", "analysis_ms", "rss_mb", "decode_10x32_ms", "decode_100x32_ms"
        );
        // each binary in a process of its own: its RSS growth is its own
        for arg in &args {
            let me = std::env::current_exe().expect("own path");
            let ok = std::process::Command::new(me).arg(arg).env("CODE_AWAITS_ONE", "1").status().is_ok_and(|s| s.success());
            assert!(ok, "{arg} failed");
        }
        return;
    }
    for arg in args {
        let (bin, symbols_from) = arg.split_once('=').map_or((arg.as_str(), None), |(a, b)| (a, Some(b)));
        let image = ElfImage::open(bin).unwrap_or_else(|e| panic!("{bin}: {e}"));
        let polls = match symbols_from {
            Some(s) => plan::raw_polls(&ElfImage::open(s).unwrap_or_else(|e| panic!("{s}: {e}"))),
            None => plan::raw_polls(&image),
        };
        let rss0 = rss_kib();
        let t0 = Instant::now();
        let mut index = CodeIndex::new(&image);
        let roots: Vec<Root> = polls.iter().filter_map(|&p| index.root(p)).collect();
        let analysis_ms = t0.elapsed().as_secs_f64() * 1e3;
        let rss_mb = rss_kib().saturating_sub(rss0) as f64 / 1024.0;
        let mut decode = |sites: usize| -> f64 {
            if roots.is_empty() {
                return f64::NAN;
            }
            let tasks: Vec<(Root, Vec<u8>)> =
                (0..sites).map(|i| roots[i % roots.len()]).map(|r| (r, task_at_first_await(&mut index, r))).collect();
            let t = Instant::now();
            let mut decoded = 0;
            for (root, mem) in &tasks {
                for _ in 0..32 {
                    let mut read = |addr: u64, buf: &mut [u8]| match mem.get(addr as usize..addr as usize + buf.len()) {
                        Some(b) => {
                            buf.copy_from_slice(b);
                            true
                        }
                        None => false,
                    };
                    decoded += usize::from(matches!(index.decode(*root, 0, None, &mut read), Decoded::Levels(_)));
                }
            }
            assert!(decoded > 0, "{bin}: nothing decoded");
            t.elapsed().as_secs_f64() * 1e3
        };
        let (d10, d100) = (decode(10), decode(100));
        let name = std::path::Path::new(bin).file_name().unwrap().to_string_lossy().into_owned();
        println!(
            "{name:<28} {:>6} {:>7} {analysis_ms:>11.1} {rss_mb:>10.1} {d10:>16.3} {d100:>17.3}",
            polls.len(),
            roots.len()
        );
    }
}
