//! The helpers that take demangled (or raw) symbol names and type names apart.
#![no_main]
use leakprof::elf::names::*;
use leakprof::runtimes::tokio::naming::{future_name, type_names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = split_qualified(&s);
    let _ = strip_generics(&s);
    let _ = plain_path(&s);
    let _ = turbofish_args(&s);
    let _ = crate_of(&s);
    let d = leakprof::elf::symbols::demangle(&s);
    let _ = split_qualified(&d);
    let _ = leakprof::runtimes::tokio::probes::plan::classify(&s);
    let _ = leakprof::runtimes::tokio::probes::plan::classify(&d);
    let _ = future_name::classify_callee(&s);
    let _ = type_names::v0_future_type(&s);
    let _ = type_names::unwrap_pin_box(&s);
    let _ = type_names::drop_glue_future_type(&s);
    // a body name and a type name: the input split at its first newline
    let (body, ty) = s.split_once('\n').unwrap_or((&s, "app::f::{{closure}}"));
    let _ = type_names::body_matches_type(body, ty);
});
