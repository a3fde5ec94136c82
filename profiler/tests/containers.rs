//! A target in a container: its own pid and mount namespaces, its executable at a path that
//! does not exist on the host. leakprof profiles it from the host by its host pid, and from a
//! process that joined its namespaces (the `kubectl debug --target` shape) by its pid there; the
//! executable is read through /proc/PID/exe and the report names the container's path.
mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// The fixture started as pid 1 of a new pid and mount namespace, from a tmpfs mounted inside it
/// at /mnt/app (the host's /mnt is untouched). Killed when dropped.
struct Contained {
    unshare: Child,
    /// The host pid of the fixture.
    pid: u32,
}

impl Drop for Contained {
    fn drop(&mut self) {
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn contained(fixture: &str, args: &str) -> Contained {
    let script = format!(
        "mount -t tmpfs none /mnt && mkdir -p /mnt/app && cp {} /mnt/app/server && exec /mnt/app/server {args}",
        common::fixture(fixture).display()
    );
    let unshare = Command::new("unshare")
        .args(["--pid", "--mount", "--fork", "--mount-proc", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    let t0 = Instant::now();
    loop {
        let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", unshare.id(), unshare.id())).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("mnt/app/server")) {
                return Contained { unshare, pid };
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the contained fixture did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(out: std::process::Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"))
}

#[test]
fn a_contained_target_is_profiled_by_host_pid_and_from_inside_its_namespaces() {
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("a_contained_target_is_profiled", "namespaces need root");
        return;
    }
    let c = contained("tokio-latest", "mixed");
    assert!(!std::path::Path::new("/mnt/app/server").exists(), "the executable's path must not exist on the host");
    // from the host, by the host pid
    let r = json(leakprof().args(["--pid", &c.pid.to_string(), "--duration", "10", "--format", "json"]).output().unwrap());
    assert_eq!(r["target"]["exe"], "/mnt/app/server", "the container's path: {}", r["target"]);
    let s = site(&r, "never_answered");
    assert_eq!(s["verdict"], "leak", "{s}");
    assert!(s["file"].as_str().is_some_and(|f| f.ends_with("leaks.rs")), "{s}");
    // from a process that joined its pid and mount namespaces, where it is pid 1
    let out = Command::new("nsenter")
        .args(["--target", &c.pid.to_string(), "--pid", "--mount"])
        .arg(env!("CARGO_BIN_EXE_leakprof"))
        .args(["--pid", "1", "--duration", "10", "--format", "json"])
        .output()
        .unwrap();
    let r = json(out);
    assert_eq!(r["target"]["pid"], 1);
    assert_eq!(r["target"]["exe"], "/mnt/app/server");
    assert_eq!(site(&r, "never_answered")["verdict"], "leak");
}
