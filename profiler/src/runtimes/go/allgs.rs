//! Where runtime.allgs is: by symbol, or in a stripped binary from the code of runtime.allgadd.
use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind, Register};

use super::pclntab::Pclntab;
use super::read::AllgsAddr;
use crate::elf::ElfImage;

/// ELF virtual address(es) of allgs: the slice symbol, or allgptr/allglen.
pub fn by_symbols(image: &ElfImage) -> Option<AllgsAddr> {
    // data symbols are not in ElfImage's function list
    let find = |n: &str| image.symbol_address(n);
    if let Some(a) = find("runtime.allgs") {
        return Some(AllgsAddr::Slice(a));
    }
    Some(AllgsAddr::PtrLen { ptr: find("runtime.allgptr")?, len: find("runtime.allglen")? })
}

/// The instructions of a Go function (found through the pclntab); empty when unknown.
fn instructions(image: &ElfImage, pcln: &Pclntab, func: &str) -> Vec<Instruction> {
    let Some(f) = pcln.func_named(func) else {
        return Vec::new();
    };
    let Some(code) = code_of(image, &f) else {
        return Vec::new();
    };
    Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE).into_iter().collect()
}

/// The bytes of a function's code (None when its end is before its entry: a hostile table).
fn code_of<'a>(image: &'a ElfImage, f: &super::pclntab::FuncInfo) -> Option<&'a [u8]> {
    let n = f.end.checked_sub(f.entry)?;
    image.read_at_vaddr(f.entry, usize::try_from(n).ok()?)
}

/// RIP-relative data addresses used by runtime.allgadd (candidates for allgs / allglen).
pub fn allgadd_data_refs(image: &ElfImage, pcln: &Pclntab) -> Vec<u64> {
    let mut out = Vec::new();
    for ins in instructions(image, pcln, "runtime.allgadd") {
        for i in 0..ins.op_count() {
            if ins.op_kind(i) == OpKind::Memory && ins.memory_base() == Register::RIP {
                let a = ins.ip_rel_memory_address();
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Picks allgs among allgadd's data references by shape: `allgs = append(allgs, gp)` touches
/// the slice header's three words (ptr, len, cap), so allgs is the reference whose +8 and +16
/// are referenced too. Needs no live process (works before the runtime has started).
pub fn pick_slice_static(refs: &[u64]) -> Option<u64> {
    refs.iter().copied().find(|&a| refs.contains(&(a + 8)) && refs.contains(&(a + 16)))
}

/// Picks allgs among allgadd's data references by what they hold in the live process: a slice
/// header (ptr, len, cap) with 0 < len <= cap whose len another reference (allglen) repeats.
pub fn pick_slice(refs: &[u64], read: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    for &a in refs {
        let (Some(ptr), Some(len), Some(cap)) = (read(a), read(a + 8), read(a + 16)) else {
            continue;
        };
        if ptr == 0 || len == 0 || len > cap || cap > 100_000_000 {
            continue;
        }
        if refs.iter().any(|&b| b != a && b != a + 8 && read(b) == Some(len)) {
            return Some(a);
        }
    }
    None
}

/// ELF virtual addresses of the RET instructions of a function (found through the pclntab):
/// uprobes go there, never uretprobes, since Go moves goroutine stacks.
pub fn ret_addresses(image: &ElfImage, pcln: &Pclntab, func: &str) -> Vec<u64> {
    instructions(image, pcln, func)
        .into_iter()
        .filter(|ins| ins.mnemonic() == iced_x86::Mnemonic::Ret)
        .map(|ins| ins.ip())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function table whose next entry lies before this one made `end - entry` underflow.
    #[test]
    fn a_function_ending_before_it_starts_has_no_code() {
        let img = ElfImage::parse(&crate::elf::tests::elf_with_segment(0, 0x40_0000, 0xb8)).unwrap();
        let f = |entry, end| super::super::pclntab::FuncInfo { name: "runtime.allgadd".into(), entry, end };
        assert!(code_of(&img, &f(0x40_0010, 0x40_0008)).is_none());
        assert_eq!(code_of(&img, &f(0x40_0000, 0x40_0004)), Some(&[0x7f, b'E', b'L', b'F'][..]));
    }

    #[test]
    fn picks_the_slice_by_its_three_words() {
        assert_eq!(pick_slice_static(&[0x8f5028, 0x8c49a8, 0x8c49a0, 0x8c49b0, 0x8f5020]), Some(0x8c49a0));
        assert_eq!(pick_slice_static(&[0x10, 0x18]), None);
    }

    #[test]
    fn picks_the_slice_confirmed_by_allglen() {
        // memory: 0x100: allgs (ptr 0x9000, len 3, cap 4); 0x200: allglen 3; 0x300: lock word 0
        let mem = |a: u64| match a {
            0x100 => Some(0x9000),
            0x108 => Some(3),
            0x110 => Some(4),
            0x200 => Some(3),
            0x300 | 0x308 | 0x310 => Some(0),
            _ => None,
        };
        assert_eq!(pick_slice(&[0x300, 0x200, 0x100], mem), Some(0x100));
        assert_eq!(pick_slice(&[0x300, 0x100], mem), None, "unconfirmed without allglen");
    }
}
