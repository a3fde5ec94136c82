//! Ignore rules: sites a user knows are fine, by function pattern or by the spawning frame.
use std::path::Path;

use anyhow::{Context as _, Result};
use globset::{Glob, GlobMatcher};
use serde::Deserialize;

/// The `[ignore]` table of a config file:
/// ```toml
/// [ignore]
/// functions = ["hyper::proto::*", "*::pool_worker::*"]
/// created_by = ["my_app::metrics::start*"]
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    ignore: IgnoreTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoreTable {
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    created_by: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    text: String,
    matcher: GlobMatcher,
}

impl Rule {
    fn new(text: &str) -> Result<Rule> {
        // `*` matches across `::` (a glob without path separators)
        let glob = Glob::new(text).with_context(|| format!("bad ignore pattern `{text}`"))?;
        Ok(Rule { text: text.to_string(), matcher: glob.compile_matcher() })
    }
}

/// Compiled ignore rules.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    functions: Vec<Rule>,
    created_by: Vec<Rule>,
}

impl IgnoreRules {
    /// Rules from command-line patterns plus an optional TOML config file.
    pub fn new(functions: &[String], created_by: &[String], config: Option<&Path>) -> Result<Self> {
        match config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                Self::with_config(functions, created_by, Some((&text, &format!("config file {}", path.display()))))
            }
            None => Self::with_config(functions, created_by, None),
        }
    }

    /// Rules from command-line patterns plus the text of a TOML config file (what [`Self::new`]
    /// reads from its path).
    pub fn from_toml_str(functions: &[String], created_by: &[String], config: &str) -> Result<Self> {
        Self::with_config(functions, created_by, Some((config, "config text")))
    }

    /// `config`: the TOML text and what to call it in an error.
    fn with_config(functions: &[String], created_by: &[String], config: Option<(&str, &str)>) -> Result<Self> {
        let mut f: Vec<String> = functions.to_vec();
        let mut c: Vec<String> = created_by.to_vec();
        if let Some((text, what)) = config {
            let cfg: ConfigFile = toml::from_str(text).with_context(|| format!("{what} is not valid"))?;
            f.extend(cfg.ignore.functions);
            c.extend(cfg.ignore.created_by);
        }
        Ok(IgnoreRules {
            functions: f.iter().map(|p| Rule::new(p)).collect::<Result<_>>()?,
            created_by: c.iter().map(|p| Rule::new(p)).collect::<Result<_>>()?,
        })
    }

    /// The rule that ignores a site, if any, as `function:PATTERN` or `created_by:PATTERN`.
    pub fn matching(&self, function: &str, spawn_frames: &[String]) -> Option<String> {
        if let Some(r) = self.functions.iter().find(|r| r.matcher.is_match(function)) {
            return Some(format!("function:{}", r.text));
        }
        for frame in spawn_frames {
            if let Some(r) = self.created_by.iter().find(|r| r.matcher.is_match(frame)) {
                return Some(format!("created_by:{}", r.text));
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty() && self.created_by.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_and_created_by_patterns() {
        let r = IgnoreRules::new(&["*::pool_worker::*".into()], &["app::metrics::start*".into()], None).unwrap();
        assert_eq!(
            r.matching("app::healthy::pool_worker::{{closure}}", &[]).as_deref(),
            Some("function:*::pool_worker::*")
        );
        assert_eq!(r.matching("app::leaks::x::{{closure}}", &[]), None);
        let frames = vec!["tokio::task::spawn::spawn".to_string(), "app::metrics::start_flush".to_string()];
        assert_eq!(
            r.matching("app::leaks::x::{{closure}}", &frames).as_deref(),
            Some("created_by:app::metrics::start*")
        );
    }

    #[test]
    fn rules_from_toml_text() {
        let r = IgnoreRules::from_toml_str(&[], &["c::*".into()], "[ignore]\nfunctions = [\"a::*\"]\n").unwrap();
        assert!(r.matching("a::f", &[]).is_some());
        assert!(r.matching("z", &["c::g".into()]).is_some());
        let err = IgnoreRules::from_toml_str(&[], &[], "[x]").unwrap_err();
        assert!(format!("{err:#}").contains("config text is not valid"), "{err:#}");
    }

    #[test]
    fn config_file_rules_add_to_flags() {
        let dir = std::env::temp_dir().join(format!("leakprof-ignore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("leakprof.toml");
        std::fs::write(&p, "[ignore]\nfunctions = [\"a::*\"]\ncreated_by = [\"b::*\"]\n").unwrap();
        let r = IgnoreRules::new(&[], &[], Some(&p)).unwrap();
        assert!(r.matching("a::f", &[]).is_some());
        assert!(r.matching("z", &["b::g".into()]).is_some());
        std::fs::write(&p, "[ignore]\nfunctionz = []\n").unwrap();
        let err = format!("{:#}", IgnoreRules::new(&[], &[], Some(&p)).unwrap_err());
        assert!(err.contains("not valid"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
