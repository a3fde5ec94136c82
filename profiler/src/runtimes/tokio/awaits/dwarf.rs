//! The DWARF of one executable, loaded once: its units (with type info) and their address ranges,
//! and small helpers to read a DIE's attributes by global `.debug_info` offset.

use std::sync::{Arc, OnceLock};

use gimli::{AttributeValue, DebugInfoOffset, DebuggingInformationEntry, Reader, UnitOffset};
use object::{Object, ObjectSection};

pub(super) type R = gimli::EndianArcSlice<gimli::RunTimeEndian>;
pub(super) type Die = DebuggingInformationEntry<R>;

/// Most abbreviation codes looked at per unit to tell whether it describes types.
const MAX_ABBREV_CODES: u64 = 1 << 14;
/// Most address ranges read per unit.
const MAX_RANGES_PER_UNIT: usize = 1 << 16;

/// The sections needed to read types (not `.debug_loc`, the largest, nor frame info).
const SECTIONS: [gimli::SectionId; 10] = [
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugLine,
    gimli::SectionId::DebugLineStr,
    gimli::SectionId::DebugRanges,
    gimli::SectionId::DebugRngLists,
    gimli::SectionId::DebugAddr,
    gimli::SectionId::DebugStrOffsets,
    gimli::SectionId::DebugAranges,
];

pub(super) struct Debug {
    pub dwarf: gimli::Dwarf<R>,
    /// Headers of the units that describe types, by ascending `.debug_info` offset.
    headers: Vec<gimli::UnitHeader<R>>,
    /// Each unit parsed (abbreviations, line program header) on first use.
    units: Vec<OnceLock<Option<gimli::Unit<R>>>>,
    starts: Vec<usize>,
    /// (begin, end, unit index), sorted by begin.
    ranges: Vec<(u64, u64, usize)>,
}

