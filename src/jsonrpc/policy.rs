//! JSON-RPC method policy and batch limits for execution pools, as pure functions.
//!
//! Every body is judged by a full parse ([`parse`]): it must be valid JSON, and every key that is
//! `method` in any case (duplicates included, escapes decoded; the key rule of
//! [`crate::jsonrpc::Key`], Go's) must name a permitted method. There
//! is no cheaper scan in front of it that could disagree. A denied single request is answered by
//! the gateway; in a batch, the denied elements are taken out and answered in place, the others
//! go to the backend byte for byte, and [`merge`] puts the backend's answers (matched by id) and
//! the gateway's errors back in the client's order.

use super::scan::skip_ws;
use crate::jsonrpc::Key;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;

pub use crate::config::methods::{MethodPolicy, DEFAULT_DENY};

/// JSON-RPC error code for a method the pool's policy refuses.
pub const METHOD_DENIED: i64 = -32601;
/// JSON-RPC error code for a refused request (too large a batch, not JSON-RPC).
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error code for a body that is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC error code for a call of a merged batch that the node left unanswered.
pub const NO_ANSWER: i64 = -32603;

/// What to do with a request body.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Forward as it is.
    Pass,
    /// Answer it here (every method denied, or an invalid request); no backend sees it.
    Answer(Vec<u8>),
    /// Forward `body` (the permitted elements of a batch, each byte for byte as the client sent
    /// it) and merge the backend's answer with `plan`.
    Rewrite { body: Vec<u8>, plan: Vec<Slot> },
}

/// One element of the client's batch that expects an answer (notifications expect none and have
/// no slot): answered by the backend, or by the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Sent to the backend; its answer is the one with this id (as compact JSON text).
    Forwarded(String),
    /// Answered by the gateway.
    Answered(Value),
}

/// What the policy makes of one request object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Permitted,
    /// A method key names a denied method.
    Denied(String),
    /// Not a request the gateway forwards (not an object, a method that is not a string).
    Invalid(&'static str),
}

/// One request object, as far as the policy reads it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The `id`, as the client wrote it; `None` for a notification.
    pub id: Option<&'a RawValue>,
    pub verdict: Verdict,
    /// The method the node will call: the last method key's name, as Go's decoder keeps it
    /// (`None` when it is not a string, or there is none).
    pub method: Option<Cow<'a, str>>,
    /// The last `params`, as the client wrote them.
    pub params: Option<&'a RawValue>,
    /// Every method key (in any case, duplicates included) names a read: a node that reads keys
    /// otherwise than Go (case-sensitive, or the first of two) still runs a read.
    pub every_method_reads: bool,
    /// Its method keys name more than one method, or its params keys hold different params:
    /// which one the node takes is its own reading of the keys.
    pub mixed_methods: bool,
}

impl Call<'_> {
    /// Whether the call only reads ([`crate::jsonrpc::reads`]), whichever of its method keys the
    /// node takes.
    pub fn is_read(&self) -> bool {
        self.every_method_reads && self.method.as_deref().is_some_and(super::reads::is_read)
    }

    /// The id as a JSON value (`null` for a notification).
    pub fn id_value(&self) -> Value {
        self.id
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null)
    }
}

/// A request body parsed in full: one call, or a batch with each element's exact text.
#[derive(Debug)]
pub enum Request<'a> {
    Single(Call<'a>),
    Batch(Vec<(&'a RawValue, Call<'a>)>),
    /// A batch of this many elements, more than the policy's `max_batch`: only counted (no
    /// element was read into anything), so its size costs the gateway nothing per element.
    TooLarge(usize),
}

/// Parses a body the way the policy judges it: the whole body must be valid JSON (serde_json,
/// the same grammar the nodes accept), and every key of a request object that is `method` in any
/// case, duplicates included, must name a permitted method. Keys and names are read after JSON
/// unescaping, so `"\u006dethod"` and `"admin\u005fpeers"` are what they spell.
pub fn parse<'a>(body: &'a [u8], policy: &MethodPolicy) -> serde_json::Result<Request<'a>> {
    parse_text(utf8(body)?, policy)
}

