//! What the running kernel offers `--probes`, asked of the kernel itself (never guessed from its
//! version): each kernel feature the probe mode's programs and maps need, the Linux release that
//! brought it, and whether this kernel has it. Checked before the programs are loaded, so a kernel
//! without one gets a sentence naming it instead of a verifier log; `leakprof features` prints
//! the table. The census needs none of these: only `process_vm_readv` (Linux 3.2) and
//! `/proc/PID/pagemap`.
use std::os::fd::{FromRawFd as _, OwnedFd};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper},
};
use serde::Serialize;

/// One kernel feature and whether this kernel has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// Short name (`ringbuf`, `mmapable_array`, ...).
    pub name: &'static str,
    /// What it is, as a sentence would name it.
    pub what: &'static str,
    /// The Linux release that brought it.
    pub since: (u32, u32),
    /// Whether `--probes` needs it (else it only adds something: the kernel's run-time counters).
    pub needed: bool,
    /// Whether this kernel has it; None when it could not be asked (BPF not permitted).
    pub present: Option<bool>,
}

/// The running kernel's release and features.
#[derive(Debug, Clone, Serialize)]
pub struct KernelFeatures {
    pub release: String,
    pub features: Vec<Feature>,
    /// leakprof's own BPF programs, each loaded (verified) by this kernel and unloaded
    /// ([`probe_all`]); empty when not checked, and then `programs_unchecked` says why.
    pub programs: Vec<ProgramCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programs_unchecked: Option<String>,
}

/// Whether this kernel loads one of leakprof's BPF programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramCheck {
    pub name: String,
    pub loads: bool,
    /// Why not, in leakprof's sentence (the verifier's log is in the file it names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The features, what they are and since when; `present` filled by [`probe`].
const TABLE: &[(&str, &str, (u32, u32), bool)] = &[
    ("uprobe_programs", "BPF programs on uprobes", (4, 1), true),
    ("tracepoint_programs", "BPF programs on tracepoints", (4, 7), true),
    ("percpu_hash", "per-CPU BPF hash maps", (4, 6), true),
    ("probe_read_user", "the bpf_probe_read_user helper", (5, 5), true),
    ("mmapable_array", "BPF_F_MMAPABLE arrays", (5, 5), true),
    ("ringbuf", "BPF ring buffers", (5, 8), true),
    ("run_time_stats", "BPF run-time statistics (BPF_ENABLE_STATS)", (5, 8), false),
];

/// Asks the kernel for each feature (needs the right to use bpf(): root, or CAP_BPF).
pub fn probe() -> KernelFeatures {
    let features = TABLE
        .iter()
        .map(|&(name, what, since, needed)| {
            let present = match name {
                "uprobe_programs" => is_program_supported(ProgramType::KProbe).ok(),
                "tracepoint_programs" => is_program_supported(ProgramType::TracePoint).ok(),
                "percpu_hash" => is_map_supported(MapType::PerCpuHash).ok(),
                "probe_read_user" => is_helper_supported(ProgramType::KProbe, BpfHelper::BPF_FUNC_probe_read_user).ok(),
                "mmapable_array" => mmapable_array(),
                "ringbuf" => is_map_supported(MapType::RingBuf).ok(),
                "run_time_stats" => match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                    Ok(_) => Some(true),
                    Err(e) if matches!(e.io_error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => None,
                    Err(_) => Some(false),
                },
                _ => None,
            };
            Feature { name, what, since, needed, present }
        })
        .collect();
    KernelFeatures { release: release(), features, programs: Vec::new(), programs_unchecked: Some("not asked".into()) }
}

/// [`probe`], and every one of leakprof's BPF programs loaded by this kernel (`leakprof
/// features`; needs root).
pub fn probe_all() -> KernelFeatures {
    let mut f = probe();
    if !crate::preflight::bpf_ok(crate::preflight::effective_caps()) {
        f.programs_unchecked = Some("not root: the kernel cannot be asked to load them".into());
        return f;
    }
    match super::verify_all() {
        Ok(progs) => {
            f.programs = progs.into_iter().map(|(name, refused)| ProgramCheck { name, loads: refused.is_none(), refused }).collect();
            f.programs_unchecked = None;
        }
        Err(why) => f.programs_unchecked = Some(why),
    }
    f
}

/// The kernel's release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// The (major, minor) of a release string (`6.1.0-57-amd64` -> (6, 1)).
pub fn version_of(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether an array map with BPF_F_MMAPABLE can be created (aya probes map types, not flags).
fn mmapable_array() -> Option<bool> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const BPF_F_MMAPABLE: u32 = 1 << 10;
    // bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, map_flags; the
    // rest zero (the kernel checks that whatever it does not know is zero)
    let mut attr = [0u32; 32];
    attr[..5].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_MMAPABLE]);
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of `attr`, which lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
    if fd >= 0 {
        // SAFETY: a file descriptor the kernel just gave us, owned here only
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        return Some(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // the flag (or the map) unknown to this kernel
        Some(libc::EINVAL) | Some(libc::E2BIG) => Some(false),
        _ => None,
    }
}

