//! One profiling run against one process: attach, sample every interval, detach, report.
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    analysis,
    bpf::{drain_spawn_samples, read_snapshot, AttachedProbes, LoadConfig, ProbeSpec},
    spawn_stacks::{created_by, frame_label, SpawnStacks},
    detect::{DetectConfig, Latch, Verdict},
    ignore::IgnoreRules,
    elf::ElfImage,
    history::{lifetime_quantile_s, monotonic_ns, History},
    blocked::{BlockedTracker, WaitKind},
    model::{
        BlockedSiteReport, Collection, EndReason, Report, SiteReport, TargetInfo, VerdictKind,
        SCHEMA_NAME, SCHEMA_VERSION,
    },
    naming::SiteNamer,
    preflight,
    runtime::tokio as tokio_rt,
    symbolize::Symbolizer,
    target::Target,
};

/// Live tasks per site whose state word is read each sample (idle vs busy evidence).
const STATES_PER_SITE: usize = 256;

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub pid: u32,
    pub interval: Duration,
    /// Stop after this long; None = until Ctrl-C, SIGTERM or the target's exit.
    pub duration: Option<Duration>,
    pub max_tasks: u32,
    pub max_sites: u32,
    pub ignore: IgnoreRules,
    pub detect: DetectConfig,
    /// Spawn stack sampling period (0 = off).
    pub stack_period: u64,
    /// Go: count goroutines with uprobes instead of the census.
    pub go_probes: bool,
    /// Watch threads blocked in futex waits even in a program without tokio.
    pub threads: bool,
    /// Do not trace futex waits.
    pub no_threads: bool,
    /// Write the detector's inputs at every sample to this file (JSON lines, see `record`).
    pub record: Option<std::path::PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            pid: 0,
            interval: Duration::from_secs(1),
            duration: None,
            max_tasks: 1 << 20,
            max_sites: 16_384,
            ignore: IgnoreRules::default(),
            detect: DetectConfig::default(),
            threads: false,
            no_threads: false,
            stack_period: 64,
            go_probes: false,
            record: None,
        }
    }
}

/// Called after every sample with the elapsed time and the judged sites, worst first.
pub type ProgressFn<'a> = dyn FnMut(f64, &[SiteReport]) + 'a;

/// An attached session, ready to sample.
pub struct Session {
    opts: RunOptions,
    target: Target,
    /// None: a native program without tokio, watched for blocked threads only.
    plan: Option<tokio_rt::TokioPlan>,
    has_debug_info: bool,
    probes: Option<AttachedProbes>,
    namer: SiteNamer,
    stacks: SpawnStacks,
    /// Blocked-thread census (when futex waits are traced).
    blocked: Option<BlockedTracker>,
    /// Attach points and attach time, kept after detaching.
    attached: (usize, f64),
    /// Sum and max of the time one sample took, ms.
    sample_ms: (f64, f64),
    /// A Go target: its goroutine census and Go version.
    go: Option<(crate::gostate::GoCensus, String)>,
    history: History,
    /// Each site's latch and the verdict shown for it as of the last sample.
    verdicts: HashMap<u64, (Latch, Verdict)>,
    blocked_verdicts: HashMap<String, (Latch, Verdict)>,
    recorder: Option<crate::record::Recorder>,
    started: Instant,
    warnings: Vec<String>,
}

