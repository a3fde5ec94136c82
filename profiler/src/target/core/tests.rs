//! The core reader on hand-made cores (with and without file notes, hostile notes) and on a
//! real gcore of /bin/sleep.
use super::{notes::*, *};

/// A core made by hand: notes (name, type, descriptor) in one PT_NOTE, then one PT_LOAD per
/// (vaddr, flags, dumped bytes, memsz).
pub(crate) fn build_core(notes: &[(&[u8], u32, Vec<u8>)], loads: &[(u64, u32, Vec<u8>, u64)]) -> Vec<u8> {
    let phnum = 1 + loads.len();
    let mut note_bytes = Vec::new();
    for (name, t, desc) in notes {
        let namesz = name.len() + 1;
        note_bytes.extend((namesz as u32).to_le_bytes());
        note_bytes.extend((desc.len() as u32).to_le_bytes());
        note_bytes.extend(t.to_le_bytes());
        note_bytes.extend(*name);
        note_bytes.push(0);
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
        note_bytes.extend(desc);
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
    }
    let notes_at = (EHDR_SIZE + PHDR_SIZE * phnum) as u64;
    let mut out = Vec::new();
    out.extend(elf::ELFMAG);
    out.extend([elf::ELFCLASS64.0, elf::ELFDATA2LSB.0, elf::EV_CURRENT.0, 0]);
    out.resize(16, 0);
    out.extend(elf::ET_CORE.0.to_le_bytes());
    out.extend(elf::EM_X86_64.0.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // e_version
    out.extend(0u64.to_le_bytes()); // e_entry
    out.extend((EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    out.extend(0u64.to_le_bytes()); // e_shoff
    out.extend(0u32.to_le_bytes()); // e_flags
    out.extend((EHDR_SIZE as u16).to_le_bytes());
    out.extend((PHDR_SIZE as u16).to_le_bytes());
    out.extend((phnum as u16).to_le_bytes());
    out.extend([0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
    let phdr = |out: &mut Vec<u8>, t: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
        out.extend(t.to_le_bytes());
        out.extend(flags.to_le_bytes());
        for v in [offset, vaddr, 0, filesz, memsz, 4] {
            out.extend(v.to_le_bytes());
        }
    };
    phdr(&mut out, elf::PT_NOTE.0, elf::PF_R.0, notes_at, 0, note_bytes.len() as u64, 0);
    let mut at = notes_at + note_bytes.len() as u64;
    for (vaddr, flags, bytes, memsz) in loads {
        phdr(&mut out, elf::PT_LOAD.0, *flags, at, *vaddr, bytes.len() as u64, *memsz);
        at += bytes.len() as u64;
    }
    out.extend(note_bytes);
    for (_, _, bytes, _) in loads {
        out.extend(bytes);
    }
    out
}

pub(crate) fn prstatus(pid: u32, rip: u64, rsp: u64) -> Vec<u8> {
    let mut d = vec![0u8; 336];
    d[PRSTATUS_PID..PRSTATUS_PID + 4].copy_from_slice(&pid.to_le_bytes());
    for (i, v) in [(REG_RIP, rip), (REG_RSP, rsp), (REG_RBP, 0xb0), (REG_ORIG_RAX, 202), (REG_RDI, 1), (REG_RSI, 2), (REG_RDX, 3)] {
        d[PRSTATUS_REGS + 8 * i..][..8].copy_from_slice(&v.to_le_bytes());
    }
    d
}

fn prpsinfo(pid: u32, fname: &str) -> Vec<u8> {
    let mut d = vec![0u8; 136];
    d[PRPSINFO_PID..PRPSINFO_PID + 4].copy_from_slice(&pid.to_le_bytes());
    d[PRPSINFO_FNAME..PRPSINFO_FNAME + fname.len()].copy_from_slice(fname.as_bytes());
    d
}

fn nt_file(count: u64, page: u64, entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(count.to_le_bytes());
    d.extend(page.to_le_bytes());
    for (s, e, o, _) in entries {
        d.extend([s.to_le_bytes(), e.to_le_bytes(), o.to_le_bytes()].concat());
    }
    for (_, _, _, p) in entries {
        d.extend(p.as_bytes());
        d.push(0);
    }
    d
}

fn auxv(pairs: &[(u64, u64)]) -> Vec<u8> {
    pairs.iter().chain([&(AT_NULL, 0)]).flat_map(|(k, v)| [k.to_le_bytes(), v.to_le_bytes()].concat()).collect()
}

/// The census reads it from other threads (`Arc<dyn Memory + Send + Sync>`).
#[test]
fn core_file_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CoreFile>();
}

#[test]
fn core_without_file_notes() {
    let mem: Vec<u8> = (0..0x1000u32).map(|i| i as u8).collect();
    let bytes = build_core(
        &[(b"CORE", elf::NT_PRSTATUS.0, prstatus(77, 0x40_1000, 0x10_0800))],
        &[(0x10_0000, elf::PF_R.0 | elf::PF_W.0, mem.clone(), 0x1000)],
    );
    let mut core = CoreFile::from_bytes(bytes, "hand.core").unwrap();
    assert_eq!(core.path(), "hand.core");
    assert_eq!(core.pid(), Some(77));
    assert_eq!(core.command(), None);
    assert_eq!(core.exe_path(), None);
    assert!(core.file_mappings().is_empty());
    assert_eq!(core.threads().len(), 1);
    let t = core.threads()[0];
    assert_eq!((t.tid, t.rip, t.rsp, t.rbp, t.orig_rax, t.rdi, t.rsi, t.rdx), (77, 0x40_1000, 0x10_0800, 0xb0, 202, 1, 2, 3));
    let mut buf = [0u8; 16];
    core.read(0x10_0010, &mut buf).unwrap();
    assert_eq!(&buf[..], &mem[0x10..0x20]);
    core.read(0x10_0ff0, &mut buf).unwrap();
    assert_eq!(&buf[..], &mem[0xff0..]);
    assert_eq!(core.read(0x10_0ff8, &mut buf).unwrap_err().raw_os_error(), Some(libc::EFAULT));
    assert!(core.read(0x0f_fff8, &mut buf).is_err());
    assert!(core.read(0x20_0000, &mut buf).is_err());
    assert!(core.read(u64::MAX - 4, &mut buf).is_err());
    core.read(0, &mut []).unwrap();
    let maps = core.maps();
    assert_eq!(maps.len(), 1);
    // the only thread's stack is in it
    let m = &maps[0];
    assert_eq!((m.start, m.end, m.perms.as_str(), m.path.as_deref()), (0x10_0000, 0x10_1000, "rw-p", Some("[stack]")));

    // no NT_FILE: the backing file needs a load bias
    let err = core.add_backing_file("/x", Path::new("/bin/sleep"), None).unwrap_err().to_string();
    assert!(err.contains("NT_FILE"), "{err}");
    let exe = std::fs::read("/bin/sleep").unwrap();
    let bias = 0x5555_0000_0000;
    core.add_backing_file("/x", Path::new("/bin/sleep"), Some(bias)).unwrap();
    let f = object::File::parse(&*exe).unwrap();
    use object::{Object as _, ObjectSegment as _};
    let text = f.segments().find(|s| s.file_range().1 > 0 && s.address() > 0).unwrap();
    let (off, _) = text.file_range();
    core.read(text.address() + bias, &mut buf).unwrap();
    assert_eq!(&buf[..], &exe[off as usize..off as usize + 16]);
    // the dumped segment still comes from the core
    core.read(0x10_0010, &mut buf).unwrap();
    assert_eq!(&buf[..], &mem[0x10..0x20]);
    assert!(core.read_dumped(text.address() + bias, &mut buf).is_err());
}

#[test]
fn core_with_file_notes_kernel_style() {
    // the kernel's way: page size 4096, a text segment not dumped (p_filesz 0)
    let head: Vec<u8> = std::fs::read("/bin/sleep").unwrap()[..0x1000].to_vec();
    let exe = "/usr/bin/app";
    let bytes = build_core(
        &[
            (b"CORE", elf::NT_PRSTATUS.0, prstatus(10, 0x5000_1234, 0x7000_0100)),
            (b"CORE", elf::NT_PRPSINFO.0, prpsinfo(9, "application-long")),
            (b"CORE", elf::NT_PRSTATUS.0, prstatus(11, 0x5000_1000, 0x7000_0200)),
            (b"LINUX", elf::NT_FILE.0, nt_file(1, 4096, &[(0, 1, 0, "/not-core-named")])),
            (b"CORE", elf::NT_AUXV.0, auxv(&[(AT_PHDR, 0x5000_0040), (AT_ENTRY, 0x5000_1100), (AT_SYSINFO_EHDR, 0x7100_0000)])),
            (
                b"CORE",
                elf::NT_FILE.0,
                nt_file(
                    3,
                    4096,
                    &[(0x5000_0000, 0x5000_1000, 0, exe), (0x5000_1000, 0x5000_3000, 1, exe), (0x6000_0000, 0x6000_1000, 7, "/lib/x.so")],
                ),
            ),
        ],
        &[
            (0x5000_0000, elf::PF_R.0, head.clone(), 0x1000),
            (0x5000_1000, elf::PF_R.0 | elf::PF_X.0, vec![], 0x2000),
            (0x7000_0000, elf::PF_R.0 | elf::PF_W.0, vec![0xaa; 0x1000], 0x1000),
            (0x7100_0000, elf::PF_R.0 | elf::PF_X.0, vec![0xbb; 0x10], 0x1000),
        ],
    );
    let core = CoreFile::from_bytes(bytes, "k.core").unwrap();
    assert_eq!(core.pid(), Some(9));
    // 16 bytes with no NUL (the kernel writes at most 15): read whole, never past
    assert_eq!(core.command().as_deref(), Some("application-long"));
    assert_eq!(core.threads().iter().map(|t| t.tid).collect::<Vec<_>>(), [10, 11]);
    assert_eq!((core.auxv_entry(), core.auxv_phdr()), (Some(0x5000_1100), Some(0x5000_0040)));
    assert_eq!(core.exe_path().as_deref(), Some(exe));
    assert_eq!(core.file_mappings().len(), 3);
    assert_eq!(core.file_mappings()[1].file_offset, 4096);
    assert_eq!(core.file_mappings()[2].file_offset, 7 * 4096);
    let maps = core.maps();
    let summary: Vec<(u64, &str, Option<&str>, u64)> =
        maps.iter().map(|m| (m.start, m.perms.as_str(), m.path.as_deref(), m.offset)).collect();
    assert_eq!(
        summary,
        [
            (0x5000_0000, "r--p", Some(exe), 0),
            (0x5000_1000, "r-xp", Some(exe), 4096),
            (0x6000_0000, "r--p", Some("/lib/x.so"), 7 * 4096),
            (0x7000_0000, "rw-p", None, 0),
            (0x7100_0000, "r-xp", Some("[vdso]"), 0),
        ]
    );
    let mut magic = [0u8; 4];
    core.read(0x5000_0000, &mut magic).unwrap();
    assert_eq!(&magic, b"\x7fELF");
    // the text was not dumped, nor the vdso's tail
    assert!(core.read(0x5000_1100, &mut magic).is_err());
    assert!(core.read(0x7100_0010, &mut magic).is_err());
    core.read(0x7100_000c, &mut magic).unwrap();
    // the headers of the "executable" as the core holds them: no build id note -> cannot tell
    let sleep = std::fs::read("/bin/sleep").unwrap();
    // /bin/sleep's notes are in its first page, dumped here: the ids match
    assert!(core.check_build_id(&sleep, "/bin/sleep", 0x5000_0000).unwrap());
    assert!(!core.check_build_id(&sleep, "/bin/sleep", 0x7000_0000).unwrap());
    assert!(!core.check_build_id(b"not an elf", "x", 0x5000_0000).unwrap());
}

#[test]
fn hostile_notes_are_bounded() {
    // a file note claiming 2^64-1 entries, a short prstatus, an auxv without AT_NULL
    let mut file = nt_file(u64::MAX, u64::MAX, &[(0x1000, 0x2000, 2, "/a")]);
    file.truncate(file.len() - 1);
    let bytes = build_core(
        &[
            (b"CORE", elf::NT_FILE.0, file),
            (b"CORE", elf::NT_PRSTATUS.0, vec![1; 100]),
            (b"CORE", elf::NT_AUXV.0, vec![9; 24]),
        ],
        &[(u64::MAX - 0xfff, elf::PF_R.0, vec![1; 0x100], 0x2000)],
    );
    let core = CoreFile::from_bytes(bytes, "h.core").unwrap();
    // the offset 2 * 2^64-1 overflows: dropped
    assert!(core.file_mappings().is_empty());
    assert!(core.threads().is_empty());
    assert_eq!(core.pid(), None);
    let mut b = [0u8; 8];
    core.read(u64::MAX - 0xfff, &mut b).unwrap();
    assert!(core.read(u64::MAX - 4, &mut b).is_err());
    assert_eq!(core.maps().len(), 1);
}

#[test]
fn errors_name_the_problem() {
    let err = CoreFile::from_bytes(b"hello, not an elf file at all".to_vec(), "junk").unwrap_err().to_string();
    assert!(err.contains("not an ELF") && err.contains("junk"), "{err}");
    let err = CoreFile::from_bytes(Vec::new(), "empty").unwrap_err().to_string();
    assert!(err.contains("not an ELF"), "{err}");
    let err = CoreFile::open(Path::new("/bin/ls")).unwrap_err().to_string();
    assert!(err.contains("not a core") && err.contains("/bin/ls"), "{err}");
    let err = CoreFile::open(Path::new("/nonexistent/core")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/core"), "{err}");
    let mut other = build_core(&[], &[(0x1000, 4, vec![0; 16], 16)]);
    other[18] = elf::EM_AARCH64.0 as u8;
    let err = CoreFile::from_bytes(other, "arm.core").unwrap_err().to_string();
    assert!(err.contains("x86-64"), "{err}");
    let mut small = build_core(&[], &[(0x1000, 4, vec![0; 16], 16)]);
    small[4] = elf::ELFCLASS32.0;
    let err = CoreFile::from_bytes(small, "c32").unwrap_err().to_string();
    assert!(err.contains("x86-64"), "{err}");
    let mut cut = build_core(&[(b"CORE", elf::NT_PRSTATUS.0, prstatus(1, 2, 3))], &[(0x1000, 4, vec![0; 4096], 4096)]);
    let full = cut.len();
    cut.truncate(full - 100);
    let err = CoreFile::from_bytes(cut, "cut.core").unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains(&format!("the core is {} bytes, its segments need {full}", full - 100)), "{err}");
}

/// gcore's core of a live /bin/sleep.
#[test]
fn real_core_of_sleep() {
    if !Path::new("/usr/bin/gcore").exists() {
        eprintln!("skipped: no gcore (gdb) installed");
        return;
    }
    let mut child = std::process::Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    // past the dynamic loader, in the nanosleep
    std::thread::sleep(std::time::Duration::from_millis(300));
    let prefix = std::env::temp_dir().join(format!("leakprof-core-test-{}", std::process::id()));
    let out = std::process::Command::new("/usr/bin/gcore").arg("-o").arg(&prefix).arg(pid.to_string()).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let core_path = prefix.with_extension(pid.to_string());
    assert!(core_path.exists(), "gcore failed: {}", String::from_utf8_lossy(&out.stderr));
    let result = std::panic::catch_unwind(|| check_sleep_core(&core_path, pid));
    let _ = std::fs::remove_file(&core_path);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn check_sleep_core(core_path: &Path, pid: u32) {
    let mut core = CoreFile::open(core_path).unwrap();
    assert_eq!(core.pid(), Some(pid));
    assert_eq!(core.command().as_deref(), Some("sleep"));
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap().to_string_lossy().into_owned();
    assert_eq!(core.exe_path().as_deref(), Some(sleep.as_str()));
    assert_eq!(core.threads().len(), 1);
    assert_eq!(core.threads()[0].tid, pid);
    assert_ne!(core.threads()[0].rip, 0);
    assert_ne!(core.threads()[0].rsp, 0);
    assert!(!core.file_mappings().is_empty());
    let maps = core.maps();
    assert!(maps.iter().any(|m| m.writable() && m.path.is_none()), "{maps:#?}");
    assert!(maps.iter().any(|m| m.path.as_deref() == Some("[stack]")), "{maps:#?}");
    // the thread's stack pointer is in a dumped, writable mapping
    let mut word = [0u8; 8];
    core.read_dumped(core.threads()[0].rsp, &mut word).unwrap();

    let exe_maps: Vec<CoreFileMapping> = core.file_mappings().iter().filter(|m| m.path == sleep).cloned().collect();
    let first = exe_maps.iter().find(|m| m.file_offset == 0).unwrap().clone();
    let mut magic = [0u8; 4];
    core.read(first.start, &mut magic).unwrap();
    assert_eq!(&magic, b"\x7fELF");

    // the text, through the executable
    let entry = core.auxv_entry().unwrap();
    let text = exe_maps.iter().find(|m| m.start <= entry && entry < m.end).unwrap();
    let file = std::fs::read("/bin/sleep").unwrap();
    let mut buf = [0u8; 64];
    let err = core.read(entry, &mut buf);
    if core.read_dumped(entry, &mut buf).is_err() {
        assert!(err.is_err());
    }
    core.add_backing_file(&sleep, Path::new("/bin/sleep"), None).unwrap();
    core.read(entry, &mut buf).unwrap();
    let at = (text.file_offset + (entry - text.start)) as usize;
    assert_eq!(&buf[..], &file[at..at + 64]);
    // a read across the end of the first mapping into the next
    if let Some(next) = exe_maps.iter().find(|m| m.start == first.end) {
        core.read(first.end - 32, &mut buf).unwrap();
        let at = (first.file_offset + (first.end - first.start) - 32) as usize;
        assert_eq!(next.file_offset, first.file_offset + (first.end - first.start));
        assert_eq!(&buf[..], &file[at..at + 64]);
    }
    let err = core.add_backing_file("/no/such/path", Path::new("/bin/sleep"), None).unwrap_err().to_string();
    assert!(err.contains("no mapping of /no/such/path"), "{err}");

    // build ids
    assert!(core.check_build_id(&file, "/bin/sleep", first.start).unwrap());
    let ls = std::fs::read("/bin/ls").unwrap();
    let err = core.check_build_id(&ls, "/bin/ls", first.start).unwrap_err().to_string();
    assert!(err.contains("build id") && err.contains("--exe") && err.contains("/bin/ls"), "{err}");
    // not the executable's first page: cannot tell
    assert!(!core.check_build_id(&file, "/bin/sleep", core.threads()[0].rsp & !0xfff).unwrap());

    // cut in half
    let mut bytes = std::fs::read(core_path).unwrap();
    let whole = CoreFile::from_bytes(bytes.clone(), "copy").unwrap();
    assert_eq!(whole.maps(), core.maps());
    bytes.truncate(bytes.len() / 2);
    let err = CoreFile::from_bytes(bytes, "half.core").unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("half.core"), "{err}");
}
