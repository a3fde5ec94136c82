//! Command-line interface: flags and their defaults (one place).
use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::{ignore::IgnoreRules, options::RunOptions, report::Format};

impl DaemonArgs {
    pub fn config(&self) -> Result<crate::daemon::DaemonConfig> {
        let token = match &self.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        if self.pids.is_empty() && self.names.is_empty() && self.cgroups.is_empty() && !self.all {
            anyhow::bail!("say what to watch: --pid PID, --name GLOB, --cgroup GLOB or --all");
        }
        Ok(crate::daemon::DaemonConfig {
            listen: self.listen,
            allow_remote: self.allow_remote,
            token,
            select: std::sync::Arc::new(crate::daemon::Selector::new(self.pids.clone(), &self.names, &self.cgroups, self.all)?),
            interval: Duration::from_secs_f64(self.common.interval),
            retention: self.retention.max(10),
            top_k: self.top_k.max(1),
            max_rss_bytes: self.max_rss_mib.max(1) << 20,
            session: crate::options::RunOptions { retention: self.retention.max(16), ..self.common.run_options(0)? },
        })
    }
}

/// Find the spawn sites whose tasks never finish, in an unmodified running program: tokio tasks,
/// Go goroutines, or threads blocked in any native program.
#[derive(Debug, Parser)]
#[command(name = "leakprof", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Process to attach to.
    #[arg(long, short = 'p')]
    pub pid: Option<u32>,
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a program under the profiler from its first instruction (a CI gate):
    /// `leakprof run --fail-on-leak --duration 30 -- ./server --port 0`.
    Run {
        #[command(flatten)]
        common: Common,
        /// Run the program as this user (name or uid). Default: under sudo, the user who ran sudo
        /// (SUDO_UID/SUDO_GID), never root unless `--user root`; else leakprof's own user.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// Watch many targets continuously and serve Prometheus metrics, the JSON report and an HTML
    /// page (read-only, 127.0.0.1 unless --allow-remote).
    Daemon(DaemonArgs),
    /// Every task, goroutine and blocked thread now, by spawn site, with every stack they wait
    /// in: one census of a live process (never stopped) or of a core file; `--diff A B` compares
    /// two dumps. Nothing is judged over time.
    Dump(DumpArgs),
    /// What this kernel offers each mode: every kernel feature `--probes` needs, the Linux
    /// release that brought it and whether this kernel has it (asking bpf() needs root).
    Features {
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["pid", "core", "diff"]))]
pub struct DumpArgs {
    /// A live process (read without stopping it).
    #[arg(long, short = 'p')]
    pub pid: Option<u32>,
    /// A core file (gcore, a kernel core dump, GOTRACEBACK=crash): its executable is found
    /// through the core's file notes, and checked by build id.
    #[arg(long, value_name = "FILE")]
    pub core: Option<PathBuf>,
    /// The executable that produced the core, when it is not where the core says (another
    /// machine, a container's path).
    #[arg(long, value_name = "FILE")]
    pub exe: Option<PathBuf>,
    /// Two dumps (`--format json` files, or core files) compared: the sites whose live count
    /// grew between them, with the growth per hour.
    #[arg(long, num_args = 2, value_names = ["BEFORE", "AFTER"])]
    pub diff: Option<Vec<PathBuf>>,
    /// The executable's symbols and DWARF from this separate debug file.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
    /// Output format: text, json (schema `leakprof-dump`, what --diff reads), or pprof (-o FILE).
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the dump to FILE instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Also list threads blocked in syscalls in a program without tokio (live processes).
    #[arg(long, conflicts_with = "no_threads")]
    pub threads: bool,
    /// Do not list blocked threads.
    #[arg(long)]
    pub no_threads: bool,
    /// --diff: exit with status 4 when a site grew.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// What the dump may read of the target, MiB.
    #[arg(long, value_name = "MIB", default_value_t = RunOptions::default().read_limits.bytes >> 20)]
    pub read_budget_mib: u64,
}

