//! Output formats of a [`crate::model::Report`].
mod json;
mod live;
pub mod pprof;
mod text;

pub use json::to_json;
pub use live::LiveView;
pub use pprof::to_pprof;
pub use text::{blocked_in, held, interval_lines, render_text, sparkline};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Text,
    /// One versioned JSON document (schema `leakprof.report`).
    Json,
    /// gzip'd pprof profile.proto of live tasks by spawn stack and blocked threads (needs -o FILE).
    Pprof,
}
