//! Loads the embedded eBPF object and attaches its uprobes to one process. Dropping
//! [`AttachedProbes`] detaches everything (the links are owned by the `Ebpf` value).
use std::{num::NonZeroU32, path::Path, time::Instant};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{MapData, RingBuf},
    programs::{uprobe::UProbeScope, TracePoint, UProbe},
    Ebpf, EbpfLoader,
};
use profiler_common::{globals, maps, progs};

use crate::model::BpfProgramCost;

/// The eBPF object built by build.rs from profiler-ebpf.
#[cfg(feature = "probes")]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));
/// A census-only build carries no eBPF object.
#[cfg(not(feature = "probes"))]
static OBJECT: &[u8] = &[];

/// Whether this build carries the eBPF programs (the `probes` feature).
pub fn probes_built() -> bool {
    !OBJECT.is_empty()
}

/// The error of a census-only build asked for anything that runs in the kernel.
pub const NO_PROBES_BUILD: &str = "this leakprof was built without the `probes` feature (census only): \
     --probes, --threads' futex tracepoints and the daemon's kernel statistics need the full build \
     (`cargo install --path profiler --locked`, after `cargo xtask setup` installs the eBPF toolchain)";

/// One probe to attach: which program, at which file offset of the target executable.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub program: &'static str,
    pub symbol: String,
    pub file_offset: u64,
}

/// Probes attached to one process. Drop detaches them all.
pub struct AttachedProbes {
    pub(crate) ebpf: Ebpf,
    /// Keeps the kernel's BPF run-time statistics on while these programs are loaded (None: the
    /// kernel refused, before 5.8).
    _stats: Option<std::os::fd::OwnedFd>,
    pub(crate) spawn_samples: RingBuf<MapData>,
    pub attached: usize,
    pub attach_ms: f64,
    pub max_tasks: u32,
    /// The SLOTS array, mapped (tokio births at bind_inner; None otherwise).
    pub(crate) slots: Option<super::slots::SlotView>,
}

/// Settings of the kernel side.
pub struct LoadConfig {
    pub vtable_lo: u64,
    pub vtable_hi: u64,
    pub header_vtable_offset: u64,
    pub max_tasks: u32,
    pub max_sites: u32,
    /// Spawn stack sampling period (0 = off): see profiler_common::globals::STACK_PERIOD.
    pub stack_period: u64,
    /// Trace the target's futex waits (needs tracefs).
    pub watch_futex: bool,
    pub target_tgid: u32,
    /// Number of SLOTS (rounded up to a power of two) for tokio births at bind_inner; 0: none.
    pub slots: u32,
    /// Time one tokio birth at bind_inner in `lifetime_mask + 1` beyond each site's first ones
    /// (0: time every birth); see profiler_common::globals::LIFETIME_MASK.
    pub lifetime_mask: u64,
    /// Offset of the task id from a tokio task header when the same for all vtables (0: read it
    /// from each task's vtable).
    pub id_offset: u64,
    /// Attach a program that does nothing at every uprobe point instead (benchmarks: the cost
    /// of the traps alone).
    pub empty_programs: bool,
}

