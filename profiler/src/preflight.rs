//! Checks done before touching the kernel, each failing with one actionable sentence.
use anyhow::{bail, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_PTRACE: u32 = 19;

/// Effective capability bits of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or(0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has(caps: u64, bit: u32) -> bool {
    caps & (1u64 << bit) != 0
}

/// Whether this process may load BPF programs and attach uprobes (what `--probes` needs beyond
/// reading the target's memory).
pub fn bpf_ok(caps: u64) -> bool {
    has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON))
}

/// Whether this process may load BPF programs and attach uprobes to another process.
pub fn privileges_ok(caps: u64) -> bool {
    bpf_ok(caps) && has(caps, CAP_SYS_PTRACE)
}

/// The privileges a mode needs beyond reading the target's memory: BPF for `--probes` (and the
/// futex tracepoints and kernel statistics that come with it); nothing for the census.
pub fn check_privileges(probes: bool) -> Result<()> {
    if probes && !crate::bpf::probes_built() {
        bail!(crate::bpf::NO_PROBES_BUILD);
    }
    if !probes {
        return Ok(());
    }
    if bpf_ok(effective_caps()) {
        // a kernel without a feature the programs need: say which, not the verifier's log
        if let Some(why) = crate::bpf::features::probe().probes_refusal() {
            bail!(why);
        }
        return Ok(());
    }
    bail!(
        "--probes loads eBPF programs, which needs root or CAP_BPF + CAP_PERFMON: run it with sudo \
         (in a container: --cap-add BPF --cap-add PERFMON, plus SYS_PTRACE); without --probes the census \
         needs only the right to read the target's memory"
    )
}

/// Fails with the missing right unless this process may read `pid`'s memory (what every mode
/// needs): the same user under the kernel's ptrace rules, or CAP_SYS_PTRACE.
pub fn check_read_access(pid: u32) -> Result<()> {
    let denied = || read_denied(pid);
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied()),
        Err(_) => bail!("no process with pid {pid}: check the pid (e.g. with `pgrep -a NAME`)"),
    };
    let Some(addr) = maps.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        rest.starts_with('r').then(|| u64::from_str_radix(range.split('-').next()?, 16).ok()).flatten()
    }) else {
        return Ok(()); // nothing mapped (a zombie): the attach says so
    };
    let mut b = [0u8; 1];
    match crate::target::memory::read_bytes(pid, addr, &mut b) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) => Err(denied()),
        _ => Ok(()),
    }
}

/// The sentence for a target whose memory this process may not read.
fn read_denied(pid: u32) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid()).ok();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok().and_then(|s| s.trim().parse::<u32>().ok());
    let whose = match owner {
        Some(u) if u != me => format!("it runs as uid {u} and leakprof as uid {me}, without CAP_SYS_PTRACE"),
        _ => "leakprof lacks the right to read it".to_string(),
    };
    let scope = match yama {
        Some(s) if s >= 1 => format!(
            "; kernel.yama.ptrace_scope is {s}, so even a process of your own needs CAP_SYS_PTRACE (or \
             `sysctl kernel.yama.ptrace_scope=0`, or start it under `leakprof run`)"
        ),
        _ => String::new(),
    };
    anyhow::anyhow!(
        "cannot read the memory of pid {pid}: {whose}{scope}. The census needs only that right: run leakprof as \
         the target's user, or with sudo, or give it CAP_SYS_PTRACE (in a container: --cap-add SYS_PTRACE)"
    )
}

/// Whether leakprof can read a program built for this machine: x86_64, 64-bit (its probes read
/// x86_64 registers, its census reads 64-bit pointers).
pub fn machine_supported(arch: object::Architecture, is_64: bool) -> std::result::Result<(), String> {
    match (arch, is_64) {
        (object::Architecture::X86_64, true) => Ok(()),
        (object::Architecture::X86_64_X32, _) | (object::Architecture::I386, _) | (_, false) => {
            Err("a 32-bit program; leakprof reads 64-bit x86_64 programs only".into())
        }
        (other, _) => Err(format!("a program for {other:?}; leakprof reads x86_64 programs only")),
    }
}

/// [`machine_supported`] for an executable.
pub fn check_machine(image: &crate::elf::ElfImage) -> std::result::Result<(), String> {
    let (arch, is_64) = image.machine();
    machine_supported(arch, is_64)
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (no-op on newer kernels).
pub fn raise_memlock() {
    let r = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

/// Makes sure tracefs is mounted (tracepoints are looked up there), mounting it when needed.
pub fn ensure_tracefs() -> Result<()> {
    let probe = "events/syscalls/sys_enter_futex/id";
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if std::path::Path::new(dir).join(probe).exists() {
            return Ok(());
        }
    }
    let st = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status();
    if std::path::Path::new("/sys/kernel/tracing").join(probe).exists() {
        return Ok(());
    }
    bail!(
        "tracefs is not mounted and mounting it failed ({}): run `mount -t tracefs nodev \
         /sys/kernel/tracing` as root, or pass --no-threads to skip futex-wait tracing",
        match st {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_bit_x86_64_programs_are_read() {
        use object::Architecture::*;
        assert!(machine_supported(X86_64, true).is_ok());
        assert!(machine_supported(I386, false).unwrap_err().contains("32-bit"));
        assert!(machine_supported(X86_64_X32, false).unwrap_err().contains("32-bit"));
        assert!(machine_supported(Aarch64, true).unwrap_err().contains("Aarch64"));
        assert!(machine_supported(Arm, false).unwrap_err().contains("32-bit"));
    }

    #[test]
    fn cap_parsing_and_rules() {
        let root = parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n").unwrap();
        assert!(privileges_ok(root));
        let none = parse_cap_eff("CapEff:\t0000000000000000\n").unwrap();
        assert!(!privileges_ok(none));
        let bpf_only = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        assert!(!privileges_ok(bpf_only), "reading target memory needs CAP_SYS_PTRACE too");
        assert!(privileges_ok(bpf_only | (1u64 << CAP_SYS_PTRACE)));
        assert_eq!(parse_cap_eff("nothing"), None);
    }
}
