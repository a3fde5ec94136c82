//! Function symbols: demangling and an address-sorted table with containment lookup.

use std::collections::HashSet;

/// One function symbol from `.symtab` or `.dynsym`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnSymbol {
    /// Demangled name without the `::h<hash>` suffix and without a trailing `.llvm.NNN`.
    pub name: String,
    /// The raw symbol name as stored in the ELF file.
    pub mangled: String,
    /// ELF virtual address (not a runtime address, not a file offset).
    pub addr: u64,
    /// Size in bytes as recorded in the symbol table (may be 0).
    pub size: u64,
}

impl FnSymbol {
    /// Builds a symbol, demangling `mangled`.
    pub fn new(mangled: &str, addr: u64, size: u64) -> Self {
        FnSymbol {
            name: demangle(mangled),
            mangled: mangled.to_owned(),
            addr,
            size,
        }
    }

    /// True when `vaddr` lies inside this function (a zero-sized symbol only contains its own address).
    pub fn contains(&self, vaddr: u64) -> bool {
        vaddr == self.addr || (vaddr > self.addr && vaddr - self.addr < self.size)
    }
}

/// Demangles a Rust symbol (legacy or v0) in the alternate form (no hash); other names are returned
/// as they are. A trailing `.llvm.NNN` (or other `.`-suffix added by LLVM) is dropped either way.
pub fn demangle(mangled: &str) -> String {
    let base = strip_llvm_suffix(mangled);
    match rustc_demangle::try_demangle(base) {
        Ok(d) => format!("{d:#}"),
        Err(_) => base.to_owned(),
    }
}

/// Removes an LLVM-added `.llvm.<digits>` suffix (thin-LTO promotion).
fn strip_llvm_suffix(name: &str) -> &str {
    match name.find(".llvm.") {
        Some(i) if name[i + 6..].chars().all(|c| c.is_ascii_alphanumeric()) => &name[..i],
        _ => name,
    }
}

/// Address-sorted, deduplicated function symbols.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    symbols: Vec<FnSymbol>,
}

impl SymbolTable {
    /// Sorts by address (then name) and drops exact duplicates (same address and mangled name), which
    /// happen when a symbol is in both `.symtab` and `.dynsym`.
    pub fn new(mut symbols: Vec<FnSymbol>) -> Self {
        symbols.sort_by(|a, b| {
            (a.addr, &a.mangled, std::cmp::Reverse(a.size)).cmp(&(
                b.addr,
                &b.mangled,
                std::cmp::Reverse(b.size),
            ))
        });
        let mut seen = HashSet::new();
        symbols.retain(|s| seen.insert((s.addr, s.mangled.clone())));
        SymbolTable { symbols }
    }

    pub fn all(&self) -> &[FnSymbol] {
        &self.symbols
    }

    /// All symbols starting exactly at `addr` (aliases created by identical-code folding).
    pub fn at_addr(&self, addr: u64) -> &[FnSymbol] {
        let lo = self.symbols.partition_point(|s| s.addr < addr);
        let hi = self.symbols.partition_point(|s| s.addr <= addr);
        &self.symbols[lo..hi]
    }

    /// The function containing `vaddr`: the symbol with the greatest start address `<= vaddr` whose
    /// range covers it (the largest one when several aliases start there).
    pub fn containing(&self, vaddr: u64) -> Option<&FnSymbol> {
        let end = self.symbols.partition_point(|s| s.addr <= vaddr);
        let candidates = &self.symbols[..end];
        let last_addr = candidates.last()?.addr;
        // Prefer the nearest start address; fall back to an earlier, larger symbol covering vaddr.
        let nearest = self.at_addr(last_addr);
        if let Some(s) = nearest
            .iter()
            .filter(|s| s.contains(vaddr))
            .max_by_key(|s| s.size)
        {
            return Some(s);
        }
        candidates.iter().rev().take(64).find(|s| s.contains(vaddr))
    }

    /// Symbols whose demangled name satisfies `pred`, in address order.
    pub fn named<'a>(
        &'a self,
        mut pred: impl FnMut(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a FnSymbol> + 'a {
        self.symbols.iter().filter(move |s| pred(&s.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_legacy_without_hash() {
        let m = "_ZN5tokio7runtime4task3raw4poll17h0123456789abcdefE";
        assert_eq!(demangle(m), "tokio::runtime::task::raw::poll");
    }

    #[test]
    fn demangles_legacy_with_llvm_suffix() {
        let m =
            "_ZN3app6worker5leaky28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE.llvm.1234567";
        assert_eq!(demangle(m), "app::worker::leaky::{{closure}}");
    }

    #[test]
    fn demangles_v0_without_disambiguators() {
        // <app::Foo>::bar in v0 mangling (crate disambiguator stripped by the alternate form).
        let m = "_RNvMCs4fqI2P2rA04_3appNtB2_3Foo3bar";
        assert_eq!(demangle(m), "<app::Foo>::bar");
    }

    #[test]
    fn keeps_c_names() {
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(demangle("helper.llvm.42"), "helper");
        assert_eq!(demangle("main"), "main");
    }

    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            FnSymbol::new("b", 0x2000, 0x10),
            FnSymbol::new("a", 0x1000, 0x100),
            FnSymbol::new("a_alias", 0x1000, 0x100),
            FnSymbol::new("a", 0x1000, 0x100),
            FnSymbol::new("marker", 0x3000, 0),
        ])
    }

    #[test]
    fn sorted_and_deduplicated() {
        let t = table();
        let names: Vec<_> = t.all().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "a_alias", "b", "marker"]);
        assert_eq!(t.at_addr(0x1000).len(), 2);
    }

    #[test]
    fn containing_lookup() {
        let t = table();
        assert_eq!(t.containing(0x1000).unwrap().addr, 0x1000);
        assert_eq!(t.containing(0x10ff).unwrap().addr, 0x1000);
        assert!(t.containing(0x1100).is_none());
        assert_eq!(t.containing(0x200f).unwrap().name, "b");
        assert!(t.containing(0x2010).is_none());
        assert_eq!(t.containing(0x3000).unwrap().name, "marker");
        assert!(t.containing(0x3001).is_none());
        assert!(t.containing(0x10).is_none());
    }

    #[test]
    fn named_filter() {
        let t = table();
        assert_eq!(t.named(|n| n.starts_with('a')).count(), 2);
    }
}
