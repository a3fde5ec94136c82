//! `leakprof`: the command-line face of the library.
use std::{
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

use anyhow::{bail, Result};
use clap::Parser as _;
use leakprof::{
    cli::{Cli, Command, Common},
    launch::{shell_code, spawn_stopped, Launched},
    model::{EndReason, Report},
    report::{render_text, to_json, to_pprof, Format, LiveView},
    session::Session,
};

/// Exit codes: 0 done, 1 error (nothing left attached), 2 bad flags (clap), 3 the target exited
/// during a `--pid` run, 4 a leak was found with `--fail-on-leak`. `run` passes on a non-zero exit
/// code of the program when it exited by itself.
const EXIT_ERROR: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_TARGET_EXITED: i32 = 3;
const EXIT_LEAK: i32 = 4;

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    std::process::exit(rt.block_on(dispatch(cli)));
}

async fn dispatch(cli: Cli) -> i32 {
    let (format, output, example) = match &cli.command {
        Some(Command::Run { common, .. }) => (common.format, &common.output, "leaks.pb.gz"),
        Some(Command::Daemon(d)) => (d.common.format, &d.common.output, "leaks.pb.gz"),
        Some(Command::Dump(d)) => (d.format, &d.output, "dump.pb.gz"),
        Some(Command::Features { .. }) => (Format::Text, &None, ""),
        None => (cli.common.format, &cli.common.output, "leaks.pb.gz"),
    };
    if format == Format::Pprof && output.is_none() {
        eprintln!("leakprof: --format pprof writes a binary file: add -o FILE (e.g. -o {example})");
        return EXIT_USAGE;
    }
    match (cli.command, cli.pid) {
        (Some(Command::Dump(d)), _) => dump(&d),
        (Some(Command::Features { json }), _) => {
            let f = leakprof::bpf::features::probe_all();
            if json {
                println!("{}", serde_json::to_string_pretty(&f).expect("features serialize"));
            } else {
                print!("{}", f.table());
            }
            0
        }
        (Some(Command::Daemon(d)), _) => match d.config() {
            Ok(cfg) => match leakprof::daemon::run(cfg).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("leakprof: {e:#}");
                    EXIT_ERROR
                }
            },
            Err(e) => {
                eprintln!("leakprof: {e:#}");
                EXIT_USAGE
            }
        },
        (Some(Command::Run { common, cmd, user }), _) => finish(run_program(&common, &cmd, user.as_deref()).await, &common, true),
        (None, Some(pid)) => finish(watch(&cli.common, pid, None).await, &cli.common, false),
        (None, None) => {
            eprintln!("leakprof: say which process: `--pid PID`, or `leakprof run -- PROGRAM ARGS`");
            EXIT_USAGE
        }
    }
}

/// Attaches to `pid` (resuming a launched program once the probes are in), runs, reports.
async fn watch(common: &Common, pid: u32, mut launched: Option<&mut Launched>) -> Result<Report> {
    let opts = common.run_options(pid)?;
    let session = Session::attach(opts)?;
    if let Some(l) = launched.as_deref_mut() {
        l.resume()?;
    }
    let progress_to_stdout = common.format == Format::Text && common.output.is_none() && launched.is_none();
    let show = !common.quiet && !common.once;
    eprintln!("leakprof: attached to pid {pid}; Ctrl-C to stop and print the report");
    let report = if progress_to_stdout {
        let tty = std::io::stdout().is_terminal() && !common.plain;
        let mut view = LiveView::new(std::io::stdout(), tty, common.top);
        session.run(&mut |t, s| if show { view.draw(t, s) }).await?
    } else {
        // keep stdout one parsable document: the view goes to stderr, only on a terminal
        let tty = std::io::stderr().is_terminal();
        let mut view = LiveView::new(std::io::stderr(), tty && !common.plain, common.top);
        let show = show && (tty || launched.is_some());
        session.run(&mut |t, s| if show { view.draw(t, s) }).await?
    };
    Ok(report)
}

async fn run_program(common: &Common, cmd: &[String], user: Option<&str>) -> Result<Report> {
    if cmd.is_empty() {
        bail!("no program given after --");
    }
    leakprof::preflight::check_privileges(common.probes || common.empty_probes)?;
    let report_on_stdout = common.output.is_none();
    let run_as = leakprof::launch::RunAs::resolve(user)?;
    let mut launched = spawn_stopped(cmd, report_on_stdout, run_as)?;
    let pid = launched.pid;
    let mut report = watch(common, pid, Some(&mut launched)).await?;
    let status = launched.stop(Duration::from_secs(5))?;
    if report.collection.ended == EndReason::TargetExited {
        report.program_exit_code = Some(shell_code(&status));
        report.warnings.retain(|w| !w.contains("exited during the run"));
    }
    Ok(report)
}

/// `leakprof dump`: one census (or a comparison of two), written to stdout or -o FILE.
fn dump(args: &leakprof::cli::DumpArgs) -> i32 {
    let out = match leakprof::dump::command::run(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("leakprof: {e:#}");
            return EXIT_ERROR;
        }
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, &out.doc).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => std::io::stdout().write_all(&out.doc).and_then(|()| std::io::stdout().flush()).map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("leakprof: {e}");
        return EXIT_ERROR;
    }
    out.exit
}

fn finish(result: Result<Report>, common: &Common, launched: bool) -> i32 {
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leakprof: {e:#}");
            return EXIT_ERROR;
        }
    };
    let doc: Vec<u8> = match common.format {
        Format::Text => render_text(&report).into_bytes(),
        Format::Json => (to_json(&report) + "\n").into_bytes(),
        Format::Pprof => to_pprof(&report),
    };
    match &common.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &doc) {
                eprintln!("leakprof: cannot write {}: {e}; the text report follows", path.display());
                print!("{}", render_text(&report));
                return EXIT_ERROR;
            }
        }
        None => {
            let _ = std::io::stdout().write_all(&doc);
            let _ = std::io::stdout().flush();
        }
    }
    let leaks = report.leak_names();
    if common.fail_on_leak && !leaks.is_empty() {
        eprintln!("leakprof: {} leaking site(s): {}", leaks.len(), leaks.join(", "));
        return EXIT_LEAK;
    }
    if launched {
        return report.program_exit_code.unwrap_or(0);
    }
    if report.collection.ended == EndReason::TargetExited {
        eprintln!(
            "leakprof: pid {} exited during the run; the report covers the time until it exited",
            report.target.pid
        );
        return EXIT_TARGET_EXITED;
    }
    if report.collection.ended == EndReason::ReadFailed {
        eprintln!("leakprof: reading pid {} failed during the run (see the report's warnings); everything was detached", report.target.pid);
        return EXIT_ERROR;
    }
    0
}
