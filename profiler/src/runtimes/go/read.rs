//! A census of a Go process's goroutines read from outside, with zero cost inside the target:
//! runtime.allgs (every g ever created; g's are never freed) read with process_vm_readv.
use anyhow::{bail, Result};

use crate::target::memory::Memory;

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
/// g.stack.lo and g.stack.hi: the bottom and top of the goroutine's stack (g.stack is the first
/// field).
const STACK_LO_OFFSET: u64 = 0;
const STACK_HI_OFFSET: u64 = 8;
/// Go's largest goroutine stack (runtime.maxstacksize on 64-bit): a larger span is not a stack.
const MAX_STACK_BYTES: u64 = 1 << 30;

/// The most bytes of one g the census reads: a g is about 400-450 bytes in every Go release, so
/// a field past this comes from a hostile or misread layout.
pub const MAX_G_SPAN: u64 = 4096;

impl GLayout {
    /// Bytes read per g: up to the end of its last field. None when a field lies past
    /// [`MAX_G_SPAN`] (absurd offsets from a binary's DWARF).
    pub fn span(&self) -> Option<usize> {
        let last = [self.atomicstatus, self.goid, self.waitsince, self.waitreason, self.gopc, self.startpc, self.sched.checked_add(8)?]
            .into_iter()
            .max()?;
        let span = last.checked_add(8)?;
        (span <= MAX_G_SPAN).then_some(span as usize)
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
    /// `_Gdeadextra` (Go 1.26+): a dead g kept for an extra M (cgo callbacks), no goroutine.
    pub const DEAD_EXTRA: u32 = 11;

    /// A g of this (masked) status is a goroutine: neither dead nor idle (a freed g waiting for
    /// reuse).
    pub fn is_live(status: u32) -> bool {
        !matches!(status, DEAD | IDLE | DEAD_EXTRA)
    }
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
    pub stack_lo: u64,
    pub stack_hi: u64,
}

impl Goroutine {
    /// Neither dead nor idle (a freed g waiting for reuse).
    pub fn is_live(&self) -> bool {
        status::is_live(self.status)
    }

