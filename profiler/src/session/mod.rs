//! One profiling run against one process: attach the program's runtime (and the futex
//! tracepoints), sample every interval into bounded histories judged as they grow, detach,
//! report. The runtime-specific parts live in `runtimes/`; the report is assembled in `report`.
mod dump;
mod record;
mod report;
mod symbols;

use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

pub use crate::options::RunOptions;
use crate::{
    elf::ElfImage,
    judged::Judged,
    model::{EndReason, Report, SiteReport},
    preflight,
    runtimes::{self, threads::Threads, Source, SourceKind},
    target::Target,
};

/// Called after every sample with the elapsed time and the judged sites, worst first.
pub type ProgressFn<'a> = dyn FnMut(f64, &[SiteReport]) + 'a;

/// Fault injection for the daemon's isolation tests: `LEAKPROF_INJECT_FAULT=KIND:PID[,..]`
/// makes the session of PID stall 30 s in its attach (`stall-attach`) or panic in every sample
/// (`panic-sample`), as a target that makes leakprof's reads hang or hostile bytes that pass
/// every check would. Unset, it costs one environment lookup per sample.
fn injected_fault(kind: &str, pid: u32) {
    let Ok(spec) = std::env::var("LEAKPROF_INJECT_FAULT") else { return };
    if !spec.split(',').any(|f| f == format!("{kind}:{pid}")) {
        return;
    }
    match kind {
        "stall-attach" => std::thread::sleep(std::time::Duration::from_secs(30)),
        _ => panic!("injected fault {kind} for pid {pid}"),
    }
}

/// A panic caught while reading a target: what leakprof read made no sense to it (hostile
/// bytes, or a bug). The target is detached, never retried by the daemon.
#[derive(Debug)]
pub struct ReadPanic {
    pub pid: u32,
    pub message: String,
}

impl std::fmt::Display for ReadPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "leakprof failed inside while reading pid {} ({}): its binary or memory holds something leakprof \
             could not make sense of, or this is a leakprof bug (please report it with the binary's version)",
            self.pid, self.message
        )
    }
}

impl std::error::Error for ReadPanic {}

/// Runs `f`, reading target `pid`; a panic inside (bytes leakprof could not make sense of, or a
/// bug) becomes a [`ReadPanic`] error.
pub fn contained<T>(pid: u32, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(anyhow::Error::new(ReadPanic { pid, message: crate::daemon::panic_message(&*p) })))
}

/// One source of sites and its judged history.
pub(crate) struct Watched {
    pub(crate) source: Box<dyn Source>,
    pub(crate) judged: Judged<u64>,
}

/// An attached session, ready to sample.
pub struct Session {
    opts: RunOptions,
    target: Target,
    /// Every source, sampled alike: the task runtime first (if the program has one), then the
    /// blocked threads (tokio programs by default, any program with --threads).
    sources: Vec<Watched>,
    recorder: Option<crate::record::Recorder>,
    /// Samples taken, and the time each timed interval's work took.
    samples: usize,
    sample_ms: SampleTimes,
    started: Instant,
    warnings: Vec<String>,
    /// The separate debug file the symbols came from, if any.
    symbols_file: Option<String>,
    /// (sample time, resident set bytes), for the samples still on the time axis.
    rss: Vec<(f64, u64)>,
    /// The work of the last two intervals (the least of them paces the next sample: one slow
    /// sample, such as the first with its one-time reading of the binary's debug info, stretches
    /// nothing), and the intervals stretched so far with the longest (see [`next_sample_at`]).
    last_work: [std::time::Duration; 2],
    stretched: (u64, std::time::Duration),
}

/// The share of its time leakprof may spend sampling one target: an interval whose work took
/// longer is followed by a longer one, so a sample that outgrows the interval (a huge runtime, a
/// slow machine) never makes leakprof fall behind or busy all the time. The detector takes the
/// uneven time steps as they come.
pub const MAX_BUSY: f64 = 0.2;

/// When the sample after one scheduled at `scheduled` is due: on schedule, or, when its `work`
/// took more than [`MAX_BUSY`] of the interval, late enough that the work is that share of the
/// stretched interval (never before `now`).
pub fn next_sample_at(scheduled: Instant, interval: std::time::Duration, work: std::time::Duration, now: Instant) -> Instant {
    let on_time = scheduled + interval;
    let spaced = now + work.mul_f64((1.0 - MAX_BUSY) / MAX_BUSY);
    on_time.max(spaced).max(now)
}

impl Session {
    /// Checks everything, then attaches. Every error is one actionable sentence (a panic while
    /// reading the binary is a [`ReadPanic`] error).
    pub fn attach(opts: RunOptions) -> Result<Session> {
        contained(opts.pid, || Self::attach_inner(opts))
    }

    fn attach_inner(opts: RunOptions) -> Result<Session> {
        injected_fault("stall-attach", opts.pid);
        preflight::check_privileges(opts.probes)?;
        preflight::raise_memlock();
        let pid = opts.pid;
        preflight::check_read_access(pid)?;
        let target = Target::open(pid)?;
        Self::attach_to(opts, target)
    }

