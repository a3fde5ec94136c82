//! Finding an executable's separate debug file where Linux tools look for it: by build id
//! (`/usr/lib/debug/.build-id/xx/rest.debug`), by `.gnu_debuglink` (next to the executable, in its
//! `.debug/` directory, under `/usr/lib/debug/` plus its directory; the link's CRC-32 checked).
//! Paths are looked up under the target's root (`/proc/PID/root`), so a container's files are
//! found from the host.
use std::path::{Path, PathBuf};

use object::Object;

/// Where distributions install debug files.
pub const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The executable's GNU build id, if it has one.
pub fn build_id(data: &[u8]) -> Option<Vec<u8>> {
    let file = object::File::parse(data).ok()?;
    file.build_id().ok().flatten().map(<[u8]>::to_vec)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `.gnu_debuglink`: the debug file's name and the CRC-32 of its contents.
pub fn debuglink(data: &[u8]) -> Option<(String, u32)> {
    let file = object::File::parse(data).ok()?;
    let (name, crc) = file.gnu_debuglink().ok().flatten()?;
    let name = std::str::from_utf8(name).ok()?;
    // a bare file name: a link never points elsewhere
    (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), crc))
}

/// Candidate paths, most specific first: (path as the target sees it, expected debuglink CRC).
pub fn candidates(data: &[u8], exe: &Path, debug_root: &Path) -> Vec<(PathBuf, Option<u32>)> {
    let mut out = Vec::new();
    if let Some(id) = build_id(data).filter(|id| id.len() >= 2) {
        let h = hex(&id);
        out.push((debug_root.join(".build-id").join(&h[..2]).join(format!("{}.debug", &h[2..])), None));
    }
    if let (Some((name, crc)), Some(dir)) = (debuglink(data), exe.parent()) {
        out.push((dir.join(&name), Some(crc)));
        out.push((dir.join(".debug").join(&name), Some(crc)));
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        out.push((debug_root.join(rel).join(&name), Some(crc)));
    }
    out
}

/// The first candidate that exists under `root` (the target's root directory) and, for a
/// debuglink, has the right CRC: its path under `root` and its bytes.
pub fn find(data: &[u8], exe: &Path, root: &Path, debug_root: &Path) -> Option<(PathBuf, Vec<u8>)> {
    for (path, crc) in candidates(data, exe, debug_root) {
        let under = root.join(path.strip_prefix("/").unwrap_or(&path));
        let Ok(bytes) = std::fs::read(&under) else { continue };
        if crc.is_some_and(|c| crc32fast::hash(&bytes) != c) {
            continue;
        }
        return Some((under, bytes));
    }
    None
}

/// The debug root: `LEAKPROF_DEBUG_ROOT` (for tests and unusual layouts) or /usr/lib/debug.
pub fn debug_root() -> PathBuf {
    std::env::var_os("LEAKPROF_DEBUG_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEBUG_ROOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_build_id_and_debuglink_conventions() {
        // this test binary has a build id (Debian's linker default)
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let Some(id) = build_id(&me) else {
            eprintln!("SKIPPED: the test binary has no build id");
            return;
        };
        let c = candidates(&me, Path::new("/opt/app/bin/app"), Path::new("/usr/lib/debug"));
        let h = hex(&id);
        assert_eq!(c[0].0, PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &h[..2], &h[2..])));
        assert_eq!(c[0].1, None);
        assert!(debuglink(&me).is_none(), "a plain build has no debuglink");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn find_checks_the_debuglink_crc() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926, "CRC-32 (IEEE), as gdb computes it");
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // nothing installed under an empty root
        let root = std::env::temp_dir().join(format!("leakprof-dbg-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        assert!(find(&me, Path::new("/x/app"), &root, Path::new("/usr/lib/debug")).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
