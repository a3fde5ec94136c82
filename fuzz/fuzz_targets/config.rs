//! The `--config` TOML file: `[ignore] functions = [..], created_by = [..]` globs.
#![no_main]
use leakprof::ignore::IgnoreRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rules) = IgnoreRules::from_toml_str(&[], &[], &text) {
        let _ = rules.matching("app::worker::{{closure}}", &["app::main".to_string(), "tokio::spawn".to_string()]);
    }
});
