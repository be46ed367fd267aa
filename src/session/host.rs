//! What a long-lived session needs of the HTTP path that opened it.
//!
//! A session starts as an HTTP request: the path routed it to a pool, chooses its backend as for
//! any request (passive health, retry on another backend while nothing reached the client), and
//! shapes the upgrade request and its answer with its hooks. A seamless session does the same on
//! every backend it moves to, and keeps judging the client's messages as the path judges bodies.
//! It asks all of this of its [`Host`], so that this floor never names the proxy above it.
//!
//! The trait is used through generics, never `dyn`: a session served by the gateway calls the
//! gateway's hooks as directly as the gateway itself does, and the hot path pays nothing for the
//! floor between them.

use crate::upstream::routing::Routing;
use crate::upstream::{Backend, Pool};
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Incoming;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The facts about a request that its host and the session it becomes share; the host's own
/// context embeds it ([`Host::session_ctx`]).
#[derive(Default)]
pub struct SessionCtx {
    /// The pool the request was routed to.
    pub pool: Option<Arc<Pool>>,
    /// The backend the request (or the session) is on, as an index into the pool's backends.
    pub backend: Option<usize>,
    /// Index into the backend's `sessions_open` gauges while a session is open on it (set by
    /// the host's response hook, [`Host::upstream_response`]; the host counts it down at the end).
    pub open: Option<usize>,
    /// Bytes a seamless WebSocket session's state holds (requests in flight, remembered logs,
    /// messages waiting during a move), counted with its frames in the listener's held bytes.
    pub held: usize,
}

/// The HTTP path that opened a session, as the session sees it. Each method is the path's own
/// rule, so that a session's backend is chosen, blamed, and its requests shaped exactly as a
/// plain request's would be.
///
/// The host is `Sync`, its context `Send`, and its hooks' futures `Send`: a session runs inside
/// one of Pingora's hooks, whose future moves between threads.
pub trait Host: Sync {
    /// The host's per-request context, holding a [`SessionCtx`].
    type Ctx: Send;

    /// The session's part of the request's context.
    fn session_ctx(ctx: &mut Self::Ctx) -> &mut SessionCtx;

    /// The routing in force: a session ends when a reload replaces its pool (or at shutdown),
    /// and reads its timeouts here.
    fn routing(&self) -> &ArcSwap<Routing>;

    /// Chooses the backend for the next attempt, as for any request of the pool (its selection
    /// rules, the backends this request tried left out), counts the attempt and records it in
    /// [`SessionCtx::backend`]; `reach` gives what the attempt needs of the backend.
    fn next_attempt<T>(
        &self,
        ctx: &mut Self::Ctx,
        reach: impl Fn(&Backend) -> Option<T>,
    ) -> Result<T>;

    /// Connecting to the chosen backend failed: passive health, then whether to try another
    /// (`e.retry()` on the returned error).
    fn connect_failed(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
        e: Box<Error>,
    ) -> Box<Error>;

    /// The exchange with the chosen backend failed after connecting, on a connection of the
    /// session's own (never a pooled one): passive health, then whether to try another.
    fn proxy_failed(&self, session: &mut Session, ctx: &mut Self::Ctx, e: Box<Error>)
        -> Box<Error>;

    /// The request hook: shapes the client's request for the chosen backend (its host name, path
    /// prefix, headers).
    fn upstream_request(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The hook on the backend's answer: counts a session that opens ([`SessionCtx::open`]), and
    /// holds an answer that says the backend is gone against it (`Err`, with `e.retry()` when
    /// another backend may be tried).
    fn upstream_response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The hook on the answer as the client gets it.
    fn response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Relays a backend's plain answer (one that opened no session) to the client as the path
    /// relays any answer, `response_timeout` between two reads.
    fn relay_answer(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
        response: ResponseHeader,
        body: Incoming,
        response_timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Judges the client's next WebSocket bytes ([`super::relay::ClientFrames`]): what goes on,
    /// as whole frames; or the error that ends a session the host closed (it told the client).
    fn judge_client_frames(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
        chunk: Bytes,
    ) -> impl Future<Output = Result<Bytes>> + Send;

    /// A seamless session's state now holds `bytes`: the listener's held bytes follow.
    fn hold_session(ctx: &mut Self::Ctx, bytes: usize);
}

/// The pool the host routed a session to (`what` names the session, for the error a session
/// without one would be: the host's own bug).
pub fn routed_pool<H: Host>(ctx: &mut H::Ctx, what: &'static str) -> Result<Arc<Pool>> {
    match H::session_ctx(ctx).pool.clone() {
        Some(pool) => Ok(pool),
        None => Error::e_explain(pingora::ErrorType::InternalError, what),
    }
}

/// Opens a session to the client with the backend's answer `header`: the host's hooks on it
/// (which count the session on its backend, [`SessionCtx::open`]) and on the client's answer,
/// then the header itself, which the session's body follows.
pub async fn open_to_client<H: Host>(
    host: &H,
    session: &mut Session,
    ctx: &mut H::Ctx,
    mut header: ResponseHeader,
) -> Result<()> {
    host.upstream_response(session, &mut header, ctx).await?;
    host.response(session, &mut header, ctx).await?;
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|e| e.into_down())
}
