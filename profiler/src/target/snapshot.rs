//! A core file opened as a [`Target`]: its executable found (the core's file notes, or `--exe`)
//! and checked against the core by build id, its memory a [`Space::Snapshot`] that reads the
//! core's segments and, for what the core did not dump (code, read-only data), the executable.
use std::{path::Path, sync::Arc};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{core::CoreFile, memory::Memory, Mapping, Space, Target};

impl Memory for CoreFile {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        CoreFile::read(self, addr, buf)
    }
}

/// Opens `core` (with the executable `exe` when given) as a target to read.
pub fn open_core(core: &Path, exe: Option<&Path>) -> Result<Target> {
    let mut c = CoreFile::open(core)?;
    let name = core.display().to_string();
    let recorded = c.exe_path();
    let exe_path = match (exe, &recorded) {
        (Some(e), _) => e.to_path_buf(),
        (None, Some(r)) => r.into(),
        (None, None) => bail!(
            "core {name} does not say which executable it ran (no file notes, NT_FILE): pass it with --exe FILE"
        ),
    };
    if !exe_path.exists() {
        bail!(
            "core {name} was dumped from {}, which is not on this machine: pass the executable with --exe FILE",
            exe_path.display()
        );
    }
    let bytes = std::fs::read(&exe_path).with_context(|| format!("cannot read the executable {}", exe_path.display()))?;
    let file = object::read::elf::ElfFile64::<object::Endianness>::parse(&*bytes)
        .map_err(|e| anyhow!("{} is not a 64-bit ELF executable ({e})", exe_path.display()))?;
    use object::Object as _;
    let entry = file.entry();
    // where it was loaded: AT_ENTRY against its entry point (0 for a non-PIE executable)
    let bias = c.auxv_entry().map(|at| at.wrapping_sub(entry));
    let key = recorded.clone().unwrap_or_else(|| exe_path.display().to_string());
    // the mappings of the executable: the core's own (its segments, named by its file notes), or
    // without file notes its ELF segments placed at the bias
    let maps = c.maps();
    let mut exe_maps: Vec<Mapping> = maps.iter().filter(|m| recorded.is_some() && m.path == recorded).cloned().collect();
    if exe_maps.is_empty() {
        let bias = bias.ok_or_else(|| {
            anyhow!("core {name} has neither file notes nor an auxiliary vector: where {} was loaded is unknown", exe_path.display())
        })?;
        use object::read::elf::ProgramHeader as _;
        let endian = file.endian();
        for ph in file.elf_program_headers().iter().filter(|p| p.p_type(endian) == object::elf::PT_LOAD) {
            let start = ph.p_vaddr(endian).wrapping_add(bias);
            let perms = super::core::perms_of(ph.p_flags(endian).0);
            let end = start.wrapping_add(ph.p_memsz(endian));
            exe_maps.push(Mapping { start: start & !0xfff, end, offset: ph.p_offset(endian) & !0xfff, perms, path: Some(key.clone()) });
        }
    }
    let load_addr = exe_maps.iter().filter(|m| m.offset == 0).map(|m| m.start).min().unwrap_or(0);
    c.check_build_id(&bytes, &exe_path.display().to_string(), load_addr)?;
    let no_notes = c.file_mappings().is_empty();
    c.add_backing_file(&key, &exe_path, if no_notes { bias } else { None })?;
    let pid = c.pid().unwrap_or(0);
    Ok(Target {
        pid,
        space: Space::Snapshot { name, mem: Arc::new(c), maps: Arc::new(maps) },
        exe: exe_path.clone(),
        exe_proc_path: exe_path,
        exe_maps,
        start_time: None,
    })
}

#[cfg(test)]
mod tests {
    use object::elf;

    use super::open_core;
    use crate::target::core::tests::{build_core, prstatus};

    /// A core that names no executable: without --exe, and with one but no auxiliary vector to
    /// place it, one sentence each saying what to pass.
    #[test]
    fn a_core_without_file_notes_says_what_to_pass() {
        let bytes = build_core(
            &[(b"CORE", elf::NT_PRSTATUS.0, prstatus(77, 0x40_1000, 0x10_0800))],
            &[(0x10_0000, elf::PF_R.0 | elf::PF_W.0, vec![0u8; 0x1000], 0x1000)],
        );
        let path = std::env::temp_dir().join(format!("leakprof-nonotes-{}.core", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let e = open_core(&path, None).unwrap_err().to_string();
        assert!(e.contains("does not say which executable") && e.contains("--exe"), "{e}");
        let e = open_core(&path, Some(std::path::Path::new("/proc/self/exe"))).unwrap_err().to_string();
        assert!(e.contains("neither file notes nor an auxiliary vector"), "{e}");
        let e = open_core(&path, Some(std::path::Path::new("/nonexistent/app"))).unwrap_err().to_string();
        assert!(e.contains("not on this machine") && e.contains("--exe"), "{e}");
        let _ = std::fs::remove_file(path);
    }
}
