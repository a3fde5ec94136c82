//! leakprof: an out-of-process, eBPF-based leak profiler for tokio tasks, Go goroutines and
//! threads blocked in syscalls (futex waits, reads, accepts, sleeps, ...).
//!
//! Data flows one way, top to bottom (each module imports only those below it):
//!
//! - [`cli`], [`daemon`], [`report`]: the faces (command line, HTTP daemon, text / JSON / pprof).
//! - [`session`]: one run against one process: attach, sample, judge, report.
//! - [`runtimes`]: one folder per runtime (tokio, Go, blocked threads): detection, attach plan,
//!   sampling, naming.
//! - [`bpf`] (probes and their maps), [`unwind`], [`elf`], [`target`] (the process and its memory).
//! - [`judged`] → [`history`] (bounded per-site series), [`record`].
//! - [`sample`], [`model`], [`options`]: plain data shared by all of the above; [`detect`], the
//!   detector, pure functions over a series that import nothing of the crate.
pub mod bpf;
pub mod cli;
pub mod daemon;
pub mod detect;
pub mod dump;
pub mod elf;
pub mod history;
pub mod ignore;
pub mod judged;
pub mod launch;
pub mod model;
pub mod options;
pub mod preflight;
pub mod record;
pub mod report;
pub mod runtimes;
pub mod sample;
pub mod session;
pub mod target;
pub mod unwind;
