//! A parsed ELF executable: function symbols, load segments and the file bytes.
//!
//! [`ElfImage`] is cheap to clone (one `Arc`) and is meant to be parsed once and shared for the
//! whole run. All addresses are ELF virtual addresses unless a name says otherwise.

pub mod anon_names;
pub mod debug_file;
pub mod extents;
pub mod lines;
pub mod names;
pub mod symbols;

use std::path::Path;
use std::sync::Arc;

use object::{
    Object, ObjectKind, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable,
    RelocationFlags, RelocationTarget, SymbolKind,
};

pub use symbols::{demangle, FnSymbol, SymbolTable};

/// Why a file could not be read as an ELF image.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}; check the path and permissions")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "not a readable object file ({0}); pass the target's executable, not a script or wrapper"
    )]
    Parse(#[from] object::Error),
    #[error("{0:?} is not an ELF file; only Linux ELF executables are supported")]
    NotElf(object::BinaryFormat),
}

/// One `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
}

impl LoadSegment {
    /// File offset of `vaddr` if it is backed by file contents in this segment.
    pub fn file_offset_of(&self, vaddr: u64) -> Option<u64> {
        let delta = vaddr.checked_sub(self.vaddr)?;
        if delta < self.file_size { self.file_offset.checked_add(delta) } else { None }
    }
}

#[derive(Debug)]
struct Inner {
    /// The file's bytes, shared with images made from this one (`with_debug_file`).
    data: Arc<Vec<u8>>,
    symbols: SymbolTable,
    segments: Vec<LoadSegment>,
    /// Pointer slots filled in by the dynamic loader: (slot vaddr, value), sorted.
    relocated: Vec<(u64, u64)>,
    pie: bool,
    has_symtab: bool,
    has_debug_info: bool,
    architecture: object::Architecture,
    is_64: bool,
    /// A separate debug file that brought the DWARF (see [`ElfImage::with_debug_file`]).
    debug_data: Option<Vec<u8>>,
}

/// A parsed ELF image (see the module docs). Clone is an `Arc` clone.
#[derive(Debug, Clone)]
pub struct ElfImage {
    inner: Arc<Inner>,
}

impl ElfImage {
    /// Parses `data` (copied; use [`ElfImage::from_vec`] to hand over a buffer instead).
    pub fn parse(data: &[u8]) -> Result<ElfImage, ElfError> {
        Self::from_vec(data.to_vec())
    }

