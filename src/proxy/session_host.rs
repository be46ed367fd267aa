//! The gateway as the host of the long-lived sessions it opens ([`session::Host`]): each method
//! is the hook or rule a plain request goes through, so a session's backend is chosen, blamed
//! and its upgrade shaped as any request's.

use super::ctx::RequestCtx;
use super::gateway::Gateway;
use crate::session::{self, SessionCtx};
use crate::upstream::routing::Routing;
use crate::upstream::Backend;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Incoming;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::time::Duration;

impl session::Host for Gateway {
    type Ctx = RequestCtx;

    fn session_ctx(ctx: &mut RequestCtx) -> &mut SessionCtx {
        &mut ctx.session
    }

    fn routing(&self) -> &ArcSwap<Routing> {
        &self.routing
    }

    fn next_attempt<T>(
        &self,
        ctx: &mut RequestCtx,
        reach: impl Fn(&Backend) -> Option<T>,
    ) -> Result<T> {
        Gateway::next_attempt(self, ctx, reach)
    }

    fn connect_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        Gateway::connect_failed(self, session, ctx, e)
    }

    fn proxy_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        Gateway::proxy_failed(self, session, ctx, e, false)
    }

    async fn upstream_request(
        &self,
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.upstream_request_filter(session, request, ctx).await
    }

    async fn upstream_response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.upstream_response_filter(session, response, ctx).await
    }

    async fn response(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.response_filter(session, response, ctx).await
    }

    async fn relay_answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response: ResponseHeader,
        body: Incoming,
        response_timeout: Duration,
    ) -> Result<()> {
        self.relay(session, ctx, response, body, response_timeout)
            .await
    }

    async fn judge_client_frames(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        chunk: Bytes,
    ) -> Result<Bytes> {
        Gateway::judge_client_frames(self, session, ctx, chunk).await
    }

    fn hold_session(ctx: &mut RequestCtx, bytes: usize) {
        Gateway::hold_session(ctx, bytes)
    }
}
