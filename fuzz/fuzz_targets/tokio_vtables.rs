//! Finding tokio's task vtables by shape among words of an executable's data.
#![no_main]
use std::collections::HashSet;

use leakprof::runtimes::tokio::census::vtables::{find_in, Vtables};
use leakprof_fuzz::{words, Input, USER_TOP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    // the words as a data segment would give them: 8-aligned, below the top of user space
    let base = inp.u64() % USER_TOP & !7;
    let lo = u64::from(inp.u32());
    let text = [(lo, lo + u64::from(inp.u32())), (0x1000, 0x9000)];
    let polls: Option<HashSet<u64>> = (flags & 1 != 0).then(|| (0..4).map(|_| inp.u64()).collect());
    let words = words(inp.rest());
    let found = find_in(&words, base, &text[..1 + usize::from(flags & 2 != 0)], polls.as_ref());
    for (a, _) in &found {
        assert!(*a >= base && (*a - base) / 8 < words.len() as u64);
    }
    let vt = Vtables::from_pairs(found);
    let _ = vt.uniform_id_offset();
    for &w in words.iter().take(64) {
        let _ = vt.get(w);
        let _ = vt.get(base.wrapping_add(w & 0xfff8));
    }
});
