//! Which beacon (consensus REST) answers cannot change, as pure functions: the request side
//! ([`rule`]: from a `GET`'s path) and the answer side ([`keepable`]).
//!
//! Why each rule is safe: the genesis and the deposit contract are the network's, and the cache
//! key holds the network (genesis root and fork version). The spec is the network's too, but a
//! node upgraded for a coming fork adds the fork's schedule to it: it is served for an epoch at
//! most ([`SPEC_LIFETIME`]). A state, block or header
//! addressed by a root or a slot is kept only when the node says in the answer (top-level
//! `"finalized": true`) that it is finalized: no reorg can replace it then. The aliases `head`,
//! `finalized`, `justified` and `genesis` name a different block as the chain moves on (the
//! finalized one every epoch), so they are never kept, whatever the answer says.

use crate::jsonrpc::Object;

/// On what condition a `GET`'s answer may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconRule {
    /// Always, per network.
    Always,
    /// For [`SPEC_LIFETIME`]: the spec is the network's, but a node upgraded for a fork adds the
    /// fork's schedule to it.
    ForAnEpoch,
    /// When the answer says `"finalized": true`.
    IfFinalized,
}

/// Paths whose answer is the network's own, for good.
const NETWORK_PATHS: [&str; 2] = ["/eth/v1/beacon/genesis", "/eth/v1/config/deposit_contract"];

/// The network's spec: its constants, and the fork schedule as the node knows it.
const SPEC_PATH: &str = "/eth/v1/config/spec";

/// How long a kept spec is served: one mainnet epoch. A fork is scheduled weeks before it
/// happens; once the nodes are upgraded to know it, clients have the new schedule within this.
pub const SPEC_LIFETIME: std::time::Duration = std::time::Duration::from_secs(32 * 12);

/// What a state, block or header read is under `/eth/vN/beacon/`.
const ADDRESSED: [&str; 3] = ["states", "blocks", "headers"];

/// The rule for a `GET` of `path`; `None`: never kept.
pub fn rule(path: &str) -> Option<BeaconRule> {
    if NETWORK_PATHS.contains(&path) {
        return Some(BeaconRule::Always);
    }
    if path == SPEC_PATH {
        return Some(BeaconRule::ForAnEpoch);
    }
    let mut parts = path.strip_prefix("/eth/")?.split('/');
    let version = parts.next()?;
    let versioned = version
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !versioned || parts.next()? != "beacon" || !ADDRESSED.contains(&parts.next()?) {
        return None;
    }
    let id = parts.next()?;
    if parts.any(str::is_empty) {
        return None;
    }
    (is_root(id) || is_slot(id)).then_some(BeaconRule::IfFinalized)
}

/// `0x` and 64 hex digits.
fn is_root(id: &str) -> bool {
    id.strip_prefix("0x")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A decimal slot number.
fn is_slot(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a 200 answer `body` may be kept under `rule`: a JSON object, and for
/// [`BeaconRule::IfFinalized`] one whose top-level `finalized` is `true`.
pub fn keepable(rule: BeaconRule, body: &[u8]) -> bool {
    let Some(object) = std::str::from_utf8(body).ok().and_then(Object::read) else {
        return false;
    };
    match rule {
        BeaconRule::Always | BeaconRule::ForAnEpoch => true,
        BeaconRule::IfFinalized => object.get("finalized").is_some_and(|f| f.get() == "true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_networks_own_reads_and_addressed_reads_have_rules() {
        for path in NETWORK_PATHS {
            assert_eq!(rule(path), Some(BeaconRule::Always), "{path}");
        }
        assert_eq!(rule(SPEC_PATH), Some(BeaconRule::ForAnEpoch));
        let root = format!("0x{}", "ab".repeat(32));
        for path in [
            format!("/eth/v1/beacon/headers/{root}"),
            "/eth/v1/beacon/headers/123".to_string(),
            "/eth/v2/beacon/blocks/123".to_string(),
            format!("/eth/v1/beacon/blocks/{root}/root"),
            "/eth/v1/beacon/states/99/finality_checkpoints".to_string(),
            "/eth/v1/beacon/states/99/validators".to_string(),
        ] {
            assert_eq!(rule(&path), Some(BeaconRule::IfFinalized), "{path}");
        }
    }

    #[test]
    fn aliases_and_other_reads_have_none() {
        for path in [
            "/eth/v1/beacon/headers/head",
            "/eth/v1/beacon/states/head/finality_checkpoints",
            "/eth/v2/beacon/blocks/finalized",
            "/eth/v1/beacon/states/justified/validators",
            "/eth/v1/beacon/blocks/genesis/root",
            "/eth/v1/beacon/headers/0xab",
            "/eth/v1/beacon/headers/-1",
            "/eth/v1/beacon/headers/1/",
            "/eth/v1/beacon/headers",
            "/eth/v1/node/syncing",
            "/eth/v1/validator/duties/attester/5",
            "/eth/v1/config/spec/",
            "/eth/vx/beacon/headers/1",
            "/eth/v1/events",
        ] {
            assert_eq!(rule(path), None, "{path}");
        }
    }

    #[test]
    fn only_answers_the_node_calls_finalized_are_kept() {
        let rule = BeaconRule::IfFinalized;
        assert!(keepable(rule, br#"{"finalized":true,"data":{}}"#));
        assert!(keepable(
            rule,
            br#"{"data":{},"execution_optimistic":false,"finalized":true}"#
        ));
        for body in [
            r#"{"finalized":false,"data":{}}"#,
            r#"{"data":{}}"#,
            r#"{"finalized":"true","data":{}}"#,
            r#"{"data":{"finalized":true}}"#,
            r#"[{"finalized":true}]"#,
            "not json",
        ] {
            assert!(!keepable(rule, body.as_bytes()), "{body}");
        }
        assert!(keepable(
            BeaconRule::Always,
            br#"{"data":{"SECONDS_PER_SLOT":"12"}}"#
        ));
        assert!(!keepable(BeaconRule::Always, b"<html>"));
    }
}
