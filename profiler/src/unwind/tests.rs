//! Real unwinding of this test's own stack: a chain of `#[inline(never)]` functions whose
//! innermost member copies its registers and stack window, as the kernel side does at a probe.

use std::hint::black_box;

use super::*;
use crate::elf::lines::LineTable;
use crate::target::{parse_maps, Target};

/// Registers and stack window captured inside `capture`.
struct Capture {
    regs: Regs,
    stack: Vec<u8>,
}

/// Copies at most `window` bytes of this thread's stack from its own `rsp` upwards, bounded by
/// the end of the stack mapping (from /proc/self/maps).
#[inline(never)]
fn capture(window: usize) -> Capture {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, touches no memory.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
    let top = maps
        .iter()
        .find(|m| (m.start..m.end).contains(&sp))
        .expect("stack mapping")
        .end;
    let len = window.min((top - sp) as usize);
    let mut stack = vec![0u8; len];
    // SAFETY: [sp, sp + len) lies in this thread's mapped stack (checked above); the frames
    // above this one are live and not being written while they are copied.
    unsafe { std::ptr::copy_nonoverlapping(sp as *const u8, stack.as_mut_ptr(), len) };
    Capture {
        regs: Regs { ip, sp, bp },
        stack,
    }
}

#[inline(never)]
fn chain_c(window: usize) -> Capture {
    black_box(capture(black_box(window)))
}

#[inline(never)]
fn chain_b(window: usize) -> Capture {
    black_box(chain_c(black_box(window)))
}

#[inline(never)]
fn chain_a(window: usize) -> Capture {
    black_box(chain_b(black_box(window)))
}

/// The image of this test binary, its load bias and its DWARF (if built with debug info).
fn own_image() -> (ElfImage, u64, Option<LineTable>) {
    let image = ElfImage::open("/proc/self/exe").unwrap();
    let target = Target::open(std::process::id()).unwrap();
    let segs: Vec<(u64, u64, u64)> = image
        .load_segments()
        .iter()
        .map(|s| (s.vaddr, s.file_offset, s.file_size))
        .collect();
    let bias = target.load_bias(&segs).expect("bias of the test binary");
    let lines = LineTable::load(image.data());
    (image, bias, lines)
}

/// Index in `frames` of the first frame at or after `from` whose function contains `suffix`.
fn position(frames: &[Frame], from: usize, suffix: &str) -> usize {
    let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
    frames[from..]
        .iter()
        .position(|f| f.function.contains(suffix))
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no frame {suffix} at or after {from} in {names:#?}"))
}

/// Asserts that capture ← chain_c ← chain_b ← chain_a ← `caller` appear in this order.
fn assert_chain(frames: &[Frame], caller: &str) {
    let mut at = 0;
    for suffix in [
        "tests::capture",
        "tests::chain_c",
        "tests::chain_b",
        "tests::chain_a",
        caller,
    ] {
        at = position(frames, at, suffix) + 1;
    }
}

#[test]
fn unwinds_own_stack_through_eh_frame() {
    let (image, bias, lines) = own_image();
    let cap = chain_a(16 * 1024);
    let mut unwinder = Unwinder::new(&image, bias);
    assert_eq!(unwinder.cfi(), CfiSource::EhFrameHdr);
    let pcs = unwinder.unwind(cap.regs, &cap.stack, 64);
    assert_eq!(pcs[0], cap.regs.ip);
    assert!(pcs.iter().all(|&pc| unwinder.in_code(pc)), "{pcs:x?}");
    for lines in [lines.as_ref(), None] {
        let frames = symbolize_frames(&image, lines, bias, &pcs);
        assert_chain(&frames, "unwinds_own_stack_through_eh_frame");
    }

    // bp = 0: the frame-pointer rules would stop at once, so this walk is the CFI's.
    let no_bp = Regs { bp: 0, ..cap.regs };
    let pcs0 = unwinder.unwind(no_bp, &cap.stack, 64);
    let frames0 = symbolize_frames(&image, None, bias, &pcs0);
    assert_chain(&frames0, "unwinds_own_stack_through_eh_frame");
    assert_eq!(pcs0[..5], pcs[..5]);

    // framehop's own .eh_frame index (no .eh_frame_hdr) gives the same walk.
    let mut no_hdr = Unwinder::build(&image, bias, false);
    assert_eq!(no_hdr.cfi(), CfiSource::EhFrame);
    assert_eq!(no_hdr.unwind(no_bp, &cap.stack, 64), pcs0);

    // max_frames caps the result.
    assert_eq!(unwinder.unwind(cap.regs, &cap.stack, 3), pcs[..3]);
    assert!(unwinder.unwind(cap.regs, &cap.stack, 0).is_empty());
}

#[test]
fn symbolizes_with_file_and_line() {
    let (image, bias, lines) = own_image();
    let Some(lines) = lines else {
        // built without debug info: nothing to check here, but CI (CI=true) must not pass on that
        let why = "the test binary has no DWARF line table (built without debug info)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("symbolizes_with_file_and_line: {why} (CI=true: failing instead of skipping)");
        }
        eprintln!("SKIPPED symbolizes_with_file_and_line: {why}");
        return;
    };
    let cap = chain_a(4096);
    let pcs = Unwinder::new(&image, bias).unwind(cap.regs, &cap.stack, 8);
    let frames = symbolize_frames(&image, Some(&lines), bias, &pcs);
    for name in [
        "tests::capture",
        "tests::chain_c",
        "tests::chain_b",
        "tests::chain_a",
    ] {
        let f = &frames[position(&frames, 0, name)];
        assert!(
            f.file
                .as_deref()
                .is_some_and(|p| p.ends_with("unwind/tests.rs")),
            "{f:?}"
        );
        assert!(f.line.is_some_and(|l| l > 10), "{f:?}");
        assert!(!f.inlined, "{f:?}");
    }
    let outer = |n| frames[position(&frames, 0, n)].line.unwrap();
    assert!(outer("tests::chain_a") > outer("tests::chain_b"));
}

