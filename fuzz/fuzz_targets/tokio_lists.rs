//! The tokio census over a fake address space: task headers found by the heap scan, a runtime's
//! owned-task lists discovered from one of them (sharded or one inline list, prev/next either
//! way), and the lists walked. The input first shapes a well-formed runtime (shards, tasks,
//! owner, link order, a second vtable), then overwrites words of it and adds a region of its
//! own bytes, so both the paths of a real runtime and those of a torn or hostile one are met.
//! The blocking pool's queue is looked for behind the handle and read too (the raw region is
//! one of the places a handle word can lead to).
#![no_main]
use leakprof::runtimes::tokio::census::{
    blocking,
    lists::discover,
    mem::Mem,
    scan::{seeds_in, HeapScan, Seed},
    vtables::{VtInfo, Vtables},
    walk::walk,
};
use leakprof_fuzz::{Input, Space};
use libfuzzer_sys::fuzz_target;

const VT: u64 = 0x5000;
const VT2: u64 = 0x5100;
const HANDLE: u64 = 0x10_0000;
const SHARDS: u64 = 0x20_0000;
const CELLS: u64 = 0x40_0000;
const RAW: u64 = 0x80_0000;
const CELL: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let shards = match inp.u8() % 6 {
        0 => None,
        k => Some(1u64 << (k - 1)), // 1..16
    };
    let n = u64::from(inp.u8() % 40);
    let owner = u64::from(inp.u8()) + 1;
    // a second vtable of the shape tokio gives them (scheduler 32..512, id right after, trailer
    // after the id, at most 16 MiB)
    let sched = 32 + 8 * u64::from(inp.u8() % 61);
    let trailer2 = (sched + 16 + 8 * u64::from(inp.u16())).min(16 << 20);
    let vt = Vtables::from_pairs([
        (VT, VtInfo { trailer_offset: 128, scheduler_offset: 32, id_offset: 40 }),
        (VT2, VtInfo { trailer_offset: trailer2, scheduler_offset: sched, id_offset: sched + 8 }),
    ]);
    let swap = flags & 1 != 0;
    let (prev_at, next_at) = if swap { (136, 128) } else { (128, 136) };

    let mut mem = Space::default();
    mem.map(HANDLE, vec![0u8; 4096]);
    mem.map(SHARDS, vec![0u8; 24 * 16]);
    mem.map(CELLS, vec![0u8; (CELL * n.max(1)) as usize]);
    let k = shards.unwrap_or(1);
    mem.put_u64(HANDLE, 1);
    mem.put_u64(HANDLE + 8, 1);
    // the list words: inline in the handle, or a shard array (the list at +8 of each Mutex)
    let list_of = |s: u64| if shards.is_some() { SHARDS + s * 24 + 8 } else { HANDLE + 0x80 };
    if shards.is_some() {
        for (o, v) in [(0x80, SHARDS), (0x88, k), (0x90, 99), (0x98, n), (0xa0, k - 1), (0xa8, owner)] {
            mem.put_u64(HANDLE + o, v);
        }
    } else {
        mem.put_u64(HANDLE + 0x98, owner);
    }
    let headers: Vec<u64> = (0..n).map(|i| CELLS + i * CELL).collect();
    for (i, &h) in headers.iter().enumerate() {
        mem.put_u64(h, (1 << 6) | ((i as u64 % 3 == 1) as u64 * 0b100));
        mem.put_u64(h + 16, VT);
        mem.put_u64(h + 24, owner);
        mem.put_u64(h + 32, HANDLE);
        mem.put_u64(h + 40, i as u64 + 1);
    }
    for s in 0..k {
        // push_front in id order: the head is the newest
        let members: Vec<u64> = headers.iter().enumerate().filter(|(i, _)| (*i as u64 + 1) & (k - 1) == s).map(|(_, &h)| h).rev().collect();
        for (j, &h) in members.iter().enumerate() {
            let prev = if j == 0 { 0 } else { members[j - 1] };
            mem.put_u64(h + prev_at, prev);
            mem.put_u64(h + next_at, members.get(j + 1).copied().unwrap_or(0));
        }
        let (head, tail) = (members.first().copied().unwrap_or(0), members.last().copied().unwrap_or(0));
        let (a, b) = if flags & 2 != 0 { (tail, head) } else { (head, tail) };
        mem.put_u64(list_of(s), a);
        mem.put_u64(list_of(s) + 8, b);
    }
    // the input's own damage: words overwritten anywhere in the runtime, then a raw region
    let patches = inp.u8() % 32;
    for _ in 0..patches {
        let region = [HANDLE, SHARDS, CELLS, RAW][inp.u8() as usize % 4];
        let off = u64::from(inp.u16()) & !7;
        let v = match inp.u8() % 4 {
            0 => inp.u64(),
            1 => VT2,
            2 => CELLS + u64::from(inp.u8()) * CELL,
            _ => u64::from(inp.u8()),
        };
        mem.put_u64(region + off, v);
    }
    let seed_at = inp.u8();
    let max_nodes = u64::from(inp.u16() % 4096);
    let budget = u64::from(inp.u16()) * 16;
    mem.map(RAW, inp.rest().to_vec());

    // seeds: a header of the runtime (or any address), then what the heap scan finds
    let mut seeds = Vec::new();
    let header = headers.get(seed_at as usize).copied().unwrap_or(CELLS + u64::from(seed_at) * 8);
    seeds.push(Seed { header, vtable: if flags & 4 != 0 { VT2 } else { VT }, owner_id: owner });
    let regions: Vec<(u64, u64)> = mem.regions.iter().map(|(&a, b)| (a, a + b.len() as u64)).collect();
    let mut scan = HeapScan::new(regions, None);
    scan.scan(&mut mem, &vt, budget, &|o| o == 0, &mut seeds);
    let _ = scan.done();
    let raw = mem.regions[&RAW].clone();
    seeds_in(&raw, RAW, &vt, &mut seeds);
    for s in seeds.iter().take(6) {
        let Ok(lists) = discover(&mut mem, &vt, s) else { continue };
        assert!(lists.lists.len() as u64 <= 1 << 16);
        let mut out = Vec::new();
        let st = walk(&mut mem, &vt, &lists, max_nodes, &mut out);
        assert!(st.walked <= max_nodes && out.len() as u64 == st.walked);
        let _ = mem.bytes_read();
    }
    // the blocking pool's queue, from the handle (a word of it may point into the raw region)
    mem.put_u64(HANDLE + 0x200, RAW);
    if let Some(q) = blocking::find(&mut mem, &vt, HANDLE) {
        let mut out = Vec::new();
        if let Some(n) = blocking::read(&mut mem, &vt, &q, max_nodes, &mut out) {
            assert!(n <= max_nodes && out.len() as u64 == n);
        }
    }
});
