//! Error bodies the gateway writes itself, in the form each kind of client understands:
//! JSON-RPC error objects (matching the request's ids, one per batch element) for execution pools,
//! the beacon API's `{"code","message"}` for consensus pools and for requests with no route.

use serde_json::{json, Value};

/// JSON-RPC "server error" code used when the gateway cannot serve a request.
pub const JSONRPC_UNAVAILABLE: i64 = -32000;

/// A JSON-RPC error reply for `request` (the client's body, possibly empty or not JSON): one error
/// object with the request's id, or an array with one per batch element, in order.
pub fn jsonrpc_error(request: &[u8], code: i64, message: &str) -> Vec<u8> {
    let error = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let reply = match serde_json::from_slice::<Value>(request) {
        Ok(Value::Array(items)) if !items.is_empty() => Value::Array(
            items
                .iter()
                .map(|item| error(item.get("id").unwrap_or(&Value::Null)))
                .collect(),
        ),
        Ok(Value::Object(obj)) => error(obj.get("id").unwrap_or(&Value::Null)),
        _ => error(&Value::Null),
    };
    reply.to_string().into_bytes()
}

/// A beacon-API style error body.
pub fn beacon_error(code: u16, message: &str) -> Vec<u8> {
    json!({"code": code, "message": message})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Vec<u8>) -> Value {
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn single_request_keeps_its_id() {
        let v = parse(jsonrpc_error(
            br#"{"jsonrpc":"2.0","id":"abc","method":"eth_blockNumber"}"#,
            -32000,
            "down",
        ));
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["code"], -32000);
        assert_eq!(v["error"]["message"], "down");
    }

    #[test]
    fn batch_gets_one_error_per_element_in_order() {
        let v = parse(jsonrpc_error(
            br#"[{"id":7,"method":"a"},{"id":null,"method":"b"},{"method":"c"},{"id":"x"}]"#,
            -32000,
            "down",
        ));
        let ids: Vec<&Value> = v.as_array().unwrap().iter().map(|e| &e["id"]).collect();
        assert_eq!(ids, [&json!(7), &Value::Null, &Value::Null, &json!("x")]);
    }

    #[test]
    fn unparsable_requests_get_a_null_id() {
        for body in [&b""[..], b"not json", b"[]", b"42"] {
            let v = parse(jsonrpc_error(body, -32000, "down"));
            assert_eq!(v["id"], Value::Null);
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }

    #[test]
    fn beacon_error_shape() {
        assert_eq!(
            parse(beacon_error(503, "no")),
            json!({"code": 503, "message": "no"})
        );
    }
}
