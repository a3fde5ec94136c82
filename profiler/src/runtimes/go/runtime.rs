//! What leakprof needs to know about a Go binary's runtime, in one place: the offsets of
//! runtime.g's fields and the waitReason names (the binary's DWARF, else the generated table
//! for its version), where runtime.allgs is, and the probe points of the probe mode.
use super::{allgs, buildinfo, layout::GoLayout, pclntab::Pclntab, tables};
use crate::elf::ElfImage;

/// Where runtime.allgs is (ELF virtual addresses; add the load bias for a PIE).
pub type AllgsLoc = crate::runtimes::go::read::AllgsAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// The generated table (tables.rs), by the binary's Go version.
    Table,
}

impl LayoutSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutSource::Dwarf => "dwarf",
            LayoutSource::Table => "table",
        }
    }
}

/// Why a Go binary cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoError {
    #[error("not a Go 1.18+ binary (no build info with a version)")]
    NotGo,
    #[error(
        "{version} is not a Go version leakprof knows and the binary has no DWARF to read the \
         runtime's layout from (known: {known}); rebuild without -w, or add the toolchain to \
         `cargo xtask go-tables` (profiler/src/runtimes/go/tables.rs)"
    )]
    UnknownVersion { version: String, known: String },
    #[error("{0}: no Go 1.18+ pclntab found in the binary")]
    NoPclntab(String),
    #[error("{version}: {what} not found in the binary")]
    Missing { version: String, what: String },
}

/// The g layout and waitReason names from the binary's DWARF (None without DWARF).
pub fn offsets_from_dwarf(image: &ElfImage) -> Option<GoLayout> {
    super::layout::from_dwarf(image.dwarf_data())
}

/// The g layout for a version from the generated table.
pub fn offsets_for_version(version: &str) -> Result<GoLayout, GoError> {
    tables::for_version(version).ok_or_else(|| GoError::UnknownVersion {
        version: version.to_string(),
        known: tables::known_versions().join(", "),
    })
}

/// The binary's Go version, g layout and waitReason names: its DWARF first, else the table.
pub fn layout(image: &ElfImage) -> Result<(String, GoLayout, LayoutSource), GoError> {
    let version = buildinfo::go_version_image(image).ok_or(GoError::NotGo)?;
    if let Some(l) = offsets_from_dwarf(image) {
        return Ok((version, l, LayoutSource::Dwarf));
    }
    let l = offsets_for_version(&version)?;
    Ok((version, l, LayoutSource::Table))
}

/// The binary's g offsets (see [`layout`]).
pub fn offsets(image: &ElfImage) -> Result<GoLayout, GoError> {
    layout(image).map(|(_, l, _)| l)
}

/// Where runtime.allgs is: the symbol table (runtime.allgs, else allgptr/allglen), else
/// decoded from the code of runtime.allgadd (a stripped binary), without a live process.
pub fn allgs_location(image: &ElfImage) -> Option<AllgsLoc> {
    allgs_location_with(image, &Pclntab::from_image(image)?)
}

/// [`allgs_location`] with an already parsed pclntab.
pub fn allgs_location_with(image: &ElfImage, pcln: &Pclntab) -> Option<AllgsLoc> {
    allgs::by_symbols(image).or_else(|| {
        let refs = allgs::allgadd_data_refs(image, pcln);
        allgs::pick_slice_static(&refs).map(AllgsLoc::Slice)
    })
}

/// File offsets (what a uprobe takes) of every RET of a Go function, found through the
/// pclntab; empty when the function is unknown. See [`allgs::ret_addresses`] for addresses.
pub fn ret_offsets(image: &ElfImage, func: &str) -> Vec<u64> {
    let Some(pcln) = Pclntab::from_image(image) else {
        return Vec::new();
    };
    allgs::ret_addresses(image, &pcln, func)
        .into_iter()
        .filter_map(|a| image.vaddr_to_file_offset(a))
        .collect()
}

/// Probe points of the probe mode, as ELF virtual addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoints {
    /// Every RET of runtime.newproc1 (RAX = the new g, its goid/gopc/startpc set).
    pub birth_rets: Vec<u64>,
    /// Entry of runtime.gdestroy (1.21+) or runtime.goexit0 (RAX = the dying g).
    pub death: super::pclntab::FuncInfo,
}

/// The probe mode's probe points (plain uprobes: never uretprobes, Go moves stacks).
pub fn probe_points(image: &ElfImage, pcln: &Pclntab) -> Result<ProbePoints, GoError> {
    let version = || buildinfo::go_version_image(image).unwrap_or_else(|| "go?".into());
    let birth_rets = allgs::ret_addresses(image, pcln, "runtime.newproc1");
    if birth_rets.is_empty() {
        return Err(GoError::Missing {
            version: version(),
            what: "a RET in runtime.newproc1".into(),
        });
    }
    let death = ["runtime.gdestroy", "runtime.goexit0"]
        .into_iter()
        .find_map(|n| pcln.func_named(n))
        .ok_or_else(|| GoError::Missing {
            version: version(),
            what: "runtime.gdestroy / runtime.goexit0".into(),
        })?;
    Ok(ProbePoints { birth_rets, death })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_versions_are_a_clear_error() {
        let e = offsets_for_version("go1.99.1").unwrap_err();
        assert!(matches!(&e, GoError::UnknownVersion { version, .. } if version == "go1.99.1"));
        assert!(e.to_string().contains("go1.19.8"), "{e}");
        let l = offsets_for_version("go1.19.3").unwrap();
        let o = l.g;
        assert_eq!((o.atomicstatus, o.goid, o.waitreason, o.gopc), (144, 152, 176, 296));
        assert!(l.g_size > o.startpc);
    }

    #[test]
    fn not_go() {
        let me = ElfImage::open("/proc/self/exe").unwrap();
        assert_eq!(layout(&me).unwrap_err(), GoError::NotGo);
        assert_eq!(allgs_location(&me), None);
        assert!(ret_offsets(&me, "runtime.newproc1").is_empty());
    }
}
