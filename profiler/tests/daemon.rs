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
    http_request(addr, "GET", path).map(|(_, body)| body)
}

/// One HTTP/1.0 request over loopback (no request body): the status code and the body.
fn http_request(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
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

/// Starts Prometheus scraping the daemon at `addr` every second with the shipped alerting rules;
/// returns it and the address its API serves on.
fn start_prometheus(prom_bin: &Path, addr: &str, tag: &str) -> (Killed, String) {
    let dir = std::env::temp_dir().join(format!("leakprof-prom-{}-{tag}", std::process::id()));
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
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom = Killed(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    (prom, prom_addr)
}

/// The alerts Prometheus has firing now, by name.
fn firing(prom_addr: &str) -> Vec<serde_json::Value> {
    let alerts = http_get(prom_addr, "/api/v1/alerts").unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&alerts).unwrap_or_default();
    v["data"]["alerts"].as_array().cloned().unwrap_or_default().into_iter().filter(|a| a["state"] == "firing").collect()
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
        skip_or_fail("prometheus_scrapes_the_daemon", "/usr/bin/prometheus is missing (scripts/setup.sh installs it)");
        return;
    }
    let leaky = Fixture::start("tokio-latest", &["mixed"]);
    let healthy = Fixture::start("go-latest", &["healthy-pool"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut daemon, addr) = start_daemon(&[
        "--listen", &listen, "--pid", &leaky.pid.to_string(), "--pid", &healthy.pid.to_string(), "--name", "tokio-1.38",
        // probes, so that attaching and detaching show in the probe gauge too
        "--probes",
    ]);
    assert_eq!(addr, listen);

    let (_prom, prom_addr) = start_prometheus(prom_bin, &addr, "main");

    // the daemon watches for targets: a process matching --name that starts later is attached
    // (its series appear, one more target, more probes), and detached when it exits (its series
    // go, the detach is counted, the target and probe gauges come back down)
    let t0 = Instant::now();
    while metric(&addr, "leakprof_attached_targets") != Some(2.0) {
        assert!(t0.elapsed() < Duration::from_secs(15), "the two --pid targets were not attached");
        std::thread::sleep(Duration::from_millis(500));
    }
    let probes_before = metric(&addr, "leakprof_attached_probes").unwrap();
    assert!(probes_before > 0.0, "no probes on the two --pid targets");
    assert_eq!(metric(&addr, "leakprof_detached_targets"), Some(0.0));
    let late = Fixture::start("tokio-1.38", &["healthy-pool"]);
    let late_pid = format!("pid=\"{}\"", late.pid);
    let t0 = Instant::now();
    let mut m = String::new();
    while t0.elapsed() < Duration::from_secs(15) {
        m = http_get(&addr, "/metrics").unwrap_or_default();
        if m.contains(&late_pid) && metric(&addr, "leakprof_attached_targets") == Some(3.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(m.contains(&late_pid), "the daemon did not attach the process started after it: {m}");
    assert_eq!(metric(&addr, "leakprof_attach_failures"), Some(0.0), "{m}");
    let probes_with_late = metric(&addr, "leakprof_attached_probes").unwrap();
    assert!(probes_with_late > probes_before, "no probes on the late target: {probes_before} -> {probes_with_late}");
    drop(late); // kills it
    let t0 = Instant::now();
    loop {
        m = http_get(&addr, "/metrics").unwrap_or_default();
        let detached = metric(&addr, "leakprof_detached_targets");
        let targets = metric(&addr, "leakprof_attached_targets");
        let probes = metric(&addr, "leakprof_attached_probes");
        if detached == Some(1.0) && targets == Some(2.0) && probes == Some(probes_before) && !m.contains(&late_pid) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the exited target was not detached: detached_targets {detached:?} (want 1), attached_targets \
             {targets:?} (want 2), attached_probes {probes:?} (want {probes_before}), its series still there: {}\n{m}",
            m.contains(&late_pid)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

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
    // the series exist for both targets in Prometheus (with --probes, Go's sites are those born
    // since attach: the pool started before it is not among them)
    let q = http_get(&prom_addr, "/api/v1/query?query=leakprof_site_live").unwrap();
    assert!(q.contains("never_answered") && q.contains("\"runtime\":\"go\""), "{q}");
    // leakprof's own kernel-side cost per program, from the kernel's BPF statistics
    let q = http_get(&prom_addr, "/api/v1/query?query=leakprof_bpf_program_run_seconds_total%3E0").unwrap();
    assert!(q.contains("task_birth_bind_inner") && q.contains("go_death"), "{q}");

    // the JSON API and the page are served; writes are refused
    let report: serde_json::Value = serde_json::from_str(&http_get(&addr, "/api/report").unwrap()).unwrap();
    assert!(report.as_array().unwrap().len() >= 2);
    // the page itself is served as shipped (that it renders is browser_renders_the_page_...)
    assert_eq!(http_request(&addr, "GET", "/"), Some((200, include_str!("../src/daemon/page.html").to_string())));
    for method in ["POST", "PUT", "DELETE"] {
        let (status, _) = http_request(&addr, method, "/api/report").unwrap();
        assert_eq!(status, 405, "{method} was not refused");
    }

    // SIGINT: the daemon detaches everything and exits 0
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGINT) };
    let st = daemon.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    std::fs::remove_dir_all(std::env::temp_dir().join(format!("leakprof-prom-{}-main", std::process::id()))).ok();
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
    // with probes: every target attached and detached leaves kernel links to close
    let (mut daemon, addr) =
        start_daemon(&["--listen", &listen, "--name", "tokio-latest", "--retention", "30", "--probes"]);
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
        skip_or_fail("browser_renders_the_page", "/usr/bin/chromium is missing (scripts/setup.sh installs it)");
        return;
    }
    // full debug info: where the tasks wait is read, and the page shows it
    let fx = Fixture::start("tokio-latest-debug2", &["mixed"]);
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
    // only the rendered page (not the script's source, which --dump-dom includes too) has these:
    // the target's heading, and the leaking site's row with its chart and its verdict, all drawn
    // by the page's script from the report
    assert!(!dom.contains(">loading…</div>"), "the page's script never replaced the placeholder: {dom}");
    assert!(dom.contains(&format!("<h2 class=\"target\">pid {} ", fx.pid)), "target not rendered: {dom}");
    let row = dom
        .split("<tr class=\"site\">")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(r))
        .find(|r| r.contains("never_answered"))
        .unwrap_or_else(|| panic!("no rendered row for the leaking site: {dom}"));
    assert!(row.contains("<svg class=\"chart\"") && row.contains("<polyline"), "no chart rendered in the leaking site's row: {row}");
    // the chart has its scales: the maximum live count and the time since attach at both ends
    assert!(row.contains("<text class=\"y-max\"") && row.matches("<text class=\"x-axis\"").count() == 2, "no axes: {row}");
    assert!(row.contains("<div class=\"stuck\">stuck at ") && row.contains("never_answered"), "no where-stuck line: {row}");
    let leak_badge = row.contains("<span class=\"leak verdict\">LEAK</span>");
    assert!(leak_badge, "no leak verdict rendered for the leaking site: {row}");
}

