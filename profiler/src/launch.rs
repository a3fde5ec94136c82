//! `leakprof run`: start a program stopped right after exec, so probes are in place before its
//! first instruction, then let it go.
use std::{
    os::fd::AsFd as _,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// A launched program, stopped (ptrace) at its exec until [`Launched::resume`].
pub struct Launched {
    pub child: Child,
    pub pid: u32,
    resumed: bool,
}

/// Who the launched program runs as: `sudo leakprof run` runs it as the user who ran sudo, never
/// as root unless asked (`--user root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// For the supplementary groups (initgroups); None: no supplementary groups.
    pub name: Option<std::ffi::CString>,
}

impl RunAs {
    /// `--user NAME|UID`, else the invoking user of sudo (SUDO_UID, SUDO_GID, SUDO_USER), else
    /// None: the program runs as leakprof does.
    pub fn resolve(user: Option<&str>) -> Result<Option<RunAs>> {
        if let Some(u) = user {
            return lookup_user(u).map(Some);
        }
        let (Ok(uid), Ok(gid)) = (std::env::var("SUDO_UID"), std::env::var("SUDO_GID")) else {
            return Ok(None);
        };
        let (uid, gid) = (uid.parse().context("SUDO_UID is not a number")?, gid.parse().context("SUDO_GID is not a number")?);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = std::env::var("SUDO_USER").ok().and_then(|n| std::ffi::CString::new(n).ok());
        Ok(Some(RunAs { uid, gid, name }))
    }
}

/// A user by name or number, from the password database.
fn lookup_user(user: &str) -> Result<RunAs> {
    let c = std::ffi::CString::new(user).context("a user name has no NUL byte")?;
    // SAFETY: getpwnam/getpwuid return a pointer into static storage or null; read at once.
    let pw = unsafe {
        match user.parse::<u32>() {
            Ok(uid) => libc::getpwuid(uid),
            Err(_) => libc::getpwnam(c.as_ptr()),
        }
    };
    if pw.is_null() {
        if let Ok(uid) = user.parse::<u32>() {
            return Ok(RunAs { uid, gid: uid, name: None });
        }
        bail!("--user {user}: no such user");
    }
    // SAFETY: pw is a valid passwd entry (checked non-null above).
    let (uid, gid, name) = unsafe { ((*pw).pw_uid, (*pw).pw_gid, std::ffi::CStr::from_ptr((*pw).pw_name).to_owned()) };
    Ok(RunAs { uid, gid, name: Some(name) })
}

/// Starts `cmd` traced: the kernel stops it with SIGTRAP once exec has mapped the new image.
/// With `stdout_to_stderr` the program writes its standard output to our standard error (so
/// that our standard output stays one report document). With `run_as` it drops to that user
/// (groups, then gid, then uid) before exec.
pub fn spawn_stopped(cmd: &[String], stdout_to_stderr: bool, run_as: Option<RunAs>) -> Result<Launched> {
    let (prog, args) = cmd.split_first().context("no program given after --")?;
    let mut c = Command::new(prog);
    c.args(args);
    if stdout_to_stderr {
        let err = std::io::stderr().as_fd().try_clone_to_owned().context("cannot dup stderr")?;
        c.stdout(std::process::Stdio::from(err));
    }
    // SAFETY: only async-signal-safe syscalls between fork and exec (initgroups reads the group
    // database: it is called only when a user name is known, as su and sudo themselves do).
    unsafe {
        c.pre_exec(move || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(u) = &run_as {
                let groups = match &u.name {
                    Some(n) => libc::initgroups(n.as_ptr(), u.gid),
                    None => libc::setgroups(0, std::ptr::null()),
                };
                if groups == -1 || libc::setgid(u.gid) == -1 || libc::setuid(u.uid) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = c.spawn().with_context(|| format!("cannot start `{prog}`: is it on PATH?"))?;
    let pid = child.id();
    let mut status = 0;
    // SAFETY: waiting for our own child's first stop.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    if r != pid as i32 || !libc::WIFSTOPPED(status) {
        bail!("`{prog}` did not stop after exec (wait status {status:#x})");
    }
    Ok(Launched { child, pid, resumed: false })
}

impl Launched {
    /// Lets the program run (detaches ptrace, no signal delivered).
    pub fn resume(&mut self) -> Result<()> {
        if !self.resumed {
            // SAFETY: plain syscall on our stopped tracee.
            let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid as i32, 0, 0) };
            if r == -1 {
                bail!("cannot resume pid {}: {}", self.pid, std::io::Error::last_os_error());
            }
            self.resumed = true;
        }
        Ok(())
    }

    /// Stops the program if it still runs (SIGTERM, then SIGKILL after `grace`) and reaps it.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.resume()?;
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }
}

impl Drop for Launched {
    /// Never leaves the program behind: stopped at its exec, or running after an error.
    fn drop(&mut self) {
        if !self.resumed {
            let _ = self.child.kill();
            let _ = self.resume();
            let _ = self.child.wait();
        } else {
            let _ = self.stop(Duration::from_secs(2));
        }
    }
}

/// The exit code a shell would show for a status (128 + signal for a killed program).
pub fn shell_code(st: &ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_stopped_then_runs_to_completion() {
        let mut l = spawn_stopped(&["sh".into(), "-c".into(), "exit 7".into()], true, None).unwrap();
        // stopped at exec: /proc shows the new image and a traced stop
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", l.pid)).unwrap();
        let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next().unwrap().to_string();
        assert_eq!(state, "t", "{stat}");
        assert!(std::fs::read_link(format!("/proc/{}/exe", l.pid)).unwrap().ends_with("dash")
            || std::fs::read_link(format!("/proc/{}/exe", l.pid)).unwrap().to_string_lossy().contains("sh"));
        l.resume().unwrap();
        let st = l.child.wait().unwrap();
        assert_eq!(shell_code(&st), 7);
        // stop() on a program that already exited just reports its status
        assert_eq!(shell_code(&l.stop(Duration::from_secs(1)).unwrap()), 7);
    }

    /// An error after the program was resumed used to leave it running.
    #[test]
    fn a_dropped_launch_never_leaves_the_program_running() {
        let mut l = spawn_stopped(&["sleep".into(), "30".into()], true, None).unwrap();
        l.resume().unwrap();
        let pid = l.pid;
        drop(l);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still there");
    }

    /// `sudo leakprof run` runs the program as the invoking user, not as root.
    #[test]
    fn the_program_runs_as_the_user_asked_for() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED the_program_runs_as_the_user_asked_for: needs root to switch users");
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true: this test needs root");
            return;
        }
        let nobody = lookup_user("nobody").unwrap();
        let mut l = spawn_stopped(&["sh".into(), "-c".into(), "exit $(id -u)".into()], true, Some(nobody.clone())).unwrap();
        l.resume().unwrap();
        assert_eq!(shell_code(&l.child.wait().unwrap()) as u32, nobody.uid & 0xff);
        assert!(lookup_user("no-such-user-here").unwrap_err().to_string().contains("no such user"));
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let err = spawn_stopped(&["/nonexistent/prog".into()], false, None).err().unwrap().to_string();
        assert!(err.contains("cannot start `/nonexistent/prog`"), "{err}");
    }
}
