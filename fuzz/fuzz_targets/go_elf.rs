//! A Go executable: build version, where runtime.allgs is (symbols or the code of allgadd),
//! the pclntab found in the image and its text start, the g layout from DWARF, probe points.
#![no_main]
use leakprof::elf::ElfImage;
use leakprof::runtimes::go::{allgs, buildinfo, locate, pclntab::Pclntab, runtime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = ElfImage::parse(data) else { return };
    let _ = buildinfo::go_version_image(&img);
    let _ = allgs::by_symbols(&img);
    let _ = img.symbol_address("runtime.allgs");
    let _ = runtime::offsets_from_dwarf(&img);
    let _ = runtime::layout(&img);
    let _ = runtime::allgs_location(&img);
    if let Some((vaddr, _)) = locate::pclntab_bytes(&img) {
        if let Some(p) = Pclntab::from_image(&img) {
            let _ = locate::text_start(&img, &p, vaddr);
            let _ = locate::text_from_moduledata(&img, &p, vaddr);
            let _ = locate::text_from_entry_point(&img, &p);
            let refs = allgs::allgadd_data_refs(&img, &p);
            let _ = allgs::pick_slice_static(&refs);
            let _ = allgs::pick_slice(&refs, |a| img.read_pointer(a));
            let _ = allgs::ret_addresses(&img, &p, "runtime.newproc1");
            let _ = runtime::allgs_location_with(&img, &p);
            let _ = runtime::probe_points(&img, &p);
            let _ = p.func_for_pc(p.text_start().wrapping_add(0x40));
        }
    }
});
