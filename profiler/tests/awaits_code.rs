//! The machine-code await decoder against the fixtures (no root needed).
mod common;

use leakprof::runtimes::tokio::awaits::code::CodeIndex;
use common::fixture_image as fixture;

#[test]
fn explore() {
    let Some(image) = fixture(&std::env::var("FX").unwrap_or("tokio-latest".into())) else { return };
    let mut index = CodeIndex::new(&image);
    let polls: Vec<_> = image.symbols_named(|n| n == "tokio::runtime::task::raw::poll" || n.starts_with("tokio::runtime::task::raw::poll::<")).map(|s| s.addr).collect();
    let mut found = 0;
    for p in &polls {
        let r = index.root(*p);
        if let Some(r) = r {
            found += 1;
            let (_, ms) = index.machines(r.func).unwrap();
            let m = &ms.list[r.machine];
            let name = image.symbols_at_addr(r.func).first().map(|s| s.name.clone());
            eprintln!("{p:#x} -> {:?} base {:#x} state {:?} at {} awaits {:?}", name, r.base, m.at, m.location, m.awaits.values().map(|a| a.next).collect::<Vec<_>>());
        } else {
            eprintln!("{p:#x} -> none");
        }
    }
    eprintln!("{found} of {}", polls.len());
}

#[test]
fn explore_one() {
    let Some(image) = fixture("tokio-latest") else { return };
    let mut index = CodeIndex::new(&image);
    let ex = leakprof::elf::extents::Extents::from_image(&image);
    eprintln!("fdes {} at {:?}", ex.len(), ex.function_at(&image, 0x80a80));
    let (s, e) = ex.function_at(&image, 0x80a80).unwrap();
    let flow = leakprof::runtimes::tokio::awaits::code::flow::Flow::analyse(&image, s, e).unwrap();
    eprintln!("insns {} tables {:?} calls {:?}", flow.insns.len(), flow.tables, &flow.calls[..flow.calls.len().min(8)]);
    eprintln!("{:?}", index.machines(0x80a80));
}

#[test]
fn explore_flow() {
    let Some(image) = fixture(&std::env::var("FX").unwrap_or("tokio-latest".into())) else { return };
    let addr = u64::from_str_radix(&std::env::var("ADDR").unwrap_or("5c300".into()), 16).unwrap();
    let ex = leakprof::elf::extents::Extents::from_image(&image);
    let (s, e) = ex.function_at(&image, addr).unwrap();
    let flow = leakprof::runtimes::tokio::awaits::code::flow::Flow::analyse(&image, s, e).unwrap();
    for c in &flow.calls { eprintln!("call {:#x} -> {:?} rdi {:?}", c.ip, c.callee.map(|c| format!("{c:#x}")), c.rdi); }
    for ip in std::env::var("IPS").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let ip = u64::from_str_radix(ip, 16).unwrap();
        eprintln!("{ip:#x}: {:?}", flow.regs_at(ip));
    }
}
