//! Verdict stability: a site judged `leak` stays `leak` through a few samples in which the
//! judgement of the window alone falls short (the last third of a noisy window looking flat by
//! chance), so a steady leak does not flicker between `leak` and `suspect` from one interval to
//! the next. It lets go after more such samples in a row than `leak_hold_samples` and than
//! `leak_hold_fraction` of the samples judged `leak` so far: the longer a site has been a leak,
//! the more counter-evidence it takes to call it healthy again. A sample whose live count tops
//! every count since the site was flagged is no counter-evidence (the count is still rising,
//! whatever the window says).

use super::{DetectConfig, Verdict, VerdictKind};

/// The per-site state; feed it every raw verdict of the site, in sample order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latch {
    /// Sample time and live count when the site was first judged `leak` (this episode).
    flagged: Option<(f64, i64)>,
    /// Samples in a row whose raw verdict was not `leak`, since then.
    misses: u32,
    /// Samples whose raw verdict was `leak`, this episode.
    hits: u32,
    /// The highest live count since the site was flagged.
    peak: i64,
}

impl Latch {
    /// The verdict to show for this sample, from the raw one of the window ending now.
    pub fn update(&mut self, t_s: f64, live: i64, raw: Verdict, cfg: &DetectConfig) -> Verdict {
        if raw.kind == VerdictKind::Leak {
            self.flagged.get_or_insert((t_s, live));
            self.misses = 0;
            self.hits += 1;
            self.peak = self.peak.max(live);
            return raw;
        }
        let Some((since, at)) = self.flagged else {
            return raw;
        };
        if live > self.peak {
            self.peak = live;
        } else {
            self.misses += 1;
        }
        let hold = cfg.leak_hold_samples.max((cfg.leak_hold_fraction * self.hits as f64).ceil() as u32);
        if self.misses > hold {
            *self = Latch::default();
            return raw;
        }
        let now = raw
            .reason
            .split_once("; not yet a leak: ")
            .map_or(raw.reason.as_str(), |(_, why)| why);
        Verdict {
            kind: VerdictKind::Leak,
            confidence: raw.confidence.max(cfg.leak_confidence),
            growth_per_s: raw.growth_per_s,
            reason: format!(
                "a leak since {since:.0} s (at {at} live); this sample alone would not say so ({}/{hold} in a row): {now}",
                self.misses
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: VerdictKind, conf: f64) -> Verdict {
        Verdict {
            kind,
            confidence: conf,
            growth_per_s: 1.0,
            reason: "+1.0/s for 20 s; not yet a leak: the trend is not yet strong enough".into(),
        }
    }

    #[test]
    fn holds_a_leak_through_short_dips_then_lets_go() {
        let cfg = DetectConfig::default();
        let mut l = Latch::default();
        assert_eq!(l.update(1.0, 5, v(VerdictKind::Suspect, 0.5), &cfg).kind, VerdictKind::Suspect);
        assert!(l.flagged.is_none());
        assert_eq!(l.update(2.0, 10, v(VerdictKind::Leak, 0.9), &cfg).kind, VerdictKind::Leak);
        // a new high is no counter-evidence, however many samples say otherwise
        for i in 0..20 {
            assert_eq!(l.update(2.5, 11 + i, v(VerdictKind::Ok, 0.1), &cfg).kind, VerdictKind::Leak);
        }
        for i in 0..cfg.leak_hold_samples {
            let out = l.update(3.0 + i as f64, 9, v(VerdictKind::Suspect, 0.6), &cfg);
            assert_eq!(out.kind, VerdictKind::Leak, "{out:?}");
            assert_eq!(out.confidence, cfg.leak_confidence);
            assert!(out.reason.contains("a leak since 2 s (at 10 live)"), "{}", out.reason);
            assert!(out.reason.contains(&format!("({}/{} in a row)", i + 1, cfg.leak_hold_samples)), "{}", out.reason);
            assert!(out.reason.ends_with("the trend is not yet strong enough"), "{}", out.reason);
        }
        let out = l.update(20.0, 9, v(VerdictKind::Suspect, 0.6), &cfg);
        assert_eq!(out.kind, VerdictKind::Suspect, "released after the hold");
        assert!(l.flagged.is_none());
    }

    #[test]
    fn a_leak_again_resets_the_count() {
        let cfg = DetectConfig::default();
        let mut l = Latch::default();
        l.update(1.0, 10, v(VerdictKind::Leak, 0.9), &cfg);
        for i in 0..10 {
            // alternating leak / suspect never lets go
            let k = if i % 2 == 0 { VerdictKind::Suspect } else { VerdictKind::Leak };
            assert_eq!(l.update(2.0 + i as f64, 20 + i, v(k, 0.7), &cfg).kind, VerdictKind::Leak);
        }
        for i in 0..cfg.leak_hold_samples {
            assert_eq!(l.update(20.0 + i as f64, 9, v(VerdictKind::Ok, 0.1), &cfg).kind, VerdictKind::Leak);
        }
        assert_eq!(l.update(30.0, 9, v(VerdictKind::Ok, 0.1), &cfg).kind, VerdictKind::Ok);
        assert!(l.flagged.is_none());
    }
}
