//! One target of the daemon, on a thread of its own: it attaches, samples every interval and
//! publishes its latest report. Nothing one target does (a slow attach scan, a stalled read, a
//! panic on hostile bytes) holds up or takes down the daemon's loop or the other targets: the
//! loop only reads what each worker last published.
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::discover;
use crate::{
    model::{EndReason, Report},
    session::{ReadPanic, RunOptions, Session},
};

/// What a worker has to say, read by the daemon's loop each round.
#[derive(Debug, Clone)]
pub enum State {
    Attaching,
    /// Attached; its latest report (None before the first sample).
    Sampling(Option<Box<Report>>),
    /// Could not attach: the reason.
    Refused(String),
    /// The target exited or exec'd: detached.
    Ended,
    /// A panic while reading this target (hostile bytes or a bug): detached, not retried.
    Panicked(String),
}

/// A running worker.
pub struct Worker {
    pub pid: u32,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// The text of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

impl Worker {
    /// Starts a thread that attaches to `opts.pid` (whose start time is `start_time`) and samples
    /// it every `opts.interval` (stretched when a sample takes longer than 20% of it), publishing
    /// reports of its `top_k` worst sites.
    pub fn start(opts: RunOptions, start_time: u64, top_k: usize) -> Worker {
        let pid = opts.pid;
        let state = Arc::new(Mutex::new(State::Attaching));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name(format!("leakprof-{pid}"))
            .spawn(move || run(opts, start_time, top_k, &st, &sp))
            .ok();
        if handle.is_none() {
            *state.lock().unwrap() = State::Refused("the daemon could not start a thread for it".into());
        }
        Worker { pid, state, stop, handle }
    }

    pub fn state(&self) -> State {
        self.state.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Asks the worker to detach and waits up to `grace` for it; a worker stuck in a read is
    /// left behind (its thread ends with the process).
    pub fn stop(mut self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        if let Some(h) = self.handle.take() {
            while !h.is_finished() && t0.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

fn set(state: &Mutex<State>, s: State) {
    match state.lock() {
        Ok(mut g) => *g = s,
        Err(p) => *p.into_inner() = s,
    }
}

fn run(opts: RunOptions, start_time: u64, top_k: usize, state: &Mutex<State>, stop: &AtomicBool) {
    let pid = opts.pid;
    let mut session = match catch_unwind(AssertUnwindSafe(|| Session::attach(opts))) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.is::<ReadPanic>() => return set(state, State::Panicked(format!("while attaching: {e}"))),
        Ok(Err(e)) => return set(state, State::Refused(format!("{e:#}"))),
        Err(p) => return set(state, State::Panicked(format!("while attaching: {}", panic_message(&*p)))),
    };
    eprintln!("leakprof daemon: attached to pid {pid}");
    set(state, State::Sampling(None));
    let mut next = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            drop(session.finish(EndReason::Interrupted));
            return;
        }
        if !session.target_alive() || discover::start_time(pid) != Some(start_time) || !session.target_same_exe() {
            drop(session.finish(EndReason::TargetExited)); // detaches its probes
            return set(state, State::Ended);
        }
        let t0 = Instant::now();
        let sampled = catch_unwind(AssertUnwindSafe(|| {
            session.sample()?;
            let report = session.report(EndReason::Running);
            session.note_interval(t0);
            Ok::<_, anyhow::Error>(super::bounded(report, top_k))
        }));
        match sampled {
            Ok(Ok(r)) => set(state, State::Sampling(Some(Box::new(r)))),
            Ok(Err(e)) if !e.is::<ReadPanic>() => eprintln!("leakprof daemon: pid {pid}: {e:#}"),
            caught => {
                let msg = match caught {
                    Err(p) => panic_message(&*p),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => unreachable!(),
                };
                // its probes are detached as the session drops
                let _ = catch_unwind(AssertUnwindSafe(move || drop(session)));
                return set(state, State::Panicked(msg));
            }
        }
        // a slow sample: the interval is stretched (at most 20% busy), no burst of catch-up samples
        next = session.next_due(next);
        // a stretched interval is slept through checking, every second, that the target still runs
        let mut checked = Instant::now();
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
            if checked.elapsed() >= Duration::from_secs(1) {
                checked = Instant::now();
                if !session.target_alive() {
                    break;
                }
            }
        }
    }
}
