//! Opening a seamless WebSocket session: the gateway's own upgrade to a backend, the first one
//! chosen like any request's backend ([`WsSession::open_first`]), the 101 for the client
//! ([`WsSession::accept`]), and a backend's refusal of the upgrade passed to the client as the
//! node's answer ([`refusal`]).

use super::super::backend::{BackendSocket, Recording};
use super::client::CLIENT_WRITE_TIMEOUT;
use super::state::WsSession;
use crate::session::{open_to_client, Host};
use crate::upstream::connections::{upstream_error, Connections};
use crate::upstream::exchange::HOP_BY_HOP_RESPONSE;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The longest body of a backend's refusal of an upgrade passed to the client ([`refusal`]).
pub const MAX_REFUSAL_BODY: usize = 16 * 1024;

/// Why the gateway's WebSocket to a backend did not open.
pub(super) enum OpenFailed {
    /// Connecting (TCP, TLS) failed.
    Connect(Box<Error>),
    /// The request could not be made, or the handshake broke or had no answer in time.
    Handshake(Box<Error>),
    /// The backend answered the upgrade with another status than 101: its answer, for the
    /// client ([`refusal`]).
    Refused(Box<ResponseHeader>, Bytes),
}

/// The backend a session opened on, the gateway's WebSocket to it, and the subprotocol it chose.
type Opened = (usize, BackendSocket, Option<http::HeaderValue>);

impl<H: Host> WsSession<'_, H> {
    /// Opens the gateway's WebSocket to the session's first backend, chosen like any request's,
    /// with the same rules for a failure; `None` when a backend refused the upgrade and the
    /// client has its answer.
    pub(super) async fn open_first(&mut self) -> Result<Option<Opened>> {
        loop {
            let connections = self.host.next_attempt(self.ctx, |b| b.ws_connections())?;
            let e = match self
                .open_upstream(&connections, self.response_timeout)
                .await
            {
                Ok((upstream, protocol)) => {
                    let index = self.session_ctx().backend.unwrap_or_default();
                    return Ok(Some((index, upstream, protocol)));
                }
                Err(OpenFailed::Connect(e)) => self.host.connect_failed(self.session, self.ctx, e),
                Err(OpenFailed::Handshake(e)) => self.host.proxy_failed(self.session, self.ctx, e),
                // The node's answer to this upgrade, as on a `cut` pool: the response hook holds
                // 502/503/504 (the node's own proxy saying it is gone) against the node and tries
                // another while it may; any other status is the node's to this client (an
                // `Origin` it does not list, a path it does not serve), and blames no one.
                Err(OpenFailed::Refused(mut header, body)) => {
                    match self
                        .host
                        .upstream_response(self.session, &mut header, self.ctx)
                        .await
                    {
                        Ok(()) => {
                            self.pass_refusal(header, body).await?;
                            return Ok(None);
                        }
                        Err(e) => e,
                    }
                }
            };
            if !e.retry() {
                return Err(e);
            }
        }
    }

    /// Answers the client's upgrade (101, with the subprotocol the backend chose) through the
    /// response hooks, which count the session open on its backend.
    pub(super) async fn accept(
        &mut self,
        accept: String,
        protocol: Option<http::HeaderValue>,
    ) -> Result<()> {
        let mut header = ResponseHeader::build(101, Some(4))?;
        header.insert_header(http::header::UPGRADE, "websocket")?;
        header.insert_header(http::header::CONNECTION, "Upgrade")?;
        header.insert_header(http::header::SEC_WEBSOCKET_ACCEPT, accept)?;
        if let Some(protocol) = protocol {
            header.insert_header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)?;
        }
        open_to_client(self.host, self.session, self.ctx, header).await?;
        // The session's idleness is judged here, both ways (a subscribed client sends nothing
        // for hours).
        let downstream = self.session.as_downstream_mut();
        downstream.set_read_timeout(None);
        downstream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        Ok(())
    }

    /// Opens the gateway's WebSocket to the chosen backend (`SessionCtx::backend`) with the
    /// client's request as the hooks shape it; returns it and the subprotocol the backend chose.
    pub(super) async fn open_upstream(
        &mut self,
        connections: &Connections,
        response_timeout: Duration,
    ) -> Result<(BackendSocket, Option<http::HeaderValue>), OpenFailed> {
        let mut request = self.session.req_header().clone();
        self.host
            .upstream_request(self.session, &mut request, self.ctx)
            .await
            .map_err(OpenFailed::Handshake)?;
        let request = handshake_request(&request).map_err(OpenFailed::Handshake)?;
        let stream = connections.open().await.map_err(OpenFailed::Connect)?;
        let handshake = tokio_tungstenite::client_async_with_config(
            request,
            Recording::new(stream),
            Some(backend_config()),
        );
        let broken = |e: String| {
            OpenFailed::Handshake(upstream_error(
                ErrorType::ConnectError,
                "WebSocket handshake",
                e,
            ))
        };
        match tokio::time::timeout(response_timeout, handshake).await {
            Ok(Ok((upstream, response))) => {
                let protocol = response
                    .headers()
                    .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                    .cloned();
                Ok((
                    BackendSocket::after_handshake(upstream.into_inner()),
                    protocol,
                ))
            }
            // An interim answer (100) is no answer to an upgrade.
            Ok(Err(tungstenite::Error::Http(response)))
                if !response.status().is_informational() =>
            {
                let (header, body) = refusal(*response);
                Err(OpenFailed::Refused(Box::new(header), body))
            }
            Ok(Err(e)) => Err(broken(e.to_string())),
            Err(_) => Err(OpenFailed::Handshake(upstream_error(
                ErrorType::ReadTimedout,
                "WebSocket handshake",
                format!("no answer within {response_timeout:?}"),
            ))),
        }
    }

    /// Sends the client a backend's answer to its upgrade, which the backend refused.
    async fn pass_refusal(&mut self, mut header: Box<ResponseHeader>, body: Bytes) -> Result<()> {
        self.host
            .response(self.session, &mut header, self.ctx)
            .await?;
        let empty = body.is_empty();
        self.session
            .write_response_header(header, empty)
            .await
            .map_err(|e| e.into_down())?;
        if !empty {
            self.session
                .write_response_body(Some(body), true)
                .await
                .map_err(|e| e.into_down())?;
        }
        Ok(())
    }
}

