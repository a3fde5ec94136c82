//! The Go 1.18+ pclntab: function table, names, and pc -> file:line (runtime/symtab.go).
//! It survives `-s -w`; [`Pclntab::from_image`] also finds it without section headers.
use super::pcvalue::{cstr, pcvalue, pcvalue_run, u32_at, u64_at};
use crate::elf::ElfImage;

/// A parsed pclntab (owns a copy of its bytes). Addresses are ELF virtual addresses.
#[derive(Debug, Clone)]
pub struct Pclntab {
    data: Vec<u8>,
    quantum: u64,
    text_start: u64,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    nfunc: usize,
    /// Go 1.20+ (_func has startLine).
    v120: bool,
}

/// A function: its name and [entry, end) pc range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncInfo {
    pub name: String,
    pub entry: u64,
    pub end: u64,
}

impl Pclntab {
    /// Parses a pcHeader and what follows (magic 0xfffffff0: Go 1.18/1.19, 0xfffffff1: 1.20+).
    /// `data` may run past the table's end. The header's textStart may be 0 (Go 1.26+ and PIE
    /// leave it to the runtime): [`Pclntab::from_image`] then finds it elsewhere.
    pub fn parse(data: &[u8]) -> Option<Pclntab> {
        let v120 = match u32_at(data, 0)? {
            0xffff_fff0 => false,
            0xffff_fff1 => true,
            _ => return None,
        };
        if data.get(4..6)? != [0, 0] || *data.get(7)? != 8 || ![1, 2, 4].contains(&data[6]) {
            return None; // 64-bit only
        }
        let w = |i: usize| u64_at(data, 8 + 8 * i).and_then(|v| usize::try_from(v).ok());
        let p = Pclntab {
            quantum: u64::from(data[6]),
            nfunc: w(0)?,
            text_start: u64_at(data, 24)?,
            funcname: w(3)?,
            cutab: w(4)?,
            filetab: w(5)?,
            pctab: w(6)?,
            functab: w(7)?,
            data: Vec::new(),
            v120,
        };
        let end = p
            .functab
            .checked_add(p.nfunc.checked_mul(8)?.checked_add(8)?)?;
        let bounds = [
            72,
            p.funcname,
            p.cutab,
            p.filetab,
            p.pctab,
            p.functab,
            end,
            data.len(),
        ];
        if p.nfunc == 0 || p.nfunc > 10_000_000 || !bounds.windows(2).all(|w| w[0] <= w[1]) {
            return None;
        }
        // keep the table only: up to the last _func the function table points at, plus slack
        let last = (0..=p.nfunc)
            .filter_map(|i| u32_at(data, p.functab + i * 8 + 4))
            .max()
            .map_or(end, |o| p.functab.saturating_add(o as usize).saturating_add(64));
        Some(Pclntab {
            data: data[..last.min(data.len()).max(end)].to_vec(),
            ..p
        })
    }

    /// The pclntab of an ELF file (see [`Pclntab::from_image`]).
    pub fn from_elf(data: &[u8]) -> Option<Pclntab> {
        Self::from_image(&ElfImage::parse(data).ok()?)
    }

    /// The pclntab of an image: the `.gopclntab` section, the `runtime.pclntab` symbol, or a
    /// magic scan of the load segments; its text start from the header, `runtime.text`,
    /// the runtime's moduledata, the entry point or `.text` (see locate.rs).
    pub fn from_image(image: &ElfImage) -> Option<Pclntab> {
        let (vaddr, bytes) = super::locate::pclntab_bytes(image)?;
        let mut p = Self::parse(bytes)?;
        p.text_start = super::locate::text_start(image, &p, vaddr)?;
        Some(p)
    }

    pub fn is_go120(&self) -> bool {
        self.v120
    }

    /// The address function entry offsets are relative to (runtime.text).
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    pub fn set_text_start(&mut self, text: u64) {
        self.text_start = text;
    }

