//! Reading an ELF core file (gcore, a kernel core dump) as the address space of the process it was taken from.
//!
//! A core is an ELF file of type `ET_CORE`: one `PT_NOTE` segment (the process's and its threads'
//! state: `NT_PRPSINFO`, one `NT_PRSTATUS` per thread, `NT_AUXV`, `NT_FILE`, the list of
//! file-backed mappings) and one `PT_LOAD` per mapping of the process, whose file contents
//! (`p_filesz` bytes) are the memory as it was. What was not dumped (the kernel writes
//! `p_filesz = 0`, gdb's gcore leaves the segment out) is mostly read-only text and data of
//! mapped files: it is read from the executable itself when one is registered
//! ([`CoreFile::add_backing_file`]).
//!
//! The core is read with `pread`, never loaded whole (cores are gigabytes); only the headers and
//! the notes are kept. Every size and count in it is checked against the file: a hostile core
//! gives an error, never a panic, an unbounded allocation or a long loop.
use std::{fs::File, io, os::unix::fs::FileExt as _, path::Path};

use anyhow::{anyhow, bail, Context as _, Result};
use object::{
    elf::{self, FileHeader64, ProgramHeader64, SectionHeader64},
    read::elf::{FileHeader as _, NoteIterator, ProgramHeader as _, SectionHeader as _},
    LittleEndian as LE,
};

use self::notes::{parse_nt_file, parse_prstatus, PRPSINFO_FNAME, PRPSINFO_PID};
use super::Mapping;

/// Sizes of the 64-bit ELF header, program header and section header.
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
/// At most this many program headers: one per mapping, and a process has at most
/// `vm.max_map_count` of those (65530 by default).
const MAX_PHNUM: u64 = 1 << 21;
/// At most this many bytes of notes (a few KiB per thread, the list of mapped files).
const MAX_NOTE_BYTES: u64 = 256 << 20;
/// Program headers read from the core's copy of the executable's first page.
const MAX_EXE_PHNUM: usize = 256;

/// Auxiliary vector entries.
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_ENTRY: u64 = 9;
const AT_SYSINFO_EHDR: u64 = 33;

/// A file-backed mapping of the process (an `NT_FILE` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreFileMapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file, in bytes (the note's page offset times its page size).
    pub file_offset: u64,
    /// The path as the process saw it (the kernel appends " (deleted)" to a deleted file's).
    pub path: String,
}

/// A thread's registers at the time of the dump (an `NT_PRSTATUS` note).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreThread {
    pub tid: u32,
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    /// The system call the thread was in (-1 when none).
    pub orig_rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
}

/// Where the core's bytes come from: the file (read with pread) or memory.
enum Source {
    File(File),
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(file) => write!(f, "File({file:?})"),
            Source::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl Source {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File(file) => file.read_exact_at(buf, offset),
            Source::Bytes(bytes) => {
                let part = usize::try_from(offset)
                    .ok()
                    .and_then(|s| bytes.get(s..s.checked_add(buf.len())?))
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(part);
                Ok(())
            }
        }
    }
}

/// Bytes in 8-byte-aligned storage, as `object`'s ELF structures want them.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn fill(len: usize, f: impl FnOnce(&mut [u8]) -> io::Result<()>) -> io::Result<Aligned> {
        let mut words = vec![0u64; len.div_ceil(8)];
        f(&mut object::pod::bytes_of_slice_mut(&mut words)[..len])?;
        Ok(Aligned { words, len })
    }

    fn bytes(&self) -> &[u8] {
        &object::pod::bytes_of_slice(&self.words)[..self.len]
    }
}

/// A `PT_LOAD` segment: `[vaddr, end)` in memory, of which `[vaddr, dumped_end)` is in the file
/// from `offset`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    end: u64,
    dumped_end: u64,
    offset: u64,
    flags: u32,
}

/// `[start, end)` of memory read from backing file `file` at `file_offset`.
#[derive(Debug, Clone, Copy)]
struct BackingRange {
    start: u64,
    end: u64,
    file_offset: u64,
    file: usize,
}

