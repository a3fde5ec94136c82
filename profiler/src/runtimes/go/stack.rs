//! Where a parked goroutine waits: its stack unwound from outside, from the sp and pc it saved in
//! g.sched when it parked, through the binary's own pclntab (the frame size at each pc, no frame
//! pointers needed), and the first frame outside the runtime's blocking machinery.
use super::pclntab::Pclntab;
use crate::{model::StackFrame, target::memory::Memory};

/// Deepest stack unwound, and the most stack bytes read per goroutine.
const MAX_FRAMES: usize = 64;
const MAX_STACK_BYTES: u64 = 64 * 1024;

/// Functions of the runtime and of the blocking machinery users call into: the frame where a
/// goroutine waits is the first one that is none of these.
fn is_machinery(function: &str) -> bool {
    ["runtime.", "sync.", "sync/atomic.", "internal/", "time.", "context.", "os/signal."]
        .iter()
        .any(|p| function.starts_with(p))
}

/// The stack of a goroutine parked with saved `sp` and `pc` (runtime addresses), innermost first,
/// read from `mem` and named through `pcln` (which takes addresses less `bias`), each frame with
/// the pc it was named at (less `bias`). Ends at runtime.goexit, at an unknown pc, or when a frame
/// would leave [sp, stack_hi).
pub fn unwind(mem: &dyn Memory, pcln: &Pclntab, bias: u64, sp: u64, pc: u64, stack_hi: u64) -> Vec<(StackFrame, u64)> {
    if sp == 0 || pc == 0 || stack_hi <= sp {
        return Vec::new();
    }
    let len = (stack_hi - sp).min(MAX_STACK_BYTES) as usize;
    let mut stack = vec![0u8; len];
    if mem.read(sp, &mut stack).is_err() {
        return Vec::new();
    }
    let word = |addr: u64| -> Option<u64> {
        let o = usize::try_from(addr.checked_sub(sp)?).ok()?;
        Some(u64::from_ne_bytes(stack.get(o..o.checked_add(8)?)?.try_into().ok()?))
    };
    let (mut frames, mut sp_now, mut pc_now) = (Vec::new(), sp, pc);
    for depth in 0..MAX_FRAMES {
        let vpc = pc_now.wrapping_sub(bias);
        let Some(f) = pcln.func_for_pc(vpc) else { break };
        // a return address points after its call: name the call (pc-1); the innermost pc is exact
        let at = if depth == 0 { vpc } else { vpc.saturating_sub(1) };
        let (file, line) = pcln.file_line(at).map_or((None, None), |(f, l)| (Some(f), Some(l)));
        let done = f.name == "runtime.goexit";
        frames.push((StackFrame { function: f.name, file, line }, at));
        let Some(delta) = pcln.sp_delta(vpc) else { break };
        if done {
            break;
        }
        let Some(ret) = sp_now.checked_add(delta).and_then(word) else { break };
        let Some(next) = sp_now.checked_add(delta).and_then(|a| a.checked_add(8)) else { break };
        sp_now = next;
        pc_now = ret;
    }
    frames
}

/// Index of the frame a goroutine waits in: the first outside the runtime and its blocking
/// machinery (None when every frame is machinery, e.g. a runtime worker).
pub fn stuck_frame(frames: &[(StackFrame, u64)]) -> Option<usize> {
    frames.iter().position(|(f, _)| !is_machinery(&f.function))
}

/// The line of the user's own code a frame waits at. The pclntab names the innermost inlined
/// position: when the blocking call was inlined into the user's function (`sync.Mutex.Lock`
/// is), that is a line of sync/mutex.go. The call itself is then the last instruction before
/// the inlined body that belongs to the function's own file (the file of its entry), found by
/// stepping back from the frame's pc one run of the file and line tables at a time (at most
/// [`MAX_OWN_LINE_RUNS`] runs, within 16 KiB of the frame's pc).
pub fn own_line(pcln: &Pclntab, frame_vpc: u64) -> Option<(String, u32)> {
    own_line_with(pcln, frame_vpc, &|| {})
}

