//! The process being profiled: its pid, its executable, where that executable is mapped.
mod maps;
pub mod core;
pub mod memory;
pub mod memory_limit;
pub mod resident;
pub mod snapshot;

pub use maps::{parse_maps, Mapping};
pub use memory::{read_u64, read_u64_many, Space};

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

/// A process (live, or as a core file holds it) and its main executable as mapped in it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its pid (a core's: the pid it had).
    pub pid: u32,
    /// Where its memory is read: the live process, or the core.
    pub space: Space,
    /// The executable as the target sees it (readlink of /proc/PID/exe); informational.
    pub exe: PathBuf,
    /// A path that reaches the executable from here, whatever the target's mount namespace.
    pub exe_proc_path: PathBuf,
    /// Mappings of the executable file in the target.
    pub exe_maps: Vec<Mapping>,
    /// Its start time (clock ticks since boot, /proc/PID/stat): a pid reused by another process
    /// has another.
    pub start_time: Option<u64>,
}

/// What leakprof reads of `/proc/PID/stat` (or `/proc/self/stat`): the one parser of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// R, S, D, Z, X, t, ...
    pub state: String,
    /// User and system CPU time, clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Clock ticks since boot at which the process started: with the pid, it names one process
    /// even when pids are reused.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses the text of a stat file (the command name may hold spaces and parentheses: the
    /// fields are counted from the last `)`).
    pub fn parse(text: &str) -> Option<ProcStat> {
        let (_, rest) = text.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // after the comm: state is field 3, utime 14, stime 15, starttime 22
        Some(ProcStat { state: f.first()?.to_string(), utime: f.get(11)?.parse().ok()?, stime: f.get(12)?.parse().ok()?, start_time: f.get(19)?.parse().ok()? })
    }

    /// `/proc/PID/stat`, or `/proc/self/stat` for None.
    pub fn read(pid: Option<u32>) -> Option<ProcStat> {
        let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// A zombie or a dead process.
    pub fn is_gone(&self) -> bool {
        self.state == "Z" || self.state == "X"
    }
}

/// The start time of a live (not zombie) process.
pub fn start_time(pid: u32) -> Option<u64> {
    ProcStat::read(Some(pid)).filter(|s| !s.is_gone()).map(|s| s.start_time)
}

impl Target {
    pub fn open(pid: u32) -> Result<Target> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if !proc_dir.exists() {
            bail!("no process with pid {pid}: check the pid (e.g. with `pgrep -a NAME`)");
        }
        let exe_proc_path = proc_dir.join("exe");
        let exe = std::fs::read_link(&exe_proc_path).with_context(|| {
            format!("cannot read /proc/{pid}/exe: is pid {pid} a kernel thread, or did it just exit?")
        })?;
        let maps_text = std::fs::read_to_string(proc_dir.join("maps"))
            .with_context(|| format!("cannot read /proc/{pid}/maps"))?;
        let exe_str = exe.to_string_lossy();
        let exe_str = exe_str.trim_end_matches(" (deleted)");
        let exe_maps: Vec<Mapping> = parse_maps(&maps_text)
            .into_iter()
            .filter(|m| m.path.as_deref() == Some(exe_str))
            .collect();
        if exe_maps.is_empty() {
            bail!("pid {pid}: its executable {exe_str} is not mapped (a process in exec, or a zombie?)");
        }
        Ok(Target { pid, space: Space::Live(pid), exe, exe_proc_path, exe_maps, start_time: ProcStat::read(Some(pid)).map(|s| s.start_time) })
    }

    /// Whether the process still exists (and is not a zombie), and is the same process: a pid
    /// reused by a new process is not.
    pub fn alive(&self) -> bool {
        if self.space.pid().is_none() {
            return false;
        }
        match ProcStat::read(Some(self.pid)) {
            Some(s) => !s.is_gone() && self.start_time.is_none_or(|t| t == s.start_time),
            None => false,
        }
    }

    /// Whether the process still runs the executable it was opened with (false after an exec).
    pub fn same_exe(&self) -> bool {
        std::fs::read_link(&self.exe_proc_path).is_ok_and(|e| e == self.exe)
    }

    /// The address range covered by the executable's mappings (vtables lie in it).
    pub fn exe_range(&self) -> (u64, u64) {
        let lo = self.exe_maps.iter().map(|m| m.start).min().unwrap_or(0);
        let hi = self.exe_maps.iter().map(|m| m.end).max().unwrap_or(0);
        (lo, hi)
    }

    /// Load bias: runtime address = ELF virtual address + bias. `load_segments` are the
    /// (p_vaddr, p_offset, p_filesz) of the ELF's PT_LOAD headers. Zero for non-PIE executables.
    pub fn load_bias(&self, load_segments: &[(u64, u64, u64)]) -> Option<u64> {
        for m in &self.exe_maps {
            for &(vaddr, off, filesz) in load_segments {
                if m.offset >= off & !0xfff && m.offset < off + filesz.max(1) {
                    // p_vaddr ≡ p_offset (mod page): the mapping of file offset m.offset sits at
                    // vaddr - off + m.offset in the ELF's address space.
                    let elf_addr = (vaddr.wrapping_sub(off)).wrapping_add(m.offset);
                    return Some(m.start.wrapping_sub(elf_addr));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_of_pie_with_shifted_text() {
        let t = Target {
            pid: 1,
            space: Space::Live(1),
            exe: "/x".into(),
            exe_proc_path: "/proc/1/exe".into(),
            start_time: None,
            exe_maps: vec![
                Mapping { start: 0x5555_0000_0000, end: 0x5555_0000_5000, offset: 0, perms: "r-xp".into(), path: None },
                Mapping { start: 0x5555_0000_6000, end: 0x5555_0001_0000, offset: 0x5000, perms: "r-xp".into(), path: None },
            ],
        };
        // segment 0 at vaddr 0, segment 1 at vaddr 0x6000 from offset 0x5000 (shifted by 0x1000)
        let segs = [(0, 0, 0x5000), (0x6000, 0x5000, 0xa000)];
        assert_eq!(t.load_bias(&segs), Some(0x5555_0000_0000));
        assert_eq!(t.exe_range(), (0x5555_0000_0000, 0x5555_0001_0000));
    }

    #[test]
    fn a_reused_pid_is_not_the_same_process() {
        let me = std::process::id();
        let mut t = Target::open(me).unwrap();
        assert!(t.start_time.is_some() && t.alive());
        t.start_time = t.start_time.map(|s| s + 1);
        assert!(!t.alive(), "another start time: another process under the same pid");
    }

    #[test]
    fn bias_of_non_pie_is_zero() {
        let t = Target {
            pid: 1,
            space: Space::Live(1),
            exe: "/x".into(),
            exe_proc_path: "/proc/1/exe".into(),
            start_time: None,
            exe_maps: vec![Mapping { start: 0x400000, end: 0x401000, offset: 0, perms: "r-xp".into(), path: None }],
        };
        assert_eq!(t.load_bias(&[(0x400000, 0, 0x1000)]), Some(0));
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = Target::open(u32::MAX - 7).unwrap_err().to_string();
        assert!(err.contains("no process with pid"), "{err}");
    }
}