impl AttachedProbes {
    pub fn attach(pid: u32, exe: &Path, cfg: &LoadConfig, specs: &[ProbeSpec]) -> Result<Self> {
        let t0 = Instant::now();
        // as bpftop does: statistics on for as long as this value lives, then back as they were
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
        let slots = cfg.slots.max(1).checked_next_power_of_two().ok_or_else(|| anyhow!("too many slots: {}", cfg.slots))?;
        let slot_mask = u64::from(slots - 1);
        if OBJECT.is_empty() {
            return Err(anyhow!(NO_PROBES_BUILD));
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::VTABLE_LO, &cfg.vtable_lo, true)
            .override_global(globals::VTABLE_HI, &cfg.vtable_hi, true)
            .override_global(globals::HEADER_VTABLE_OFFSET, &cfg.header_vtable_offset, true)
            .override_global(globals::STACK_PERIOD, &cfg.stack_period, true)
            .override_global(globals::TARGET_TGID, &u64::from(cfg.target_tgid), true)
            .override_global(globals::ID_OFFSET, &cfg.id_offset, true)
            .override_global(globals::SLOT_MASK, &slot_mask, true)
            .override_global(globals::LIFETIME_MASK, &cfg.lifetime_mask, true)
            .map_max_entries(maps::TASKS, cfg.max_tasks)
            .map_max_entries(maps::SLOTS, slots)
            .map_max_entries(maps::SITES, cfg.max_sites)
            .load(OBJECT)
            .map_err(|e| anyhow!(bpf_refused("object", &e.to_string())))?;
        let scope = UProbeScope::OneProcess(
            NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0 is not a process"))?,
        );
        let mut attached = 0;
        let mut loaded_empty = false;
        for name in [
            progs::BIRTH_BIND_INNER,
            progs::BIRTH_FIRST_POLL,
            progs::FINISH_RELEASE,
            progs::FINISH_SLOT,
            progs::GO_BIRTH_RET,
            progs::GO_DEATH,
        ] {
            let wanted: Vec<&ProbeSpec> = specs.iter().filter(|s| s.program == name).collect();
            if wanted.is_empty() {
                continue;
            }
            let name = if cfg.empty_programs { progs::EMPTY_UPROBE } else { name };
            let prog: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
                .try_into()
                .with_context(|| format!("program {name} is not a uprobe"))?;
            if !(cfg.empty_programs && loaded_empty) {
                prog.load().map_err(|e| anyhow!(bpf_refused(name, &e.to_string())))?;
                loaded_empty = cfg.empty_programs;
            }
            for spec in wanted {
                prog.attach(spec.file_offset, exe, scope).map_err(|e| {
                    anyhow!(
                        "cannot attach a uprobe at {} (file offset {:#x}) in {}: {e}; \
                         is the kernel built with CONFIG_UPROBES?",
                        spec.symbol,
                        spec.file_offset,
                        exe.display()
                    )
                })?;
                attached += 1;
            }
        }
        if cfg.watch_futex {
            crate::preflight::ensure_tracefs()?;
            for (name, tp) in [(progs::FUTEX_ENTER, "sys_enter_futex"), (progs::FUTEX_EXIT, "sys_exit_futex")] {
                let prog: &mut TracePoint = ebpf
                    .program_mut(name)
                    .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
                    .try_into()
                    .with_context(|| format!("program {name} is not a tracepoint"))?;
                prog.load().map_err(|e| anyhow!(bpf_refused(name, &e.to_string())))?;
                prog.attach("syscalls", tp)
                    .map_err(|e| anyhow!("cannot attach to the tracepoint syscalls:{tp}: {e}"))?;
                attached += 1;
            }
        }
        let ring = ebpf.take_map(maps::SPAWN_SAMPLES).ok_or_else(|| anyhow!("map SPAWN_SAMPLES missing"))?;
        let spawn_samples = RingBuf::try_from(ring).context("SPAWN_SAMPLES is not a ring buffer")?;
        let slots = match cfg.slots {
            0 => None,
            _ => Some(super::slots::SlotView::new(ebpf.take_map(maps::SLOTS).ok_or_else(|| anyhow!("map SLOTS missing"))?, slots)?),
        };
        Ok(AttachedProbes {
            ebpf,
            _stats: stats,
            spawn_samples,
            attached,
            attach_ms: t0.elapsed().as_secs_f64() * 1e3,
            max_tasks: cfg.max_tasks,
            slots,
        })
    }