    /// Attaches to an opened target: a live process, or a core file (census only, no threads).
    pub fn attach_to(opts: RunOptions, target: Target) -> Result<Session> {
        let what = target.space.label();
        let image = ElfImage::open(&target.exe_proc_path).with_context(|| format!("cannot read the executable of {what}"))?;
        preflight::check_machine(&image).map_err(|e| anyhow!("{what}: {}: {e}", target.exe.display()))?;
        let (image, symbols_file) = symbols::with_debug_file(&opts, &target, image)?;
        let segs: Vec<(u64, u64, u64)> = image.load_segments().iter().map(|s| (s.vaddr, s.file_offset, s.file_size)).collect();
        let bias = target.load_bias(&segs).ok_or_else(|| anyhow!("{what}: cannot relate its memory map to its executable"))?;
        let runtime: Option<Box<dyn Source>> = runtimes::attach(&opts, &target, &image, bias).transpose()?;
        if runtime.is_none() && target.space.pid().is_none() {
            bail!("{what}: no tokio or Go runtime found in {}: a core is read for tokio tasks and Go goroutines", target.exe.display());
        }
        if runtime.is_none() && !opts.threads {
            bail!(
                "{what}: no tokio symbols found: the target does not look like a tokio program (nor a Go one); \
                 to watch its threads blocked in syscalls (locks, reads, accepts, sleeps) instead, add --threads"
            );
        }
        // blocked threads: any program with --threads; a tokio program unless --no-threads
        let tokio = runtime.as_ref().is_some_and(|r| r.info().name == "tokio");
        let live = target.space.pid().is_some();
        let threads: Option<Box<dyn Source>> = if live && (opts.threads || (tokio && !opts.no_threads)) {
            Some(Box::new(Threads::attach(&opts, &target, &image, bias)?))
        } else {
            None
        };
        let sources = runtime.into_iter().chain(threads).map(|source| Watched { source, judged: Judged::new(opts.retention) }).collect();
        // the sources' own warnings are asked for at each report (they can change as they run)
        let warnings = Vec::new();
        Ok(Session {
            symbols_file,
            rss: Vec::new(),
            last_work: [std::time::Duration::ZERO; 2],
            stretched: (0, std::time::Duration::ZERO),
            opts,
            target,
            sources,
            recorder: None,
            samples: 0,
            sample_ms: SampleTimes::default(),
            started: Instant::now(),
            warnings,
        })
    }

    pub fn pid(&self) -> u32 {
        self.opts.pid
    }

    pub fn target_alive(&self) -> bool {
        self.target.alive()
    }

    /// False once the target has exec'd another program (its probes point at the old one).
    pub fn target_same_exe(&self) -> bool {
        self.target.same_exe()
    }

    /// Takes one sample of every source and judges every site. A panic inside (hostile bytes
    /// that slipped past a check, or a bug) is caught and returned as a [`ReadPanic`] error: the
    /// run can still detach and report.
    pub fn sample(&mut self) -> Result<()> {
        contained(self.opts.pid, || self.sample_inner())
    }

    fn sample_inner(&mut self) -> Result<()> {
        injected_fault("panic-sample", self.opts.pid);
        let t_s = self.started.elapsed().as_secs_f64();
        for w in &mut self.sources {
            let s = w.source.sample()?;
            w.judged.push(t_s, &s, &self.opts.detect);
        }
        if let Some(rss) = crate::target::memory_limit::rss_bytes(self.opts.pid) {
            self.rss.push((t_s, rss));
        }
        // the time axis thins its older half when full: keep the readings it still has
        if self.rss.len() > self.times_s().len() + 64 {
            let times = self.times_s().to_vec();
            self.rss.retain(|(t, _)| times.binary_search_by(|x| x.total_cmp(t)).is_ok());
        }
        if self.opts.record.is_some() {
            self.record()?;
        }
        self.samples += 1;
        Ok(())
    }

    /// Counts one interval's whole work, from `started` (before its sample) to now: reading,
    /// judging, naming and where-stuck (`collection.sample_ms_*`).
    pub fn note_interval(&mut self, started: Instant) {
        let work = started.elapsed();
        self.last_work = [self.last_work[1], work];
        let dt = work.as_secs_f64() * 1e3;
        self.sample_ms.add(dt);
    }

    /// When the next sample is due after the one scheduled at `scheduled` (see
    /// [`next_sample_at`]); a stretched interval is counted for the report.
    pub fn next_due(&mut self, scheduled: Instant) -> Instant {
        let now = Instant::now();
        let work = self.last_work[0].min(self.last_work[1]);
        let next = next_sample_at(scheduled, self.opts.interval, work, now);
        let period = next.saturating_duration_since(scheduled);
        if period > self.opts.interval + self.opts.interval / 20 && work.as_secs_f64() > MAX_BUSY * self.opts.interval.as_secs_f64() {
            self.stretched = (self.stretched.0 + 1, self.stretched.1.max(period));
        }
        next
    }

