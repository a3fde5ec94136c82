//! The await decoders on an executable from the input: the DWARF side (the future's layout
//! behind each `raw::poll`, then where a task is suspended, over reads of fake target memory)
//! and the machine-code side (branch targets and `lea`'d panic `Location`s of a function, the
//! call walk that names a future).
#![no_main]
use leakprof::elf::ElfImage;
use leakprof::runtimes::tokio::{
    awaits::AwaitIndex,
    naming::{code, future_name},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = ElfImage::parse(data) else { return };
    // functions to look at: the `raw::poll`s first, then the first few symbols
    let mut fns: Vec<u64> = img.symbols().iter().filter(|s| s.name.contains("poll")).map(|s| s.addr).take(8).collect();
    fns.extend(img.symbols().iter().map(|s| s.addr).take(8));
    fns.dedup();
    let tail = leakprof_fuzz::words(&data[data.len().saturating_sub(16)..]);
    if let Some(mut index) = AwaitIndex::new(&img) {
        // target memory: the input's bytes, repeated over the address space
        let mut read = |addr: u64, buf: &mut [u8]| {
            if addr < 0x1000 {
                return false;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = data[(addr as usize).wrapping_add(i) % data.len()];
            }
            true
        };
        for &f in fns.iter().chain(&tail) {
            if let Some(fut) = index.future_of(f) {
                let _ = (fut.is_async(), &fut.type_name);
                for header in [0x10_0000u64, 0x7fff_ffff_f000, u64::MAX - 8] {
                    let _ = index.suspended_at(&fut, header, &mut read);
                }
            }
        }
    }
    for &f in fns.iter().take(6) {
        let scan = code::scan_function(&img, f);
        let refs = code::panic_locations(&img, &scan);
        let _ = code::best_location(&refs);
        for r in scan.data_refs.iter().take(16) {
            let _ = code::read_panic_location(&img, r.addr);
        }
    }
    for &a in &tail {
        let _ = code::read_panic_location(&img, a);
    }
    for &f in fns.iter().take(3) {
        let _ = future_name::future_name(&img, f);
    }
});
