//! Threads blocked in system calls, grouped by what they wait in (the syscall's family) and where
//! (their user stack), over time.
//!
//! Each sample takes a census of the target's threads now blocked in a syscall (/proc: this also
//! finds waits that began before attach), reads and unwinds each waiting thread's stack once per
//! wait, and counts threads per wait site. The kernel's futex tracepoints give the start time of
//! futex waits that began since attach; other waits count from when they were first seen.
//!
//! A runtime's own parking (a tokio worker or blocking-pool thread waiting for work, tokio's I/O
//! driver in `epoll_wait`, Go's idle Ms and netpoller) is recognised by the function that parks,
//! not by "a runtime frame is on top": a thread inside a blocking task (a `spawn_blocking`
//! closure inlined into tokio's `BlockingTask::poll`) is running the user's code and waits there.
use std::collections::{BTreeMap, HashMap};

use super::census::{blocked_threads, thread_stack, ThreadWait};
use crate::{
    elf::ElfImage,
    model::StackFrame,
    sample::{Sample, SiteObs, SiteTotals},
    unwind::{symbolize_frames, Unwinder},
};

/// Bytes of stack read per waiting thread.
const STACK_WINDOW: usize = 16 * 1024;

pub use crate::model::WaitKind;

/// Where tokio parks a thread that has no work: its schedulers' park, the drivers (I/O, time,
/// signal), `block_on`'s park, and the blocking pool's wait for a job (`Inner::run` waiting on
/// its condvar itself, not a task it runs).
const TOKIO_PARKING: &[&str] = &[
    "tokio::runtime::park::",
    "tokio::runtime::scheduler::multi_thread::park::",
    "tokio::runtime::scheduler::multi_thread::worker::Context::park",
    "tokio::runtime::scheduler::multi_thread::worker::Context::run",
    "tokio::runtime::scheduler::multi_thread::worker::run",
    "tokio::runtime::scheduler::multi_thread_alt::",
    "tokio::runtime::scheduler::current_thread::",
    "tokio::runtime::scheduler::inject::",
    "tokio::runtime::driver::",
    "tokio::runtime::io::",
    "tokio::runtime::time::",
    "tokio::runtime::signal::",
    "tokio::runtime::process::",
    "tokio::runtime::blocking::pool::Inner::run",
    "tokio::runtime::blocking::pool::Spawner::spawn_thread",
    "tokio::runtime::runtime::Runtime::block_on",
    "tokio::runtime::context::",
];

/// Wait sites that are a runtime's idle workers parking: tokio's (above), and Go's runtime (its
/// idle Ms in futexsleep, the netpoller in epoll_wait (`internal/runtime/syscall/linux.EpollWait`
/// since Go 1.23), sysmon in usleep).
fn is_runtime_idle_site(f: &str) -> bool {
    let f = f.trim_start_matches('<');
    TOKIO_PARKING.iter().any(|p| f.starts_with(p)) || f.starts_with("runtime.") || f.starts_with("internal/runtime/")
}

/// Where a frame's code is in tokio's own sources (`runtime/park.rs`), from its file: DWARF names
/// inlined frames without their path (`turn`, `park`), so the file tells whose they are.
fn tokio_source(f: &StackFrame) -> Option<&str> {
    let file = f.file.as_deref()?;
    let at = file.find("/tokio-")?;
    let rest = &file[at + 1..];
    Some(&rest[rest.find("/src/")? + 5..])
}

/// tokio's files of its parking and of its running a task (as [`TOKIO_PARKING`] and
/// [`is_task_runner`] by name).
const TOKIO_PARKING_FILES: &[&str] = &[
    "runtime/park.rs",
    "runtime/scheduler/",
    "runtime/driver.rs",
    "runtime/io/",
    "runtime/time/",
    "runtime/signal/",
    "runtime/process/",
    "runtime/blocking/pool.rs",
    "runtime/context",
    "runtime/runtime.rs",
];
const TOKIO_RUNNER_FILES: &[&str] = &["runtime/task/", "runtime/blocking/task.rs"];

/// Frames of tokio that run a task (a blocking task's closure is inlined into them): a thread
/// waiting here waits in the user's code.
fn is_task_runner(f: &str) -> bool {
    let f = f.trim_start_matches('<');
    f.starts_with("tokio::runtime::blocking::task::")
        || f.starts_with("tokio::runtime::task::")
        || f.starts_with("tokio::runtime::blocking::pool::Task::run")
}

