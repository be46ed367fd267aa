//! What gets in, and to which pool, decided before any backend is chosen: credentials, the route
//! by host, in-flight caps, size limits, and the JSON-RPC method policy (which needs the body, so
//! small bodies are read here).

use super::ctx::RequestCtx;
use super::error::WEBSOCKET_REFUSED;
use super::exchange::{refuse, traffic_of, write_answer, write_json, write_reply};
use super::gateway::Gateway;
use super::reply;
use crate::config::model::Limits;
use crate::jsonrpc::policy::{self, Decision};
use crate::jsonrpc::scan as rpc;
use crate::limits::held::{Share, FREE_BYTES};
use crate::limits::places::{self, client_bucket};
use crate::session::relay::Closing;
use crate::upstream::routing::Routing;
use crate::upstream::Traffic;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;
use tungstenite::protocol::frame::coding::CloseCode;

/// Bodies and WebSocket messages larger than this are parsed on a blocking thread: tens of
/// milliseconds of parsing must not hold up the other requests of a worker thread.
const JUDGE_ELSEWHERE: usize = 1024 * 1024;

/// How much of a request body is read before a backend is chosen.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hold {
    /// All of it, refused (413) past this many bytes.
    Whole(usize),
    /// All of it when it declares at most this many bytes; otherwise it streams.
    UpTo(usize),
}

/// What became of a request body.
pub(super) enum Body {
    Held(Bytes),
    /// Too large to hold: it streams through Pingora's path.
    Streams,
    /// Refused and answered here.
    Refused,
}

