//! A `--record` file read back (JSON lines: a header, then one sample per line).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leakprof::record::parse(&String::from_utf8_lossy(data));
});