/// All of the body UTF-8, strings the policy skips too (serde_json checks only what it reads).
fn utf8(body: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(body)
        .map_err(|e| <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8 ({e})")))
}

/// [`parse`] of a body already known to be UTF-8.
fn parse_text<'a>(text: &'a str, policy: &MethodPolicy) -> serde_json::Result<Request<'a>> {
    let body = text.as_bytes();
    let mut de = serde_json::Deserializer::from_str(text);
    let request = if skip_ws(body).first() == Some(&b'[') {
        de.deserialize_seq(BatchSeed { policy })?
    } else {
        Request::Single(CallSeed { policy }.deserialize(&mut de)?)
    };
    de.end()?;
    Ok(request)
}

/// What the one reading of a request body leaves for the rest of its way: what to do with it, and
/// what the gateway may do for it (ask a second node, answer from the cache).
#[derive(Debug, PartialEq)]
pub struct Judged {
    pub decision: Decision,
    /// Every call that goes to the backend only reads ([`crate::jsonrpc::reads`]).
    pub reads_only: bool,
    /// The request, when it is one call that goes to the backend as the client sent it.
    pub single: Option<Single>,
}

/// One call forwarded as it came: where its parts are in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Single {
    pub method: String,
    /// Where the params are in the body, if there are any.
    pub params: Option<Range<usize>>,
    /// Where the id is in the body; `None` for a notification.
    pub id: Option<Range<usize>>,
}

/// Decides what to do with a JSON-RPC request body sent over HTTP.
pub fn inspect(body: &[u8], policy: &MethodPolicy) -> Decision {
    judge(body, policy).decision
}

/// Decides what to do with a JSON-RPC request body sent over HTTP, and keeps what the rest of
/// the request's way needs to know of it.
pub fn judge(body: &[u8], policy: &MethodPolicy) -> Judged {
    let answered = |decision| Judged {
        decision,
        reads_only: false,
        single: None,
    };
    let parsed = utf8(body).and_then(|text| Ok((text, parse_text(text, policy)?)));
    let (text, request) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = format!("request is not valid JSON: {e}");
            return answered(Decision::Answer(
                error(&Value::Null, PARSE_ERROR, &message)
                    .to_string()
                    .into_bytes(),
            ));
        }
    };
    let items = match request {
        Request::Single(call) => {
            return match refusal(&call) {
                Some(answer) => answered(Decision::Answer(answer.to_string().into_bytes())),
                None => Judged {
                    decision: Decision::Pass,
                    reads_only: call.is_read(),
                    single: single(text, &call),
                },
            }
        }
        Request::Batch(items) if !items.is_empty() => items,
        Request::Batch(_) | Request::TooLarge(_) => {
            let message = match request {
                Request::TooLarge(n) => format!(
                    "batch of {n} requests; this gateway takes at most {}",
                    policy.max_batch
                ),
                _ => "empty batch".to_string(),
            };
            return answered(Decision::Answer(
                error(&Value::Null, INVALID_REQUEST, &message)
                    .to_string()
                    .into_bytes(),
            ));
        }
    };
    let reads_only = items
        .iter()
        .filter(|(_, call)| call.verdict == Verdict::Permitted)
        .all(|(_, call)| call.is_read());
    if items
        .iter()
        .all(|(_, call)| call.verdict == Verdict::Permitted)
    {
        return Judged {
            decision: Decision::Pass,
            reads_only,
            single: None,
        };
    }
    let mut plan = Vec::with_capacity(items.len());
    let mut forward: Vec<&str> = Vec::new();
    for (raw, call) in &items {
        match refusal(call) {
            // A denied notification gets no answer, not even an error (an invalid element is
            // answered with a null id, as JSON-RPC 2.0 asks).
            Some(_) if call.id.is_none() && matches!(call.verdict, Verdict::Denied(_)) => {}
            Some(answer) => plan.push(Slot::Answered(answer)),
            None => {
                forward.push(raw.get());
                if let Some(id) = call.id {
                    plan.push(Slot::Forwarded(id.get().to_string()));
                }
            }
        }
    }
    if forward.is_empty() {
        return answered(Decision::Answer(answers_body(plan.into_iter().filter_map(
            |slot| match slot {
                Slot::Answered(v) => Some(v.to_string()),
                Slot::Forwarded(_) => None,
            },
        ))));
    }
    Judged {
        decision: Decision::Rewrite {
            body: format!("[{}]", forward.join(",")).into_bytes(),
            plan,
        },
        reads_only,
        single: None,
    }
}