    /// Reads and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<ElfImage, ElfError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| ElfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_vec(data)
    }

    /// ELF address of the first data object whose mangled name contains every one of `needles`
    /// (None in a binary without symbols).
    pub fn data_symbol(&self, needles: &[&str]) -> Option<u64> {
        self.find_symbol(|s| {
            s.kind() == SymbolKind::Data && s.is_definition() && s.name().is_ok_and(|n| needles.iter().all(|k| n.contains(k)))
        })
    }

    /// ELF address of the symbol named exactly `name`, of any kind (data symbols too, which the
    /// function list leaves out).
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.find_symbol(|s| s.name() == Ok(name))
    }

    /// The one walk over the ELF symbol table for symbols not in the function list.
    fn find_symbol(&self, pred: impl Fn(&object::Symbol<'_, '_>) -> bool) -> Option<u64> {
        let file = object::File::parse(self.data()).ok()?;
        let found = file.symbols().find(|s| pred(s));
        found.map(|s| s.address())
    }

    /// Parses an owned buffer without copying it.
    pub fn from_vec(data: Vec<u8>) -> Result<ElfImage, ElfError> {
        let file = object::File::parse(data.as_slice())?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(ElfError::NotElf(file.format()));
        }
        let has_symtab = file.symbol_table().is_some();
        let syms = function_symbols(&file);
        let segments = file
            .segments()
            .map(|seg| {
                let (file_offset, file_size) = seg.file_range();
                LoadSegment {
                    vaddr: seg.address(),
                    mem_size: seg.size(),
                    file_offset,
                    file_size,
                }
            })
            .collect();
        let has_debug_info = has_dwarf(&file);
        let pie = file.kind() == ObjectKind::Dynamic;
        let (architecture, is_64) = (file.architecture(), file.is_64());
        let relocated = relocated_pointers(&file);
        drop(file);
        Ok(ElfImage {
            inner: Arc::new(Inner {
                data: Arc::new(data),
                symbols: SymbolTable::new(syms),
                segments,
                relocated,
                pie,
                has_symtab,
                has_debug_info,
                architecture,
                is_64,
                debug_data: None,
            }),
        })
    }

    /// This executable with the symbols and DWARF of a separate debug file (`objcopy
    /// --only-keep-debug`, a distribution's `-dbg` package). The two must have the same build id
    /// when both have one; code, data and unwind tables stay the executable's.
    pub fn with_debug_file(&self, debug: Vec<u8>, debug_path: &Path) -> Result<ElfImage, String> {
        let name = debug_path.display();
        let file = object::File::parse(debug.as_slice()).map_err(|e| format!("{name} is not an ELF file: {e}"))?;
        let exe_id = debug_file::build_id(self.data());
        let dbg_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        if let (Some(a), Some(b)) = (&exe_id, &dbg_id) {
            if a != b {
                return Err(format!(
                    "{name} does not belong to this executable: build id {} there, {} in the executable; \
                     pass the debug file of this very build",
                    debug_file::hex(b),
                    debug_file::hex(a)
                ));
            }
        }
        let has_symtab = self.inner.has_symtab || file.symbol_table().is_some();
        let symbols = if self.inner.has_symtab { self.inner.symbols.clone() } else { SymbolTable::new(function_symbols(&file)) };
        let dwarf = has_dwarf(&file);
        drop(file);
        let inner = &self.inner;
        Ok(ElfImage {
            inner: Arc::new(Inner {
                data: Arc::clone(&inner.data),
                symbols,
                segments: inner.segments.clone(),
                relocated: inner.relocated.clone(),
                pie: inner.pie,
                has_symtab,
                has_debug_info: inner.has_debug_info || dwarf,
                architecture: inner.architecture,
                is_64: inner.is_64,
                debug_data: (dwarf && !inner.has_debug_info).then_some(debug),
            }),
        })
    }

    /// The bytes to read DWARF from: the separate debug file's when it brought the DWARF, else the
    /// executable's.
    pub fn dwarf_data(&self) -> &[u8] {
        self.inner.debug_data.as_deref().unwrap_or(self.inner.data.as_slice())
    }

    /// The whole file contents.
    pub fn data(&self) -> &[u8] {
        &self.inner.data
    }

    /// All function symbols, sorted by address, deduplicated.
    pub fn symbols(&self) -> &[FnSymbol] {
        self.inner.symbols.all()
    }

    /// The symbol table with its lookup helpers.
    pub fn symbol_table(&self) -> &SymbolTable {
        &self.inner.symbols
    }

    /// The function containing `vaddr`.
    pub fn symbol_at(&self, vaddr: u64) -> Option<&FnSymbol> {
        self.inner.symbols.containing(vaddr)
    }

    /// All symbols that start exactly at `vaddr` (identical-code-folding aliases).
    pub fn symbols_at_addr(&self, vaddr: u64) -> &[FnSymbol] {
        self.inner.symbols.at_addr(vaddr)
    }

    /// Symbols whose demangled name satisfies `pred`, in address order.
    pub fn symbols_named<'a>(
        &'a self,
        pred: impl FnMut(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a FnSymbol> + 'a {
        self.inner.symbols.named(pred)
    }

    /// The `PT_LOAD` segments.
    pub fn load_segments(&self) -> &[LoadSegment] {
        &self.inner.segments
    }

    /// File offset of a virtual address (what uprobes want), via the `PT_LOAD` headers.
    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.inner
            .segments
            .iter()
            .find_map(|s| s.file_offset_of(vaddr))
    }

    /// `len` bytes of file contents at virtual address `vaddr` (None if not entirely file-backed
    /// within one segment).
    pub fn read_at_vaddr(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let seg = self
            .inner
            .segments
            .iter()
            .find(|s| s.file_offset_of(vaddr).is_some())?;
        let off = seg.file_offset_of(vaddr)?;
        let avail = seg.file_offset.saturating_add(seg.file_size).checked_sub(off)?;
        if len as u64 > avail {
            return None;
        }
        let start = usize::try_from(off).ok()?;
        self.inner.data.get(start..start.checked_add(len)?)
    }

    /// The pointer stored at `vaddr` as the loader leaves it (before adding the load bias): the
    /// target of a `R_X86_64_RELATIVE`/`R_X86_64_64`/`GLOB_DAT` relocation at that slot, else
    /// the 8 bytes of file contents there. Use it for GOT entries, vtables and `&'static` data
    /// in `.data.rel.ro`, whose file bytes are 0 in a PIE linked by lld.
    pub fn read_pointer(&self, vaddr: u64) -> Option<u64> {
        let relocs = &self.inner.relocated;
        if let Ok(i) = relocs.binary_search_by_key(&vaddr, |&(slot, _)| slot) {
            return Some(relocs[i].1);
        }
        self.read_u64(vaddr)
    }

    /// A little-endian u64 of file contents at `vaddr` (no relocation applied).
    pub fn read_u64(&self, vaddr: u64) -> Option<u64> {
        let b = self.read_at_vaddr(vaddr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// A little-endian u32 of file contents at `vaddr`.
    pub fn read_u32(&self, vaddr: u64) -> Option<u32> {
        let b = self.read_at_vaddr(vaddr, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    /// True for `ET_DYN` (position-independent executables and shared objects): the runtime
    /// address differs from the ELF virtual address by the load bias.
    /// The machine the executable is for, and whether it is a 64-bit ELF.
    pub fn machine(&self) -> (object::Architecture, bool) {
        (self.inner.architecture, self.inner.is_64)
    }

    pub fn is_pie(&self) -> bool {
        self.inner.pie
    }

    /// False for a stripped binary (no `.symtab`).
    pub fn has_symtab(&self) -> bool {
        self.inner.has_symtab
    }

    /// True when `.debug_info` or `.debug_line` is present.
    pub fn has_debug_info(&self) -> bool {
        self.inner.has_debug_info
    }
}

/// Slots of dynamic relocations whose value is known without loading anything else:
/// `RELATIVE` (value = addend) and absolute/GOT relocations against symbols defined here.
fn relocated_pointers(file: &object::File<'_>) -> Vec<(u64, u64)> {
    use object::elf::{R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_RELATIVE};
    let Some(relocs) = file.dynamic_relocations() else {
        return Vec::new();
    };
    let dynsym = file.dynamic_symbol_table();
    let mut out: Vec<(u64, u64)> = relocs
        .filter_map(|(slot, rel)| {
            let RelocationFlags::Elf { r_type } = rel.flags() else {
                return None;
            };
            let value = match (r_type, rel.target()) {
                (R_X86_64_RELATIVE, _) => rel.addend() as u64,
                (R_X86_64_64 | R_X86_64_GLOB_DAT, RelocationTarget::Symbol(idx)) => {
                    let sym = dynsym.as_ref()?.symbol_by_index(idx).ok()?;
                    if !sym.is_definition() {
                        return None;
                    }
                    sym.address().wrapping_add(rel.addend() as u64)
                }
                _ => return None,
            };
            Some((slot, value))
        })
        .collect();
    out.sort_unstable();
    out.dedup_by_key(|&mut (slot, _)| slot);
    out
}

/// Function symbols of an object (static and dynamic), with addresses.
fn function_symbols(file: &object::File<'_>) -> Vec<FnSymbol> {
    let mut syms = Vec::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.address() == 0 {
            continue;
        }
        if let Ok(name) = sym.name() {
            if !name.is_empty() {
                syms.push(FnSymbol::new(name, sym.address(), sym.size()));
            }
        }
    }
    syms
}

/// Whether an object has DWARF debug info (line tables or types).
fn has_dwarf(file: &object::File<'_>) -> bool {
    [".debug_info", ".debug_line", ".zdebug_info", ".zdebug_line"]
        .iter()
        .any(|name| file.section_by_name(name).is_some_and(|s| s.size() > 0 && s.kind() != object::SectionKind::UninitializedData))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 executable with one PT_LOAD of the given offset, address and size.
    pub(crate) fn elf_with_segment(p_offset: u64, p_vaddr: u64, p_filesz: u64) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 + 64];
        d[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        d[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        d[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        d[20..24].copy_from_slice(&1u32.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        d[52..54].copy_from_slice(&64u16.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&1u16.to_le_bytes());
        d[58..60].copy_from_slice(&64u16.to_le_bytes());
        let ph = &mut d[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..16].copy_from_slice(&p_offset.to_le_bytes());
        ph[16..24].copy_from_slice(&p_vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&p_filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&p_filesz.to_le_bytes());
        d
    }

    /// A segment whose file offset plus size passes u64::MAX (a hostile program header) made
    /// `file_offset_of` and `read_at_vaddr` overflow: a panic with overflow checks, a wrong
    /// slice without. Nothing is read from it now.
    #[test]
    fn a_segment_past_the_end_of_the_offsets_reads_nothing() {
        let img = ElfImage::parse(&elf_with_segment(u64::MAX - 8, 0x40_0000, 0x100)).unwrap();
        assert_eq!(img.load_segments()[0].file_offset_of(0x40_0010), None);
        assert_eq!(img.vaddr_to_file_offset(0x40_0010), None);
        assert!(img.read_at_vaddr(0x40_0000, 4).is_none());
        assert!(img.read_u64(0x40_0000).is_none());
        // and a sane one still reads
        let ok = ElfImage::parse(&elf_with_segment(0, 0x40_0000, 0x80)).unwrap();
        assert_eq!(ok.read_at_vaddr(0x40_0000, 4), Some(&[0x7f, b'E', b'L', b'F'][..]));
    }

    #[test]
    fn segment_offsets() {
        let seg = LoadSegment {
            vaddr: 0x1000,
            mem_size: 0x3000,
            file_offset: 0x0,
            file_size: 0x2000,
        };
        assert_eq!(seg.file_offset_of(0x1000), Some(0));
        assert_eq!(seg.file_offset_of(0x2fff), Some(0x1fff));
        assert_eq!(seg.file_offset_of(0x3000), None, "bss is not file-backed");
        assert_eq!(seg.file_offset_of(0xfff), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(ElfImage::parse(b"not an elf file at all").is_err());
    }

    /// The test binary itself is an ELF file with symbols: exercise the real parser on it.
    #[test]
    fn parses_own_test_binary() {
        let exe = std::path::PathBuf::from("/proc/self/exe");
        let img = ElfImage::open(&exe).unwrap();
        assert!(img.has_symtab());
        assert!(!img.symbols().is_empty());
        assert!(img.symbols().windows(2).all(|w| w[0].addr <= w[1].addr));
        let me = img
            .symbols_named(|n| n.ends_with("elf::tests::parses_own_test_binary"))
            .next()
            .expect("own test function symbol");
        assert_eq!(img.symbol_at(me.addr).map(|s| s.addr), Some(me.addr));
        let off = img.vaddr_to_file_offset(me.addr).unwrap();
        let bytes = img.read_at_vaddr(me.addr, 16).unwrap();
        assert_eq!(bytes, &img.data()[off as usize..off as usize + 16]);
        assert!(img.read_at_vaddr(u64::MAX - 4, 16).is_none());
    }
}