/// Frames that are the waiting machinery, not the place that waits.
fn is_wait_machinery(f: &str) -> bool {
    let f = f.trim_start_matches('<');
    f.starts_with("std::")
        || f.starts_with("&std::")
        || f.starts_with("alloc::")
        || f.starts_with("core::")
        || f.starts_with("parking_lot")
        || f.starts_with("mio::")
        || f.starts_with("libc::")
        || f.starts_with("0x")
        || f.starts_with("__")
        || f.starts_with("pthread_")
        || f == "syscall"
        || f.starts_with("futex")
        || f.contains("::futex")
}

/// Names a stack's wait site, the first frame that is not waiting machinery, and classifies it:
/// a runtime's own parking function is idle, anything else (even on a runtime's blocking-pool
/// thread) is a wait.
pub fn wait_site(frames: &[StackFrame]) -> (WaitKind, usize) {
    // DWARF names inlined std frames without their path (`wait<()>`): their file tells
    let in_std = |f: &StackFrame| {
        f.file.as_deref().is_some_and(|p| p.starts_with("/rustc/") || p.contains("/rustlib/src/rust/library/"))
    };
    // mio under tokio's I/O driver, by its file when DWARF names it without its path (`select`)
    let in_mio = |f: &StackFrame| f.file.as_deref().is_some_and(|p| p.contains("/mio-"));
    let at = frames.iter().position(|f| !is_wait_machinery(&f.function) && !in_std(f) && !in_mio(f)).unwrap_or(0);
    let idle = frames.get(at).is_some_and(|f| match tokio_source(f) {
        Some(src) => TOKIO_PARKING_FILES.iter().any(|p| src.starts_with(p)) && !TOKIO_RUNNER_FILES.iter().any(|p| src.starts_with(p)),
        None => is_runtime_idle_site(&f.function) && !is_task_runner(&f.function),
    });
    (if idle { WaitKind::RuntimeIdle } else { WaitKind::Wait }, at)
}

/// The name of a wait site whose first frame past the machinery is tokio running a task: the
/// user's closure was inlined into it and no DWARF inline info names it (a release build without
/// line tables, or LTO). Each closure has its own copy of tokio's function, so its address tells
/// closures apart. None when the frame is not one of those.
fn blocking_task_name(f: &StackFrame, vaddr: u64) -> Option<String> {
    if !is_task_runner(&f.function) || f.file.as_deref().is_some_and(|p| !crate::elf::lines::is_library_path(p)) {
        return None;
    }
    Some(format!("spawn_blocking closure in {} at {vaddr:#x}", f.function))
}

#[derive(Debug, Clone)]
struct Waiter {
    key: String,
    since_ns: u64,
    preexisting: bool,
    /// Resident bytes of the stack mapping its sp is in (read once per wait, from smaps).
    stack_bytes: Option<u64>,
}

/// Resident bytes (`Rss`) of the mappings of `pid` that hold each of `addrs`: one pass over
/// /proc/PID/smaps.
fn resident_at(pid: u32, addrs: &[u64]) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return out };
    let mut current: Vec<u64> = Vec::new();
    for line in text.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            let kb: u64 = rss.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            for &a in &current {
                out.insert(a, kb * 1024);
            }
            current.clear();
            continue;
        }
        let Some((range, _)) = line.split_once(' ') else { continue };
        let Some((lo, hi)) = range.split_once('-') else { continue };
        if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
            current = addrs.iter().copied().filter(|&a| a >= lo && a < hi).collect();
        }
    }
    out
}

/// What is known of one wait site.
#[derive(Debug, Clone)]
pub struct WaitSite {
    pub kind: WaitKind,
    /// The family of the syscall its threads wait in (`futex`, `read`, `accept`, `sleep`, ...),
    /// and the call first seen (`recvfrom`).
    pub syscall: &'static str,
    pub syscall_name: String,
    /// The frame that names the site, and the whole stack (innermost first).
    pub site: StackFrame,
    pub stack: Vec<StackFrame>,
    /// Threads waiting here now, and the longest of their waits.
    pub threads: i64,
    pub longest_wait_ns: u64,
    pub ended_waits: u64,
    pub max_ended_wait_ns: u64,
    pub preexisting: bool,
    /// What its waiting threads' stacks hold (resident), at the last sample.
    pub bytes: Option<crate::model::BytesPerTask>,
}

