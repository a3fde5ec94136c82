//! Helpers shared by the fuzz targets: reading structured values out of the fuzzer's bytes, a
//! fake address space for the tokio census readers, and a small hand-made Go pclntab.
use std::collections::BTreeMap;

use leakprof::runtimes::tokio::census::mem::Mem;

/// A cursor over the fuzzer's input: every read succeeds (zeros once the bytes run out), so a
/// target never has to bail out on short input.
pub struct Input<'a> {
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }

    /// A length-prefixed (u16) chunk.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }
}

/// Little-endian u64 words of `b` (a trailing partial word is dropped).
pub fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The highest address of a user-space x86-64 process (47 bits): memory read from a live
/// target never lies above it, so the fake address spaces do not either.
pub const USER_TOP: u64 = 1 << 47;

/// An address space of byte regions for the tokio census readers ([`Mem`]): a read inside one
/// region succeeds, every other read fails. Regions may overlap; the one starting last at or
/// below an address is the one read.
#[derive(Debug, Clone, Default)]
pub struct Space {
    pub regions: BTreeMap<u64, Vec<u8>>,
}

impl Space {
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }

    /// Writes `v` at `addr` if a region holds all 8 bytes (else nothing).
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        if let Some((&start, bytes)) = self.regions.range_mut(..=addr).next_back() {
            let o = (addr - start) as usize;
            if let Some(dst) = o.checked_add(8).and_then(|e| bytes.get_mut(o..e)) {
                dst.copy_from_slice(&v.to_ne_bytes());
            }
        }
    }

    fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let (&start, bytes) = self.regions.range(..=addr).next_back()?;
        let o = usize::try_from(addr - start).ok()?;
        bytes.get(o..o.checked_add(len)?)
    }
}

