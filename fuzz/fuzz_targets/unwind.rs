//! `.eh_frame` unwinding (framehop, then the frame-pointer fallback) of arbitrary stack bytes,
//! on a small committed executable or on one parsed from the input.
#![no_main]
use std::cell::RefCell;

use leakprof::elf::ElfImage;
use leakprof::unwind::{symbolize_frames, Regs, Unwinder};
use leakprof_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const BIAS: u64 = 0x5555_0000_0000;
const SP: u64 = 0x7ffd_0000_0000;
/// gcc -O2 with .eh_frame and .eh_frame_hdr, stripped of debug info (fuzz/images/README.md).
const IMAGE: &[u8] = include_bytes!("../images/c-eh-frame");

struct Fixed {
    image: ElfImage,
    unwinder: Unwinder,
    code: Vec<u64>,
}

thread_local! {
    static FIXED: RefCell<Fixed> = RefCell::new({
        let image = ElfImage::parse(IMAGE).expect("the committed image parses");
        let unwinder = Unwinder::new(&image, BIAS);
        let code = image.symbols().iter().map(|s| s.addr + BIAS).collect();
        Fixed { image, unwinder, code }
    });
}

fn go(image: &ElfImage, unwinder: &mut Unwinder, code: &[u64], inp: &mut Input) {
    let flags = inp.u8();
    let ip = if flags & 2 != 0 || code.is_empty() {
        inp.u64()
    } else {
        code[inp.u8() as usize % code.len()] + u64::from(inp.u8())
    };
    let bp = if flags & 4 != 0 { SP + u64::from(inp.u16()) } else { inp.u64() };
    let max = inp.u8() as usize % 80;
    let stack = inp.rest();
    let frames = unwinder.unwind(Regs { ip, sp: SP, bp }, stack, max);
    assert!(frames.len() <= max);
    let _ = unwinder.in_code(ip);
    let _ = symbolize_frames(image, None, BIAS, &frames);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    if inp.u8() & 1 == 0 {
        FIXED.with(|f| {
            let f = &mut *f.borrow_mut();
            go(&f.image, &mut f.unwinder, &f.code, &mut inp);
        });
    } else {
        let Ok(image) = ElfImage::parse(inp.chunk()) else { return };
        let mut unwinder = Unwinder::new(&image, BIAS);
        let _ = unwinder.cfi();
        let code: Vec<u64> = image.symbols().iter().map(|s| s.addr.wrapping_add(BIAS)).take(64).collect();
        go(&image, &mut unwinder, &code, &mut inp);
    }
});
