//! Where the fields of runtime.g are, and what each waitReason number means, per Go version.
//! Read from the target's own DWARF when it has it; else from tables generated from each
//! toolchain's DWARF (gen.rs, `cargo xtask go-tables`; see tables.rs).
use std::collections::BTreeMap;

use gimli::{AttributeValue, EndianSlice, RunTimeEndian};
use object::{Object as _, ObjectSection as _};

use crate::runtimes::go::read::GLayout;

/// The g layout and waitReason names of one Go version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLayout {
    pub g: GLayout,
    /// sizeof(runtime.g) (DW_AT_byte_size): how much to read per g.
    pub g_size: u64,
    /// waitReason number -> name without the prefix ("ChanReceive", "Select", ...).
    pub wait_reasons: BTreeMap<u8, String>,
}

impl GoLayout {
    pub fn wait_reason(&self, n: u8) -> String {
        self.wait_reasons
            .get(&n)
            .cloned()
            .unwrap_or_else(|| format!("waitReason{n}"))
    }
}

/// Reads runtime.g's member offsets and the runtime.waitReason* constants from DWARF.
pub fn from_dwarf(data: &[u8]) -> Option<GoLayout> {
    let file = object::File::parse(data).ok()?;
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(std::borrow::Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, RunTimeEndian::Little));
    let mut fields: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut size = None;
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        let mut in_g = false;
        let mut g_depth = 0isize;
        while let Ok(Some(e)) = entries.next_dfs() {
            let depth = e.depth();
            if in_g && depth <= g_depth {
                in_g = false;
            }
            let name = e
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
                .map(|s| s.to_string_lossy().into_owned());
            match e.tag() {
                gimli::DW_TAG_structure_type if name.as_deref() == Some("runtime.g") => {
                    in_g = true;
                    g_depth = depth;
                    size = e
                        .attr_value(gimli::DW_AT_byte_size)
                        .and_then(|v| v.udata_value());
                }
                gimli::DW_TAG_member if in_g => {
                    let off = match e.attr_value(gimli::DW_AT_data_member_location) {
                        Some(AttributeValue::Udata(v)) => Some(v),
                        Some(AttributeValue::Data1(v)) => Some(v.into()),
                        Some(AttributeValue::Data2(v)) => Some(v.into()),
                        Some(AttributeValue::Data4(v)) => Some(v.into()),
                        Some(AttributeValue::Data8(v)) => Some(v),
                        Some(AttributeValue::Sdata(v)) => Some(v as u64),
                        _ => None,
                    };
                    if let (Some(n), Some(o)) = (name, off) {
                        fields.insert(n, o);
                    }
                }
                gimli::DW_TAG_constant => {
                    let Some(n) = name
                        .as_deref()
                        .and_then(|n| n.strip_prefix("runtime.waitReason"))
                    else {
                        continue;
                    };
                    let v = match e.attr_value(gimli::DW_AT_const_value) {
                        Some(AttributeValue::Udata(v)) => v,
                        Some(AttributeValue::Sdata(v)) => v as u64,
                        Some(AttributeValue::Data1(v)) => v.into(),
                        Some(AttributeValue::Data2(v)) => v.into(),
                        _ => continue,
                    };
                    if let Ok(b) = u8::try_from(v) {
                        reasons.insert(b, n.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let f = |n: &str| fields.get(n).copied();
    Some(GoLayout {
        g: GLayout {
            atomicstatus: f("atomicstatus")?,
            goid: f("goid")?,
            waitsince: f("waitsince")?,
            waitreason: f("waitreason")?,
            gopc: f("gopc")?,
            startpc: f("startpc")?,
            sched: f("sched").unwrap_or(crate::runtimes::go::read::SCHED_OFFSET),
        },
        g_size: size?,
        wait_reasons: reasons,
    })
}

pub use super::gen::to_table_source;
