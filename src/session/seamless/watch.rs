//! The watch: what a seamless session looks at while it serves, every [`WATCH`], to see its
//! backend marked down, a better one healthy for the fail-back delay, a reload that replaced its
//! pool, or shutdown ([`Watch::look`]); where it goes next ([`next_backend`]), and how a move is
//! recorded ([`record_move`]), the same for WebSockets and event streams; a wait on a peer
//! raced against it ([`watched`]).

use crate::config::model::Policy;
use crate::metrics::MOVE_REASONS;
use crate::upstream::routing::Routing;
use crate::upstream::{Backend, Pool};
use arc_swap::ArcSwap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a session's backend is looked at while the session is quiet.
pub(super) const WATCH: Duration = Duration::from_millis(100);

/// Why a session moved, as an index into [`MOVE_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    BackendDown = 0,
    FailBack = 1,
    BackendEnded = 2,
}

impl Move {
    pub(super) fn as_str(self) -> &'static str {
        MOVE_REASONS[self as usize]
    }
}

/// What a look at a session's backend decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Look {
    Stay,
    Move(Move),
    /// Shutting down, or a reload replaced the pool: the session ends as a cut one would, and
    /// the client reconnects (to the new pool).
    End,
}

/// Looks at a session's backend: down, or a better one healthy for the fail-back delay.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Since when a backend ranked before this one is healthy.
    better_since: Option<Instant>,
}

impl Watch {
    /// Looks at backend `index` of `pool`, a pool of `routing` unless a reload replaced it.
    pub(super) fn look(
        &mut self,
        routing: &ArcSwap<Routing>,
        pool: &Arc<Pool>,
        index: usize,
    ) -> Look {
        if ended(routing, pool) {
            return Look::End;
        }
        if !pool.backends[index].is_up() {
            return Look::Move(Move::BackendDown);
        }
        // A fail-back is a rule of policy `first` (as for cut sessions, `schedule_failback`):
        // under `round_robin` the backends are equals, and a session stays where it is.
        let failback = pool
            .config
            .failback
            .filter(|_| pool.config.policy == Policy::First);
        if let Some(delay) = failback {
            let better = pool
                .active()
                .is_some_and(|a| pool.rank(a) < pool.rank(index));
            match (better, self.better_since) {
                (false, _) => self.better_since = None,
                (true, None) => self.better_since = Some(Instant::now()),
                (true, Some(since)) if since.elapsed() >= delay => {
                    return Look::Move(Move::FailBack);
                }
                (true, Some(_)) => {}
            }
        }
        Look::Stay
    }
}

/// Whether a session of `pool` ends: the gateway shuts down, or a reload replaced the pool.
pub(super) fn ended(routing: &ArcSwap<Routing>, pool: &Arc<Pool>) -> bool {
    pool.is_closing() || !routing.load().pools.iter().any(|p| Arc::ptr_eq(p, pool))
}

/// What came of a wait raced against the watch ([`watched`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Watched<T> {
    /// The wait was over first.
    Done(T),
    /// The backend waited on was marked down first.
    Down,
    /// Shutdown, or a reload that replaced the pool, came first.
    End,
}

/// Awaits `wait` while the watch looks every [`WATCH`]: shutdown or a reload that replaces the
/// pool ends it ([`Watched::End`]), and so does the mark-down of backend `down_of`, if one is
/// named ([`Watched::Down`]). Dropping `wait` must be safe then.
pub(super) async fn watched<T>(
    routing: &ArcSwap<Routing>,
    pool: &Arc<Pool>,
    down_of: Option<usize>,
    wait: impl Future<Output = T>,
) -> Watched<T> {
    let mut wait = std::pin::pin!(wait);
    let mut tick = tokio::time::interval(WATCH);
    loop {
        tokio::select! {
            done = &mut wait => return Watched::Done(done),
            _ = tick.tick() => {
                if ended(routing, pool) {
                    return Watched::End;
                }
                if down_of.is_some_and(|index| !pool.backends[index].is_up()) {
                    return Watched::Down;
                }
            }
        }
    }
}

/// The healthy backend a moving session goes to, and how to reach it (`reach`: its connections
/// to the endpoint the session uses), past the `excluded` ones.
pub(super) fn next_backend<T>(
    pool: &Pool,
    excluded: u64,
    reach: impl Fn(&Backend) -> Option<T>,
) -> Option<(usize, T)> {
    let mut tried = excluded;
    loop {
        let index = pool.select(tried)?;
        tried |= 1 << index;
        if let Some(reached) = reach(&pool.backends[index]) {
            return Some((index, reached));
        }
    }
}

/// A session moved from backend `from` to `to`: the open-session gauge follows it, the move is
/// counted and logged.
pub(super) fn record_move(pool: &Pool, kind: usize, from: Option<usize>, to: usize, why: Move) {
    let from = from.map(|f| &pool.backends[f]);
    if let Some(from) = from {
        from.metrics.sessions_open[kind].dec();
    }
    pool.backends[to].metrics.sessions_open[kind].inc();
    pool.metrics.moved[kind][why as usize].inc();
    tracing::info!(
        pool = %pool.name(),
        kind = crate::metrics::SESSION_KINDS[kind],
        from = from.map_or("-", |b| b.name()),
        to = pool.backends[to].name(),
        reason = why.as_str(),
        "session moved"
    );
    pool.record_move(
        crate::metrics::SESSION_KINDS[kind],
        from.map(|b| b.name()),
        pool.backends[to].name(),
        why.as_str(),
    );
}
