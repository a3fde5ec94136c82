//! Command-line interface: flags and their defaults (one place).
use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{report::Format, session::RunOptions};

/// Find the spawn sites whose tasks never finish, in an unmodified running tokio process.
#[derive(Debug, Parser)]
#[command(name = "leakprof", version, about)]
pub struct Cli {
    /// Process to attach to.
    #[arg(long, short = 'p')]
    pub pid: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    pub interval: f64,
    /// Stop after this many seconds (default: run until Ctrl-C or the target exits).
    #[arg(long, short = 'd', value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Output format of the final report.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the final report to FILE instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Do not print the per-interval lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// How many sites the per-interval lines show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Capacity of the kernel's live-task table (tasks beyond it are counted as lost).
    #[arg(long, default_value_t = RunOptions::default().max_tasks)]
    pub max_tasks: u32,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be a positive number of seconds"))
    }
}

impl Cli {
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            pid: self.pid,
            interval: Duration::from_secs_f64(self.interval),
            duration: self.duration.map(Duration::from_secs_f64),
            max_tasks: self.max_tasks,
            ..RunOptions::default()
        }
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
        assert_eq!(c.pid, 42);
        assert_eq!(c.run_options().duration, Some(Duration::from_secs(5)));
        assert_eq!(c.format, Format::Json);
        assert!(Cli::try_parse_from(["leakprof", "--pid", "1", "--interval", "0"]).is_err());
        assert!(Cli::try_parse_from(["leakprof"]).is_err());
    }
}