    /// The sources of one kind.
    pub(crate) fn of_kind(&mut self, kind: SourceKind) -> impl Iterator<Item = &mut Watched> {
        self.sources.iter_mut().filter(move |w| w.source.kind() == kind)
    }

    /// The task runtime, if the program has one.
    pub(crate) fn runtime(&self) -> Option<&dyn Source> {
        self.sources.iter().find(|w| w.source.kind() == SourceKind::Tasks).map(|w| &*w.source)
    }

    /// The target exited, or replaced its program (exec): what was attached no longer applies.
    fn target_gone(&self) -> bool {
        !self.target.alive() || !self.target.same_exe()
    }

    /// Runs until the duration, a signal or the target's exit; detaches; returns the report.
    pub async fn run(mut self, progress: &mut ProgressFn<'_>) -> Result<Report> {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let deadline = self.opts.duration.map(|d| self.started + d);
        let mut next = self.started + self.opts.interval;
        let ended = loop {
            // a stretched interval is slept through in steps of at most a second, so an exit of the
            // target is still seen within one
            let wake = deadline.map_or(next, |d| d.min(next)).min(Instant::now() + std::time::Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = sigint.recv() => break EndReason::Interrupted,
                _ = sigterm.recv() => break EndReason::Interrupted,
            }
            let now = Instant::now();
            if now < next && deadline.is_none_or(|d| now < d) {
                if self.target_gone() {
                    break EndReason::TargetExited;
                }
                continue;
            }
            let t0 = Instant::now();
            if let Err(e) = self.sample() {
                // a target that exits (or execs) while it is being read ends the run, with its report
                if self.target_gone() {
                    break EndReason::TargetExited;
                }
                if e.is::<ReadPanic>() {
                    self.warnings.push(e.to_string());
                    break EndReason::ReadFailed;
                }
                return Err(e);
            }
            let memory = self.memory(&self.times_s().to_vec());
            let sites = self.sites(&memory);
            progress(self.started.elapsed().as_secs_f64(), &sites);
            self.note_interval(t0);
            if self.target_gone() {
                break EndReason::TargetExited;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break EndReason::Duration;
            }
            next = self.next_due(next);
        };
        if ended == EndReason::Interrupted && self.target.alive() {
            // a last sample so the report covers the run up to the signal; if it fails, the
            // report still covers the run up to the sample before
            if let Err(e) = self.sample() {
                self.warnings.push(format!("the last sample, taken at the signal, failed ({e:#}); the report covers the run until the sample before"));
            }
        }
        Ok(self.finish(ended))
    }

    /// Detaches every probe and builds the report.
    pub fn finish(mut self, ended: EndReason) -> Report {
        for w in &mut self.sources {
            w.source.detach();
        }
        if ended == EndReason::TargetExited {
            let what = if self.target.alive() { "replaced its program (exec)" } else { "exited" };
            self.warnings.push(format!("pid {} {what} during the run; the report covers the time until then", self.opts.pid));
        }
        self.report(ended)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{next_sample_at, MAX_BUSY};

    #[test]
    fn a_slow_sample_stretches_the_interval_to_stay_a_fifth_busy() {
        let (t0, sec) = (Instant::now(), Duration::from_secs(1));
        let ms = Duration::from_millis;
        // fast work: on schedule
        assert_eq!(next_sample_at(t0, sec, ms(50), t0 + ms(50)), t0 + sec);
        // 500 ms of work: the next sample 2 s after it ends, so the work is 20% of the 2.5 s
        let next = next_sample_at(t0, sec, ms(500), t0 + ms(500));
        assert_eq!(next, t0 + ms(2500));
        assert!((0.5 / (next - t0).as_secs_f64() - MAX_BUSY).abs() < 1e-9);
        // work longer than the interval: never a burst of catch-up samples
        assert_eq!(next_sample_at(t0, sec, ms(3000), t0 + ms(3000)), t0 + ms(15_000));
        // a late start (the machine was busy) with fast work: not before now
        assert_eq!(next_sample_at(t0, sec, ms(10), t0 + ms(1500)), t0 + ms(1540));
    }
}

/// The timed intervals' work, ms: their sum, the longest, how many, and the first's (which carries
/// one-time work: each site's code read for where-stuck, every live task seen for the first time).
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleTimes {
    pub sum: f64,
    pub max: f64,
    pub timed: u64,
    pub first: f64,
}

impl SampleTimes {
    fn add(&mut self, ms: f64) {
        if self.timed == 0 {
            self.first = ms;
        }
        self.sum += ms;
        self.max = self.max.max(ms);
        self.timed += 1;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.timed.max(1) as f64
    }

    /// The mean of the timed intervals after the first (None with fewer than two).
    pub fn mean_after_first(&self) -> Option<f64> {
        (self.timed > 1).then(|| (self.sum - self.first) / (self.timed - 1) as f64)
    }
}
