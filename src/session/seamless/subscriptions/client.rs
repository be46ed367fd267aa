//! The rules of what the client may send, and each of its messages on the way to the backend:
//! every request under an id of the gateway's, subscriptions within their caps, an
//! `eth_unsubscribe` naming the backend's id, and the gateway's own answer for what is not a
//! request.

use super::state::{CallKind, InFlight, SessionState};
use super::unanswered::safe_to_repeat;
use super::wire::{error_answer, join_array, NOT_A_REQUEST};
use crate::config::methods::routed_as;
use crate::jsonrpc::policy::{INVALID_REQUEST, PARSE_ERROR};
use crate::jsonrpc::{self, Message, Shape};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Subscriptions one session may hold: each is created again, and its gap filled, on every move.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Bytes of `eth_subscribe` parameters one session may hold (a `logs` filter can be long).
pub const MAX_SUBSCRIPTION_BYTES: usize = 1024 * 1024;

/// What an `eth_subscribe` past [`MAX_SUBSCRIPTIONS`] or [`MAX_SUBSCRIPTION_BYTES`] becomes: a
/// method no node has, so that the node's error answers it in its place (in a batch too).
pub const TOO_MANY_SUBSCRIPTIONS: &str = "ssv_ha_too_many_subscriptions_per_session";

/// The longest method name kept for an error message.
pub(super) const METHOD_NAME_KEPT: usize = 128;

/// Where a client's message goes.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    Backend(Vec<u8>),
    /// The gateway answers it.
    Client(Vec<u8>),
}

/// What becomes of one request object of the client's.
enum Tracked<'a> {
    /// To the backend, these bytes.
    Forward(Cow<'a, [u8]>),
    /// The gateway's answer to the client.
    Answer(Vec<u8>),
}

