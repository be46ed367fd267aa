//! Configuration: YAML file -> [`file`](mod@file) structs -> `validate` -> resolved [`model::Config`].
//!
//! The pipeline parses everything before anything binds a port, and collects every problem it finds
//! instead of stopping at the first, so one `ssv-ha check` run shows all that must be fixed.

mod error;
pub mod file;
pub mod methods;
pub mod model;
mod validate;

pub use error::{ConfigError, LoadError};
pub use model::Config;
pub use validate::parse;

use std::path::Path;

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
