//! The gateway's `ProxyHttp`: route by listener and host, pick a healthy backend, retry on another
//! one while nothing has reached the client, and answer for the pool when no backend can.
//!
//! One [`Gateway`] serves one listener, so routes bound to a listener need no per-request lookup
//! of the local address. Decisions live in plain functions ([`crate::upstream::routing`],
//! [`retry`], [`reply`], [`crate::upstream::selection`]) and the access line in `access_log`;
//! this file only wires them to Pingora's hooks. A seamless session, once routed and admitted
//! here, is served by the session floor, which reaches back only through
//! [`crate::session::Host`] (`session_host`).

mod access_log;
mod admission;
mod attempt;
mod cache;
mod ctx;
mod direct;
mod error;
mod exchange;
mod gateway;
mod hedge;
pub mod reply;
pub mod retry;
mod session_host;

pub use crate::upstream::routing::Routing;
pub use ctx::RequestCtx;
pub use gateway::Gateway;

use admission::{Body, Hold};
use error::{NO_BACKEND, TOO_LARGE, WEBSOCKET_REFUSED};
use exchange::{content_length, failed_answer, is_timeout, request_body, session_kind, write_json};

use crate::config::model::{PoolKind, SessionMode};
use crate::jsonrpc::policy;
use crate::jsonrpc::scan as rpc;
use crate::limits::held;
use crate::session::relay;
use crate::upstream::session::{CutReason, SESSION_CUT};
use crate::upstream::Traffic;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use retry::Failed;

use std::time::{Duration, Instant};

