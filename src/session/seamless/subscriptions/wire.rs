//! The JSON texts the session writes itself: numbers as nodes write them, notifications, error
//! answers and batches. Everything else the client gets is the node's bytes.

use crate::jsonrpc;
use serde_json::value::RawValue;
use serde_json::Value;

/// What an element of a batch without a method becomes on its way to the node: a call of a
/// method no node has (the node never sees the client's id), whose answer the gateway replaces
/// with its own invalid-request error.
pub const NOT_A_REQUEST: &str = "ssv_ha_not_a_request";

/// A number as nodes write it: `0x`-prefixed hex.
pub fn hex_u64(value: &Value) -> Option<u64> {
    let text = value.as_str()?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// [`hex_u64`] of a raw value.
pub fn hex_u64_raw(raw: &RawValue) -> Option<u64> {
    let text = jsonrpc::string(raw)?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// `n` as nodes write numbers: `0x`-prefixed hex.
pub fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

/// A JSON-RPC error answer under `id` (JSON text).
pub(super) fn error_answer(id: &str, code: i64, message: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        jsonrpc::json_string(message)
    )
    .into_bytes()
}

/// JSON texts as one array.
pub(super) fn join_array(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part);
    }
    out.push(b']');
    out
}

/// A subscription notification as a node sends it, with `result` (JSON text) as it is.
pub fn notification(client_sub: &str, result: &[u8]) -> Vec<u8> {
    let head = format!(
        r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":{},"result":"#,
        jsonrpc::json_string(client_sub)
    );
    let mut out = Vec::with_capacity(head.len() + result.len() + 2);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(result);
    out.extend_from_slice(b"}}");
    out
}
