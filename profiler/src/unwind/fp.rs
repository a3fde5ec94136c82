//! Frame-pointer walking: the fallback for code built with frame pointers when CFI gave nothing.
//!
//! With `push rbp; mov rbp, rsp` prologues the stack holds a linked list: `[bp]` is the caller's
//! `bp` and `[bp + 8]` the return address into the caller.

/// Return addresses found by following the `bp` chain from `bp` (the instruction pointer is not
/// included). Stops when `read` fails (end of the copied window), at a return address for which
/// `in_code` is false, when the chain does not move up the stack, or after `max` addresses.
///
/// Limit: when the first frame is stopped before its `mov rbp, rsp` (e.g. a uprobe at a function
/// entry), `bp` is still the caller's, so the caller's own frame is skipped.
pub(crate) fn walk(
    mut bp: u64,
    read: impl Fn(u64) -> Option<u64>,
    in_code: impl Fn(u64) -> bool,
    max: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < max {
        let (Some(next_bp), Some(ret)) = (read(bp), bp.checked_add(8).and_then(&read)) else {
            break;
        };
        if !in_code(ret) {
            break;
        }
        out.push(ret);
        if next_bp <= bp {
            break; // the root frame (bp = 0) or a corrupt chain
        }
        bp = next_bp;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic window at 0x1000 with three linked frames, then a zero bp ending the chain.
    #[test]
    fn follows_chain_and_stops() {
        let sp = 0x1000u64;
        let mut words = [0u64; 16];
        // frame records at sp+0x10, sp+0x30, sp+0x50
        words[2] = sp + 0x30;
        words[3] = 0x40_1111;
        words[6] = sp + 0x50;
        words[7] = 0x40_2222;
        words[10] = 0; // root: bp = 0
        words[11] = 0x40_3333;
        let read = |addr: u64| {
            let off = addr.checked_sub(sp)?;
            (off % 8 == 0).then(|| words.get((off / 8) as usize).copied())?
        };
        let in_code = |a: u64| (0x40_0000..0x50_0000).contains(&a);
        assert_eq!(
            walk(sp + 0x10, read, in_code, 10),
            vec![0x40_1111, 0x40_2222, 0x40_3333]
        );
        assert_eq!(
            walk(sp + 0x10, read, in_code, 2),
            vec![0x40_1111, 0x40_2222]
        );
        // a return address outside the code ends the walk
        assert_eq!(
            walk(sp + 0x10, read, |a| a == 0x40_1111, 10),
            vec![0x40_1111]
        );
        // bp outside the window, or pointing downwards
        assert!(walk(0x10, read, in_code, 10).is_empty());
        words[6] = sp; // frame 2 points back below itself
        let read = |addr: u64| {
            let off = addr.checked_sub(sp)?;
            words.get((off / 8) as usize).copied()
        };
        assert_eq!(
            walk(sp + 0x10, read, in_code, 10),
            vec![0x40_1111, 0x40_2222]
        );
        assert!(walk(u64::MAX - 4, read, in_code, 10).is_empty());
    }
}
