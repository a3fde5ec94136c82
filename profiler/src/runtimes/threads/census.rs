//! Census of the target's threads now blocked in a system call (a futex wait, a read, an accept,
//! a sleep, ...), read from /proc without stopping them, and their user stacks: read from the
//! thread's stack pointer and unwound from the first return address into the executable (the
//! libc syscall wrapper on top has no unwind data here).
use crate::{
    elf::ElfImage,
    target::memory::read_bytes,
    unwind::{Regs, Unwinder},
};

/// x86_64 syscall numbers.
const SYS_FUTEX: i64 = 202;
const SYS_FUTEX_WAITV: i64 = 449;

/// What /proc/PID/task/TID/syscall says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    pub nr: i64,
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
}

/// Parses "NR a1 .. a6 SP PC" (hex args); "running" and "-1 SP PC" (not in a syscall) give None.
pub fn parse_syscall_line(s: &str) -> Option<Syscall> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 9 {
        return None;
    }
    let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
    let nr: i64 = f[0].parse().ok()?;
    let mut args = [0u64; 6];
    for (a, v) in args.iter_mut().zip(&f[1..7]) {
        *a = hex(v)?;
    }
    Some(Syscall { nr, args, sp: hex(f[7])?, pc: hex(f[8])? })
}

/// The blocking system calls by family (x86_64 numbers): what `blocked in ...` names.
const FAMILIES: &[(&str, &[(i64, &str)])] = &[
    ("futex", &[(SYS_FUTEX, "futex"), (SYS_FUTEX_WAITV, "futex_waitv")]),
    (
        "read",
        &[(0, "read"), (17, "pread64"), (19, "readv"), (295, "preadv"), (327, "preadv2"), (45, "recvfrom"), (47, "recvmsg"), (299, "recvmmsg")],
    ),
    (
        "write",
        &[(1, "write"), (18, "pwrite64"), (20, "writev"), (296, "pwritev"), (328, "pwritev2"), (44, "sendto"), (46, "sendmsg"), (307, "sendmmsg"), (40, "sendfile"), (275, "splice")],
    ),
    ("accept", &[(43, "accept"), (288, "accept4")]),
    ("connect", &[(42, "connect")]),
    (
        "poll",
        &[(7, "poll"), (23, "select"), (270, "pselect6"), (271, "ppoll"), (232, "epoll_wait"), (281, "epoll_pwait"), (441, "epoll_pwait2"), (426, "io_uring_enter")],
    ),
    ("sleep", &[(35, "nanosleep"), (230, "clock_nanosleep"), (34, "pause"), (130, "rt_sigsuspend"), (128, "rt_sigtimedwait")]),
    ("wait", &[(61, "wait4"), (247, "waitid")]),
    ("lock", &[(73, "flock"), (72, "fcntl")]),
];

/// The family and name of syscall `nr` ("other", "syscall_N" for one not in the table).
pub fn syscall_family(nr: i64) -> (&'static str, String) {
    for (family, calls) in FAMILIES {
        if let Some((_, name)) = calls.iter().find(|(n, _)| *n == nr) {
            return (family, (*name).to_string());
        }
    }
    ("other", format!("syscall_{nr}"))
}

/// A thread blocked in a system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadWait {
    pub tid: u32,
    pub comm: String,
    pub nr: i64,
    /// The call's first argument (a futex's address, a file descriptor, ...): with the tid and
    /// the call, what tells one wait from the next.
    pub arg0: u64,
    pub sp: u64,
    pub pc: u64,
}

impl ThreadWait {
    /// The syscall's family (`futex`, `read`, `accept`, `poll`, `sleep`, ...) and name.
    pub fn family(&self) -> (&'static str, String) {
        syscall_family(self.nr)
    }
}

/// Whether a syscall is a blocking futex wait.
pub fn is_futex_wait(sc: &Syscall) -> bool {
    match sc.nr {
        SYS_FUTEX => profiler_common::is_futex_wait_op(sc.args[1] as u32),
        SYS_FUTEX_WAITV => true,
        _ => false,
    }
}

