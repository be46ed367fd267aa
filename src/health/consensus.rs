//! Consensus client probe: `GET /eth/v1/node/syncing` and, when the peer rule is on,
//! `GET /eth/v1/node/peer_count`, sent together and parsed strictly.

use super::probe::{decimal_string, fetch_json};
use super::{ConsensusFacts, Facts};
use serde_json::Value;

/// Probes a beacon node whose API is at `base` (the backend URL, path prefix included).
pub async fn probe(
    client: &reqwest::Client,
    base: &url::Url,
    want_peers: bool,
) -> Result<Facts, String> {
    let get = |path: &str| {
        let mut url = base.clone();
        url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
        client.get(url).header("accept", "application/json")
    };
    let syncing = fetch_json(get("/eth/v1/node/syncing"), "node/syncing");
    let (syncing, peers) = if want_peers {
        let (s, p) = futures::join!(
            syncing,
            fetch_json(get("/eth/v1/node/peer_count"), "node/peer_count")
        );
        (s?, Some(p?))
    } else {
        (syncing.await?, None)
    };
    let mut facts = parse_syncing(&syncing)?;
    if let Some(peers) = peers {
        facts.peers = Some(parse_peer_count(&peers)?);
    }
    Ok(Facts::Consensus(facts))
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
}
