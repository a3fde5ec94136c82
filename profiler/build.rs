//! Builds profiler-ebpf for the BPF target (nightly + bpf-linker, see scripts/setup.sh) and leaves the
//! object in OUT_DIR, where src/bpf/loader.rs embeds it. Only with the `probes` feature (the
//! default): without it leakprof is census-only and needs no eBPF toolchain.
#[cfg(not(feature = "probes"))]
fn main() -> anyhow::Result<()> {
    Ok(())
}

#[cfg(feature = "probes")]
fn main() -> anyhow::Result<()> {
    use anyhow::{anyhow, Context as _};
    use aya_build::Toolchain;
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let pkg = packages
        .into_iter()
        .find(|p| p.name.as_str() == "profiler-ebpf")
        .ok_or_else(|| anyhow!("profiler-ebpf package not found"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", pkg.manifest_path))?;
    let ebpf = aya_build::Package {
        name: pkg.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::default())
}
