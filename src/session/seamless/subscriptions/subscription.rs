//! The client's subscriptions: their parameters (to create them again), their ids on the current
//! backend and the client's, how far each got ([`Progress`]), and the gateway's own `newHeads`
//! that follows the first `logs` one; what a move carries ([`Gap`]). What the session does with
//! them is [`super::subscribing`].

use super::log_memory::LogMemory;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::mem::size_of;

/// A subscription the client holds.
#[derive(Debug)]
pub(super) struct Subscription {
    /// The `eth_subscribe` parameters as the client wrote them, to create it again elsewhere.
    pub(super) params: Option<Box<RawValue>>,
    /// Its id on the current backend.
    pub(super) backend_id: String,
    pub(super) progress: Progress,
}

impl Subscription {
    /// Bytes it holds, its client id's included (the log memory apart).
    pub(super) fn bytes(&self, client_sub: &str) -> usize {
        size_of::<(String, Subscription)>()
            + client_sub.len() * 2
            + self.backend_id.len() * 2
            + self.params.as_ref().map_or(0, |p| p.get().len())
    }
}

/// How far a subscription got, for the gap fill and for dropping repeats.
#[derive(Debug)]
pub(super) enum Progress {
    Heads {
        /// The heads delivered, oldest first (the last [`HEADS_GIVEN`]), as the client's chain:
        /// a head the client has (number and hash) is a repeat and dropped; one at or below the
        /// last under another hash is a reorg report, passed as a node sends one, and replaces
        /// the client's heads from its number on.
        ///
        /// [`HEADS_GIVEN`]: super::window::HEADS_GIVEN
        given: VecDeque<(u64, String)>,
    },
    Logs {
        /// The first block whose logs may not all have reached the client.
        resume_from: Option<u64>,
        delivered: LogMemory,
    },
    /// `newPendingTransactions`, `syncing`: created again, nothing to fill.
    Other,
}

/// What a subscription is of, for the session loop's gap fill.
#[derive(Debug, Clone, PartialEq)]
pub enum Topic {
    Heads,
    Logs { filter: Value },
    Other,
}

/// Where a subscription's gap starts after a move.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub client_sub: String,
    pub topic: Topic,
    /// The first block the client may lack: heads after the last delivered, logs from the first
    /// block not known complete. `None`: nothing delivered yet, nothing to fill.
    pub from: Option<u64>,
}
