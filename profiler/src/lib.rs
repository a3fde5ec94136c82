//! leakprof: an out-of-process, eBPF-based leak profiler for tokio tasks.
//!
//! Data flows one way: [`target`] (which process, which binary) → [`runtime`] (attach plan) →
//! [`bpf`] (probes and their maps) → [`history`] (samples per site) → [`detect`] (verdicts) →
//! [`report`] (text, JSON). [`session`] runs that pipeline for one process.
pub mod analysis;
pub mod blocked;
pub mod bpf;
pub mod census;
pub mod cli;
pub mod daemon;
pub mod detect;
pub mod elf;
pub mod gocensus;
pub mod golang;
pub mod gostate;
pub mod history;
pub mod ignore;
pub mod launch;
pub mod model;
pub mod naming;
pub mod plan;
pub mod preflight;
pub mod record;
pub mod report;
pub mod runtime;
pub mod session;
pub mod spawn_stacks;
pub mod symbolize;
pub mod task_states;
pub mod target;
pub mod unwind;
