//! The answer cache on the HTTP path: a request it may answer is answered before any backend is
//! chosen; one it may keep has its answer gathered as it streams to the client and kept at the
//! end when the rules of [`crate::upstream::cache`] hold for the backend that sent it.
//! Batches are never looked up (their answers are not kept either).

use super::ctx::RequestCtx;
use super::gateway::Gateway;
use crate::config::model::PoolKind;
use crate::upstream::cache::{self, Asked, Lookup, CONSENSUS_VERSION};
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// How the cache served a request, for the access line.
pub(super) const HIT: &str = "hit";
pub(super) const MISS: &str = "miss";

impl Gateway {
    /// Answers the request from its pool's cache when it can (`true`); otherwise a request the
    /// cache may keep gets ready to gather its answer. `body`: the body as the client sent it.
    pub(super) async fn answer_from_cache(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: &Bytes,
    ) -> Result<bool> {
        let Some(pool) = ctx.session.pool.clone() else {
            return Ok(false);
        };
        let Some(store) = pool.cache.as_ref() else {
            return Ok(false);
        };
        let request = session.req_header();
        let asked = match pool.config.kind {
            // One call forwarded as the client wrote it, with an id to answer.
            PoolKind::Execution => {
                let Some(call) = ctx.call.as_ref().filter(|_| ctx.plan.is_none()) else {
                    return Ok(false);
                };
                let Some(id) = call.id.clone().and_then(|id| body.get(id)) else {
                    return Ok(false);
                };
                let params = call.params.clone().and_then(|p| body.get(p));
                Asked::Call {
                    path_and_query: request.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                    method: &call.method,
                    params: params.and_then(|p| std::str::from_utf8(p).ok()),
                    id,
                }
            }
            PoolKind::Consensus if request.method == http::Method::GET && body.is_empty() => {
                Asked::Get {
                    path: request.uri.path(),
                    path_and_query: request.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                    takes_json: cache::takes_json(request.headers.get(http::header::ACCEPT)),
                }
            }
            PoolKind::Consensus => return Ok(false),
        };
        match cache::look_up(store, || pool.network(), &asked) {
            Lookup::Hit {
                body,
                consensus_version,
            } => {
                ctx.cached = HIT;
                write_kept(session, body, consensus_version).await?;
                Ok(true)
            }
            Lookup::Miss(fill) => {
                ctx.cached = MISS;
                ctx.fill = Some(Box::new(fill));
                Ok(false)
            }
            Lookup::Pass => Ok(false),
        }
    }

    /// The answer's header of an attempt: a request whose answer cannot be kept stops gathering.
    pub(super) fn cache_answer_header(ctx: &mut RequestCtx, header: &ResponseHeader) {
        if let Some(fill) = ctx.fill.as_mut() {
            if !fill.answer_header(header.status.as_u16(), &header.headers) {
                ctx.fill = None;
            }
        }
    }

    /// A piece of the answer on its way to the client; at its end, the answer is kept if it may.
    pub(super) fn cache_answer_body(&self, ctx: &mut RequestCtx, chunk: Option<&Bytes>, end: bool) {
        let Some(fill) = ctx.fill.as_mut() else {
            return;
        };
        if let Some(chunk) = chunk {
            // What is gathered counts in the listener's held bytes, with the request's body: a
            // listener at its limit passes answers on unkept rather than hold more.
            let gathered = fill.gathered() + chunk.len();
            if !self.hold_answer(ctx, gathered) {
                ctx.fill = None;
                return;
            }
            let Some(fill) = ctx.fill.as_mut() else {
                return;
            };
            if !fill.gather(chunk) {
                ctx.fill = None;
                return;
            }
        }
        if !end {
            return;
        }
        let (Some(fill), Some(pool), Some(backend)) = (
            ctx.fill.take(),
            ctx.session.pool.as_ref(),
            self.backend(ctx),
        ) else {
            return;
        };
        // A reload that rebuilt the pool meanwhile gave it a new cache: the old one is not
        // filled (no request reads it again, and its gauges are the new one's now).
        let current = self
            .routing
            .load()
            .pools
            .iter()
            .any(|p| Arc::ptr_eq(p, pool));
        if let Some(store) = pool.cache.as_ref().filter(|_| current) {
            fill.keep(store, backend.standing().as_deref());
        }
    }
}

/// Writes a kept answer to the client; its connection stays open for the next request.
async fn write_kept(
    session: &mut Session,
    body: Bytes,
    consensus_version: Option<HeaderValue>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if let Some(version) = consensus_version {
        resp.insert_header(CONSENSUS_VERSION, version)?;
    }
    let downstream = session.as_downstream_mut();
    downstream.write_response_header(Box::new(resp)).await?;
    downstream.write_response_body(body, true).await
}
