//! The gateway's own HTTP/1.1 exchange with a backend over its kept-alive connections
//! ([`super::connections`]): the request as hyper sends it, without the headers of the client's
//! hop, and the answer's header, each failure told apart (the connect, the connection closing
//! under the request, the backend's answer). The HTTP path's direct exchange and the seamless
//! event streams both go through it.

use super::connections::{upstream_error, Connections, Sender};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use pingora::http::RequestHeader;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::prelude::*;
use pingora::ErrorType;
use std::time::Duration;

/// Request headers that describe one hop, not the request: the gateway's own connection to the
/// backend decides them.
const HOP_BY_HOP_REQUEST: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Response headers of the backend's hop; Pingora sets the client's.
pub const HOP_BY_HOP_RESPONSE: [&str; 3] = ["connection", "keep-alive", "proxy-connection"];

/// Takes off the headers of the client's hop and sets the length of the body the gateway holds.
pub fn this_hop(request: &mut RequestHeader, body_len: usize) -> Result<()> {
    for name in HOP_BY_HOP_REQUEST {
        request.remove_header(name);
    }
    if body_len > 0 || request.headers.contains_key(http::header::CONTENT_LENGTH) {
        request.insert_header(http::header::CONTENT_LENGTH, body_len)?;
    }
    Ok(())
}

/// The request as hyper sends it: HTTP/1.1, origin-form.
pub fn to_hyper(request: &RequestHeader, body: &Bytes) -> Result<http::Request<Full<Bytes>>> {
    let mut target = http::uri::Parts::default();
    target.path_and_query = Some(
        request
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let mut parts = request.as_owned_parts();
    parts.uri =
        http::Uri::from_parts(target).or_err(ErrorType::InvalidHTTPHeader, "request target")?;
    parts.version = http::Version::HTTP_11;
    Ok(http::Request::from_parts(parts, Full::new(body.clone())))
}

/// How an attempt failed before the answer's header.
pub enum Failure {
    Connect(Box<Error>),
    Exchange(Box<Error>),
}

/// Sends the request on a kept-alive connection, or a new one. A kept-alive connection that turns
/// out closed (the backend closed it while idle, racing the request) is not the backend's fault
/// and costs no retry: the request goes again on a new connection, once.
pub async fn send(
    connections: &Connections,
    request: &RequestHeader,
    body: &Bytes,
    response_timeout: Duration,
) -> Result<(Sender, http::Response<Incoming>), Failure> {
    let lease = connections.lease().await.map_err(Failure::Connect)?;
    let first = exchange(
        lease.sender,
        to_hyper(request, body).map_err(Failure::Exchange)?,
        response_timeout,
    )
    .await;
    match first {
        Ok(answered) => Ok(answered),
        Err(e) if lease.reused && *e.etype() == ErrorType::ConnectionClosed => {
            let sender = connections.connect().await.map_err(Failure::Connect)?;
            let request = to_hyper(request, body).map_err(Failure::Exchange)?;
            exchange(sender, request, response_timeout)
                .await
                .map_err(Failure::Exchange)
        }
        Err(e) => Err(Failure::Exchange(e)),
    }
}

/// One request and the answer's header. A connection that closed under the request (the backend
/// closed it, reset it, or was gone) is `ConnectionClosed`.
pub async fn exchange(
    mut sender: Sender,
    request: http::Request<Full<Bytes>>,
    response_timeout: Duration,
) -> Result<(Sender, http::Response<Incoming>), Box<Error>> {
    let e = match fast_timeout(response_timeout, sender.send_request(request)).await {
        Ok(Ok(response)) => return Ok((sender, response)),
        Ok(Err(e)) => e,
        Err(_) => {
            return Err(upstream_error(
                ErrorType::ReadTimedout,
                format!("no answer within {response_timeout:?}"),
                "response timeout",
            ))
        }
    };
    let (etype, what) = if e.is_parse() || e.is_parse_status() {
        (
            ErrorType::InvalidHTTPHeader,
            "the backend's answer is not HTTP/1.1",
        )
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() || io_reset(&e) {
        (ErrorType::ConnectionClosed, "the connection closed")
    } else {
        (ErrorType::ReadError, "exchanging with the backend")
    };
    Err(upstream_error(etype, what, e))
}

/// A connection reset or a broken pipe: the backend closed the connection as the request went out.
fn io_reset(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}