/// Largest request body of a consensus pool read before a backend is chosen and sent by the
/// gateway itself ([`direct`]); larger ones stream through Pingora's path. Execution pools hold
/// every body whole (up to `limits.max_body_bytes`, and together within `limits.max_held_bytes`):
/// the method policy judges it parsed in full.
const MAX_HELD_BODY: usize = held::FREE_BYTES;
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let routing = self.routing.load_full();
        // HTTP/1.1 clients may send requests before the last answer came (pipelining, which
        // haproxy, nginx and the nodes serve): each is served in turn, answers in order, and none
        // is lost with the connection. The setting carries over to the connection's next request.
        if !session.as_downstream().pipelining_enabled() {
            session.as_downstream_mut().set_pipelining_enabled(true);
        }
        // Every request gets an access line, those refused at the door too.
        if routing.access_log {
            ctx.started = Some(Instant::now());
        }
        if self.admit(session, ctx).await? {
            return Ok(true);
        }
        if self.route(session, ctx, &routing).await? {
            return Ok(true);
        }
        let limits = routing.limits;
        let declared = content_length(session.req_header());
        if self
            .refuse_oversize(session, ctx, &limits, declared)
            .await?
        {
            return Ok(true);
        }
        ctx.limits = limits;
        let execution = self
            .pool(ctx)
            .is_some_and(|p| p.config.kind == PoolKind::Execution);
        if ctx.traffic == Traffic::WebSocket && execution {
            ctx.ws_frames = Some(relay::ClientFrames::default());
            ctx.held = Some(self.held.share());
        }
        let seamless_pool = self
            .pool(ctx)
            .is_some_and(|p| p.config.sessions == SessionMode::Seamless);
        if seamless_pool && ctx.traffic == Traffic::EventStream {
            crate::session::seamless::stream_events(self, session, ctx, routing.timeouts.response)
                .await?;
            return Ok(true);
        }
        if seamless_pool && ctx.traffic == Traffic::WebSocket && execution {
            crate::session::seamless::serve_websocket(
                self,
                session,
                ctx,
                routing.timeouts.response,
            )
            .await?;
            return Ok(true);
        }
        if ctx.traffic != Traffic::Plain {
            return Ok(false);
        }
        // Whatever its method, path or headers, a body sent to an execution node is JSON-RPC to
        // it (geth serves a GET with a body as one): every such body is read whole and judged.
        let hold = if execution {
            if self.refuse_encoded_body(session, ctx).await? {
                return Ok(true);
            }
            Hold::Whole(limits.max_body_bytes)
        } else {
            Hold::UpTo(MAX_HELD_BODY)
        };
        let body = match self.read_body(session, ctx, declared, hold).await? {
            Body::Held(body) => body,
            Body::Refused => return Ok(true),
            Body::Streams => return Ok(false),
        };
        if !execution {
            ctx.reads_only = matches!(
                session.req_header().method,
                http::Method::GET | http::Method::HEAD
            );
        }
        let sent = if execution && !body.is_empty() {
            match self.apply_method_policy(session, ctx, &body).await? {
                Some(sent) => sent,
                None => return Ok(true),
            }
        } else {
            body.clone()
        };
        if self.answer_from_cache(session, ctx, &body).await? {
            return Ok(true);
        }
        ctx.body = Some(body);
        self.exchange_directly(session, ctx, sent, routing.timeouts.response)
            .await?;
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.ws_frames.is_some() {
            // Client WebSocket messages are judged like request bodies.
            if let Some(chunk) = body.take() {
                *body = Some(self.judge_client_frames(session, ctx, chunk).await?);
            }
            return Ok(());
        }
        if let Some(chunk) = body.as_ref() {
            ctx.body_seen += chunk.len();
            if ctx.body_seen > ctx.limits.max_body_bytes {
                return Error::e_explain(
                    TOO_LARGE,
                    format!("more than {} bytes", ctx.limits.max_body_bytes),
                );
            }
        }
        // The first chunk names the methods; later chunks (and unlogged requests) cost nothing.
        let logged_rpc = ctx.started.is_some()
            && ctx
                .session
                .pool
                .as_ref()
                .is_some_and(|p| p.config.kind == PoolKind::Execution);
        if logged_rpc && ctx.rpc_methods.is_none() {
            if let Some(chunk) = body {
                ctx.rpc_methods = Some(rpc::methods(chunk));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let traffic = ctx.traffic;
        self.next_attempt(ctx, |b| b.peer(traffic)).map(Box::new)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(backend) = self.backend(ctx) else {
            return Ok(());
        };
        if self.auth.is_some() {
            // The gateway's credentials are not the backend's business.
            upstream_request.remove_header(&http::header::AUTHORIZATION);
        }
        if ctx.plan.is_some() || ctx.fill.is_some() {
            // The answer to a trimmed batch is merged with the gateway's own, and one the cache
            // may keep is read: it must come plain.
            upstream_request.remove_header(&http::header::ACCEPT_ENCODING);
        }
        if ctx.ws_frames.is_some() {
            // A compressed message could not be judged: no extension is negotiated, so a frame
            // with RSV bits set is a violation (see `crate::session::relay`).
            upstream_request.remove_header(&http::header::SEC_WEBSOCKET_EXTENSIONS);
        }
        // Backends behind traefik route by Host (and SNI): send the backend's own name.
        upstream_request
            .insert_header(http::header::HOST, backend.host_header(ctx.traffic).clone())?;
        let prefix = &backend.endpoint(ctx.traffic).path_prefix;
        if !prefix.is_empty() {
            let rest = upstream_request
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str());
            let uri = format!("{prefix}{rest}").parse::<http::Uri>().or_err(
                ErrorType::InvalidHTTPHeader,
                "backend path prefix makes an invalid URI",
            )?;
            upstream_request.set_uri(uri);
        }
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = addr.ip().to_string();
            let forwarded = match upstream_request
                .headers
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing}, {ip}"),
                None => ip,
            };
            upstream_request.insert_header(X_FORWARDED_FOR, forwarded)?;
        }
        for (name, value) in &backend.config.headers {
            upstream_request.insert_header(name.clone(), value.clone())?;
        }
        upstream_request
            .insert_header(X_FORWARDED_PROTO, if self.https { "https" } else { "http" })?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        Self::cache_answer_header(ctx, upstream_response);
        if ctx.plan.is_some() && upstream_response.status.is_success() {
            // The merged answer has another length.
            upstream_response.remove_header(&http::header::CONTENT_LENGTH);
            ctx.answer = Some(BytesMut::new());
        }
        if let Some(kind) = session_kind(ctx.traffic, upstream_response) {
            if let Some(backend) = self.backend(ctx) {
                backend.metrics.sessions_open[kind].inc();
                ctx.session.open = Some(kind);
            }
        }
        let Some(what) = failed_answer(ctx, upstream_response) else {
            return Ok(());
        };
        let Some(backend) = self.backend(ctx) else {
            return Ok(());
        };
        let name = backend.name().to_string();
        self.live_failure(session, ctx, &what);
        if retry::decide(Failed::BadAnswer, self.attempt(session, ctx)).retries() {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                format!("backend {name} answered {status}"),
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.req_header().version < http::Version::HTTP_11 {
            // An HTTP/1.0 client knows no chunked encoding: without a length, the answer ends
            // where the gateway closes the connection.
            upstream_response.remove_header(&http::header::TRANSFER_ENCODING);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.connect_failed(session, ctx, e)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        self.proxy_failed(session, ctx, e, client_reused)
    }
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy
    where
        RequestCtx: Send + Sync,
    {
        let pool = self.pool(ctx).cloned();
        if *e.etype() == NO_BACKEND {
            if let Some(pool) = &pool {
                pool.metrics.unavailable.inc();
            }
        }
        let (code, message) = reply::for_error(e, pool.as_ref().map(|p| p.name()));
        if code > 0 && session.as_downstream().response_written().is_none() {
            let body = match pool.as_ref().map(|p| p.config.kind) {
                Some(PoolKind::Execution) => {
                    let request = match &ctx.body {
                        Some(body) => body.to_vec(),
                        None => request_body(session).await,
                    };
                    if ctx.started.is_some() && ctx.rpc_methods.is_none() {
                        ctx.rpc_methods = Some(rpc::methods(&request));
                    }
                    reply::jsonrpc_error(&request, reply::JSONRPC_UNAVAILABLE, &message)
                }
                _ => reply::beacon_error(code, &message),
            };
            if let Err(err) = write_json(session, code, body).await {
                tracing::debug!(error = %err, "could not send the error reply");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        self.cache_answer_body(ctx, body.as_ref(), end_of_stream);
        if ctx.ws_frames.is_some() {
            if let Some(chunk) = body {
                ctx.ws_server.pass(chunk);
            }
        }
        let Some(gathered) = ctx.answer.as_ref().map(BytesMut::len) else {
            return Ok(None);
        };
        // A batch answer is merged whole: it counts in the listener's held bytes, and one the
        // listener cannot hold ends the request.
        let more = body.as_ref().map_or(0, Bytes::len);
        if more > 0 && !self.hold_answer(ctx, gathered + more) {
            self.held_full.inc();
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "listener {} holds its limit of {} bytes: a batch answer to merge is cut off",
                    self.listener, ctx.limits.max_held_bytes
                ),
            );
        }
        let Some(answer) = ctx.answer.as_mut() else {
            return Ok(None);
        };
        if let Some(chunk) = body.take() {
            answer.extend_from_slice(&chunk);
        }
        if end_of_stream {
            let gathered = std::mem::take(answer).freeze();
            let merged = ctx
                .plan
                .as_deref()
                .and_then(|plan| policy::merge(plan, &gathered));
            *body = Some(merged.map_or(gathered, Bytes::from));
        }
        Ok(None)
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        // Counted in ssv_ha_unavailable_total and explained by the backends' down transitions;
        // one log line per refused request would flood the log exactly when it matters.
        let unavailable = *error.etype() == NO_BACKEND;
        // Logged once with its reason when the gateway ended the session.
        let refused = *error.etype() == WEBSOCKET_REFUSED;
        // A session the gateway cut on purpose is logged once per backend ("sessions cut"), and
        // an idle session ending is routine (counted as reason "idle").
        let cut = error.to_string().contains(SESSION_CUT);
        let idle = ctx.session.open.is_some() && is_timeout(error);
        // So is a client going away (mid-session, or before its answer was ready): the access
        // line records it; the operator has nothing to act on.
        let client_left = error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        unavailable || refused || cut || idle || client_left
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // Give the places back now rather than when the context goes (they would be given
        // back then too, whatever ended the request).
        ctx.websocket_place = None;
        ctx.request_place = None;
        ctx.client_place = None;
        let status = session
            .as_downstream()
            .response_written()
            .map_or(0, |r| r.status.as_u16());
        let backend = self.backend(ctx);
        if let Some(backend) = backend {
            if let Some(kind) = ctx.session.open {
                backend.metrics.sessions_open[kind].dec();
                if e.is_some_and(is_timeout) {
                    backend.metrics.count_cut(CutReason::Idle.index(), 1);
                }
            }
            backend.metrics.count_status(status);
            if let Some(start) = ctx.upstream_start {
                backend
                    .metrics
                    .upstream_latency
                    .observe(start.elapsed().as_secs_f64());
            }
        }
        access_log::write(
            session,
            ctx,
            &self.listener,
            backend.map(|b| b.as_ref()),
            status,
            e,
        );
    }
}
