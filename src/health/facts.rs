//! What a probe saw on a node ([`Facts`]): the one value that passes from the probes to the
//! verdict, the health record and `/status`.

use serde::Serialize;

/// What one successful probe saw on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    Execution(ExecutionFacts),
    Consensus(ConsensusFacts),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionFacts {
    pub syncing: bool,
    /// `None` when the node does not answer `net_peerCount` (or it was not asked).
    pub peers: Option<u64>,
    /// Error of `net_peerCount` when the node refused it, kept for the reason text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_error: Option<String>,
    pub head: Option<u64>,
    pub chain_id: Option<u64>,
    /// Unix time of the latest block, when it was asked (`max_head_age` is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_time: Option<u64>,
    /// The node's finalized block (`eth_getBlockByNumber("finalized")`); `None` when it gave
    /// none (an older node, a chain before the merge): nothing block-dependent is cached from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalized: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsensusFacts {
    pub is_syncing: bool,
    pub is_optimistic: Option<bool>,
    pub el_offline: Option<bool>,
    pub head_slot: Option<u64>,
    /// `None` when peers were not asked (`min_peers: 0`).
    pub peers: Option<u64>,
    /// Read once per node and kept (it cannot change without the node changing network).
    pub genesis: Option<Genesis>,
    /// `SECONDS_PER_SLOT` of the node's spec, read once and kept.
    pub seconds_per_slot: Option<u64>,
}

/// The network identity of a beacon node, from `/eth/v1/beacon/genesis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Genesis {
    pub time: u64,
    pub validators_root: String,
    pub fork_version: String,
}
