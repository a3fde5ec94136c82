//! The bytes a tokio task holds: its cell's allocation, read from the allocator's chunk header
//! just before it (glibc malloc, the usual allocator of a Rust program on Linux: the word before
//! an allocation is its chunk's size with three flag bits), and for a future tokio boxed because
//! it was large, the box's allocation too. When no believable chunk header is there (another
//! allocator), the cell's extent from its layout: header to the end of the trailer.
use super::mem::Mem;

/// What a measurement counts.
pub const CELL: &str = "task cell";
pub const CELL_BOXED: &str = "task cell + boxed future";
pub const LAYOUT: &str = "task cell (layout)";

/// Bytes of a task's trailer (owned-list links, waker, hooks) past `trailer_offset`, as tokio
/// 1.38+ lays it out; the layout figure is the cell up to there.
pub const TRAILER_BYTES: u64 = 48;
/// Futures at least this large are boxed by tokio before they become a task (release builds of
/// 1.54; older versions box only in debug builds, from 2 KiB): a smaller chunk behind a pointer in
/// the cell is not the future's box.
const BOX_MIN: u64 = 2048;
/// A chunk larger than this is not believable for one task.
const MAX_CHUNK: u64 = 1 << 30;
/// Cells whose future part is at most this many bytes are searched for a boxed future's pointer.
const BOXED_STAGE_MAX: u64 = 128;

/// The size of the glibc chunk whose user memory starts at `p`: (bytes the allocator holds for
/// it, mmapped), when the word before `p` reads as a chunk size.
fn chunk_size(mem: &mut dyn Mem, p: u64) -> Option<(u64, bool)> {
    if p < 16 || !p.is_multiple_of(16) {
        return None;
    }
    let word = mem.u64_at(p - 8)?;
    let (size, mmapped) = (word & !7, word & 2 != 0);
    (size >= 32 && size.is_multiple_of(16) && size <= MAX_CHUNK).then_some((size, mmapped))
}

/// Bytes the task whose header is at `header` holds, and what that counts. `trailer_offset` and
/// `id_offset` are its vtable's.
pub fn task_bytes(mem: &mut dyn Mem, header: u64, trailer_offset: u64, id_offset: u64) -> (u64, &'static str) {
    let extent = trailer_offset.saturating_add(TRAILER_BYTES);
    // the chunk must hold the cell, and not be much more than it (then it is not the cell's)
    let cell = chunk_size(mem, header).filter(|&(size, _)| size >= extent && size <= extent.saturating_mul(2).saturating_add(4096));
    let Some((cell, _)) = cell else {
        return (extent, LAYOUT);
    };
    // a boxed future: the cell's future part is one pointer (and a little state) to a large chunk
    let stage = id_offset.saturating_add(8);
    if trailer_offset.saturating_sub(stage) <= BOXED_STAGE_MAX {
        let mut at = stage;
        while at + 8 <= trailer_offset {
            if let Some(p) = header.checked_add(at).and_then(|a| mem.u64_at(a)) {
                if let Some((size, _)) = chunk_size(mem, p).filter(|&(s, _)| s >= BOX_MIN) {
                    return (cell.saturating_add(size), CELL_BOXED);
                }
            }
            at += 8;
        }
    }
    (cell, CELL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::tokio::census::mem::FakeMem;

    #[test]
    fn reads_the_chunk_before_the_cell_and_a_boxed_future() {
        let mut mem = FakeMem::default();
        mem.regions.push((0x10_0000, vec![0u8; 0x10_000]));
        // a 256-byte cell (trailer at 128): chunk size 0x110 | PREV_INUSE
        let h = 0x10_0010;
        mem.put_u64(h - 8, 0x110 | 1);
        assert_eq!(task_bytes(&mut mem, h, 128, 40), (0x110, CELL));
        // its future part holds a pointer to a 64 KiB chunk: a boxed future
        let b = 0x10_4010;
        mem.put_u64(b - 8, 0x10_010 | 1);
        mem.put_u64(h + 56, b);
        assert_eq!(task_bytes(&mut mem, h, 128, 40), (0x110 + 0x10_010, CELL_BOXED));
        // no believable chunk header (another allocator): the layout
        mem.put_u64(h - 8, 7);
        assert_eq!(task_bytes(&mut mem, h, 128, 40), (128 + TRAILER_BYTES, LAYOUT));
        // a chunk far larger than the cell is not its own
        mem.put_u64(h - 8, 0x100_000 | 1);
        assert_eq!(task_bytes(&mut mem, h, 128, 40).1, LAYOUT);
    }
}
