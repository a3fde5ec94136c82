//! Reading the target's memory from outside, without stopping it, within a budget.
//!
//! [`Memory`] is what the census readers take. [`Space`] is the one address space of a target, of
//! either kind: a live process (read with `process_vm_readv`, never stopped) or a snapshot of one
//! (a core file); [`Process`] reads a `Space` and counts what each sample costs against a
//! [`ReadBudget`]. Nothing above this file knows which kind it reads. [`FakeMemory`] is an address
//! space made of byte regions (tests and fuzzing).
use std::{
    cell::Cell,
    collections::BTreeMap,
    io,
    sync::Arc,
};

use super::Mapping;

/// A target's address space: a live process or a snapshot of one.
#[derive(Clone)]
pub enum Space {
    /// A running process, read without stopping it.
    Live(u32),
    /// A process as it was (a core file): its memory and its mappings.
    Snapshot { name: String, mem: Arc<dyn Memory + Send + Sync>, maps: Arc<Vec<Mapping>> },
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Space {
    /// How messages name it: `pid 1234` or `core FILE`.
    pub fn label(&self) -> String {
        match self {
            Space::Live(pid) => format!("pid {pid}"),
            Space::Snapshot { name, .. } => format!("core {name}"),
        }
    }

    /// The live process's pid (None for a snapshot).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Space::Live(pid) => Some(*pid),
            Space::Snapshot { .. } => None,
        }
    }

    /// Its mappings, as /proc/PID/maps lists them (a snapshot: as they were).
    pub fn maps(&self) -> io::Result<Vec<Mapping>> {
        match self {
            Space::Live(pid) => Ok(super::parse_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?)),
            Space::Snapshot { maps, .. } => Ok(maps.to_vec()),
        }
    }

    /// Which of its pages were ever touched (a live process's pagemap; None for a snapshot, whose
    /// untouched pages are not in the core, or when pagemap cannot be opened).
    pub fn pagemap(&self) -> Option<super::resident::Pagemap> {
        match self {
            Space::Live(pid) => super::resident::Pagemap::open(*pid).ok(),
            Space::Snapshot { .. } => None,
        }
    }

    /// Fills `bufs` in turn from the contiguous bytes at `addr`, in one call for a live process;
    /// the bytes read, fewer than asked when the range runs into memory that cannot be read
    /// (whole buffers before that point are filled). Not budgeted: see [`Process`].
    pub fn read_run(&self, addr: u64, bufs: &mut [&mut [u8]]) -> usize {
        match self {
            Space::Live(pid) => {
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                let local: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
                let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: total };
                // SAFETY: every local iovec covers one of `bufs`, which outlive the call.
                let n = unsafe { libc::process_vm_readv(*pid as libc::pid_t, local.as_ptr(), local.len() as libc::c_ulong, &remote, 1, 0) };
                usize::try_from(n).unwrap_or(0)
            }
            Space::Snapshot { mem, .. } => {
                let mut at = addr;
                let mut done = 0;
                for b in bufs.iter_mut() {
                    if mem.read(at, b).is_err() {
                        break;
                    }
                    at += b.len() as u64;
                    done += b.len();
                }
                done
            }
        }
    }

    /// `read_many`, each call first charged (bytes asked) through `charge`: false stops reading.
    fn read_many_with(&self, addrs: &[u64], len: usize, charge: &dyn Fn(u64) -> bool) -> Vec<Option<Vec<u8>>> {
        match self {
            Space::Live(pid) => read_many_with(*pid, addrs, len, charge),
            Space::Snapshot { mem, .. } => {
                if !charge((addrs.len() * len) as u64) {
                    return vec![None; addrs.len()];
                }
                mem.read_many(addrs, len)
            }
        }
    }
}

/// A space read without a budget (one-off reads: a symbol's word at attach, a vtable's name).
impl Memory for Space {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Space::Live(pid) => read_bytes(*pid, addr, buf),
            Space::Snapshot { mem, .. } => mem.read(addr, buf),
        }
    }

    fn read_many(&self, addrs: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
        self.read_many_with(addrs, len, &|_| true)
    }
}

/// An address space the census reads from. Reads never stop the target.
pub trait Memory {
    /// Fills `buf` from `addr`; an error when any byte is unreadable (or the budget is spent).
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Reads `len` bytes at each address; an unreadable address gives None, the others are still
    /// read.
    fn read_many(&self, addrs: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
        addrs
            .iter()
            .map(|&a| {
                let mut b = vec![0u8; len];
                self.read(a, &mut b).ok().map(|()| b)
            })
            .collect()
    }

    fn read_u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }
}

/// What one target may cost leakprof per sample: bytes read and read syscalls. A census that
/// reaches either stops reading (what it has counted stays, marked partial) and the report warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub bytes: u64,
    pub syscalls: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        // a census of 1M tokio tasks reads about 450 MB; 100k goroutines with stacks about 100 MB
        ReadLimits { bytes: 1 << 30, syscalls: 1 << 20 }
    }
}

