//! A Go pclntab from raw bytes (function table, names, pc-value tables: file, line, frame size)
//! and the build-info blob scanner.
#![no_main]
use leakprof::runtimes::go::{buildinfo, pclntab::Pclntab, stack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(v) = buildinfo::go_version(data) {
        let _ = buildinfo::major_minor(&v);
    }
    let Some(p) = Pclntab::parse(data) else { return };
    let t = p.text_start();
    let _ = p.is_go120();
    let _ = p.func_named("runtime.goexit");
    let _ = p.func_end("main.main");
    // pcs: each function's edges, the text start, and words of the input's tail
    let mut pcs: Vec<u64> = vec![t, t.wrapping_sub(1), t.wrapping_add(1)];
    for f in p.funcs().take(64) {
        pcs.extend([f.entry, f.entry.wrapping_add(1), f.end.wrapping_sub(1), f.end]);
    }
    pcs.extend(leakprof_fuzz::words(&data[data.len().saturating_sub(24)..]));
    for &pc in pcs.iter().take(256) {
        let _ = p.func_for_pc(pc);
        let _ = p.file_line(pc);
        let _ = p.sp_delta(pc);
        let _ = p.file_line_run_start(pc);
        let _ = stack::own_line(&p, pc);
    }
    // the same at a text start near the top of the address space
    let mut q = p;
    q.set_text_start(u64::MAX - 0x40);
    for pc in [u64::MAX - 0x3f, u64::MAX - 1, u64::MAX] {
        let _ = q.func_for_pc(pc);
        let _ = q.file_line(pc);
        let _ = q.sp_delta(pc);
        let _ = q.file_line_run_start(pc);
        let _ = stack::own_line(&q, pc);
    }
    let _ = q.funcs().count();
});
