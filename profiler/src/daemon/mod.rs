//! `leakprof daemon`: the same pipeline for many targets, chosen by pid, by name or all that are
//! recognised, attached as they start and detached as they exit, served over HTTP (Prometheus
//! metrics, the JSON report, an HTML page).
mod discover;
mod http;
pub mod metrics;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    model::{OtherSites, Report},
    session::RunOptions,
};
pub use worker::panic_message;
use worker::{State, Worker};

pub use discover::Selector;

/// What the daemon watches and how it serves.
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub token: Option<String>,
    pub select: Arc<Selector>,
    pub interval: Duration,
    /// Samples kept per target (older ones are thinned, see `history`): bounded memory.
    pub retention: usize,
    /// Sites reported per target (worst first); the rest are summed into `other_sites`.
    pub top_k: usize,
    /// leakprof's own resident memory limit: past it the target with the most sites is shed.
    pub max_rss_bytes: u64,
    /// Template for each target's session (pid is filled in).
    pub session: RunOptions,
}

/// What the HTTP side serves, replaced after every round.
#[derive(Default)]
pub struct Shared {
    pub reports: Vec<Report>,
    pub health: metrics::Health,
}

/// Runs until SIGINT/SIGTERM; detaches everything before returning. Each target is attached and
/// sampled on its own thread ([`worker`]); this loop finds targets, gathers what each last
/// published and serves it, so no target can stall or crash the others.
pub async fn run(cfg: DaemonConfig) -> Result<()> {
    if !cfg.listen.ip().is_loopback() && !cfg.allow_remote {
        bail!(
            "refusing to serve on {} without --allow-remote: the reports name functions and files \
             of other people's processes (use --token-file too)",
            cfg.listen
        );
    }
    crate::preflight::check_privileges(cfg.session.probes)?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let server = http::start(cfg.listen, cfg.token.clone(), Arc::clone(&shared))?;
    eprintln!("leakprof daemon: serving http://{} (/metrics, /api/report, /)", server.local_addr);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // finding targets reads executables (a large one takes a while): on a thread of its own, so
    // the loop below never waits for it
    let found: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let stop_discovery = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let discovery = {
        let (found, stop, select, interval) = (Arc::clone(&found), Arc::clone(&stop_discovery), Arc::clone(&cfg.select), cfg.interval);
        std::thread::Builder::new().name("leakprof-discover".into()).spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let c = select.candidates(std::process::id());
                *found.lock().unwrap_or_else(|p| p.into_inner()) = c;
                std::thread::sleep(interval.min(Duration::from_secs(1)));
            }
        })?
    };
    let mut workers: HashMap<(u32, u64), Worker> = HashMap::new();
    let mut refused: HashSet<(u32, u64)> = HashSet::new();
    let mut health = metrics::Health::default();
    let mut next = Instant::now();
    let top_k = cfg.top_k;
    loop {
        let candidates = found.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for key in candidates {
            if workers.contains_key(&key) || refused.contains(&key) {
                continue;
            }
            let opts = RunOptions { pid: key.0, ..cfg.session.clone() };
            workers.insert(key, Worker::start(opts, key.1, top_k));
        }
        refused.retain(|k| discover::start_time(k.0) == Some(k.1));
        let mut reports = Vec::new();
        let mut done = Vec::new();
        let mut attached = 0;
        for (key, w) in &workers {
            match w.state() {
                // attached once its first report is out (a worker samples right after attaching)
                State::Attaching | State::Sampling(None) => {}
                State::Sampling(Some(r)) => {
                    attached += 1;
                    reports.push(*r);
                }
                State::Refused(e) => {
                    eprintln!("leakprof daemon: not watching pid {}: {e}", w.pid);
                    health.attach_failures += 1;
                    refused.insert(*key);
                    done.push(*key);
                }
                State::Ended => {
                    health.detached_targets += 1;
                    eprintln!("leakprof daemon: pid {} exited or exec'd; detached", w.pid);
                    done.push(*key);
                }
                State::Panicked(msg) => {
                    health.target_panics += 1;
                    eprintln!(
                        "leakprof daemon: pid {}: reading it failed inside leakprof ({msg}); detached it and \
                         will not retry it; the other targets go on",
                        w.pid
                    );
                    refused.insert(*key);
                    done.push(*key);
                }
            }
        }
        for key in done {
            if let Some(w) = workers.remove(&key) {
                w.stop(Duration::from_millis(100));
            }
        }
        reports.sort_by_key(|r| r.target.pid);
        health.attached_targets = attached;
        (health.cpu_seconds, health.rss_bytes) = metrics::own_usage();
        if health.rss_bytes > cfg.max_rss_bytes {
            // over its own memory limit: shed the target that holds the most sites
            let sites = |r: &Report| r.sites.len() + r.other_sites.map_or(0, |o| o.sites) + r.blocked.len();
            if let Some(r) = reports.iter().max_by_key(|r| sites(r)) {
                let pid = r.target.pid;
                eprintln!(
                    "leakprof daemon: own memory {} MiB is over --max-rss-mib {}: detached pid {pid} ({} sites, the most); \
                     it is not retried until it restarts",
                    health.rss_bytes >> 20,
                    cfg.max_rss_bytes >> 20,
                    sites(r)
                );
                if let Some(key) = workers.keys().find(|k| k.0 == pid).copied() {
                    if let Some(w) = workers.remove(&key) {
                        w.stop(Duration::from_millis(100));
                    }
                    refused.insert(key);
                    health.shed_targets += 1;
                    health.attached_targets = health.attached_targets.saturating_sub(1);
                }
                reports.retain(|r| r.target.pid != pid);
            }
        }
        {
            let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
            sh.reports = reports;
            sh.health = health.clone();
        }
        next += cfg.interval;
        if Instant::now() > next {
            next = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    stop_discovery.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(discovery); // detached: it ends at its next look, or with the process
    for (_, w) in workers.drain() {
        w.stop(Duration::from_secs(5));
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