/// Where a single call's parts are in its body (which `parse` read as UTF-8 already); `None`
/// when its method keys name different methods (a node that reads keys otherwise than Go would
/// run another method than the cache's key names).
fn single(text: &str, call: &Call) -> Option<Single> {
    if call.mixed_methods {
        return None;
    }
    Some(Single {
        method: call.method.as_deref()?.to_string(),
        params: call.params.and_then(|p| super::span(text, p)),
        id: call.id.and_then(|id| super::span(text, id)),
    })
}

/// The gateway's answer to a request it will not forward, or `None` to forward it.
fn refusal(call: &Call) -> Option<Value> {
    match &call.verdict {
        Verdict::Permitted => None,
        Verdict::Denied(m) => Some(error(
            &call.id_value(),
            METHOD_DENIED,
            &format!("the method {m} is not available through this gateway"),
        )),
        Verdict::Invalid(why) => Some(error(&call.id_value(), INVALID_REQUEST, why)),
    }
}

/// A batch's answers as a body: a JSON array, or nothing at all when no element expects an
/// answer (JSON-RPC 2.0: never an empty array).
fn answers_body<S: AsRef<str>>(answers: impl Iterator<Item = S>) -> Vec<u8> {
    let mut body = Vec::new();
    for answer in answers {
        body.push(if body.is_empty() { b'[' } else { b',' });
        body.extend_from_slice(answer.as_ref().as_bytes());
    }
    if !body.is_empty() {
        body.push(b']');
    }
    body
}

/// Puts a rewritten batch back together in the client's order: each forwarded element's answer
/// is found by its id, compared as the JSON text the client sent (nodes echo it as it came, so
/// big numbers and escapes match exactly); the backend may answer in any order and sends nothing
/// for notifications. The gateway's own errors stand in place; answers the plan does not know
/// (an error with a null id, say) follow at the end; a call the node left unanswered gets an
/// error of the gateway's. The backend's answers keep their bytes.
/// `None` when its answer is not a JSON array (a single error for the whole batch): it is passed
/// on unchanged then.
pub fn merge(plan: &[Slot], backend_answer: &[u8]) -> Option<Vec<u8>> {
    let answers: Vec<&RawValue> = if skip_ws(backend_answer).is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(backend_answer).ok()?
    };
    let mut by_id: HashMap<&str, VecDeque<&str>> = HashMap::new();
    let mut unknown = Vec::new();
    for answer in answers {
        let mut de = serde_json::Deserializer::from_str(answer.get());
        match EchoedId.deserialize(&mut de) {
            Ok(Some(id)) => by_id.entry(id.get()).or_default().push_back(answer.get()),
            _ => unknown.push(answer.get().to_string()),
        }
    }
    let mut merged: Vec<String> = Vec::with_capacity(plan.len());
    for slot in plan {
        match slot {
            Slot::Forwarded(id) => match by_id.get_mut(id.as_str()).and_then(VecDeque::pop_front) {
                Some(answer) => merged.push(answer.to_string()),
                // A call the node left unanswered still gets an answer: a client library
                // waits for every id it sent.
                None => merged.push(format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{NO_ANSWER},"message":"the node sent no answer for this call"}}}}"#
                )),
            },
            Slot::Answered(v) => merged.push(v.to_string()),
        }
    }
    merged.extend(by_id.into_values().flatten().map(str::to_string));
    merged.extend(unknown);
    Some(answers_body(merged.iter()))
}

/// Reads a batch: each element's text and verdict, for up to `max_batch` elements; past that,
/// the rest is only counted.
struct BatchSeed<'p> {
    policy: &'p MethodPolicy,
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Request<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            if items.len() == self.policy.max_batch {
                let mut count = items.len() + 1;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                return Ok(Request::TooLarge(count));
            }
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let call = CallSeed {
                policy: self.policy,
            }
            .deserialize(&mut de)
            .map_err(serde::de::Error::custom)?;
            items.push((raw, call));
        }
        Ok(Request::Batch(items))
    }
}

/// The `id` of an answer object, as its raw JSON text (`null` included); `None` without one.
struct EchoedId;

impl<'de> DeserializeSeed<'de> for EchoedId {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EchoedId {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => id = Some(map.next_value::<&RawValue>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(id)
    }
}

/// Reads one request object: its id and every method key, without building a tree.
struct CallSeed<'p> {
    policy: &'p MethodPolicy,
}

