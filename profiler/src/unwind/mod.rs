//! User-space stack unwinding of a *copied stack window* of another process.
//!
//! At a probe hit the kernel side copies `rip`, `rsp`, `rbp` and the first bytes of the user
//! stack starting at `rsp`. [`Unwinder::unwind`] turns that into return addresses, innermost
//! first, with the executable's DWARF call-frame information (`.eh_frame`, indexed by
//! `.eh_frame_hdr`) through [framehop](https://docs.rs/framehop) — the unwinder samply uses —
//! so release binaries without frame pointers unwind. [`symbolize_frames`] names them.
//!
//! Coverage and limits:
//! - Only the main executable is known to the unwinder. The walk stops at the first return
//!   address outside its executable segments (libc's `start_thread`, a JIT, a `dlopen`ed
//!   library...); frames beyond are lost. For tokio programs the interesting frames (spawn
//!   sites, the runtime) are all in the executable.
//! - The walk stops where the window ends: a frame whose return address or saved registers lie
//!   beyond `sp + len` ends it. Each frame costs its own stack frame size, so a few large frames
//!   (async state machines kept on the stack by `block_on`) can use up a window quickly.
//! - Where CFI has no entry for an address, framehop applies frame-pointer rules; and when the
//!   CFI walk yields nothing past the first frame, [`Unwinder::unwind`] retries with a plain
//!   frame-pointer walk from `regs.bp` (useful only for code built with frame pointers).
//! - Addresses returned are runtime addresses; subtract the load bias for ELF addresses.
//!
//! Seen once with gdb (tokio 1.54 release build, no frame pointers, stacks dumped at the entry of
//! `OwnedTasks::bind_inner`; no command in the repository repeats it): the user's spawning `async fn` is the 4th
//! address and needs a window of 256-1024 bytes; the whole stack up to the thread root is about
//! 7 KiB on a worker thread (17 addresses) and 4.5 KiB from `block_on` on the main thread
//! (12 addresses), so an 8 KiB window holds complete stacks there. The kernel-side copy must not
//! fail as a whole when `rsp + len` passes the end of the stack mapping (copy page by page).

mod fp;
mod module;
mod symbolize;
#[cfg(test)]
mod tests;

use std::ops::Range;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::Unwinder as _;

use crate::elf::ElfImage;

pub use module::CfiSource;
pub use symbolize::{symbolize_frames, Frame};

/// The registers the unwinder needs, as captured at the probe (runtime addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// An unwinder for one executable at one load address. Build it once per target and reuse it:
/// it keeps framehop's module (the unwind sections, not copied) and its unwind-rule cache.
pub struct Unwinder {
    inner: UnwinderX86_64<module::SectionBytes>,
    cache: CacheX86_64,
    /// Runtime ranges of the executable segments, sorted.
    code: Vec<Range<u64>>,
    cfi: CfiSource,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("code", &self.code)
            .field("cfi", &self.cfi)
            .finish_non_exhaustive()
    }
}

impl Unwinder {
    /// An unwinder for `image` mapped with load bias `bias` (runtime address = vaddr + bias).
    pub fn new(image: &ElfImage, bias: u64) -> Unwinder {
        Self::build(image, bias, true)
    }

    fn build(image: &ElfImage, bias: u64, use_hdr: bool) -> Unwinder {
        let layout = module::layout(image, bias, use_hdr);
        let mut inner = UnwinderX86_64::new();
        if let Some(m) = layout.module {
            inner.add_module(m);
        }
        Unwinder {
            inner,
            cache: CacheX86_64::new(),
            code: layout.code,
            cfi: layout.cfi,
        }
    }

    /// Which call-frame information the executable provides (`None`: frame pointers only).
    pub fn cfi(&self) -> CfiSource {
        self.cfi
    }

    /// True when `addr` (runtime) lies in an executable segment of the executable.
    pub fn in_code(&self, addr: u64) -> bool {
        in_ranges(&self.code, addr)
    }

    /// Return addresses (runtime), innermost first, starting with `regs.ip`; `stack` holds the
    /// bytes at `[regs.sp, regs.sp + stack.len())`. Stops at the end of the window, at an
    /// address outside the executable (not included; `regs.ip` always is), where the CFI marks
    /// the outermost frame, or after `max_frames` addresses. Never panics on bad input: garbage
    /// gives a short result.
    pub fn unwind(&mut self, regs: Regs, stack: &[u8], max_frames: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if max_frames == 0 {
            return out;
        }
        out.push(regs.ip);
        if !in_ranges(&self.code, regs.ip) {
            return out;
        }
        let read = |addr: u64| read_window(stack, regs.sp, addr);
        let mut read_stack = |addr: u64| read(addr).ok_or(());
        let mut frames = self.inner.iter_frames(
            regs.ip,
            UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
            &mut self.cache,
            &mut read_stack,
        );
        let _ = frames.next(); // the instruction pointer itself
        while out.len() < max_frames {
            match frames.next() {
                Ok(Some(addr)) if in_ranges(&self.code, addr.address()) => out.push(addr.address()),
                _ => break,
            }
        }
        if out.len() == 1 && regs.bp != 0 {
            let code = &self.code;
            out.extend(fp::walk(
                regs.bp,
                read,
                |a| in_ranges(code, a),
                max_frames - 1,
            ));
        }
        out
    }
}

/// The little-endian u64 at runtime address `addr` of a window that starts at `sp`.
fn read_window(stack: &[u8], sp: u64, addr: u64) -> Option<u64> {
    let off = usize::try_from(addr.checked_sub(sp)?).ok()?;
    let bytes = stack.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn in_ranges(ranges: &[Range<u64>], addr: u64) -> bool {
    let i = ranges.partition_point(|r| r.start <= addr);
    i > 0 && ranges[i - 1].contains(&addr)
}
