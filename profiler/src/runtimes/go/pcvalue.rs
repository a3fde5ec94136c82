//! Byte-level decoding shared by the Go readers: little-endian words, C strings, uvarints and
//! the pclntab's pc-value tables.

/// Reads an unsigned LEB128 varint: (value, bytes used).
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Little-endian u32 at `o`.
pub fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Little-endian u64 at `o`.
pub fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The NUL-terminated UTF-8 string at `o`.
pub fn cstr(b: &[u8], o: usize) -> Option<&str> {
    let s = b.get(o..)?;
    let end = s.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&s[..end]).ok()
}

/// runtime.pcvalue over one pc-value table (`table` starts at the function's table): pairs of
/// (zigzag uvarint value delta, uvarint pc delta × quantum), the value starting at -1; a zero
/// value delta after the first pair ends the table. The value for `pc` in a function at `entry`.
pub fn pcvalue(table: &[u8], quantum: u64, entry: u64, pc: u64) -> Option<i32> {
    pcvalue_run(table, quantum, entry, pc).map(|(v, _)| v)
}

/// [`pcvalue`], and the first pc of the run of pcs sharing that value (pc-value tables are walked
/// run by run, never byte by byte).
pub fn pcvalue_run(table: &[u8], quantum: u64, entry: u64, pc: u64) -> Option<(i32, u64)> {
    let (mut p, mut val, mut cur) = (0usize, -1i32, entry);
    loop {
        let start = cur;
        let (uvdelta, n) = uvarint(table.get(p..)?)?;
        if uvdelta == 0 && p != 0 {
            return None;
        }
        p += n;
        let uv = uvdelta as u32;
        val = val.wrapping_add((uv & 1).wrapping_neg() as i32 ^ (uv >> 1) as i32);
        let (pcdelta, n) = uvarint(table.get(p..)?)?;
        p += n;
        cur = cur.checked_add(pcdelta.checked_mul(quantum)?)?;
        if pc < cur {
            return (pc >= start).then_some((val, start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcvalue_steps_through_zigzag_deltas() {
        // value -1+6=5 for [0x100, 0x110); 5-2=3 for [0x110, 0x118); then the end marker
        let table = [12, 0x10, 3, 0x08, 0];
        assert_eq!(pcvalue(&table, 1, 0x100, 0x100), Some(5));
        assert_eq!(pcvalue(&table, 1, 0x100, 0x10f), Some(5));
        assert_eq!(pcvalue(&table, 1, 0x100, 0x110), Some(3));
        assert_eq!(pcvalue(&table, 1, 0x100, 0x118), None, "past the table");
        // quantum 4 and a two-byte varint line delta (+150 -> zigzag 300 = 0xac 0x02)
        assert_eq!(pcvalue(&[0xac, 0x02, 4, 0], 4, 0, 15), Some(149));
        assert_eq!(pcvalue(&[0xac, 0x02, 4, 0], 4, 0, 16), None);
    }

    #[test]
    fn uvarints() {
        assert_eq!(uvarint(&[0x05]), Some((5, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }
}
