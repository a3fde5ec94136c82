//! A core file (`target::core::CoreFile`): the ELF header and program headers, the notes
//! (NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_FILE with hostile counts), every accessor, reads at
//! segment and mapping edges, at the threads' registers and at words of the input, with and
//! without a backing file (`/proc/self/exe`, placed by NT_FILE or by a load bias from the
//! input), and the build-id check against the core's own copy of the executable's first page,
//! this binary and the input.
#![no_main]
use std::{path::Path, sync::OnceLock};

use leakprof::target::core::CoreFile;
use libfuzzer_sys::fuzz_target;

static SELF_EXE: OnceLock<Vec<u8>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(mut core) = CoreFile::from_bytes(data.to_vec(), "fuzz.core") else { return };
    let _ = (core.path(), core.pid(), core.command(), core.auxv_entry(), core.auxv_phdr(), core.exe_path());
    let maps = core.maps();
    // addresses worth reading: the edges of segments and mappings, registers, words of the input
    let mut addrs: Vec<u64> = Vec::new();
    for m in maps.iter().take(16) {
        addrs.extend([m.start, m.start.wrapping_sub(4), m.end.wrapping_sub(1), m.end.wrapping_sub(8), m.end]);
    }
    for f in core.file_mappings().iter().take(8) {
        addrs.extend([f.start, f.end.wrapping_sub(4)]);
    }
    for t in core.threads().iter().take(4) {
        addrs.extend([t.rip, t.rsp, t.rbp]);
    }
    addrs.extend(core.auxv_entry());
    addrs.extend(core.auxv_phdr());
    addrs.extend(leakprof_fuzz::words(&data[data.len().saturating_sub(64)..]));
    let mut buf = [0u8; 64];
    for &a in &addrs {
        let _ = core.read(a, &mut buf);
        let _ = core.read_dumped(a, &mut buf[..8]);
    }
    // what the core did not dump, from a file: by NT_FILE, else at a bias from the input
    let recorded = core.exe_path().or_else(|| core.file_mappings().first().map(|m| m.path.clone())).unwrap_or_default();
    let bias = addrs.last().copied();
    let _ = core.add_backing_file(&recorded, Path::new("/proc/self/exe"), bias);
    for &a in &addrs {
        let _ = core.read(a, &mut buf);
    }
    let _ = core.read(addrs.first().copied().unwrap_or(0), &mut [0u8; 4096]);
    // the build-id check, the executable's header looked for at each mapping of offset 0: against
    // the core's own copy of that page (the same notes), this binary (other notes) and the input
    let loads: Vec<u64> = core.file_mappings().iter().filter(|m| m.file_offset == 0).map(|m| m.start).take(4).collect();
    let self_exe = SELF_EXE.get_or_init(|| std::fs::read("/proc/self/exe").unwrap_or_default());
    for a in loads.into_iter().chain(maps.first().map(|m| m.start)) {
        let mut page = vec![0u8; 4096];
        if core.read(a, &mut page).is_ok() {
            let _ = core.check_build_id(&page, "fuzz.page", a);
        }
        let _ = core.check_build_id(self_exe, "fuzz.exe", a);
        let _ = core.check_build_id(data, "fuzz.input", a);
    }
});
