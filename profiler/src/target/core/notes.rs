//! The notes of a core (`NT_PRSTATUS`, `NT_FILE`), parsed with bounds checks: x86-64 layouts,
//! checked against gcore's core of /bin/sleep.
use super::{u32_at, u64_at, CoreFileMapping, CoreThread};

// x86-64 layouts (linux/elfcore.h, sys/user.h), checked against gcore's core of /bin/sleep: the
// pids equal the process's, `orig_rax` is clock_nanosleep's number, `rip` the syscall's return.
/// `struct elf_prstatus`: `pr_pid` after `pr_info` (12), `pr_cursig` (2 + 2 padding),
/// `pr_sigpend`, `pr_sighold` (8 + 8).
pub(super) const PRSTATUS_PID: usize = 32;
/// `pr_reg`, after `pr_pid`, `pr_ppid`, `pr_pgrp`, `pr_sid` and four `timeval`s.
pub(super) const PRSTATUS_REGS: usize = 112;
/// `user_regs_struct`: 27 words; the descriptor is 336 bytes (`pr_fpvalid` and padding follow).
pub(super) const PRSTATUS_MIN: usize = PRSTATUS_REGS + 27 * 8;
/// `struct elf_prpsinfo`: `pr_pid` after the state bytes, `pr_flag`, `pr_uid`, `pr_gid`.
pub(super) const PRPSINFO_PID: usize = 24;
/// `pr_fname[16]`, then `pr_psargs[80]`.
pub(super) const PRPSINFO_FNAME: usize = 40;
/// Indexes of `user_regs_struct`'s words: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi
/// rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs.
pub(super) const REG_RBP: usize = 4;
pub(super) const REG_RDX: usize = 12;
pub(super) const REG_RSI: usize = 13;
pub(super) const REG_RDI: usize = 14;
pub(super) const REG_ORIG_RAX: usize = 15;
pub(super) const REG_RIP: usize = 16;
pub(super) const REG_RSP: usize = 19;
/// An `NT_PRSTATUS` descriptor's pid and registers.
pub(super) fn parse_prstatus(desc: &[u8]) -> Option<CoreThread> {
    if desc.len() < PRSTATUS_MIN {
        return None;
    }
    let reg = |i: usize| u64_at(desc, PRSTATUS_REGS + 8 * i).unwrap_or(0);
    Some(CoreThread {
        tid: u32_at(desc, PRSTATUS_PID)?,
        rip: reg(REG_RIP),
        rsp: reg(REG_RSP),
        rbp: reg(REG_RBP),
        orig_rax: reg(REG_ORIG_RAX),
        rdi: reg(REG_RDI),
        rsi: reg(REG_RSI),
        rdx: reg(REG_RDX),
    })
}

/// An `NT_FILE` descriptor: count, page size, count × (start, end, page offset), then count
/// NUL-terminated paths. The count is capped at what the descriptor holds; entries without a
/// path, with an empty range or an offset that overflows are dropped. (The kernel's page size
/// is 4096; gdb writes 1, with offsets in bytes.)
pub(super) fn parse_nt_file(desc: &[u8]) -> Vec<CoreFileMapping> {
    let (Some(count), Some(page_size)) = (u64_at(desc, 0), u64_at(desc, 8)) else { return Vec::new() };
    let fits = (desc.len() - 16) / 24;
    let n = usize::try_from(count).map_or(fits, |c| c.min(fits));
    let mut paths = desc[16 + 24 * n..].split(|&b| b == 0);
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let Some(path) = paths.next() else { break };
        let at = 16 + 24 * k;
        let (start, end, pgoff) = (u64_at(desc, at), u64_at(desc, at + 8), u64_at(desc, at + 16));
        let (Some(start), Some(end), Some(pgoff)) = (start, end, pgoff) else { break };
        let Some(file_offset) = pgoff.checked_mul(page_size) else { continue };
        if end <= start || path.is_empty() {
            continue;
        }
        out.push(CoreFileMapping { start, end, file_offset, path: String::from_utf8_lossy(path).into_owned() });
    }
    out
}