    /// Number of functions.
    pub fn num_funcs(&self) -> usize {
        self.nfunc
    }

    /// (entry offset from text start, offset of its _func) of function i; i == nfunc gives
    /// the end sentinel.
    fn functab_entry(&self, i: usize) -> Option<(u64, usize)> {
        let o = i.checked_mul(8)?.checked_add(self.functab)?;
        let entry = u64::from(u32_at(&self.data, o)?);
        let funcoff = u32_at(&self.data, o.checked_add(4)?)? as usize;
        Some((entry, self.functab.checked_add(funcoff)?))
    }

    /// Entry offset (from the text start) of function i, unrelocated.
    pub(crate) fn entry_off(&self, i: usize) -> Option<u64> {
        self.functab_entry(i).map(|e| e.0)
    }

    /// Index of the function containing pc.
    fn find(&self, pc: u64) -> Option<usize> {
        let off = pc.checked_sub(self.text_start)?;
        let (first, _) = self.functab_entry(0)?;
        let (end, _) = self.functab_entry(self.nfunc)?;
        if off < first || off >= end {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.functab_entry(mid)?.0 <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    fn name_of(&self, func: usize) -> Option<&str> {
        let nameoff = u32_at(&self.data, func.checked_add(4)?)? as usize;
        cstr(&self.data, self.funcname.checked_add(nameoff)?)
    }

    fn info(&self, i: usize) -> Option<FuncInfo> {
        let (entry, func) = self.functab_entry(i)?;
        let (end, _) = self.functab_entry(i + 1)?;
        let t = self.text_start;
        Some(FuncInfo {
            name: self.name_of(func)?.to_string(),
            entry: t.checked_add(entry)?,
            end: t.checked_add(end)?,
        })
    }

    /// The function containing pc.
    pub fn func_for_pc(&self, pc: u64) -> Option<FuncInfo> {
        self.info(self.find(pc)?)
    }

    /// Every function (name, entry, end), in address order.
    pub fn funcs(&self) -> impl Iterator<Item = FuncInfo> + '_ {
        (0..self.nfunc).filter_map(move |i| self.info(i))
    }

    /// The function named exactly `name` (the first, if the linker kept duplicates).
    pub fn func_named(&self, name: &str) -> Option<FuncInfo> {
        let i = (0..self.nfunc)
            .find(|&i| self.functab_entry(i).and_then(|(_, f)| self.name_of(f)) == Some(name))?;
        self.info(i)
    }

    /// Entry pc of the function named `name`.
    pub fn func_entry(&self, name: &str) -> Option<u64> {
        self.func_named(name).map(|f| f.entry)
    }

    /// End pc (exclusive: the next function's entry) of the function named `name`.
    pub fn func_end(&self, name: &str) -> Option<u64> {
        self.func_named(name).map(|f| f.end)
    }

    /// File and line of pc (use pc-1 for a return address). Inlined code gives the inlined
    /// function's position, as the runtime's own tracebacks do for their innermost frame.
    pub fn pc_to_file_line(&self, pc: u64) -> Option<(String, u32)> {
        let i = self.find(pc)?;
        let (entry, func) = self.functab_entry(i)?;
        let entry = self.text_start.checked_add(entry)?;
        // _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile (20), pcln (24), npcdata, cuOffset (32)
        let table = |field: usize| -> Option<&[u8]> {
            let off = u32_at(&self.data, func.checked_add(field)?)? as usize;
            (off != 0)
                .then(|| self.data.get(self.pctab.checked_add(off)?..))
                .flatten()
        };
        let fileno = pcvalue(table(20)?, self.quantum, entry, pc)?;
        let line = pcvalue(table(24)?, self.quantum, entry, pc)?;
        let cu = u32_at(&self.data, func.checked_add(32)?)? as usize;
        let fileoff = u32_at(
            &self.data,
            cu.checked_add(usize::try_from(fileno).ok()?)?.checked_mul(4)?.checked_add(self.cutab)?,
        )?;
        if fileoff == u32::MAX {
            return None;
        }
        let file = cstr(&self.data, self.filetab.checked_add(fileoff as usize)?)?.to_string();
        Some((file, u32::try_from(line).unwrap_or(0)))
    }

    /// The frame size at pc (the pcsp table): the bytes between sp and the return address, for a
    /// pc inside a function (a parked goroutine's saved pc, or a return address into a caller).
    pub fn sp_delta(&self, pc: u64) -> Option<u64> {
        let i = self.find(pc)?;
        let (entry, func) = self.functab_entry(i)?;
        let off = u32_at(&self.data, func.checked_add(16)?)? as usize;
        let table = (off != 0).then(|| self.data.get(self.pctab.checked_add(off)?..)).flatten()?;
        u64::try_from(pcvalue(table, self.quantum, self.text_start.checked_add(entry)?, pc)?).ok()
    }

    /// The first pc of the run around `pc` whose file and line are both unchanged: stepping back
    /// from one run to the one before costs one lookup per run, not one per byte.
    pub fn file_line_run_start(&self, pc: u64) -> Option<u64> {
        let i = self.find(pc)?;
        let (entry, func) = self.functab_entry(i)?;
        let entry = self.text_start.checked_add(entry)?;
        let run = |field: usize| -> Option<u64> {
            let off = u32_at(&self.data, func.checked_add(field)?)? as usize;
            let table = (off != 0).then(|| self.data.get(self.pctab.checked_add(off)?..)).flatten()?;
            pcvalue_run(table, self.quantum, entry, pc).map(|(_, start)| start)
        };
        Some(run(20)?.max(run(24)?))
    }

    /// Same as [`Pclntab::pc_to_file_line`].
    pub fn file_line(&self, pc: u64) -> Option<(String, u32)> {
        self.pc_to_file_line(pc)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-made Go 1.20 pclntab: two functions at text+0 and text+0x20, one file, one CU;
    /// lines (and frame sizes) 10 for the first 0x10 bytes of each, then 12.
    pub(crate) fn synthetic() -> Vec<u8> {
        synthetic_with(&["/src/main.go"], &[2, 0x40, 0])
    }

    /// [`synthetic`] with these files and this pc-file table (shared by both functions).
    pub(crate) fn synthetic_with(files: &[&str], pcfile: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 72];
        d[..8].copy_from_slice(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
        let names = b"main.a\0main.b\0";
        let mut filetab_bytes = Vec::new();
        let mut cu = Vec::new();
        for f in files {
            cu.extend_from_slice(&(filetab_bytes.len() as u32).to_le_bytes());
            filetab_bytes.extend_from_slice(f.as_bytes());
            filetab_bytes.push(0);
        }
        let funcname = 72;
        let cutab = funcname + names.len();
        let filetab = cutab + cu.len();
        let pctab = filetab + filetab_bytes.len();
        // pctab: byte 0 unused (offset 0 means "no table"); the pc-file table; lines 10, 12
        let mut pcs = vec![0u8];
        pcs.extend_from_slice(pcfile);
        let pcln_off = pcs.len() as u32;
        pcs.extend_from_slice(&[22, 0x10, 4, 0x30, 0]);
        let functab = pctab + pcs.len();
        let hdr = [2, 1, 0x1000, funcname, cutab, filetab, pctab, functab];
        for (i, v) in hdr.iter().enumerate() {
            d[8 + 8 * i..16 + 8 * i].copy_from_slice(&(*v as u64).to_le_bytes());
        }
        d.extend_from_slice(names);
        d.extend_from_slice(&cu);
        d.extend_from_slice(&filetab_bytes);
        d.extend_from_slice(&pcs);
        let f0 = 3 * 8; // _func records after the 3 functab pairs
        let f1 = f0 + 44;
        for (entry, off) in [(0u32, f0), (0x20, f1), (0x40, 0)] {
            d.extend_from_slice(&entry.to_le_bytes());
            d.extend_from_slice(&(off as u32).to_le_bytes());
        }
        for (entry, name) in [(0u32, 0u32), (0x20, 7)] {
            let mut f = [0u32; 11];
            // pcsp shares the line table: frame size 10, then 12
            (f[0], f[1], f[4], f[5], f[6]) = (entry, name, pcln_off, 1, pcln_off);
            f.iter().for_each(|v| d.extend_from_slice(&v.to_le_bytes()));
        }
        d
    }

    #[test]
    fn names_and_lines_from_a_synthetic_table() {
        let p = Pclntab::parse(&synthetic()).unwrap();
        assert!(p.is_go120());
        assert_eq!(p.num_funcs(), 2);
        let f = p.func_for_pc(0x1010).unwrap();
        assert_eq!(
            (f.name.as_str(), f.entry, f.end),
            ("main.a", 0x1000, 0x1020)
        );
        assert_eq!(p.func_entry("main.b"), Some(0x1020));
        assert_eq!(p.func_end("main.b"), Some(0x1040));
        assert_eq!(p.func_for_pc(0x1040), None);
        assert_eq!(p.func_for_pc(0xfff), None);
        // main.b shares the tables in this synthetic file; relative to its own entry 0x1020
        assert_eq!(p.pc_to_file_line(0x1025), Some(("/src/main.go".into(), 10)));
        assert_eq!(p.pc_to_file_line(0x1032), Some(("/src/main.go".into(), 12)));
        assert_eq!(
            p.funcs().map(|f| f.name).collect::<Vec<_>>(),
            ["main.a", "main.b"]
        );
    }

    #[test]
    fn rejects_garbage_headers() {
        let mut d = synthetic();
        assert!(Pclntab::parse(&d[..60]).is_none());
        d[7] = 4; // 32-bit
        assert!(Pclntab::parse(&d).is_none());
        assert!(Pclntab::parse(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8]).is_none());
    }

    /// A 6- or 7-byte `.gopclntab` (a section header patched by hand: Go does not use section
    /// headers) indexed data[7] after checking data[4..6] only: a panic, and under `daemon --all`
    /// the end of the root daemon.
    #[test]
    fn a_table_of_six_or_seven_bytes_is_refused_not_a_panic() {
        let d = synthetic();
        for n in 0..=8 {
            assert!(Pclntab::parse(&d[..n]).is_none(), "{n} bytes");
        }
    }

    /// Offsets and a text start from the binary near u64::MAX wrapped (or, with overflow checks,
    /// panicked) in every lookup: they give nothing now.
    #[test]
    fn offsets_at_the_top_of_the_address_space_give_nothing() {
        let mut p = Pclntab::parse(&synthetic()).unwrap();
        p.set_text_start(u64::MAX - 0x30);
        assert_eq!(p.func_for_pc(u64::MAX - 0x28).map(|f| f.name), Some("main.a".into()));
        assert!(p.func_for_pc(u64::MAX).is_none());
        assert!(p.funcs().all(|f| f.entry <= f.end));
        assert_eq!(p.funcs().count(), 1, "main.b's end is past the address space");
        let _ = p.sp_delta(u64::MAX - 1);
        let _ = p.file_line_run_start(u64::MAX - 1);
        let mut q = Pclntab::parse(&synthetic()).unwrap();
        q.functab = usize::MAX - 4;
        q.cutab = usize::MAX - 2;
        assert!(q.func_for_pc(0x1000).is_none() && q.funcs().count() == 0);
    }

    #[test]
    fn stepping_back_goes_one_run_at_a_time() {
        let p = Pclntab::parse(&synthetic()).unwrap();
        // line 10 for [0x1000, 0x1010), 12 after
        assert_eq!(p.file_line_run_start(0x1015), Some(0x1010));
        assert_eq!(p.file_line_run_start(0x100f), Some(0x1000));
    }
}
