//! What a simulated node reports ([`NodeStatus`], changed while it runs), the partial update
//! `POST /sim/state` takes, and the simulated chain's slot length.

use super::clock::unix_now;
use serde::{Deserialize, Serialize};

/// The state a node reports; every field can be changed while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub syncing: bool,
    pub peers: u64,
    /// Block number (execution) or slot (consensus).
    pub head: u64,
    pub chain_id: u64,
    /// Execution only: whether `net_peerCount` exists (anvil lacks it).
    pub peer_count_supported: bool,
    /// Consensus only.
    pub optimistic: bool,
    /// Consensus only; `None` leaves the field out, as older clients do.
    pub el_offline: Option<bool>,
    /// Answer every request with this HTTP status and an HTML page.
    pub fail_status: Option<u16>,
    /// Wait this long (ms) before answering.
    pub delay_ms: u64,
    /// Wait this long (ms) before answering a client's request, but answer the gateway's health
    /// probes at once: a node slow to serve whose checks still pass.
    pub client_delay_ms: u64,
    /// Consensus only: send an SSE `:keep-alive` comment line this often (ms); `None`: never.
    pub sse_keep_alive_ms: Option<u64>,
    /// Execution only: how old (s) the latest block is; 0 makes it fresh on every ask, more
    /// makes a node that stopped following its chain.
    pub head_age_s: u64,
    /// Answer every request with this body (status 200, JSON content type), whatever it asked.
    pub reply_override: Option<String>,
    /// Execution only: blocks from this number on are another branch's (other hashes), as after
    /// a reorg; `None`: the common chain.
    pub branch_from: Option<u64>,
    /// Execution only: close every WebSocket, without a word, once it has answered this many
    /// messages (0: right after the upgrade).
    pub ws_close_after: Option<u64>,
    /// Execution only: wait this long (ms) before each WebSocket answer.
    pub ws_answer_delay_ms: u64,
    /// Execution only: the origins a WebSocket upgrade may come from, as geth's `--ws.origins`.
    /// An upgrade whose `Origin` is not listed (compared whole, in any letter case; `*` lets any
    /// in) is refused as geth refuses it: 403 with gorilla/websocket's text. One without `Origin`
    /// passes, as on geth (browsers always send it). `None`: no check.
    pub ws_origins: Option<Vec<String>>,
    /// Execution only: the path WebSocket is served under, as geth's `--ws.rpcprefix` when
    /// WebSocket shares the HTTP port. An upgrade to another path is answered as geth's HTTP side
    /// answers it: `/` gets 200 with no body (geth's answer to a GET without a body, for load
    /// balancers' checks), any other path 404 with no body. `None`: every path serves WebSocket.
    pub ws_path: Option<String>,
    /// Execution only: stop reading every WebSocket connection (a frozen node: its TCP window
    /// closes once its buffers are full); heads still go out.
    pub ws_frozen: bool,
    /// Execution only: write the `id` of each WebSocket answer as its last key (as Nethermind
    /// does), not its first.
    pub ws_id_last: bool,
    /// Execution only: answer `eth_getLogs` with one log whose `data` makes the answer about this
    /// many bytes, whatever the filter.
    pub logs_answer_bytes: Option<usize>,
    /// Execution only: with `logs_answer_bytes`, spread those bytes of `data` over this many
    /// logs of the same block (`logIndex` 0, 1, …), as a wide `eth_getLogs` over a busy
    /// contract answers; 0 or 1: one log.
    pub logs_answer_count: usize,
    /// Execution only: the next `eth_blockNumber` on a WebSocket answers this number instead of
    /// the head (once; then the field is `None` again), as a node behind a stale cache might.
    pub ws_wrong_block_number: Option<u64>,
    /// Execution only: the block `eth_getBlockByNumber("finalized")` answers; `None`: 64 blocks
    /// behind the head (0 at most).
    pub finalized: Option<u64>,
    /// Execution only: answer `finalized` and `safe` with an error, as a node before the merge
    /// does.
    pub no_finalized: bool,
    /// Execution only: blocks from this number on have no logs.
    pub no_logs_from: Option<u64>,
    /// Consensus only: end every event stream at once, before any event (after its header).
    pub sse_end_at_once: bool,
    /// Consensus only: every event stream sends one comment line (`: ok`, as some servers and
    /// proxies greet a stream), then ends, before any event.
    pub sse_comment_then_end: bool,
    /// Consensus only: every event stream sends `head` events one after another, as fast as
    /// the connection takes them, each padded to about this many bytes (a client that stops
    /// reading fills its buffers at once); `None`: one event per new head.
    pub sse_flood_bytes: Option<usize>,
    /// Consensus only: genesis time (Unix seconds); by default the head is the wall-clock slot.
    pub genesis_time: u64,
    /// Consensus only: the network's genesis validators root.
    pub genesis_validators_root: String,
}

/// Blocks behind the head that the simulated execution chain finalizes, unless told otherwise.
pub const FINALITY_BLOCKS: u64 = 64;

impl NodeStatus {
    /// The finalized block of a simulated execution node.
    pub fn finalized_block(&self) -> u64 {
        self.finalized
            .unwrap_or_else(|| self.head.saturating_sub(FINALITY_BLOCKS))
            .min(self.head)
    }
}

/// Slot length of the simulated consensus chain.
pub const SECONDS_PER_SLOT: u64 = 12;

impl Default for NodeStatus {
    fn default() -> Self {
        NodeStatus {
            syncing: false,
            peers: 25,
            head: 1000,
            chain_id: 1,
            peer_count_supported: true,
            optimistic: false,
            el_offline: Some(false),
            fail_status: None,
            delay_ms: 0,
            client_delay_ms: 0,
            reply_override: None,
            branch_from: None,
            ws_close_after: None,
            sse_end_at_once: false,
            sse_comment_then_end: false,
            sse_flood_bytes: None,
            ws_answer_delay_ms: 0,
            ws_origins: None,
            ws_path: None,
            ws_frozen: false,
            ws_id_last: false,
            logs_answer_bytes: None,
            logs_answer_count: 1,
            ws_wrong_block_number: None,
            no_logs_from: None,
            finalized: None,
            no_finalized: false,
            sse_keep_alive_ms: None,
            head_age_s: 0,
            genesis_time: unix_now().saturating_sub(1000 * SECONDS_PER_SLOT),
            genesis_validators_root: format!("0x{:064x}", 0x4b36_3db9u64),
        }
    }
}

/// A partial update of [`NodeStatus`], as sent to `POST /sim/state`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPatch {
    pub syncing: Option<bool>,
    pub peers: Option<u64>,
    pub head: Option<u64>,
    pub optimistic: Option<bool>,
    pub el_offline: Option<Option<bool>>,
    pub fail_status: Option<Option<u16>>,
    pub delay_ms: Option<u64>,
    pub client_delay_ms: Option<u64>,
}
