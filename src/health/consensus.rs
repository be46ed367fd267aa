//! Consensus client probe: `GET /eth/v1/node/syncing` and, when the peer rule is on,
//! `GET /eth/v1/node/peer_count`, sent together and parsed strictly. The node's genesis and
//! `SECONDS_PER_SLOT` are read on its first check and kept in a [`NodeConstants`].

use super::facts::{ConsensusFacts, Facts, Genesis};
use super::probe::{decimal_string, fetch_json};
use serde_json::Value;

/// What a beacon node reports once and for all: its network and slot length.
#[derive(Debug, Clone, Default)]
pub struct NodeConstants {
    pub genesis: Option<Genesis>,
    pub seconds_per_slot: Option<u64>,
}

/// Probes a beacon node whose API is at `base` (the backend URL, path prefix included).
/// `constants` is filled on the first successful check and reused after, so a check costs two
/// GETs (one with `min_peers: 0`), four the first time.
pub async fn probe(
    client: &reqwest::Client,
    base: &url::Url,
    want_peers: bool,
    constants: &mut NodeConstants,
) -> Result<Facts, String> {
    let get = |path: &str| {
        let mut url = base.clone();
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        client.get(url).header("accept", "application/json")
    };
    let optional = |wanted: bool, path: &'static str, what: &'static str| {
        let request = wanted.then(|| get(path));
        async move {
            match request {
                Some(r) => Some(fetch_json(r, what).await),
                None => None,
            }
        }
    };
    let first = constants.genesis.is_none();
    let (syncing, peers, genesis, spec) = futures::join!(
        fetch_json(get("/eth/v1/node/syncing"), "node/syncing"),
        optional(want_peers, "/eth/v1/node/peer_count", "node/peer_count"),
        optional(first, "/eth/v1/beacon/genesis", "beacon/genesis"),
        optional(first, "/eth/v1/config/spec", "config/spec"),
    );
    let mut facts = parse_syncing(&syncing?)?;
    if let Some(peers) = peers {
        facts.peers = Some(parse_peer_count(&peers?)?);
    }
    if let Some(genesis) = genesis {
        constants.genesis = Some(parse_genesis(&genesis?)?);
        // A node without the spec endpoint only loses the wall-clock rule.
        constants.seconds_per_slot = spec
            .and_then(Result::ok)
            .and_then(|s| parse_seconds_per_slot(&s));
    }
    facts.genesis = constants.genesis.clone();
    facts.seconds_per_slot = constants.seconds_per_slot;
    Ok(Facts::Consensus(facts))
}

/// Interprets `beacon/genesis`.
pub fn parse_genesis(reply: &Value) -> Result<Genesis, String> {
    let data = reply
        .get("data")
        .ok_or("beacon/genesis reply has no `data`")?;
    let field = |name: &str| {
        data.get(name)
            .ok_or_else(|| format!("beacon/genesis: `data.{name}` is missing"))
    };
    let time = field("genesis_time")?;
    let time = decimal_string(time).ok_or_else(|| {
        format!("beacon/genesis: `data.genesis_time` is {time}, expected a decimal string")
    })?;
    let hex = |name: &str, digits: usize| -> Result<String, String> {
        let v = field(name)?;
        v.as_str()
            .filter(|s| {
                s.strip_prefix("0x")
                    .is_some_and(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                format!("beacon/genesis: `data.{name}` is {v}, expected 0x and {digits} hex digits")
            })
    };
    Ok(Genesis {
        time,
        validators_root: hex("genesis_validators_root", 64)?,
        fork_version: hex("genesis_fork_version", 8)?,
    })
}

/// `SECONDS_PER_SLOT` from `config/spec`, if present and well-formed.
pub fn parse_seconds_per_slot(reply: &Value) -> Option<u64> {
    decimal_string(reply.get("data")?.get("SECONDS_PER_SLOT")?).filter(|s| *s > 0)
}

/// Interprets `node/syncing`. A missing or mistyped `is_syncing` fails; `el_offline` and
/// `is_optimistic` may be missing (older clients) but not mistyped.
pub fn parse_syncing(reply: &Value) -> Result<ConsensusFacts, String> {
    let data = reply
        .get("data")
        .ok_or("node/syncing reply has no `data`")?;
    let is_syncing = data
        .get("is_syncing")
        .and_then(Value::as_bool)
        .ok_or("node/syncing: `data.is_syncing` is missing or not a boolean")?;
    let optional_bool = |field: &str| -> Result<Option<bool>, String> {
        match data.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!(
                "node/syncing: `data.{field}` is {other}, expected a boolean"
            )),
        }
    };
    let head_slot = match data.get("head_slot") {
        None => None,
        Some(v) => Some(decimal_string(v).ok_or_else(|| {
            format!("node/syncing: `data.head_slot` is {v}, expected a decimal string")
        })?),
    };
    Ok(ConsensusFacts {
        is_syncing,
        is_optimistic: optional_bool("is_optimistic")?,
        el_offline: optional_bool("el_offline")?,
        head_slot,
        peers: None,
        genesis: None,
        seconds_per_slot: None,
    })
}