impl Debug {
    /// None when the file has no DWARF unit describing a structure type.
    pub fn load(data: &[u8]) -> Option<Debug> {
        let file = object::File::parse(data).ok()?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let load = |id: gimli::SectionId| -> Result<R, gimli::Error> {
            let bytes: Arc<[u8]> = SECTIONS
                .contains(&id)
                .then(|| file.section_by_name(id.name()))
                .flatten()
                .and_then(|s| s.uncompressed_data().ok())
                .map(|d| Arc::from(d.as_ref()))
                .unwrap_or_else(|| Arc::from(&[][..]));
            Ok(gimli::EndianArcSlice::new(bytes, endian))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        let mut headers = Vec::new();
        let mut all = dwarf.units();
        while let Ok(Some(header)) = all.next() {
            if dwarf
                .abbreviations(&header)
                .is_ok_and(|a| describes_types(&a))
            {
                headers.push(header);
            }
        }
        if headers.is_empty() {
            return None;
        }
        headers.sort_by_key(|h| h.offset().0);
        let starts = headers.iter().map(|h| h.offset().0).collect();
        let mut ranges = Vec::new();
        for (i, header) in headers.iter().enumerate() {
            // Parsed for its root DIE's ranges, then dropped: kept units are parsed on demand.
            let Ok(unit) = dwarf.unit(header.clone()) else {
                continue;
            };
            // gimli adds the root's DW_AT_high_pc size to DW_AT_low_pc unchecked: a hostile
            // pair would overflow (the same guard as elf/anon_names/scan.rs)
            if !root_pc_range_fits(&dwarf, &unit) {
                continue;
            }
            let Ok(mut it) = dwarf.unit_ranges(&unit) else {
                continue;
            };
            let mut n = 0;
            while let Ok(Some(r)) = it.next() {
                n += 1;
                if n > MAX_RANGES_PER_UNIT {
                    break;
                }
                if r.begin < r.end {
                    ranges.push((r.begin, r.end, i));
                }
            }
        }
        ranges.sort_unstable();
        let units = headers.iter().map(|_| OnceLock::new()).collect();
        Some(Debug {
            dwarf,
            headers,
            units,
            starts,
            ranges,
        })
    }

    /// Unit `u`, parsed on first use (None when it does not parse).
    pub fn unit(&self, u: usize) -> Option<&gimli::Unit<R>> {
        let header = self.headers.get(u)?;
        self.units
            .get(u)?
            .get_or_init(|| self.dwarf.unit(header.clone()).ok())
            .as_ref()
    }

    /// Indices of the units whose code covers `vaddr` (several with identical-code folding).
    pub fn units_at(&self, vaddr: u64) -> Vec<usize> {
        let end = self.ranges.partition_point(|r| r.0 <= vaddr);
        let mut out: Vec<usize> = self.ranges[..end]
            .iter()
            .filter(|r| vaddr < r.1)
            .map(|r| r.2)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The unit holding global offset `global`, and the offset inside it.
    pub fn locate(&self, global: u64) -> Option<(usize, UnitOffset)> {
        let global = usize::try_from(global).ok()?;
        let i = self
            .starts
            .partition_point(|&s| s <= global)
            .checked_sub(1)?;
        let off = DebugInfoOffset(global).to_unit_offset(self.headers.get(i)?)?;
        Some((i, off))
    }

    /// Global offset of `off` in unit `u`.
    pub fn global(&self, u: usize, off: UnitOffset) -> Option<u64> {
        Some(off.to_debug_info_offset(self.headers.get(u)?)?.0 as u64)
    }

    /// The DIE at global offset `global`, with its unit index.
    pub fn entry(&self, global: u64) -> Option<(usize, Die)> {
        let (u, off) = self.locate(global)?;
        Some((u, self.unit(u)?.entry(off).ok()?))
    }

    /// A string attribute of `die` in unit `u`.
    pub fn string(&self, u: usize, die: &Die, at: gimli::DwAt) -> Option<String> {
        let value = die.attr_value(at)?;
        let s = self.dwarf.attr_string(self.unit(u)?, value).ok()?;
        Some(s.to_string_lossy().ok()?.into_owned())
    }

    /// A reference attribute (`DW_AT_type`, ...) of `die` in unit `u` as a global offset.
    pub fn reference(&self, u: usize, die: &Die, at: gimli::DwAt) -> Option<u64> {
        match die.attr_value(at)? {
            AttributeValue::UnitRef(off) => self.global(u, off),
            AttributeValue::DebugInfoRef(off) => Some(off.0 as u64),
            _ => None,
        }
    }

    /// The path of source file `index` of unit `u` (`DW_AT_decl_file`), directory joined.
    pub fn file_name(&self, u: usize, index: u64) -> Option<String> {
        let unit = self.unit(u)?;
        let header = unit.line_program.as_ref()?.header();
        let file = header.file(index)?;
        let text = |v: AttributeValue<R>| -> Option<String> {
            let s = self.dwarf.attr_string(unit, v).ok()?;
            Some(s.to_string_lossy().ok()?.into_owned())
        };
        let name = text(file.path_name())?;
        if name.starts_with('/') {
            return Some(name);
        }
        let mut dir = file.directory(header).and_then(text).unwrap_or_default();
        if !dir.starts_with('/') {
            if let Some(comp) = unit
                .comp_dir
                .as_ref()
                .and_then(|c| c.to_string_lossy().ok())
            {
                dir = if dir.is_empty() {
                    comp.into_owned()
                } else {
                    format!("{comp}/{dir}")
                };
            }
        }
        Some(if dir.is_empty() {
            name
        } else {
            format!("{}/{name}", dir.trim_end_matches('/'))
        })
    }
}

/// True when the unit's abbreviations include a structure type (full debug info, not line tables
/// only).
fn describes_types(abbrevs: &gimli::Abbreviations) -> bool {
    (1..MAX_ABBREV_CODES)
        .map_while(|code| abbrevs.get(code))
        .any(|a| a.tag() == gimli::DW_TAG_structure_type)
}

/// An unsigned constant attribute (`DW_AT_byte_size`, `DW_AT_data_member_location`, ...).
pub(super) fn udata(die: &Die, at: gimli::DwAt) -> Option<u64> {
    die.attr(at)?.udata_value()
}

/// A discriminant value as raw bits (negative values sign-extended to 64 bits).
pub(super) fn discr_bits(die: &Die) -> Option<u64> {
    let v = die.attr_value(gimli::DW_AT_discr_value)?;
    v.udata_value()
        .or_else(|| v.sdata_value().map(|s| s as u64))
}

/// False when the unit's root DIE has a low pc and a high pc given as a size whose sum passes
/// u64::MAX.
fn root_pc_range_fits<R: gimli::Reader>(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>) -> bool {
    let mut entries = unit.entries();
    let Ok(Some(root)) = entries.next_dfs() else { return true };
    match (root.attr_value(gimli::DW_AT_low_pc), root.attr_value(gimli::DW_AT_high_pc)) {
        (Some(low), Some(gimli::AttributeValue::Udata(size))) => {
            dwarf.attr_address(unit, low).ok().flatten().is_none_or(|a| a.checked_add(size).is_some())
        }
        _ => true,
    }
}