impl Gateway {
    /// Credentials and in-flight caps; `true` when the request was answered (refused) here.
    /// `logging` gives the slots taken here back.
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(auth) = &self.auth {
            if !auth.admits(
                session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION),
            ) {
                let body = reply::beacon_error(401, "authentication required");
                write_reply(session, 401, body, Some(auth.challenge)).await?;
                return Ok(true);
            }
        }
        // In-flight limits, per listener and per client address; `logging` gives the slots back.
        let (place, within) = self
            .in_flight
            .take(places::Count::Requests, self.max_requests);
        ctx.request_place = Some(place);
        if !within {
            let message = format!(
                "listener {} is at its cap of {} requests in flight",
                self.listener, self.max_requests
            );
            write_json(session, 503, reply::beacon_error(503, &message)).await?;
            return Ok(true);
        }
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let (place, within) = self.in_flight.take(
                places::Count::Client(client_bucket(ip)),
                self.max_requests_per_client,
            );
            ctx.client_place = Some(place);
            if !within {
                let message = format!(
                    "more than {} requests in flight from {ip}",
                    self.max_requests_per_client
                );
                write_json(session, 429, reply::beacon_error(429, &message)).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Routes the request by its host to a pool of the listener and tells its traffic; a
    /// WebSocket takes a place under the listener's cap, and gets the session's idle timeout in
    /// place of Pingora's. `true` when the request was answered (refused) here.
    pub(super) async fn route(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        routing: &Routing,
    ) -> Result<bool> {
        let host = crate::upstream::routing::request_host(session.req_header());
        let Some(pool) = routing.tables[self.index].lookup(host) else {
            self.unrouted.inc();
            let message = format!(
                "no route for host `{}` on listener {}",
                host.unwrap_or_default(),
                self.listener
            );
            write_json(session, 421, reply::beacon_error(421, &message)).await?;
            return Ok(true);
        };
        let pool = routing.pools[pool].clone();
        let kind = pool.config.kind;
        ctx.session.pool = Some(pool);
        ctx.retries = routing.retries;
        ctx.traffic = traffic_of(session.req_header(), session.is_upgrade_req(), kind);
        if ctx.traffic == Traffic::WebSocket {
            let (place, within) = self
                .in_flight
                .take(places::Count::WebSockets, self.max_websockets);
            ctx.websocket_place = Some(place);
            if !within {
                let message = format!(
                    "listener {} is at its cap of {} WebSocket sessions; try again later",
                    self.listener, self.max_websockets
                );
                write_json(session, 503, reply::beacon_error(503, &message)).await?;
                return Ok(true);
            }
            // Pingora's downstream read timeout (60 s) would cut an idle WebSocket.
            let idle = Some(routing.timeouts.websocket_idle);
            session.as_downstream_mut().set_read_timeout(idle);
            session.as_downstream_mut().set_write_timeout(idle);
        }
        Ok(false)
    }

    /// Header, URL and body size limits; `true` when the request was refused.
    pub(super) async fn refuse_oversize(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        limits: &Limits,
        declared: Option<usize>,
    ) -> Result<bool> {
        let headers = &session.req_header().headers;
        let header_bytes: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
            self.too_many_headers.inc();
            let message = format!(
                "{} headers of {header_bytes} bytes; at most {} headers of {} bytes are accepted",
                headers.len(),
                limits.max_headers,
                limits.max_header_bytes
            );
            refuse(session, ctx, 431, &message).await?;
            return Ok(true);
        }
        let url_length = session
            .req_header()
            .uri
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if url_length > limits.max_url_bytes {
            self.too_long.inc();
            let message = format!(
                "URL of {url_length} bytes; at most {} are accepted",
                limits.max_url_bytes
            );
            refuse(session, ctx, 414, &message).await?;
            return Ok(true);
        }
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            self.too_large.inc();
            let message = format!("request body larger than {} bytes", limits.max_body_bytes);
            refuse(session, ctx, 413, &message).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Refuses a request body in a content coding (gzip, ...): the method policy could not read
    /// it, and a node that decodes it would run what is inside. `true` when refused.
    pub(super) async fn refuse_encoded_body(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> Result<bool> {
        let encoded = session
            .req_header()
            .headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            let message = "request bodies with a Content-Encoding are not accepted: the method policy reads every body";
            refuse(session, ctx, 415, message).await?;
        }
        Ok(encoded)
    }

    /// Reads the request body before any backend is chosen, as `hold` says: the method policy
    /// judges it, and the gateway sends it on in one write ([`super::direct`]).
    pub(super) async fn read_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        declared: Option<usize>,
        hold: Hold,
    ) -> Result<Body> {
        if session.as_downstream_mut().is_body_empty() {
            return Ok(Body::Held(Bytes::new()));
        }
        let limit = match hold {
            Hold::Whole(limit) => limit,
            Hold::UpTo(limit) if declared.is_some_and(|n| n <= limit) => limit,
            Hold::UpTo(_) => return Ok(Body::Streams),
        };
        // A client that asked to be told to go on waits for it before sending the body (curl
        // for a second); the backend that would say so is not asked until the body is here.
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            let go_on = ResponseHeader::build(100, Some(0))?;
            session
                .write_response_header(Box::new(go_on), false)
                .await
                .map_err(|e| e.into_down())?;
        }
        // A part of the listener's budget, once the body is past what every request may hold.
        let mut share: Option<Share> = None;
        let mut body = BytesMut::new();
        // However slowly it drips, the whole body arrives within the body timeout.
        let deadline = tokio::time::Instant::now() + ctx.limits.body_timeout;
        loop {
            let read = session.as_downstream_mut().read_request_body();
            let chunk = match tokio::time::timeout_at(deadline, read).await {
                Ok(chunk) => chunk.map_err(|e| e.into_down())?,
                Err(_) => {
                    let message = format!(
                        "request body not complete within {:?}",
                        ctx.limits.body_timeout
                    );
                    refuse(session, ctx, 408, &message).await?;
                    return Ok(Body::Refused);
                }
            };
            let Some(chunk) = chunk else {
                break;
            };
            let holding = body.len() + chunk.len();
            let within = holding <= FREE_BYTES
                || share
                    .get_or_insert_with(|| self.held.share())
                    .hold(holding, ctx.limits.max_held_bytes);
            if !within {
                self.held_full.inc();
                let message = format!(
                    "listener {} holds its limit of {} bytes of request bodies; try again later",
                    self.listener, ctx.limits.max_held_bytes
                );
                refuse(session, ctx, 503, &message).await?;
                return Ok(Body::Refused);
            }
            body.extend_from_slice(&chunk);
            if body.len() <= limit {
                continue;
            }
            if declared.is_some() {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "request body longer than its Content-Length",
                )
                .into_down());
            }
            // A chunked body past the limit: refused before more of it is read.
            self.too_large.inc();
            let message = format!("request body larger than {limit} bytes");
            refuse(session, ctx, 413, &message).await?;
            return Ok(Body::Refused);
        }
        ctx.held = share;
        Ok(Body::Held(body.freeze()))
    }

    /// Whether the listener can hold `gathered` bytes of an answer (a batch's to merge, or one to
    /// keep in the cache) beside the request's body, within `limits.max_held_bytes`.
    pub(super) fn hold_answer(&self, ctx: &mut RequestCtx, gathered: usize) -> bool {
        let holding = ctx.body.as_ref().map_or(0, Bytes::len) + gathered;
        holding <= FREE_BYTES
            || ctx
                .held
                .get_or_insert_with(|| self.held.share())
                .hold(holding, ctx.limits.max_held_bytes)
    }

    /// Judges the client's next WebSocket bytes; returns what goes on to the backend, or the
    /// error that ends a session the gateway closed.
    pub(super) async fn judge_client_frames(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        chunk: Bytes,
    ) -> Result<Bytes> {
        let (Some(frames), Some(pool)) = (ctx.ws_frames.as_mut(), ctx.session.pool.clone()) else {
            return Ok(chunk);
        };
        let max_body = ctx.limits.max_body_bytes;
        let judged = if frames.held() + chunk.len() > JUDGE_ELSEWHERE {
            // A large message is parsed on a blocking thread, not on one that serves others.
            let mut moved = std::mem::take(frames);
            let (moved, judged) = tokio::task::spawn_blocking(move || {
                let judged = moved.feed(&chunk, &pool.config.methods, max_body);
                (moved, judged)
            })
            .await
            .or_err(ErrorType::InternalError, "judging a WebSocket message")?;
            *frames = moved;
            judged
        } else {
            frames.feed(&chunk, &pool.config.methods, max_body)
        };
        let held = frames.held() + ctx.session.held;
        let judged = judged.and_then(|forward| {
            let max = ctx.limits.max_held_bytes;
            if ctx.held.as_mut().is_none_or(|share| share.hold(held, max)) {
                Ok(Bytes::from(forward))
            } else {
                Err(Closing::busy(max))
            }
        });
        match judged {
            Ok(forward) => Ok(forward),
            Err(closing) => Err(self.close_websocket(session, ctx, closing).await),
        }
    }

    /// A seamless session's state now holds `bytes`: its share of the listener's held bytes
    /// follows (down always; up when the budget has room, else on the next client message, which
    /// is refused past it).
    pub(super) fn hold_session(ctx: &mut RequestCtx, bytes: usize) {
        ctx.session.held = bytes;
        let frames = ctx.ws_frames.as_ref().map_or(0, |f| f.held());
        let max = ctx.limits.max_held_bytes;
        if let Some(share) = ctx.held.as_mut() {
            share.hold(frames + bytes, max);
        }
    }

    /// Ends a client's WebSocket session that the gateway refuses: a close frame with the code
    /// goes to the client when it can fall between two of the backend's frames, then the error
    /// that ends the proxying of both sides.
    pub(super) async fn close_websocket(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        closing: Closing,
    ) -> Box<Error> {
        let code = u16::from(closing.code);
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        tracing::warn!(
            listener = %self.listener,
            client = %client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            code,
            reason = %closing.reason,
            "WebSocket session closed by the gateway"
        );
        match closing.code {
            CloseCode::Size => self.websocket_too_large.inc(),
            CloseCode::Again => self.held_full.inc(),
            _ => self.websocket_protocol.inc(),
        }
        // Before the upgrade (bytes sent with the upgrade request) there is no WebSocket to close:
        // the error answers the request.
        if session.as_downstream().was_upgraded() && ctx.ws_server.at_boundary() {
            let frame = Bytes::from(closing.frame());
            if let Err(e) = session
                .as_downstream_mut()
                .write_response_body(frame, true)
                .await
            {
                tracing::debug!(error = %e, "could not send the close frame");
            }
        }
        Error::explain(
            WEBSOCKET_REFUSED,
            format!("{} (close {code})", closing.reason),
        )
        .into_down()
    }

    /// Applies the pool's JSON-RPC method policy to a body read in full. Returns the body to send
    /// on: the client's, or a batch without its denied calls (their answers wait in `ctx.plan`);
    /// `None` when the request was denied and answered here, never reaching a backend.
    pub(super) async fn apply_method_policy(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: &Bytes,
    ) -> Result<Option<Bytes>> {
        if ctx.started.is_some() {
            ctx.rpc_methods = Some(rpc::methods(body));
        }
        let Some(pool) = ctx.session.pool.clone() else {
            return Ok(Some(body.clone()));
        };
        let judged = if body.len() > JUDGE_ELSEWHERE {
            // A large body is parsed on a blocking thread, not on one that serves others.
            let (body, pool) = (body.clone(), pool.clone());
            tokio::task::spawn_blocking(move || policy::judge(&body, &pool.config.methods))
                .await
                .or_err(ErrorType::InternalError, "judging the request body")?
        } else {
            policy::judge(body, &pool.config.methods)
        };
        ctx.reads_only = judged.reads_only;
        ctx.call = judged.single;
        let decision = judged.decision;
        match decision {
            Decision::Pass => Ok(Some(body.clone())),
            Decision::Answer(answer) => {
                pool.metrics.denied.inc();
                write_answer(session, answer).await?;
                Ok(None)
            }
            Decision::Rewrite { body, plan } => {
                pool.metrics.denied.inc();
                ctx.plan = Some(plan);
                Ok(Some(Bytes::from(body)))
            }
        }
    }
}
