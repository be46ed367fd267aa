//! What can go wrong with a configuration: one located problem ([`ConfigError`]) and why a file
//! could not be loaded ([`LoadError`]), which lists every problem found.

use std::fmt;
use std::path::PathBuf;

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
