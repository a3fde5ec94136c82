//! `--record FILE`: the detector's inputs at every sample, as JSON lines (a header line, then one
//! line per sample), so that a run can be replayed through the detector later. The detector
//! corpus (`profiler/tests/series/`) is made of such recordings; a user can attach one to a bug
//! report about a verdict.
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::detect::Facts;

pub const SCHEMA: &str = "leakprof.series";
pub const VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub schema: String,
    pub version: u32,
    /// "tokio", "go" or "native".
    pub runtime: String,
    /// How live counts were collected: "uprobes", "census", ...
    pub method: String,
    pub interval_s: f64,
    /// The target's command line.
    pub cmdline: Vec<String>,
}

/// What a site is: tasks (or goroutines) of one spawn site, or threads waiting at one wait site.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    Task,
    Wait,
}

/// One site at one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedSite {
    pub kind: SiteKind,
    /// Stable within the recording (vtable, gopc or wait-site key).
    pub key: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub live: i64,
    #[serde(flatten)]
    pub facts: Facts,
}

/// Every line after the header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since attach.
    pub t_s: f64,
    pub sites: Vec<RecordedSite>,
}

/// Writes a recording, flushing every sample (a run can end at any moment).
pub struct Recorder {
    out: BufWriter<File>,
}

impl Recorder {
    pub fn create(path: &Path, header: &Header) -> Result<Recorder> {
        let f = File::create(path).with_context(|| format!("cannot create the recording {}", path.display()))?;
        let mut r = Recorder { out: BufWriter::new(f) };
        r.line(header)?;
        Ok(r)
    }

    pub fn sample(&mut self, s: &Sample) -> Result<()> {
        self.line(s)
    }

    fn line<T: Serialize>(&mut self, v: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")?;
        self.out.flush().context("cannot write the recording")
    }
}

/// Reads a recording back: its header and samples.
pub fn parse(text: &str) -> Result<(Header, Vec<Sample>)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Header = serde_json::from_str(lines.next().context("empty recording")?)
        .context("the first line is not a leakprof.series header")?;
    anyhow::ensure!(header.schema == SCHEMA, "not a {SCHEMA} recording: {}", header.schema);
    anyhow::ensure!(header.version == VERSION, "recording version {} (this leakprof reads {VERSION})", header.version);
    let samples = lines
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("sample line {}", i + 2)))
        .collect::<Result<Vec<Sample>>>()?;
    Ok((header, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("leakprof-rec-{}", std::process::id()));
        let header = Header {
            schema: SCHEMA.into(),
            version: VERSION,
            runtime: "go".into(),
            method: "census".into(),
            interval_s: 1.0,
            cmdline: vec!["./app".into(), "--x".into()],
        };
        let sample = Sample {
            t_s: 1.25,
            sites: vec![RecordedSite {
                kind: SiteKind::Task,
                key: "0x401000".into(),
                function: "main.leak".into(),
                file: Some("main.go".into()),
                line: Some(42),
                live: 7,
                facts: Facts { finished_total: 3, oldest_live_age_s: Some(1.5), idle_fraction: Some(1.0), ..Facts::default() },
            }],
        };
        let mut r = Recorder::create(&dir, &header).unwrap();
        r.sample(&sample).unwrap();
        r.sample(&Sample { t_s: 2.25, sites: vec![] }).unwrap();
        drop(r);
        let (h, s) = parse(&std::fs::read_to_string(&dir).unwrap()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(h, header);
        assert_eq!(s, vec![sample, Sample { t_s: 2.25, sites: vec![] }]);
        assert!(parse("{\"schema\":\"other\",\"version\":1}").is_err());
    }
}
