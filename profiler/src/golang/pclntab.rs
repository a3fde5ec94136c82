//! The Go 1.18+ pclntab: function table, names, and pc -> file:line (runtime/symtab.go).
use object::Object as _;

/// A parsed pclntab, borrowing nothing (a copy of the section).
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

/// A function found for a pc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncInfo {
    pub name: String,
    pub entry: u64,
    pub end: u64,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn cstr(b: &[u8], o: usize) -> Option<&str> {
    let s = b.get(o..)?;
    let end = s.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&s[..end]).ok()
}

impl Pclntab {
    /// Parses the section bytes (magic 0xfffffff0: Go 1.18/1.19, 0xfffffff1: 1.20+).
    pub fn parse(data: &[u8]) -> Option<Pclntab> {
        let magic = u32_at(data, 0)?;
        let v120 = match magic {
            0xffff_fff0 => false,
            0xffff_fff1 => true,
            _ => return None,
        };
        if data[7] != 8 {
            return None; // 64-bit only
        }
        let w = |i: usize| u64_at(data, 8 + 8 * i);
        Some(Pclntab {
            quantum: u64::from(data[6]),
            nfunc: w(0)? as usize,
            text_start: w(2)?,
            funcname: w(3)? as usize,
            cutab: w(4)? as usize,
            filetab: w(5)? as usize,
            pctab: w(6)? as usize,
            functab: w(7)? as usize,
            data: data.to_vec(),
            v120,
        })
    }

    /// The `.gopclntab` section of an ELF file. Newer linkers leave the header's textStart 0
    /// (the runtime fills it in): then it is the start of `.text`.
    pub fn from_elf(data: &[u8]) -> Option<Pclntab> {
        use object::ObjectSection as _;
        let file = object::File::parse(data).ok()?;
        let sec = file.section_by_name(".gopclntab")?;
        let mut p = Pclntab::parse(sec.data().ok()?)?;
        if p.text_start == 0 {
            p.text_start = file.section_by_name(".text")?.address();
        }
        Some(p)
    }

    pub fn is_go120(&self) -> bool {
        self.v120
    }

    /// (entry pc, offset of its _func) of function i; i == nfunc gives the end sentinel.
    fn functab_entry(&self, i: usize) -> Option<(u64, usize)> {
        let o = self.functab + i * 8;
        let entry = u64::from(u32_at(&self.data, o)?) + self.text_start;
        let funcoff = u32_at(&self.data, o + 4)? as usize;
        Some((entry, self.functab + funcoff))
    }

    /// Index of the function containing pc.
    fn find(&self, pc: u64) -> Option<usize> {
        let (first, _) = self.functab_entry(0)?;
        let (end, _) = self.functab_entry(self.nfunc)?;
        if pc < first || pc >= end {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.functab_entry(mid)?.0 <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    fn func_name(&self, func: usize) -> Option<String> {
        let nameoff = u32_at(&self.data, func + 4)? as usize;
        cstr(&self.data, self.funcname + nameoff).map(str::to_string)
    }

    /// The function containing pc.
    pub fn func_for_pc(&self, pc: u64) -> Option<FuncInfo> {
        let i = self.find(pc)?;
        let (entry, func) = self.functab_entry(i)?;
        let (end, _) = self.functab_entry(i + 1)?;
        Some(FuncInfo { name: self.func_name(func)?, entry, end })
    }

    /// Every function (name, entry, end).
    pub fn funcs(&self) -> impl Iterator<Item = FuncInfo> + '_ {
        (0..self.nfunc).filter_map(move |i| {
            let (entry, func) = self.functab_entry(i)?;
            let (end, _) = self.functab_entry(i + 1)?;
            Some(FuncInfo { name: self.func_name(func)?, entry, end })
        })
    }

    pub fn func_named(&self, name: &str) -> Option<FuncInfo> {
        self.funcs().find(|f| f.name == name)
    }

    /// runtime.pcvalue: the value of the pc-value table at `off` for `pc` in a function at `entry`.
    fn pcvalue(&self, off: u32, entry: u64, pc: u64) -> Option<i32> {
        if off == 0 {
            return None;
        }
        let mut p = self.pctab + off as usize;
        let mut val: i32 = -1;
        let mut cur = entry;
        let mut first = true;
        loop {
            let (uvdelta, n) = super::buildinfo::uvarint(self.data.get(p..)?)?;
            if uvdelta == 0 && !first {
                return None;
            }
            p += n;
            let uv = uvdelta as u32;
            val = val.wrapping_add((-((uv & 1) as i32)) ^ ((uv >> 1) as i32));
            let (pcdelta, n) = super::buildinfo::uvarint(self.data.get(p..)?)?;
            p += n;
            cur += pcdelta * self.quantum;
            first = false;
            if pc < cur {
                return Some(val);
            }
        }
    }

    /// File and line of pc (use pc-1 for a return address).
    pub fn file_line(&self, pc: u64) -> Option<(String, u32)> {
        let i = self.find(pc)?;
        let (entry, func) = self.functab_entry(i)?;
        let pcfile = u32_at(&self.data, func + 20)?;
        let pcln = u32_at(&self.data, func + 24)?;
        let cu = u32_at(&self.data, func + 32)? as usize;
        let fileno = self.pcvalue(pcfile, entry, pc)?;
        let line = self.pcvalue(pcln, entry, pc)?;
        let fileoff = u32_at(&self.data, self.cutab + (cu + fileno as usize) * 4)? as usize;
        let file = cstr(&self.data, self.filetab + fileoff)?.to_string();
        Some((file, line.max(0) as u32))
    }
}
