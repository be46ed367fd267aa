//! Configuration: YAML file -> [`file`](mod@file) structs -> `validate` -> resolved [`model::Config`].
//!
//! The pipeline parses everything before anything binds a port, and collects every problem it finds
//! instead of stopping at the first, so one `ssv-ha check` run shows all that must be fixed.

pub mod file;
pub mod methods;
pub mod model;
mod validate;

pub use model::Config;
pub use validate::parse;

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration, located by its YAML path (`pools.execution.backends[1].url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} in {}:\n{}", count_errors(.errors), .path.display(), list_errors(.errors))]
    Invalid {
        path: PathBuf,
        errors: Vec<ConfigError>,
    },
}

fn count_errors(errors: &[ConfigError]) -> String {
    match errors.len() {
        1 => "1 error".to_string(),
        n => format!("{n} errors"),
    }
}

fn list_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates a configuration file. Relative paths inside it (certificates, CA files)
/// are taken relative to the file's directory.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|errors| LoadError::Invalid {
        path: path.to_path_buf(),
        errors,
    })
}
