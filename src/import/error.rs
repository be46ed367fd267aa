//! The import's error: what the haproxy file must provide for an import to make sense.

/// What the input must provide for an import to make sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("{0}")]
    Unusable(String),
}
