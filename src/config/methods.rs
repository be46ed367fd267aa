//! Which JSON-RPC methods an execution pool forwards: the configured patterns and how a method
//! name is matched against them. Judging request bodies is the proxy's (`proxy::policy`).
//!
//! A leaf of `config`: the policy and its defaults (such as [`DEFAULT_MAX_BATCH`]) live here, and
//! [`model`](super::model) imports them for its `PoolConfig`; nothing here imports the model.

/// Method prefixes denied unless a pool's `allow` list names them: node administration, debugging,
/// key management, mining, the engine API and the mempool.
pub const DEFAULT_DENY: &[&str] = &[
    "admin_*",
    "debug_*",
    "personal_*",
    "miner_*",
    "engine_*",
    "txpool_*",
];

/// The methods the gateway itself calls on a backend for a WebSocket session of an execution pool
/// with `sessions: seamless` (`proxy::seamless`): `eth_subscribe` for its own `newHeads` and to
/// create the client's subscriptions again on the next backend, `eth_blockNumber`,
/// `eth_getBlockByNumber` and `eth_getLogs` to find a reorg and fill the gap. Such a pool's
/// policy must permit every one: the gateway's calls are not the client's to judge, and a node
/// behind a policy that denies them must not be asked them either.
pub const SEAMLESS_MOVE_METHODS: &[&str] = &[
    "eth_subscribe",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getLogs",
];

/// Largest JSON-RPC batch forwarded.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// Which methods a pool forwards. Patterns are exact names or prefixes ending in `*`, compared
/// without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPolicy {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Largest batch forwarded.
    pub max_batch: usize,
}

fn matches(pattern: &str, method: &str) -> bool {
    match pattern.strip_suffix('*') {
        // `get` is `None` past the end and inside a character (`"debugé"` has no 6-byte
        // prefix): no match, never a panic.
        Some(prefix) => method
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(method),
    }
}

/// The method a node runs when it does not take `method`'s name as it is, by geth's routing
/// (`rpc/handler.go`, which Erigon shares): a name ending in `_subscribe` creates a subscription
/// of the namespace before its first `_`, so `eth_x_subscribe` is `eth_subscribe`; a name ending
/// in `_unsubscribe` ends a subscription of any namespace, so `x_unsubscribe` is
/// `eth_unsubscribe`. Both suffixes are matched in their case, as geth matches them. `None` when
/// the node runs the method named.
pub fn routed_as(method: &str) -> Option<String> {
    let routed = if method.ends_with("_unsubscribe") {
        "eth_unsubscribe".to_string()
    } else if method.ends_with("_subscribe") {
        let namespace = method.split('_').next().unwrap_or_default();
        format!("{namespace}_subscribe")
    } else {
        return None;
    };
    (routed != method).then_some(routed)
}

impl MethodPolicy {
    /// Whether this is the policy a pool has when its config says nothing about methods.
    pub fn is_default(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.max_batch == DEFAULT_MAX_BATCH
    }

    /// Whether a call of `method` may be forwarded: the name as sent, and the method a node runs
    /// for it ([`routed_as`]), must both be permitted.
    pub fn permits(&self, method: &str) -> bool {
        self.permits_name(method) && routed_as(method).is_none_or(|m| self.permits_name(&m))
    }

    fn permits_name(&self, method: &str) -> bool {
        let allowed = self.allow.iter().any(|p| matches(p, method));
        if !self.allow.is_empty() && !allowed {
            return false;
        }
        if self.deny.iter().any(|p| matches(p, method)) {
            return false;
        }
        // The default denials yield only to an explicit allow entry.
        allowed || !DEFAULT_DENY.iter().any(|p| matches(p, method))
    }
}