impl SessionState {
    /// The client's message as it goes on: to the backend, every request under a gateway id and
    /// an `eth_unsubscribe` naming the backend's id; or the gateway's answer, for a message that
    /// is not JSON the gateway can read (a parse error) or not a request (no method: an
    /// invalid-request error). Nothing goes to the node under the client's ids.
    pub fn client_message(&mut self, message: &[u8]) -> Outgoing {
        let read = match std::str::from_utf8(message) {
            Ok(text) => Message::read(text)
                .map(|shape| (text, shape))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("not UTF-8 ({e})")),
        };
        let (text, shape) = match read {
            Ok(read) => read,
            Err(e) => {
                return Outgoing::Client(error_answer(
                    "null",
                    PARSE_ERROR,
                    &format!("parse error: {e}"),
                ))
            }
        };
        match shape {
            Shape::Object(call) => match self.track(text, &call, None) {
                Tracked::Forward(sent) => Outgoing::Backend(sent.into_owned()),
                Tracked::Answer(answer) => Outgoing::Client(answer),
            },
            Shape::Array(items) if !items.is_empty() => self.track_batch(&items),
            // Nothing with an id: the node's answer (an error) has none either.
            _ => Outgoing::Backend(message.to_vec()),
        }
    }

    /// A batch: each element as [`SessionState::track`] makes it; elements without a method go
    /// as calls of [`NOT_A_REQUEST`] (answered by the gateway when the node's answer comes), or,
    /// when no element goes to the node, the gateway answers the batch.
    fn track_batch(&mut self, items: &[&RawValue]) -> Outgoing {
        let batch = self.next_id + 1;
        let mut sent: Vec<Cow<[u8]>> = Vec::with_capacity(items.len());
        let mut refused: Vec<(&RawValue, Vec<u8>)> = Vec::new();
        for raw in items {
            let Some(call) = Message::element(raw) else {
                sent.push(Cow::Borrowed(raw.get().as_bytes()));
                continue;
            };
            match self.track(raw.get(), &call, Some(batch)) {
                Tracked::Forward(element) => sent.push(element),
                Tracked::Answer(answer) => refused.push((raw, answer)),
            }
        }
        if sent.is_empty() {
            let answers: Vec<&[u8]> = refused.iter().map(|(_, a)| a.as_slice()).collect();
            return Outgoing::Client(join_array(&answers));
        }
        for (_, answer) in &refused {
            let id = self.own_id();
            let call =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{NOT_A_REQUEST}","params":[]}}"#);
            // The gateway's answer is kept whole: it holds the client's id.
            let entry = InFlight {
                client_id: String::from_utf8_lossy(answer).into(),
                method: NOT_A_REQUEST.into(),
                sent: Some(call.as_bytes().into()),
                kind: CallKind::NotARequest,
                batch: Some(batch),
            };
            self.keep(id, entry);
            sent.push(Cow::Owned(call.into_bytes()));
        }
        let parts: Vec<&[u8]> = sent.iter().map(|s| s.as_ref()).collect();
        Outgoing::Backend(join_array(&parts))
    }

    /// One request object (`text`, read as `call`): its bytes for the backend with the gateway's
    /// id put in (and what the session changes: a subscription past the cap, an
    /// `eth_unsubscribe`'s id), or the gateway's answer.
    fn track<'a>(&mut self, text: &'a str, call: &Message, batch: Option<u64>) -> Tracked<'a> {
        let method = match call.method_name() {
            Some(Some(name)) => name,
            Some(None) => {
                let id = call.id.map_or("null", |id| echoable(id.get()));
                return Tracked::Answer(error_answer(
                    id,
                    INVALID_REQUEST,
                    "the method must be a string",
                ));
            }
            None => {
                let id = call.id.map_or("null", |id| echoable(id.get()));
                return Tracked::Answer(error_answer(
                    id,
                    INVALID_REQUEST,
                    "a message without a method is not a request (this gateway takes no answers from clients)",
                ));
            }
        };
        let Some(client_id) = call.id else {
            // A notification: nothing comes back.
            return Tracked::Forward(Cow::Borrowed(text.as_bytes()));
        };
        if echoable(client_id.get()) != client_id.get() {
            return Tracked::Answer(error_answer(
                "null",
                INVALID_REQUEST,
                "the id must be a string, a number or null",
            ));
        }
        let mut edits: Vec<(&RawValue, Vec<u8>)> = Vec::with_capacity(2);
        let mut name: &str = &method;
        let kind = match routed(name) {
            Routed::Subscribe => {
                let size = call.params.map_or(0, |p| p.get().len());
                if self.subscriptions_held() >= MAX_SUBSCRIPTIONS
                    || self.subscription_bytes().saturating_add(size) > MAX_SUBSCRIPTION_BYTES
                {
                    name = TOO_MANY_SUBSCRIPTIONS;
                    if let Some(method) = call.method {
                        edits.push((method, jsonrpc::json_string(name).into_bytes()));
                    }
                    CallKind::Plain
                } else {
                    CallKind::Subscribe {
                        params: call.params.map(ToOwned::to_owned),
                    }
                }
            }
            Routed::Unsubscribe => {
                let named = call.params.and_then(|params| {
                    let first = jsonrpc::array(params)?.into_iter().next()?;
                    Some((params, jsonrpc::string(first)?))
                });
                match named {
                    Some((params, client_sub)) => {
                        // An id the client does not hold never names one of the backend's.
                        let backend_sub = self
                            .subs
                            .get(client_sub.as_ref())
                            .map_or("0x0", |sub| sub.backend_id.as_str());
                        let replaced = format!("[{}]", jsonrpc::json_string(backend_sub));
                        edits.push((params, replaced.into_bytes()));
                        CallKind::Unsubscribe {
                            client_sub: client_sub.into_owned(),
                        }
                    }
                    None => CallKind::Plain,
                }
            }
            Routed::Call => CallKind::Plain,
        };
        let id = self.own_id();
        edits.push((client_id, id.to_string().into_bytes()));
        let spliced: Vec<(&RawValue, &[u8])> =
            edits.iter().map(|(at, b)| (*at, b.as_slice())).collect();
        let sent = jsonrpc::splice(text, &spliced);
        let kept = safe_to_repeat(name).then(|| sent.clone().into_boxed_slice());
        self.keep(
            id,
            InFlight {
                client_id: client_id.get().into(),
                method: cut(name, METHOD_NAME_KEPT).into(),
                sent: kept,
                kind,
                batch,
            },
        );
        Tracked::Forward(Cow::Owned(sent))
    }

    /// Subscriptions held and being made.
    fn subscriptions_held(&self) -> usize {
        self.subs.len()
            + self
                .in_flight
                .values()
                .filter(|c| matches!(c.kind, CallKind::Subscribe { .. }))
                .count()
    }

    /// Bytes of the parameters of the subscriptions held and being made.
    fn subscription_bytes(&self) -> usize {
        let held: usize = self
            .subs
            .values()
            .map(|s| s.params.as_ref().map_or(0, |p| p.get().len()))
            .sum();
        let making: usize = self
            .in_flight
            .values()
            .map(|c| match &c.kind {
                CallKind::Subscribe { params } => params.as_ref().map_or(0, |p| p.get().len()),
                _ => 0,
            })
            .sum();
        held + making
    }
}