/// Interprets `node/peer_count`: `data.connected` as a decimal string.
pub fn parse_peer_count(reply: &Value) -> Result<u64, String> {
    let connected = reply
        .get("data")
        .and_then(|d| d.get("connected"))
        .ok_or("node/peer_count reply has no `data.connected`")?;
    decimal_string(connected).ok_or_else(|| {
        format!("node/peer_count: `data.connected` is {connected}, expected a decimal string")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_and_old_syncing_replies() {
        let f = parse_syncing(&json!({"data": {"head_slot": "123", "sync_distance": "0", "is_syncing": false, "is_optimistic": false, "el_offline": false}})).unwrap();
        assert_eq!(
            (f.is_syncing, f.is_optimistic, f.el_offline, f.head_slot),
            (false, Some(false), Some(false), Some(123))
        );
        let old = parse_syncing(&json!({"data": {"head_slot": "5", "sync_distance": "0", "is_syncing": false, "is_optimistic": false}})).unwrap();
        assert_eq!(old.el_offline, None);
    }

    #[test]
    fn surprises_are_failures() {
        assert!(parse_syncing(&json!({"code": 503, "message": "not ready"}))
            .unwrap_err()
            .contains("no `data`"));
        assert!(parse_syncing(&json!({"data": {"is_syncing": "false"}}))
            .unwrap_err()
            .contains("is_syncing"));
        assert!(
            parse_syncing(&json!({"data": {"is_syncing": false, "el_offline": "no"}}))
                .unwrap_err()
                .contains("el_offline")
        );
        assert!(
            parse_syncing(&json!({"data": {"is_syncing": false, "head_slot": 12}}))
                .unwrap_err()
                .contains("head_slot")
        );
        assert_eq!(
            parse_peer_count(&json!({"data": {"connected": "12"}})),
            Ok(12)
        );
        assert!(parse_peer_count(&json!({"data": {"connected": 12}})).is_err());
        assert!(parse_peer_count(&json!({"data": {}})).is_err());
    }

    #[test]
    fn genesis_and_spec() {
        let root = format!("0x{}", "AB".repeat(32));
        let g = parse_genesis(&json!({"data": {"genesis_time": "1606824023", "genesis_validators_root": root, "genesis_fork_version": "0x00000000"}})).unwrap();
        assert_eq!(g.time, 1_606_824_023);
        assert_eq!(g.validators_root, format!("0x{}", "ab".repeat(32)));
        assert!(parse_genesis(&json!({"data": {"genesis_time": "1", "genesis_validators_root": "0x12", "genesis_fork_version": "0x00000000"}})).unwrap_err().contains("genesis_validators_root"));
        assert!(parse_genesis(&json!({"data": {"genesis_time": 1}})).is_err());
        assert_eq!(
            parse_seconds_per_slot(&json!({"data": {"SECONDS_PER_SLOT": "12"}})),
            Some(12)
        );
        assert_eq!(
            parse_seconds_per_slot(&json!({"data": {"SECONDS_PER_SLOT": "0"}})),
            None
        );
        assert_eq!(parse_seconds_per_slot(&json!({"data": {}})), None);
    }
}