/// Tracks blocked threads of one process.
pub struct BlockedTracker {
    pid: u32,
    image: ElfImage,
    bias: u64,
    unwinder: Unwinder,
    lines: Option<crate::elf::lines::LineTable>,
    /// Whether waiting threads' stacks are measured (`--no-bytes` turns it off).
    pub measure_bytes: bool,
    /// Names the blocking tasks threads run (built at the first one met).
    futures: Option<crate::runtimes::tokio::naming::symbolize::Symbolizer>,
    /// (tid, syscall, first argument) -> waiter, while the wait lasts.
    waiting: HashMap<(u32, i64, u64), Waiter>,
    pub sites: BTreeMap<String, WaitSite>,
    samples: usize,
}

impl BlockedTracker {
    pub fn new(pid: u32, image: ElfImage, bias: u64) -> anyhow::Result<Self> {
        let unwinder = Unwinder::new(&image, bias);
        let lines = image.has_debug_info().then(|| crate::elf::lines::LineTable::load(image.dwarf_data())).flatten();
        Ok(BlockedTracker {
            pid,
            image,
            bias,
            unwinder,
            lines,
            futures: None,
            measure_bytes: true,
            waiting: HashMap::new(),
            sites: BTreeMap::new(),
            samples: 0,
        })
    }

    /// One census. `started`: tid -> wait start (ns, CLOCK_MONOTONIC) from the tracepoints.
    /// Each wait site is one site of the sample: threads waiting there, the start of the longest
    /// wait, the waits seen to end and the longest of those.
    pub fn sample(&mut self, now_ns: u64, started: &HashMap<u32, u64>) -> Sample<String> {
        let first_sample = self.samples == 0;
        let census: Vec<ThreadWait> = blocked_threads(self.pid);
        let mut still: HashMap<(u32, i64, u64), Waiter> = HashMap::new();
        // waits first seen now, and their stack pointers
        let mut new: Vec<((u32, i64, u64), u64)> = Vec::new();
        for tw in &census {
            let id = (tw.tid, tw.nr, tw.arg0);
            let w = match self.waiting.remove(&id) {
                Some(w) => w,
                None => match self.classify(tw) {
                    Some(key) => {
                        let traced = (tw.family().0 == "futex").then(|| started.get(&tw.tid)).flatten();
                        let (since_ns, preexisting) = match traced {
                            Some(&s) => (s, false),
                            None => (now_ns, first_sample),
                        };
                        new.push((id, tw.sp));
                        Waiter { key, since_ns, preexisting, stack_bytes: None }
                    }
                    None => continue,
                },
            };
            still.insert(id, w);
        }
        // the stacks of the waits first seen now: one pass over smaps
        if !new.is_empty() && self.measure_bytes {
            let sps: Vec<u64> = new.iter().map(|&(_, sp)| sp).collect();
            let resident = resident_at(self.pid, &sps);
            for (id, sp) in new {
                if let Some(w) = still.get_mut(&id) {
                    w.stack_bytes = resident.get(&sp).copied();
                }
            }
        }
        // waits that ended since the last census
        for (_, w) in self.waiting.drain() {
            if let Some(s) = self.sites.get_mut(&w.key) {
                s.ended_waits += 1;
                s.max_ended_wait_ns = s.max_ended_wait_ns.max(now_ns.saturating_sub(w.since_ns));
            }
        }
        self.waiting = still;
        let mut counts: HashMap<&str, (i64, u64, bool)> = HashMap::new();
        let mut stacks: HashMap<&str, Vec<u64>> = HashMap::new();
        for w in self.waiting.values() {
            let c = counts.entry(w.key.as_str()).or_default();
            c.0 += 1;
            c.1 = c.1.max(now_ns.saturating_sub(w.since_ns));
            c.2 |= w.preexisting;
            if let Some(b) = w.stack_bytes {
                stacks.entry(w.key.as_str()).or_default().push(b);
            }
        }
        let mut sites = Vec::new();
        for (key, s) in self.sites.iter_mut() {
            let (n, longest, pre) = counts.get(key.as_str()).copied().unwrap_or_default();
            s.threads = n;
            s.bytes = stacks.get_mut(key.as_str()).and_then(|v| crate::model::BytesPerTask::of("thread stack (resident)", v));
            s.longest_wait_ns = longest;
            s.preexisting |= pre;
            sites.push(SiteObs {
                key: key.clone(),
                live: n,
                totals: SiteTotals {
                    finished: s.ended_waits,
                    max_lifetime_ns: s.max_ended_wait_ns,
                    ..SiteTotals::default()
                },
                oldest_born_ns: (n > 0).then(|| now_ns.saturating_sub(longest)),
                idle: None,
            });
        }
        self.samples += 1;
        Sample { now_ns, sites }
    }