impl<'de> DeserializeSeed<'de> for CallSeed<'_> {
    type Value = Call<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Call<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Call<'_> {
    fn not_an_object() -> Self {
        Call {
            id: None,
            verdict: Verdict::Invalid("a JSON-RPC request must be an object"),
            method: None,
            params: None,
            every_method_reads: false,
            mixed_methods: false,
        }
    }
}

impl<'de> Visitor<'de> for CallSeed<'_> {
    type Value = Call<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Call<'de>, A::Error> {
        let mut id = None;
        let mut params = None;
        let mut method = None;
        let mut verdict = Verdict::Permitted;
        let mut every_method_reads = true;
        let mut mixed_methods = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Method => {
                    let name = map.next_value::<Name>()?;
                    every_method_reads &= name.as_str().is_some_and(super::reads::is_read);
                    if verdict == Verdict::Permitted {
                        verdict = match name.as_str() {
                            Some(m) if self.policy.permits(m) => Verdict::Permitted,
                            Some(m) => Verdict::Denied(m.to_string()),
                            None => Verdict::Invalid("the method must be a string"),
                        };
                    }
                    let name = name.into_cow();
                    mixed_methods |= method.is_some() && method != name;
                    method = name;
                }
                // The last one, as Go's decoder keeps.
                Key::Id => id = Some(map.next_value::<&RawValue>()?),
                Key::Params => {
                    let value = map.next_value::<&RawValue>()?;
                    mixed_methods |= params.is_some_and(|p: &RawValue| p.get() != value.get());
                    params = Some(value);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Call {
            id,
            verdict,
            method,
            params,
            every_method_reads,
            mixed_methods,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Call<'de>, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Call::not_an_object())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }

    fn visit_str<E>(self, _: &str) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }

    fn visit_unit<E>(self) -> Result<Call<'de>, E> {
        Ok(Call::not_an_object())
    }
}

/// A method value: a name (borrowed unless it had escapes), or anything else.
enum Name<'a> {
    Borrowed(&'a str),
    Owned(String),
    NotAString,
}

