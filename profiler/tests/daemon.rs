//! Root-only end to end: the daemon watches leaking and healthy fixtures, a real Prometheus
//! (Debian's package, on loopback) scrapes it with the shipped alerting rules, and the leak alert
//! fires for the leaking site only; targets that exit are detached; SIGINT stops it cleanly.
mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// GET over loopback, body only.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `leakprof daemon ARGS`; returns it and the address it serves on.
fn start_daemon(args: &[&str]) -> (Killed, String) {
    let mut child = leakprof()
        .arg("daemon")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("leakprof daemon starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("daemon did not say where it serves: {line:?}"))
        .to_string();
    // keep draining stderr so the daemon never blocks on a full pipe
    std::thread::spawn(move || for _ in err.lines() {});
    (Killed(child), addr)
}

#[test]
fn prometheus_scrapes_the_daemon_and_the_leak_alert_fires_for_the_leaking_site_only() {
    if !bpf_available("prometheus_scrapes_the_daemon_and_the_leak_alert_fires_for_the_leaking_site_only") {
        return;
    }
    let prom_bin = Path::new("/usr/bin/prometheus");
    if !prom_bin.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("/usr/bin/prometheus is missing: scripts/setup.sh installs Debian's prometheus");
        }
        eprintln!("SKIPPED: /usr/bin/prometheus is missing (run scripts/setup.sh)");
        return;
    }
    let leaky = Fixture::start("tokio-latest", &["mixed"]);
    let healthy = Fixture::start("go-latest", &["healthy-pool"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut daemon, addr) = start_daemon(&[
        "--listen", &listen, "--pid", &leaky.pid.to_string(), "--pid", &healthy.pid.to_string(), "--name", "plain",
    ]);
    assert_eq!(addr, listen);

    let dir = std::env::temp_dir().join(format!("leakprof-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus-rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: leakprof\n    static_configs:\n      - targets: ['{addr}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let _prom = Killed(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    // the daemon restarts with targets: a process matching --name that starts later is attached,
    // and detached when it exits
    std::thread::sleep(Duration::from_secs(3));
    let late = Fixture::start("plain", &["condvar-pool"]);
    let t0 = Instant::now();
    let mut attached_late = false;
    while t0.elapsed() < Duration::from_secs(10) {
        let m = http_get(&addr, "/metrics").unwrap_or_default();
        if m.contains(&format!("pid=\"{}\"", late.pid)) || m.contains("leakprof_attach_failures 1") {
            attached_late = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(attached_late, "the daemon did not notice the process started after it");
    drop(late);

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alerts = String::new();
    while Instant::now() < deadline {
        alerts = http_get(&prom_addr, "/api/v1/alerts").unwrap_or_default();
        if alerts.contains("\"alertname\":\"LeakprofLeakingSite\"") && alerts.contains("\"state\":\"firing\"") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let v: serde_json::Value = serde_json::from_str(&alerts).unwrap_or_else(|e| panic!("{e}: {alerts}"));
    let firing: Vec<&serde_json::Value> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] == "LeakprofLeakingSite")
        .collect();
    assert!(!firing.is_empty(), "no leak alert fired: {alerts}");
    let others: Vec<&serde_json::Value> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] != "LeakprofLeakingSite")
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:?}");
    for a in &firing {
        assert!(a["labels"]["site"].as_str().unwrap().contains("never_answered"), "wrong site alerted: {a}");
        assert_eq!(a["labels"]["pid"], leaky.pid.to_string());
    }
    // the series exist for both targets in Prometheus
    let q = http_get(&prom_addr, "/api/v1/query?query=leakprof_site_live").unwrap();
    assert!(q.contains("never_answered") && q.contains("main.startPool"), "{q}");

    // the JSON API and the page are served; writes are refused
    let report: serde_json::Value = serde_json::from_str(&http_get(&addr, "/api/report").unwrap()).unwrap();
    assert!(report.as_array().unwrap().len() >= 2);
    assert!(http_get(&addr, "/").unwrap().contains("<svg") || http_get(&addr, "/").unwrap().contains("spark("));

    // SIGINT: the daemon detaches everything and exits 0
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGINT) };
    let st = daemon.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn daemon_refuses_remote_listening_without_the_flag() {
    let out = leakprof().args(["daemon", "--listen", "0.0.0.0:9999", "--all"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote") || err.contains("needs root"), "{err}");
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    let m = http_get(addr, "/metrics")?;
    m.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.split_whitespace().nth(1)?.parse().ok()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn soak_targets_come_and_go_memory_stays_bounded_and_nothing_stays_attached() {
    if !bpf_available("soak_targets_come_and_go_memory_stays_bounded_and_nothing_stays_attached") {
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut daemon, addr) = start_daemon(&["--listen", &listen, "--name", "tokio-latest", "--retention", "30"]);
    let dpid = daemon.0.id();
    let baseline_fds = fds(dpid);
    let mut started = 0u32;
    let mut rss_early = 0;
    let t0 = Instant::now();
    // two minutes of churn: a short-lived leaking target every 3 s (each lives 4 s), plus one long one
    let _long = Fixture::start("tokio-latest", &["mixed"]);
    let mut alive: Vec<Fixture> = Vec::new();
    while t0.elapsed() < Duration::from_secs(120) {
        alive.push(Fixture::start("tokio-latest", &["mixed", "--seconds", "4"]));
        started += 1;
        std::thread::sleep(Duration::from_secs(3));
        alive.retain_mut(|f| f.running());
        if rss_early == 0 && t0.elapsed() > Duration::from_secs(30) {
            rss_early = rss_kib(dpid);
        }
    }
    drop(alive);
    std::thread::sleep(Duration::from_secs(8));
    let detached = metric(&addr, "leakprof_detached_targets").unwrap();
    assert!(detached >= f64::from(started) - 1.0, "detached {detached} of {started} exited targets");
    assert_eq!(metric(&addr, "leakprof_attached_targets"), Some(1.0), "only the long-lived target stays");
    let probes = metric(&addr, "leakprof_attached_probes").unwrap();
    assert!(probes > 0.0 && probes <= 8.0, "probes of one target only: {probes}");
    // every detached target's probe links (perf event and BPF fds) were closed
    let fds_now = fds(dpid);
    assert!(fds_now <= baseline_fds + 40, "fd leak: {baseline_fds} at start, {fds_now} after {started} targets");
    let rss_end = rss_kib(dpid);
    assert!(rss_end < rss_early * 3 / 2 + 20 * 1024, "memory grew: {rss_early} KiB at 30 s, {rss_end} KiB at the end");
    unsafe { libc::kill(dpid as i32, libc::SIGINT) };
    assert!(daemon.0.wait().unwrap().success());
}

#[test]
fn browser_renders_the_page_with_charts_and_verdicts() {
    if !bpf_available("browser_renders_the_page_with_charts_and_verdicts") {
        return;
    }
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("/usr/bin/chromium is missing: scripts/setup.sh installs Debian's chromium");
        }
        eprintln!("SKIPPED: /usr/bin/chromium is missing (run scripts/setup.sh)");
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let (_daemon, addr) = start_daemon(&["--listen", &listen, "--pid", &fx.pid.to_string()]);
    std::thread::sleep(Duration::from_secs(10));
    let profile = std::env::temp_dir().join(format!("leakprof-chromium-{}", std::process::id()));
    let out = Command::new(chromium)
        .args([
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--virtual-time-budget=5000", "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/"))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    std::fs::remove_dir_all(&profile).ok();
    // only the rendered page (not the script's source) has these: data from the report
    assert!(dom.contains("never_answered"), "site not rendered: {dom}");
    assert!(dom.contains("<svg class=\"chart\" width=\"160\""), "no chart rendered: {dom}");
    let leak_badge = dom.match_indices("LEAK ").any(|(i, _)| dom[i + 5..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(leak_badge, "no leak verdict rendered: {dom}");
}
