//! ELF parsing and everything read from an executable's bytes before any process is touched:
//! symbols, segments, pointers, the tokio attach plan, debug-file lookup, DWARF lines (and the
//! anonymous-frame index built from them), and the vtable search over the data segments.
#![no_main]
use std::path::Path;

use leakprof::elf::{debug_file, lines::LineTable, ElfImage};
use leakprof::runtimes::tokio::{census::vtables::Vtables, probes::plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plan::detect_tokio_version(data);
    let _ = debug_file::build_id(data);
    let _ = debug_file::debuglink(data);
    let Ok(img) = ElfImage::parse(data) else { return };
    // addresses worth asking about: segment edges, symbols, and words of the input's tail
    let mut addrs: Vec<u64> = Vec::new();
    for s in img.load_segments().iter().take(8) {
        addrs.extend([s.vaddr, s.vaddr.wrapping_add(s.mem_size).wrapping_sub(1), s.vaddr.wrapping_add(s.file_size)]);
        let _ = s.file_offset_of(s.vaddr.wrapping_add(8));
    }
    addrs.extend(img.symbols().iter().take(8).flat_map(|s| [s.addr, s.addr.wrapping_add(s.size)]));
    addrs.extend(leakprof_fuzz::words(&data[data.len().saturating_sub(32)..]));
    for &a in &addrs {
        let _ = img.symbol_at(a);
        let _ = img.symbols_at_addr(a);
        let _ = img.read_pointer(a);
        let _ = img.read_u32(a);
        let _ = img.vaddr_to_file_offset(a);
        let _ = img.read_at_vaddr(a, 64);
    }
    let _ = img.data_symbol(&["NEXT_ID"]);
    let _ = img.symbols_named(|n| n.starts_with("main")).count();
    let _ = (img.machine(), img.is_pie(), img.has_symtab(), img.has_debug_info());
    let _ = plan::plan(&img, img.data());
    // the machine-code await decoder: function bounds from .eh_frame, futures below "polls"
    let mut code = leakprof::runtimes::tokio::awaits::code::CodeIndex::new(&img);
    for &a in addrs.iter().take(8) {
        let _ = code.future_location(a);
    }
    let _ = debug_file::candidates(img.data(), Path::new("/x/app"), Path::new("/usr/lib/debug"));
    // the executable segments as text, the vtable search over the rest (polls from the symbols)
    let text: Vec<(u64, u64)> = img
        .load_segments()
        .iter()
        .map(|s| (s.vaddr, s.vaddr.saturating_add(s.mem_size)))
        .take(4)
        .collect();
    let vt = Vtables::from_image(&img, 0, &text[..text.len().min(1)], None);
    let _ = vt.uniform_id_offset();
    if let Some(lines) = LineTable::load(img.dwarf_data()) {
        for &a in addrs.iter().take(16) {
            let _ = lines.locate(a);
            let _ = lines.frames(a);
        }
        let _ = lines.anon_names(&|a| img.symbol_at(a).map(|s| s.name.clone()));
    }
});