/// A core file: its notes, its segments, and the files registered for what it did not dump.
#[derive(Debug)]
pub struct CoreFile {
    name: String,
    src: Source,
    /// Sorted by `vaddr`; none empty.
    segments: Vec<Segment>,
    pid: Option<u32>,
    command: Option<String>,
    /// Sorted by `start`.
    files: Vec<CoreFileMapping>,
    auxv_entry: Option<u64>,
    auxv_phdr: Option<u64>,
    auxv_vdso: Option<u64>,
    threads: Vec<CoreThread>,
    backing_files: Vec<File>,
    /// Sorted by `start`.
    backing: Vec<BackingRange>,
}

/// The error of an unreadable address: the one a live read of it gives.
fn unmapped() -> io::Error {
    io::Error::from_raw_os_error(libc::EFAULT)
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// The notes of a segment whose `p_align` is `align` (values other than 8 are read as 4, as
/// binutils does: gdb writes 1).
fn notes(bytes: &[u8], align: u64) -> Option<NoteIterator<'_, FileHeader64<LE>>> {
    NoteIterator::new(LE, if align == 8 { 8 } else { 4 }, bytes).ok()
}

/// Index of the last element of `v` whose key is at or below `addr`.
fn last_at_or_below<T>(v: &[T], addr: u64, key: impl Fn(&T) -> u64) -> Option<usize> {
    v.partition_point(|x| key(x) <= addr).checked_sub(1)
}

fn file_type_name(t: u16) -> &'static str {
    match t {
        1 => "a relocatable object file",
        2 => "an executable",
        3 => "a shared object (a library or a position-independent executable)",
        _ => "of another kind",
    }
}

