//! Turning task vtable addresses into future names and source locations.

use std::collections::{HashMap, HashSet};

pub use super::code::SourceLocation;
pub use super::future_name::{future_name, FutureName};
pub use crate::elf::lines::LineTable;

use crate::elf::ElfImage;
use crate::runtimes::tokio::probes::plan::{classify, Role};
use super::{code, future_name::walk_calls};

/// Instructions looked up in DWARF when searching for an inlined body.
const MAX_INLINE_LOOKUPS: usize = 4_000;

/// A future name with its source location when DWARF is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFuture {
    pub name: FutureName,
    /// (file, line) of the future's body (async fn): the panic location found in its code
    /// (`name.location`, which also has the column), else the DWARF line of the body's entry when
    /// the body is a function of its own, else the first application line inlined below
    /// `raw::poll` (DWARF).
    pub location: Option<(String, u32)>,
}

/// Names futures of one binary, caching by poll address. Not `Sync` (see [`LineTable`]).
#[derive(Debug)]
pub struct Symbolizer {
    image: ElfImage,
    lines: Option<LineTable>,
    cache: HashMap<u64, NamedFuture>,
    /// Panic locations of the futures named unambiguously, by type (built on first need).
    known_locations: Option<HashMap<String, HashSet<(String, u32)>>>,
}

impl Symbolizer {
    /// Loads the line table (if the binary has DWARF) of `image`.
    pub fn new(image: ElfImage) -> Self {
        let lines = image
            .has_debug_info()
            .then(|| LineTable::load(image.dwarf_data()))
            .flatten();
        Symbolizer {
            image,
            lines,
            cache: HashMap::new(),
            known_locations: None,
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

    fn resolve(&mut self, poll_vaddr: u64) -> NamedFuture {
        let mut name = future_name(&self.image, poll_vaddr);
        if let (false, Some(loc)) = (name.candidates.is_empty(), name.location.clone()) {
            let known = self.known_locations();
            if let Some(pick) = disambiguate(&name.candidates, (&loc.file, loc.line), known) {
                name.function = pick;
                name.candidates.clear();
            }
        }
        let dwarf = |vaddr| {
            let (file, line) = self.lines.as_ref()?.locate(vaddr)?;
            Some(SourceLocation {
                file,
                line,
                column: None,
            })
        };
        // The panic location first: the same string with and without debug info.
        let location = name
            .location
            .clone()
            .or_else(|| name.body_vaddr.and_then(dwarf))
            .or_else(|| {
                let lines = self.lines.as_ref()?;
                inlined_location(&self.image, lines, poll_vaddr)
            })
            .map(|l| (l.file, l.line));
        NamedFuture { name, location }
    }

    /// Panic locations of every `raw::poll` whose type is unambiguous, by type.
    fn known_locations(&mut self) -> &HashMap<String, HashSet<(String, u32)>> {
        let image = &self.image;
        self.known_locations.get_or_insert_with(|| {
            let mut polls: Vec<u64> = image
                .symbols_named(|n| classify(n) == Some(Role::RawPoll))
                .map(|s| s.addr)
                .collect();
            polls.dedup();
            let mut known: HashMap<String, HashSet<(String, u32)>> = HashMap::new();
            for addr in polls {
                let n = future_name(image, addr);
                if let (true, Some(loc)) = (n.candidates.is_empty(), n.location) {
                    known
                        .entry(n.function)
                        .or_default()
                        .insert((loc.file, loc.line));
                }
            }
            known
        })
    }
}

/// Picks among folded candidate types the one that fits `location`: the only candidate known
/// (from other vtables) to be at that location, else the only one not known to be elsewhere.
pub fn disambiguate(
    candidates: &[String],
    location: (&str, u32),
    known: &HashMap<String, HashSet<(String, u32)>>,
) -> Option<String> {
    let here = |c: &&String| {
        known
            .get(*c)
            .is_some_and(|l| l.iter().any(|(f, n)| f == location.0 && *n == location.1))
    };
    let at_here: Vec<&String> = candidates.iter().filter(here).collect();
    if let [one] = at_here.as_slice() {
        return Some((*one).clone());
    }
    let possible: Vec<&String> = candidates
        .iter()
        .filter(|c| here(c) || known.get(*c).is_none_or(HashSet::is_empty))
        .collect();
    match possible.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// The first application line (by file path) inlined into the code reachable from `poll_vaddr`.
fn inlined_location(
    image: &ElfImage,
    lines: &LineTable,
    poll_vaddr: u64,
) -> Option<SourceLocation> {
    let mut budget = MAX_INLINE_LOOKUPS;
    for func in walk_calls(image, poll_vaddr).visited {
        for ip in code::scan_function(image, func).instructions {
            budget = budget.checked_sub(1)?;
            let found = lines.frames(ip).into_iter().find_map(|f| {
                let file = f.file.filter(|file| !crate::elf::lines::is_library_path(file))?;
                Some(SourceLocation {
                    file,
                    line: f.line?,
                    column: None,
                })
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disambiguation_by_location() {
        let cands = vec![
            "app::a::{{closure}}".to_string(),
            "app::b::{{closure}}".to_string(),
        ];
        let mut known = HashMap::new();
        known.insert(
            "app::b::{{closure}}".to_string(),
            HashSet::from([("src/main.rs".to_string(), 25)]),
        );
        // b is known to be at line 25: a future at line 6 must be a, one at 25 is b.
        assert_eq!(
            disambiguate(&cands, ("src/main.rs", 6), &known).as_deref(),
            Some("app::a::{{closure}}")
        );
        assert_eq!(
            disambiguate(&cands, ("src/main.rs", 25), &known).as_deref(),
            Some("app::b::{{closure}}")
        );
        assert_eq!(
            disambiguate(&cands, ("src/main.rs", 6), &HashMap::new()),
            None
        );
    }
}
