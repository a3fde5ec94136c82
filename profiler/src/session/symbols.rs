//! The executable's symbols and DWARF from a separate debug file: `--symbols FILE`, or where
//! Linux tools look (build id, `.gnu_debuglink`), when the executable lacks them.
use anyhow::{anyhow, Result};

use crate::{
    elf::{debug_file, ElfImage},
    options::RunOptions,
    target::Target,
};

/// The image with its debug file's symbols and DWARF, and the debug file used, if any.
pub fn with_debug_file(opts: &RunOptions, target: &Target, image: ElfImage) -> Result<(ElfImage, Option<String>)> {
    if let Some(path) = &opts.symbols {
        let bytes = std::fs::read(path).map_err(|e| anyhow!("--symbols {}: cannot read it: {e}", path.display()))?;
        let merged = image.with_debug_file(bytes, path).map_err(|e| anyhow!("--symbols: {e}"))?;
        return Ok((merged, Some(path.display().to_string())));
    }
    if image.has_symtab() && image.has_debug_info() {
        return Ok((image, None));
    }
    // a live target's files as it sees them (its mount namespace); a core's: this machine's
    let root = std::path::PathBuf::from(target.space.pid().map_or_else(|| "/".to_string(), |pid| format!("/proc/{pid}/root")));
    match debug_file::find(image.data(), &target.exe, &root, &debug_file::debug_root()) {
        Some((path, bytes)) => match image.with_debug_file(bytes, &path) {
            Ok(merged) => Ok((merged, Some(path.display().to_string()))),
            Err(_) => Ok((image, None)),
        },
        None => Ok((image, None)),
    }
}
