//! What both probes share: the HTTP client per backend and strict JSON fetching with readable
//! failure reasons.

use arc_swap::ArcSwapOption;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// User-Agent of every health probe, so node logs (and the simulated nodes) can tell probes apart.
pub const PROBE_USER_AGENT: &str = concat!("ssv-ha-health/", env!("CARGO_PKG_VERSION"));

/// The address a probe's host name stands for: set before each check to the address the
/// gateway's traffic goes to, so that the node judged is the node served (a name with several
/// addresses could otherwise be probed on one and served on another).
pub type Pin = Arc<ArcSwapOption<SocketAddr>>;

/// Resolves probe host names to the pinned address; to the system's answer until one is set.
struct Pinned(Pin);

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let pinned = self.0.load_full();
        let host = name.as_str().to_string();
        Box::pin(async move {
            if let Some(addr) = pinned {
                return Ok(Box::new(std::iter::once(*addr)) as reqwest::dns::Addrs);
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Builds the probe client of one backend: its own CA list, no proxy from the environment (a probe
/// must reach the node itself). The monitor bounds each whole probe (DNS included) by the timeout.
pub fn client(
    ca: Option<&Path>,
    headers: &[(http::HeaderName, http::HeaderValue)],
    pin: Pin,
) -> Result<reqwest::Client, String> {
    let headers: http::HeaderMap = headers.iter().cloned().collect();
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .use_rustls_tls()
        .user_agent(PROBE_USER_AGENT)
        .no_proxy()
        .dns_resolver(Arc::new(Pinned(pin)))
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

    #[tokio::test]
    async fn probes_go_to_the_pinned_address_whatever_the_name_resolves_to() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request).await;
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\ntrue";
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        let pin = Pin::default();
        let client = client(None, &[], pin.clone()).unwrap();
        // A name no resolver knows: only the pin can make it reach the node.
        let url = format!("http://node.invalid:{}/", addr.port());
        pin.store(Some(Arc::new(addr)));
        let reply = fetch_json(client.get(&url), "probe").await.unwrap();
        assert_eq!(reply, json!(true));
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
