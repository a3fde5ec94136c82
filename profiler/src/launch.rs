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

/// Starts `cmd` traced: the kernel stops it with SIGTRAP once exec has mapped the new image.
/// With `stdout_to_stderr` the program writes its standard output to our standard error (so
/// that our standard output stays one report document).
pub fn spawn_stopped(cmd: &[String], stdout_to_stderr: bool) -> Result<Launched> {
    let (prog, args) = cmd.split_first().context("no program given after --")?;
    let mut c = Command::new(prog);
    c.args(args);
    if stdout_to_stderr {
        let err = std::io::stderr().as_fd().try_clone_to_owned().context("cannot dup stderr")?;
        c.stdout(std::process::Stdio::from(err));
    }
    // SAFETY: only an async-signal-safe syscall between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
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
    fn drop(&mut self) {
        if !self.resumed {
            // never leave a stopped program behind
            let _ = self.child.kill();
            let _ = self.resume();
            let _ = self.child.wait();
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
        let mut l = spawn_stopped(&["sh".into(), "-c".into(), "exit 7".into()], true).unwrap();
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

    #[test]
    fn missing_program_is_a_clear_error() {
        let err = spawn_stopped(&["/nonexistent/prog".into()], false).err().unwrap().to_string();
        assert!(err.contains("cannot start `/nonexistent/prog`"), "{err}");
    }
}
