//! Small pieces of the request/response exchange the gateway's hooks share: telling plain requests
//! from sessions, reading request facts, and writing the gateway's own replies.

use super::ctx::RequestCtx;
use super::reply;
use crate::config::model::PoolKind;
use crate::jsonrpc::policy;
use crate::upstream::connections::{Connections, Sender};
use crate::upstream::exchange::HOP_BY_HOP_RESPONSE;
use crate::upstream::Traffic;
use bytes::Bytes;
use hyper::body::Incoming;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;
use std::sync::Arc;

/// Most request body read to find JSON-RPC ids for an error reply.
const MAX_ERROR_BODY_SCAN: usize = 1 << 20;

/// Tells plain requests from long-lived sessions, which need other connections and timeouts.
/// Only a consensus pool's `GET` is an event stream: an execution pool's request is JSON-RPC
/// whatever it accepts, and goes through the method policy.
pub(super) fn traffic_of(req: &RequestHeader, upgrade: bool, kind: PoolKind) -> Traffic {
    if upgrade {
        return Traffic::WebSocket;
    }
    if kind != PoolKind::Consensus || req.method != http::Method::GET {
        return Traffic::Plain;
    }
    let accepts_events = req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if accepts_events || req.uri.path().starts_with("/eth/v1/events") {
        Traffic::EventStream
    } else {
        Traffic::Plain
    }
}

/// A backend's answer whose header came, for the gateway's own exchange ([`super::direct`]): its
/// body is still to come on `sender`'s connection, one of `connections`.
pub(super) struct Won {
    pub connections: Arc<Connections>,
    pub sender: Sender,
    pub header: ResponseHeader,
    pub incoming: Incoming,
}

/// How the gateway's own exchange with one backend, or a race of several, ended: `Ok`, an answer
/// the response hook let through, to go to the client; `Err`, every attempt failed, and the error
/// carries whether another backend is tried.
pub(super) type Answered = std::result::Result<Won, Box<Error>>;

/// The answer's header as the hooks see it, without the backend's hop-by-hop headers.
pub(super) fn answer_header(parts: http::response::Parts) -> ResponseHeader {
    let mut header = ResponseHeader::from(parts);
    for name in HOP_BY_HOP_RESPONSE {
        header.remove_header(name);
    }
    header
}

/// What makes an answer the backend's failure, if it is one. 502/503/504 are what a node's own
/// reverse proxy (traefik) answers when the node behind it is gone or overloaded, and an HTML
/// page is never a JSON-RPC answer: they count against the backend, and the request goes to
/// another one while nothing has reached the client. Other statuses are the node's answer and
/// pass; so does a node's proxy refusing the request itself as too large (every node would),
/// which says nothing of the node.
pub(super) fn failed_answer(ctx: &RequestCtx, response: &ResponseHeader) -> Option<String> {
    let status = response.status.as_u16();
    if matches!(status, 502..=504) {
        return Some(format!("HTTP {status}"));
    }
    let refused_request = matches!(status, 413 | 414 | 431);
    let html_for_rpc = !refused_request
        && ctx.traffic == Traffic::Plain
        && ctx
            .session
            .pool
            .as_ref()
            .is_some_and(|p| p.config.kind == PoolKind::Execution)
        && response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/html"));
    html_for_rpc.then(|| format!("an HTML page (HTTP {status}) in answer to JSON-RPC"))
}

pub(super) fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// Which `sessions_open` gauge (0 WebSocket, 1 SSE) a response opens, if it opens a session.
pub(super) fn session_kind(traffic: Traffic, response: &ResponseHeader) -> Option<usize> {
    match traffic {
        Traffic::WebSocket if response.status == http::StatusCode::SWITCHING_PROTOCOLS => Some(0),
        Traffic::EventStream if response.status.is_success() => Some(1),
        _ => None,
    }
}

/// Refuses a request with `status` and a body in the pool's protocol.
pub(super) async fn refuse(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    message: &str,
) -> Result<()> {
    let body = match ctx.session.pool.as_ref().map(|p| p.config.kind) {
        Some(PoolKind::Execution) => reply::jsonrpc_error(b"", policy::INVALID_REQUEST, message),
        _ => reply::beacon_error(status, message),
    };
    write_json(session, status, body).await
}

pub(super) fn content_length(req: &RequestHeader) -> Option<usize> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The request body for an error reply: what the retry buffer kept, or else what can still be read.
pub(super) async fn request_body(session: &mut Session) -> Vec<u8> {
    if let Some(buffered) = session.as_downstream().get_retry_buffer() {
        return buffered.to_vec();
    }
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_SCAN {
        match session.as_downstream_mut().read_request_body().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

/// Writes the gateway's own JSON-RPC answer to a request read in full (a denied call): unlike an
/// error reply, it keeps the client's connection open for its next (maybe pipelined) request.
pub(super) async fn write_answer(session: &mut Session, body: Vec<u8>) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    let downstream = session.as_downstream_mut();
    downstream.write_response_header(Box::new(resp)).await?;
    if body.is_empty() {
        downstream.finish_body().await
    } else {
        downstream
            .write_response_body(Bytes::from(body), true)
            .await
    }
}

pub(super) async fn write_json(session: &mut Session, status: u16, body: Vec<u8>) -> Result<()> {
    write_reply(session, status, body, None).await
}

/// Writes a JSON reply of the gateway's own, with a `WWW-Authenticate` challenge when given.
pub(super) async fn write_reply(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    challenge: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(challenge) = challenge {
        resp.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, Bytes::from(body))
        .await
}
