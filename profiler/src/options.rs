//! What a run is asked to do: the options every part of a run reads.
use std::time::Duration;

use crate::{detect::DetectConfig, ignore::IgnoreRules};

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
    /// Count with uprobes (tokio: with the census alongside; Go: instead of the census).
    pub probes: bool,
    /// Benchmarks only: the probes' attach points with programs that do nothing (nothing is
    /// counted by them; the cost of the traps alone).
    pub empty_probes: bool,
    /// Watch threads blocked in syscalls even in a program without tokio.
    pub threads: bool,
    /// Do not watch blocked threads.
    pub no_threads: bool,
    /// Write the detector's inputs at every sample to this file (JSON lines, see `record`).
    pub record: Option<std::path::PathBuf>,
    /// A separate debug file with the executable's symbols and DWARF.
    pub symbols: Option<std::path::PathBuf>,
    /// Samples kept per site (older ones are thinned, see `history`): bounded memory.
    pub retention: usize,
    /// What one sample may read of the target (bytes, read calls); past it the census stops
    /// and the report says its counts are partial.
    pub read_limits: crate::target::memory::ReadLimits,
    /// How where tokio tasks wait is read (DWARF types, machine code, or the first that works).
    pub await_decoder: crate::runtimes::tokio::AwaitDecoder,
    /// Measure what each site's tasks hold (bytes per task; off: `--no-bytes`).
    pub measure_bytes: bool,
    /// How many waiting tasks' waits are read per sample, and how many distinct stacks kept.
    pub waits: WaitSampling,
}

/// How many waiting tasks (or goroutines) per site, and in all, have their wait read at a
/// sample, and how many distinct whole stacks per site are kept: a trend run samples a few (a
/// bounded cost every interval), a dump reads nearly every one once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSampling {
    pub per_site: usize,
    pub per_sample: usize,
    pub stacks_kept: usize,
}

impl WaitSampling {
    /// Every interval of a run.
    pub const SAMPLED: WaitSampling = WaitSampling { per_site: 32, per_sample: 4096, stacks_kept: 3 };
    /// One dump.
    pub const DUMP: WaitSampling = WaitSampling { per_site: 4096, per_sample: 200_000, stacks_kept: 256 };
}

impl Default for WaitSampling {
    fn default() -> Self {
        Self::SAMPLED
    }
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
            probes: false,
            empty_probes: false,
            symbols: None,
            record: None,
            retention: crate::history::DEFAULT_CAPACITY,
            read_limits: Default::default(),
            await_decoder: Default::default(),
            measure_bytes: true,
            waits: WaitSampling::SAMPLED,
        }
    }
}

