//! A seamless WebSocket session from the client's upgrade to its end: opened on a first backend
//! like any request ([`super::open`]), relayed there ([`super::relay`]), moved when it must
//! ([`super::moving`]), and closed instead of moving when it moved too often ([`Moves`]).

use super::super::backend::BackendSocket;
use super::super::subscriptions::SessionState;
use super::super::watch::record_move;
use super::open::accept_key;
use super::state::{Outcome, WsSession};
use crate::session::{routed_pool, Host, SessionCtx};
use crate::upstream::Pool;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The session kind of WebSockets, in [`crate::metrics::SESSION_KINDS`].
const WEBSOCKET: usize = 0;

/// Moves in a row, each without a message from the backend it went to, after which the session
/// closes instead of moving again (backends that all close on it).
pub const MAX_FRUITLESS_MOVES: u32 = 3;

/// Moves a session may make within [`MOVES_WINDOW`]: one more closes it (1011, with the reason),
/// so that neither a client nor a flapping node can make a session churn the backups (each move
/// creates its subscriptions again and fills their gap) and the event list.
pub const MAX_MOVES: usize = 10;

/// The window [`MAX_MOVES`] counts in.
pub const MOVES_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Serves a WebSocket session of a `sessions: seamless` execution pool for `host`, which routed
/// and admitted the upgrade; `Ok` once it ended.
pub async fn serve_websocket<H: Host>(
    host: &H,
    session: &mut Session,
    ctx: &mut H::Ctx,
    response_timeout: Duration,
) -> Result<()> {
    let pool = routed_pool::<H>(ctx, "WebSocket without a pool")?;
    let Some(accept) = accept_key(session.req_header()) else {
        return Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            "a WebSocket upgrade without Sec-WebSocket-Key, or not version 13",
        );
    };
    let mut ws = WsSession {
        host,
        session,
        ctx,
        pool,
        response_timeout,
        leaving: None,
    };
    let Some((index, upstream, protocol)) = ws.open_first().await? else {
        // The backend refused the upgrade, and the client has its answer.
        return Ok(());
    };
    ws.accept(accept, protocol).await?;
    ws.carry_on(index, upstream).await
}

impl<H: Host> WsSession<'_, H> {
    pub(super) fn session_ctx(&mut self) -> &mut SessionCtx {
        H::session_ctx(self.ctx)
    }

    /// Relays the session on backend `index`, then on each backend it moves to, until it ends.
    async fn carry_on(&mut self, mut index: usize, mut upstream: BackendSocket) -> Result<()> {
        let mut state = SessionState::default();
        let mut moves = Moves::default();
        loop {
            let outcome = self.relay_messages(index, &mut upstream, &mut state).await;
            upstream.close(Duration::from_secs(1)).await;
            let (why, heard) = match outcome? {
                Outcome::Over => return Ok(()),
                Outcome::Move { why, heard } => (why, heard),
            };
            if let Some(too_often) = moves.count(heard) {
                let reason = too_often.log(&self.pool);
                self.close(CloseCode::Error, &reason).await;
                return Ok(());
            }
            // The session stays counted on its backend until a move succeeds.
            let counted = self.session_ctx().backend;
            match self.move_session(index, why, &mut state).await {
                Ok(Some((to, moved))) => {
                    record_move(&self.pool, WEBSOCKET, Some(index), to, why);
                    self.session_ctx().backend = Some(to);
                    index = to;
                    upstream = moved;
                }
                Ok(None) => {
                    self.session_ctx().backend = counted;
                    return Ok(());
                }
                Err(e) => {
                    self.session_ctx().backend = counted;
                    return Err(e);
                }
            }
        }
    }
}

/// The moves a session made: in a row without a message from the backend each went to, and
/// those within [`MOVES_WINDOW`].
#[derive(Debug, Default)]
struct Moves {
    fruitless: u32,
    recent: VecDeque<Instant>,
}

/// Why a session closes instead of moving again.
#[derive(Debug, PartialEq, Eq)]
enum TooOften {
    /// This many moves in a row without a message from a backend.
    Fruitless(u32),
    /// This many moves within [`MOVES_WINDOW`].
    Churning(usize),
}

impl Moves {
    /// Counts the move the session is about to make (`heard`: the backend it leaves sent
    /// something); `Some` when it moved too often and closes instead.
    fn count(&mut self, heard: bool) -> Option<TooOften> {
        self.fruitless = if heard { 0 } else { self.fruitless + 1 };
        if self.fruitless > MAX_FRUITLESS_MOVES {
            return Some(TooOften::Fruitless(self.fruitless));
        }
        while self
            .recent
            .front()
            .is_some_and(|at| at.elapsed() > MOVES_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_MOVES {
            return Some(TooOften::Churning(self.recent.len()));
        }
        self.recent.push_back(Instant::now());
        None
    }
}

impl TooOften {
    /// Logs why the session on `pool` closes; returns the reason its client gets.
    fn log(&self, pool: &Pool) -> String {
        match *self {
            TooOften::Fruitless(moves) => {
                tracing::warn!(pool = %pool.name(), moves, "a WebSocket session moved again and again without a message from a backend: it closes");
                format!("moved {moves} times in a row without a message from a backend; reconnect")
            }
            TooOften::Churning(moves) => {
                tracing::warn!(pool = %pool.name(), moves, window = ?MOVES_WINDOW, "a WebSocket session moved too often: it closes");
                format!(
                    "moved {moves} times within {} minutes; reconnect",
                    MOVES_WINDOW.as_secs() / 60
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_closes_after_too_many_fruitless_moves_in_a_row() {
        let mut moves = Moves::default();
        for _ in 0..MAX_FRUITLESS_MOVES {
            assert_eq!(moves.count(false), None);
        }
        assert_eq!(
            moves.count(false),
            Some(TooOften::Fruitless(MAX_FRUITLESS_MOVES + 1))
        );
        // A backend that spoke starts the count again.
        let mut moves = Moves::default();
        for _ in 0..MAX_FRUITLESS_MOVES {
            assert_eq!(moves.count(false), None);
        }
        assert_eq!(moves.count(true), None);
        assert_eq!(moves.count(false), None);
    }

    #[test]
    fn a_session_closes_on_one_move_too_many_within_the_window() {
        let mut moves = Moves::default();
        for _ in 0..MAX_MOVES {
            assert_eq!(moves.count(true), None);
        }
        assert_eq!(moves.count(true), Some(TooOften::Churning(MAX_MOVES)));
        // Moves older than the window are forgotten.
        if let Some(long_ago) = Instant::now().checked_sub(MOVES_WINDOW + Duration::from_secs(1)) {
            moves.recent.iter_mut().for_each(|at| *at = long_ago);
            assert_eq!(moves.count(true), None);
            assert_eq!(moves.recent.len(), 1);
        }
    }
}
