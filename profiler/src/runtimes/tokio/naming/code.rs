//! Reading machine code of the target: branch targets and panic `Location`s referenced by a
//! function, found by disassembly (x86-64).

use std::fmt;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

use crate::elf::ElfImage;

/// Bytes decoded for a symbol whose size is unknown.
const UNSIZED_LEN: usize = 4096;

/// A source position, from DWARF or from a `core::panic::Location` compiled into the code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: Option<u32>,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        Ok(())
    }
}

/// What one function refers to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FunctionScan {
    /// Targets of direct calls/jumps (rel32) and of calls through GOT slots, leaving the function.
    pub targets: Vec<u64>,
    /// Addresses loaded with `lea reg, [rip+X]` (candidate `&'static` data such as `Location`s).
    pub data_refs: Vec<DataRef>,
    /// Addresses of the decoded instructions.
    pub instructions: Vec<u64>,
}

/// A `lea reg, [rip+X]` and the call that follows it (the callee a `&Location` is passed to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRef {
    pub addr: u64,
    pub next_call: Option<u64>,
}

/// Disassembles the function starting at `addr` (its largest symbol gives the length).
pub fn scan_function(image: &ElfImage, addr: u64) -> FunctionScan {
    let mut scan = FunctionScan::default();
    let Some(sym) = image.symbols_at_addr(addr).iter().max_by_key(|s| s.size) else {
        return scan;
    };
    let len = if sym.size > 0 {
        sym.size as usize
    } else {
        UNSIZED_LEN
    };
    let Some(code) = image
        .read_at_vaddr(addr, len)
        .or_else(|| image.read_at_vaddr(addr, len.min(256)))
    else {
        return scan;
    };
    let end = addr + code.len() as u64;
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        scan.instructions.push(ins.ip());
        let branch = matches!(
            ins.flow_control(),
            FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
        );
        let target = if branch && ins.op0_kind() == OpKind::NearBranch64 {
            Some(ins.near_branch_target())
        } else if matches!(
            ins.flow_control(),
            FlowControl::IndirectCall | FlowControl::IndirectBranch
        ) && ins.is_ip_rel_memory_operand()
        {
            image.read_pointer(ins.ip_rel_memory_address())
        } else {
            if ins.mnemonic() == Mnemonic::Lea && ins.is_ip_rel_memory_operand() {
                scan.data_refs.push(DataRef {
                    addr: ins.ip_rel_memory_address(),
                    next_call: None,
                });
            }
            None
        };
        if ins.flow_control() == FlowControl::Call
            || ins.flow_control() == FlowControl::IndirectCall
        {
            for r in scan
                .data_refs
                .iter_mut()
                .rev()
                .take_while(|r| r.next_call.is_none())
            {
                r.next_call = target;
            }
        }
        if let Some(t) = target.filter(|t| !(addr..end).contains(t)) {
            scan.targets.push(t);
        }
    }
    scan
}

/// Decodes a `core::panic::Location` (`file: &str`, `line: u32`, `col: u32`, 24 bytes) at
/// `vaddr`, if the bytes there look like one (a `.rs` path of sane length, non-zero line).
pub fn read_panic_location(image: &ElfImage, vaddr: u64) -> Option<SourceLocation> {
    let ptr = image.read_pointer(vaddr)?;
    let len = image.read_u64(vaddr + 8)?;
    let line = image.read_u32(vaddr + 16)?;
    let column = image.read_u32(vaddr + 20)?;
    if !(4..=4096).contains(&len) || line == 0 || line > 10_000_000 || column > 100_000 {
        return None;
    }
    let bytes = image.read_at_vaddr(ptr, len as usize)?;
    let file = std::str::from_utf8(bytes).ok()?;
    if !file.ends_with(".rs") || file.chars().any(char::is_control) {
        return None;
    }
    Some(SourceLocation {
        file: file.to_owned(),
        line,
        column: Some(column),
    })
}

/// A panic location referred to by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicRef {
    pub location: SourceLocation,
    /// Passed to `panic_const_async_fn_resumed*`: the location of an async fn/block itself.
    pub async_fn: bool,
}

/// The panic locations a function refers to, in code order.
pub fn panic_locations(image: &ElfImage, scan: &FunctionScan) -> Vec<PanicRef> {
    scan.data_refs
        .iter()
        .filter_map(|r| {
            let location = read_panic_location(image, r.addr)?;
            let async_fn = r
                .next_call
                .and_then(|t| image.symbols_at_addr(t).first())
                .is_some_and(|s| {
                    s.name.contains("async_fn_resumed") || s.name.contains("async_gen_resumed")
                });
            Some(PanicRef { location, async_fn })
        })
        .collect()
}

/// The location that best stands for a body among `refs` (code or breadth-first order): the first
/// async fn location, else the first one.
pub fn best_location<'a>(refs: impl IntoIterator<Item = &'a PanicRef>) -> Option<SourceLocation> {
    let mut first = None;
    for r in refs {
        if r.async_fn {
            return Some(r.location.clone());
        }
        first.get_or_insert(r);
    }
    first.map(|r| r.location.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let l = SourceLocation {
            file: "src/main.rs".into(),
            line: 6,
            column: Some(39),
        };
        assert_eq!(l.to_string(), "src/main.rs:6:39");
        let l = SourceLocation { column: None, ..l };
        assert_eq!(l.to_string(), "src/main.rs:6");
    }

    #[test]
    fn best_location_prefers_async_fn() {
        let at = |line, async_fn| PanicRef {
            location: SourceLocation {
                file: "src/a.rs".into(),
                line,
                column: Some(1),
            },
            async_fn,
        };
        let refs = [at(5, false), at(3, true), at(9, true)];
        assert_eq!(best_location(&refs).unwrap().line, 3);
        assert_eq!(best_location(&refs[..1]).unwrap().line, 5);
        assert_eq!(best_location(&[]), None);
    }

    #[inline(never)]
    fn panics_here(v: &[u8], i: usize) -> u8 {
        v[i]
    }

    /// This test binary's own code: the bounds check in `panics_here` refers to a Location
    /// in this file.
    #[test]
    fn finds_own_panic_location() {
        // black_box: an optimised build must not fold the call (and the function) away
        assert_eq!(panics_here(std::hint::black_box(&[1, 2]), std::hint::black_box(1)), 2);
        let image = ElfImage::open(std::path::PathBuf::from("/proc/self/exe")).unwrap();
        let sym = image
            .symbols_named(|n| n.ends_with("code::tests::panics_here"))
            .next()
            .expect("symbol");
        let scan = scan_function(&image, sym.addr);
        assert!(!scan.instructions.is_empty());
        let locs = panic_locations(&image, &scan);
        assert!(
            locs.iter()
                .any(|l| l.location.file.ends_with("naming/code.rs") && !l.async_fn),
            "{locs:?}"
        );
    }
}