impl KernelFeatures {
    /// The newest release among the features `--probes` needs: its minimum kernel.
    pub fn probes_minimum() -> (u32, u32) {
        TABLE.iter().filter(|t| t.3).map(|t| t.2).max().unwrap_or((0, 0))
    }

    /// Why `--probes` cannot run on this kernel: the first needed feature it lacks, in one
    /// sentence with what to do; None when it has them all (or they could not be asked: loading
    /// then says why).
    pub fn probes_refusal(&self) -> Option<String> {
        let f = self.features.iter().find(|f| f.needed && f.present == Some(false))?;
        let (maj, min) = Self::probes_minimum();
        Some(format!(
            "this kernel ({}) has no {} (Linux {}.{}+): --probes needs Linux {maj}.{min}+; the census (leakprof \
             without --probes) works on this kernel without BPF",
            self.release, f.what, f.since.0, f.since.1
        ))
    }

    /// Features the kernel's release says it should have but it does not (a kernel built without
    /// them, or a probe that went wrong): what a test of the matrix looks for.
    pub fn missing_for_release(&self) -> Vec<&Feature> {
        let Some(v) = version_of(&self.release) else { return Vec::new() };
        self.features.iter().filter(|f| v >= f.since && f.present != Some(true)).collect()
    }

    /// The table `leakprof features` prints.
    pub fn table(&self) -> String {
        let (maj, min) = Self::probes_minimum();
        let mut out = format!("kernel {}\n", self.release);
        for f in &self.features {
            let has = match f.present {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "unknown (bpf() not permitted: run as root)",
            };
            let need = if f.needed { "needed by --probes" } else { "optional" };
            out += &format!("  {:<20} {:<4} {} (Linux {}.{}+, {need})\n", f.name, has, f.what, f.since.0, f.since.1);
        }
        out += &match self.probes_refusal() {
            Some(why) => format!("--probes: no: {why}\n"),
            None if self.features.iter().any(|f| f.needed && f.present.is_none()) => "--probes: unknown (run as root to ask the kernel)\n".to_string(),
            None => format!("--probes: yes (needs Linux {maj}.{min}+)\n"),
        };
        out += &match &self.programs_unchecked {
            Some(why) => format!("leakprof's BPF programs: not loaded ({why})\n"),
            None => {
                let ok = self.programs.iter().filter(|p| p.loads).count();
                let mut s = format!("leakprof's BPF programs: {ok} of {} load on this kernel\n", self.programs.len());
                for p in self.programs.iter().filter(|p| !p.loads) {
                    s += &format!("  {}: {}\n", p.name, p.refused.as_deref().unwrap_or(""));
                }
                s
            }
        };
        out + "census (the default): yes (process_vm_readv and /proc/PID/pagemap, no BPF)\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(present: &[(&str, bool)]) -> KernelFeatures {
        let features = TABLE
            .iter()
            .map(|&(name, what, since, needed)| Feature { name, what, since, needed, present: present.iter().find(|p| p.0 == name).map(|p| p.1).or(Some(true)) })
            .collect();
        KernelFeatures { release: "5.4.0-150-generic".into(), features, programs: Vec::new(), programs_unchecked: Some("not asked".into()) }
    }

    #[test]
    fn a_missing_feature_is_named_with_the_minimum_and_the_census() {
        let f = with(&[("ringbuf", false), ("run_time_stats", false)]);
        let why = f.probes_refusal().unwrap();
        assert_eq!(
            why,
            "this kernel (5.4.0-150-generic) has no BPF ring buffers (Linux 5.8+): --probes needs Linux 5.8+; the census \
             (leakprof without --probes) works on this kernel without BPF"
        );
        // an optional feature missing refuses nothing
        assert!(with(&[("run_time_stats", false)]).probes_refusal().is_none());
        assert!(f.table().contains("ringbuf              NO"), "{}", f.table());
    }

    #[test]
    fn the_minimum_is_the_newest_needed_feature() {
        assert_eq!(KernelFeatures::probes_minimum(), (5, 8));
        assert_eq!(version_of("6.12.95+deb12-amd64"), Some((6, 12)));
        assert_eq!(version_of("5.10.0-46-amd64"), Some((5, 10)));
        assert_eq!(version_of("garbage"), None);
        // 5.4 lacks what came in 5.5 and 5.8: a release check names them
        let mut f = with(&[("ringbuf", false), ("mmapable_array", false)]);
        assert!(f.missing_for_release().is_empty(), "5.4 is not expected to have them");
        f.release = "5.10.0-46-amd64".into();
        let names: Vec<&str> = f.missing_for_release().iter().map(|f| f.name).collect();
        assert_eq!(names, ["mmapable_array", "ringbuf"]);
    }
}
