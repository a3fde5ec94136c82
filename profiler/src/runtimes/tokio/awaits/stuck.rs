//! Where a site's live tasks are suspended: sampled task headers from the census, decoded with
//! the binary's DWARF types ([`super`]) or, without them, from its machine code
//! ([`super::code`]); tallied by the innermost `.await` in the user's code.
use super::code::{AwaitPoint, CodeIndex, Decoded};
use super::{AwaitFrame, AwaitIndex};
use crate::elf::lines::LineTable;
use crate::runtimes::tokio::state::COMPLETE;
use crate::target::memory::Memory as _;
use crate::{
    elf::lines::is_library_path,
    model::StackFrame,
    runtimes::{Stuck, StuckTally},
};

/// The `.await` to report: the innermost in the user's own code (its awaitee names the library
/// call it waits in), else the innermost.
fn stuck_frame(frames: &[AwaitFrame]) -> Option<&AwaitFrame> {
    frames.iter().rev().find(|f| !is_library_path(&f.file)).or(frames.last())
}

/// Decodes the tasks at `headers` (keeping the `keep` most common whole chains) (all with the `raw::poll<T, S>` at ELF address `poll_vaddr`);
/// None when the future's layout is not in the debug info.
pub fn stuck(index: &mut AwaitIndex, space: &crate::target::Space, poll_vaddr: u64, headers: &[u64], keep: usize) -> Option<Stuck> {
    let fut = index.future_of(poll_vaddr)?;
    let mut read = |addr: u64, buf: &mut [u8]| space.read(addr, buf).is_ok();
    let mut tally = StuckTally::default();
    for &h in headers {
        let Some(frames) = index.suspended_at(&fut, h, &mut read) else { continue };
        let Some(inner) = stuck_frame(&frames) else { continue };
        let at = (StackFrame { function: inner.function.clone(), file: Some(inner.file.clone()), line: Some(inner.line) }, Some(inner.awaiting.clone()));
        // innermost first, as every stack in the report
        let chain = frames
            .iter()
            .rev()
            .map(|f| StackFrame { function: format!("{} awaiting {}", f.function, f.awaiting), file: Some(f.file.clone()), line: Some(f.line) })
            .collect();
        tally.add(Some(at), chain);
    }
    Some(Stuck { decoder: Some("dwarf"), ..tally.into_stuck(keep) })
}

/// The await to report among decoded levels (outermost first): the innermost in the user's own
/// code, else the innermost.
fn stuck_point(points: &[AwaitPoint]) -> Option<&AwaitPoint> {
    points.iter().rev().find(|p| !p.library).or(points.last())
}

/// As [`stuck`], from the machine code: None when the `raw::poll` at `poll_vaddr` leads to no
/// recognised state machine. `cell_size` bounds the offsets read (the vtable's trailer offset).
pub fn stuck_from_code(
    code: &mut CodeIndex,
    lines: Option<&LineTable>,
    space: &crate::target::Space,
    poll_vaddr: u64,
    cell_size: Option<u64>,
    headers: &[u64],
    keep: usize,
) -> Option<Stuck> {
    let root = code.root(poll_vaddr);
    let mut read = |addr: u64, buf: &mut [u8]| space.read(addr, buf).is_ok();
    let mut tally = StuckTally::default();
    let Some(root) = root else {
        // no state machine recognised below this raw::poll (a future that is not an async fn
        // or block, or one whose dispatch is not recognised): every sampled task is undecoded
        for _ in headers {
            tally.add_undecoded();
        }
        return (!headers.is_empty()).then(|| Stuck { decoder: Some("code"), ..tally.into_stuck(keep) });
    };
    for &h in headers {
        let mut word = [0u8; 8];
        if !read(h, &mut word) {
            tally.add_undecoded();
            continue;
        }
        if u64::from_le_bytes(word) & COMPLETE != 0 {
            continue; // its future is gone
        }
        let levels = match code.decode(root, h, cell_size, &mut read) {
            Decoded::NotSuspended => continue,
            Decoded::Undecoded => {
                tally.add_undecoded();
                continue;
            }
            Decoded::Levels(l) if l.is_empty() => continue,
            Decoded::Levels(l) => l,
        };
        let points: Vec<AwaitPoint> =
            (0..levels.len()).filter_map(|i| code.point(levels[i], levels.get(i + 1).copied(), lines)).collect();
        let Some(p) = stuck_point(&points) else {
            tally.add_undecoded();
            continue;
        };
        let frame = |p: &AwaitPoint| StackFrame { function: p.function.clone(), file: p.file.clone(), line: p.line };
        // what it awaits, and what the innermost level polls when that is deeper
        let innermost = points.last().and_then(|q| q.callee.as_ref()).filter(|_| points.len() > 1);
        let awaiting = match (&p.callee, innermost) {
            (Some(c), Some(i)) if c != i && !std::ptr::eq(p, points.last().expect("a point")) => Some(format!("{c}, polling {i}")),
            (c, _) => c.clone(),
        };
        let at = (frame(p), awaiting, Some(p.ordinal));
        let chain = points
            .iter()
            .rev()
            .map(|p| {
                let awaiting = p.callee.as_deref().map(|c| format!(" awaiting {c}")).unwrap_or_default();
                StackFrame { function: format!("{} at .await #{}{awaiting}", p.function, p.ordinal), ..frame(p) }
            })
            .collect();
        tally.add_await(Some(at), chain);
    }
    Some(Stuck { decoder: Some("code"), ..tally.into_stuck(keep) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32, awaiting: &str) -> AwaitFrame {
        AwaitFrame { function: function.into(), file: file.into(), line, awaiting: awaiting.into() }
    }

    #[test]
    fn the_users_innermost_await_is_reported_not_the_librarys() {
        let chain = [
            frame("app::serve", "/src/app/src/main.rs", 10, "app::conn::handle"),
            frame("app::conn::handle", "/src/app/src/conn.rs", 42, "tokio::sync::mpsc::bounded::Receiver<u8>::recv"),
            frame("tokio::sync::mpsc::bounded::recv", "/root/.cargo/registry/src/x/tokio-1.54.1/src/sync/mpsc/bounded.rs", 245, "PollFn"),
        ];
        assert_eq!(stuck_frame(&chain).unwrap().line, 42);
        assert_eq!(stuck_frame(&chain[2..]).unwrap().line, 245);
        assert!(stuck_frame(&[]).is_none());
    }
}