#[test]
fn short_window_stops_cleanly() {
    let (image, bias, _) = own_image();
    let cap = chain_a(16 * 1024);
    let mut unwinder = Unwinder::new(&image, bias);
    let full = unwinder.unwind(cap.regs, &cap.stack, 64);
    let mut last = 0;
    for len in [
        0,
        1,
        7,
        8,
        64,
        256,
        1024,
        cap.stack.len() / 2,
        cap.stack.len(),
    ] {
        let pcs = unwinder.unwind(cap.regs, &cap.stack[..len], 64);
        assert!(
            !pcs.is_empty() && pcs.len() <= full.len(),
            "window {len}: {pcs:x?}"
        );
        assert_eq!(pcs[..], full[..pcs.len()], "window {len}: not a prefix");
        assert!(pcs.len() >= last, "a longer window gave fewer frames");
        last = pcs.len();
    }
    assert_eq!(unwinder.unwind(cap.regs, &[], 64), vec![cap.regs.ip]);
}

#[test]
fn garbage_gives_short_results() {
    let (image, bias, _) = own_image();
    let mut unwinder = Unwinder::new(&image, bias);
    let ip = chain_b as *const () as usize as u64;
    assert!(unwinder.in_code(ip));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..64 {
        let stack: Vec<u8> = (0..1024).flat_map(|_| random().to_le_bytes()).collect();
        let regs = Regs {
            ip: ip + round % 16,
            sp: random() & !7,
            bp: random(),
        };
        let pcs = unwinder.unwind(regs, &stack, 64);
        assert!(pcs.len() <= 2, "{pcs:x?}");
    }
    for fill in [0u8, 0xff] {
        let regs = Regs {
            ip,
            sp: 0x7ffd_0000_0000,
            bp: 0x7ffd_0000_0100,
        };
        assert_eq!(unwinder.unwind(regs, &[fill; 4096], 64), vec![ip]);
        let regs = Regs {
            ip,
            sp: u64::MAX - 15,
            bp: u64::MAX - 7,
        };
        assert_eq!(unwinder.unwind(regs, &[fill; 4096], 64), vec![ip]);
    }
    // a stack full of valid-looking return addresses ends at the window or max_frames
    let stack: Vec<u8> = (0..512).flat_map(|_| (ip + 8).to_le_bytes()).collect();
    let regs = Regs {
        ip,
        sp: 0x7ffd_0000_0000,
        bp: 0x7ffd_0000_0000,
    };
    assert!(unwinder.unwind(regs, &stack, 1000).len() <= 513);
    assert!(unwinder.unwind(regs, &stack, 10).len() <= 10);
    // an ip outside the executable gives just the ip
    let regs = Regs {
        ip: 0x10,
        sp: 0x7ffd_0000_0000,
        bp: 0,
    };
    assert_eq!(unwinder.unwind(regs, &stack, 64), vec![0x10]);
}

#[test]
fn wrong_bias_gives_just_the_ip() {
    let (image, _, _) = own_image();
    // Bias chosen so that nothing of the image lands where the registers point.
    let mut unwinder = Unwinder::new(&image, 0x1000_0000_0000);
    let cap = chain_a(1024);
    assert_eq!(unwinder.unwind(cap.regs, &cap.stack, 64), vec![cap.regs.ip]);
}
