//! Hedged reads: a request that only reads, sent to a pool with `hedge`, goes to one more healthy
//! backend when the backends asked so far have not sent an answer's header within `hedge.delay`
//! (up to `hedge.max` more), and the first acceptable answer goes to the client.
//!
//! What counts as a read was decided once, by the method policy's reading of the body
//! (`crate::jsonrpc::reads`, the list the seamless sessions' replay uses too) or, on a consensus
//! pool, by the method (`GET`, `HEAD`): `RequestCtx::reads_only`. A write is never hedged.
//!
//! The race runs in the request's own task: each attempt is a future of
//! [`crate::upstream::exchange::send`] that holds its own connection and borrows nothing of the
//! request, so the hooks (request, response, failure) run between polls with `ctx` pointed at the
//! attempt they judge. The rules:
//! - an answer's header the response hook lets through wins; one that is the backend's failure
//!   (502/503/504, an HTML page) loses while another attempt is still racing;
//! - the losers are dropped with their connections: a connection with an answer still coming is
//!   never given back to be reused;
//! - a hedge is not a retry (no attempt, no retry budget, no `ssv_ha_retries_total`), and it counts
//!   against no node's health: the slow backend it overtook is charged nothing, and the hedge's own
//!   failures are not charged either. The first attempt's failures are judged as without hedging;
//! - when every attempt failed, the last failure's retry decision applies, as for one attempt.

use super::ctx::RequestCtx;
use super::exchange::{answer_header, failed_answer, Answered, Won};
use super::gateway::Gateway;
use crate::config::model::Hedge;
use crate::upstream::connections::{Connections, Sender};
use crate::upstream::exchange::{send, Failure};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use hyper::body::Incoming;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::ErrorType;
use std::sync::Arc;
use std::time::Duration;

/// One attempt of a race: the backend it went to, and whether it is a hedge.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
    hedge: bool,
}

/// What a racing attempt came back with.
type Finished = (
    Slot,
    Arc<Connections>,
    Result<(Sender, http::Response<Incoming>), Failure>,
);

/// The attempts of one race, and what each new one needs.
struct Race {
    racing: FuturesUnordered<BoxFuture<'static, Finished>>,
    body: Bytes,
    response_timeout: Duration,
    /// A hedge was sent: the winner is counted.
    hedged: bool,
}

/// What woke the race.
enum Event {
    Finished(Finished),
    /// `hedge.delay` passed since the last backend was asked.
    Due,
}

/// Points the hooks at `slot`'s backend.
fn focus(ctx: &mut RequestCtx, slot: Slot) {
    ctx.session.backend = Some(slot.index);
    ctx.hedge = slot.hedge;
}

impl Gateway {
    /// Races the attempt on the backend [`Gateway::next_attempt`] chose against hedges sent
    /// every `budget.delay` while none answered, `budget.max` of them at most (the budget is the
    /// request's: what one race spends, the next has no more).
    pub(super) async fn race(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        connections: Arc<Connections>,
        body: &Bytes,
        response_timeout: Duration,
        budget: &mut Hedge,
    ) -> Result<Answered> {
        let Some(index) = ctx.session.backend else {
            return Error::e_explain(ErrorType::InternalError, "a race without a backend");
        };
        let mut race = Race {
            racing: FuturesUnordered::new(),
            body: body.clone(),
            response_timeout,
            hedged: false,
        };
        let first = Slot {
            index,
            hedge: false,
        };
        self.ask(session, ctx, &mut race, first, connections)
            .await?;
        let due = tokio::time::sleep(budget.delay);
        tokio::pin!(due);
        loop {
            let event = tokio::select! {
                Some(finished) = race.racing.next() => Event::Finished(finished),
                () = &mut due, if budget.max > 0 => Event::Due,
                else => return Error::e_explain(ErrorType::InternalError, "a race with no attempt"),
            };
            let (slot, connections, result) = match event {
                Event::Due => {
                    self.hedge(session, ctx, &mut race, budget).await?;
                    due.as_mut()
                        .reset(tokio::time::Instant::now() + budget.delay);
                    continue;
                }
                Event::Finished(finished) => finished,
            };
            focus(ctx, slot);
            let others = !race.racing.is_empty();
            let (sender, response) = match result {
                Ok(answered) => answered,
                Err(failure) => {
                    let e = self.failed(session, ctx, failure);
                    if others {
                        continue;
                    }
                    return Ok(Err(e));
                }
            };
            let (parts, incoming) = response.into_parts();
            let mut header = answer_header(parts);
            // A failed answer loses while another attempt may still bring a good one (the
            // response hook would let it through once no other backend is left untried).
            if let Some(what) = failed_answer(ctx, &header).filter(|_| others) {
                self.live_failure(session, ctx, &what);
                continue;
            }
            match self
                .upstream_response_filter(session, &mut header, ctx)
                .await
            {
                Ok(()) => {}
                Err(e) if e.retry() && others => continue,
                Err(e) if e.retry() => return Ok(Err(e)),
                Err(e) => return Err(e),
            }
            // The losers go now, their connections with them, answers still coming or not.
            drop(race.racing);
            if race.hedged {
                if let Some(pool) = self.pool(ctx) {
                    pool.metrics.hedge_wins[usize::from(slot.hedge)].inc();
                }
            }
            return Ok(Ok(Won {
                connections,
                sender,
                header,
                incoming,
            }));
        }
    }

    /// Sends the request to `slot`'s backend, its header through the request hook.
    async fn ask(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        race: &mut Race,
        slot: Slot,
        connections: Arc<Connections>,
    ) -> Result<()> {
        focus(ctx, slot);
        let request = self.backend_request(session, ctx, race.body.len()).await?;
        let body = race.body.clone();
        let response_timeout = race.response_timeout;
        race.racing.push(Box::pin(async move {
            let result = send(&connections, &request, &body, response_timeout).await;
            (slot, connections, result)
        }));
        Ok(())
    }

    /// `hedge.delay` passed with no answer: the request goes to the next healthy backend it has
    /// not been sent to, if there is one (else no more hedges are tried).
    async fn hedge(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        race: &mut Race,
        budget: &mut Hedge,
    ) -> Result<()> {
        let Some((index, connections)) = self.hedge_backend(ctx) else {
            budget.max = 0;
            return Ok(());
        };
        let slot = Slot { index, hedge: true };
        self.ask(session, ctx, race, slot, connections).await?;
        budget.max -= 1;
        race.hedged = true;
        if let Some(pool) = self.pool(ctx) {
            pool.metrics.hedges.inc();
        }
        Ok(())
    }

    /// The next healthy backend this request has not been sent to, for a hedge: chosen as a
    /// retry's would be but without moving the round-robin rotation, and marked tried, but not
    /// counted as an attempt.
    fn hedge_backend(&self, ctx: &mut RequestCtx) -> Option<(usize, Arc<Connections>)> {
        let pool = ctx.session.pool.clone()?;
        loop {
            let index = pool.select_beside(ctx.tried)?;
            ctx.tried |= 1 << index;
            if let Some(connections) = pool.backends[index].connections() {
                return Some((index, connections));
            }
        }
    }
}
