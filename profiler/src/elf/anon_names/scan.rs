//! One bounded pass over `.debug_info`: every out-of-line subprogram with its name and the
//! source lines of its own calls (see the parent module).

use std::collections::HashMap;

use gimli::{AttributeValue, Reader};

use super::AnonNames;
use crate::elf::demangle;
use crate::elf::lines::normalize_path;

/// Most DIEs read in all (a 20 MB full-debug binary has about 4 million).
const MAX_DIES: usize = 16_000_000;
/// Most call lines kept per function.
const MAX_LINES: usize = 4096;

/// How the scan names a function and finds its own file from its entry address.
pub struct Lookups<'a> {
    /// The symbol there (for DIEs without a linkage name, as in line-tables-only DWARF).
    pub symbol_at: &'a dyn Fn(u64) -> Option<String>,
    /// The line-table row there: (file, line).
    pub row_at: &'a dyn Fn(u64) -> Option<(String, u32)>,
}

/// Reads the spans of the out-of-line functions of `dwarf`.
pub fn build<R: Reader>(dwarf: &gimli::Dwarf<R>, look: &Lookups<'_>) -> AnonNames {
    let mut out = AnonNames::default();
    let mut budget = MAX_DIES;
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if !scan_unit(dwarf, &unit, look, &mut out, &mut budget) {
            break;
        }
    }
    out.finish();
    out
}

/// The function being read: its name and (file index, line) of its calls.
struct Open {
    depth: isize,
    entry: u64,
    /// The call of the direct inlined child starting at `entry`: the function's own first line.
    first: Option<(u64, u32)>,
    name: Option<String>,
    calls: Vec<(u64, u32)>,
    decl: Option<(u64, u32)>,
    /// Depth of the direct inlined child being skipped (its own calls are not ours).
    inlined: Option<isize>,
}

/// Scans one unit; false when the DIE budget ran out.
fn scan_unit<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    look: &Lookups<'_>,
    out: &mut AnonNames,
    budget: &mut usize,
) -> bool {
    let mut files = Files::default();
    let mut open: Option<Open> = None;
    let mut cursor = unit.entries();
    while let Ok(Some(die)) = cursor.next_dfs() {
        let Some(left) = budget.checked_sub(1) else {
            return false;
        };
        *budget = left;
        let depth = die.depth();
        if let Some(o) = &mut open {
            if depth <= o.depth {
                close(dwarf, unit, open.take(), &mut files, look, out);
            } else {
                if o.inlined.is_some_and(|d| depth <= d) {
                    o.inlined = None;
                }
                if o.inlined.is_none() && die.tag() == gimli::DW_TAG_inlined_subroutine {
                    o.inlined = Some(depth);
                    if let Some(call) =
                        file_line(die, gimli::DW_AT_call_file, gimli::DW_AT_call_line)
                    {
                        if o.calls.len() < MAX_LINES {
                            o.calls.push(call);
                        }
                        if o.first.is_none() && entry_address(dwarf, unit, die) == Some(o.entry) {
                            o.first = Some(call);
                        }
                    }
                }
                continue;
            }
        }
        if die.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        let Some(entry) = entry_address(dwarf, unit, die) else {
            continue; // a declaration or an abstract (inlined-only) instance
        };
        let name = linkage_name(dwarf, unit, die)
            .or_else(|| (look.symbol_at)(entry))
            .or_else(|| string(dwarf, unit, die, gimli::DW_AT_name).filter(|n| n.contains("::")));
        open = Some(Open {
            depth,
            entry,
            first: None,
            name,
            calls: Vec::new(),
            decl: file_line(die, gimli::DW_AT_decl_file, gimli::DW_AT_decl_line),
            inlined: None,
        });
    }
    close(dwarf, unit, open, &mut files, look, out);
    true
}

/// Adds the span of a finished function: its own lines in its own file, which is where its
/// declaration is, or where its code starts (the outermost location at its entry address).
fn close<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    open: Option<Open>,
    files: &mut Files,
    look: &Lookups<'_>,
    out: &mut AnonNames,
) {
    let Some(Open {
        entry,
        first,
        name: Some(name),
        calls,
        decl,
        ..
    }) = open
    else {
        return;
    };
    let own = match decl.or(first) {
        Some((f, line)) => files.render(dwarf, unit, f).map(|p| (p, line)),
        None => (look.row_at)(entry),
    };
    let Some((path, line)) = own else {
        return;
    };
    let path = normalize_path(&path);
    let mut lines = vec![line];
    for (f, l) in calls {
        if files
            .render(dwarf, unit, f)
            .is_some_and(|p| normalize_path(&p) == path)
        {
            lines.push(l);
        }
    }
    out.add(&path, lines, name);
}

