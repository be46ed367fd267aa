//! Validates secrets (`${NAME}` from the environment), `auth` sections and backend `headers`.

use super::validator::Validator;
use crate::config::file::AuthSection;
use crate::config::model::*;
use std::collections::BTreeMap;

impl Validator {
    /// A secret from the config: `${NAME}` is read from the environment variable NAME.
    fn secret(&mut self, path: &str, value: &str) -> Option<String> {
        let Some(var) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
            return Some(value.to_string());
        };
        match std::env::var(var) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(
                    path,
                    format!("environment variable `{var}` is not set"),
                    Some("export it before starting ssv-ha"),
                );
                None
            }
        }
    }

    pub(super) fn auth(&mut self, path: &str, section: Option<AuthSection>) -> Option<Auth> {
        use base64::Engine;
        let section = section?;
        let mut accepted = Vec::new();
        let mut challenge = "Bearer";
        if let Some(token) = &section.bearer {
            if let Some(token) = self.secret(&format!("{path}.bearer"), token) {
                match http::HeaderValue::from_str(&format!("Bearer {token}")) {
                    Ok(v) if !token.is_empty() => accepted.push(v),
                    _ => self.error(
                        format!("{path}.bearer"),
                        "the token is empty or has characters a header cannot carry",
                        None,
                    ),
                }
            }
        }
        if let Some(basic) = &section.basic {
            let user = self.secret(&format!("{path}.basic.user"), &basic.user);
            let password = self.secret(&format!("{path}.basic.password"), &basic.password);
            if let (Some(user), Some(password)) = (user, password) {
                if user.contains(':') || user.is_empty() {
                    self.error(
                        format!("{path}.basic.user"),
                        "the user must be non-empty and without `:`",
                        None,
                    );
                }
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                if let Ok(v) = http::HeaderValue::from_str(&format!("Basic {encoded}")) {
                    accepted.push(v);
                }
                challenge = "Basic realm=\"ssv-ha\"";
            }
        }
        if section.bearer.is_none() && section.basic.is_none() {
            self.error(
                path,
                "give `bearer` or `basic`",
                Some("auth: { bearer: \"${ADMIN_TOKEN}\" }"),
            );
        }
        for v in &mut accepted {
            v.set_sensitive(true);
        }
        Some(Auth {
            accepted,
            challenge,
        })
    }

    pub(super) fn headers(
        &mut self,
        path: &str,
        headers: &BTreeMap<String, String>,
    ) -> Vec<(http::HeaderName, http::HeaderValue)> {
        const RESERVED: &[&str] = &[
            "host",
            "connection",
            "upgrade",
            "transfer-encoding",
            "content-length",
            "te",
            "trailer",
            "keep-alive",
            "proxy-connection",
        ];
        let mut out = Vec::new();
        for (name, value) in headers {
            let at = format!("{path}.{name}");
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.error(at, format!("`{name}` is not a header name"), None);
                continue;
            };
            if RESERVED.contains(&header.as_str()) {
                self.error(
                    at,
                    format!("`{name}` is set by the gateway itself"),
                    Some("headers are for credentials and the like"),
                );
                continue;
            }
            let Some(value) = self.secret(&at, value) else {
                continue;
            };
            match http::HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.push((header, v));
                }
                // The value itself is a secret: never echo it.
                Err(_) => self.error(at, "the value has characters a header cannot carry", None),
            }
        }
        out
    }
}
