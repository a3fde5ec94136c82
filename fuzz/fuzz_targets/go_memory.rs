//! The Go census over a fake address space: runtime.allgs and the g structs read with a layout
//! from the input (offsets past 4 KiB are refused), then parked goroutines' stacks unwound
//! through a small hand-made pclntab (optionally corrupted by the input) and their own lines.
#![no_main]
use std::sync::OnceLock;

use leakprof::runtimes::go::{
    pclntab::Pclntab,
    read::{read_goroutines, AllgsAddr, GLayout, SCHED_OFFSET},
    stack,
};
use leakprof::target::memory::FakeMemory;
use leakprof_fuzz::{go_entry, pclntab, Input, GO_FUNCS};
use libfuzzer_sys::fuzz_target;

const ALLGS: u64 = 0x10_0000;
const GPTRS: u64 = 0x20_0000;
const GS: u64 = 0x30_0000;
const G_SIZE: u64 = 0x200;
const STACK: u64 = 0xc000_0000;

fn table() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| pclntab(GO_FUNCS))
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let layout = if mode & 1 == 0 {
        GLayout { atomicstatus: 144, goid: 152, waitsince: 168, waitreason: 176, gopc: 296, startpc: 312, sched: SCHED_OFFSET }
    } else {
        let mut o = || u64::from(inp.u16() % 5120);
        GLayout { atomicstatus: o(), goid: o(), waitsince: o(), waitreason: o(), gopc: o(), startpc: o(), sched: o() }
    };
    // a table, possibly with a few bytes overwritten
    let mut bytes = table().to_vec();
    if mode & 2 != 0 {
        for _ in 0..(inp.u8() % 8) {
            let at = inp.u16() as usize % bytes.len();
            bytes[at] = inp.u8();
        }
    }
    let bias = if mode & 4 != 0 { 0x5555_0000_0000 } else { 0 };
    // allgs: (ptr, len, cap) or the allglen pair; len from the input (huge when asked)
    let n = u64::from(inp.u8() % 32);
    let len = if mode & 8 != 0 { inp.u64() } else { n };
    let mut mem = FakeMemory::new();
    let at = if mode & 16 != 0 {
        mem.map(ALLGS, GPTRS.to_ne_bytes().to_vec());
        mem.map(ALLGS + 0x100, len.to_ne_bytes().to_vec());
        AllgsAddr::PtrLen { ptr: ALLGS, len: ALLGS + 0x100 }
    } else {
        mem.map(ALLGS, [GPTRS, len, len].iter().flat_map(|w| w.to_ne_bytes()).collect());
        AllgsAddr::Slice(ALLGS)
    };
    // g pointers: most to the g array, some from the input
    let ptrs: Vec<u64> = (0..n).map(|i| if inp.u8() & 7 == 7 { inp.u64() } else { GS + i * G_SIZE }).collect();
    mem.map(GPTRS, ptrs.iter().flat_map(|w| w.to_ne_bytes()).collect());
    // the gs: bytes from the input, each with a plausible stack in the stack region
    let mut gs = Vec::new();
    for _ in 0..n {
        let mut g = inp.chunk().to_vec();
        g.resize(G_SIZE as usize, 0);
        gs.extend_from_slice(&g);
    }
    mem.map(GS, gs);
    // one stack region: its words are the input's (frames' return addresses)
    let stack_bytes = inp.chunk().to_vec();
    let stack_len = stack_bytes.len() as u64;
    mem.map(STACK, stack_bytes);
    let sp = STACK + u64::from(inp.u8()) * 8;
    let pc = go_entry(inp.u8() as usize % GO_FUNCS.len()) + u64::from(inp.u8() % 0x20) + bias;
    let hi = STACK + stack_len.max(u64::from(inp.u16()));
    let Some(p) = Pclntab::parse(&bytes) else {
        let _ = read_goroutines(&mem, at, &layout, true);
        return;
    };
    let mut stacks = vec![(sp, pc, hi)];
    if let Ok((gs, _)) = read_goroutines(&mem, at, &layout, false) {
        stacks.extend(gs.iter().filter(|g| g.is_live()).take(8).map(|g| (g.sched_sp, g.sched_pc, g.stack_hi)));
    }
    for (sp, pc, hi) in stacks {
        let frames = stack::unwind(&mem, &p, bias, sp, pc, hi);
        assert!(frames.len() <= 64);
        if let Some(i) = stack::stuck_frame(&frames) {
            let _ = stack::own_line(&p, frames[i].1);
        }
    }
});
