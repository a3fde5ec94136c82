//! Attach points: function entries of the target, deduplicated by address.

/// One uprobe target: a function entry, deduplicated by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPoint {
    /// Demangled name of (one of) the symbol(s) at this address.
    pub symbol: String,
    /// ELF virtual address of the function entry.
    pub vaddr: u64,
    /// File offset of the function entry (what a uprobe attaches to).
    pub file_offset: u64,
}

/// Collects `(name, vaddr)` matches into attach points, one per address (identical-code folding
/// puts several symbols at one address). The first name seen in sorted order wins; addresses
/// without a file offset are dropped.
pub fn dedup_points<'a>(
    matches: impl IntoIterator<Item = (&'a str, u64)>,
    file_offset: impl Fn(u64) -> Option<u64>,
) -> Vec<AttachPoint> {
    let mut v: Vec<(&str, u64)> = matches.into_iter().collect();
    v.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    v.dedup_by_key(|m| m.1);
    v.into_iter()
        .filter_map(|(name, vaddr)| {
            Some(AttachPoint {
                symbol: name.to_owned(),
                vaddr,
                file_offset: file_offset(vaddr)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_by_address() {
        let pts = dedup_points([("b", 0x20), ("a", 0x10), ("c", 0x20)], |v| {
            Some(v + 0x1000)
        });
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].symbol, "a");
        assert_eq!(pts[1].symbol, "b");
        assert_eq!(pts[1].file_offset, 0x1020);
    }

    #[test]
    fn drops_points_without_offset() {
        let pts = dedup_points([("a", 0x10), ("b", 0x20)], |v| (v == 0x10).then_some(0));
        assert_eq!(pts.len(), 1);
    }
}
