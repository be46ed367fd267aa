//! The access log: one line per request (target `access`), written by the `logging` hook.

use super::ctx::RequestCtx;
use crate::upstream::Backend;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Writes the request's access line, if it is logged (`ctx.started` is set when `log.access` is
/// on). `status` is the answer the client got (0: none), `backend` the last one tried, and `e` what
/// ended the request, if anything did.
pub(super) fn write(
    session: &Session,
    ctx: &RequestCtx,
    listener: &str,
    backend: Option<&Backend>,
    status: u16,
    e: Option<&Error>,
) {
    let Some(started) = ctx.started else {
        return;
    };
    let request = session.req_header();
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    tracing::info!(
        target: "access",
        listener = %listener,
        pool = ctx.session.pool.as_ref().map_or("-", |p| p.name()),
        backend = backend.map_or("-", |b| b.name()),
        client = %client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        method = %request.method,
        path = request.uri.path(),
        rpc = ctx.rpc_methods.as_deref().unwrap_or(""),
        status,
        bytes = session.as_downstream().body_bytes_sent(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        retries = ctx.attempts.saturating_sub(1),
        cache = ctx.cached,
        error = e.map_or("", |e| e.etype().as_str()),
    );
}
