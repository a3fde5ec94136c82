//! Project tasks: `cargo xtask setup | fixtures | demo | test | bench`.
mod bench;
mod bench_actix;
mod bench_awaits;
mod bench_census;
mod bench_dump;
mod bench_futex;
mod bench_go;
mod bench_redis;
mod demo;
mod fixtures;
mod fuzz;
mod gotables;
mod kernels;
mod record;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "leakprof's project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (apt packages, nightly rust-src, bpf-linker); quick when all is there.
    Setup,
    /// Build the test target programs into fixtures/bin.
    Fixtures,
    /// Build the census-only leakprof and one leaking tokio fixture (stable toolchain only), then
    /// watch it for 10 seconds.
    Demo {
        /// Seconds to watch.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Set up, build everything and run the whole test suite (what CI runs); ends with a line
    /// `tests: N passed, N failed, N skipped`.
    Test {
        /// Fail when any test was skipped for want of BPF, root or a tool (always so under CI=true).
        #[arg(long)]
        require_bpf: bool,
    },
    /// Benchmark the daemon's own CPU and memory while it watches N tokio and N Go targets.
    BenchDaemon {
        #[arg(long, default_value_t = 5)]
        targets: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// tokio where-stuck from the machine code: one-time analysis and decoding cost per binary,
    /// and the share of sampled tasks decoded per build profile.
    BenchAwaits,
    /// tokio census: target cost vs bare, census time and bytes for 10k/100k/1M tasks, vs Handle::dump.
    BenchCensus {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Only the census of 100k spawn_local tasks in four LocalSets next to 100k ordinary ones.
        #[arg(long)]
        local_only: bool,
        /// Only what measuring bytes per task costs (100k tokio tasks, 100k goroutines).
        #[arg(long)]
        bytes_only: bool,
        /// Only leakprof's side: one census of 10k, 100k and 1M tasks (ms, MB read, its RSS and CPU).
        #[arg(long)]
        walks_only: bool,
        /// Only the time to the first report on a 16 GiB untouched heap with a runtime built late.
        #[arg(long)]
        sparse_heap: bool,
    },
    /// `leakprof dump --pid` on 100k tokio tasks and 100k goroutines, next to Handle::dump() and
    /// goroutine?debug=2 of the same processes.
    BenchDump {
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Futex tracepoints: the cost on a bystander process (futex ping-pong, getppid loop) and
    /// on the traced target, against bare.
    BenchFutex {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// Go: census with stacks vs pprof's goroutine dump on 100k goroutines; target cost vs bare.
    BenchGo {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Only the census's cost to goroutine create+exit (at least 8 triples of rounds).
        #[arg(long)]
        census_only: bool,
    },
    /// leakprof's own RSS and CPU per sample after 1 h, 24 h and 7 days of samples of N sites.
    BenchHistory {
        #[arg(long, default_value_t = 1000)]
        sites: u64,
    },
    /// Record the detector's inputs while the fixture scenarios run (profiler/tests/series/).
    RecordSeries {
        /// Seconds each scenario is watched.
        #[arg(long, default_value_t = 15)]
        seconds: u32,
        /// Scenarios recorded at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// Only the recordings whose name starts with this (e.g. `threads-`).
        #[arg(long)]
        only: Option<String>,
    },
    /// The kernel matrix: boots Debian's 5.10, 6.1 and 6.12 kernels under qemu and runs the kernel
    /// smoke suite in each, as root; one line per kernel (boot and suite times).
    TestKernels {
        /// Only these kernels (5.10, 6.1, 6.12).
        kernels: Vec<String>,
        /// Also the probe cost in each guest and on this host: ns per spawned+joined tokio task,
        /// bare vs empty probes vs probes (release leakprof), as ratios.
        #[arg(long)]
        bench: bool,
        /// Tasks per round of --bench (rounds of 20,000 last 15 ms on this host: noise).
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// Rounds of each kind of --bench (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// Run inside a guest by `test-kernels --bench`: the probe cost with binaries already built.
    #[command(hide = true)]
    BenchGuest {
        #[arg(long)]
        leakprof: std::path::PathBuf,
        #[arg(long)]
        fixtures: std::path::PathBuf,
        #[arg(long)]
        tasks: u64,
        #[arg(long)]
        rounds: u32,
    },
    /// Fuzz every parser of untrusted bytes (cargo-fuzz, libFuzzer; docs/fuzzing.md): kept crash
    /// inputs replayed, then SECS seconds per target.
    Fuzz {
        #[arg(long, default_value_t = 15)]
        secs: u64,
        /// Only this target (e.g. `elf`).
        #[arg(long)]
        target: Option<String>,
    },
    /// Regenerate the Go runtime layout table from every Go toolchain that can be had here.
    GoTables,
    /// Benchmark: a spawn-heavy fixture bare and probed, side by side, as a ratio.
    Bench {
        /// Tasks per round.
        #[arg(long, default_value_t = 200_000)]
        tasks: u64,
        /// Rounds of each kind (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// A real actix-web server: requests per second under ab (keep-alive GET /), bare vs under
    /// leakprof's census, --probes and --probes --no-threads, paired ratios.
    BenchActix {
        /// Rounds of each kind (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Requests per ab run.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// ab's concurrent connections.
        #[arg(long, default_value_t = 16)]
        clients: u32,
    },
    /// A real server: mini-redis's SET/GET requests per second under redis-benchmark, bare vs
    /// census vs probes (alternating rounds, one server process), as ratios.
    BenchRedis {
        /// Rounds of each kind (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Requests per redis-benchmark test (SET, GET) per round.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// redis-benchmark's parallel connections.
        #[arg(long, default_value_t = 50)]
        clients: u32,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = util::root();
    match cli.cmd {
        Cmd::Setup => util::setup(&root),
        Cmd::Fixtures => fixtures::build(&root).map(|_| ()),
        Cmd::Demo { seconds } => demo::run(&root, seconds),
        Cmd::Test { require_bpf } => test::run(&root, require_bpf),
        Cmd::BenchDaemon { targets, seconds } => bench::daemon(&root, targets, seconds),
        Cmd::BenchGo { rounds, census_only } => bench_go::go_stacks(&root, rounds, census_only),
        Cmd::BenchAwaits => bench_awaits::run(&root),
        Cmd::BenchCensus { rounds, local_only, bytes_only, walks_only, sparse_heap } => {
            bench_census::run(&root, rounds, local_only, bytes_only, walks_only, sparse_heap)
        }
        Cmd::BenchDump { rounds } => bench_dump::run(&root, rounds),
        Cmd::BenchFutex { rounds } => bench_futex::run(&root, rounds),
        Cmd::BenchHistory { sites } => bench::history(&root, sites),
        Cmd::RecordSeries { seconds, parallel, only } => record::run(&root, seconds, parallel, only.as_deref()),
        Cmd::TestKernels { kernels, bench, tasks, rounds } => kernels::run(&root, &kernels, bench.then_some((tasks, rounds))),
        Cmd::BenchGuest { leakprof, fixtures, tasks, rounds } => kernels::bench_guest(&leakprof, &fixtures, tasks, rounds),
        Cmd::Fuzz { secs, target } => fuzz::run(&root, secs, target.as_deref()),
        Cmd::GoTables => gotables::generate(&root),
        Cmd::Bench { tasks, rounds } => bench::run(&root, tasks, rounds),
        Cmd::BenchRedis { rounds, requests, clients } => bench_redis::run(&root, rounds, requests, clients),
        Cmd::BenchActix { rounds, requests, clients } => bench_actix::run(&root, rounds, requests, clients),
    }
}