    /// The blocking task a thread runs, named as its task site is (its future type, e.g.
    /// `BlockingTask<app::f::{{closure}}>`, and the closure's line): from the `raw::poll<T, S>`
    /// (or `Harness<T, S>::poll`, `Core<T, S>::poll`) on its stack (each task type has its own),
    /// whose calls lead to the closure as the census's do from the task's vtable.
    fn blocking_task(&mut self, frames: &[crate::unwind::Frame], first: usize) -> Option<StackFrame> {
        // raw::poll often tail-calls Harness::poll: any of the per-type functions will do
        const PER_TYPE: [&str; 3] =
            ["tokio::runtime::task::raw::poll", "tokio::runtime::task::harness::Harness", "tokio::runtime::task::core::Core"];
        let (i, f) = frames.iter().enumerate().find(|(_, f)| !f.inlined && PER_TYPE.iter().any(|p| f.function.starts_with(p)))?;
        let lookup = if first + i == 0 { f.pc } else { f.pc.wrapping_sub(1) };
        let start = self.image.symbol_at(lookup.wrapping_sub(self.bias))?.addr;
        let image = &self.image;
        let named = self.futures.get_or_insert_with(|| crate::runtimes::tokio::naming::symbolize::Symbolizer::new(image.clone())).name_future(start);
        if named.name.function.starts_with("<unknown") {
            return None;
        }
        Some(StackFrame {
            function: named.name.function.clone(),
            file: named.location.as_ref().map(|(f, _)| crate::elf::lines::normalize_path(f)),
            line: named.location.as_ref().map(|(_, l)| *l),
        })
    }