/// A backend's answer to an upgrade it refused, as the client gets it: its status, its headers
/// but those of its own hop, and its body. The handshake keeps only the body that came in the
/// read that ended the head (tungstenite reads 4 KiB at a time): a node's refusal is a line or
/// a short page and comes with its head; a body that came later is cut where it stopped, and
/// none is longer than [`MAX_REFUSAL_BODY`].
fn refusal(response: http::Response<Option<Vec<u8>>>) -> (ResponseHeader, Bytes) {
    let (parts, tail) = response.into_parts();
    let mut header = ResponseHeader::from(parts);
    let mut body = tail.unwrap_or_default();
    let chunked = header
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.as_bytes().to_ascii_lowercase().ends_with(b"chunked"));
    let length = header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    if matches!(header.status.as_u16(), 204 | 304) {
        body.clear();
    } else if chunked {
        body = dechunk(&body);
    } else if let Some(length) = length {
        body.truncate(length);
    }
    body.truncate(MAX_REFUSAL_BODY);
    // Headers the `Connection` header names are the hop's too.
    let named: Vec<String> = header
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP_RESPONSE)
        .chain([
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
        ])
    {
        header.remove_header(name);
    }
    header.set_version(http::Version::HTTP_11);
    // Cannot fail: a number is a valid header value.
    let _ = header.insert_header(http::header::CONTENT_LENGTH, body.len());
    (header, Bytes::from(body))
}

/// The data of the whole chunks at the start of a chunked body (`httparse` reads the sizes).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(rest) {
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| start.checked_add(size));
        let Some(chunk) = end.and_then(|end| rest.get(start..end)) else {
            // A chunk that came only in part: what came of it.
            out.extend_from_slice(rest.get(start..).unwrap_or_default());
            break;
        };
        if chunk.is_empty() || out.len() >= MAX_REFUSAL_BODY {
            break;
        }
        out.extend_from_slice(chunk);
        match rest.get(start + chunk.len()..) {
            Some([b'\r', b'\n', after @ ..]) => rest = after,
            _ => break,
        }
    }
    out
}