/// What a node makes of a method, by its name.
enum Routed {
    Subscribe,
    Unsubscribe,
    Call,
}

/// What a node makes of a method ([`routed_as`]): the session counts and carries every spelling
/// geth takes for a subscription.
fn routed(name: &str) -> Routed {
    match routed_as(name).as_deref().unwrap_or(name) {
        "eth_subscribe" => Routed::Subscribe,
        "eth_unsubscribe" => Routed::Unsubscribe,
        _ => Routed::Call,
    }
}

/// An id as it may be echoed: itself when JSON-RPC allows it (a string, a number, null), else
/// `null`.
fn echoable(id: &str) -> &str {
    match id.as_bytes().first() {
        Some(b'{' | b'[') => "null",
        _ => id,
    }
}

/// The first `max` bytes of `name`, on a character boundary.
fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn ids_are_the_gateways_toward_the_backend_and_the_clients_on_the_way_back() {
        let mut s = SessionState::default();
        let sent = text(&to_backend(s.client_message(br#"[{"jsonrpc":"2.0","id":"a","method":"eth_chainId"},{"jsonrpc":"2.0","method":"x"},{"jsonrpc":"2.0","id":"a","method":"eth_blockNumber"}]"#)));
        let (first, second) = (
            sent[0]["id"].as_u64().unwrap(),
            sent[2]["id"].as_u64().unwrap(),
        );
        assert_ne!(first, second, "two requests with one client id stay apart");
        assert!(sent[1].get("id").is_none(), "a notification stays one");
        let answer = json!([{"jsonrpc":"2.0","id":second,"result":"0x10"},{"jsonrpc":"2.0","id":first,"result":"0x1"}]);
        let back = text(
            &s.backend_message(answer.to_string().as_bytes())
                .pop()
                .unwrap(),
        );
        assert_eq!(back[0]["id"], "a");
        assert_eq!(back[0]["result"], "0x10");
        assert_eq!(s.in_flight(), 0);
        // Not JSON: unchanged both ways.
        // Not JSON it can read: the gateway answers, nothing goes with the client's ids.
        let Outgoing::Client(answer) = s.client_message(b"nonsense") else {
            panic!("forwarded")
        };
        assert_eq!(text(&answer)["error"]["code"], -32700);
        assert_eq!(
            to_backend(s.client_message(b"5")),
            b"5",
            "no id: forwarded as is"
        );
    }

    #[test]
    fn subscriptions_per_session_are_capped_and_foreign_ids_name_nothing() {
        let mut s = SessionState::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            subscribe(&mut s, i as u64, json!(["newHeads"]), &format!("0x{i:x}"));
        }
        let over = text(&to_backend(s.client_message(
            br#"[{"jsonrpc":"2.0","id":"x","method":"eth_subscribe","params":["newHeads"]}]"#,
        )));
        assert_eq!(over[0]["method"], TOO_MANY_SUBSCRIPTIONS);
        let foreign = text(&to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","id":"y","method":"eth_unsubscribe","params":["0xdead"]}"#,
        )));
        assert_eq!(foreign["params"][0], "0x0");
    }

    /// A request the method policy reads (it skips what it does not need) but serde_json's
    /// `Value` refuses (a number out of f64's range) goes to the backend under a gateway id, the
    /// rest of it as the client wrote it.
    #[test]
    fn every_request_goes_under_a_gateway_id() {
        let mut s = SessionState::default();
        let _ = s.client_message(br#"{"jsonrpc":"2.0","id":"a","method":"eth_chainId"}"#);
        let raw = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[],"x":1e400}"#;
        assert!(
            crate::jsonrpc::policy::parse(
                raw,
                &crate::jsonrpc::policy::MethodPolicy {
                    allow: vec![],
                    deny: vec![],
                    max_batch: 10
                }
            )
            .is_ok(),
            "the policy lets it through"
        );
        assert_eq!(
            to_backend(s.client_message(raw)),
            br#"{"jsonrpc":"2.0","id":2,"method":"eth_chainId","params":[],"x":1e400}"#,
            "sent under the gateway's id 2, not the client's 1 (the gateway's first id)"
        );
    }

    /// geth takes any method ending in `_subscribe` (of the `eth` namespace) for
    /// `eth_subscribe`, and any ending in `_unsubscribe` for `eth_unsubscribe`: the cap counts
    /// them all, and an unsubscribe in any spelling names the backend's id.
    #[test]
    fn subscriptions_are_known_in_every_spelling_geth_routes() {
        let mut s = SessionState::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            subscribe(&mut s, i as u64, json!(["newHeads"]), &format!("0x{i:x}"));
        }
        for spelling in ["eth_x_subscribe", "eth__subscribe", "eth_get_subscribe"] {
            let request = json!({"jsonrpc":"2.0","id":1,"method":spelling,"params":["newHeads"]});
            let sent = text(&to_backend(
                s.client_message(request.to_string().as_bytes()),
            ));
            assert_eq!(sent["method"], TOO_MANY_SUBSCRIPTIONS, "{spelling}");
        }
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xaaa");
        s.rebind(&[(sub, "0xbbb".into())], None);
        for spelling in ["eth_x_unsubscribe", "foo_unsubscribe"] {
            let request = json!({"jsonrpc":"2.0","id":2,"method":spelling,"params":["0xaaa"]});
            let sent = text(&to_backend(
                s.client_message(request.to_string().as_bytes()),
            ));
            assert_eq!(sent["params"][0], "0xbbb", "{spelling}");
        }
        // Not subscriptions: geth routes these as calls.
        for name in ["eth_subscribeX", "eth_Subscribe", "x_subscribe"] {
            let request = json!({"jsonrpc":"2.0","id":3,"method":name,"params":["newHeads"]});
            s.client_message(request.to_string().as_bytes());
        }
        assert_eq!(s.subscriptions_held(), 1);
    }

    fn answer_of(out: Outgoing) -> Value {
        match out {
            Outgoing::Client(answer) => text(&answer),
            Outgoing::Backend(sent) => panic!("sent: {}", String::from_utf8_lossy(&sent)),
        }
    }

    #[test]
    fn keys_are_read_in_any_case_and_the_last_one_wins() {
        let mut s = SessionState::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            subscribe(&mut s, i as u64, json!(["newHeads"]), &format!("0x{i:x}"));
        }
        // Past the cap, whatever case the method key is in, and when it is the later of two.
        for over in [
            &br#"{"jsonrpc":"2.0","id":"x","Method":"eth_subscribe","params":["newHeads"]}"#[..],
            br#"{"jsonrpc":"2.0","id":"x","METHOD":"eth_subscribe","params":["newHeads"]}"#,
            br#"{"jsonrpc":"2.0","id":"x","method":"eth_chainId","mEthod":"eth_subscribe"}"#,
            br#"{"jsonrpc":"2.0","id":"x","\u006Dethod":"eth_\u0073ubscribe"}"#,
        ] {
            let sent = to_backend(s.client_message(over));
            let sent = String::from_utf8(sent).unwrap();
            assert!(
                sent.contains(&format!(r#""{TOO_MANY_SUBSCRIPTIONS}""#))
                    && !sent.ends_with(r#""eth_subscribe"}"#),
                "{sent}"
            );
        }
        // An earlier method key the node does not run is left alone, the later one counts.
        let sent = to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","id":"x","method":"eth_subscribe","Method":"eth_chainId"}"#,
        ));
        assert!(!String::from_utf8_lossy(&sent).contains(TOO_MANY_SUBSCRIPTIONS));
        // The id the node reads (the last id key, in any case) is the gateway's; the client's
        // earlier ones stay as they were and the answer goes back under the one the node read.
        let mut s = SessionState::default();
        let sent = to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","ID":2,"\u0131d":3}"#,
        ));
        assert_eq!(
            sent, br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","ID":2,"\u0131d":1}"#,
            "the gateway's id 1 where the node reads it"
        );
        let back = s.backend_message(br#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#);
        assert_eq!(
            back,
            vec![br#"{"jsonrpc":"2.0","id":3,"result":"0x1"}"#.to_vec()]
        );
        // Unsubscribe names the backend's id whatever the case of its keys.
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xaaa");
        s.rebind(&[(sub, "0xbbb".into())], None);
        let sent = text(&to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","Id":9,"METHOD":"eth_unsubscribe","Params":["0xaaa"]}"#,
        )));
        assert_eq!(sent["Params"][0], "0xbbb");
    }

    #[test]
    fn a_message_without_a_method_is_answered_and_goes_nowhere() {
        let mut s = SessionState::default();
        let big_id = format!("[{}0]", "0,".repeat(10_000));
        let shaped = format!(r#"{{"jsonrpc":"2.0","id":{big_id},"result":0}}"#);
        let answer = answer_of(s.client_message(shaped.as_bytes()));
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        assert_eq!(answer["id"], Value::Null, "an array is no id to echo");
        let answer = answer_of(s.client_message(br#"{"jsonrpc":"2.0","id":"r","result":0}"#));
        assert_eq!(
            (answer["id"].clone(), answer["error"]["code"].clone()),
            (json!("r"), json!(INVALID_REQUEST))
        );
        let answer = answer_of(s.client_message(br#"{"jsonrpc":"2.0","id":7,"method":5}"#));
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        let answer = answer_of(
            s.client_message(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}"#),
        );
        assert_eq!(answer["id"], Value::Null);
        assert_eq!((s.in_flight(), s.in_flight_bytes()), (0, 0), "nothing kept");
        // A batch of only such messages: answered whole.
        let answer = answer_of(s.client_message(br#"[{"id":1,"result":0},{"id":2,"error":{}}]"#));
        assert_eq!(answer.as_array().unwrap().len(), 2);
        assert_eq!(s.in_flight(), 0);
        // Among requests: the node gets a call of its own instead (never the client's id), and
        // the client gets the gateway's error in the node's answer, in its place.
        let sent = text(&to_backend(s.client_message(
            br#"[{"jsonrpc":"2.0","id":"q","method":"eth_chainId"},{"jsonrpc":"2.0","id":"r","result":0}]"#,
        )));
        assert_eq!(sent[1]["method"], NOT_A_REQUEST);
        assert!(!sent.to_string().contains(r#""r""#));
        let node = json!([
            {"jsonrpc":"2.0","id":sent[0]["id"],"result":"0x1"},
            {"jsonrpc":"2.0","id":sent[1]["id"],"error":{"code":-32601,"message":"no such method"}}
        ]);
        let back = text(
            &s.backend_message(node.to_string().as_bytes())
                .pop()
                .unwrap(),
        );
        assert_eq!(back[0]["id"], "q");
        assert_eq!(
            (back[1]["id"].clone(), back[1]["error"]["code"].clone()),
            (json!("r"), json!(INVALID_REQUEST))
        );
        assert_eq!(s.in_flight(), 0);
    }
}
