//! The Go version from `.go.buildinfo` (kept by `-s -w`).
use object::{Object as _, ObjectSection as _};

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Parses the section bytes (Go 1.18+ inline-string format): "go1.19.8".
pub fn parse(section: &[u8]) -> Option<String> {
    if section.len() < 33 || !section.starts_with(MAGIC) {
        return None;
    }
    let flags = section[15];
    if flags & 2 == 0 {
        return None; // pre-1.18 pointer format: not supported
    }
    let (len, n) = uvarint(&section[32..])?;
    let start = 32 + n;
    let s = section.get(start..start + len as usize)?;
    std::str::from_utf8(s).ok().map(str::to_string)
}

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

/// The Go version of an ELF file, when it is a Go binary.
pub fn go_version(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let sec = file.section_by_name(".go.buildinfo")?;
    parse(sec.data().ok()?)
}

/// "go1.19.8" -> (1, 19).
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.strip_prefix("go")?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inline_version() {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&[8, 2]);
        s.resize(32, 0);
        s.push(8);
        s.extend_from_slice(b"go1.19.8");
        s.push(0);
        assert_eq!(parse(&s).as_deref(), Some("go1.19.8"));
        assert_eq!(major_minor("go1.19.8"), Some((1, 19)));
        assert_eq!(major_minor("go1.27rc1"), Some((1, 27)));
        assert_eq!(parse(b"nope"), None);
    }
}