impl Session {
    /// Checks everything, then attaches. Every error is one actionable sentence.
    pub fn attach(opts: RunOptions) -> Result<Session> {
        preflight::check_privileges()?;
        preflight::raise_memlock();
        let target = Target::open(opts.pid)?;
        let image = ElfImage::open(&target.exe_proc_path)
            .with_context(|| format!("cannot read the executable of pid {}", opts.pid))?;
        if let Some(go) = crate::gostate::plan(&image, opts.pid, Self::bias(&target, &image, opts.pid)?) {
            let go = go.map_err(|e| anyhow!("pid {}: {e}", opts.pid))?;
            return Self::attach_go(opts, target, image, go);
        }
        let plan = match tokio_rt::plan(&image, image.data()) {
            Ok(p) => Some(p),
            Err(tokio_rt::PlanError::NotTokio) if opts.threads => None,
            Err(tokio_rt::PlanError::NotTokio) => bail!(
                "pid {}: {}; to watch its threads blocked in futex waits instead, add --threads",
                opts.pid,
                tokio_rt::PlanError::NotTokio
            ),
            Err(e) => bail!("pid {}: {e}", opts.pid),
        };
        let segs: Vec<(u64, u64, u64)> = image
            .load_segments()
            .iter()
            .map(|s| (s.vaddr, s.file_offset, s.file_size))
            .collect();
        let bias = target.load_bias(&segs).ok_or_else(|| {
            anyhow!("pid {}: cannot relate its memory map to its executable", opts.pid)
        })?;
        let (lo, hi) = target.exe_range();
        let specs = plan.as_ref().map(crate::plan::probe_specs).unwrap_or_default();
        let watch_futex = opts.threads || (plan.is_some() && !opts.no_threads);
        let cfg = LoadConfig {
            vtable_lo: lo,
            vtable_hi: hi,
            header_vtable_offset: 16,
            max_tasks: opts.max_tasks,
            max_sites: opts.max_sites,
            stack_period: if plan.as_ref().is_some_and(|p| p.birth_mode == tokio_rt::BirthMode::BindInner) {
                opts.stack_period
            } else {
                0
            },
            watch_futex,
            target_tgid: opts.pid,
        };
        let probes = AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &specs)?;
        let has_debug_info = image.has_debug_info();
        let stacks = SpawnStacks::new(image.clone(), bias);
        let blocked = if watch_futex { Some(BlockedTracker::new(opts.pid, image.clone(), bias)?) } else { None };
        let namer = SiteNamer::new(opts.pid, bias, Symbolizer::new(image));
        let mut warnings = Vec::new();
        if plan.as_ref().is_some_and(|p| p.birth_mode == tokio_rt::BirthMode::FirstPoll) {
            warnings.push(
                "this tokio has no bind_inner: a task is counted at its first poll, so tasks alive \
                 before attach are counted as born when next polled"
                    .to_string(),
            );
        }
        Ok(Session {
            opts,
            target,
            plan,
            has_debug_info,
            probes: Some(probes),
            namer,
            stacks,
            blocked,
            go: None,
            sample_ms: (0.0, 0.0),
            attached: (0, 0.0),
            history: History::default(),
            verdicts: HashMap::new(),
            blocked_verdicts: HashMap::new(),
            recorder: None,
            started: Instant::now(),
            warnings,
        })
    }

    fn bias(target: &Target, image: &ElfImage, pid: u32) -> Result<u64> {
        let segs: Vec<(u64, u64, u64)> =
            image.load_segments().iter().map(|s| (s.vaddr, s.file_offset, s.file_size)).collect();
        target
            .load_bias(&segs)
            .ok_or_else(|| anyhow!("pid {pid}: cannot relate its memory map to its executable"))
    }

    /// A Go target: goroutines by census from outside (no probe inside the target).
    fn attach_go(opts: RunOptions, target: Target, image: ElfImage, go: crate::gostate::GoPlan) -> Result<Session> {
        let bias = Self::bias(&target, &image, opts.pid)?;
        let probes = if opts.go_probes { Some(Self::attach_go_probes(&opts, &target, &image, &go)?) } else { None };
        let census = crate::gostate::GoCensus::new(opts.pid, &go, bias);
        let mut warnings = Vec::new();
        if go.layout_source == "table" {
            warnings.push(format!("no DWARF in the binary: the runtime layout of {} comes from leakprof's table", go.version));
        }
        let has_debug_info = image.has_debug_info();
        Ok(Session {
            stacks: SpawnStacks::new(image.clone(), bias),
            namer: SiteNamer::go(opts.pid, bias, go.pclntab.clone()),
            go: Some((census, go.version)),
            sample_ms: (0.0, 0.0),
            attached: (0, 0.0),
            opts,
            target,
            plan: None,
            has_debug_info,
            probes,
            blocked: None,
            history: History::default(),
            verdicts: HashMap::new(),
            blocked_verdicts: HashMap::new(),
            recorder: None,
            started: Instant::now(),
            warnings,
        })
    }

    /// Go probe mode: uprobes on every RET of runtime.newproc1 (RAX = new g) and on the entry of
    /// runtime.gdestroy (1.21+) or runtime.goexit0 (RAX = g); sites keyed by g.gopc.
    fn attach_go_probes(
        opts: &RunOptions,
        target: &Target,
        image: &ElfImage,
        go: &crate::gostate::GoPlan,
    ) -> Result<AttachedProbes> {
        use crate::golang::allgs::ret_addresses;
        let offset = |v: u64| {
            image.vaddr_to_file_offset(v).ok_or_else(|| anyhow!("{v:#x} is not in the executable's file"))
        };
        let mut specs = Vec::new();
        for v in ret_addresses(image, &go.pclntab, "runtime.newproc1") {
            specs.push(ProbeSpec { program: profiler_common::progs::GO_BIRTH_RET, symbol: "runtime.newproc1 (ret)".into(), file_offset: offset(v)? });
        }
        let death = ["runtime.gdestroy", "runtime.goexit0"]
            .into_iter()
            .find_map(|n| go.pclntab.func_named(n))
            .ok_or_else(|| anyhow!("{}: neither runtime.gdestroy nor runtime.goexit0 found", go.version))?;
        specs.push(ProbeSpec { program: profiler_common::progs::GO_DEATH, symbol: death.name.clone(), file_offset: offset(death.entry)? });
        if specs.len() < 2 {
            bail!("{}: no RET found in runtime.newproc1", go.version);
        }
        let (lo, hi) = target.exe_range();
        let cfg = LoadConfig {
            vtable_lo: lo,
            vtable_hi: hi,
            header_vtable_offset: go.layout.g.gopc,
            max_tasks: opts.max_tasks,
            max_sites: opts.max_sites,
            stack_period: 0,
            watch_futex: false,
            target_tgid: opts.pid,
        };
        AttachedProbes::attach(opts.pid, &target.exe_proc_path, &cfg, &specs)
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

    /// Keeps only the newest `max` samples (bounded memory for long runs).
    pub fn trim(&mut self, max: usize) {
        self.history.trim(max);
        if let Some(b) = self.blocked.as_mut() {
            b.trim(max);
        }
    }

    /// Takes one sample (and names new sites while the target is alive), then judges every site.
    pub fn sample(&mut self) -> Result<()> {
        self.collect()?;
        self.judge();
        if self.opts.record.is_some() {
            self.record()?;
        }
        Ok(())
    }

    /// Appends the detector's inputs of this sample to the `--record` file.
    fn record(&mut self) -> Result<()> {
        use crate::record::{Header, RecordedSite, Recorder, Sample, SiteKind, SCHEMA, VERSION};
        if self.recorder.is_none() {
            let path = self.opts.record.clone().unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.opts.pid)).unwrap_or_default();
            let header = Header {
                schema: SCHEMA.into(),
                version: VERSION,
                runtime: self.runtime_name().into(),
                method: self.method_name().into(),
                interval_s: self.opts.interval.as_secs_f64(),
                cmdline: cmdline
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            };
            self.recorder = Some(Recorder::create(&path, &header)?);
        }
        let mut sites = Vec::new();
        for (vt, h) in &self.history.sites {
            let name = self.namer.name(*vt).clone();
            sites.push(RecordedSite {
                kind: SiteKind::Task,
                key: format!("{vt:#x}"),
                function: name.function,
                file: name.file,
                line: name.line,
                live: h.series.last().copied().unwrap_or(0),
                facts: analysis::task_facts(&self.history, h),
            });
        }
        for (key, w) in self.blocked.iter().flat_map(|b| &b.sites) {
            sites.push(RecordedSite {
                kind: SiteKind::Wait,
                key: key.clone(),
                function: w.site.function.clone(),
                file: w.site.file.clone(),
                line: w.site.line,
                live: w.series.last().copied().unwrap_or(0),
                facts: analysis::blocked_facts(w),
            });
        }
        let t_s = self.history.times_s.last().copied().unwrap_or(0.0);
        self.recorder.as_mut().unwrap().sample(&Sample { t_s, sites })
    }

    fn runtime_name(&self) -> &'static str {
        if self.go.is_some() {
            "go"
        } else if self.plan.is_some() {
            "tokio"
        } else {
            "native"
        }
    }

    fn method_name(&self) -> &'static str {
        if self.go.is_some() && !self.opts.go_probes {
            "census"
        } else {
            "uprobes"
        }
    }

    /// Judges every site as of the last sample, through its latch (see `detect::latch`).
    fn judge(&mut self) {
        let t_s = self.history.times_s.last().copied().unwrap_or(0.0);
        for (vt, h) in &self.history.sites {
            let raw = analysis::verdict(&self.history, h, &self.opts.detect);
            let live = h.series.last().copied().unwrap_or(0);
            let (latch, shown) = self.verdicts.entry(*vt).or_insert_with(|| (Latch::default(), raw.clone()));
            *shown = latch.update(t_s, live, raw, &self.opts.detect);
        }
        if let Some(b) = &self.blocked {
            let t = &self.history.times_s;
            for (key, w) in &b.sites {
                let raw = analysis::blocked_verdict(t, w, &self.opts.detect);
                let live = w.series.last().copied().unwrap_or(0);
                let (latch, shown) =
                    self.blocked_verdicts.entry(key.clone()).or_insert_with(|| (Latch::default(), raw.clone()));
                *shown = latch.update(t_s, live, raw, &self.opts.detect);
            }
        }
    }

    /// Reads the probes' maps or the census into the history.
    fn collect(&mut self) -> Result<()> {
        if let Some((census, _)) = self.go.as_mut().filter(|_| !self.opts.go_probes) {
            let now = monotonic_ns();
            let (snap, idle) = census.census(now)?;
            let t = self.started.elapsed().as_secs_f64();
            self.history.push(t, now, &snap, true);
            for &gopc in snap.sites.keys() {
                self.namer.name(gopc);
            }
            self.history.add_states(idle);
            return Ok(());
        }
        let probes = self.probes.as_mut().ok_or_else(|| anyhow!("already detached"))?;
        for sample in drain_spawn_samples(probes) {
            self.stacks.add(&sample);
        }
        let snap = read_snapshot(probes, true)?;
        if let Some(b) = self.blocked.as_mut() {
            let started: std::collections::HashMap<u32, u64> =
                snap.futex_waits.iter().map(|(tid, w)| (*tid, w.start_ns)).collect();
            b.sample(monotonic_ns(), &started, self.history.times_s.is_empty());
        }
        let live: std::collections::HashSet<(u64, u64)> =
            snap.tasks.iter().map(|t| (t.header, t.born_ns)).collect();
        self.stacks.refresh_live(|h, born| live.contains(&(h, born)));
        let t = self.started.elapsed().as_secs_f64();
        self.history.push(t, monotonic_ns(), &snap, true);
        for &vtable in snap.sites.keys() {
            self.namer.name(vtable);
        }
        if self.plan.is_some() {
            // tokio task headers: the state word says idle or busy
            let states = crate::task_states::sample_idle(self.opts.pid, &snap.tasks, STATES_PER_SITE);
            self.history.add_states(states);
        }
        Ok(())
    }

    /// Wait sites of blocked threads, judged, worst first.
    pub fn blocked_sites(&self) -> Vec<BlockedSiteReport> {
        let Some(b) = &self.blocked else {
            return Vec::new();
        };
        let t = &self.history.times_s;
        let mut out: Vec<BlockedSiteReport> = b
            .sites
            .iter()
            .map(|(key, w)| {
                let v = match self.blocked_verdicts.get(key) {
                    Some((_, v)) => v.clone(),
                    None => analysis::blocked_verdict(t, w, &self.opts.detect),
                };
                let idle = w.kind == WaitKind::RuntimeIdle;
                BlockedSiteReport {
                    function: w.site.function.clone(),
                    file: w.site.file.clone(),
                    line: w.site.line,
                    kind: w.kind,
                    threads: w.series.last().copied().unwrap_or(0),
                    series: w.series.clone(),
                    longest_wait_s: w.longest_wait_ns as f64 / 1e9,
                    preexisting: w.preexisting,
                    ended_waits: w.ended_waits,
                    verdict: if idle { VerdictKind::Ok } else { v.kind },
                    confidence: if idle { 0.0 } else { v.confidence },
                    growth_per_s: v.growth_per_s,
                    reason: if idle { format!("runtime worker(s) parked idle; {}", v.reason) } else { v.reason },
                    stack: w.stack.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (b.kind == WaitKind::Wait, b.verdict, (b.confidence * 1e6) as i64, b.threads)
                .cmp(&(a.kind == WaitKind::Wait, a.verdict, (a.confidence * 1e6) as i64, a.threads))
        });
        out
    }

    /// Every site as of the last sample, judged, worst first.
    pub fn sites(&mut self) -> Vec<SiteReport> {
        let mut sites: Vec<SiteReport> = Vec::new();
        for (vt, h) in &self.history.sites {
            let name = self.namer.name(*vt).clone();
            let v = match self.verdicts.get(vt) {
                Some((_, v)) => v.clone(),
                None => analysis::verdict(&self.history, h, &self.opts.detect),
            };
            let t = &h.totals;
            let spawn_stacks = self.stacks.stacks(*vt, t.live(), self.namer.lines());
            let spawner = spawn_stacks.first().and_then(created_by).map(frame_label);
            let frames: Vec<String> = spawn_stacks
                .iter()
                .flat_map(|s| s.frames.iter().skip(1).map(|f| f.function.clone()))
                .collect();
            let (entry, states) = match &self.go {
                Some((c, _)) => (
                    c.startpc.get(vt).and_then(|&pc| self.namer.go_function(pc)),
                    c.states.get(vt).cloned().unwrap_or_default(),
                ),
                None => (None, Default::default()),
            };
            sites.push(SiteReport {
                poll_symbol: entry.unwrap_or(name.poll_symbol),
                states,
                ignored_by: self.opts.ignore.matching(&name.function, &frames),
                created_by: spawner,
                spawn_stacks,
                function: name.function,
                file: name.file,
                line: name.line,
                vtable: format!("{vt:#x}"),
                live: t.live(),
                spawned: t.spawned,
                finished: t.finished,
                finished_preexisting: t.finished_preexisting,
                oldest_age_s: self.history.oldest_age_s(h),
                max_finished_lifetime_s: (t.finished > 0).then(|| t.max_lifetime_ns as f64 / 1e9),
                finished_lifetime_p99_s: lifetime_quantile_s(&t.lifetime_log2_us, 0.99),
                series: h.series.clone(),
                verdict: v.kind,
                confidence: v.confidence,
                growth_per_s: v.growth_per_s,
                reason: v.reason,
                idle_fraction: h.idle_fraction(),
            });
        }
        sites.sort_by_key(|s| std::cmp::Reverse(s.badness()));
        sites
    }

    /// Runs until the duration, a signal or the target's exit; detaches; returns the report.
    pub async fn run(mut self, progress: &mut ProgressFn<'_>) -> Result<Report> {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let deadline = self.opts.duration.map(|d| self.started + d);
        let mut next = self.started + self.opts.interval;
        let ended = loop {
            let wake = deadline.map_or(next, |d| d.min(next));
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = sigint.recv() => break EndReason::Interrupted,
                _ = sigterm.recv() => break EndReason::Interrupted,
            }
            let t0 = Instant::now();
            self.sample()?;
            let dt = t0.elapsed().as_secs_f64() * 1e3;
            self.sample_ms.0 += dt;
            self.sample_ms.1 = self.sample_ms.1.max(dt);
            let cur = self.sites();
            progress(self.started.elapsed().as_secs_f64(), &cur);
            if !self.target.alive() {
                break EndReason::TargetExited;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break EndReason::Duration;
            }
            next += self.opts.interval;
        };
        if ended == EndReason::Interrupted {
            // A last sample so the report covers the run up to the signal.
            self.sample()?;
        }
        Ok(self.finish(ended))
    }

    /// Detaches every probe and builds the report.
    pub fn finish(mut self, ended: EndReason) -> Report {
        let probes = self.probes.take();
        self.attached = probes.as_ref().map_or((0, 0.0), |p| (p.attached, p.attach_ms));
        drop(probes); // detaches every link
        if ended == EndReason::TargetExited {
            self.warnings.push(format!("pid {} exited during the run; the report covers the time until then", self.opts.pid));
        }
        self.report(ended)
    }

    /// The report as of the last sample, without detaching (the daemon serves it while running).
    pub fn report(&mut self, ended: EndReason) -> Report {
        let (attached, attach_ms) = match &self.probes {
            Some(p) => (p.attached, p.attach_ms),
            None => self.attached,
        };
        let mut warnings = self.warnings.clone();
        let kernel_counters: BTreeMap<String, u64> = profiler_common::stat::NAMES
            .iter()
            .zip(self.history.stats.iter().chain(std::iter::repeat(&0)))
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        for &i in &profiler_common::stat::FAILURES {
            let name = profiler_common::stat::NAMES[i as usize];
            if kernel_counters.get(name).copied().unwrap_or(0) > 0 {
                warnings.push(format!(
                    "kernel side: {name}={} (some tasks could not be recorded; counts are lower bounds)",
                    kernel_counters[name]
                ));
            }
        }
        let sites = self.sites();
        let duration_s = self.started.elapsed().as_secs_f64();
        Report {
            schema: SCHEMA_NAME,
            schema_version: SCHEMA_VERSION,
            leakprof_version: env!("CARGO_PKG_VERSION"),
            target: TargetInfo {
                pid: self.opts.pid,
                exe: self.target.exe.display().to_string(),
                runtime: self.runtime_name(),
                runtime_version: match &self.go {
                    Some((_, v)) => Some(v.clone()),
                    None => self.plan.as_ref().and_then(|p| p.version.clone()),
                },
                birth_point: if self.go.is_some() && self.opts.go_probes {
                    "newproc1_ret"
                } else if self.go.is_some() {
                    "census"
                } else {
                    self.plan.as_ref().map_or("none", crate::plan::birth_point_name)
                },
                attach_points: attached,
                attach_ms,
                has_debug_info: self.has_debug_info,
            },
            collection: Collection {
                method: self.method_name(),
                interval_s: self.opts.interval.as_secs_f64(),
                duration_s,
                samples: self.history.times_s.len(),
                ended,
                sample_ms_mean: self.sample_ms.0 / self.history.times_s.len().max(1) as f64,
                sample_ms_max: self.sample_ms.1,
            },
            program_exit_code: None,
            sample_times_s: self.history.times_s.clone(),
            sites,
            blocked: self.blocked_sites(),
            kernel_counters,
            warnings,
        }
    }
}