/// The lowest address of a DIE's code; None without code.
fn entry_address<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    die: &gimli::DebuggingInformationEntry<R>,
) -> Option<u64> {
    if die.attr_value(gimli::DW_AT_low_pc).is_none()
        && die.attr_value(gimli::DW_AT_ranges).is_none()
    {
        return None;
    }
    // gimli adds a DW_AT_high_pc size to DW_AT_low_pc unchecked: a hostile pair overflowed
    if let (Some(low), Some(AttributeValue::Udata(size))) =
        (die.attr_value(gimli::DW_AT_low_pc), die.attr_value(gimli::DW_AT_high_pc))
    {
        dwarf.attr_address(unit, low).ok()??.checked_add(size)?;
    }
    let mut ranges = dwarf.die_ranges(unit, die).ok()?;
    let mut lowest: Option<u64> = None;
    for _ in 0..1024 {
        match ranges.next() {
            Ok(Some(r)) if r.begin < r.end => {
                lowest = Some(lowest.map_or(r.begin, |l| l.min(r.begin)))
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    lowest
}

/// The demangled linkage name of a DIE or of the declaration it completes.
fn linkage_name<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    die: &gimli::DebuggingInformationEntry<R>,
) -> Option<String> {
    for at in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name] {
        if let Some(n) = string(dwarf, unit, die, at) {
            return Some(demangle(&n));
        }
    }
    for at in [gimli::DW_AT_specification, gimli::DW_AT_abstract_origin] {
        if let Some(AttributeValue::UnitRef(off)) = die.attr_value(at) {
            let target = unit.entry(off).ok()?;
            for at in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name] {
                if let Some(n) = string(dwarf, unit, &target, at) {
                    return Some(demangle(&n));
                }
            }
        }
    }
    None
}

fn string<R: Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    die: &gimli::DebuggingInformationEntry<R>,
    at: gimli::DwAt,
) -> Option<String> {
    let v = die.attr_value(at)?;
    let s = dwarf.attr_string(unit, v).ok()?;
    Some(s.to_string_lossy().ok()?.into_owned())
}

/// (file index, line) from a pair of attributes such as `DW_AT_call_file` / `DW_AT_call_line`.
fn file_line<R: Reader>(
    die: &gimli::DebuggingInformationEntry<R>,
    file: gimli::DwAt,
    line: gimli::DwAt,
) -> Option<(u64, u32)> {
    let f = match die.attr_value(file)? {
        AttributeValue::FileIndex(f) | AttributeValue::Udata(f) => f,
        AttributeValue::Data1(f) => u64::from(f),
        AttributeValue::Data2(f) => u64::from(f),
        AttributeValue::Data4(f) => u64::from(f),
        _ => return None,
    };
    let l = die.attr_value(line)?.udata_value()?;
    Some((f, u32::try_from(l).ok()?))
}

/// File paths of one unit's line program, rendered like addr2line renders them.
#[derive(Default)]
struct Files {
    rendered: HashMap<u64, Option<String>>,
}

impl Files {
    fn render<R: Reader>(
        &mut self,
        dwarf: &gimli::Dwarf<R>,
        unit: &gimli::Unit<R>,
        index: u64,
    ) -> Option<String> {
        self.rendered
            .entry(index)
            .or_insert_with(|| render(dwarf, unit, index))
            .clone()
    }
}

fn render<R: Reader>(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, index: u64) -> Option<String> {
    let header = unit.line_program.as_ref()?.header();
    let file = header.file(index)?;
    let text = |v: AttributeValue<R>| -> Option<String> {
        Some(
            dwarf
                .attr_string(unit, v)
                .ok()?
                .to_string_lossy()
                .ok()?
                .into_owned(),
        )
    };
    let mut path = match &unit.comp_dir {
        Some(d) => d.to_string_lossy().ok()?.into_owned(),
        None => String::new(),
    };
    if file.directory_index() != 0 {
        if let Some(dir) = file.directory(header).and_then(text) {
            push(&mut path, &dir);
        }
    }
    push(&mut path, &text(file.path_name())?);
    Some(path)
}

fn push(path: &mut String, p: &str) {
    if p.starts_with('/') {
        *path = p.to_owned();
    } else {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::write::{Address, AttributeValue as W, DwarfUnit, EndianVec, Sections};

    /// One compile unit with one subprogram at `low` of `size` bytes, read back.
    fn subprogram_at(low: u64, size: u64) -> Option<u64> {
        let mut dw = DwarfUnit::new(gimli::Encoding { format: gimli::Format::Dwarf32, version: 4, address_size: 8 });
        let root = dw.unit.root();
        let f = dw.unit.add(root, gimli::DW_TAG_subprogram);
        dw.unit.get_mut(f).set(gimli::DW_AT_low_pc, W::Address(Address::Constant(low)));
        dw.unit.get_mut(f).set(gimli::DW_AT_high_pc, W::Udata(size));
        let mut sections = Sections::new(EndianVec::new(gimli::LittleEndian));
        dw.write(&mut sections).unwrap();
        let dwarf = gimli::Dwarf::load(|id| -> Result<_, gimli::Error> {
            let bytes = sections.get(id).map_or(&[][..], |s| s.slice());
            Ok(gimli::EndianSlice::new(bytes, gimli::LittleEndian))
        })
        .unwrap();
        let header = dwarf.units().next().unwrap().unwrap();
        let unit = dwarf.unit(header).unwrap();
        let mut entries = unit.entries();
        entries.next_dfs().unwrap(); // the compile unit
        let die = entries.next_dfs().unwrap().unwrap().clone();
        entry_address(&dwarf, &unit, &die)
    }

    /// The elf fuzz target's input (fuzz/regressions/elf/): a function whose low_pc plus its
    /// high_pc size passed u64::MAX, an overflow panic inside gimli's die_ranges.
    #[test]
    fn a_function_past_the_end_of_the_address_space_has_no_entry() {
        assert_eq!(subprogram_at(0x1000, 0x20), Some(0x1000));
        assert_eq!(subprogram_at(u64::MAX - 4, 0x20), None);
    }
}
