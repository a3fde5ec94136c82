//! The layout of one DWARF structure type: its members and its variant part (Rust enums,
//! including async state machines), read from the DIE's children.

use super::decode::{DiscrLoc, DiscrValue};
use super::dwarf::{discr_bits, udata, Debug};

/// Most children read per structure or variant part.
const MAX_CHILDREN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub name: String,
    /// Global offset of the member's type.
    pub ty: Option<u64>,
    pub offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Variant {
    pub value: DiscrValue,
    pub member: Member,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VariantPart {
    pub discr: DiscrLoc,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// `DW_AT_name` (unqualified, e.g. `{async_fn_env#0}`, `Receiver<u64>`).
    pub name: String,
    pub tag: gimli::DwTag,
    pub members: Vec<Member>,
    pub variants: Option<VariantPart>,
}

impl Layout {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The name of the type at `global` and its tag (any type, not only structures).
pub(super) fn type_name(debug: &Debug, global: u64) -> Option<(String, gimli::DwTag)> {
    let (u, die) = debug.entry(global)?;
    Some((debug.string(u, &die, gimli::DW_AT_name)?, die.tag()))
}

/// The type a pointer (or reference) type at `global` points to.
pub(super) fn pointee(debug: &Debug, global: u64) -> Option<u64> {
    let (u, die) = debug.entry(global)?;
    matches!(
        die.tag(),
        gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type
    )
    .then(|| debug.reference(u, &die, gimli::DW_AT_type))
    .flatten()
}

/// The `Cell<T, S>` a `Harness<T, S>` structure points to (`cell: NonNull<Cell>` whose
/// `pointer` is a `*const Cell`).
pub(super) fn cell_of_harness(debug: &Debug, harness: u64) -> Option<u64> {
    let non_null = read_layout(debug, harness)?.member("cell")?.ty?;
    let pointer = read_layout(debug, non_null)?.member("pointer")?.ty?;
    let cell = pointee(debug, pointer)?;
    let (name, _) = type_name(debug, cell)?;
    name.starts_with("Cell<").then_some(cell)
}

/// The layout of the structure (or union) at `global`; None for other DIEs.
pub(super) fn read_layout(debug: &Debug, global: u64) -> Option<Layout> {
    let (u, off) = debug.locate(global)?;
    let unit = debug.unit(u)?;
    let mut tree = unit.entries_tree(Some(off)).ok()?;
    let root = tree.root().ok()?;
    let tag = root.entry().tag();
    if !matches!(tag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type) {
        return None;
    }
    let name = debug
        .string(u, root.entry(), gimli::DW_AT_name)
        .unwrap_or_default();
    let mut layout = Layout {
        name,
        tag,
        members: Vec::new(),
        variants: None,
    };
    let mut children = root.children();
    let mut n = 0;
    while let Ok(Some(child)) = children.next() {
        n += 1;
        if n > MAX_CHILDREN {
            break;
        }
        match child.entry().tag() {
            gimli::DW_TAG_member => {
                if let Some(m) = member(debug, u, child.entry()) {
                    layout.members.push(m);
                }
            }
            gimli::DW_TAG_variant_part if layout.variants.is_none() => {
                layout.variants = variant_part(debug, u, child);
            }
            _ => {}
        }
    }
    Some(layout)
}

fn member(debug: &Debug, u: usize, die: &super::dwarf::Die) -> Option<Member> {
    let file = match die.attr_value(gimli::DW_AT_decl_file) {
        Some(gimli::AttributeValue::FileIndex(i)) => debug.file_name(u, i),
        Some(v) => v.udata_value().and_then(|i| debug.file_name(u, i)),
        None => None,
    };
    Some(Member {
        name: debug.string(u, die, gimli::DW_AT_name).unwrap_or_default(),
        ty: debug.reference(u, die, gimli::DW_AT_type),
        // A missing location is offset 0 (unions); a location expression is not supported.
        offset: match die.attr_value(gimli::DW_AT_data_member_location) {
            None => 0,
            Some(v) => v.udata_value()?,
        },
        file,
        line: udata(die, gimli::DW_AT_decl_line).and_then(|l| u32::try_from(l).ok()),
    })
}

fn variant_part(
    debug: &Debug,
    u: usize,
    node: gimli::EntriesTreeNode<'_, '_, super::dwarf::R>,
) -> Option<VariantPart> {
    let discr_at = debug.reference(u, node.entry(), gimli::DW_AT_discr);
    let mut discr = None;
    let mut variants = Vec::new();
    let mut children = node.children();
    let mut n = 0;
    while let Ok(Some(child)) = children.next() {
        n += 1;
        if n > MAX_CHILDREN {
            break;
        }
        let die = child.entry();
        match die.tag() {
            gimli::DW_TAG_member if debug.global(u, die.offset()) == discr_at => {
                let m = member(debug, u, die)?;
                let (_, ty) = debug.entry(m.ty?)?;
                let size = udata(&ty, gimli::DW_AT_byte_size)?;
                discr = Some(DiscrLoc {
                    offset: m.offset,
                    size: u8::try_from(size).ok()?,
                });
            }
            gimli::DW_TAG_variant => {
                let value = if die.attr(gimli::DW_AT_discr_value).is_some() {
                    discr_bits(die).map_or(DiscrValue::Unknown, DiscrValue::Is)
                } else if die.attr(gimli::DW_AT_discr_list).is_some() {
                    DiscrValue::Unknown
                } else {
                    DiscrValue::Default
                };
                let mut grand = child.children();
                while let Ok(Some(g)) = grand.next() {
                    if g.entry().tag() == gimli::DW_TAG_member {
                        if let Some(member) = member(debug, u, g.entry()) {
                            variants.push(Variant { value, member });
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Some(VariantPart {
        discr: discr?,
        variants,
    })
}
