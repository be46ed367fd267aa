//! One attempt at a backend, and what a failed one means: the backend choice (the pool's
//! selection rules, the backends a request tried left out), passive health (a backend that
//! refuses connections leaves rotation; a broken answer counts once against it), and whether the
//! request goes to another backend ([`retry::decide`]). Plain requests, Pingora's path and the
//! long-lived sessions ([`crate::session::Host`]) all go through these.

use super::ctx::RequestCtx;
use super::error::NO_BACKEND;
use super::exchange::is_timeout;
use super::gateway::Gateway;
use super::retry::{self, Failed};
use crate::jsonrpc::scan as rpc;
use crate::upstream::{Backend, Pool};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::{ErrorSource, ErrorType, RetryType};
use std::sync::Arc;
use std::time::Instant;

impl Gateway {
    pub(super) fn pool<'c>(&self, ctx: &'c RequestCtx) -> Option<&'c Arc<Pool>> {
        ctx.session.pool.as_ref()
    }

    pub(super) fn backend<'c>(&self, ctx: &'c RequestCtx) -> Option<&'c Arc<Backend>> {
        Some(&ctx.session.pool.as_ref()?.backends[ctx.session.backend?])
    }

    /// Picks the backend for the next attempt and counts the attempt; `reach` gives what the
    /// attempt needs of the backend (`None` skips a backend whose address is not known yet: a
    /// healthy backend always has one, health checks resolve before they pass).
    pub(super) fn next_attempt<T>(
        &self,
        ctx: &mut RequestCtx,
        reach: impl Fn(&Backend) -> Option<T>,
    ) -> Result<T> {
        let Some(pool) = ctx.session.pool.clone() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "request chose a backend without a pool",
            );
        };
        loop {
            let Some(index) = pool.select(ctx.tried) else {
                return Err(Error::new(NO_BACKEND));
            };
            ctx.tried |= 1 << index;
            let Some(reached) = reach(&pool.backends[index]) else {
                continue;
            };
            ctx.attempts += 1;
            if ctx.attempts > 1 {
                pool.metrics.retries.inc();
            }
            ctx.session.backend = Some(index);
            ctx.hedge = false;
            ctx.upstream_start = Some(Instant::now());
            return Ok(reached);
        }
    }

    /// A connection to the chosen backend failed: passive health, then whether to try another
    /// (decided on the returned error).
    pub(super) fn connect_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // The gateway out of descriptors or local ports fails every connect alike: its own
        // trouble, not the nodes'. Nothing is held against a backend, and no other is tried.
        let local_resources = crate::limits::out_of_local_resources(&e);
        if local_resources {
            tracing::warn!(error = %e, "cannot open a backend connection: the gateway is out of file descriptors or local ports (raise LimitNOFILE / ulimit -n, or lower the in-flight caps)");
        } else if !ctx.hedge {
            // A backend that refuses or cannot complete a connection leaves rotation now, not at
            // its next failed check.
            if let (Some(pool), Some(index)) = (self.pool(ctx), ctx.session.backend) {
                let reason = format!("connect failed ({})", e.etype().as_str());
                pool.take_out(index, ctx.traffic, &reason);
            }
        }
        let decision = retry::decide(
            Failed::Connect { local_resources },
            self.attempt(session, ctx),
        );
        e.set_retry(decision.retries());
        e
    }

    /// An exchange with the chosen backend failed after connecting: passive health, then whether
    /// to try again (decided on the returned error). `client_reused`: the connection was pooled.
    pub(super) fn proxy_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: Box<Error>,
        client_reused: bool,
    ) -> Box<Error> {
        let name = self.backend(ctx).map_or("?", |b| b.name()).to_string();
        // A pooled connection the backend had closed while idle: the backend itself may be
        // fine, so it may be chosen again.
        let stale_connection = client_reused && matches!(e.retry, RetryType::ReusedOnly);
        // Passive health judges plain requests; a long-lived session ending (idle, or cut by the
        // gateway itself) says nothing about the backend, nor does a stale pooled connection.
        let judged = ctx.session.open.is_none()
            && e.esource() == &ErrorSource::Upstream
            && !stale_connection;
        if judged {
            let reason = if is_timeout(&e) {
                format!(
                    "no answer within the response timeout ({})",
                    e.etype().as_str()
                )
            } else {
                // Garbage, a body cut short.
                format!("broken response ({})", e.etype().as_str())
            };
            self.live_failure(session, ctx, &reason);
        }
        let mut e = e.more_context(format!("backend {name}"));
        let decision = retry::decide(
            Failed::Exchange { stale_connection },
            self.attempt(session, ctx),
        );
        if decision == retry::Decision::TrySameAgain {
            if let Some(b) = ctx.session.backend {
                ctx.tried &= !(1 << b);
            }
        }
        e.set_retry(decision.retries());
        e
    }

    /// A request failed on live traffic in a way one call can cause on every node alike (no
    /// answer within the response timeout, a broken answer, an error page): one failed check's
    /// worth, never the pool's last healthy backend ([`Pool::count_live_failure`]). When that is
    /// what it would have been, the gateway says the request is the likely cause.
    pub(super) fn live_failure(&self, session: &Session, ctx: &RequestCtx, reason: &str) {
        let (Some(backend), Some(pool)) = (self.backend(ctx), self.pool(ctx)) else {
            return;
        };
        // A hedge asked a second node only to spare the client a wait: no charge either way.
        if ctx.hedge {
            return;
        }
        if pool.count_live_failure(backend.index, reason) {
            return;
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let methods = ctx.body.as_deref().map(rpc::methods).unwrap_or_default();
        tracing::warn!(
            pool = %pool.name(),
            backend = %backend.name(),
            client = %client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            rpc = %methods,
            %reason,
            "a request failed on the pool's last healthy backend, which stays in rotation: \
             the request is the likely cause (an expensive call), not the node; its health \
             checks still judge it"
        );
    }

    /// Where the request stands after a failed attempt, for [`retry::decide`].
    pub(super) fn attempt(&self, session: &Session, ctx: &RequestCtx) -> retry::Attempt {
        retry::Attempt {
            answer_started: session.as_downstream().response_written().is_some(),
            body_replayable: !session.as_downstream().retry_buffer_truncated(),
            attempts: ctx.attempts,
            retries: ctx.retries,
            untried_backend: self.pool(ctx).is_some_and(|p| p.has_untried(ctx.tried)),
        }
    }
}
