//! The kernel side as seen from user space: loading and attaching the probes, reading their maps.
mod collector;
pub mod features;
mod loader;
mod slots;

pub use collector::{read_snapshot, drain_spawn_samples, KernelSide, KernelSnapshot, LiveTask, SiteTotals};
pub use loader::{probes_built, verify_all, AttachedProbes, LoadConfig, ProbeSpec, NO_PROBES_BUILD};
