//! Which JSON-RPC answers cannot change, as pure functions: the request side ([`rule`]: from a
//! call's method and raw params, whether its answer may be kept and on what condition) and the
//! answer side ([`keepable`]: whether this answer, from a backend whose finalized block is known,
//! meets it).
//!
//! Why each rule is safe: `eth_chainId` and `net_version` name the network, which the cache key
//! holds (and each is kept only when it is the chain id the node's last check saw). Every other kept answer is about blocks at or below the answering node's finalized
//! block, which no reorg can replace: a block by number, state at a block number (`eth_call`,
//! balances, code, storage, nonces), logs over a closed range of numbers, and blocks,
//! transactions, receipts and logs asked by hash once the answer shows their block finalized. Tags
//! (`latest`, `safe`, `finalized`, ...) move, EIP-1898 objects are not read, a pending
//! transaction (no block) may yet be mined elsewhere, and an empty answer to a hash proves
//! nothing (the node may not have seen the block): none of them is kept.

use super::message::{array, string, Message, Object, Shape};
use serde_json::value::RawValue;
use std::ops::Range;

/// On what condition a call's answer may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `eth_chainId`: when the answer is the chain id the answering backend's health check saw
    /// (a node that changed network since cannot fill the cache).
    ChainId,
    /// `net_version`: when the answer is that chain id in decimal (on the networks where the
    /// network id differs from the chain id, it is not kept: the gateway cannot tell).
    NetVersion,
    /// When this block is at or below the answering backend's finalized block.
    AtMost(u64),
    /// When the answer names its blocks and all are at or below the finalized block.
    AnswerBlock(Named),
}

/// Where an answer names its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// A block object's `number`.
    Block,
    /// A transaction's or receipt's `blockNumber` (`null` while pending).
    Transaction,
    /// Every log's `blockNumber`, in a non-empty list.
    Logs,
}

/// Methods whose block parameter is at this position; its answer is kept once that block is final.
const BY_BLOCK: [(&str, usize); 6] = [
    ("eth_getBlockByNumber", 0),
    ("eth_call", 1),
    ("eth_getBalance", 1),
    ("eth_getCode", 1),
    ("eth_getTransactionCount", 1),
    ("eth_getStorageAt", 2),
];

/// The rule for a call of `method` with `params` (their raw JSON text); `None`: never kept.
pub fn rule(method: &str, params: Option<&str>) -> Option<Rule> {
    match method {
        "eth_chainId" => return Some(Rule::ChainId),
        "net_version" => return Some(Rule::NetVersion),
        "eth_getBlockByHash" => return Some(Rule::AnswerBlock(Named::Block)),
        "eth_getTransactionByHash" | "eth_getTransactionReceipt" => {
            return Some(Rule::AnswerBlock(Named::Transaction))
        }
        _ => {}
    }
    // The method first: most calls (`eth_blockNumber`, ...) have no rule, and cost no parse.
    let at = match BY_BLOCK.iter().find(|(name, _)| *name == method) {
        Some((_, at)) => Some(*at),
        None if method == "eth_getLogs" => None,
        None => return None,
    };
    let params: &RawValue = serde_json::from_str(params?).ok()?;
    let params = array(params)?;
    match at {
        Some(at) => Some(Rule::AtMost(block_number(params.get(at)?)?)),
        None => logs_rule(params.first()?),
    }
}

/// `eth_getLogs`: a closed range of numbers, or one block by hash. A `null` key is as good as
/// none to the nodes (Go's decoder leaves the field unset): `"blockHash":null` with a range up to
/// `latest` asks for that range, not for a block. A hash beside a range is an error to geth, but
/// another node may read the range: neither is kept.
fn logs_rule(filter: &RawValue) -> Option<Rule> {
    let filter = Object::read(filter.get())?;
    let set = |key: &str| filter.get(key).filter(|v| v.get() != "null");
    if set("blockHash").is_some() {
        let range = set("fromBlock").is_some() || set("toBlock").is_some();
        return (!range).then_some(Rule::AnswerBlock(Named::Logs));
    }
    block_number(filter.get("fromBlock")?)?;
    // A missing `toBlock` means `latest`.
    Some(Rule::AtMost(block_number(filter.get("toBlock")?)?))
}

