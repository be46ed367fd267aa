//! The gateway's own exchange with a backend, for plain requests whose whole body is already in
//! hand: small JSON-RPC calls (read before connecting, for the method policy) and requests without
//! a body. Most of the traffic an SSV node sends is of this kind.
//!
//! Pingora's HTTP/1 client writes and flushes the request header before the body, one send each;
//! here header and body leave in one write, over the backend's own kept-alive connections
//! ([`crate::upstream::connections`]). Everything else is the same as on Pingora's path, because
//! it is the same code: the request and response hooks of [`Gateway`], its backend choice, its
//! passive health and retry rules, and `fail_to_proxy` and `logging` after it.

use super::ctx::RequestCtx;
use super::exchange::{answer_header, Answered, Won};
use super::gateway::Gateway;
use crate::upstream::connections::{upstream_error, Connections};
use crate::upstream::exchange::{send, this_hop, Failure};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::ErrorType;
use std::sync::Arc;
use std::time::Duration;

impl Gateway {
    /// Answers the request from a backend, trying others as the retry rules allow, and asking a
    /// second one too when the pool hedges and the request only reads ([`super::hedge`]). `Ok`
    /// when the answer reached the client; an error goes on to `fail_to_proxy` like one of
    /// Pingora's.
    pub(super) async fn exchange_directly(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Bytes,
        response_timeout: Duration,
    ) -> Result<()> {
        let hedged = self.pool(ctx).and_then(|p| p.config.hedge);
        let mut hedge = hedged.filter(|_| ctx.reads_only);
        loop {
            let connections = self.next_attempt(ctx, |b| b.connections())?;
            let answered = match hedge.as_mut() {
                // Boxed: the race's state stays off the common path's future.
                Some(budget) => {
                    Box::pin(self.race(session, ctx, connections, &body, response_timeout, budget))
                        .await?
                }
                None => {
                    self.exchange_once(session, ctx, connections, &body, response_timeout)
                        .await?
                }
            };
            let won = match answered {
                Ok(won) => won,
                Err(e) if e.retry() => continue,
                Err(e) => return Err(e),
            };
            self.relay(session, ctx, won.header, won.incoming, response_timeout)
                .await?;
            won.connections.give_back(won.sender);
            return Ok(());
        }
    }

    /// One attempt on the backend [`Gateway::next_attempt`] chose.
    async fn exchange_once(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connections: Arc<Connections>,
        body: &Bytes,
        response_timeout: Duration,
    ) -> Result<Answered> {
        let request = self.backend_request(session, ctx, body.len()).await?;
        let (sender, response) = match send(&connections, &request, body, response_timeout).await {
            Ok(exchange) => exchange,
            Err(failure) => return Ok(Err(self.failed(session, ctx, failure))),
        };
        let (parts, incoming) = response.into_parts();
        let mut header = answer_header(parts);
        if let Err(e) = self
            .upstream_response_filter(session, &mut header, ctx)
            .await
        {
            // Retrying elsewhere: this connection is left with an unread answer, so it goes.
            return if e.retry() { Ok(Err(e)) } else { Err(e) };
        }
        Ok(Ok(Won {
            connections,
            sender,
            header,
            incoming,
        }))
    }

    /// The request as it goes to the backend `ctx` has chosen, through the request hook.
    pub(super) async fn backend_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body_len: usize,
    ) -> Result<RequestHeader> {
        let mut request = session.req_header().clone();
        self.upstream_request_filter(session, &mut request, ctx)
            .await?;
        this_hop(&mut request, body_len)?;
        Ok(request)
    }

    /// An attempt that failed before the answer's header: passive health, then whether another
    /// backend is tried (decided on the returned error).
    pub(super) fn failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        failure: Failure,
    ) -> Box<Error> {
        match failure {
            Failure::Connect(e) => self.connect_failed(session, ctx, e),
            Failure::Exchange(e) => self.proxy_failed(session, ctx, e, false),
        }
    }

    /// Sends the backend's answer to the client as it arrives, through the response body hook.
    pub(super) async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut header: ResponseHeader,
        mut incoming: Incoming,
        response_timeout: Duration,
    ) -> Result<()> {
        let no_body = session.req_header().method == http::Method::HEAD
            || matches!(header.status.as_u16(), 204 | 304);
        let framed = header.headers.contains_key(http::header::TRANSFER_ENCODING)
            || header.headers.contains_key(http::header::CONTENT_LENGTH);
        // As on Pingora's path: an answer framed by the backend closing its connection (or one
        // whose length a hook removed) goes chunked, so the client's connection stays usable;
        // then the response hook has its say.
        header.set_version(http::Version::HTTP_11);
        if !no_body && !framed {
            header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        self.response_filter(session, &mut header, ctx).await?;
        // A batch answer to merge goes through the body hook even when the backend sent none
        // (a batch of notifications): the gateway's own answers are in the merge.
        let done = no_body || (hyper::body::Body::is_end_stream(&incoming) && ctx.answer.is_none());
        session
            .write_response_header(Box::new(header), done)
            .await
            .map_err(|e| e.into_down())?;
        if done {
            return Ok(());
        }
        loop {
            let frame = match fast_timeout(response_timeout, incoming.frame()).await {
                Err(_) => Err(upstream_error(
                    ErrorType::ReadTimedout,
                    format!("answer stalled for {response_timeout:?}"),
                    "response timeout",
                )),
                Ok(None) => Ok(None),
                Ok(Some(Ok(frame))) => Ok(Some(frame)),
                Ok(Some(Err(e))) => Err(upstream_error(
                    ErrorType::ReadError,
                    "reading the answer's body",
                    e,
                )),
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return Err(self.proxy_failed(session, ctx, e, false)),
            };
            // Trailers carry nothing the client needs from a JSON-RPC or beacon answer.
            let mut chunk = match frame.map(|f| f.into_data()) {
                Some(Ok(data)) => Some(data),
                Some(Err(_trailers)) => continue,
                None => None,
            };
            let end = chunk.is_none() || hyper::body::Body::is_end_stream(&incoming);
            self.response_body_filter(session, &mut chunk, end, ctx)?;
            // The client's side: one that went away is not the backend's failure.
            session
                .write_response_body(chunk, end)
                .await
                .map_err(|e| e.into_down())?;
            if end {
                return Ok(());
            }
        }
    }
}
