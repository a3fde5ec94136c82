//! Which pages of a live process were ever touched: `/proc/PID/pagemap` (one 64-bit entry per
//! virtual page; bit 63: in memory, bit 62: in swap). A page in neither was never written (or
//! was given back): it holds zeros, so a scan for data can skip it without reading it. Reading it
//! would also cost the target: each read of an untouched anonymous page maps the shared zero page
//! into its page tables. Opening pagemap needs the same right as reading the memory
//! (`PTRACE_MODE_READ`); without CAP_SYS_ADMIN the kernel zeroes the frame numbers, not the two
//! bits read here.
use std::{fs::File, io, os::unix::fs::FileExt as _};

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;

/// A live process's pagemap, open.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    page: u64,
}

impl Pagemap {
    pub fn open(pid: u32) -> io::Result<Pagemap> {
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(Pagemap { file: File::open(format!("/proc/{pid}/pagemap"))?, page: u64::try_from(page).unwrap_or(4096).max(4096) })
    }

    pub fn page_size(&self) -> u64 {
        self.page
    }

    /// The runs of touched pages in `[start, end)` (page-aligned outward), in address order, and
    /// the pagemap bytes read to know it. Err: pagemap could not be read there.
    pub fn touched(&self, start: u64, end: u64, buf: &mut Vec<u64>) -> io::Result<(Vec<(u64, u64)>, u64)> {
        let first = start / self.page;
        let last = end.div_ceil(self.page);
        let n = last.saturating_sub(first) as usize;
        buf.clear();
        buf.resize(n, 0);
        // SAFETY: a u64 slice viewed as its bytes, for the length of the slice
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n * 8) };
        self.file.read_exact_at(bytes, first * 8)?;
        Ok((runs(buf, first * self.page, self.page), n as u64 * 8))
    }
}

/// The runs of pages whose entry says in memory or in swap; `entries[0]` is the page at `base`.
pub fn runs(entries: &[u64], base: u64, page: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e & (PRESENT | SWAPPED) == 0 {
            continue;
        }
        let at = base + i as u64 * page;
        match out.last_mut() {
            Some(r) if r.1 == at => r.1 = at + page,
            _ => out.push((at, at + page)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_pages_in_memory_or_in_swap() {
        let e = [0, PRESENT | 5, SWAPPED, 0, 0, PRESENT, 1 << 55];
        assert_eq!(runs(&e, 0x10_000, 0x1000), vec![(0x11_000, 0x13_000), (0x15_000, 0x16_000)]);
        assert!(runs(&[0; 8], 0, 0x1000).is_empty());
    }

    #[test]
    fn finds_its_own_touched_pages() {
        let pm = Pagemap::open(std::process::id()).unwrap();
        let page = pm.page_size() as usize;
        // 64 pages reserved, pages 3 and 4 touched
        // SAFETY: an anonymous private mapping of our own, unmapped below
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), 64 * page, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p as u64;
        // SAFETY: inside the mapping
        unsafe {
            (p as *mut u8).add(3 * page).write_volatile(1);
            (p as *mut u8).add(4 * page + 9).write_volatile(1);
        }
        let (r, read) = pm.touched(base, base + 64 * page as u64, &mut Vec::new()).unwrap();
        // SAFETY: the mapping made above
        unsafe { libc::munmap(p, 64 * page) };
        assert_eq!(r, vec![(base + 3 * page as u64, base + 5 * page as u64)]);
        assert_eq!(read, 64 * 8);
    }
}
