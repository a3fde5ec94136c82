//! `leakprof`: the command-line face of the library.
use std::io::{IsTerminal as _, Write as _};

use clap::Parser as _;
use leakprof::{
    cli::Cli,
    model::EndReason,
    report::{interval_lines, render_text, to_json, Format},
    session::Session,
};

/// Exit codes: 0 done, 1 error (nothing attached), 3 the target exited during the run.
const EXIT_ERROR: i32 = 1;
const EXIT_TARGET_EXITED: i32 = 3;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let code = rt.block_on(run(cli));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    let session = match Session::attach(cli.run_options()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leakprof: {e:#}");
            return EXIT_ERROR;
        }
    };
    // Per-interval lines go to stdout for text, to stderr (when it is a terminal) for JSON, so
    // standard output stays one parsable document.
    let to_stdout = cli.format == Format::Text && cli.output.is_none();
    let show = !cli.quiet && (to_stdout || std::io::stderr().is_terminal());
    eprintln!("leakprof: attached to pid {}; Ctrl-C to stop and print the report", cli.pid);
    let top = cli.top;
    let mut progress = |t: f64, sites: &[(String, i64, u64, u64)]| {
        if !show {
            return;
        }
        let block = interval_lines(t, sites, top);
        if to_stdout {
            print!("{block}");
            let _ = std::io::stdout().flush();
        } else {
            eprint!("{block}");
        }
    };
    let report = match session.run(&mut progress).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leakprof: {e:#}");
            return EXIT_ERROR;
        }
    };
    let doc = match cli.format {
        Format::Text => render_text(&report),
        Format::Json => to_json(&report) + "\n",
    };
    match &cli.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &doc) {
                eprintln!("leakprof: cannot write {}: {e}; the report follows", path.display());
                print!("{doc}");
                return EXIT_ERROR;
            }
        }
        None => print!("{doc}"),
    }
    if report.collection.ended == EndReason::TargetExited {
        eprintln!(
            "leakprof: pid {} exited during the run; the report covers the time until it exited",
            cli.pid
        );
        return EXIT_TARGET_EXITED;
    }
    0
}
