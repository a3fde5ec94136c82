//! Shared helpers of the integration tests: fixtures, the BPF gate, running leakprof.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

/// Where `cargo xtask fixtures` puts the fixture programs (or $LEAKPROF_FIXTURES).
pub fn fixture_dir() -> PathBuf {
    std::env::var_os("LEAKPROF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bin"))
}

/// The fixture program `name`, which must be built.
pub fn fixture(name: &str) -> PathBuf {
    let p = fixture_dir().join(name);
    assert!(p.exists(), "fixture {} is missing: run `cargo xtask fixtures` first", p.display());
    p
}

/// A test that cannot run here: under CI (CI=true) it FAILS; elsewhere it prints why it is
/// skipped and records it in $LEAKPROF_SKIP_LOG, which `cargo xtask test` counts and reports.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why} (CI=true: failing instead of skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("LEAKPROF_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}\t{why}");
        }
    }
}

/// The fixture `name` parsed, or None when it is not built: under CI (CI=true) a missing
/// fixture FAILS the test; elsewhere it is skipped with a reason.
pub fn fixture_image(name: &str) -> Option<leakprof::elf::ElfImage> {
    let path = fixture_dir().join(name);
    if !path.exists() {
        skip_or_fail(name, &format!("{} not built (cargo xtask fixtures)", path.display()));
        return None;
    }
    Some(leakprof::elf::ElfImage::open(&path).expect("fixture parses"))
}

/// True when this machine can run the BPF tests: running as root, a BPF program of the type
/// uprobes use really loads (`bpf(BPF_PROG_LOAD)` of `mov r0, 0; exit`), and the kernel has the
/// uprobe PMU. Without BPF: under CI (CI=true) this FAILS the test; elsewhere it prints why the
/// test is skipped and returns false.
pub fn bpf_available(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else if let Err(e) = load_trivial_bpf_program() {
        Some(e)
    } else if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        Some("the kernel has no uprobe PMU (CONFIG_UPROBES)".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            skip_or_fail(test, &format!("needs BPF, but {why}"));
            false
        }
    }
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD` (linux/bpf.h); the kernel takes a shorter
/// attr than its own and treats the missing tail as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// Loads (and closes) a two-instruction kprobe-type program, the type uprobe programs have, so
/// "BPF is available" means what the tests need: the syscall exists, is permitted and verifies.
/// The error names the errno and, if any, the verifier's log.
pub fn load_trivial_bpf_program() -> Result<(), String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_KPROBE: u32 = 2;
    // struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm}, little endian
    let insns: [u64; 2] = [
        0xb7, // BPF_ALU64 | BPF_MOV | BPF_K, r0 = 0
        0x95, // BPF_JMP | BPF_EXIT
    ];
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        // only kernels before 5.0 check it against LINUX_VERSION_CODE
        kern_version: kernel_version_code(),
        prog_flags: 0,
    };
    // SAFETY: `attr` and everything it points to outlive the call; the size is attr's own.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, std::mem::size_of::<ProgLoadAttr>())
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).trim().to_string();
        return Err(format!(
            "bpf(BPF_PROG_LOAD) of a trivial kprobe program failed: {err}{}",
            if verifier.is_empty() { String::new() } else { format!("; verifier: {verifier}") }
        ));
    }
    // SAFETY: `fd` is the program fd the kernel just returned to us.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// LINUX_VERSION_CODE of the running kernel, from uname's release (`6.1.0-18-amd64` -> 6.1.0).
fn kernel_version_code() -> u32 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a << 16) + (b << 8) + c.min(255)
}

/// A running fixture, killed when dropped.
pub struct Fixture {
    pub child: Child,
    pub pid: u32,
}

impl Fixture {
    pub fn start(name: &str, args: &[&str]) -> Fixture {
        Fixture::start_with(name, args, &[], None).0
    }

    /// Starts a fixture with these environment variables; with `then`, also waits for the line
    /// starting with `then` that it prints after `ready` and returns the rest of that line.
    pub fn start_with(name: &str, args: &[&str], env: &[(&str, &str)], then: Option<&str>) -> (Fixture, Option<String>) {
        Fixture::start_at(&fixture(name), args, env, then)
    }

    /// [`Fixture::start_with`] for a program at any path (a patched copy of a fixture).
    pub fn start_at(bin: &Path, args: &[&str], env: &[(&str, &str)], then: Option<&str>) -> (Fixture, Option<String>) {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut out = BufReader::new(child.stdout.as_mut().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("ready pid=")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{} did not print `ready pid=`: {line:?}", bin.display()));
        let rest = then.map(|prefix| loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("{} ended before printing `{prefix}`", bin.display());
            }
            if let Some(r) = line.trim().strip_prefix(prefix) {
                break r.trim().to_string();
            }
        });
        (Fixture { child, pid }, rest)
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn leakprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leakprof"))
}

/// Runs leakprof to completion.
pub fn run(args: &[&str]) -> Output {
    leakprof().args(args).output().expect("cannot run leakprof")
}

/// Runs `leakprof --pid PID --duration S --format json` and parses the report.
pub fn json_report(pid: u32, seconds: u32) -> serde_json::Value {
    let out = run(&["--pid", &pid.to_string(), "--duration", &seconds.to_string(), "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "leakprof failed: {}\nstderr: {stderr}\nstdout: {stdout}", out.status);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// The site whose function contains `needle` (panics with the site list if none).
pub fn site<'a>(report: &'a serde_json::Value, needle: &str) -> &'a serde_json::Value {
    let sites = report["sites"].as_array().expect("sites array");
    sites
        .iter()
        .find(|s| s["function"].as_str().is_some_and(|f| f.contains(needle)))
        .unwrap_or_else(|| {
            let names: Vec<&str> = sites.iter().filter_map(|s| s["function"].as_str()).collect();
            panic!("no site named like {needle}; sites: {names:#?}")
        })
}

pub fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The ids in one of the kernel's BPF object lists: `cmd` BPF_PROG_GET_NEXT_ID (11) for
/// programs, BPF_LINK_GET_NEXT_ID (31) for links. What was left attached shows up here.
pub fn bpf_ids(cmd: libc::c_long) -> std::collections::BTreeSet<u32> {
    #[repr(C)]
    struct NextId {
        start_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut attr = NextId { start_id: 0, next_id: 0, open_flags: 0 };
    loop {
        // SAFETY: `attr` outlives the call and the size is its own.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut NextId, std::mem::size_of::<NextId>()) };
        if r < 0 {
            return ids;
        }
        ids.insert(attr.next_id);
        attr.start_id = attr.next_id;
    }
}

pub const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
pub const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// The line (1-based) of the fixture source `rel` (from the repository's root, e.g.
/// `fixtures/tokio-src/local.rs`) holding `text`: tests find spawn and await lines by their text,
/// so adding code to a fixture does not break them.
pub fn source_line(rel: &str, text: &str) -> u32 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    src.lines().position(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?} in {rel}")) as u32 + 1
}
