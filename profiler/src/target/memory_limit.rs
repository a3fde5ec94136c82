//! The target's resident memory and the memory limit that applies to it: its cgroup's limit
//! (`memory.max` on cgroup v2, `memory.limit_in_bytes` on v1; the smallest along the path up to
//! the root, since a parent's limit bounds its children), else the machine's memory.
use std::path::{Path, PathBuf};

/// Where a limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// `cgroup v2 /sys/fs/cgroup/app/memory.max`, `cgroup v1 ...`, or `machine (MemTotal)`.
    pub source: String,
}

/// Limits at or above this are "no limit" (v1 writes 2^63 rounded down to a page).
const UNLIMITED: u64 = 1 << 62;

/// The target's resident set, bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&status, "VmRSS:")
}

/// leakprof's own peak resident set, bytes (`VmHWM` of /proc/self/status).
pub fn own_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kb_field(&status, "VmHWM:")
}

/// `NAME:   123 kB` in a /proc file, in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The limit that applies to `pid`, read from the live system.
pub fn memory_limit(pid: u32) -> Option<MemoryLimit> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    limit_from(&cgroup, Path::new("/sys/fs/cgroup"), &meminfo)
}

/// The limit from a `/proc/PID/cgroup` text, the cgroup mount root and `/proc/meminfo`.
pub fn limit_from(cgroup: &str, root: &Path, meminfo: &str) -> Option<MemoryLimit> {
    let mut best: Option<MemoryLimit> = None;
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let (dirs, file, label): (Vec<PathBuf>, &str, &str) = if controllers.is_empty() {
            // v2: the unified hierarchy, mounted at the root (or at unified/ beside v1 ones)
            (vec![root.to_path_buf(), root.join("unified")], "memory.max", "cgroup v2")
        } else if controllers.split(',').any(|c| c == "memory") {
            (vec![root.join("memory")], "memory.limit_in_bytes", "cgroup v1")
        } else {
            continue;
        };
        for base in dirs {
            // the cgroup and each of its parents: the smallest limit binds
            let mut rel = PathBuf::from(path.trim_start_matches('/'));
            loop {
                let at = base.join(&rel).join(file);
                if let Some(bytes) = read_limit(&at).filter(|&b| b < UNLIMITED) {
                    if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                        best = Some(MemoryLimit { bytes, source: format!("{label} {}", at.display()) });
                    }
                }
                if !rel.pop() {
                    break;
                }
            }
        }
    }
    best.or_else(|| kb_field(meminfo, "MemTotal:").map(|bytes| MemoryLimit { bytes, source: "machine (MemTotal)".into() }))
}

fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim() {
        "max" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree of `files` under a fresh temporary directory (removed when dropped).
    struct Tree(PathBuf);

    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(files: &[(&str, &str)]) -> Tree {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("leakprof-cgroup-test-{}-{n}", std::process::id()));
        for (p, v) in files {
            let at = d.join(p);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(at, v).unwrap();
        }
        Tree(d)
    }

    const MEMINFO: &str = "MemTotal:       24000000 kB\nMemFree: 1 kB\n";

    #[test]
    fn v2_limit_is_the_smallest_on_the_path() {
        let d = tree(&[("app/memory.max", "max\n"), ("app/web/memory.max", "2147483648\n"), ("memory.max", "max")]);
        let l = limit_from("0::/app/web\n", d.path(), MEMINFO).unwrap();
        assert_eq!(l.bytes, 2 << 30);
        assert!(l.source.starts_with("cgroup v2") && l.source.ends_with("app/web/memory.max"), "{}", l.source);
        // a parent's tighter limit binds
        let d = tree(&[("app/memory.max", "1073741824"), ("app/web/memory.max", "2147483648")]);
        assert_eq!(limit_from("0::/app/web\n", d.path(), MEMINFO).unwrap().bytes, 1 << 30);
    }

    #[test]
    fn v1_memory_controller_and_unlimited_falls_back_to_the_machine() {
        let d = tree(&[("memory/job/memory.limit_in_bytes", "536870912\n"), ("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        let l = limit_from("5:cpu:/x\n4:memory:/job\n0::/\n", d.path(), MEMINFO).unwrap();
        assert_eq!(l.bytes, 512 << 20);
        assert!(l.source.starts_with("cgroup v1"), "{}", l.source);
        let d = tree(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        let l = limit_from("4:memory:/\n", d.path(), MEMINFO).unwrap();
        assert_eq!((l.bytes, l.source.as_str()), (24_000_000 * 1024, "machine (MemTotal)"));
    }

    #[test]
    fn rss_of_this_process() {
        assert!(rss_bytes(std::process::id()).unwrap() > 1 << 20);
        assert!(memory_limit(std::process::id()).unwrap().bytes > 1 << 20);
    }
}