/// Whether a thread sitting in this syscall is waiting (a futex wake or a thread caught in a
/// fcntl that takes no lock is not).
fn is_waiting(sc: &Syscall) -> bool {
    const F_SETLKW: u64 = 7;
    const F_OFD_SETLKW: u64 = 38;
    match sc.nr {
        SYS_FUTEX | SYS_FUTEX_WAITV => is_futex_wait(sc),
        72 => matches!(sc.args[1], F_SETLKW | F_OFD_SETLKW),
        _ => true,
    }
}

/// Threads of `pid` now blocked in a system call (/proc says "running" for a thread that is not).
pub fn blocked_threads(pid: u32) -> Vec<ThreadWait> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(line) = std::fs::read_to_string(e.path().join("syscall")) else {
            continue;
        };
        let Some(sc) = parse_syscall_line(&line) else {
            continue;
        };
        if !is_waiting(&sc) {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim().to_string();
        out.push(ThreadWait { tid, comm, nr: sc.nr, arg0: sc.args[0], sp: sc.sp, pc: sc.pc });
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// Whether `ra` (runtime) looks like a return address in the executable: inside its code and
/// right after a call instruction.
fn is_return_address(image: &ElfImage, bias: u64, unwinder: &Unwinder, ra: u64) -> bool {
    if !unwinder.in_code(ra) {
        return false;
    }
    let Some(before) = image.read_at_vaddr(ra.wrapping_sub(bias).wrapping_sub(7), 7) else {
        return false;
    };
    // call rel32 (E8 xx xx xx xx); call r/m64 (FF /2) in 2, 3, 6 or 7 bytes
    before[2] == 0xE8
        || (before[5] == 0xFF && (before[6] & 0x38) == 0x10)
        || (before[4] == 0xFF && (before[5] & 0x38) == 0x10)
        || (before[1] == 0xFF && (before[2] & 0x38) == 0x10)
        || (before[0] == 0xFF && (before[1] & 0x38) == 0x10)
}

/// The waiting thread's user stack as return addresses (runtime), outermost last: the first
/// return address into the executable found above the thread's sp, then .eh_frame unwinding.
/// Frames whose unwind rule needs the frame pointer (std is built with frame pointers) cannot
/// be unwound without the thread's rbp, which /proc does not give: then the stack is scanned
/// for return addresses (each checked to follow a call instruction), a classic fallback that
/// may include a stale frame but finds the waiting function.
pub fn thread_stack(
    pid: u32,
    tw: &ThreadWait,
    image: &ElfImage,
    bias: u64,
    unwinder: &mut Unwinder,
    window: usize,
) -> Vec<u64> {
    let mut len = window;
    let mut buf = vec![0u8; len];
    while len >= 256 && read_bytes(pid, tw.sp, &mut buf[..len]).is_err() {
        len /= 2;
    }
    if len < 256 {
        return Vec::new();
    }
    let stack = &buf[..len];
    // scan a few KiB for the first return address into the executable
    let word = |off: usize| u64::from_ne_bytes(stack[off..off + 8].try_into().unwrap());
    let scan = len.min(4096);
    let Some(off) = (0..scan.saturating_sub(8))
        .step_by(8)
        .find(|&off| is_return_address(image, bias, unwinder, word(off)))
    else {
        return Vec::new();
    };
    let ra = word(off);
    // the caller's state right after that return: ip = ra, sp past the slot
    let Some(sp) = tw.sp.checked_add(off as u64 + 8) else {
        return Vec::new();
    };
    let mut pcs = unwinder.unwind(Regs { ip: ra.wrapping_sub(1), sp, bp: 0 }, &stack[off + 8..], 64);
    if let Some(first) = pcs.first_mut() {
        *first = ra; // report it as the return address it is
    }
    if pcs.len() >= 3 {
        return pcs;
    }
    (off..len.saturating_sub(8))
        .step_by(8)
        .map(word)
        .filter(|&ra| is_return_address(image, bias, unwinder, ra))
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_syscall_lines() {
        let sc = parse_syscall_line("202 0x7f00 0x80 0x2 0x0 0x0 0x0 0x7ffd10 0x7f5a20").unwrap();
        assert_eq!(sc.nr, 202);
        assert_eq!(sc.args[0], 0x7f00);
        assert_eq!(sc.sp, 0x7ffd10);
        assert_eq!(sc.pc, 0x7f5a20);
        assert!(is_futex_wait(&sc), "FUTEX_WAIT|PRIVATE");
        let wake = parse_syscall_line("202 0x7f00 0x81 0x1 0x0 0x0 0x0 0x1 0x2").unwrap();
        assert!(!is_futex_wait(&wake), "FUTEX_WAKE is not a wait");
        assert_eq!(parse_syscall_line("running"), None);
        assert_eq!(parse_syscall_line("-1 0x7ffd 0x7f5a"), None);
    }

    #[test]
    fn syscalls_are_named_by_family() {
        assert_eq!(syscall_family(45), ("read", "recvfrom".to_string()));
        assert_eq!(syscall_family(288), ("accept", "accept4".to_string()));
        assert_eq!(syscall_family(230), ("sleep", "clock_nanosleep".to_string()));
        assert_eq!(syscall_family(232), ("poll", "epoll_wait".to_string()));
        assert_eq!(syscall_family(61), ("wait", "wait4".to_string()));
        assert_eq!(syscall_family(9999), ("other", "syscall_9999".to_string()));
        let fcntl = |cmd: u64| Syscall { nr: 72, args: [3, cmd, 0, 0, 0, 0], sp: 0, pc: 0 };
        assert!(is_waiting(&fcntl(7)), "F_SETLKW waits for a lock");
        assert!(!is_waiting(&fcntl(1)), "F_GETFD does not");
    }

    #[test]
    fn finds_own_thread_blocked_in_read() {
        use std::io::Read;
        let (mut r, w) = std::io::pipe().unwrap();
        let t = std::thread::Builder::new()
            .name("census-reader".into())
            .spawn(move || {
                let mut b = [0u8; 1];
                r.read(&mut b).unwrap()
            })
            .unwrap();
        let mut found = None;
        for _ in 0..200 {
            found = blocked_threads(std::process::id()).into_iter().find(|w| w.comm == "census-reader");
            if found.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let w_ = found.expect("the thread blocked in read is in the census");
        assert_eq!(w_.family().0, "read", "{w_:?}");
        drop(w);
        t.join().unwrap();
    }

    #[inline(never)]
    fn lock_held_mutex_for_census_test(m: &std::sync::Mutex<u32>) -> u32 {
        *m.lock().unwrap()
    }

    #[test]
    fn finds_own_blocked_thread_and_unwinds_into_the_locking_function() {
        use std::sync::{Arc, Mutex};
        let m = Arc::new(Mutex::new(7u32));
        let guard = m.lock().unwrap();
        let m2 = Arc::clone(&m);
        let t = std::thread::Builder::new()
            .name("census-victim".into())
            .spawn(move || lock_held_mutex_for_census_test(&m2))
            .unwrap();
        let pid = std::process::id();
        let mut found = None;
        for _ in 0..200 {
            found = blocked_threads(pid).into_iter().find(|w| w.comm == "census-victim");
            if found.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let w = found.expect("the thread blocked on the mutex is in the census");
        let image = ElfImage::open("/proc/self/exe").unwrap();
        let maps = crate::target::parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let t_ = crate::target::Target {
            pid,
            space: crate::target::Space::Live(pid),
            exe: exe.clone(),
            exe_proc_path: "/proc/self/exe".into(),
            exe_maps: maps.into_iter().filter(|m| m.path.as_deref() == exe.to_str()).collect(),
            start_time: None,
        };
        let segs: Vec<(u64, u64, u64)> =
            image.load_segments().iter().map(|s| (s.vaddr, s.file_offset, s.file_size)).collect();
        let bias = t_.load_bias(&segs).unwrap();
        let mut unwinder = Unwinder::new(&image, bias);
        let pcs = thread_stack(pid, &w, &image, bias, &mut unwinder, 16 * 1024);
        let names: Vec<String> = crate::unwind::symbolize_frames(&image, None, bias, &pcs)
            .into_iter()
            .map(|f| f.function)
            .collect();
        drop(guard);
        t.join().unwrap();
        assert!(
            names.iter().any(|n| n.contains("lock_held_mutex_for_census_test")),
            "stack of the blocked thread: {names:#?}"
        );
    }
}
