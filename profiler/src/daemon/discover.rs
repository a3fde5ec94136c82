//! Which processes the daemon watches: by pid, by name glob (comm or executable), or every
//! process whose executable is a tokio or Go program.
use std::collections::HashMap;
use std::sync::Mutex;

use globset::{Glob, GlobMatcher};

pub struct Selector {
    pub pids: Vec<u32>,
    names: Vec<GlobMatcher>,
    /// Globs over the process's cgroup path (cgroup v2: the `0::/path` line of /proc/PID/cgroup).
    cgroups: Vec<GlobMatcher>,
    pub all: bool,
    /// exe path -> recognised (tokio or Go), so each binary is read once.
    seen_exes: Mutex<HashMap<String, bool>>,
}

impl Selector {
    pub fn new(pids: Vec<u32>, names: &[String], cgroups: &[String], all: bool) -> anyhow::Result<Selector> {
        let compile = |v: &[String]| {
            v.iter().map(|n| Ok(Glob::new(n)?.compile_matcher())).collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(Selector {
            pids,
            names: compile(names)?,
            cgroups: compile(cgroups)?,
            all,
            seen_exes: Mutex::new(HashMap::new()),
        })
    }

    /// (pid, start time) of every process to watch now, except `me`.
    pub fn candidates(&self, me: u32) -> Vec<(u32, u64)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if self.wanted(pid) {
                if let Some(st) = start_time(pid) {
                    out.push((pid, st));
                }
            }
        }
        out
    }

    fn wanted(&self, pid: u32) -> bool {
        if self.pids.contains(&pid) {
            return true;
        }
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            return false; // kernel thread, or gone
        };
        let exe = exe.to_string_lossy().trim_end_matches(" (deleted)").to_string();
        if !self.names.is_empty() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let base = exe.rsplit('/').next().unwrap_or("");
            if self.names.iter().any(|m| m.is_match(comm.trim()) || m.is_match(base) || m.is_match(&exe)) {
                return true;
            }
        }
        if !self.cgroups.is_empty() {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if cg.lines().filter_map(cgroup_path).any(|p| self.cgroups.iter().any(|m| m.is_match(p))) {
                return true;
            }
        }
        self.all && self.recognised(pid, &exe)
    }

    /// Whether an executable is a tokio or Go program (cached per path).
    fn recognised(&self, pid: u32, exe: &str) -> bool {
        if let Some(&r) = self.seen_exes.lock().unwrap().get(exe) {
            return r;
        }
        let r = std::fs::read(format!("/proc/{pid}/exe"))
            .map(|d| {
                crate::runtimes::go::buildinfo::go_version(&d).is_some() || memchr::memmem::find(&d, b"tokio-1.").is_some()
            })
            .unwrap_or(false);
        self.seen_exes.lock().unwrap().insert(exe.to_string(), r);
        r
    }
}

pub use crate::target::start_time;

/// The path of a /proc/PID/cgroup line ("0::/system.slice/app.service" -> "/system.slice/app.service").
fn cgroup_path(line: &str) -> Option<&str> {
    line.splitn(3, ':').nth(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines_and_own_process() {
        assert_eq!(cgroup_path("0::/system.slice/app.service"), Some("/system.slice/app.service"));
        assert_eq!(cgroup_path("4:memory:/kubepods/pod1"), Some("/kubepods/pod1"));
        // our own cgroup matches "*": a selector by cgroup finds processes in it
        let s = Selector::new(vec![], &[], &["*".into()], false).unwrap();
        let me = std::process::id();
        assert!(s.wanted(me), "this process is in some cgroup");
        let none = Selector::new(vec![], &[], &["/no/such/cgroup".into()], false).unwrap();
        assert!(!none.wanted(me));
    }
}
