//! A source's history with every site judged once per sample through its latch: what the
//! session keeps for task sites and for wait sites alike.
use std::collections::HashMap;
use std::hash::Hash;

use crate::{
    detect::{judge, DetectConfig, Latch, SiteSeries, Verdict},
    history::History,
    sample::Sample,
};

pub struct Judged<K> {
    pub history: History<K>,
    /// Each site's latch and the verdict shown for it as of the last sample.
    verdicts: HashMap<K, (Latch, Verdict)>,
}

impl<K: Ord + Clone + Hash> Judged<K> {
    pub fn new(capacity: usize) -> Self {
        Judged { history: History::with_capacity(capacity), verdicts: HashMap::new() }
    }

    /// Appends a sample and judges every site (the detector's windows are bounded, so this costs
    /// the same whatever the run length).
    pub fn push(&mut self, t_s: f64, sample: &Sample<K>, cfg: &DetectConfig) {
        self.history.push(t_s, sample);
        let h = &self.history;
        for (key, site) in &h.sites {
            let raw = judge(&SiteSeries::new(&h.times_s, &site.series, &h.facts(site)), cfg);
            let (latch, shown) = self.verdicts.entry(key.clone()).or_insert_with(|| (Latch::default(), raw.clone()));
            *shown = latch.update(t_s, site.live(), raw, cfg);
        }
    }

    /// The verdict of a site as of the last sample.
    pub fn verdict(&self, key: &K) -> Verdict {
        self.verdicts.get(key).map(|(_, v)| v.clone()).unwrap_or_else(|| Verdict {
            kind: crate::detect::VerdictKind::Ok,
            confidence: 0.0,
            growth_per_s: 0.0,
            reason: "not judged yet".into(),
        })
    }
}