impl CoreFile {
    /// Opens a core file (read with pread, never loaded whole: cores are GBs). Errors are one
    /// clear sentence each naming the file: not an ELF file, not a core, not x86-64, truncated.
    pub fn open(path: &Path) -> Result<CoreFile> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("cannot open core file {name}"))?;
        let len = file.metadata().with_context(|| format!("cannot read the size of core file {name}"))?.len();
        Self::parse(Source::File(file), len, name)
    }

    /// The same from bytes in memory (tests and fuzzing).
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<CoreFile> {
        let len = bytes.len() as u64;
        Self::parse(Source::Bytes(bytes), len, name.to_string())
    }

    fn parse(src: Source, len: u64, name: String) -> Result<CoreFile> {
        let mut magic = [0u8; 4];
        if src.read_exact_at(&mut magic, 0).is_err() || magic != elf::ELFMAG {
            bail!("{name} is not an ELF file (a core file starts with \\x7fELF): pass a core dump, from gcore or the kernel");
        }
        let read = |offset: u64, size: usize, what: &str| {
            Aligned::fill(size, |b| src.read_exact_at(b, offset))
                .with_context(|| format!("cannot read {what} of core file {name} ({size} bytes at offset {offset:#x})"))
        };
        let truncated = |need: u64| {
            anyhow!("{name} is truncated: the core is {len} bytes, its segments need {need} (was it cut off while being written?)")
        };
        if len < EHDR_SIZE as u64 {
            return Err(truncated(EHDR_SIZE as u64));
        }
        let ehdr = read(0, EHDR_SIZE, "the ELF header")?;
        let ident = ehdr.bytes();
        // e_ident: class at byte 4, data encoding at byte 5
        if ident[4] != elf::ELFCLASS64.0 || ident[5] != elf::ELFDATA2LSB.0 {
            bail!("{name} is not an x86-64 core: it is a 32-bit or big-endian ELF file");
        }
        let hdr = FileHeader64::<LE>::parse(ident)
            .map_err(|e| anyhow!("{name} is not an ELF file leakprof can read: {e}"))?;
        let e_type = hdr.e_type(LE);
        if e_type != elf::ET_CORE {
            bail!(
                "{name} is not a core file: it is {}, not a process dump (pass a core from gcore or the kernel)",
                file_type_name(e_type.0)
            );
        }
        let machine = hdr.e_machine(LE);
        if machine != elf::EM_X86_64 {
            bail!("{name} is not an x86-64 core: it was dumped on another architecture (ELF machine {})", machine.0);
        }
        let phoff = hdr.e_phoff(LE);
        let mut phnum = u64::from(hdr.e_phnum(LE));
        if phnum == u64::from(elf::PN_XNUM) {
            // more than 65534 segments: the count is in section header 0's sh_info
            let shoff = hdr.e_shoff(LE);
            if shoff == 0 || usize::from(hdr.e_shentsize(LE)) != SHDR_SIZE {
                bail!("{name} is corrupt: it claims more than 65534 segments but has no section header holding their count");
            }
            if shoff.checked_add(SHDR_SIZE as u64).is_none_or(|end| end > len) {
                return Err(truncated(shoff.saturating_add(SHDR_SIZE as u64)));
            }
            let sh0 = read(shoff, SHDR_SIZE, "section header 0")?;
            let sh0: &SectionHeader64<LE> = object::pod::from_bytes(sh0.bytes()).map_err(|()| anyhow!("{name}: bad section header"))?.0;
            phnum = u64::from(sh0.sh_info(LE));
        }
        if phoff == 0 || phnum == 0 {
            bail!("{name} is a core with no segments (no program headers): there is no memory to read");
        }
        if usize::from(hdr.e_phentsize(LE)) != PHDR_SIZE {
            bail!("{name} is corrupt: its program headers are {} bytes each, not {PHDR_SIZE}", hdr.e_phentsize(LE));
        }
        if phnum > MAX_PHNUM {
            bail!("{name} is corrupt: it claims {phnum} segments, more than a process has mappings");
        }
        let table_len = phnum * PHDR_SIZE as u64;
        let table_end = phoff
            .checked_add(table_len)
            .ok_or_else(|| anyhow!("{name} is corrupt: its program header offset {phoff:#x} overflows"))?;
        if table_end > len {
            return Err(truncated(table_end));
        }
        let table = read(phoff, table_len as usize, "the program headers")?;
        let phdrs: &[ProgramHeader64<LE>] = object::pod::slice_from_bytes(table.bytes(), phnum as usize)
            .map_err(|()| anyhow!("{name}: bad program header table"))?
            .0;

        let mut need = 0u64;
        let mut note_bytes = 0u64;
        for ph in phdrs {
            let t = ph.p_type(LE);
            if t != elf::PT_LOAD && t != elf::PT_NOTE {
                continue;
            }
            let (offset, filesz) = (ph.p_offset(LE), ph.p_filesz(LE));
            let end = offset.checked_add(filesz).ok_or_else(|| {
                anyhow!("{name} is corrupt: a segment's file range overflows (offset {offset:#x}, size {filesz:#x})")
            })?;
            need = need.max(end);
            if t == elf::PT_NOTE {
                note_bytes = note_bytes.saturating_add(filesz);
            }
        }
        if need > len {
            return Err(truncated(need));
        }
        if note_bytes > MAX_NOTE_BYTES {
            bail!("{name} is corrupt: its notes are {note_bytes} bytes, more than any process's state");
        }

        let mut segments: Vec<Segment> = phdrs
            .iter()
            .filter(|ph| ph.p_type(LE) == elf::PT_LOAD && ph.p_memsz(LE) > 0)
            .map(|ph| {
                let vaddr = ph.p_vaddr(LE);
                let memsz = ph.p_memsz(LE);
                Segment {
                    vaddr,
                    end: vaddr.saturating_add(memsz),
                    dumped_end: vaddr.saturating_add(ph.p_filesz(LE).min(memsz)),
                    offset: ph.p_offset(LE),
                    flags: ph.p_flags(LE).0,
                }
            })
            .filter(|s| s.end > s.vaddr)
            .collect();
        segments.sort_by_key(|s| s.vaddr);

        let mut core = CoreFile {
            name: name.clone(),
            src: Source::Bytes(Vec::new()),
            segments,
            pid: None,
            command: None,
            files: Vec::new(),
            auxv_entry: None,
            auxv_phdr: None,
            auxv_vdso: None,
            threads: Vec::new(),
            backing_files: Vec::new(),
            backing: Vec::new(),
        };
        let (mut prpsinfo_pid, mut seen_file, mut seen_auxv) = (None, false, false);
        for ph in phdrs.iter().filter(|ph| ph.p_type(LE) == elf::PT_NOTE && ph.p_filesz(LE) > 0) {
            let buf = read(ph.p_offset(LE), ph.p_filesz(LE) as usize, "the notes")?;
            let Some(mut it) = notes(buf.bytes(), ph.p_align(LE)) else { continue };
            while let Ok(Some(note)) = it.next() {
                if note.name() != elf::ELF_NOTE_CORE {
                    continue;
                }
                let desc = note.desc();
                let t = note.n_type(LE);
                if t == elf::NT_PRSTATUS {
                    if let Some(thread) = parse_prstatus(desc) {
                        core.threads.push(thread);
                    }
                } else if t == elf::NT_PRPSINFO && prpsinfo_pid.is_none() {
                    if let Some(pid) = u32_at(desc, PRPSINFO_PID) {
                        prpsinfo_pid = Some(pid);
                        let fname = desc.get(PRPSINFO_FNAME..PRPSINFO_FNAME + 16).unwrap_or_default();
                        let fname = fname.split(|&b| b == 0).next().unwrap_or_default();
                        core.command = (!fname.is_empty()).then(|| String::from_utf8_lossy(fname).into_owned());
                    }
                } else if t == elf::NT_FILE && !seen_file {
                    seen_file = true;
                    core.files = parse_nt_file(desc);
                } else if t == elf::NT_AUXV && !seen_auxv {
                    seen_auxv = true;
                    for pair in desc.chunks_exact(16) {
                        let (k, v) = (u64_at(pair, 0).unwrap_or(AT_NULL), u64_at(pair, 8).unwrap_or(0));
                        match k {
                            AT_NULL => break,
                            AT_PHDR => core.auxv_phdr = Some(v),
                            AT_ENTRY => core.auxv_entry = Some(v),
                            AT_SYSINFO_EHDR => core.auxv_vdso = Some(v),
                            _ => {}
                        }
                    }
                }
            }
        }
        core.pid = prpsinfo_pid.or_else(|| core.threads.first().map(|t| t.tid));
        core.files.sort_by_key(|m| m.start);
        core.src = src;
        Ok(core)
    }

    /// The core's name as given to [`open`](Self::open) or [`from_bytes`](Self::from_bytes).
    pub fn path(&self) -> &str {
        &self.name
    }

    /// pid of the dumped process (NT_PRPSINFO pr_pid, else the first NT_PRSTATUS pr_pid).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Its command name (NT_PRPSINFO pr_fname: at most 15 bytes).
    pub fn command(&self) -> Option<String> {
        self.command.clone()
    }

    /// NT_FILE entries (file-backed mappings: start, end, file offset in bytes, path), by address.
    pub fn file_mappings(&self) -> &[CoreFileMapping] {
        &self.files
    }

    /// NT_AUXV's AT_ENTRY, when present.
    pub fn auxv_entry(&self) -> Option<u64> {
        self.auxv_entry
    }

    /// NT_AUXV's AT_PHDR, when present.
    pub fn auxv_phdr(&self) -> Option<u64> {
        self.auxv_phdr
    }

    /// The executable: the NT_FILE mapping that contains AT_ENTRY (else AT_PHDR), its path as
    /// recorded in the core.
    pub fn exe_path(&self) -> Option<String> {
        let at = self.auxv_entry.or(self.auxv_phdr)?;
        self.file_mapping_at(at).map(|m| m.path.clone())
    }

    /// Every thread (NT_PRSTATUS) in note order (the kernel puts the thread that took the
    /// signal first).
    pub fn threads(&self) -> &[CoreThread] {
        &self.threads
    }

    fn file_mapping_at(&self, addr: u64) -> Option<&CoreFileMapping> {
        let i = last_at_or_below(&self.files, addr, |m| m.start)?;
        self.files.get(i).filter(|m| addr < m.end)
    }

    /// The mappings as /proc/PID/maps would list them: one per PT_LOAD (perms from p_flags, "rw-p"
    /// style; the mapping is taken as private) with the path and offset of the NT_FILE entry that
    /// covers it; the vdso and the main thread's stack named as there. File mappings the core
    /// did not dump at all (gcore leaves out unchanged read-only ones: the executable's text) are
    /// listed too, as "r--p" ("r-xp" for the one holding the entry point): their bytes come from a
    /// backing file.
    pub fn maps(&self) -> Vec<Mapping> {
        // only the main thread's stack is "[stack]" in /proc (the others' are anonymous mappings)
        let stack = self.threads.iter().find(|t| Some(t.tid) == self.pid).map(|t| t.rsp);
        let mut out = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            let perms = perms_of(s.flags);
            let (offset, path) = match self.file_mapping_at(s.vaddr) {
                Some(f) => (f.file_offset.wrapping_add(s.vaddr - f.start), Some(f.path.clone())),
                None if Some(s.vaddr) == self.auxv_vdso => (0, Some("[vdso]".to_string())),
                None if stack.is_some_and(|sp| s.vaddr <= sp && sp < s.end) => (0, Some("[stack]".to_string())),
                None => (0, None),
            };
            out.push(Mapping { start: s.vaddr, end: s.end, offset, perms, path });
        }
        for f in &self.files {
            let i = self.segments.partition_point(|s| s.vaddr < f.end);
            let dumped = i.checked_sub(1).is_some_and(|j| self.segments[j].end > f.start);
            if dumped {
                continue;
            }
            let exec = self.auxv_entry.is_some_and(|e| f.start <= e && e < f.end);
            let perms = if exec { "r-xp" } else { "r--p" }.to_string();
            out.push(Mapping { start: f.start, end: f.end, offset: f.file_offset, perms, path: Some(f.path.clone()) });
        }
        out.sort_by_key(|m| m.start);
        out
    }

    /// Reads memory at a virtual address: from the PT_LOAD segments' file contents (their
    /// p_filesz part); bytes not dumped (past p_filesz, or in no segment) from a file registered
    /// with [`add_backing_file`](Self::add_backing_file) whose mapping covers the address;
    /// otherwise EFAULT, as a live read of an unmapped address. A read may span segments and
    /// sources.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_from(addr, buf, true)
    }

    /// Only from the dumped segments (no backing files): what the core itself says.
    pub fn read_dumped(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_from(addr, buf, false)
    }

    fn read_from(&self, addr: u64, buf: &mut [u8], backed: bool) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr.checked_add(done as u64).ok_or_else(unmapped)?;
            let want = (buf.len() - done) as u64;
            let next = self.segments.partition_point(|s| s.vaddr <= a);
            let seg = next.checked_sub(1).map(|i| &self.segments[i]).filter(|s| a < s.end);
            if let Some(s) = seg.filter(|s| a < s.dumped_end) {
                let n = want.min(s.dumped_end - a) as usize;
                // offset + filesz <= the file's length: checked at open
                self.src.read_exact_at(&mut buf[done..done + n], s.offset + (a - s.vaddr))?;
                done += n;
                continue;
            }
            if !backed {
                return Err(unmapped());
            }
            // not dumped: up to the end of this segment, or to the next segment's start
            let limit = match seg {
                Some(s) => s.end,
                None => self.segments.get(next).map_or(u64::MAX, |s| s.vaddr),
            };
            let r = last_at_or_below(&self.backing, a, |r| r.start)
                .map(|i| self.backing[i])
                .filter(|r| a < r.end)
                .ok_or_else(unmapped)?;
            let n = want.min(limit.min(r.end) - a) as usize;
            let offset = r.file_offset.checked_add(a - r.start).ok_or_else(unmapped)?;
            self.backing_files[r.file].read_exact_at(&mut buf[done..done + n], offset).map_err(|_| unmapped())?;
            done += n;
        }
        Ok(())
    }

    /// Registers a file (the executable) whose bytes stand in for the non-dumped parts of the
    /// NT_FILE mappings whose path equals `recorded_path`. If the core has no NT_FILE notes,
    /// `fallback_load_bias` places the file's PT_LOAD segments at vaddr+bias instead (the caller
    /// computes bias = AT_ENTRY - e_entry).
    pub fn add_backing_file(&mut self, recorded_path: &str, file: &Path, fallback_load_bias: Option<u64>) -> Result<()> {
        let shown = file.display();
        let f = File::open(file).with_context(|| format!("cannot open {shown} (to read what core {} did not dump)", self.name))?;
        let index = self.backing_files.len();
        let mut ranges = Vec::new();
        if !self.files.is_empty() {
            ranges.extend(self.files.iter().filter(|m| m.path == recorded_path).map(|m| BackingRange {
                start: m.start,
                end: m.end,
                file_offset: m.file_offset,
                file: index,
            }));
            if ranges.is_empty() {
                bail!("core {} has no mapping of {recorded_path}: {shown} cannot stand in for it", self.name);
            }
        } else {
            let Some(bias) = fallback_load_bias else {
                bail!("core {} lists no mapped files (no NT_FILE note): {shown}'s load address must be given", self.name);
            };
            for (vaddr, offset, filesz) in load_segments(&f).with_context(|| format!("cannot read the segments of {shown}"))? {
                // mapped from the page holding the segment's start, as the loader maps it
                let delta = if vaddr % 4096 == offset % 4096 { vaddr % 4096 } else { 0 };
                let start = vaddr.wrapping_add(bias).wrapping_sub(delta);
                let Some(end) = start.checked_add(filesz.saturating_add(delta)) else { continue };
                ranges.push(BackingRange { start, end, file_offset: offset - delta, file: index });
            }
            if ranges.is_empty() {
                bail!("{shown} has no loadable segments: it cannot stand in for the executable of core {}", self.name);
            }
        }
        self.backing_files.push(f);
        self.backing.extend(ranges);
        self.backing.sort_by_key(|r| r.start);
        Ok(())
    }
}

