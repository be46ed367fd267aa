//! Which JSON-RPC methods only read: sent again elsewhere when their node failed (the seamless
//! sessions' replay), sent to a second node when the first is slow (hedged reads). One list, so
//! the two can never disagree on what is safe to ask twice.

/// Method prefixes that read and change nothing on the node: `eth_get` covers eth_getBalance,
/// eth_getLogs and the rest; `net_` and `web3_` are whole namespaces. A transaction, a signature,
/// a filter created on one node (`eth_newFilter`, `eth_getFilterChanges`, whose answer depends on
/// what that node already gave) and anything unknown are not reads.
const READS: [&str; 18] = [
    "eth_getBalance",
    "eth_getBlock",
    "eth_getCode",
    "eth_getLogs",
    "eth_getProof",
    "eth_getStorageAt",
    "eth_getTransaction",
    "eth_getUncle",
    "eth_call",
    "eth_estimateGas",
    "eth_createAccessList",
    "eth_chainId",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_feeHistory",
    "eth_syncing",
];

/// Whole namespaces that only read.
const READ_NAMESPACES: [&str; 5] = ["net_", "web3_", "txpool_", "debug_trace", "trace_"];

/// More reads named in full.
const READ_METHODS: [&str; 2] = ["eth_protocolVersion", "eth_simulateV1"];

/// Whether `method` only reads: asking it of two nodes, or twice, changes nothing.
pub fn is_read(method: &str) -> bool {
    // The calls most asked, named in full (all covered by the lists below): no scan for them.
    matches!(
        method,
        "eth_blockNumber" | "eth_call" | "eth_chainId" | "eth_getLogs" | "eth_getBlockByNumber"
    ) || READS.iter().any(|read| method.starts_with(read))
        || READ_NAMESPACES.iter().any(|ns| method.starts_with(ns))
        || READ_METHODS.contains(&method)
}

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn reads_are_reads_and_writes_and_filters_are_not() {
        for read in [
            "eth_getLogs",
            "eth_getBlockByNumber",
            "eth_getTransactionReceipt",
            "eth_call",
            "eth_chainId",
            "net_version",
            "web3_clientVersion",
            "debug_traceTransaction",
            "eth_blockNumber",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "eth_sendRawTransaction",
            "eth_sendTransaction",
            "eth_sign",
            "eth_signTransaction",
            "eth_newFilter",
            "eth_getFilterChanges",
            "eth_getFilterLogs",
            "eth_uninstallFilter",
            "eth_subscribe",
            "engine_newPayloadV3",
            "admin_addPeer",
            "personal_unlockAccount",
            "",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }
}