impl DumpArgs {
    /// The options of the one census a dump takes (no probes; every wait read, nearly).
    pub fn run_options(&self, pid: u32) -> RunOptions {
        RunOptions {
            pid,
            read_limits: crate::target::memory::ReadLimits { bytes: self.read_budget_mib.max(1) << 20, ..Default::default() },
            threads: self.threads,
            no_threads: self.no_threads,
            symbols: self.symbols.clone(),
            waits: crate::options::WaitSampling::DUMP,
            ..RunOptions::default()
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// Allow serving on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// File holding a bearer token required by every request for data (`Authorization: Bearer T`;
    /// the page asks for it and sends it that way).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Watch this pid (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Watch processes whose name or executable matches this glob, and their restarts (repeatable).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Watch processes whose cgroup path matches this glob, e.g. '/system.slice/app*' (repeatable).
    #[arg(long = "cgroup")]
    pub cgroups: Vec<String>,
    /// Watch every process whose executable is a tokio or Go program.
    #[arg(long)]
    pub all: bool,
    /// Samples kept per target (bounded memory): 3600 = one hour at 1 s.
    #[arg(long, default_value_t = 3600)]
    pub retention: usize,
    /// Sites reported per target; the rest are summed into one row.
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// leakprof's own memory limit, MiB: past it the target whose history holds the most sites
    /// is detached (and not retried) with a warning, until the daemon is back under it.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub max_rss_mib: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Options shared by `--pid` and `run`.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Time between samples: seconds (`0.5`) or with units (`500ms`, `2s`).
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    pub interval: f64,
    /// Stop after this long: seconds (`30`) or with units (`20s`, `5m`, `1h30m`) (default: until
    /// Ctrl-C or the target exits; `run` then stops the program).
    #[arg(long, short = 'd', value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// One shot: watch for --duration (10 s unless given), print only the final report.
    #[arg(long)]
    pub once: bool,
    /// Output format of the final report.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the final report to FILE instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// No per-interval output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Per-interval output as plain lines even on a terminal (no refreshing view).
    #[arg(long)]
    pub plain: bool,
    /// How many sites the per-interval view shows.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Exit with status 4 when a site (not ignored) is judged `leak`.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Ignore sites whose function matches this glob (`*` spans `::`); repeatable.
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Ignore sites spawned from a frame matching this glob ("created by"); repeatable.
    #[arg(long = "ignore-created-by", value_name = "PATTERN")]
    pub ignore_created_by: Vec<String>,
    /// TOML config file with an `[ignore]` table (`functions = [..]`, `created_by = [..]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Watch threads blocked in syscalls, also in a program without tokio (any native program):
    /// grouped by syscall family (futex: locks and condvars; read: read/recv*; write:
    /// write/send*; accept; connect; poll: poll/select/epoll_wait; sleep: nanosleep,
    /// clock_nanosleep, pause; wait: wait4/waitid; lock: flock, fcntl F_SETLKW; other) and wait
    /// site. A runtime's own idle threads are shown as `runtime idle`.
    #[arg(long, conflicts_with = "no_threads")]
    pub threads: bool,
    /// Do not watch blocked threads (watched by default in tokio programs, through /proc; with
    /// --probes also by futex tracepoints).
    #[arg(long)]
    pub no_threads: bool,
    /// Copy the spawning stack of the first births of each site and then of every Nth birth
    /// (0 = no spawn stacks).
    #[arg(long, default_value_t = RunOptions::default().stack_period, value_name = "N")]
    pub stack_period: u64,
    /// Count with uprobes: exact births and finishes between samples and lifetimes. tokio:
    /// bind_inner / Schedule::release, with the census of the task lists alongside (live counts
    /// include tasks spawned before attach); Go: newproc1 returns and gdestroy, instead of the
    /// census of runtime.allgs. Without it, both runtimes are read from outside only (the
    /// default: no probe, no cost in the target).
    #[arg(long, alias = "go-probes")]
    pub probes: bool,
    /// Do not measure what each site's tasks hold (bytes per task, bytes per hour, time to the
    /// memory limit): what that measuring costs is `cargo xtask bench-census --bytes-only`.
    #[arg(long)]
    pub no_bytes: bool,
    /// Benchmarks only: attach the probes' programs empty (they count nothing), to measure
    /// what the uprobe traps alone cost (`cargo xtask bench`). Implies --probes.
    #[arg(long, hide = true)]
    pub empty_probes: bool,
    /// Capacity of the kernel's live-task table. tokio (births at bind_inner): slots by task id,
    /// rounded up to a power of two; a task whose slot a later birth takes is still counted, its
    /// lifetime unmeasured (`slot_reused`). Go, tokio 1.28: tasks beyond it are counted as lost.
    #[arg(long, default_value_t = RunOptions::default().max_tasks)]
    pub max_tasks: u32,
    /// What one sample may read of the target, MiB (and at most a million read calls): past it
    /// the census stops and the report says its counts are partial.
    #[arg(long, value_name = "MIB", default_value_t = RunOptions::default().read_limits.bytes >> 20)]
    pub read_budget_mib: u64,
    /// How where each tokio task waits is read: `auto` uses the binary's DWARF types when it has
    /// them (debug = 2), else its machine code; `dwarf` or `code` force one (to compare them).
    #[arg(long, value_enum, default_value_t = crate::runtimes::tokio::AwaitDecoder::Auto)]
    pub await_decoder: crate::runtimes::tokio::AwaitDecoder,
    /// The executable's symbols and DWARF from this separate debug file (`objcopy
    /// --only-keep-debug`, a `-dbg` package); without it they are looked for by build id under
    /// /usr/lib/debug/.build-id/ and by .gnu_debuglink (next to the executable, in .debug/, under
    /// /usr/lib/debug/). Its build id must match the executable's.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
    /// Record the detector's inputs at every sample to FILE (JSON lines), for replay.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// A positive duration: plain seconds (`20`, `0.5`) or with units (`500ms`, `20s`, `5m`, `1h30m`,
/// `1h 30m 10s`; units h, m/min, s/sec, ms).
pub fn positive_secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let total = match t.parse::<f64>() {
        Ok(v) => v,
        Err(_) => with_units(t).ok_or_else(|| {
            format!("`{s}` is not a duration: give seconds (`20`, `0.5`) or units (`500ms`, `20s`, `5m`, `1h30m`)")
        })?,
    };
    if total.is_finite() && total > 0.0 {
        Ok(total)
    } else {
        Err(format!("`{s}` must be a positive duration"))
    }
}

/// Seconds in `1h30m`, `500ms`, `2m 5s`; None when anything else is there.
fn with_units(t: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = t;
    let mut parts = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let v: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += v * scale;
        parts += 1;
    }
    (parts > 0).then_some(total)
}

#[cfg(test)]
mod duration_tests {
    use super::positive_secs;

