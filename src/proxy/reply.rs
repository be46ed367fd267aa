//! Error bodies the gateway writes itself, in the form each kind of client understands:
//! JSON-RPC error objects (matching the request's ids, one per batch element) for execution pools,
//! the beacon API's `{"code","message"}` for consensus pools and for requests with no route; and
//! the status and message a failed request is answered with (`for_error`).

use super::error::{NO_BACKEND, TOO_LARGE};
use pingora::{Error, ErrorSource, ErrorType};
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

/// The status and message a request that failed with `e` is answered with (`fail_to_proxy`);
/// `pool` names the request's pool. Status 0: the client went away, there is no one to answer.
pub(super) fn for_error(e: &Error, pool: Option<&str>) -> (u16, String) {
    if *e.etype() == TOO_LARGE {
        (
            413,
            format!(
                "request body too large: {}",
                e.context.as_ref().map_or(String::new(), |c| c.to_string())
            ),
        )
    } else if *e.etype() == NO_BACKEND {
        let name = pool.unwrap_or("?");
        (503, format!("no healthy backend in pool {name}"))
    } else {
        match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => {
                (*code, format!("request failed with status {code}"))
            }
            (_, ErrorSource::Upstream) => (502, format!("backend failed: {}", e.etype().as_str())),
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => (0, String::new()),
            (_, ErrorSource::Downstream) => (400, "bad request".to_string()),
            _ => (500, "internal error".to_string()),
        }
    }
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

    #[test]
    fn an_oversized_body_is_413_with_the_limit() {
        let e = Error::explain(TOO_LARGE, "more than 10 bytes");
        assert_eq!(
            for_error(&e, Some("execution")),
            (
                413,
                "request body too large: more than 10 bytes".to_string()
            )
        );
    }

    #[test]
    fn no_healthy_backend_is_503_naming_the_pool() {
        let e = Error::new(NO_BACKEND);
        assert_eq!(
            for_error(&e, Some("execution")),
            (503, "no healthy backend in pool execution".to_string())
        );
        assert_eq!(for_error(&e, None).1, "no healthy backend in pool ?");
    }

    #[test]
    fn a_backend_status_passes_and_other_backend_failures_are_502() {
        let e = Error::new_up(ErrorType::HTTPStatus(504));
        assert_eq!(
            for_error(&e, None),
            (504, "request failed with status 504".to_string())
        );
        let e = Error::new_up(ErrorType::ConnectTimedout);
        assert_eq!(
            for_error(&e, None),
            (502, "backend failed: ConnectTimedout".to_string())
        );
    }

    #[test]
    fn a_client_that_left_gets_nothing_and_a_bad_one_400() {
        for etype in [
            ErrorType::WriteError,
            ErrorType::ReadError,
            ErrorType::ConnectionClosed,
        ] {
            assert_eq!(for_error(&Error::new_down(etype), None), (0, String::new()));
        }
        let e = Error::new_down(ErrorType::InvalidHTTPHeader);
        assert_eq!(for_error(&e, None), (400, "bad request".to_string()));
    }

    #[test]
    fn anything_else_is_an_internal_error() {
        let e = Error::new_in(ErrorType::InternalError);
        assert_eq!(for_error(&e, None), (500, "internal error".to_string()));
    }
}
