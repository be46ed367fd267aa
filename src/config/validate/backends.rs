//! Validates a pool's `backends`: how many, each backend's name, URLs, CA file and headers, and
//! that at least one is a primary.

use super::pools::valid_name;
use super::validator::Validator;
use crate::config::file::BackendSection;
use crate::config::model::*;
use serde_yaml::Value;
use std::path::PathBuf;

impl Validator {
    /// The backends of the pool at `pool_path`; `pool_ca` is the pool's CA file, which a backend
    /// without its own `ca` takes.
    pub(super) fn backends(
        &mut self,
        pool_path: &str,
        values: Vec<Value>,
        pool_ca: Option<PathBuf>,
    ) -> Vec<BackendConfig> {
        let path = format!("{pool_path}.backends");
        if values.is_empty() {
            self.error(&path, "a pool needs at least one backend", None);
        }
        if values.len() > MAX_BACKENDS_PER_POOL {
            self.error(
                &path,
                format!(
                    "{} backends; at most {MAX_BACKENDS_PER_POOL} per pool",
                    values.len()
                ),
                None,
            );
        }
        let mut backends: Vec<BackendConfig> = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let path = format!("{path}[{i}]");
            if let Some(backend) = self.backend(&path, value, &pool_ca, &backends) {
                backends.push(backend);
            }
        }
        if !backends.is_empty() && backends.iter().all(|b| b.backup) {
            self.error(
                &path,
                "every backend is a backup",
                Some("mark at least one backend as primary (remove `backup: true`)"),
            );
        }
        backends
    }

    /// One backend at `path`, its name unique among the `earlier` ones; `None` when its shape or
    /// a URL is wrong.
    fn backend(
        &mut self,
        path: &str,
        value: Value,
        pool_ca: &Option<PathBuf>,
        earlier: &[BackendConfig],
    ) -> Option<BackendConfig> {
        let b = self.node::<BackendSection>(
            path,
            value,
            "a backend has `name`, `url`, and optionally `ws_url`, `backup`, `ca`",
        )?;
        if !valid_name(&b.name) {
            self.error(
                format!("{path}.name"),
                format!(
                    "`{}` has characters other than letters, digits, `-`, `_` and `.`",
                    b.name
                ),
                None,
            );
        }
        if earlier.iter().any(|other| other.name == b.name) {
            self.error(
                format!("{path}.name"),
                format!("backend name `{}` is used twice in this pool", b.name),
                None,
            );
        }
        let http = self.endpoint(&format!("{path}.url"), &b.url, false);
        let ws = match &b.ws_url {
            Some(ws) => self.endpoint(&format!("{path}.ws_url"), ws, true),
            None => http.clone(),
        };
        let ca = match b.ca {
            Some(ca) => Some(self.ca_file(&format!("{path}.ca"), &ca)),
            None => pool_ca.clone(),
        };
        let headers = self.headers(&format!("{path}.headers"), &b.headers);
        Some(BackendConfig {
            name: b.name,
            http: http?,
            ws: ws?,
            backup: b.backup,
            ca,
            headers,
        })
    }
}
