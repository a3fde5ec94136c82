//! Checks done before touching the kernel, each failing with one actionable sentence.
use anyhow::{bail, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_PTRACE: u32 = 19;

/// Effective capability bits of this process, from /proc/self/status.
fn effective_caps() -> u64 {
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

/// Whether this process may load BPF programs and attach uprobes to another process.
pub fn privileges_ok(caps: u64) -> bool {
    let bpf = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
    bpf && has(caps, CAP_SYS_PTRACE)
}

/// Fails unless we can load BPF and read the target's memory.
pub fn check_privileges() -> Result<()> {
    if privileges_ok(effective_caps()) {
        return Ok(());
    }
    bail!(
        "this needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE) to attach probes: \
         run it with sudo"
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
