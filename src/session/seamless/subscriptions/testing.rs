//! What the unit tests of the session state share: a session driven as a client and a node
//! would drive it.

use super::*;
use serde_json::{json, Value};

pub(super) fn text(v: &[u8]) -> Value {
    serde_json::from_slice(v).unwrap()
}

/// What goes to the backend.
pub(super) fn to_backend(out: Outgoing) -> Vec<u8> {
    match out {
        Outgoing::Backend(bytes) => bytes,
        Outgoing::Client(answer) => panic!("answered by the gateway: {answer:?}"),
    }
}

pub(super) fn head(n: u64) -> Value {
    json!({"number": hex(n), "hash": format!("0x{n:064x}")})
}

pub(super) fn log(block: u64, hash: &str, index: u64) -> Value {
    json!({"blockNumber": hex(block), "blockHash": hash, "logIndex": hex(index), "removed": false, "data": "0x"})
}

pub(super) fn note(sub: &str, result: Value) -> Vec<u8> {
    notification(sub, result.to_string().as_bytes())
}

/// Subscribes through the state as a client would; returns the id the client got.
pub(super) fn subscribe(
    s: &mut SessionState,
    client_id: u64,
    params: Value,
    backend_sub: &str,
) -> String {
    let sent = text(&to_backend(
        s.client_message(
            json!({"jsonrpc":"2.0","id":client_id,"method":"eth_subscribe","params":params})
                .to_string()
                .as_bytes(),
        ),
    ));
    let answer = json!({"jsonrpc":"2.0","id":sent["id"],"result":backend_sub}).to_string();
    let back = text(&s.backend_message(answer.as_bytes()).pop().unwrap());
    assert_eq!(back["id"], client_id);
    back["result"].as_str().unwrap().to_string()
}

/// [`SessionState::fill`] with its results given as values.
pub(super) fn fill(s: &mut SessionState, sub: &str, results: &[Value]) -> Vec<Vec<u8>> {
    let raws: Vec<Box<serde_json::value::RawValue>> = results
        .iter()
        .map(|r| serde_json::value::to_raw_value(r).unwrap())
        .collect();
    let refs: Vec<&serde_json::value::RawValue> = raws.iter().map(|r| &**r).collect();
    s.fill(sub, &refs)
}
