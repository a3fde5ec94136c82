//! Turning task vtable addresses into future names and source locations.

pub mod future_name;
pub mod lines;

use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions, Instruction};

pub use future_name::{future_name, FutureName};
pub use lines::LineTable;

use crate::elf::ElfImage;
use future_name::{body_matches_type, classify_callee, walk_calls, Callee};

/// A future name with its source location when DWARF is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFuture {
    pub name: FutureName,
    /// file and line of the future's body (async fn), if known.
    pub location: Option<(String, u32)>,
}

/// Names futures of one binary, caching by poll address. Not `Sync` (see [`LineTable`]).
#[derive(Debug)]
pub struct Symbolizer {
    image: ElfImage,
    lines: Option<LineTable>,
    cache: HashMap<u64, NamedFuture>,
}

impl Symbolizer {
    /// Loads the line table (if the binary has DWARF) of `image`.
    pub fn new(image: ElfImage) -> Self {
        let lines = image
            .has_debug_info()
            .then(|| LineTable::load(image.data()))
            .flatten();
        Symbolizer {
            image,
            lines,
            cache: HashMap::new(),
        }
    }

    pub fn image(&self) -> &ElfImage {
        &self.image
    }

    pub fn lines(&self) -> Option<&LineTable> {
        self.lines.as_ref()
    }

    /// Names the future whose vtable `poll` is at ELF vaddr `poll_vaddr` (cached).
    pub fn name_future(&mut self, poll_vaddr: u64) -> &NamedFuture {
        if !self.cache.contains_key(&poll_vaddr) {
            let named = self.resolve(poll_vaddr);
            self.cache.insert(poll_vaddr, named);
        }
        &self.cache[&poll_vaddr]
    }

    fn resolve(&self, poll_vaddr: u64) -> NamedFuture {
        let mut name = future_name(&self.image, poll_vaddr);
        let Some(lines) = &self.lines else {
            return NamedFuture {
                name,
                location: None,
            };
        };
        if let Some(body) = name.body_vaddr {
            let location = lines.locate(body);
            return NamedFuture { name, location };
        }
        // The body was inlined: look for the application's frames in the inline info of the code
        // below raw::poll.
        let inlined = inlined_body(&self.image, lines, poll_vaddr, &name.function);
        let location = inlined.as_ref().map(|(_, file, line)| (file.clone(), *line));
        if let Some((function, _, _)) = inlined {
            let vague = name.function.starts_with("<unknown") || name.function.contains(" | ");
            if vague {
                name.function = function;
            }
        }
        NamedFuture { name, location }
    }
}

/// The first application frame (function, file, line) inlined into the code reachable from
/// `poll_vaddr`, preferring one that fits `known` (the name found so far).
fn inlined_body(
    image: &ElfImage,
    lines: &LineTable,
    poll_vaddr: u64,
    known: &str,
) -> Option<(String, String, u32)> {
    let mut first = None;
    for func in walk_calls(image, poll_vaddr).visited {
        let Some(sym) = image.symbols_at_addr(func).iter().max_by_key(|s| s.size) else {
            continue;
        };
        let Some(code) = image.read_at_vaddr(func, sym.size as usize) else {
            continue;
        };
        let mut decoder = Decoder::with_ip(64, code, func, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut ins);
            for frame in lines.frames(ins.ip()) {
                let (Some(f), Some(file), Some(line)) = (frame.function, frame.file, frame.line)
                else {
                    continue;
                };
                if classify_callee(&f) != Callee::Body || lines::is_library_path(&file) {
                    continue;
                }
                if body_matches_type(&f, known) {
                    return Some((f, file, line));
                }
                first.get_or_insert((f, file, line));
            }
        }
    }
    first
}