impl Mem for Space {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        match self.slice(addr, buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// One function of [`pclntab`]: name, size in bytes (< 0x80), frame size (sp delta, < 0x40).
pub struct GoFunc<'a> {
    pub name: &'a str,
    pub size: u8,
    pub frame: u8,
}

/// The functions of the default hand-made pclntab: a user function calling into the runtime, a
/// blocking runtime function, and runtime.goexit at the bottom of every stack.
pub const GO_FUNCS: &[GoFunc<'static>] = &[
    GoFunc { name: "runtime.gopark", size: 0x20, frame: 0x18 },
    GoFunc { name: "runtime.chanrecv1", size: 0x20, frame: 0x28 },
    GoFunc { name: "sync.(*Mutex).Lock", size: 0x20, frame: 0x10 },
    GoFunc { name: "main.worker.func1", size: 0x40, frame: 0x30 },
    GoFunc { name: "main.main", size: 0x20, frame: 0x08 },
    GoFunc { name: "runtime.goexit", size: 0x10, frame: 0x00 },
];

/// Text start of [`pclntab`].
pub const GO_TEXT: u64 = 0x40_1000;

/// A Go 1.20+ pclntab (magic 0xfffffff1, quantum 1, 8-byte pointers) for `funcs`, laid out from
/// [`GO_TEXT`]: two files ("/src/main.go" for main.*, "/go/src/runtime/proc.go" for the rest),
/// each function's lines 10 then 12 (from its middle), its frame size from its entry.
pub fn pclntab(funcs: &[GoFunc]) -> Vec<u8> {
    let mut names = Vec::new();
    let mut name_off = Vec::new();
    for f in funcs {
        name_off.push(names.len() as u32);
        names.extend_from_slice(f.name.as_bytes());
        names.push(0);
    }
    let files: &[u8] = b"/src/main.go\0/go/src/runtime/proc.go\0";
    let cu: [u32; 2] = [0, 13];
    // pctab: byte 0 unused (offset 0 means "no table"); per function pcsp, pcfile, pcln
    let mut pcs = vec![0u8];
    let mut tables = Vec::new();
    for f in funcs {
        let half = (f.size / 2).max(1);
        let sp = pcs.len() as u32;
        // value -1 -> frame: zigzag(frame + 1)
        pcs.extend_from_slice(&[((f.frame as u32 + 1) * 2) as u8, f.size, 0]);
        let file = pcs.len() as u32;
        let fileno = u8::from(!f.name.starts_with("main."));
        pcs.extend_from_slice(&[(fileno + 1) * 2, f.size, 0]);
        let ln = pcs.len() as u32;
        pcs.extend_from_slice(&[22, half, 4, f.size - half, 0]);
        tables.push((sp, file, ln));
    }
    let funcname = 72usize;
    let cutab = funcname + names.len();
    let filetab = cutab + 4 * cu.len();
    let pctab = filetab + files.len();
    let functab = pctab + pcs.len();
    let mut d = vec![0u8; 72];
    d[..8].copy_from_slice(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
    let hdr = [funcs.len(), 2, GO_TEXT as usize, funcname, cutab, filetab, pctab, functab];
    for (i, v) in hdr.iter().enumerate() {
        d[8 + 8 * i..16 + 8 * i].copy_from_slice(&(*v as u64).to_le_bytes());
    }
    d.extend_from_slice(&names);
    cu.iter().for_each(|v| d.extend_from_slice(&v.to_le_bytes()));
    d.extend_from_slice(files);
    d.extend_from_slice(&pcs);
    // functab: (entry offset, _func offset) per function and the end sentinel, then the _funcs
    let first = (funcs.len() + 1) * 8;
    let mut entry = 0u32;
    for i in 0..=funcs.len() {
        let off = if i < funcs.len() { first + 44 * i } else { 0 };
        d.extend_from_slice(&entry.to_le_bytes());
        d.extend_from_slice(&(off as u32).to_le_bytes());
        if let Some(f) = funcs.get(i) {
            entry += u32::from(f.size);
        }
    }
    let mut entry = 0u32;
    for (i, f) in funcs.iter().enumerate() {
        let (sp, file, ln) = tables[i];
        let mut rec = [0u32; 11];
        (rec[0], rec[1], rec[4], rec[5], rec[6]) = (entry, name_off[i], sp, file, ln);
        rec.iter().for_each(|v| d.extend_from_slice(&v.to_le_bytes()));
        entry += u32::from(f.size);
    }
    d
}

/// Entry address of function `i` of [`GO_FUNCS`] in [`pclntab`]`(GO_FUNCS)`.
pub fn go_entry(i: usize) -> u64 {
    GO_TEXT + GO_FUNCS[..i].iter().map(|f| u64::from(f.size)).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakprof::runtimes::go::pclntab::Pclntab;

    #[test]
    fn the_hand_made_pclntab_reads_back() {
        let p = Pclntab::parse(&pclntab(GO_FUNCS)).expect("parses");
        assert_eq!(p.num_funcs(), GO_FUNCS.len());
        for (i, f) in GO_FUNCS.iter().enumerate() {
            let e = go_entry(i);
            assert_eq!(p.func_for_pc(e + 1).unwrap().name, f.name);
            assert_eq!(p.sp_delta(e + 1), Some(u64::from(f.frame)), "{}", f.name);
            let (file, line) = p.file_line(e).unwrap();
            assert_eq!(file.ends_with("main.go"), f.name.starts_with("main."));
            assert_eq!(line, 10);
            assert_eq!(p.file_line(e + u64::from(f.size) - 1).unwrap().1, 12);
        }
    }
}

#[cfg(test)]
mod seed_files {
    /// The committed seed `fuzz/corpus/go_pclntab/synthetic` is the hand-made pclntab; with
    /// `LEAKPROF_FUZZ_WRITE_PCLNTAB=1 cargo test` (in `fuzz/`) it is written anew first.
    #[test]
    fn the_pclntab_seed_is_the_hand_made_table() {
        let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/go_pclntab/synthetic");
        let table = super::pclntab(super::GO_FUNCS);
        if std::env::var_os("LEAKPROF_FUZZ_WRITE_PCLNTAB").is_some() {
            std::fs::write(&seed, &table).unwrap();
        }
        assert_eq!(std::fs::read(&seed).unwrap(), table, "{} is stale: rewrite it with LEAKPROF_FUZZ_WRITE_PCLNTAB=1", seed.display());
    }
}
