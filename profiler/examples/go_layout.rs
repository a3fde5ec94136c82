//! Prints tables.rs entries (g layout and waitReason names) from Go binaries with DWARF:
//! `cargo run -p profiler --example go_layout -- BINARY...`
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let version = leakprof::runtimes::go::buildinfo::go_version(&data)
            .unwrap_or_else(|| panic!("{path}: not a Go 1.18+ binary"));
        let layout = leakprof::runtimes::go::layout::from_dwarf(&data)
            .unwrap_or_else(|| panic!("{path}: no runtime.g in its DWARF (built with -w?)"));
        print!("{}", leakprof::runtimes::go::layout::to_table_source(&version, &layout));
    }
}
