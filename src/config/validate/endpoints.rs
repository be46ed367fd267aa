//! Validates a backend's `url` and `ws_url`: scheme, host, port and path prefix.

use super::validator::Validator;
use crate::config::model::*;
use url::Url;

impl Validator {
    pub(super) fn endpoint(&mut self, path: &str, text: &str, websocket: bool) -> Option<Endpoint> {
        let schemes = if websocket {
            "ws://, wss://, http:// or https://"
        } else {
            "http:// or https://"
        };
        let hint =
            format!("a URL like https://node.example.com or http://10.0.0.5:8545/ ({schemes})");
        let url = match Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.error(path, format!("`{text}` is not a URL: {e}"), Some(&hint));
                return None;
            }
        };
        let tls = match (url.scheme(), websocket) {
            ("https", _) | ("wss", true) => true,
            ("http", _) | ("ws", true) => false,
            (other, _) => {
                self.error(
                    path,
                    format!("scheme `{other}` is not supported here"),
                    Some(&hint),
                );
                return None;
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            self.error(path, "the URL has no host", Some(&hint));
            return None;
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.error(path, "credentials in the URL are not supported", None);
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.error(
                path,
                "a backend URL cannot carry a query or fragment",
                Some("only a path prefix is kept"),
            );
            return None;
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path_prefix = url.path().trim_end_matches('/').to_string();
        let mut url = url;
        if websocket {
            // `set_scheme` refuses ws -> http; rebuild the URL instead. Cannot fail: the rest parsed.
            let rebuilt = format!(
                "{}{}",
                if tls { "https" } else { "http" },
                &url.as_str()[url.scheme().len()..]
            );
            url = Url::parse(&rebuilt).ok()?;
        }
        Some(Endpoint {
            url,
            tls,
            host,
            port,
            path_prefix,
        })
    }
}