/// The handshake's socket, dropped once the upgrade is done ([`BackendSocket`] reads the
/// frames): small buffers.
fn backend_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// `Sec-WebSocket-Accept` for the client's upgrade request; `None` when it is not a version 13
/// WebSocket upgrade with a key.
pub(super) fn accept_key(request: &RequestHeader) -> Option<String> {
    let version = request.headers.get(http::header::SEC_WEBSOCKET_VERSION)?;
    if version.as_bytes() != b"13" {
        return None;
    }
    let key = request.headers.get(http::header::SEC_WEBSOCKET_KEY)?;
    Some(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The gateway's upgrade request to a backend: the client's (as the request hooks shaped it),
/// with a key of its own and no subprotocol. The gateway speaks JSON-RPC to the node itself, and
/// a node that takes no subprotocol (geth, as every node does) answers 101 without one, which
/// the handshake would call broken if the client's `Sec-WebSocket-Protocol` went on: any client
/// could then have the node blamed and taken out. The client gets 101 without a subprotocol, as
/// from the node directly.
fn handshake_request(request: &RequestHeader) -> Result<http::Request<()>> {
    // The handshake reads only the path from the target; its scheme (always `ws`: TLS, when the
    // endpoint has it, is already on the connection) and host must be there all the same.
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("backend");
    let path = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("ws://{host}{path}"))
        .version(http::Version::HTTP_11);
    for (name, value) in &request.headers {
        if matches!(
            name.as_str(),
            "connection"
                | "upgrade"
                | "sec-websocket-key"
                | "sec-websocket-version"
                | "sec-websocket-extensions"
                | "sec-websocket-protocol"
                | "content-length"
                | "transfer-encoding"
        ) {
            continue;
        }
        out = out.header(name, value);
    }
    out.header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            http::header::SEC_WEBSOCKET_KEY,
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .or_err(
            ErrorType::InvalidHTTPHeader,
            "the upgrade request to the backend",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_needs_version_13_and_a_key() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(accept_key(&request), None);
        request
            .insert_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .unwrap();
        request.insert_header("sec-websocket-version", "8").unwrap();
        assert_eq!(accept_key(&request), None);
        request
            .insert_header("sec-websocket-version", "13")
            .unwrap();
        // RFC 6455's example.
        assert_eq!(
            accept_key(&request).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn the_upgrade_request_has_its_own_key_and_no_extensions_or_subprotocol() {
        let mut request = RequestHeader::build("GET", b"/ws?x=1", None).unwrap();
        for (name, value) in [
            ("host", "ec-a.example"),
            ("sec-websocket-key", "client-key"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-protocol", "json"),
        ] {
            request.insert_header(name, value).unwrap();
        }
        let out = handshake_request(&request).unwrap();
        assert_eq!(out.uri(), "ws://ec-a.example/ws?x=1");
        assert_ne!(out.headers()["sec-websocket-key"], "client-key");
        assert!(out.headers().get("sec-websocket-extensions").is_none());
        assert!(out.headers().get("sec-websocket-protocol").is_none());
        assert_eq!(out.headers()["host"], "ec-a.example");
    }

    fn refused(status: u16, headers: &[(&str, &str)], tail: &[u8]) -> (ResponseHeader, Bytes) {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        refusal(response.body(Some(tail.to_vec())).unwrap())
    }

    #[test]
    fn a_refusal_keeps_the_nodes_headers_but_those_of_its_hop() {
        let (header, body) = refused(
            403,
            &[
                ("content-type", "text/plain; charset=utf-8"),
                ("sec-websocket-version", "13"),
                ("connection", "keep-alive, x-hop"),
                ("keep-alive", "timeout=5"),
                ("x-hop", "1"),
                ("upgrade", "h2c"),
                ("content-length", "9"),
            ],
            b"Forbidden",
        );
        assert_eq!(header.status, 403);
        assert_eq!(&body[..], b"Forbidden");
        assert_eq!(header.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(header.headers["sec-websocket-version"], "13");
        assert_eq!(header.headers["content-length"], "9");
        for hop in ["connection", "keep-alive", "x-hop", "upgrade"] {
            assert!(header.headers.get(hop).is_none(), "{hop}");
        }
    }

    #[test]
    fn a_refusals_body_is_cut_to_its_framing_and_bound() {
        // Bytes past the declared length are not the answer's.
        let (header, body) = refused(404, &[("content-length", "3")], b"abcdef");
        assert_eq!(&body[..], b"abc");
        assert_eq!(header.headers["content-length"], "3");
        // A body that came only in part is what came.
        let (_, body) = refused(403, &[("content-length", "100")], b"abc");
        assert_eq!(&body[..], b"abc");
        // Chunked: the data of the chunks, without their framing.
        let (header, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"4\r\nForb\r\n5;x=1\r\nidden\r\n0\r\n\r\n",
        );
        assert_eq!(&body[..], b"Forbidden");
        assert!(header.headers.get("transfer-encoding").is_none());
        assert_eq!(header.headers["content-length"], "9");
        let (_, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"4\r\nForb\r\n9\r\nidd",
        );
        assert_eq!(&body[..], b"Forbidd");
        let (_, body) = refused(
            403,
            &[("transfer-encoding", "chunked")],
            b"zz\r\nnot a chunk",
        );
        assert!(body.is_empty());
        // No framing: what came, up to the bound.
        let (_, body) = refused(200, &[], &vec![b'x'; MAX_REFUSAL_BODY + 10]);
        assert_eq!(body.len(), MAX_REFUSAL_BODY);
        let (header, body) = refused(204, &[], b"stray");
        assert!(body.is_empty());
        assert_eq!(header.headers["content-length"], "0");
    }
}
