//! Cheap knowledge of JSON-RPC requests for the access log: the method names, found by scanning
//! the first body chunk for `"method"` keys rather than parsing it.

/// Most method names listed for one request (a large batch is summarised).
pub const MAX_METHODS: usize = 8;
/// Longest method name written out (a log line must not grow with a hostile body).
const MAX_NAME: usize = 64;

/// The method names in a JSON-RPC request or batch, comma-separated, `+N` for the rest.
pub fn methods(body: &[u8]) -> String {
    let mut found: Vec<&str> = Vec::new();
    let mut more = 0usize;
    let mut rest = body;
    while let Some(at) = find_ci(rest, b"\"method\"") {
        rest = &rest[at + 8..];
        let after_colon = skip_ws(rest);
        let Some(after_colon) = after_colon.strip_prefix(b":") else {
            continue;
        };
        let value = skip_ws(after_colon);
        let Some(value) = value.strip_prefix(b"\"") else {
            continue;
        };
        let Some(end) = value.iter().position(|&b| b == b'"' || b == b'\\') else {
            break;
        };
        let name = std::str::from_utf8(&value[..end.min(MAX_NAME)]).unwrap_or("?");
        if found.len() < MAX_METHODS {
            found.push(name);
        } else {
            more += 1;
        }
        rest = &value[end..];
    }
    let mut out = found.join(",");
    if more > 0 {
        out.push_str(&format!(",+{more}"));
    }
    out
}

/// Case-insensitive search for an ASCII needle (Go's JSON decoder, used by geth, matches keys
/// without regard to case, so `"METHOD"` names a method too).
pub(crate) fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

pub(crate) fn skip_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_batch() {
        assert_eq!(
            methods(br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#),
            "eth_blockNumber"
        );
        assert_eq!(
            methods(
                br#"[{"method" : "eth_chainId"},{"id":2, "method":"eth_getLogs","params":[{}]}]"#
            ),
            "eth_chainId,eth_getLogs"
        );
    }

    #[test]
    fn big_batches_are_summarised_and_junk_is_harmless() {
        let batch: Vec<String> = (0..10).map(|i| format!(r#"{{"method":"m{i}"}}"#)).collect();
        assert_eq!(
            methods(format!("[{}]", batch.join(",")).as_bytes()),
            "m0,m1,m2,m3,m4,m5,m6,m7,+2"
        );
        assert_eq!(methods(b""), "");
        assert_eq!(methods(br#"{"method": 5, "x": "method"}"#), "");
        assert_eq!(methods(br#"{"method":"unterminated"#), "");
        let long = format!(r#"{{"method":"{}"}}"#, "x".repeat(10_000));
        assert_eq!(methods(long.as_bytes()).len(), 64);
    }
}