/// An explicit block number (`0x`-hex); a tag, an EIP-1898 object or anything else is `None`.
pub fn block_number(raw: &RawValue) -> Option<u64> {
    hex_number(&string(raw)?)
}

fn hex_number(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    // Hex digits only: `from_str_radix` would take a sign (`0x+10`) too.
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// What the answering backend's last health check knew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    pub chain_id: Option<u64>,
    pub finalized: Option<u64>,
}

/// Whether `answer` (a whole HTTP 200 body) may be kept under `rule`: one JSON-RPC object with a
/// non-null `result`, no `error`, and the id of the request (`asked`, its JSON text: an answer
/// to another request, from a node or a connection out of step, is never kept), meeting the rule
/// against what is `known` of the backend that sent it. Returns where the id is, for the next
/// client's id to take its place.
pub fn keepable(rule: Rule, answer: &[u8], known: Known, asked: &[u8]) -> Option<Range<usize>> {
    let text = std::str::from_utf8(answer).ok()?;
    let Ok(Shape::Object(message)) = Message::read(text) else {
        return None;
    };
    if message.error.is_some() {
        return None;
    }
    let result = message.result.filter(|r| r.get() != "null")?;
    let answered = message.id?;
    if !same_id(answered.get().as_bytes(), asked) {
        return None;
    }
    let id = super::span(text, answered)?;
    let kept = match rule {
        Rule::ChainId => {
            let answered = string(result).and_then(|s| hex_number(&s));
            answered.is_some() && answered == known.chain_id
        }
        Rule::NetVersion => {
            let answered = string(result).and_then(|s| s.parse::<u64>().ok());
            answered.is_some() && answered == known.chain_id
        }
        Rule::AtMost(block) => known.finalized.is_some_and(|f| block <= f),
        Rule::AnswerBlock(named) => {
            let highest = highest_block(named, result);
            known
                .finalized
                .zip(highest)
                .is_some_and(|(f, block)| block <= f)
        }
    };
    kept.then_some(id)
}

/// Whether an answer's id is the request's: the same text (Go nodes echo it byte for byte), or
/// the same JSON value (nodes that write it again: a string's escapes undone, spaces dropped).
fn same_id(answered: &[u8], asked: &[u8]) -> bool {
    if answered == asked {
        return true;
    }
    let value = |text: &[u8]| serde_json::from_slice::<serde_json::Value>(text).ok();
    value(answered).is_some_and(|a| Some(a) == value(asked))
}

