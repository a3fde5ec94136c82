//! `--record FILE`: appends the detector's inputs of each sample (see `crate::record`).
use anyhow::Result;

use super::Session;
use crate::record::{Header, RecordedSite, Recorder, Sample, SiteKind, SCHEMA, VERSION};

impl Session {
    pub(super) fn record(&mut self) -> Result<()> {
        if self.recorder.is_none() {
            let path = self.opts.record.clone().unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.opts.pid)).unwrap_or_default();
            let header = Header {
                schema: SCHEMA.into(),
                version: VERSION,
                runtime: self.runtime_name().into(),
                method: self.method().into(),
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
        for w in &mut self.sources {
            let kind = if w.source.kind() == crate::runtimes::SourceKind::Tasks { SiteKind::Task } else { SiteKind::Wait };
            let h = &w.judged.history;
            for (key, s) in &h.sites {
                let name = w.source.name(*key);
                sites.push(RecordedSite {
                    kind,
                    key: w.source.record_key(*key),
                    function: name.function,
                    file: name.file,
                    line: name.line,
                    live: s.live(),
                    facts: h.facts(s),
                });
            }
        }
        let t_s = self.times_s().last().copied().unwrap_or(0.0);
        self.recorder.as_mut().unwrap().sample(&Sample { t_s, sites })
    }
}