/// A raw request over loopback: the status code, or None when the server closed without one.
fn raw_status(addr: &str, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_http_face_holds_under_abuse() {
    if !bpf_available("the_http_face_holds_under_abuse") {
        return;
    }
    let fx = Fixture::start("tokio-latest", &["mixed"]);
    let dir = std::env::temp_dir().join(format!("leakprof-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut daemon, addr) =
        start_daemon(&["--listen", &listen, "--pid", &fx.pid.to_string(), "--token-file", token_file.to_str().unwrap()]);
    let get = |path: &str, auth: Option<&str>| {
        let h = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        raw_status(&addr, format!("GET {path} HTTP/1.0\r\nHost: x\r\n{h}\r\n").as_bytes())
    };
    // the token: a header only, compared whole
    assert_eq!(get("/metrics", None), Some(401));
    assert_eq!(get("/metrics?token=s3cret-token", None), Some(401), "a token in the URL is not accepted");
    assert_eq!(get("/metrics", Some("s3cret-toke")), Some(401));
    assert_eq!(get("/metrics", Some("s3cret-token")), Some(200));
    assert_eq!(get("/api/report", Some("s3cret-token")), Some(200));
    // the page holds no data and asks for the token
    let (status, page) = http_request(&addr, "GET", "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Authorization") && !page.contains("s3cret"), "the page sends the token as a header");
    // wrong methods, unknown paths, traversal
    assert_eq!(raw_status(&addr, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"), Some(405));
    assert_eq!(raw_status(&addr, b"DELETE / HTTP/1.0\r\n\r\n"), Some(405));
    assert_eq!(get("/nope", Some("s3cret-token")), Some(404));
    assert_eq!(get("/../../../../etc/passwd", Some("s3cret-token")), Some(404));
    assert_eq!(get("/%2e%2e/%2e%2e/etc/passwd", Some("s3cret-token")), Some(404));
    // a huge header and garbage: refused or dropped, never served, and the daemon lives on
    let huge = format!("GET /metrics HTTP/1.0\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    assert_ne!(raw_status(&addr, huge.as_bytes()), Some(200));
    let _ = raw_status(&addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
    // slow clients: 20 that never finish their request head and one that trickles it a byte at a
    // time hold only their own connections: a scraper is answered at once, and the server closes
    // theirs after its header timeout (5 s)
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let trickler = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let started = Instant::now();
            for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(b"y".repeat(100).iter()) {
                if s.write_all(&[*b]).is_err() {
                    return Some(started.elapsed()); // closed by the server
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(get("/metrics", Some("s3cret-token")), Some(200));
    assert!(asked.elapsed() < Duration::from_secs(2), "a scraper beside slow clients waited {:?}", asked.elapsed());
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest).is_ok();
        assert!(closed, "a client that never finished its request head was not disconnected within 10 s");
    }
    let cut = trickler.join().unwrap().expect("a client trickling its head for 20 s was not disconnected");
    assert!(cut < Duration::from_secs(12), "the trickling client was cut only after {cut:?}");
    // 100 concurrent scrapers: every one answered
    let scrapers: Vec<_> = (0..100)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                raw_status(&addr, b"GET /metrics HTTP/1.0\r\nAuthorization: Bearer s3cret-token\r\n\r\n")
            })
        })
        .collect();
    let ok = scrapers.into_iter().map(|t| t.join()).filter(|r| matches!(r, Ok(Some(200)))).count();
    assert_eq!(ok, 100, "concurrent scrapers answered");
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon is still running");
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGINT) };
    assert!(daemon.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copy of fixture `name` in a fresh directory, as `new_name`, patched by `patch`.
fn patched_copy(name: &str, new_name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leakprof-hostile-{}-{new_name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(fixture(name)).unwrap();
    patch(&mut bytes);
    let path = dir.join(new_name);
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The file offset of section `name`'s sh_size field in an ELF64 file.
fn section_size_field(elf: &[u8], name: &str) -> usize {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).unwrap();
    let index = file.section_by_name(name).unwrap_or_else(|| panic!("no {name}")).index().0;
    let shoff = u64::from_le_bytes(elf[40..48].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(elf[58..60].try_into().unwrap()) as usize;
    shoff + index * shentsize + 32
}

/// The file range of section `name`.
fn section_range(elf: &[u8], name: &str) -> std::ops::Range<usize> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).unwrap();
    let (off, size) = file.section_by_name(name).unwrap().file_range().unwrap();
    off as usize..(off + size) as usize
}

/// Hostile programs among healthy ones under `daemon --all`: a Go program whose `.gopclntab`
/// section header says 6 bytes (it still runs: Go does not read section headers), one whose
/// DWARF puts runtime.g's goid 16 KiB into the g, one whose reading panics inside leakprof and
/// one whose attach stalls (both injected: LEAKPROF_INJECT_FAULT). The healthy targets are
/// sampled every interval throughout; the panicking one is detached and counted; the daemon
/// serves on and stops cleanly.
#[test]
fn hostile_targets_cannot_stall_or_crash_the_daemon() {
    if !bpf_available("hostile_targets_cannot_stall_or_crash_the_daemon") {
        return;
    }
    let truncated = patched_copy("go-latest", "go-truncated-pclntab", |b| {
        let at = section_size_field(b, ".gopclntab");
        b[at..at + 8].copy_from_slice(&6u64.to_le_bytes());
    });
    let absurd = patched_copy("go-latest-plain-dwarf", "go-absurd-dwarf", |b| {
        // Go writes a struct member as its name (inline string) then its offset (uleb128):
        // runtime.g's goid is at 152 (0x98 0x01); make it 16383 (0xff 0x7f)
        let r = section_range(b, ".debug_info");
        let info = &mut b[r];
        let mut patched = 0;
        for i in 0..info.len() - 7 {
            if &info[i..i + 7] == b"goid\0\x98\x01" {
                info[i + 5..i + 7].copy_from_slice(&[0xff, 0x7f]);
                patched += 1;
            }
        }
        assert!(patched >= 1, "runtime.g's goid member not found in the DWARF");
    });
    let healthy_tokio = Fixture::start("tokio-latest", &["mixed"]);
    let healthy_go = Fixture::start("go-latest", &["healthy-pool"]);
    let (hostile_pclntab, _) = Fixture::start_at(&truncated, &["healthy-pool"], &[], None);
    let (hostile_dwarf, _) = Fixture::start_at(&absurd, &["healthy-pool"], &[], None);
    let panicking = Fixture::start("go-latest", &["recv-no-sender"]);
    let stalling = Fixture::start("tokio-latest", &["mixed"]);
    let faults = format!("panic-sample:{},stall-attach:{}", panicking.pid, stalling.pid);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = leakprof()
        .args(["daemon", "--all", "--listen", &listen, "--interval", "1"])
        .env("LEAKPROF_INJECT_FAULT", &faults)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dpid = child.id();
    let err = BufReader::new(child.stderr.take().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            log2.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let mut daemon = Killed(child);
    let addr = listen.as_str();
    let samples_of = |pid: u32| -> Option<i64> {
        let body = http_get(addr, "/api/report")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v.as_array()?.iter().find(|r| r["target"]["pid"] == pid).map(|r| int(&r["collection"]["samples"]))
    };
    // let the healthy ones attach (the stalling one sleeps 30 s in its attach meanwhile)
    let t0 = Instant::now();
    while (samples_of(healthy_tokio.pid).is_none() || samples_of(healthy_go.pid).is_none()) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
    }
    // every second for 8 s, each healthy target has a newer sample than two seconds before
    let mut seen: Vec<(i64, i64)> = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        let (a, b) = (samples_of(healthy_tokio.pid), samples_of(healthy_go.pid));
        let log = log.lock().unwrap().clone();
        let (a, b) = (a.unwrap_or_else(|| panic!("tokio target not served; daemon log:\n{log}")), b.unwrap_or_else(|| panic!("go target not served; daemon log:\n{log}")));
        seen.push((a, b));
    }
    for w in seen.windows(3) {
        assert!(w[2].0 > w[0].0 && w[2].1 > w[0].1, "a healthy target went 2 s without a sample: {seen:?}");
    }
    assert!(seen[7].0 - seen[0].0 >= 5 && seen[7].1 - seen[0].1 >= 5, "healthy targets not sampled each interval: {seen:?}");
    let log_now = log.lock().unwrap().clone();
    assert_eq!(metric(addr, "leakprof_target_panics"), Some(1.0), "the injected panic is counted once; log:\n{log_now}");
    assert!(samples_of(panicking.pid).is_none(), "the panicking target is detached");
    assert!(samples_of(stalling.pid).is_none(), "the stalling target is still attaching");
    assert!(
        log_now.contains(&format!("pid {}: reading it failed inside leakprof", panicking.pid)),
        "the panic is named in the log:\n{log_now}"
    );
    assert!(
        log_now.contains(&format!("not watching pid {}", hostile_dwarf.pid)) && log_now.contains("not believable"),
        "absurd DWARF offsets are refused with a sentence:\n{log_now}"
    );
    // the truncated pclntab: refused with a sentence or watched, never a crash
    let watched = samples_of(hostile_pclntab.pid).is_some();
    assert!(watched || log_now.contains(&format!("not watching pid {}", hostile_pclntab.pid)), "{log_now}");
    // the daemon stops cleanly, its stalled worker left behind
    unsafe { libc::kill(dpid as i32, libc::SIGINT) };
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(t1.elapsed() < Duration::from_secs(15), "the daemon did not stop within 15 s of SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "daemon exit: {status:?}");
    drop((healthy_tokio, healthy_go, hostile_pclntab, hostile_dwarf, panicking, stalling));
    let _ = std::fs::remove_dir_all(truncated.parent().unwrap());
    let _ = std::fs::remove_dir_all(absurd.parent().unwrap());
}

/// leakprof's own memory budget: over --max-rss-mib the daemon sheds the target holding the most
/// sites, says so, counts it, and serves on.
#[test]
fn over_its_memory_limit_the_daemon_sheds_a_target_and_says_which() {
    if !bpf_available("over_its_memory_limit_the_daemon_sheds_a_target_and_says_which") {
        return;
    }
    let a = Fixture::start("tokio-latest", &["mixed"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let (daemon, addr) = start_daemon(&["--listen", &listen, "--pid", &a.pid.to_string(), "--max-rss-mib", "4"]);
    let t0 = Instant::now();
    while metric(&addr, "leakprof_shed_targets").unwrap_or(0.0) < 1.0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(metric(&addr, "leakprof_shed_targets"), Some(1.0), "the target was shed once and not retried");
    assert_eq!(metric(&addr, "leakprof_attached_targets"), Some(0.0));
    assert!(http_get(&addr, "/api/report").is_some_and(|b| b.trim() == "[]"), "the daemon serves on");
    drop(daemon);
}

/// A leak that will reach its cgroup's memory limit within the hour: the daemon exports the time
/// to the limit and the shipped rule `LeakprofMemoryLimitWithinAnHour` fires for that site.
#[test]
fn the_memory_limit_alert_fires_for_a_leak_near_its_cgroup_limit() {
    if !bpf_available("the_memory_limit_alert_fires_for_a_leak_near_its_cgroup_limit") {
        return;
    }
    let prom_bin = Path::new("/usr/bin/prometheus");
    if !prom_bin.exists() {
        skip_or_fail("the_memory_limit_alert_fires", "/usr/bin/prometheus is missing (scripts/setup.sh installs it)");
        return;
    }
    let (v1, v2) = (Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path::new("/sys/fs/cgroup/cgroup.subtree_control"));
    let (dir, limit_file) = if v1.exists() {
        (Path::new("/sys/fs/cgroup/memory").join(format!("leakprof-alert-{}", std::process::id())), "memory.limit_in_bytes")
    } else if std::fs::read_to_string(v2).unwrap_or_default().contains("memory") {
        (Path::new("/sys/fs/cgroup").join(format!("leakprof-alert-{}", std::process::id())), "memory.max")
    } else {
        skip_or_fail("the_memory_limit_alert_fires", "no cgroup memory controller to make a limited cgroup in");
        return;
    };
    // about 0.7 MB/s, 1 GiB above its size: reached in about 25 minutes, well within the hour
    let (fx, _) = Fixture::start_with("tokio-latest", &["big-futures", "--rate", "10"], &[], Some("future_bytes"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Remove(std::path::PathBuf, u32);
    impl Drop for Remove {
        fn drop(&mut self) {
            // back to the root cgroup (v1, else v2), so that the empty one can be removed
            let root = self.0.parent().unwrap().join("cgroup.procs");
            let _ = std::fs::write(root, self.1.to_string());
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let rss: u64 = std::fs::read_to_string(format!("/proc/{}/statm", fx.pid)).unwrap().split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096;
    std::fs::write(dir.join(limit_file), (rss + (1 << 30)).to_string()).unwrap();
    std::fs::write(dir.join("cgroup.procs"), fx.pid.to_string()).unwrap();
    let _cleanup = Remove(dir, fx.pid);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_daemon, addr) = start_daemon(&["--listen", &listen, "--pid", &fx.pid.to_string()]);
    let (_prom, prom_addr) = start_prometheus(prom_bin, &addr, "limit");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alerts = Vec::new();
    while Instant::now() < deadline {
        alerts = firing(&prom_addr);
        if alerts.iter().any(|a| a["labels"]["alertname"] == "LeakprofMemoryLimitWithinAnHour") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let limit: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["labels"]["alertname"] == "LeakprofMemoryLimitWithinAnHour").collect();
    assert!(!limit.is_empty(), "no memory-limit alert: {alerts:?}\n{}", http_get(&addr, "/metrics").unwrap_or_default());
    for a in limit {
        assert!(a["labels"]["site"].as_str().unwrap().contains("memory::hold_"), "{a}");
        assert_eq!(a["labels"]["pid"], fx.pid.to_string(), "{a}");
    }
    let m = http_get(&addr, "/metrics").unwrap();
    assert!(m.contains("leakprof_target_memory_limit_bytes") && m.contains("leakprof_site_bytes{"), "{m}");
    drop(_prom);
    std::fs::remove_dir_all(std::env::temp_dir().join(format!("leakprof-prom-{}-limit", std::process::id()))).ok();
}
