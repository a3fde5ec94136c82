//! Whether a core was dumped from an executable: the build id notes (GNU's, Go's) of the file
//! against those of the core's own copy of its first pages.
use anyhow::{bail, Result};
use object::{
    elf::{self, FileHeader64, ProgramHeader64},
    read::elf::{FileHeader as _, NoteIterator, ProgramHeader as _, SectionHeader as _},
    LittleEndian as LE,
};

use super::{notes, Aligned, CoreFile, EHDR_SIZE, MAX_EXE_PHNUM, PHDR_SIZE};

/// The executable's notes read from the core's copy of it (a build id note is tens of bytes).
const MAX_EXE_NOTE_BYTES: u64 = 64 << 10;

impl CoreFile {
    /// Build-id check: the build id notes (NT_GNU_BUILD_ID, and Go's "Go" note type 4) of
    /// `exe_bytes` against the same notes read from the core's dumped copy of the executable's
    /// first pages (its ELF header and program headers at `exe_load_addr`, the address of its
    /// file offset 0; its PT_NOTE segment). Ok(true): equal; Ok(false): cannot tell (the core
    /// did not dump those pages, or the file has no build id); Err: they differ.
    pub fn check_build_id(&self, exe_bytes: &[u8], exe_name: &str, exe_load_addr: u64) -> Result<bool> {
        let file = file_build_ids(exe_bytes);
        if file.gnu.is_none() && file.go.is_none() {
            return Ok(false);
        }
        let core = self.dumped_build_ids(exe_load_addr);
        let mut same = false;
        for (f, c, go) in [(&file.gnu, &core.gnu, false), (&file.go, &core.go, true)] {
            let (Some(f), Some(c)) = (f, c) else { continue };
            if f != c {
                let show = |id: &[u8]| match std::str::from_utf8(id) {
                    Ok(s) if go && s.chars().all(|c| c.is_ascii_graphic()) => s.to_string(),
                    _ => id.iter().map(|b| format!("{b:02x}")).collect(),
                };
                bail!(
                    "core {} was dumped from a program with build id {}, but {exe_name} has build id {}: pass the executable that produced the core with --exe",
                    self.name,
                    show(c),
                    show(f)
                );
            }
            same = true;
        }
        Ok(same)
    }

    fn read_dumped_aligned(&self, addr: u64, len: usize) -> Option<Aligned> {
        Aligned::fill(len, |b| self.read_dumped(addr, b)).ok()
    }

    /// The build ids in the core's copy of the executable mapped at `load` (file offset 0).
    fn dumped_build_ids(&self, load: u64) -> BuildIds {
        let mut ids = BuildIds::default();
        let Some(ehdr) = self.read_dumped_aligned(load, EHDR_SIZE) else { return ids };
        let Ok(hdr) = FileHeader64::<LE>::parse(ehdr.bytes()) else { return ids };
        let phnum = usize::from(hdr.e_phnum(LE));
        if hdr.e_ident().data != elf::ELFDATA2LSB || usize::from(hdr.e_phentsize(LE)) != PHDR_SIZE || phnum > MAX_EXE_PHNUM {
            return ids;
        }
        let Some(table_addr) = load.checked_add(hdr.e_phoff(LE)) else { return ids };
        let Some(table) = self.read_dumped_aligned(table_addr, phnum * PHDR_SIZE) else { return ids };
        let Ok((phdrs, _)) = object::pod::slice_from_bytes::<ProgramHeader64<LE>>(table.bytes(), phnum) else { return ids };
        // the segment mapping file offset 0 is at `load`
        let Some(first) = phdrs.iter().filter(|p| p.p_type(LE) == elf::PT_LOAD).min_by_key(|p| p.p_offset(LE)) else {
            return ids;
        };
        let bias = load.wrapping_sub(first.p_vaddr(LE).wrapping_sub(first.p_offset(LE)));
        for ph in phdrs.iter().filter(|p| p.p_type(LE) == elf::PT_NOTE) {
            let size = ph.p_filesz(LE);
            if size == 0 || size > MAX_EXE_NOTE_BYTES {
                continue;
            }
            let Some(buf) = self.read_dumped_aligned(ph.p_vaddr(LE).wrapping_add(bias), size as usize) else { continue };
            if let Some(it) = notes(buf.bytes(), ph.p_align(LE)) {
                ids.collect(it);
            }
        }
        ids
    }
}

/// The build id notes of one executable: GNU's and Go's.
#[derive(Debug, Default)]
struct BuildIds {
    gnu: Option<Vec<u8>>,
    go: Option<Vec<u8>>,
}

impl BuildIds {
    fn collect(&mut self, mut it: NoteIterator<'_, FileHeader64<LE>>) {
        while let Ok(Some(note)) = it.next() {
            let (name, t, desc) = (note.name(), note.n_type(LE), note.desc());
            if desc.is_empty() {
                continue;
            }
            if name == elf::ELF_NOTE_GNU && t == elf::NT_GNU_BUILD_ID {
                self.gnu.get_or_insert_with(|| desc.to_vec());
            } else if name == elf::ELF_NOTE_GO && t == elf::NT_GO_BUILD_ID {
                self.go.get_or_insert_with(|| desc.to_vec());
            }
        }
    }
}

/// The build ids of an executable's bytes, from its note segments and note sections.
fn file_build_ids(data: &[u8]) -> BuildIds {
    let mut ids = BuildIds::default();
    // object reads its structures in place: they must be aligned
    let copy;
    let data = if data.as_ptr().align_offset(8) == 0 {
        data
    } else {
        let Ok(c) = Aligned::fill(data.len(), |b| {
            b.copy_from_slice(data);
            Ok(())
        }) else {
            return ids;
        };
        copy = c;
        copy.bytes()
    };
    let Ok(hdr) = FileHeader64::<LE>::parse(data) else { return ids };
    if hdr.e_ident().data != elf::ELFDATA2LSB {
        return ids;
    }
    if let Ok(phdrs) = hdr.program_headers(LE, data) {
        for ph in phdrs {
            if let Ok(Some(it)) = ph.notes(LE, data) {
                ids.collect(it);
            }
        }
    }
    if let Ok(sections) = hdr.sections(LE, data) {
        for s in sections.iter() {
            if let Ok(Some(it)) = s.notes(LE, data) {
                ids.collect(it);
            }
        }
    }
    ids
}