/// An executable's (p_vaddr, p_offset, p_filesz) of its PT_LOAD segments, read with pread.
fn load_segments(f: &File) -> Result<Vec<(u64, u64, u64)>> {
    let ehdr = Aligned::fill(EHDR_SIZE, |b| f.read_exact_at(b, 0))?;
    let hdr = FileHeader64::<LE>::parse(ehdr.bytes()).map_err(|e| anyhow!("not a 64-bit ELF file: {e}"))?;
    let phnum = usize::from(hdr.e_phnum(LE));
    if hdr.e_ident().data != elf::ELFDATA2LSB || usize::from(hdr.e_phentsize(LE)) != PHDR_SIZE || phnum > MAX_EXE_PHNUM {
        bail!("not a little-endian 64-bit ELF executable");
    }
    let table = Aligned::fill(phnum * PHDR_SIZE, |b| f.read_exact_at(b, hdr.e_phoff(LE)))?;
    let phdrs = object::pod::slice_from_bytes::<ProgramHeader64<LE>>(table.bytes(), phnum)
        .map_err(|()| anyhow!("bad program header table"))?
        .0;
    Ok(phdrs
        .iter()
        .filter(|p| p.p_type(LE) == elf::PT_LOAD && p.p_filesz(LE) > 0)
        .map(|p| (p.p_vaddr(LE), p.p_offset(LE), p.p_filesz(LE)))
        .collect())
}

/// `/proc/PID/maps` permissions ("r-xp") of a program header's `p_flags`.
pub fn perms_of(flags: u32) -> String {
    [(elf::PF_R.0, 'r'), (elf::PF_W.0, 'w'), (elf::PF_X.0, 'x')]
        .iter()
        .map(|&(bit, c)| if flags & bit != 0 { c } else { '-' })
        .chain(['p'])
        .collect()
}

mod build_id;
mod notes;
#[cfg(test)]
pub(crate) mod tests;
