//! The kernel side as seen from user space: loading and attaching the probes, reading their maps.
mod collector;
mod loader;

pub use collector::{read_snapshot, take_stack_samples, KernelSnapshot, LiveTask, SiteTotals};
pub use loader::{AttachedProbes, LoadConfig, ProbeSpec};
