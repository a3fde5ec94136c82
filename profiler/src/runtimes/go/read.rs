//! A census of a Go process's goroutines read from outside, with zero cost inside the target:
//! runtime.allgs (every g ever created; g's are never freed) read with process_vm_readv.
use anyhow::{bail, Result};

use crate::target::memory::{read_bytes, read_many};

/// Where the g structs' fields are (bytes from the start of a g).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GLayout {
    pub atomicstatus: u64,
    pub goid: u64,
    pub waitsince: u64,
    pub waitreason: u64,
    pub gopc: u64,
    pub startpc: u64,
    /// g.sched, the gobuf a parked goroutine's sp (+0) and pc (+8) are saved in.
    pub sched: u64,
}

/// Where g.sched is in every Go version leakprof knows (checked against each fixture's DWARF):
/// after stack (16), stackguard0, stackguard1, _panic, _defer and m.
pub const SCHED_OFFSET: u64 = 56;
/// g.stack.hi: the top of the goroutine's stack (g.stack is the first field).
const STACK_HI_OFFSET: u64 = 8;

impl GLayout {
    fn span(&self) -> usize {
        [self.atomicstatus, self.goid, self.waitsince, self.waitreason, self.gopc, self.startpc, self.sched + 8]
            .into_iter()
            .max()
            .unwrap_or(0) as usize
            + 8
    }
}

/// Where allgs is, as runtime addresses: a slice header (ptr, len, cap), or the pair
/// runtime.allgptr / runtime.allglen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllgsAddr {
    Slice(u64),
    PtrLen { ptr: u64, len: u64 },
}

/// Goroutine status values (runtime2.go), after masking _Gscan (0x1000).
pub mod status {
    pub const IDLE: u32 = 0;
    pub const WAITING: u32 = 4;
    pub const DEAD: u32 = 6;
}

/// One goroutine as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goroutine {
    pub goid: u64,
    pub status: u32,
    pub waitreason: u8,
    /// Runtime nanotime when it blocked (0 when unknown/not tracked).
    pub waitsince: i64,
    /// Return address of the `go` statement's call to runtime.newproc (runtime address).
    pub gopc: u64,
    /// The goroutine's entry function (runtime address).
    pub startpc: u64,
    /// Saved sp and pc of a parked goroutine (g.sched), and the top of its stack.
    pub sched_sp: u64,
    pub sched_pc: u64,
    pub stack_hi: u64,
}

impl Goroutine {
    /// Neither dead nor idle (a freed g waiting for reuse).
    pub fn is_live(&self) -> bool {
        self.status != status::DEAD && self.status != status::IDLE
    }
}

/// Upper bound on goroutines read in one census (a guard against a torn slice header).
const MAX_GS: u64 = 10_000_000;

fn u64_at(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    u64::from_ne_bytes(b[o..o + 8].try_into().unwrap())
}

/// Reads every g of the process (including dead ones; filter with `is_live`).
pub fn read_goroutines(pid: u32, at: AllgsAddr, layout: &GLayout) -> Result<Vec<Goroutine>> {
    let mut hdr = [0u8; 16];
    let (ptr, len) = match at {
        AllgsAddr::Slice(a) => {
            read_bytes(pid, a, &mut hdr)?;
            (u64_at(&hdr, 0), u64_at(&hdr, 8))
        }
        AllgsAddr::PtrLen { ptr, len } => {
            read_bytes(pid, ptr, &mut hdr[..8])?;
            read_bytes(pid, len, &mut hdr[8..])?;
            (u64_at(&hdr, 0), u64_at(&hdr, 8))
        }
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr == 0 || len > MAX_GS {
        bail!("runtime.allgs looks torn (ptr {ptr:#x}, len {len}); is this the right Go version table?");
    }
    let mut gptrs = vec![0u8; len as usize * 8];
    read_bytes(pid, ptr, &mut gptrs)?;
    let addrs: Vec<u64> = gptrs.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
    let span = layout.span();
    let mut out = Vec::with_capacity(addrs.len());
    for b in read_many(pid, &addrs, span).into_iter().flatten() {
        out.push(Goroutine {
            goid: u64_at(&b, layout.goid),
            status: (u64_at(&b, layout.atomicstatus) as u32) & !0x1000,
            waitreason: b[layout.waitreason as usize],
            waitsince: u64_at(&b, layout.waitsince) as i64,
            gopc: u64_at(&b, layout.gopc),
            startpc: u64_at(&b, layout.startpc),
            sched_sp: u64_at(&b, layout.sched),
            sched_pc: u64_at(&b, layout.sched + 8),
            stack_hi: u64_at(&b, STACK_HI_OFFSET),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake allgs in our own memory, laid out like the 1.19 g.
    #[test]
    fn reads_a_fake_allgs_from_own_memory() {
        let layout = GLayout { atomicstatus: 144, goid: 152, waitsince: 168, waitreason: 176, gopc: 296, startpc: 312, sched: SCHED_OFFSET };
        let mut gs: Vec<Vec<u8>> = Vec::new();
        for i in 0..3u64 {
            let mut g = vec![0u8; 400];
            g[144..148].copy_from_slice(&(if i == 2 { 6u32 } else { 4u32 | 0x1000 }).to_ne_bytes());
            g[152..160].copy_from_slice(&(100 + i).to_ne_bytes());
            g[176] = 14;
            g[296..304].copy_from_slice(&(0x40_1000 + i).to_ne_bytes());
            g[312..320].copy_from_slice(&0x40_2000u64.to_ne_bytes());
            gs.push(g);
        }
        let ptrs: Vec<u64> = gs.iter().map(|g| g.as_ptr() as u64).collect();
        let slice: [u64; 3] = [ptrs.as_ptr() as u64, 3, 3];
        let got = read_goroutines(std::process::id(), AllgsAddr::Slice(slice.as_ptr() as u64), &layout).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].goid, 100);
        assert_eq!(got[1].status, status::WAITING, "_Gscan is masked");
        assert!(got[0].is_live() && !got[2].is_live());
        assert_eq!(got[1].gopc, 0x40_1001);
        assert_eq!(got[0].waitreason, 14);
    }
}