    /// Bytes of its stack (`g.stack.hi - g.stack.lo`), when the two read as a stack.
    pub fn stack_bytes(&self) -> Option<u64> {
        self.stack_hi.checked_sub(self.stack_lo).filter(|&n| n > 0 && n <= MAX_STACK_BYTES)
    }
}

/// Upper bound on goroutines read in one census (a guard against a torn or hostile slice header):
/// with what is kept per g (72 bytes) a census holds at most about 300 MB.
pub const MAX_GS: u64 = 4_000_000;
/// g pointers (and then gs) read per batch: only one batch of raw bytes is held at a time.
const BATCH: usize = 1024;

fn u64_at(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    b.get(o..o + 8).map_or(0, |w| u64::from_ne_bytes(w.try_into().unwrap()))
}

/// Reads the gs of the process. With `skip_dead`, first each g's status word alone (4 bytes; most
/// gs of a program that starts and ends goroutines flat out are dead, kept in allgs for reuse),
/// then the fields of the others only; without it (most gs live), every g's fields at once. A g
/// that died between the two reads is still returned: filter with `is_live`. Also the number of
/// gs in allgs.
pub fn read_goroutines(mem: &dyn Memory, at: AllgsAddr, layout: &GLayout, skip_dead: bool) -> Result<(Vec<Goroutine>, u64)> {
    let Some(span) = layout.span() else {
        bail!("the Go g layout puts a field past {MAX_G_SPAN} bytes: this binary's DWARF or version table is not believable");
    };
    let (ptr, len) = match at {
        AllgsAddr::Slice(a) => (mem.read_u64(a)?, mem.read_u64(a.wrapping_add(8))?),
        AllgsAddr::PtrLen { ptr, len } => (mem.read_u64(ptr)?, mem.read_u64(len)?),
    };
    if len == 0 {
        return Ok((Vec::new(), 0));
    }
    if ptr == 0 || len > MAX_GS || ptr.checked_add(len * 8).is_none() {
        bail!("runtime.allgs looks torn (ptr {ptr:#x}, len {len}); is this the right Go version table?");
    }
    let mut out = Vec::with_capacity(len.min(1 << 16) as usize);
    let mut gptrs = vec![0u8; BATCH * 8];
    let mut i = 0u64;
    while i < len {
        let n = (len - i).min(BATCH as u64) as usize;
        let buf = &mut gptrs[..n * 8];
        mem.read(ptr + i * 8, buf)?;
        let addrs: Vec<u64> = buf.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
        let live: Vec<u64> = if skip_dead {
            let status_at: Vec<u64> = addrs.iter().map(|a| a.wrapping_add(layout.atomicstatus)).collect();
            addrs
                .iter()
                .zip(mem.read_many(&status_at, 4))
                .filter_map(|(&a, w)| {
                    status::is_live(u32::from_ne_bytes(w?[..4].try_into().unwrap()) & !0x1000).then_some(a)
                })
                .collect()
        } else {
            addrs
        };
        for b in mem.read_many(&live, span).into_iter().flatten() {
            out.push(Goroutine {
                goid: u64_at(&b, layout.goid),
                status: (u64_at(&b, layout.atomicstatus) as u32) & !0x1000,
                waitreason: b[layout.waitreason as usize],
                waitsince: u64_at(&b, layout.waitsince) as i64,
                gopc: u64_at(&b, layout.gopc),
                startpc: u64_at(&b, layout.startpc),
                sched_sp: u64_at(&b, layout.sched),
                sched_pc: u64_at(&b, layout.sched + 8),
                stack_lo: u64_at(&b, STACK_LO_OFFSET),
                stack_hi: u64_at(&b, STACK_HI_OFFSET),
            });
        }
        i += n as u64;
    }
    Ok((out, len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dead_and_dead_extra_gs_are_not_goroutines() {
        let g = |status| Goroutine { goid: 1, status, waitreason: 0, waitsince: 0, gopc: 0, startpc: 0, sched_sp: 0, sched_pc: 0, stack_lo: 0, stack_hi: 0 };
        assert!(g(status::WAITING).is_live() && g(2).is_live());
        assert!(!g(status::DEAD).is_live() && !g(status::IDLE).is_live() && !g(status::DEAD_EXTRA).is_live(), "_Gdeadextra (Go 1.26+)");
    }

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
        let me = crate::target::memory::Process::new(crate::target::Space::Live(std::process::id()), Default::default());
        let got = read_goroutines(&me, AllgsAddr::Slice(slice.as_ptr() as u64), &layout, false).unwrap().0;
        assert_eq!(got.len(), 3, "every g, the dead one too");
        assert!(!got[2].is_live());
        let got = read_goroutines(&me, AllgsAddr::Slice(slice.as_ptr() as u64), &layout, true).unwrap().0;
        assert_eq!(got.len(), 2, "the dead g is skipped after its status word");
        assert_eq!(got[0].goid, 100);
        assert_eq!(got[1].status, status::WAITING, "_Gscan is masked");
        assert!(got[0].is_live() && got[1].is_live());
        assert_eq!(got[1].gopc, 0x40_1001);
        assert_eq!(got[0].waitreason, 14);
    }

    /// Field offsets from a hostile binary's DWARF used to size the read per g (times 1024 per
    /// batch) without bound: an abort on allocation. They are refused now.
    #[test]
    fn absurd_field_offsets_are_refused_not_allocated() {
        let layout = GLayout { atomicstatus: 144, goid: 1 << 40, waitsince: 168, waitreason: 176, gopc: 296, startpc: 312, sched: SCHED_OFFSET };
        assert_eq!(layout.span(), None);
        let wrap = GLayout { sched: u64::MAX - 4, ..layout };
        assert_eq!(wrap.span(), None);
        let mut m = crate::target::memory::FakeMemory::new();
        m.map(0x1000, [0x2000u64, 3, 3].iter().flat_map(|w| w.to_ne_bytes()).collect());
        let err = read_goroutines(&m, AllgsAddr::Slice(0x1000), &layout, true).unwrap_err();
        assert!(err.to_string().contains("not believable"), "{err}");
    }

    /// allglen read from the target was accepted up to 10 M and every g's bytes kept at once.
    #[test]
    fn a_huge_allglen_is_refused() {
        let layout = GLayout { atomicstatus: 144, goid: 152, waitsince: 168, waitreason: 176, gopc: 296, startpc: 312, sched: SCHED_OFFSET };
        let mut m = crate::target::memory::FakeMemory::new();
        m.map(0x1000, [0x2000u64, 9_000_000, 9_000_000].iter().flat_map(|w| w.to_ne_bytes()).collect());
        let err = read_goroutines(&m, AllgsAddr::Slice(0x1000), &layout, true).unwrap_err();
        assert!(err.to_string().contains("torn"), "{err}");
        // within the bound, over fake memory: garbage pointers give no goroutines, no panic
        m.map(0x1000, [0x2000u64, 5000, 5000].iter().flat_map(|w| w.to_ne_bytes()).collect());
        m.map(0x2000, (0..5000u64).flat_map(|i| ((i + 1) * 7919 << 32).to_ne_bytes()).collect());
        assert!(read_goroutines(&m, AllgsAddr::Slice(0x1000), &layout, true).unwrap().0.is_empty());
    }
}
