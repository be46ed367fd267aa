//! The error-collecting `Validator` and the helpers every section shares: each check records its
//! problem with the YAML path and a hint and goes on, so one run lists everything to fix.

use crate::config::error::ConfigError;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Collects the errors of one configuration; `base` is the directory relative file paths start from.
pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
    pub(super) base: PathBuf,
}

impl Validator {
    pub(super) fn error(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    /// Deserializes one YAML node, recording a shape error at `path`.
    pub(super) fn node<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: Value,
        hint: &str,
    ) -> Option<T> {
        match serde_yaml::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e.to_string(), Some(hint));
                None
            }
        }
    }

    /// A file the server writes (`upgrade_socket`, `pid_file`): relative to the config's
    /// directory, or `default` in the system's temporary directory.
    pub(super) fn file_or_temp(&self, file: Option<PathBuf>, default: &str) -> PathBuf {
        file.map(|p| self.base.join(p))
            .unwrap_or_else(|| std::env::temp_dir().join(default))
    }

    pub(super) fn optional_section<T: DeserializeOwned + Default>(
        &mut self,
        path: &str,
        value: Value,
    ) -> T {
        if value.is_null() {
            return T::default();
        }
        self.node(
            path,
            value,
            "see the configuration reference in docs/configuration.md",
        )
        .unwrap_or_default()
    }

    pub(super) fn positive(&mut self, path: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.error(path, "must be at least 1", None);
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        text: Option<String>,
        default: Duration,
    ) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    path,
                    format!("`{text}` is not a duration: {e}"),
                    Some("write it like 500ms, 5s, 2m or 1h"),
                );
                default
            }
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        path: &str,
        text: Option<String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.error(path, "must be longer than zero", None);
            return default;
        }
        d
    }

    pub(super) fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not an IP address with a port"),
                    Some("write it like 0.0.0.0:8080 or 127.0.0.1:8405; host names are not allowed here"),
                );
                None
            }
        }
    }

    pub(super) fn list(&mut self, path: &str, value: Value) -> Vec<Value> {
        match value {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items,
            _ => {
                self.error(
                    path,
                    "expected a list",
                    Some("write each entry on its own line starting with `- `"),
                );
                Vec::new()
            }
        }
    }
}
