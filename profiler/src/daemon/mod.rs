//! `leakprof daemon`: the same pipeline for many targets, chosen by pid, by name or all that are
//! recognised, attached as they start and detached as they exit, served over HTTP (Prometheus
//! metrics, the JSON report, an HTML page).
mod discover;
mod http;
pub mod metrics;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    model::{EndReason, OtherSites, Report},
    session::{RunOptions, Session},
};

pub use discover::Selector;

/// What the daemon watches and how it serves.
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub token: Option<String>,
    pub select: Selector,
    pub interval: Duration,
    /// Samples kept per target (older ones are thinned, see `history`): bounded memory.
    pub retention: usize,
    /// Sites reported per target (worst first); the rest are summed into `other_sites`.
    pub top_k: usize,
    /// Template for each target's session (pid is filled in).
    pub session: RunOptions,
}

/// What the HTTP side serves, replaced after every round.
#[derive(Default)]
pub struct Shared {
    pub reports: Vec<Report>,
    pub health: metrics::Health,
}

/// Runs until SIGINT/SIGTERM; detaches everything before returning.
pub async fn run(cfg: DaemonConfig) -> Result<()> {
    if !cfg.listen.ip().is_loopback() && !cfg.allow_remote {
        bail!(
            "refusing to serve on {} without --allow-remote: the reports name functions and files \
             of other people's processes (use --token-file too)",
            cfg.listen
        );
    }
    crate::preflight::check_privileges()?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let server = http::start(cfg.listen, cfg.token.clone(), Arc::clone(&shared))?;
    eprintln!("leakprof daemon: serving http://{} (/metrics, /api/report, /)", server.local_addr);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sessions: HashMap<(u32, u64), Session> = HashMap::new();
    let mut refused: HashSet<(u32, u64)> = HashSet::new();
    let mut health = metrics::Health::default();
    let mut next = Instant::now();
    loop {
        for key in cfg.select.candidates(std::process::id()) {
            if sessions.contains_key(&key) || refused.contains(&key) {
                continue;
            }
            let opts = RunOptions { pid: key.0, ..cfg.session.clone() };
            match Session::attach(opts) {
                Ok(s) => {
                    eprintln!("leakprof daemon: attached to pid {}", key.0);
                    sessions.insert(key, s);
                }
                Err(e) => {
                    eprintln!("leakprof daemon: not watching pid {}: {e:#}", key.0);
                    health.attach_failures += 1;
                    refused.insert(key);
                }
            }
        }
        refused.retain(|k| discover::start_time(k.0) == Some(k.1));
        let mut reports = Vec::new();
        let gone: Vec<(u32, u64)> = sessions
            .iter()
            .filter(|(k, s)| {
                !s.target_alive() || discover::start_time(k.0) != Some(k.1) || !s.target_same_exe()
            })
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(s) = sessions.remove(&k) {
                drop(s.finish(EndReason::TargetExited)); // detaches its probes
                health.detached_targets += 1;
                eprintln!("leakprof daemon: pid {} exited or exec'd; detached", k.0);
            }
        }
        for s in sessions.values_mut() {
            if let Err(e) = s.sample() {
                eprintln!("leakprof daemon: pid {}: {e:#}", s.pid());
                continue;
            }
            reports.push(bounded(s.report(EndReason::Running), cfg.top_k));
        }
        health.attached_targets = sessions.len();
        (health.cpu_seconds, health.rss_bytes) = metrics::own_usage();
        {
            let mut sh = shared.lock().unwrap();
            sh.reports = reports;
            sh.health = health.clone();
        }
        next += cfg.interval;
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    for (_, s) in sessions.drain() {
        drop(s.finish(EndReason::Interrupted));
    }
    server.stop();
    eprintln!("leakprof daemon: stopped, everything detached");
    Ok(())
}

/// Keeps the `k` worst sites and folds the rest into one row, so a report's size is bounded.
/// Keeps the `k` worst sites of a report; the rest are summed into `other_sites` (their number
/// and live count only: no verdict, which none of them earned together, and no counters, which
/// would go down as sites move in and out of the fold).
fn bounded(mut r: Report, k: usize) -> Report {
    if r.sites.len() > k {
        let rest: Vec<_> = r.sites.drain(k..).collect();
        r.other_sites = Some(OtherSites { sites: rest.len(), live: rest.iter().map(|s| s.live).sum() });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_sites_keep_no_verdict_and_a_stable_shape() {
        let r = bounded(crate::model::tests::report_with_sites(5), 2);
        assert_eq!(r.sites.len(), 2);
        assert_eq!(r.other_sites, Some(OtherSites { sites: 3, live: 2 + 3 + 4 }));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["other_sites"], serde_json::json!({"sites": 3, "live": 9}));
        assert!(bounded(crate::model::tests::report_with_sites(2), 2).other_sites.is_none());
    }
}
