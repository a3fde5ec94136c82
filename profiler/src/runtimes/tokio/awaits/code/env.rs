//! What the machine code refers to, as the register pass ([`super::flow`]) and the machine
//! recognition ([`super::machine`]) read it: jump tables, GOT slots, `core::panic::Location`s and
//! symbol names. [`ImageEnv`] reads an executable, [`SliceEnv`] one byte slice (fuzzing).

use super::flow::Val;
use crate::elf::ElfImage;
use crate::runtimes::tokio::naming::code::{read_panic_location, SourceLocation};

/// What the code refers to: the executable's data, and which calls never return.
pub trait Env {
    /// The relocated pointer at `vaddr` (a GOT slot).
    fn pointer(&self, vaddr: u64) -> Option<u64>;
    /// A jump-table entry.
    fn read_i32(&self, vaddr: u64) -> Option<i32>;
    /// The `core::panic::Location` at `vaddr`, if the bytes there are one.
    fn panic_location(&self, vaddr: u64) -> Option<SourceLocation>;
    /// The (demangled) names of the symbols at `vaddr` (none in a stripped binary).
    fn symbol_names(&self, vaddr: u64) -> Vec<String>;
    /// True when a call to `callee` with these first three arguments never returns (a panic:
    /// by the callee's name, or a `core::panic::Location` passed to it).
    fn noreturn(&self, callee: Option<u64>, args: &[Val]) -> bool {
        let named = callee.is_some_and(|c| {
            self.symbol_names(c).iter().any(|s| NORETURN.iter().any(|n| s.starts_with(n) || s == n.trim_end_matches(':')))
        });
        named || args.iter().any(|a| matches!(a, Val::Const(x) if self.panic_location(*x).is_some()))
    }
}

/// Functions that never return, by name (with symbols).
const NORETURN: &[&str] = &[
    "core::panicking::",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::result::unwrap_failed",
    "core::slice::index::",
    "alloc::alloc::handle_alloc_error",
    "alloc::raw_vec::handle_error",
    "alloc::raw_vec::capacity_overflow",
    "std::panicking::begin_panic",
    "std::process::abort",
    "_Unwind_Resume",
    "abort",
];

/// The executable itself.
pub struct ImageEnv<'a>(pub &'a ElfImage);

impl Env for ImageEnv<'_> {
    fn pointer(&self, vaddr: u64) -> Option<u64> {
        self.0.read_pointer(vaddr)
    }

    fn read_i32(&self, vaddr: u64) -> Option<i32> {
        Some(i32::from_le_bytes(self.0.read_at_vaddr(vaddr, 4)?.try_into().ok()?))
    }

    fn panic_location(&self, vaddr: u64) -> Option<SourceLocation> {
        read_panic_location(self.0, vaddr)
    }

    fn symbol_names(&self, vaddr: u64) -> Vec<String> {
        self.0.symbols_at_addr(vaddr).iter().map(|s| s.name.clone()).collect()
    }
}

/// Code and data from one byte slice mapped at `base` (no symbols, no relocations): for
/// fuzzing the analysis with arbitrary bytes.
pub struct SliceEnv<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl Env for SliceEnv<'_> {
    fn pointer(&self, vaddr: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.slice(vaddr, 8)?.try_into().ok()?))
    }

    fn read_i32(&self, vaddr: u64) -> Option<i32> {
        Some(i32::from_le_bytes(self.slice(vaddr, 4)?.try_into().ok()?))
    }

    fn panic_location(&self, vaddr: u64) -> Option<SourceLocation> {
        // (file pointer, length, line, column) as in `core::panic::Location`
        let ptr = self.pointer(vaddr)?;
        let len = usize::try_from(self.pointer(vaddr.checked_add(8)?)?).ok()?.min(4096);
        let line = self.read_i32(vaddr.checked_add(16)?)? as u32;
        let file = std::str::from_utf8(self.slice(ptr, len)?).ok()?;
        (line > 0 && file.ends_with(".rs")).then(|| SourceLocation { file: file.to_owned(), line, column: None })
    }

    fn symbol_names(&self, _: u64) -> Vec<String> {
        Vec::new()
    }
}

impl SliceEnv<'_> {
    fn slice(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(vaddr.checked_sub(self.base)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Jump-table entries, panic locations and symbol names by address.
    #[derive(Default)]
    pub struct TestEnv {
        pub table: HashMap<u64, i32>,
        pub locations: HashMap<u64, SourceLocation>,
        pub names: HashMap<u64, String>,
    }

    impl Env for TestEnv {
        fn pointer(&self, _: u64) -> Option<u64> {
            None
        }
        fn read_i32(&self, vaddr: u64) -> Option<i32> {
            self.table.get(&vaddr).copied()
        }
        fn panic_location(&self, vaddr: u64) -> Option<SourceLocation> {
            self.locations.get(&vaddr).cloned()
        }
        fn symbol_names(&self, vaddr: u64) -> Vec<String> {
            self.names.get(&vaddr).cloned().into_iter().collect()
        }
    }
}