/// [`own_line`], calling `lookup` before each line lookup (tests count them).
fn own_line_with(pcln: &Pclntab, frame_vpc: u64, lookup: &dyn Fn()) -> Option<(String, u32)> {
    let f = pcln.func_for_pc(frame_vpc)?;
    let (own_file, _) = pcln.file_line(f.entry)?;
    let mut pc = frame_vpc;
    for _ in 0..MAX_OWN_LINE_RUNS {
        if pc < f.entry || frame_vpc - pc >= 16 * 1024 {
            break;
        }
        lookup();
        if let Some((file, line)) = pcln.file_line(pc) {
            if file == own_file {
                return Some((file, line));
            }
        }
        // the run before this one
        let start = pcln.file_line_run_start(pc)?;
        pc = start.checked_sub(1)?;
    }
    None
}

/// Runs of the pc-file/pc-line tables `own_line` steps back through (a lookup each).
pub const MAX_OWN_LINE_RUNS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(f: &str) -> (StackFrame, u64) {
        (StackFrame { function: f.into(), file: None, line: None }, 0)
    }

    /// A stack at the top of the address space made `sp + frame size` overflow mid-unwind.
    #[test]
    fn a_stack_at_the_top_of_the_address_space_ends_the_unwind() {
        let pcln = Pclntab::parse(&crate::runtimes::go::pclntab::tests::synthetic()).unwrap();
        let sp = u64::MAX - 19;
        let mut stack = vec![0u8; 20];
        // main.a's frame is 10 bytes at its entry: its return address, back into main.a
        stack[10..18].copy_from_slice(&0x1005u64.to_ne_bytes());
        let mut m = crate::target::memory::FakeMemory::new();
        m.map(sp, stack);
        let frames = unwind(&m, &pcln, 0, sp, 0x1000, u64::MAX);
        assert_eq!(frames.iter().map(|(f, pc)| (f.function.as_str(), *pc)).collect::<Vec<_>>(), [("main.a", 0x1000), ("main.a", 0x1004)]);
    }

    /// own_line stepped back one byte at a time: up to 16 K line lookups per new pc.
    #[test]
    fn own_line_steps_back_by_runs() {
        // main.go for the first 8 bytes of each function, then sync.go (an inlined Lock) to its end
        let table = crate::runtimes::go::pclntab::tests::synthetic_with(&["/src/main.go", "/src/sync.go"], &[2, 0x08, 2, 0x38, 0]);
        let pcln = Pclntab::parse(&table).unwrap();
        assert_eq!(pcln.file_line(0x101f), Some(("/src/sync.go".into(), 12)));
        let lookups = std::cell::Cell::new(0);
        assert_eq!(own_line_with(&pcln, 0x101f, &|| lookups.set(lookups.get() + 1)), Some(("/src/main.go".into(), 10)));
        assert_eq!(lookups.get(), 3, "0x101f, then the runs starting at 0x1010 and 0x1008 (not 24 bytes one by one)");
    }

    #[test]
    fn the_wait_is_the_first_frame_past_the_machinery() {
        let frames = [
            fr("runtime.gopark"),
            fr("runtime.chanrecv"),
            fr("runtime.chanrecv1"),
            fr("main.recvNoSender.func1"),
            fr("runtime.goexit"),
        ];
        assert_eq!(stuck_frame(&frames), Some(3));
        let lock = [fr("runtime.gopark"), fr("internal/sync.runtime_SemacquireMutex"), fr("sync.(*Mutex).Lock"), fr("main.f")];
        assert_eq!(stuck_frame(&lock), Some(3));
        assert_eq!(stuck_frame(&[fr("runtime.gopark"), fr("runtime.bgsweep")]), None);
        // a user package whose name starts like a std one is not machinery
        assert_eq!(stuck_frame(&[fr("runtime.gopark"), fr("timeutil.Wait")]), Some(1));
    }
}