impl<'a> Name<'a> {
    fn into_cow(self) -> Option<Cow<'a, str>> {
        match self {
            Name::Borrowed(s) => Some(Cow::Borrowed(s)),
            Name::Owned(s) => Some(Cow::Owned(s)),
            Name::NotAString => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Name::Borrowed(s) => Some(s),
            Name::Owned(s) => Some(s),
            Name::NotAString => None,
        }
    }
}

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Name<'de>, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a method name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name::Owned(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Name<'de>, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(Name::NotAString)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Name<'de>, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(Name::NotAString)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }
            fn visit_unit<E>(self) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }
        }
        deserializer.deserialize_any(NameVisitor)
    }
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> MethodPolicy {
        MethodPolicy {
            allow: vec![],
            deny: vec!["eth_sendRawTransaction".into()],
            max_batch: 3,
        }
    }

    #[test]
    fn patterns_and_defaults() {
        let p = policy();
        assert!(p.permits("eth_call"));
        assert!(!p.permits("admin_addPeer"));
        assert!(
            !p.permits("ADMIN_addPeer"),
            "case does not get around the policy"
        );
        assert!(!p.permits("debug_traceTransaction"));
        assert!(!p.permits("eth_sendRawTransaction"));
        let p = MethodPolicy {
            allow: vec!["eth_*".into(), "debug_traceTransaction".into()],
            deny: vec![],
            max_batch: 10,
        };
        assert!(p.permits("eth_getLogs"));
        assert!(
            p.permits("debug_traceTransaction"),
            "an explicit allow lifts a default denial"
        );
        assert!(!p.permits("debug_traceCall"));
        assert!(
            !p.permits("net_version"),
            "an allow list admits only what it names"
        );
    }

    /// geth runs `eth_x_subscribe` as `eth_subscribe` and `x_unsubscribe` as `eth_unsubscribe`:
    /// a policy that denies the one denies the other spellings too.
    #[test]
    fn a_method_is_judged_also_by_the_method_a_node_runs_for_it() {
        let p = MethodPolicy {
            allow: vec![],
            deny: vec!["eth_subscribe".into(), "eth_unsubscribe".into()],
            max_batch: 10,
        };
        for denied in [
            "eth_subscribe",
            "eth_x_subscribe",
            "eth__subscribe",
            "x_unsubscribe",
        ] {
            assert!(!p.permits(denied), "{denied}");
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{denied}","params":[]}}"#);
            assert!(
                matches!(judge(body.as_bytes(), &p).decision, Decision::Answer(_)),
                "{denied}"
            );
        }
        // Names geth runs as they are.
        for permitted in ["eth_subscribeX", "x_subscribe", "eth_chainId"] {
            assert!(p.permits(permitted), "{permitted}");
        }
        // An allow list admits a spelling only when it admits the name as sent too.
        let p = MethodPolicy {
            allow: vec!["eth_subscribe".into()],
            deny: vec![],
            max_batch: 10,
        };
        assert!(p.permits("eth_subscribe"));
        assert!(!p.permits("eth_x_subscribe"));
    }

    #[test]
    fn one_reading_keeps_what_hedging_and_the_cache_need() {
        let body =
            br#"{"ID":7,"jsonrpc":"2.0","params":["0x1", false],"method":"eth_getBlockByNumber"}"#;
        let judged = judge(body, &policy());
        assert_eq!(judged.decision, Decision::Pass);
        assert!(judged.reads_only);
        let single = judged.single.expect("a single call");
        assert_eq!(single.method, "eth_getBlockByNumber");
        let text = std::str::from_utf8(body).unwrap();
        assert_eq!(&text[single.params.unwrap()], r#"["0x1", false]"#);
        assert_eq!(&text[single.id.unwrap()], "7");
        // Go's decoder keeps the last method key: that is the one the node calls.
        let body = br#"{"method":"eth_chainId","METHOD":"eth_newFilter","id":1}"#;
        let judged = judge(body, &policy());
        assert!(!judged.reads_only, "eth_newFilter is what the node calls");
        // A node that reads keys case-sensitively (or takes the first) calls another method
        // than Go's: a write hidden behind a read is no read, and the cache stays out of it.
        for body in [
            r#"{"method":"eth_sendTransaction","METHOD":"eth_call","id":1}"#,
            r#"{"method":"eth_sendTransaction","method":"eth_call","id":1}"#,
            r#"{"Method":"eth_blockNumber","method":"eth_getBlockByNumber","params":["0x1",false],"id":1}"#,
        ] {
            let judged = judge(body.as_bytes(), &policy());
            let reads = body.contains("eth_blockNumber");
            assert_eq!(judged.reads_only, reads, "{body}");
            assert!(judged.single.is_none(), "{body}");
        }
        // So do params keys holding different params: the node may answer the others.
        let body = br#"{"method":"eth_getBlockByNumber","params":["0x10",false],"PARAMS":["0x11",false],"id":1}"#;
        assert!(judge(body, &policy()).single.is_none());
        let same = br#"{"method":"eth_call","METHOD":"eth_call","id":1}"#;
        let judged = judge(same, &policy());
        assert!(judged.reads_only && judged.single.is_some());
        // A batch reads only when every forwarded element reads; a batch is never one call.
        let batch = br#"[{"method":"eth_call","id":1},{"method":"eth_chainId","id":2}]"#;
        let judged = judge(batch, &policy());
        assert!(judged.reads_only && judged.single.is_none());
        let batch = br#"[{"method":"eth_call","id":1},{"method":"eth_sendRawTransaction","id":2}]"#;
        assert!(
            judge(batch, &policy()).reads_only,
            "the denied write is the gateway's to answer: only the read goes"
        );
        let batch = br#"[{"method":"eth_call","id":1},{"method":"eth_sendTransaction","id":2}]"#;
        assert!(!judge(batch, &policy()).reads_only);
        assert!(!judge(b"nonsense", &policy()).reads_only);
    }

    #[test]
    fn permitted_requests_pass_and_non_json_is_answered() {
        assert_eq!(
            inspect(
                br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#,
                &policy()
            ),
            Decision::Pass
        );
        assert_eq!(
            inspect(
                br#" [{"method":"eth_chainId","id":1},{"method":"eth_call","id":2}] "#,
                &policy()
            ),
            Decision::Pass
        );
        for junk in [
            &b"{\"id\":1,\"method\":\"eth_call\",\"params\":[\"\xff\"]}"[..],
            b"not json at all",
            b"{'method':'admin_peers'}",
            b"{}{}",
            b"",
        ] {
            let Decision::Answer(body) = inspect(junk, &policy()) else {
                panic!("{}", String::from_utf8_lossy(junk))
            };
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], PARSE_ERROR);
        }
    }

    #[test]
    fn denied_single_request_is_answered_with_its_id() {
        let Decision::Answer(body) = inspect(
            br#"{"jsonrpc":"2.0","id":"x","method":"admin_peers"}"#,
            &policy(),
        ) else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], METHOD_DENIED);
    }

    #[test]
    fn tricks_do_not_get_past() {
        for (body, code) in [
            (&br#"{"id":1,"METHOD":"admin_addPeer"}"#[..], METHOD_DENIED),
            (br#"{"id":1,"\u006dethod":"admin_addPeer"}"#, METHOD_DENIED),
            (br#"{"id":1,"method":"admin\u005faddPeer"}"#, METHOD_DENIED),
            (
                br#"{"id":1,"method":"eth_call","method":"admin_addPeer"}"#,
                METHOD_DENIED,
            ),
            (
                br#"{"id":1,"method":"admin_addPeer","method":"eth_call"}"#,
                METHOD_DENIED,
            ),
            (
                br#"{"id":1,"method":"admin_addPeer","Method":"eth_call"}"#,
                METHOD_DENIED,
            ),
            (br#"{"id":1,"method" : "debug_setHead"}"#, METHOD_DENIED),
            (
                "{\"id\":1,\"method\":\"admin_é\"}".as_bytes(),
                METHOD_DENIED,
            ),
            (br#"{"id":1,"method":["admin_addPeer"]}"#, INVALID_REQUEST),
            (
                br#"{"id":1,"method":"eth_call"} {"id":2,"method":"admin_addPeer"}"#,
                PARSE_ERROR,
            ),
        ] {
            let Decision::Answer(answer) = inspect(body, &policy()) else {
                panic!("{}", String::from_utf8_lossy(body))
            };
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(
                answer["error"]["code"],
                code,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn names_that_are_not_ascii_never_cut_a_character() {
        // Each default prefix with a two-byte character across its end.
        for prefix in DEFAULT_DENY {
            let stem = prefix.trim_end_matches('*');
            for cut in 1..stem.len() {
                let name = format!("{}é{}", &stem[..cut], &stem[cut..]);
                let body = format!(r#"{{"id":1,"method":"{name}"}}"#);
                assert_eq!(
                    inspect(body.as_bytes(), &policy()),
                    Decision::Pass,
                    "{name}"
                );
            }
            let name = format!("{stem}é");
            assert!(!policy().permits(&name), "{name}");
        }
    }

    #[test]
    fn a_huge_batch_is_counted_not_read() {
        let body = format!("[{}1]", "1,".repeat(100_000));
        let Decision::Answer(answer) = inspect(body.as_bytes(), &policy()) else {
            panic!()
        };
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batch of 100001 requests"));
        // Still a full parse: a broken tail is not valid JSON.
        let broken = format!("[{}1", "1,".repeat(100));
        let Decision::Answer(answer) = inspect(broken.as_bytes(), &policy()) else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&answer).contains(&PARSE_ERROR.to_string()));
    }

    #[test]
    fn ids_match_as_written_big_numbers_and_null_included() {
        let body = br#"[{"id":100000000000000000001,"method":"eth_call"},{"id":100000000000000000002,"method":"eth_call"},{"id":null,"method":"eth_call"},{"id":"x","method":"admin_x"}]"#;
        let roomy = MethodPolicy {
            max_batch: 10,
            ..policy()
        };
        let Decision::Rewrite { plan, .. } = inspect(body, &roomy) else {
            panic!()
        };
        let backend = br#"[{"id":null,"result":"n"},{"id":100000000000000000002,"result":"b"},{"id":100000000000000000001,"result":"a"}]"#;
        let merged = String::from_utf8(merge(&plan, backend).unwrap()).unwrap();
        let a = merged.find(r#""result":"a""#).unwrap();
        let b = merged.find(r#""result":"b""#).unwrap();
        let n = merged.find(r#""result":"n""#).unwrap();
        let x = merged.find(r#""id":"x""#).unwrap();
        assert!(a < b && b < n && n < x, "{merged}");
    }

    fn ids(body: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].clone())
            .collect()
    }

    #[test]
    fn batch_with_denied_elements_is_rewritten_and_merged_by_id() {
        let body = br#"[{"id":1,"method":"eth_chainId"},{"id":2,"method":"admin_peers"},{"id":3, "method":"eth_blockNumber"}]"#;
        let Decision::Rewrite {
            body: forward,
            plan,
        } = inspect(body, &policy())
        else {
            panic!()
        };
        assert_eq!(
            forward, br#"[{"id":1,"method":"eth_chainId"},{"id":3, "method":"eth_blockNumber"}]"#,
            "forwarded elements keep their bytes"
        );
        // The backend answers in another order.
        let backend = br#"[{"jsonrpc":"2.0","id":3,"result":"0x10"},{"jsonrpc":"2.0","id":1,"result":"0x1"}]"#;
        let merged = merge(&plan, backend).unwrap();
        assert_eq!(ids(&merged), [json!(1), json!(2), json!(3)]);
        let merged: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(merged[1]["error"]["code"], METHOD_DENIED);
        assert_eq!(merged[2]["result"], "0x10");
        assert_eq!(merge(&plan, b"{}"), None);
    }

    #[test]
    fn notifications_get_no_answer_and_the_rest_are_complete() {
        // A permitted notification, a denied notification, a denied call, a permitted call.
        let body = br#"[{"method":"eth_chainId"},{"method":"admin_peers"},{"id":"d","method":"debug_x"},{"id":9,"method":"eth_call"}]"#;
        let roomy = MethodPolicy {
            max_batch: 10,
            ..policy()
        };
        let Decision::Rewrite {
            body: forward,
            plan,
        } = inspect(body, &roomy)
        else {
            panic!()
        };
        assert_eq!(
            forward,
            br#"[{"method":"eth_chainId"},{"id":9,"method":"eth_call"}]"#
        );
        // The backend answers only the call.
        let merged = merge(&plan, br#"[{"jsonrpc":"2.0","id":9,"result":"0x"}]"#).unwrap();
        assert_eq!(ids(&merged), [json!("d"), json!(9)]);
        // A call the node left unanswered is answered all the same.
        let merged = merge(&plan, b"[]").unwrap();
        assert_eq!(ids(&merged), [json!("d"), json!(9)]);
        assert!(String::from_utf8_lossy(&merged).contains(&NO_ANSWER.to_string()));
        // Only notifications forwarded: the backend's empty answer, the gateway's errors.
        let Decision::Rewrite { plan, .. } = inspect(
            br#"[{"method":"eth_chainId"},{"id":1,"method":"admin_x"}]"#,
            &policy(),
        ) else {
            panic!()
        };
        assert_eq!(ids(&merge(&plan, b"").unwrap()), [json!(1)]);
        // Nothing expects an answer: no body at all, never an empty array.
        assert_eq!(
            inspect(br#"[{"method":"admin_x"}]"#, &policy()),
            Decision::Answer(Vec::new())
        );
        // An answer the plan does not know is kept, not dropped.
        let merged = merge(
            &[Slot::Forwarded("1".into())],
            br#"[{"id":null,"error":{}},{"id":1}]"#,
        );
        assert_eq!(ids(&merged.unwrap()), [json!(1), Value::Null]);
    }

    #[test]
    fn batch_limits_and_all_denied() {
        let big = br#"[{"method":"a","id":1},{"method":"b","id":2},{"method":"c","id":3},{"method":"d","id":4}]"#;
        let Decision::Answer(body) = inspect(big, &policy()) else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&body).contains("at most 3"));
        let Decision::Answer(body) = inspect(br#"[{"id":7,"method":"admin_a"},5]"#, &policy())
        else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["id"], 7);
        assert_eq!(v[1]["error"]["code"], INVALID_REQUEST);
        let Decision::Answer(body) = inspect(b"[]", &policy()) else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&body).contains("empty batch"));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A small deterministic fuzz: every prefix and byte flip of some requests.
        let seeds: [&[u8]; 3] = [
            br#"[{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":"0x1"},"latest"]},{"id":2,"method":"admin_x"}]"#,
            br#"{"id":"a\"b","method":"eth_getLogs","params":[[[[[[1]]]]]]}"#,
            "{\"method\":\"é\u{1F600}\",\"id\":null}".as_bytes(),
        ];
        for seed in seeds {
            for end in 0..=seed.len() {
                let _ = inspect(&seed[..end], &policy());
            }
            for i in 0..seed.len() {
                for flip in [0x00u8, 0x22, 0x5c, 0x80, 0xff] {
                    let mut bytes = seed.to_vec();
                    bytes[i] = flip;
                    let _ = inspect(&bytes, &policy());
                    let _ = merge(&[Slot::Forwarded("1".into())], &bytes);
                }
            }
        }
        let deep = "[".repeat(100_000);
        let _ = inspect(deep.as_bytes(), &policy());
    }
}
