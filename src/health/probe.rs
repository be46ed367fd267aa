//! What both probes share: the HTTP client per backend and strict JSON fetching with readable
//! failure reasons.

use super::PROBE_USER_AGENT;
use serde_json::Value;
use std::path::Path;

/// Builds the probe client of one backend: its own CA list, no proxy from the environment (a probe
/// must reach the node itself). The monitor bounds each whole probe (DNS included) by the timeout.
pub fn client(
    ca: Option<&Path>,
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> Result<reqwest::Client, String> {
    let headers: http::HeaderMap = headers.iter().cloned().collect();
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .use_rustls_tls()
        .user_agent(PROBE_USER_AGENT)
        .no_proxy()
        .pool_max_idle_per_host(1);
    if let Some(ca) = ca {
        for cert in crate::tls::load_certs(ca)? {
            let cert = reqwest::Certificate::from_der(&cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the probe client: {e}"))
}

/// Sends a request and returns its JSON body; anything else (transport error, non-2xx status, a body
/// that is not JSON) is an error that names what came back.
pub async fn fetch_json(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: {}", transport_error(&e)))?;
    let status = response.status();
    let body = read_bounded(response)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{what}: HTTP {} ({})",
            status.as_u16(),
            excerpt(&body)
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|_| format!("{what}: reply is not JSON ({})", excerpt(&body)))
}

/// Largest probe reply read: the answers a probe asks for are a few hundred bytes, and a node
/// that sends without end must not cost the gateway more than this.
pub const MAX_PROBE_REPLY: usize = 1024 * 1024;

/// Reads a reply's body, failing once it is longer than [`MAX_PROBE_REPLY`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_long = || format!("reply longer than {} KiB", MAX_PROBE_REPLY / 1024);
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PROBE_REPLY as u64)
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the reply failed: {}", transport_error(&e)))?
    {
        if body.len() + chunk.len() > MAX_PROBE_REPLY {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first bytes of a body, printable, for an error message.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_string()
    } else if body.len() > MAX {
        format!("`{text}...`")
    } else {
        format!("`{text}`")
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    // The innermost cause says what really happened (refused, certificate unknown, ...).
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    if e.is_connect() {
        format!("cannot connect: {source}")
    } else {
        source.to_string()
    }
}

/// Parses a JSON-RPC quantity (`"0x1f"`).
pub fn hex_quantity(value: &Value) -> Option<u64> {
    let s = value.as_str()?.strip_prefix("0x")?;
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses a beacon API number (a quoted decimal string, `"123"`).
pub fn decimal_string(value: &Value) -> Option<u64> {
    let s = value.as_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_are_strict() {
        assert_eq!(hex_quantity(&json!("0x1f")), Some(31));
        assert_eq!(hex_quantity(&json!("0x0")), Some(0));
        for bad in [
            json!("1f"),
            json!("0x"),
            json!("0xzz"),
            json!(31),
            json!(null),
        ] {
            assert_eq!(hex_quantity(&bad), None, "{bad}");
        }
        assert_eq!(decimal_string(&json!("12")), Some(12));
        for bad in [json!("-1"), json!("1.5"), json!(12), json!(""), json!(" 1")] {
            assert_eq!(decimal_string(&bad), None, "{bad}");
        }
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt(b""), "empty body");
        assert_eq!(
            excerpt(b"<html>\n<body>bad gateway"),
            "`<html> <body>bad gateway`"
        );
        assert!(excerpt(&[b'x'; 100]).ends_with("...`"));
    }
}
