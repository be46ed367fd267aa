//! The session's state ([`SessionState`]) and its bookkeeping of requests: each of the client's
//! requests in flight under an id of the gateway's ([`InFlight`]), and the gateway's own calls.

use super::subscription::Subscription;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::size_of;

/// One request the backend has not answered yet.
#[derive(Debug)]
pub(super) struct InFlight {
    /// The client's id as the client wrote it, put back on the answer.
    pub(super) client_id: Box<str>,
    /// The method's name (the first [`METHOD_NAME_KEPT`] bytes), for an error message.
    ///
    /// [`METHOD_NAME_KEPT`]: super::client::METHOD_NAME_KEPT
    pub(super) method: Box<str>,
    /// The request as sent to the backend (with the gateway's id), to send it again; kept only
    /// when it is safe to repeat.
    pub(super) sent: Option<Box<[u8]>>,
    pub(super) kind: CallKind,
    /// The batch it came in, by the batch's first gateway id.
    pub(super) batch: Option<u64>,
}

impl InFlight {
    /// Bytes it holds, as counted in [`SessionState::in_flight_bytes`].
    fn bytes(&self) -> usize {
        size_of::<(u64, InFlight)>()
            + self.client_id.len()
            + self.method.len()
            + self.sent.as_ref().map_or(0, |s| s.len())
            + match &self.kind {
                CallKind::Subscribe { params } => params.as_ref().map_or(0, |p| p.get().len()),
                CallKind::Unsubscribe { client_sub } => client_sub.len(),
                CallKind::Plain | CallKind::NotARequest => 0,
            }
    }
}

#[derive(Debug)]
pub(super) enum CallKind {
    Plain,
    Subscribe {
        params: Option<Box<RawValue>>,
    },
    Unsubscribe {
        client_sub: String,
    },
    /// A batch element without a method, sent as [`NOT_A_REQUEST`]: answered by the gateway.
    ///
    /// [`NOT_A_REQUEST`]: super::wire::NOT_A_REQUEST
    NotARequest,
}

/// The client's JSON-RPC session.
#[derive(Debug, Default)]
pub struct SessionState {
    pub(super) next_id: u64,
    pub(super) in_flight: BTreeMap<u64, InFlight>,
    pub(super) in_flight_bytes: usize,
    /// Subscriptions by the id the client knows.
    pub(super) subs: BTreeMap<String, Subscription>,
    /// What they hold, their log memory apart.
    pub(super) subs_bytes: usize,
    /// Client id by the current backend's id.
    pub(super) by_backend: HashMap<String, String>,
    /// Client subscription ids handed out, so that a new one never repeats an old one.
    pub(super) issued: u64,
    /// The gateway's own calls in the session's traffic: the head when a `logs` subscription
    /// began, by call id (the subscription's client id).
    pub(super) started: HashMap<u64, String>,
    /// Those calls, to send.
    pub(super) requests: Vec<Vec<u8>>,
    /// The gateway's own `newHeads` subscription on the backend, made with the first `logs`
    /// subscription and never shown to the client: it tells how far the logs got (a quiet
    /// filter's gap starts at the last head, not at the subscription's start) and which blocks
    /// the client's chain had (for a reorg across a switch). Its id, its call while made, and
    /// whether the session needs it.
    pub(super) hidden: Option<String>,
    pub(super) hidden_call: Option<u64>,
    pub(super) wants_hidden: bool,
    /// The last heads the session saw (number, hash), oldest first.
    pub(super) heads_seen: VecDeque<(u64, String, u64)>,
    /// What they hold ([`super::budget::head_bytes`] each), kept by the only code that changes
    /// them (`remember_head`, `forget_heads_from`).
    pub(super) heads_bytes: usize,
    /// What the `logs` subscriptions' memories hold together, kept with each change to one
    /// ([`super::budget::counted`]).
    pub(super) logs_bytes: usize,
    /// Moves so far: each head seen and block of delivered logs is marked with the move it was
    /// last seen in, so that the next move knows which of them a match of hashes vouches for
    /// (a backend behind the session's heads leaves those above its head unchecked).
    pub(super) epoch: u64,
    /// Notifications the gateway makes that go to the client before the current message (logs
    /// taken back).
    pub(super) extra: Vec<Vec<u8>>,
    /// Bytes the session loop holds for the session (notifications waiting during a move).
    pub(super) waiting: usize,
}

impl SessionState {
    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The gateway's own calls to send to the backend now.
    pub fn take_requests(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.requests)
    }

    /// A fresh id of the gateway's, for its own calls.
    pub fn own_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Takes a request out of those in flight.
    pub(super) fn answered(&mut self, id: u64) -> Option<InFlight> {
        let call = self.in_flight.remove(&id)?;
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(call.bytes());
        Some(call)
    }

    /// Puts a request among those in flight.
    pub(super) fn keep(&mut self, id: u64, call: InFlight) {
        self.in_flight_bytes += call.bytes();
        self.in_flight.insert(id, call);
    }
}
