//! The machine-code await decoder over arbitrary bytes: the register pass of one function and
//! the recognition of async state machines in it (jump tables, compares and panic locations
//! read from the same bytes), then task decoding of those machines from the input's tail.
#![no_main]
use std::sync::Arc;

use leakprof::runtimes::tokio::awaits::code::{decode_levels, flow, machine, Root};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x1000;

fuzz_target!(|data: &[u8]| {
    let env = flow::SliceEnv { base: BASE, bytes: data };
    let f = flow::Flow::from_code(data, BASE, &env);
    let ms = Arc::new(machine::machines(&env, &f));
    for (i, _) in ms.list.iter().enumerate().take(8) {
        let root = Root { func: BASE, machine: i, base: 0 };
        let mut read = |addr: u64, buf: &mut [u8]| match usize::try_from(addr).ok().and_then(|a| data.get(a..a.checked_add(buf.len())?)) {
            Some(b) => {
                buf.copy_from_slice(b);
                true
            }
            None => false,
        };
        let ms = ms.clone();
        let _ = decode_levels(&mut |a| (a == BASE).then(|| (BASE, ms.clone())), root, 0, Some(data.len() as u64), &mut read);
    }
});