    /// Unwinds a newly seen waiting thread and files it under its site (created on first use).
    fn classify(&mut self, tw: &ThreadWait) -> Option<String> {
        let pcs = thread_stack(self.pid, tw, &self.image, self.bias, &mut self.unwinder, STACK_WINDOW);
        if pcs.is_empty() {
            return None;
        }
        let symbolized = symbolize_frames(&self.image, self.lines.as_ref(), self.bias, &pcs);
        let frames: Vec<StackFrame> =
            symbolized.iter().map(|f| StackFrame { function: f.function.clone(), file: f.file.clone(), line: f.line }).collect();
        let (kind, at) = wait_site(&frames);
        let mut site = frames.get(at).cloned()?;
        if let Some(name) = blocking_task_name(&site, symbolized[at].pc.wrapping_sub(self.bias)) {
            site = self.blocking_task(&symbolized[at..], at).unwrap_or(StackFrame { function: name, ..site });
        }
        let (syscall, syscall_name) = tw.family();
        let key = format!("{kind:?}:{syscall}:{}", site.function);
        self.sites.entry(key.clone()).or_insert_with(|| WaitSite {
            kind,
            syscall,
            syscall_name,
            site,
            stack: frames,
            threads: 0,
            longest_wait_ns: 0,
            ended_waits: 0,
            max_ended_wait_ns: 0,
            preexisting: false,
            bytes: None,
        });
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(f: &str) -> StackFrame {
        StackFrame { function: f.into(), file: None, line: None }
    }

    #[test]
    fn site_is_the_first_frame_past_the_lock_machinery() {
        let frames = vec![
            fr("syscall"),
            fr("std::sys::sync::mutex::futex::Mutex::lock_contended"),
            fr("std::sync::poison::mutex::Mutex<T>::lock"),
            fr("app::config::wait_for_config"),
            fr("std::thread::Builder::spawn_unchecked_::{{closure}}"),
        ];
        let (kind, at) = wait_site(&frames);
        assert_eq!(kind, WaitKind::Wait);
        assert_eq!(frames[at].function, "app::config::wait_for_config");
    }

    #[test]
    fn inlined_std_frames_are_recognised_by_their_file() {
        let std_frame = StackFrame {
            function: "wait<()>".into(),
            file: Some("/rustc/abc/library/std/src/sync/poison/condvar.rs".into()),
            line: Some(128),
        };
        let frames = vec![fr("syscall"), std_frame, fr("app::pool::worker")];
        let (_, at) = wait_site(&frames);
        assert_eq!(frames[at].function, "app::pool::worker");
    }

    #[test]
    fn a_lock_on_a_blocking_pool_thread_is_a_wait() {
        let frames = vec![
            fr("syscall"),
            fr("std::sys::sync::mutex::futex::Mutex::lock_contended"),
            fr("app::lock_shared_state"),
            fr("tokio::runtime::blocking::pool::Inner::run"),
        ];
        let (kind, at) = wait_site(&frames);
        assert_eq!((kind, frames[at].function.as_str()), (WaitKind::Wait, "app::lock_shared_state"));
    }

    #[test]
    fn a_closure_inlined_into_tokio_s_blocking_task_is_a_wait_not_idle() {
        // LTO, or no line tables: the first frame past the lock is tokio running the closure
        let frames = vec![
            fr("syscall"),
            fr("std::sys::sync::mutex::futex::Mutex::lock_contended"),
            fr("<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll"),
            fr("tokio::runtime::task::raw::poll"),
            fr("tokio::runtime::blocking::pool::Inner::run"),
        ];
        let (kind, at) = wait_site(&frames);
        assert_eq!(kind, WaitKind::Wait);
        let name = blocking_task_name(&frames[at], 0x1234).unwrap();
        assert!(name.starts_with("spawn_blocking closure in <tokio::runtime::blocking::task::BlockingTask") && name.ends_with("at 0x1234"), "{name}");
        // the blocking pool's idle thread waiting for a job is the runtime's own parking
        let idle = vec![fr("syscall"), fr("std::sys::sync::condvar::futex::Condvar::wait_timeout"), fr("tokio::runtime::blocking::pool::Inner::run")];
        assert_eq!(wait_site(&idle).0, WaitKind::RuntimeIdle);
        // tokio's I/O driver in epoll_wait, under mio
        let io = vec![fr("mio::poll::Poll::poll"), fr("tokio::runtime::io::driver::Driver::turn"), fr("tokio::runtime::scheduler::multi_thread::park::Inner::park_driver")];
        assert_eq!(wait_site(&io).0, WaitKind::RuntimeIdle);
        // a tokio sync primitive called from user code in a blocking thread: the user's frame
        let user = vec![fr("std::thread::park"), fr("tokio::sync::mpsc::bounded::Receiver<T>::blocking_recv"), fr("app::consume")];
        let (kind, at) = wait_site(&user);
        assert_eq!((kind, at), (WaitKind::Wait, 1));
    }

    #[test]
    fn dwarf_short_names_are_told_by_their_file() {
        let at = |name: &str, file: &str| StackFrame { function: name.into(), file: Some(file.into()), line: Some(9) };
        let reg = "/root/.cargo/registry/src/registry-1949cf8c6b5b557f";
        // tokio's I/O driver, inlined with mio: `select` (mio), `turn` (tokio's driver)
        let io = vec![at("select", &format!("{reg}/mio-1.2.5/src/sys/unix/mod.rs")), at("turn", &format!("{reg}/tokio-1.54.1/src/runtime/io/driver.rs"))];
        let (kind, i) = wait_site(&io);
        assert_eq!((kind, i), (WaitKind::RuntimeIdle, 1));
        // a blocking task's poll, inlined: tokio's task code runs the user's closure
        let task = vec![at("poll<F>", &format!("{reg}/tokio-1.54.1/src/runtime/blocking/task.rs"))];
        assert_eq!(wait_site(&task).0, WaitKind::Wait);
    }

    #[test]
    fn parked_runtime_workers_are_idle_not_waits() {
        let frames = vec![
            fr("syscall"),
            fr("std::sys::sync::condvar::futex::Condvar::wait"),
            fr("tokio::runtime::scheduler::multi_thread::park::Inner::park_condvar"),
            fr("tokio::runtime::scheduler::multi_thread::worker::Context::park_internal"),
        ];
        assert_eq!(wait_site(&frames).0, WaitKind::RuntimeIdle);
    }
}