/// Counts one sample's reads against its limits (interior mutability: readers share `&self`).
#[derive(Debug, Default)]
pub struct ReadBudget {
    pub limits: ReadLimits,
    bytes: Cell<u64>,
    syscalls: Cell<u64>,
    /// Set when a read was refused because a limit was reached, since the last `new_sample`.
    exhausted: Cell<bool>,
}

/// The error of a read refused by the budget.
pub fn budget_error() -> io::Error {
    io::Error::other("read budget of this sample spent")
}

impl ReadBudget {
    pub fn new(limits: ReadLimits) -> Self {
        ReadBudget { limits, ..Default::default() }
    }

    /// Starts a sample: counts from zero.
    pub fn new_sample(&self) {
        self.bytes.set(0);
        self.syscalls.set(0);
        self.exhausted.set(false);
    }

    /// Charges one syscall of `bytes`; false (and exhausted) when it would pass a limit.
    /// Whether one more call reading `bytes` would stay within the budget (nothing charged).
    pub fn fits(&self, bytes: u64) -> bool {
        self.bytes.get().saturating_add(bytes) <= self.limits.bytes && self.syscalls.get() < self.limits.syscalls
    }

    pub fn charge(&self, bytes: u64) -> bool {
        let (b, s) = (self.bytes.get().saturating_add(bytes), self.syscalls.get() + 1);
        if b > self.limits.bytes || s > self.limits.syscalls {
            self.exhausted.set(true);
            return false;
        }
        self.bytes.set(b);
        self.syscalls.set(s);
        true
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    pub fn syscalls(&self) -> u64 {
        self.syscalls.get()
    }

    pub fn exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// The report's warning when this sample ran out of budget.
    pub fn warning(&self, what: &str) -> Option<String> {
        self.exhausted().then(|| {
            format!(
                "{what}: a sample reached leakprof's read budget ({} MiB or {} read calls per sample) and \
                 stopped reading: its counts are partial (a runtime this large, or memory that looks hostile)",
                self.limits.bytes >> 20,
                self.limits.syscalls
            )
        })
    }
}

/// A target's address space read with a budget: each call charged to `budget`.
#[derive(Debug)]
pub struct Process {
    pub space: Space,
    pub budget: ReadBudget,
}

impl Process {
    pub fn new(space: Space, limits: ReadLimits) -> Self {
        Process { space, budget: ReadBudget::new(limits) }
    }
}

/// At most this many failed calls in one `read_many` before the rest of its addresses are given
/// up (a slice of garbage pointers costs a bounded number of syscalls, not one per pointer).
const MAX_FAILED_CALLS: usize = 64;

impl Memory for Process {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if !self.budget.charge(buf.len() as u64) {
            return Err(budget_error());
        }
        self.space.read(addr, buf)
    }

    fn read_many(&self, addrs: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
        self.space.read_many_with(addrs, len, &|n| self.budget.charge(n))
    }
}

/// Reads `buf.len()` bytes at `addr` in process `pid` (process_vm_readv).
pub fn read_bytes(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the local iovec covers `buf`, which outlives the call.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
    }
    Ok(())
}

/// Reads a native-endian u64 at `addr` in process `pid`.
pub fn read_u64(pid: u32, addr: u64) -> io::Result<u64> {
    let mut b = [0u8; 8];
    read_bytes(pid, addr, &mut b)?;
    Ok(u64::from_ne_bytes(b))
}

/// Reads one u64 at each address (process_vm_readv, up to 1024 addresses per call).
/// An unreadable address gives None; the others are still read.
pub fn read_u64_many(pid: u32, addrs: &[u64]) -> Vec<Option<u64>> {
    read_many(pid, addrs, 8)
        .into_iter()
        .map(|b| b.map(|b| u64::from_ne_bytes(b[..8].try_into().unwrap())))
        .collect()
}

/// Reads `len` bytes at each address (process_vm_readv, up to 1024 per call); an unreadable
/// address gives None, the others are still read.
pub fn read_many(pid: u32, addrs: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
    read_many_with(pid, addrs, len, &|_| true)
}

/// `read_many`, each call first charged (bytes asked) through `charge`: false stops reading.
/// The kernel stops a vectored read at the first unreadable iovec: the batch goes on after it,
/// and after [`MAX_FAILED_CALLS`] calls that stopped short the rest are given up.
fn read_many_with(pid: u32, addrs: &[u64], len: usize, charge: &dyn Fn(u64) -> bool) -> Vec<Option<Vec<u8>>> {
    const BATCH: usize = 1024;
    let mut out: Vec<Option<Vec<u8>>> = vec![None; addrs.len()];
    if len == 0 {
        return out;
    }
    let (mut start, mut failed) = (0, 0);
    while start < addrs.len() && failed < MAX_FAILED_CALLS {
        let end = (start + BATCH).min(addrs.len());
        if !charge(((end - start) * len) as u64) {
            break;
        }
        let mut bufs: Vec<Vec<u8>> = (start..end).map(|_| vec![0u8; len]).collect();
        let local: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: len })
            .collect();
        let remote: Vec<libc::iovec> = addrs[start..end]
            .iter()
            .map(|&a| libc::iovec { iov_base: a as *mut libc::c_void, iov_len: len })
            .collect();
        // SAFETY: every local iovec points into `bufs`, which outlives the call.
        let n = unsafe {
            libc::process_vm_readv(
                pid as libc::pid_t,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        let got = if n < 0 { 0 } else { n as usize / len };
        for (i, b) in bufs.into_iter().take(got).enumerate() {
            out[start + i] = Some(b);
        }
        if got < end - start {
            failed += 1;
        }
        start += if got == end - start { got } else { got + 1 };
    }
    out
}

