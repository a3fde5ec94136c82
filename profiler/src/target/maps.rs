//! Parsing /proc/PID/maps.

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    /// "rw-p", "r-xp", ...
    pub perms: String,
    pub path: Option<String>,
}

impl Mapping {
    pub fn readable(&self) -> bool {
        self.perms.starts_with('r')
    }
    pub fn writable(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w')
    }
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// Parses the text of /proc/PID/maps; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?.to_string();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().map(str::trim).filter(|p| !p.is_empty()).map(|p| {
        p.trim_end_matches(" (deleted)").to_string()
    });
    let (s, e) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        offset,
        perms,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_and_without_paths() {
        let text = "55d0c0a00000-55d0c0a45000 r--p 00000000 fd:01 123 /usr/bin/app\n\
                    55d0c0a45000-55d0c0b00000 r-xp 00045000 fd:01 123 /usr/bin/app\n\
                    7ffd1000-7ffd2000 rw-p 00000000 00:00 0 \n\
                    garbage\n\
                    7f00-7f10 r--p 00000000 fd:01 9 /tmp/x (deleted)\n";
        let m = parse_maps(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].offset, 0x45000);
        assert_eq!(m[1].path.as_deref(), Some("/usr/bin/app"));
        assert_eq!(m[2].path, None);
        assert!(m[2].writable() && m[2].readable() && !m[2].executable());
        assert!(m[1].executable() && !m[1].writable());
        assert_eq!(m[3].path.as_deref(), Some("/tmp/x"));
    }
}