/// The highest block `result` names, as `named` says where; `None` when it names none (a pending
/// transaction, an empty list of logs) or is not shaped so.
fn highest_block(named: Named, result: &RawValue) -> Option<u64> {
    let number_of = |object: &RawValue, key: &str| {
        let object = Object::read(object.get())?;
        block_number(object.get(key)?)
    };
    match named {
        Named::Block => number_of(result, "number"),
        Named::Transaction => number_of(result, "blockNumber"),
        Named::Logs => {
            let logs = array(result)?;
            let mut highest = None;
            for log in logs {
                let n = number_of(log, "blockNumber")?;
                highest = Some(highest.map_or(n, |h: u64| h.max(n)));
            }
            highest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(method: &str, params: &str) -> Option<Rule> {
        rule(method, Some(params))
    }

    #[test]
    fn the_request_decides_the_rule() {
        assert_eq!(rule("eth_chainId", None), Some(Rule::ChainId));
        assert_eq!(rule("net_version", Some("[]")), Some(Rule::NetVersion));
        assert_eq!(
            rule_of("eth_getBlockByNumber", r#"["0x10", false]"#),
            Some(Rule::AtMost(16))
        );
        for (method, params, block) in [
            ("eth_call", r#"[{"to":"0xaa","data":"0x"}, "0x1f"]"#, 31),
            ("eth_getBalance", r#"["0xaa", "0x2"]"#, 2),
            ("eth_getCode", r#"["0xaa", "0x3"]"#, 3),
            ("eth_getTransactionCount", r#"["0xaa", "0x4"]"#, 4),
            ("eth_getStorageAt", r#"["0xaa", "0x0", "0x5"]"#, 5),
            (
                "eth_getLogs",
                r#"[{"fromBlock":"0x1","toBlock":"0x64","address":"0xaa"}]"#,
                100,
            ),
        ] {
            assert_eq!(
                rule_of(method, params),
                Some(Rule::AtMost(block)),
                "{method}"
            );
        }
        assert_eq!(
            rule_of("eth_getLogs", r#"[{"blockHash":"0xab"}]"#),
            Some(Rule::AnswerBlock(Named::Logs))
        );
        // A null hash with a closed range is that range.
        assert_eq!(
            rule_of(
                "eth_getLogs",
                r#"[{"blockHash":null,"fromBlock":"0x1","toBlock":"0x64"}]"#
            ),
            Some(Rule::AtMost(100))
        );
        assert_eq!(
            rule_of(
                "eth_getLogs",
                r#"[{"blockHash":"0xab","fromBlock":null,"toBlock":null}]"#
            ),
            Some(Rule::AnswerBlock(Named::Logs))
        );
        assert_eq!(
            rule_of("eth_getBlockByHash", r#"["0xab", false]"#),
            Some(Rule::AnswerBlock(Named::Block))
        );
        for method in ["eth_getTransactionByHash", "eth_getTransactionReceipt"] {
            assert_eq!(
                rule_of(method, r#"["0xab"]"#),
                Some(Rule::AnswerBlock(Named::Transaction))
            );
        }
    }

    #[test]
    fn moving_targets_are_never_kept() {
        for tag in ["latest", "pending", "safe", "finalized", "earliest"] {
            let params = format!(r#"["{tag}", false]"#);
            assert_eq!(rule_of("eth_getBlockByNumber", &params), None, "{tag}");
            let params = format!(r#"["0xaa", "{tag}"]"#);
            assert_eq!(rule_of("eth_getBalance", &params), None, "{tag}");
        }
        for params in [
            r#"[{"to":"0xaa"}]"#,
            r#"[{"to":"0xaa"}, {"blockNumber":"0x1"}]"#,
            r#"[{"to":"0xaa"}, {"blockHash":"0xab"}]"#,
            r#"[{"to":"0xaa"}, 16]"#,
            r#"[{"to":"0xaa"}, "0x"]"#,
            r#"[{"to":"0xaa"}, "0x10000000000000000"]"#,
            r#"[{"to":"0xaa"}, "16"]"#,
            r#"[{"to":"0xaa"}, "0x+10"]"#,
            r#"[{"to":"0xaa"}, "0x-1"]"#,
            r#"[{"to":"0xaa"}, "0X10"]"#,
            r#"{"to":"0xaa"}"#,
            "not json",
        ] {
            assert_eq!(rule_of("eth_call", params), None, "{params}");
        }
        for filter in [
            r#"[{"fromBlock":"0x1"}]"#,
            r#"[{"fromBlock":"0x1","toBlock":"latest"}]"#,
            r#"[{"toBlock":"0x5"}]"#,
            r#"[{"fromBlock":"earliest","toBlock":"0x5"}]"#,
            r#"[]"#,
            // A null hash is no hash to the node: the range is what it answers.
            r#"[{"blockHash":null,"fromBlock":"0x1"}]"#,
            r#"[{"blockHash":null,"fromBlock":"0x1","toBlock":"latest"}]"#,
            r#"[{"fromBlock":"0x1","toBlock":"finalized","BLOCKHASH":null}]"#,
            // A hash beside a range: geth refuses it, another node may read the range.
            r#"[{"blockHash":"0xab","fromBlock":"0x1","toBlock":"latest"}]"#,
            r#"[{"blockHash":"0xab","toBlock":"safe"}]"#,
        ] {
            assert_eq!(rule_of("eth_getLogs", filter), None, "{filter}");
        }
        for method in ["eth_blockNumber", "eth_gasPrice", "eth_sendRawTransaction"] {
            assert_eq!(rule_of(method, "[]"), None, "{method}");
        }
        assert_eq!(rule("eth_getBlockByNumber", None), None);
    }

    const KNOWN: Known = Known {
        chain_id: Some(1),
        finalized: Some(100),
    };

    fn kept(rule: Rule, answer: &str, known: Known) -> bool {
        let id = keepable(rule, answer.as_bytes(), known, b"7");
        if let Some(id) = &id {
            assert_eq!(&answer[id.clone()], "7", "the id's place in {answer}");
        }
        id.is_some()
    }

    #[test]
    fn only_whole_answers_meeting_the_rule_are_kept() {
        let block = |n: &str| format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"number":"{n}"}}}}"#);
        assert!(kept(Rule::AtMost(100), &block("0x64"), KNOWN));
        assert!(!kept(Rule::AtMost(101), &block("0x65"), KNOWN));
        let unknown = Known {
            finalized: None,
            ..KNOWN
        };
        assert!(!kept(Rule::AtMost(1), &block("0x1"), unknown));
        assert!(kept(Rule::AnswerBlock(Named::Block), &block("0x64"), KNOWN));
        assert!(!kept(
            Rule::AnswerBlock(Named::Block),
            &block("0x65"),
            KNOWN
        ));
        assert!(!kept(
            Rule::AnswerBlock(Named::Block),
            &block("0x1"),
            unknown
        ));
        for refused in [
            r#"{"jsonrpc":"2.0","id":7,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":"0x1","error":{"code":1}}"#,
            r#"{"jsonrpc":"2.0","result":"0x1"}"#,
            r#"[{"jsonrpc":"2.0","id":7,"result":"0x1"}]"#,
            r#"{"jsonrpc":"2.0","id":7,"result":"0x1""#,
            "\u{1f}",
        ] {
            assert!(!kept(Rule::NetVersion, refused, KNOWN), "{refused}");
        }
        let version = r#"{"jsonrpc":"2.0","id":7,"result":"1"}"#;
        assert!(kept(Rule::NetVersion, version, KNOWN));
        assert!(!kept(Rule::NetVersion, version, Known::default()));
        let other = r#"{"jsonrpc":"2.0","id":7,"result":"5"}"#;
        assert!(!kept(Rule::NetVersion, other, KNOWN));
    }

    #[test]
    fn an_answer_to_another_request_is_never_kept() {
        let answer = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"0x1"}}"#);
        let keeps = |answered: &str, asked: &str| {
            keepable(
                Rule::ChainId,
                answer(answered).as_bytes(),
                KNOWN,
                asked.as_bytes(),
            )
            .is_some()
        };
        assert!(keeps("7", "7"));
        assert!(!keeps("8", "7"), "another request's answer");
        assert!(!keeps(r#""7""#, "7"), "a string is not a number");
        assert!(!keeps("null", "7"));
        // The same id written another way by a node that writes it again.
        assert!(keeps(r#""a""#, r#""\u0061""#));
        assert!(keeps("[1,2]", "[1, 2]"));
    }

    #[test]
    fn a_chain_id_is_kept_only_when_it_is_the_one_the_check_saw() {
        let answer = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":7,"result":"{id}"}}"#);
        assert!(kept(Rule::ChainId, &answer("0x1"), KNOWN));
        assert!(!kept(Rule::ChainId, &answer("0x5"), KNOWN));
        let unknown = Known::default();
        assert!(!kept(Rule::ChainId, &answer("0x1"), unknown));
    }

    #[test]
    fn transactions_and_logs_by_hash_need_their_block_final() {
        let tx = |n: &str| format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"blockNumber":{n}}}}}"#);
        let rule = Rule::AnswerBlock(Named::Transaction);
        assert!(kept(rule, &tx(r#""0x64""#), KNOWN));
        assert!(!kept(rule, &tx(r#""0x65""#), KNOWN));
        assert!(!kept(rule, &tx("null"), KNOWN), "a pending transaction");
        let logs = |numbers: &[&str]| {
            let logs: Vec<String> = numbers
                .iter()
                .map(|n| format!(r#"{{"blockNumber":"{n}","logIndex":"0x0"}}"#))
                .collect();
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"result":[{}]}}"#,
                logs.join(",")
            )
        };
        let rule = Rule::AnswerBlock(Named::Logs);
        assert!(kept(rule, &logs(&["0x64", "0x64"]), KNOWN));
        assert!(!kept(rule, &logs(&["0x64", "0x65"]), KNOWN));
        assert!(
            !kept(rule, &logs(&[]), KNOWN),
            "an empty answer proves nothing"
        );
        // A range's empty answer is a true answer.
        assert!(kept(Rule::AtMost(100), &logs(&[]), KNOWN));
    }
}