/// An address space of byte regions (start address -> bytes): reads inside one region succeed,
/// all others fail. For tests and fuzzing of the readers.
#[derive(Debug, Clone, Default)]
pub struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `bytes` at `addr` (replacing a region that starts there).
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) -> &mut Self {
        self.regions.insert(addr, bytes);
        self
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let unreadable = || io::Error::new(io::ErrorKind::InvalidInput, "unmapped");
        let (&start, bytes) = self.regions.range(..=addr).next_back().ok_or_else(unreadable)?;
        let off = usize::try_from(addr - start).map_err(|_| unreadable())?;
        let src = off.checked_add(buf.len()).and_then(|end| bytes.get(off..end)).ok_or_else(unreadable)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_many_and_skips_unreadable_addresses() {
        let xs: Vec<u64> = (0..3000).collect();
        let mut addrs: Vec<u64> = xs.iter().map(|x| x as *const u64 as u64).collect();
        addrs[5] = 8; // unmapped
        let got = read_u64_many(std::process::id(), &addrs);
        assert_eq!(got.len(), 3000);
        assert_eq!(got[5], None);
        assert_eq!(got[4], Some(4));
        assert_eq!(got[6], Some(6));
        assert_eq!(got[2999], Some(2999));
    }

    #[test]
    fn reads_many_structs() {
        let xs: Vec<[u64; 4]> = (0..1500).map(|i| [i, i + 1, i + 2, i + 3]).collect();
        let mut addrs: Vec<u64> = xs.iter().map(|x| x.as_ptr() as u64).collect();
        addrs[3] = 16;
        let got = read_many(std::process::id(), &addrs, 32);
        assert!(got[3].is_none());
        let b = got[1499].as_ref().unwrap();
        assert_eq!(u64::from_ne_bytes(b[24..32].try_into().unwrap()), 1502);
        assert_eq!(u64::from_ne_bytes(got[4].as_ref().unwrap()[0..8].try_into().unwrap()), 4);
    }

    #[test]
    fn reads_own_memory() {
        let x: u64 = 0x1122_3344_5566_7788;
        let v = read_u64(std::process::id(), &x as *const u64 as u64).unwrap();
        assert_eq!(v, x);
    }

    /// A slice of garbage pointers used to cost one syscall per pointer (each failed iovec
    /// restarted the batch one address later): now at most MAX_FAILED_CALLS calls.
    #[test]
    fn garbage_pointers_cost_a_bounded_number_of_syscalls() {
        let p = Process::new(Space::Live(std::process::id()), ReadLimits::default());
        let garbage: Vec<u64> = (0..100_000u64).map(|i| 0x10 + i * 4096).collect();
        let got = p.read_many(&garbage, 64);
        assert!(got.iter().all(Option::is_none));
        assert!(p.budget.syscalls() <= MAX_FAILED_CALLS as u64, "{} syscalls", p.budget.syscalls());
    }

    #[test]
    fn the_budget_stops_reads_and_says_so() {
        let p = Process::new(Space::Live(std::process::id()), ReadLimits { bytes: 1 << 20, syscalls: 1000 });
        let xs = vec![7u8; 1 << 16];
        let mut buf = vec![0u8; 1 << 16];
        let mut ok = 0;
        for _ in 0..32 {
            ok += usize::from(p.read(xs.as_ptr() as u64, &mut buf).is_ok());
        }
        assert_eq!(ok, 16, "1 MiB allows 16 reads of 64 KiB");
        assert!(p.budget.exhausted());
        assert!(p.budget.warning("pid 1").unwrap().contains("partial"));
        p.budget.new_sample();
        assert!(p.read(xs.as_ptr() as u64, &mut buf).is_ok() && !p.budget.exhausted());
    }

    #[test]
    fn fake_memory_reads_inside_regions_only() {
        let mut m = FakeMemory::new();
        m.map(0x1000, vec![1, 2, 3, 4]).map(0x2000, vec![9; 8]);
        let mut b = [0u8; 2];
        m.read(0x1001, &mut b).unwrap();
        assert_eq!(b, [2, 3]);
        assert!(m.read(0x1003, &mut b).is_err(), "crosses the region's end");
        assert!(m.read(0x0fff, &mut b).is_err());
        assert!(m.read(u64::MAX, &mut b).is_err());
        assert_eq!(m.read_u64(0x2000).unwrap(), u64::from_ne_bytes([9; 8]));
    }
}
