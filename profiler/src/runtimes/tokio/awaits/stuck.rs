//! Where a site's live tasks are suspended: sampled task headers from the census, decoded with
//! the binary's DWARF types ([`super`]); tallied by the innermost `.await` reached.
use super::{AwaitFrame, AwaitIndex};
use crate::{
    elf::lines::is_library_path,
    model::StackFrame,
    runtimes::{Stuck, StuckTally},
    target::memory::read_bytes,
};

/// Distinct whole await chains kept per site.
const CHAINS_PER_SITE: usize = 3;

/// The `.await` to report: the innermost in the user's own code (its awaitee names the library
/// call it waits in), else the innermost.
fn stuck_frame(frames: &[AwaitFrame]) -> Option<&AwaitFrame> {
    frames.iter().rev().find(|f| !is_library_path(&f.file)).or(frames.last())
}

/// Decodes the tasks at `headers` (all with the `raw::poll<T, S>` at ELF address `poll_vaddr`);
/// None when the future's layout is not in the debug info.
pub fn stuck(index: &mut AwaitIndex, pid: u32, poll_vaddr: u64, headers: &[u64]) -> Option<Stuck> {
    let fut = index.future_of(poll_vaddr)?;
    let mut read = |addr: u64, buf: &mut [u8]| read_bytes(pid, addr, buf).is_ok();
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
    Some(tally.into_stuck(CHAINS_PER_SITE))
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