    /// Tells the finish program the first tokio task id not alive at attach (read from the
    /// target's NEXT_ID after attaching, so every task at or above it had its birth seen).
    pub fn set_first_id(&mut self, first_id: u64) -> Result<()> {
        let map = self.ebpf.map_mut(maps::FIRST_ID).ok_or_else(|| anyhow!("map FIRST_ID missing"))?;
        let mut a: aya::maps::Array<&mut MapData, u64> = aya::maps::Array::try_from(map)?;
        a.set(0, first_id, 0)?;
        Ok(())
    }
}

impl AttachedProbes {
    /// Runs and run time of each loaded program since it was loaded (the kernel's statistics; all
    /// zero when they are off).
    pub fn program_costs(&self) -> Vec<BpfProgramCost> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(BpfProgramCost { program: name.to_string(), runs: info.run_count(), run_ns: info.run_time().as_nanos() as u64 })
            })
            .collect()
    }
}

/// The sentence for a program (or the object) the kernel would not load: what failed and the
/// kernel, never the verifier's log itself (kept in a file the sentence names).
fn bpf_refused(what: &str, error: &str) -> String {
    let (head, log) = match error.split_once("Verifier output:") {
        Some((h, l)) => (h.trim().trim_end_matches('.').trim(), Some(l.trim())),
        None => (error.trim(), None),
    };
    let saved = log.filter(|l| !l.is_empty()).and_then(|l| {
        let path = std::env::temp_dir().join(format!("leakprof-verifier-{}-{what}.log", std::process::id()));
        std::fs::write(&path, l).ok().map(|()| path)
    });
    let denied = head.contains("Operation not permitted") || head.contains("EPERM");
    format!(
        "this kernel ({}) refused to load leakprof's BPF {what} ({head}){}; --probes cannot run here{}; the census \
         (leakprof without --probes) needs no BPF",
        super::features::release(),
        saved.map_or(String::new(), |p| format!("; the verifier's log is in {}", p.display())),
        if denied { " (as root, lockdown or a seccomp profile can forbid bpf())" } else { "" }
    )
}

/// Loads every program of the object into the kernel (verified, attached nowhere) and unloads
/// them: each program's name and, when the kernel refused it, why (the sentence of
/// [`bpf_refused`]). Err: a census-only build, or the object itself refused.
pub fn verify_all() -> std::result::Result<Vec<(String, Option<String>)>, String> {
    if OBJECT.is_empty() {
        return Err(NO_PROBES_BUILD.to_string());
    }
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| bpf_refused("object", &e.to_string()))?;
    let mut out = Vec::new();
    for (name, prog) in ebpf.programs_mut() {
        let r = match prog {
            aya::programs::Program::UProbe(p) => p.load(),
            aya::programs::Program::TracePoint(p) => p.load(),
            _ => continue,
        };
        out.push((name.to_string(), r.err().map(|e| bpf_refused(name, &e.to_string()))));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_names_the_program_and_keeps_the_verifier_log_out_of_the_sentence() {
        let e = "the BPF_PROG_LOAD syscall failed. Verifier output: 0: (bf) r6 = r1\n1: (85) call bpf_ringbuf_reserve#131\nunknown func bpf_ringbuf_reserve#131\nprocessed 2 insns";
        let s = super::bpf_refused("leakprof_birth", e);
        assert!(s.contains("refused to load leakprof's BPF leakprof_birth (the BPF_PROG_LOAD syscall failed)"), "{s}");
        assert!(!s.contains("r6 = r1") && !s.contains('\n'), "{s}");
        let path = s.split("the verifier's log is in ").nth(1).and_then(|r| r.split(';').next()).unwrap();
        assert!(std::fs::read_to_string(path).unwrap().contains("unknown func bpf_ringbuf_reserve#131"));
        let _ = std::fs::remove_file(path);
        assert!(s.ends_with("the census (leakprof without --probes) needs no BPF"), "{s}");
        let denied = super::bpf_refused("object", "Operation not permitted (os error 1)");
        assert!(denied.contains("lockdown or a seccomp profile") && !denied.contains("verifier"), "{denied}");
    }
}
