//! Reading the target's memory from outside, without stopping it.
use std::io;

/// Reads `buf.len()` bytes at `addr` in process `pid` (process_vm_readv).
pub fn read_bytes(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
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
    const BATCH: usize = 1024;
    let mut out: Vec<Option<Vec<u8>>> = vec![None; addrs.len()];
    let mut start = 0;
    while start < addrs.len() {
        let end = (start + BATCH).min(addrs.len());
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
        let got = if n < 0 || len == 0 { 0 } else { n as usize / len };
        for (i, b) in bufs.into_iter().take(got).enumerate() {
            out[start + i] = Some(b);
        }
        start += if got == end - start { got } else { got + 1 };
    }
    out
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
}