    #[test]
    fn durations_with_and_without_units() {
        for (s, v) in [("20", 20.0), ("0.5", 0.5), ("20s", 20.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1h 30m 10s", 5410.0), ("1.5m", 90.0)] {
            assert_eq!(positive_secs(s), Ok(v), "{s}");
        }
        for bad in ["", "-3", "0", "0s", "5x", "m", "1h30", "s5", "1e999", "NaN", "abc"] {
            let e = positive_secs(bad).unwrap_err();
            assert!(e.contains(bad) || bad.is_empty(), "{bad}: {e}");
        }
    }
}

/// One-shot runs watch this long unless --duration says otherwise.
pub const ONCE_DEFAULT_S: f64 = 10.0;

impl Common {
    pub fn run_options(&self, pid: u32) -> Result<RunOptions> {
        let duration = self.duration.or(self.once.then_some(ONCE_DEFAULT_S));
        Ok(RunOptions {
            pid,
            interval: Duration::from_secs_f64(self.interval),
            duration: duration.map(Duration::from_secs_f64),
            max_tasks: self.max_tasks,
            read_limits: crate::target::memory::ReadLimits { bytes: self.read_budget_mib.max(1) << 20, ..Default::default() },
            await_decoder: self.await_decoder,
            ignore: IgnoreRules::new(&self.ignore, &self.ignore_created_by, self.config.as_deref())?,
            threads: self.threads,
            stack_period: self.stack_period,
            probes: self.probes || self.empty_probes,
            empty_probes: self.empty_probes,
            measure_bytes: !self.no_bytes,
            no_threads: self.no_threads,
            record: self.record.clone(),
            symbols: self.symbols.clone(),
            ..RunOptions::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["leakprof", "--pid", "42", "-d", "5", "--format", "json"]).unwrap();
        assert_eq!(c.pid, Some(42));
        assert_eq!(c.common.run_options(42).unwrap().duration, Some(Duration::from_secs(5)));
        assert_eq!(c.common.format, Format::Json);
        assert!(Cli::try_parse_from(["leakprof", "--pid", "1", "--interval", "0"]).is_err());
        let once = Cli::try_parse_from(["leakprof", "--pid", "1", "--once"]).unwrap();
        assert_eq!(once.common.run_options(1).unwrap().duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn run_subcommand_takes_the_program_after_dashes() {
        let c = Cli::try_parse_from(["leakprof", "run", "--fail-on-leak", "--", "prog", "--flag", "x"]).unwrap();
        match c.command {
            Some(Command::Run { common, cmd, .. }) => {
                assert!(common.fail_on_leak);
                assert_eq!(cmd, vec!["prog", "--flag", "x"]);
            }
            _ => panic!("not the run subcommand"),
        }
        assert!(Cli::try_parse_from(["leakprof", "run"]).is_err());
    }

    #[test]
    fn dump_takes_one_of_pid_core_diff() {
        let c = Cli::try_parse_from(["leakprof", "dump", "--pid", "9", "--format", "json"]).unwrap();
        let Some(Command::Dump(d)) = c.command else { panic!("not the dump subcommand") };
        assert_eq!((d.pid, d.format), (Some(9), Format::Json));
        assert_eq!(d.run_options(9).waits, crate::options::WaitSampling::DUMP);
        let c = Cli::try_parse_from(["leakprof", "dump", "--diff", "a.json", "b.json"]).unwrap();
        let Some(Command::Dump(d)) = c.command else { panic!() };
        assert_eq!(d.diff.unwrap().len(), 2);
        assert!(Cli::try_parse_from(["leakprof", "dump"]).is_err(), "nothing to dump");
        assert!(Cli::try_parse_from(["leakprof", "dump", "--pid", "1", "--core", "c"]).is_err(), "two targets");
        assert!(Cli::try_parse_from(["leakprof", "dump", "--diff", "a.json"]).is_err(), "one dump to compare");
    }

    #[test]
    fn daemon_needs_something_to_watch_and_parses_selectors() {
        let c = Cli::try_parse_from(["leakprof", "daemon", "--name", "app*", "--cgroup", "/a/*", "--pid", "7"]).unwrap();
        let Some(Command::Daemon(d)) = c.command else { panic!("not the daemon subcommand") };
        let cfg = d.config().unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(cfg.select.pids, vec![7]);
        let bare = Cli::try_parse_from(["leakprof", "daemon"]).unwrap();
        let Some(Command::Daemon(d)) = bare.command else { panic!() };
        assert!(d.config().is_err());
    }
}
