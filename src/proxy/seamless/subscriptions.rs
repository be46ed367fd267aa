//! What a seamless WebSocket session carries from one backend to the next: the client's
//! subscriptions (their ids, parameters and how far each got), its requests in flight, and the
//! rules that keep a notification from reaching the client twice. No I/O: the session loop
//! ([`super::websocket`]) feeds it the messages of both sides and carries out what it returns.
//!
//! Each message is read once, without a tree ([`crate::jsonrpc`]): its `method`, `id` and
//! `params` (for answers `result`, for notifications `params.subscription` and `params.result`)
//! are taken by the key rule the nodes use (any case; the last of two keys wins), the same rule
//! the method policy judges by. Every request goes to the backend under an id of the gateway's
//! own (a number put into the client's bytes in place of its id), so that answers are matched
//! whatever ids the client uses and the gateway's own calls never collide with them; the answer
//! goes back with the client's id put into the node's bytes. Nothing else is written again: the
//! client gets the node's bytes, keys in the node's order. Subscription ids are the first
//! backend's; after a move the new backend's ids are mapped to them both ways (notifications out,
//! `eth_unsubscribe` in). A message without a method is not a request (the node would ignore one
//! shaped like an answer, and its id would wait forever): the gateway answers it with an
//! invalid-request error (-32600) and the node sees nothing of it.
//!
//! Memory is counted in the bytes the state holds ([`SessionState::held_bytes`]) and bounded:
//! - all of it within one budget, [`MAX_SESSION_BYTES`]: the session stops reading the client at
//!   [`MAX_IN_FLIGHT`] requests or past that budget (so it holds at most the budget and one
//!   client message);
//! - the requests in flight, with the client's ids (as the client wrote them) and the requests
//!   kept to send again;
//! - the subscriptions' parameters, kept to create them again: [`MAX_SUBSCRIPTION_BYTES`] and
//!   [`MAX_SUBSCRIPTIONS`] (past either, an `eth_subscribe` is refused);
//! - per `logs` subscription the logs delivered in the last blocks, as the node's bytes, which is
//!   what a duplicate or a reorg across a switch is judged against: at most the pool's gap limit
//!   in blocks, and [`MAX_REMEMBERED_LOG_BYTES`] for the session, the newest block included
//!   (see [`LogMemory`] for a block larger than its share);
//! - the heads seen ([`HEADS_SEEN`]), and the notifications the session loop holds during a move
//!   ([`SessionState::set_waiting`]).
//!
//! # The invariant: what the client was given against the backend's chain
//!
//! The session keeps, beside the subscriptions, four records; each rests on what the client
//! was actually given or on blocks a backend sent, never on a backend's claim (an
//! `eth_blockNumber` answer is checked against the blocks before a move uses it,
//! [`super::carry::survey`]):
//!
//! - **the heads given**, per `newHeads` subscription (the last [`HEADS_GIVEN`]): the client's
//!   chain as its heads built it;
//! - **the heads seen** (the last [`HEADS_SEEN`]), from the gateway's own `newHeads`, the
//!   client's, and the blocks a move fetched: the session's record of the backend's chain, each
//!   marked with the move that last saw it;
//! - **the resume point**, per `logs` subscription: the first block whose logs may not all have
//!   reached the client (after a move, never above the new backend's head + 1 where the chains
//!   part);
//! - **the remembered logs**, per `logs` subscription: every log the client holds from a block
//!   on (blocks more than the pool's `max_gap_blocks` below a move's head, or past the byte
//!   bound, are forgotten, and no log of a forgotten block is sent again).
//!
//! Let *the final chain* be the chain of the backend the session is on, as that backend has it
//! after the messages it sent so far have passed (a move included), and *the window* the blocks
//! from `max_gap_blocks` below the highest head the session's backends reached up to the final
//! chain's head (the records reach no further back). Then, after every message and every move:
//!
//! 1. **Heads.** Read as a node's `newHeads` stream, where a head at or below the last replaces
//!    the client's heads from its number on (a reorg report, as a node sends one; never the
//!    same block twice), the heads the client got are strictly increasing with no gap, their
//!    last at or above the final chain's head, and every one of them in the window, up to that
//!    head, is the final chain's block. Heads are promised from the first one the client got.
//! 2. **Logs.** Counting a `removed: true` as taking away the log it names (and only a log the
//!    client holds), every log of the final chain in the window that matches a subscription's
//!    filter, from the block after the head when the subscription was made, is held by the
//!    client exactly once.
//! 3. **No orphans.** No log the client holds is of a block in the window, at or below the final
//!    chain's head, that the final chain does not have. (Blocks above its head are not decided:
//!    a head of the new backend's at their number tells, and the logs of the blocks it orphans
//!    go back then.)
//!
//! `invariant_tests` checks this after every step of generated sessions: reorgs before, at and
//! after a move, backends behind and ahead, quiet filters, wrong `eth_blockNumber` answers.

use crate::jsonrpc::policy::{INVALID_REQUEST, PARSE_ERROR};
use crate::jsonrpc::{self, Message, Object, Shape};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::size_of;

/// Requests a session may have waiting for an answer; past it the client is not read until
/// answers come.
pub const MAX_IN_FLIGHT: usize = 1024;

/// One memory budget per session: the bytes its state holds ([`SessionState::held_bytes`]: the
/// requests in flight with the client's ids, the requests kept to send again, the
/// subscriptions, the remembered logs, the heads seen, and the new backend's notifications that
/// wait during a move). Past it the client is not read until answers come; the logs
/// ([`MAX_REMEMBERED_LOG_BYTES`]) and subscriptions ([`MAX_SUBSCRIPTION_BYTES`]) are bounded
/// well within it, so the requests in flight always have at least 7 MiB.
pub const MAX_SESSION_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of delivered logs remembered per session, shared by its `logs` subscriptions.
pub const MAX_REMEMBERED_LOG_BYTES: usize = 8 * 1024 * 1024;

/// Subscriptions one session may hold: each is created again, and its gap filled, on every move.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Bytes of `eth_subscribe` parameters one session may hold (a `logs` filter can be long).
pub const MAX_SUBSCRIPTION_BYTES: usize = 1024 * 1024;

/// What an `eth_subscribe` past [`MAX_SUBSCRIPTIONS`] or [`MAX_SUBSCRIPTION_BYTES`] becomes: a
/// method no node has, so that the node's error answers it in its place (in a batch too).
pub const TOO_MANY_SUBSCRIPTIONS: &str = "ssv_ha_too_many_subscriptions_per_session";

/// What an element of a batch without a method becomes on its way to the node: a call of a
/// method no node has (the node never sees the client's id), whose answer the gateway replaces
/// with its own invalid-request error.
pub const NOT_A_REQUEST: &str = "ssv_ha_not_a_request";

/// A JSON-RPC error code for a request the gateway answers itself after a move: the server
/// error range (-32000 to -32099) of JSON-RPC 2.0.
pub const NOT_REPEATED: i64 = -32003;

/// Heads remembered per session (number and hash), to find where a new backend's chain parts
/// from the one the client had.
pub const HEADS_SEEN: usize = 256;

/// The longest method name kept for an error message.
const METHOD_NAME_KEPT: usize = 128;

/// Methods that read and change nothing: sent again on the next backend when theirs failed
/// before answering. Everything else (a transaction, a signature, a filter created on the old
/// node) is answered with [`NOT_REPEATED`] instead.
const SAFE_TO_REPEAT: [&str; 21] = [
    "eth_get",
    "eth_call",
    "eth_estimateGas",
    "eth_createAccessList",
    "eth_chainId",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_feeHistory",
    "eth_syncing",
    "eth_protocolVersion",
    "eth_simulateV1",
    "eth_subscribe",
    "net_",
    "web3_",
    "txpool_",
    "debug_trace",
    "trace_",
    super::super::websocket::DENIED_PLACEHOLDER,
    NOT_A_REQUEST,
];

/// Whether a request may go to the next backend when its own failed before answering. Each entry
/// is a prefix: `net_` is a namespace, `eth_get` covers eth_getBalance, eth_getLogs and the rest.
pub fn safe_to_repeat(method: &str) -> bool {
    SAFE_TO_REPEAT.iter().any(|safe| method.starts_with(safe))
}

/// A subscription the client holds.
#[derive(Debug)]
struct Subscription {
    /// The `eth_subscribe` parameters as the client wrote them, to create it again elsewhere.
    params: Option<Box<RawValue>>,
    /// Its id on the current backend.
    backend_id: String,
    progress: Progress,
}

impl Subscription {
    /// Bytes it holds, its client id's included (the log memory apart).
    fn bytes(&self, client_sub: &str) -> usize {
        size_of::<(String, Subscription)>()
            + client_sub.len() * 2
            + self.backend_id.len() * 2
            + self.params.as_ref().map_or(0, |p| p.get().len())
    }
}

/// How far a subscription got, for the gap fill and for dropping repeats.
#[derive(Debug)]
enum Progress {
    Heads {
        /// The heads delivered, oldest first (the last [`HEADS_GIVEN`]), as the client's chain:
        /// a head the client has (number and hash) is a repeat and dropped; one at or below the
        /// last under another hash is a reorg report, passed as a node sends one, and replaces
        /// the client's heads from its number on.
        given: VecDeque<(u64, String)>,
    },
    Logs {
        /// The first block whose logs may not all have reached the client.
        resume_from: Option<u64>,
        delivered: LogMemory,
    },
    /// `newPendingTransactions`, `syncing`: created again, nothing to fill.
    Other,
}

/// The logs a subscription delivered in its last blocks, oldest block first, each as the node
/// sent it; `bytes` counts what is held (the texts, the hashes and the entries).
///
/// It holds at most its share of [`MAX_REMEMBERED_LOG_BYTES`], the newest block included: past
/// it the oldest blocks are forgotten. When the newest block alone is over the share, its latest
/// logs keep only their key (block, hash, index: still never sent twice, but taken back with a
/// `removed: true` notification that carries only those fields), and past that they are not
/// remembered at all (after a move the gap fill may send them again).
#[derive(Debug, Default)]
struct LogMemory {
    blocks: VecDeque<DeliveredBlock>,
    bytes: usize,
    /// From this block on, the memory holds every log the client has of the subscription (it
    /// starts at 0 and moves up as old blocks are forgotten): a log below it may be one the
    /// client has, and is not sent.
    covers_from: u64,
    /// The subscription's first block (the head when it was made): logs of earlier blocks do
    /// not reach the client.
    starts_at: u64,
}

#[derive(Debug)]
struct DeliveredBlock {
    number: u64,
    hash: Box<str>,
    /// `(logIndex, the log as delivered)`; `None`: only its key is kept.
    logs: Vec<(u64, Option<Box<str>>)>,
    /// The move it was remembered in.
    epoch: u64,
}

/// Bytes one remembered log takes besides its text.
const LOG_ENTRY: usize = size_of::<(u64, Option<Box<str>>)>();

impl DeliveredBlock {
    /// Bytes it takes besides its logs.
    fn overhead(&self) -> usize {
        size_of::<DeliveredBlock>() + self.hash.len()
    }
}

/// One request the backend has not answered yet.
#[derive(Debug)]
struct InFlight {
    /// The client's id as the client wrote it, put back on the answer.
    client_id: Box<str>,
    /// The method's name (the first [`METHOD_NAME_KEPT`] bytes), for an error message.
    method: Box<str>,
    /// The request as sent to the backend (with the gateway's id), to send it again; kept only
    /// when it is safe to repeat.
    sent: Option<Box<[u8]>>,
    kind: CallKind,
    /// The batch it came in, by the batch's first gateway id.
    batch: Option<u64>,
}

impl InFlight {
    /// Bytes it holds, as counted in [`SessionState::in_flight_bytes`].
    fn bytes(&self) -> usize {
        size_of::<(u64, InFlight)>()
            + self.client_id.len()
            + self.method.len()
            + self.sent.as_ref().map_or(0, |s| s.len())
            + match &self.kind {
                CallKind::Subscribe { params } => params.as_ref().map_or(0, |p| p.get().len()),
                CallKind::Unsubscribe { client_sub } => client_sub.len(),
                CallKind::Plain | CallKind::NotARequest => 0,
            }
    }
}

#[derive(Debug)]
enum CallKind {
    Plain,
    Subscribe {
        params: Option<Box<RawValue>>,
    },
    Unsubscribe {
        client_sub: String,
    },
    /// A batch element without a method, sent as [`NOT_A_REQUEST`]: answered by the gateway.
    NotARequest,
}

/// What the gateway knows of a log from a notification or `eth_getLogs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogKey {
    pub block: u64,
    pub hash: String,
    pub index: u64,
    pub removed: bool,
}

impl LogKey {
    /// The key of a log object (its text); `None` when it lacks one of the fields.
    pub fn read(log: &str) -> Option<LogKey> {
        let log = Object::read(log)?;
        Some(LogKey {
            block: hex_u64_raw(log.get("blockNumber")?)?,
            hash: jsonrpc::string(log.get("blockHash")?)?.to_ascii_lowercase(),
            index: hex_u64_raw(log.get("logIndex")?)?,
            removed: log.get("removed").is_some_and(|r| r.get() == "true"),
        })
    }
}

/// A number as nodes write it: `0x`-prefixed hex.
pub fn hex_u64(value: &Value) -> Option<u64> {
    let text = value.as_str()?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// [`hex_u64`] of a raw value.
fn hex_u64_raw(raw: &RawValue) -> Option<u64> {
    let text = jsonrpc::string(raw)?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

pub fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

/// What a subscription is of, for the session loop's gap fill.
#[derive(Debug, Clone, PartialEq)]
pub enum Topic {
    Heads,
    Logs { filter: Value },
    Other,
}

/// Where a subscription's gap starts after a move.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub client_sub: String,
    pub topic: Topic,
    /// The first block the client may lack: heads after the last delivered, logs from the first
    /// block not known complete. `None`: nothing delivered yet, nothing to fill.
    pub from: Option<u64>,
}

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

/// What becomes of one message object of the backend's.
enum Pass {
    /// The client does not see it.
    Drop,
    /// The client gets it as the node sent it.
    Keep,
    /// The client gets these bytes (an id put back).
    Bytes(Vec<u8>),
}

/// The client's JSON-RPC session.
#[derive(Debug, Default)]
pub struct SessionState {
    next_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    in_flight_bytes: usize,
    /// Subscriptions by the id the client knows.
    subs: BTreeMap<String, Subscription>,
    /// What they hold, their log memory apart.
    subs_bytes: usize,
    /// Client id by the current backend's id.
    by_backend: HashMap<String, String>,
    /// Client subscription ids handed out, so that a new one never repeats an old one.
    issued: u64,
    /// The gateway's own calls in the session's traffic: the head when a `logs` subscription
    /// began, by call id (the subscription's client id).
    started: HashMap<u64, String>,
    /// Those calls, to send.
    requests: Vec<Vec<u8>>,
    /// The gateway's own `newHeads` subscription on the backend, made with the first `logs`
    /// subscription and never shown to the client: it tells how far the logs got (a quiet
    /// filter's gap starts at the last head, not at the subscription's start) and which blocks
    /// the client's chain had (for a reorg across a switch). Its id, its call while made, and
    /// whether the session needs it.
    hidden: Option<String>,
    hidden_call: Option<u64>,
    wants_hidden: bool,
    /// The last heads the session saw (number, hash), oldest first.
    heads_seen: VecDeque<(u64, String, u64)>,
    /// Moves so far: each head seen and block of delivered logs is marked with the move it was
    /// last seen in, so that the next move knows which of them a match of hashes vouches for
    /// (a backend behind the session's heads leaves those above its head unchecked).
    epoch: u64,
    /// Notifications the gateway makes that go to the client before the current message (logs
    /// taken back).
    extra: Vec<Vec<u8>>,
    /// Bytes the session loop holds for the session (notifications waiting during a move).
    waiting: usize,
}

/// Heads remembered per `newHeads` subscription (number and hash): what the client's chain is,
/// to tell a repeat from a reorg report and to find where a new backend's chain parts from it.
pub const HEADS_GIVEN: usize = 64;

impl SessionState {
    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes the requests in flight hold: the client's ids, the method names and the requests
    /// kept to send again.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Every byte the session's state holds: the requests in flight, the subscriptions, the
    /// remembered logs, the heads seen and what the session loop counted with
    /// [`SessionState::set_waiting`]. This is what counts against the listener's
    /// `max_held_bytes`, with the client's message being read.
    pub fn held_bytes(&self) -> usize {
        let logs: usize = self
            .subs
            .values()
            .map(|s| match &s.progress {
                Progress::Logs { delivered, .. } => delivered.bytes,
                _ => 0,
            })
            .sum();
        let heads: usize = self
            .heads_seen
            .iter()
            .map(|(_, hash, _)| size_of::<(u64, String, u64)>() + hash.len())
            .sum();
        self.in_flight_bytes() + self.subs_bytes + logs + heads + self.waiting
    }

    /// The bytes the session loop holds for this session now (the new backend's notifications
    /// waiting during a move), counted in [`SessionState::held_bytes`].
    pub fn set_waiting(&mut self, bytes: usize) {
        self.waiting = bytes;
    }

    /// The gateway's own calls to send to the backend now.
    pub fn take_requests(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.requests)
    }

    /// A fresh id of the gateway's, for its own calls.
    pub fn own_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

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
        let kind = match name {
            "eth_subscribe" => {
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
            "eth_unsubscribe" => {
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
            _ => CallKind::Plain,
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

    /// Takes a request out of those in flight.
    fn answered(&mut self, id: u64) -> Option<InFlight> {
        let call = self.in_flight.remove(&id)?;
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(call.bytes());
        Some(call)
    }

    /// The backend's message as it goes to the client, if the client is to see it (not a
    /// notification it has, or one for a subscription it dropped, or the gateway's own): the
    /// node's bytes with only an id or a subscription id put back.
    ///
    /// Before it, the notifications the gateway makes itself (logs of a block the new backend
    /// replaced, taken back).
    pub fn backend_message(&mut self, message: &[u8]) -> Vec<Vec<u8>> {
        self.waiting = self.waiting.saturating_sub(message.len());
        let out = self.backend_message_alone(message);
        let mut all = std::mem::take(&mut self.extra);
        all.extend(out);
        all
    }

    fn backend_message_alone(&mut self, message: &[u8]) -> Option<Vec<u8>> {
        let Ok(text) = std::str::from_utf8(message) else {
            return Some(message.to_vec());
        };
        match Message::read(text) {
            Ok(Shape::Object(object)) => match self.answer_or_notification(text, &object) {
                Pass::Drop => None,
                Pass::Keep => Some(message.to_vec()),
                Pass::Bytes(bytes) => Some(bytes),
            },
            Ok(Shape::Array(items)) if !items.is_empty() => {
                let mut out: Vec<Cow<[u8]>> = Vec::with_capacity(items.len());
                for raw in &items {
                    let pass = match Message::element(raw) {
                        Some(object) => self.answer_or_notification(raw.get(), &object),
                        None => Pass::Keep,
                    };
                    match pass {
                        Pass::Drop => {}
                        Pass::Keep => out.push(Cow::Borrowed(raw.get().as_bytes())),
                        Pass::Bytes(bytes) => out.push(Cow::Owned(bytes)),
                    }
                }
                if out.is_empty() {
                    return None;
                }
                let parts: Vec<&[u8]> = out.iter().map(|s| s.as_ref()).collect();
                Some(join_array(&parts))
            }
            _ => Some(message.to_vec()),
        }
    }

    /// One object of the backend's (`text`, read as `object`).
    fn answer_or_notification(&mut self, text: &str, object: &Message) -> Pass {
        let notification = object
            .method
            .is_some_and(|m| jsonrpc::string(m).as_deref() == Some("eth_subscription"));
        if notification {
            return self.notification(text, object);
        }
        let gateway_id = object
            .id
            .and_then(|id| serde_json::from_str::<u64>(id.get()).ok());
        let result = object.result;
        if gateway_id.is_some() && gateway_id == self.hidden_call {
            self.hidden_call = None;
            self.hidden = result.and_then(jsonrpc::string).map(Cow::into_owned);
            return Pass::Drop;
        }
        if let Some(client_sub) = gateway_id.and_then(|id| self.started.remove(&id)) {
            // The head when a `logs` subscription began: its gap can start no earlier. It is
            // the number of a block the backend sent, not an `eth_blockNumber` claim: one wrong
            // answer would hold the resume point above the chain for the rest of the session.
            let head = result
                .and_then(|block| Object::read(block.get()))
                .and_then(|block| block.get("number"))
                .and_then(hex_u64_raw);
            if let (Some(head), Some(sub)) = (head, self.subs.get_mut(&client_sub)) {
                if let Progress::Logs {
                    resume_from,
                    delivered,
                } = &mut sub.progress
                {
                    *resume_from = Some(resume_from.map_or(head, |r| r.max(head)));
                    // Logs of earlier blocks are not the subscription's (a backend behind, on
                    // another branch, importing them after a move).
                    let first = delivered
                        .blocks
                        .front()
                        .map_or(head, |b| b.number.min(head));
                    delivered.starts_at = first;
                }
            }
            return Pass::Drop;
        }
        let (Some(id), Some(call)) = (object.id, gateway_id.and_then(|id| self.answered(id)))
        else {
            // Not an answer to a request of the client's (one of the gateway's own that came
            // late, or the backend's answer to something it could not read): passed as is.
            return Pass::Keep;
        };
        let mut edits: Vec<(&RawValue, Vec<u8>)> = Vec::with_capacity(2);
        match call.kind {
            CallKind::Plain => {}
            CallKind::NotARequest => return Pass::Bytes(call.client_id.as_bytes().to_vec()),
            CallKind::Subscribe { params } => {
                if let Some((raw, backend_sub)) =
                    result.and_then(|r| Some((r, jsonrpc::string(r)?.into_owned())))
                {
                    let client_sub = self.issue(&backend_sub);
                    if client_sub != backend_sub {
                        edits.push((raw, jsonrpc::json_string(&client_sub).into_bytes()));
                    }
                    self.subscribed(client_sub, backend_sub, params);
                }
            }
            CallKind::Unsubscribe { client_sub } => {
                if result.is_some_and(|r| r.get() == "true") {
                    self.drop_sub(&client_sub);
                }
            }
        }
        edits.push((id, call.client_id.as_bytes().to_vec()));
        let spliced: Vec<(&RawValue, &[u8])> =
            edits.iter().map(|(at, b)| (*at, b.as_slice())).collect();
        Pass::Bytes(jsonrpc::splice(text, &spliced))
    }

    /// An `eth_subscription` notification of the backend's.
    fn notification(&mut self, text: &str, object: &Message) -> Pass {
        let Some(params) = object.params.and_then(|p| Object::read(p.get())) else {
            return Pass::Drop;
        };
        let (Some(sub), Some(result)) = (params.get("subscription"), params.get("result")) else {
            return Pass::Drop;
        };
        let Some(backend_sub) = jsonrpc::string(sub) else {
            return Pass::Drop;
        };
        if self.hidden.as_deref() == Some(backend_sub.as_ref()) {
            if let Some((number, hash)) = head_of(result) {
                self.saw_head(number, &hash);
            }
            return Pass::Drop;
        }
        let Some(client_sub) = self.by_backend.get(backend_sub.as_ref()).cloned() else {
            return Pass::Drop;
        };
        if !self.admit(&client_sub, result) {
            return Pass::Drop;
        }
        if client_sub == backend_sub {
            return Pass::Keep;
        }
        let id = jsonrpc::json_string(&client_sub);
        Pass::Bytes(jsonrpc::splice(text, &[(sub, id.as_bytes())]))
    }

    /// A subscription the backend made for the client: bound, and for the first `logs` one the
    /// gateway's own calls that follow it.
    fn subscribed(
        &mut self,
        client_sub: String,
        backend_sub: String,
        params: Option<Box<RawValue>>,
    ) {
        let logs = params
            .as_deref()
            .and_then(jsonrpc::array)
            .and_then(|p| {
                p.first()
                    .and_then(|k| jsonrpc::string(k))
                    .map(|k| k == "logs")
            })
            .unwrap_or(false);
        self.bind(client_sub.clone(), backend_sub, params);
        if !logs {
            return;
        }
        self.wants_hidden = true;
        if self.hidden.is_none() && self.hidden_call.is_none() {
            let id = self.own_id();
            self.hidden_call = Some(id);
            self.requests.push(
                json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": ["newHeads"]})
                    .to_string()
                    .into_bytes(),
            );
        }
        // Blocks from the current head on reach the subscription: a gap fill starts there at
        // the earliest.
        let id = self.own_id();
        self.started.insert(id, client_sub);
        self.requests.push(
            json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBlockByNumber", "params": ["latest", false]})
                .to_string()
                .into_bytes(),
        );
    }

    /// The id the client gets for a new subscription: the backend's, unless the client already
    /// holds that id (from an earlier backend).
    fn issue(&mut self, backend_sub: &str) -> String {
        if !self.subs.contains_key(backend_sub) {
            return backend_sub.to_string();
        }
        loop {
            self.issued += 1;
            let id = format!("0x55{:030x}", self.issued);
            if !self.subs.contains_key(&id) {
                return id;
            }
        }
    }

    fn bind(&mut self, client_sub: String, backend_sub: String, params: Option<Box<RawValue>>) {
        let kind = params.as_deref().and_then(jsonrpc::array).and_then(|p| {
            p.first()
                .and_then(|k| jsonrpc::string(k))
                .map(Cow::into_owned)
        });
        let progress = match kind.as_deref() {
            Some("newHeads") => Progress::Heads {
                given: VecDeque::new(),
            },
            Some("logs") => Progress::Logs {
                resume_from: None,
                delivered: LogMemory::default(),
            },
            _ => Progress::Other,
        };
        let logs = matches!(progress, Progress::Logs { .. });
        self.by_backend
            .insert(backend_sub.clone(), client_sub.clone());
        let sub = Subscription {
            params,
            backend_id: backend_sub,
            progress,
        };
        self.subs_bytes += sub.bytes(&client_sub);
        if let Some(old) = self.subs.insert(client_sub.clone(), sub) {
            self.subs_bytes = self.subs_bytes.saturating_sub(old.bytes(&client_sub));
        }
        if logs {
            // One more shares the session's log memory: each holds its smaller share now.
            let share = self.log_share();
            for sub in self.subs.values_mut() {
                if let Progress::Logs { delivered, .. } = &mut sub.progress {
                    delivered.fit(share);
                }
            }
        }
    }

    fn drop_sub(&mut self, client_sub: &str) {
        if let Some(sub) = self.subs.remove(client_sub) {
            self.subs_bytes = self.subs_bytes.saturating_sub(sub.bytes(client_sub));
            self.by_backend.remove(&sub.backend_id);
        }
    }

    /// Each `logs` subscription's part of [`MAX_REMEMBERED_LOG_BYTES`].
    fn log_share(&self) -> usize {
        let logs_subs = self
            .subs
            .values()
            .filter(|s| matches!(s.progress, Progress::Logs { .. }))
            .count();
        MAX_REMEMBERED_LOG_BYTES / logs_subs.max(1)
    }

    /// Whether a notification's result (its text) goes to the client; records how far the
    /// subscription got.
    fn admit(&mut self, client_sub: &str, result: &RawValue) -> bool {
        // The session's log memory, shared by its `logs` subscriptions.
        let log_bytes = self.log_share();
        let epoch = self.epoch;
        let Some(sub) = self.subs.get_mut(client_sub) else {
            return false;
        };
        let (head, hash) = match &mut sub.progress {
            Progress::Heads { given } => {
                let Some(object) = Object::read(result.get()) else {
                    return true;
                };
                let Some(number) = object.get("number").and_then(hex_u64_raw) else {
                    return true;
                };
                let hash = object
                    .get("hash")
                    .and_then(jsonrpc::string)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let mine = given.iter().find(|(n, _)| *n == number);
                if mine.is_some_and(|(_, h)| *h == hash) {
                    // The client has it (a new backend catching up, a fill's repeat).
                    return false;
                }
                let below = given.front().is_some_and(|(first, _)| number < *first);
                if mine.is_none() && below {
                    // Below the client's first head: a reorg report only where the session
                    // knew another block (else a backend behind it catching up).
                    let other = self
                        .heads_seen
                        .iter()
                        .any(|(n, h, _)| *n == number && *h != hash);
                    if !other {
                        return false;
                    }
                }
                // At or below the last: a reorg report, which replaces the client's heads from
                // there.
                while given.back().is_some_and(|(n, _)| *n >= number) {
                    given.pop_back();
                }
                given.push_back((number, hash.clone()));
                if given.len() > HEADS_GIVEN {
                    given.pop_front();
                }
                (number, hash)
            }
            Progress::Logs {
                resume_from,
                delivered,
            } => {
                let Some(key) = LogKey::read(result.get()) else {
                    return true;
                };
                if key.removed {
                    if delivered.has(&key) {
                        delivered.forget(&key);
                        return true;
                    }
                    // Not a log the memory holds: one the gateway took back already (a head of
                    // the new chain came first), one it never sent, or one of a block it forgot
                    // (more than the gap limit below the head). Removing a log the client may
                    // not hold would break its count; the forgotten are outside the window.
                    return false;
                }
                if key.block < delivered.starts_at {
                    return false;
                }
                if delivered.has(&key) || key.block < delivered.covers_from {
                    // The client has it, or may: the memory no longer covers that block (more
                    // than the gap limit below the head), and a log is never sent twice.
                    return false;
                }
                // A block at a number the client has under another hash (a backend after a
                // switch, on another branch, that did not take them back): the client's logs
                // of it and of later blocks go back first, as a node does on a reorg.
                let replaced = delivered.remember(&key, result.get(), log_bytes, epoch);
                for log in replaced {
                    self.extra.push(taken_back(client_sub, log));
                }
                *resume_from = Some(resume_from.map_or(key.block, |r| r.max(key.block)));
                return true;
            }
            Progress::Other => return true,
        };
        if !hash.is_empty() {
            self.saw_head(head, &hash);
        }
        true
    }

    /// A head of the backend's chain (the gateway's own `newHeads`, the client's, or a gap
    /// fill's): remembered, and the logs gap moves past the blocks before it.
    ///
    /// A head at a number where the session knew another block is a reorg: the blocks it knew
    /// from there on are orphaned. Logs the client has of an orphaned block, or of another block
    /// at this number, go back (`removed: true`, newest first) as a node sends them on a reorg,
    /// and the logs gap starts at this number again. (A block's logs may come before its head:
    /// logs of blocks the session never saw as heads are left to the next head at their number.)
    fn saw_head(&mut self, number: u64, hash: &str) {
        let hash = hash.to_ascii_lowercase();
        let orphaned = self.remember_head(number, &hash);
        // A node sends a block's logs as it imports the block, before the next head: the logs of
        // the blocks before this head have all been sent. The gap starts one block earlier still,
        // as a margin (what the client has is not sent twice).
        let resume = number.saturating_sub(1);
        for (client_sub, sub) in self.subs.iter_mut() {
            let Progress::Logs {
                resume_from,
                delivered,
            } = &mut sub.progress
            else {
                continue;
            };
            let back = delivered.take_back_where(|block| {
                (block.number == number && *block.hash != *hash)
                    || orphaned
                        .iter()
                        .any(|(n, h)| *n == block.number && **h == *block.hash)
            });
            if !orphaned.is_empty() || !back.is_empty() {
                *resume_from = Some(resume_from.map_or(number, |r| r.min(number)));
            }
            for log in back {
                self.extra.push(taken_back(client_sub, log));
            }
            *resume_from = Some(resume_from.map_or(resume, |r| r.max(resume)));
        }
    }

    /// Records a head of the chain; returns the heads it orphaned (those from its number on,
    /// when the session knew another block there). A number the session knew nothing of (below
    /// its heads, as from a backend behind it) takes its place and orphans nothing.
    fn remember_head(&mut self, number: u64, hash: &str) -> Vec<(u64, String)> {
        let at = self.heads_seen.partition_point(|(n, ..)| *n < number);
        let mut orphaned = Vec::new();
        let epoch = self.epoch;
        match self.heads_seen.get_mut(at) {
            Some((n, h, seen)) if *n == number && h == hash => {
                *seen = epoch;
                return orphaned;
            }
            Some((n, ..)) if *n == number => {
                orphaned.extend(self.heads_seen.drain(at..).map(|(n, h, _)| (n, h)));
                self.heads_seen.push_back((number, hash.to_string(), epoch));
            }
            _ => self
                .heads_seen
                .insert(at, (number, hash.to_string(), epoch)),
        }
        while self.heads_seen.len() > HEADS_SEEN {
            self.heads_seen.pop_front();
        }
        orphaned
    }

    /// After a move: blocks of the new backend's chain (oldest first), as the session's heads.
    pub fn saw_chain(&mut self, blocks: &[(u64, String)]) {
        for (number, hash) in blocks {
            self.remember_head(*number, &hash.to_ascii_lowercase());
        }
    }

    /// After a move: the heads the session saw from block `number` on are not the new
    /// backend's chain.
    pub fn forget_heads_from(&mut self, number: u64) {
        while self.heads_seen.back().is_some_and(|(n, ..)| *n >= number) {
            self.heads_seen.pop_back();
        }
    }

    /// The heads the session saw, newest first.
    #[cfg(test)]
    pub fn heads_seen(&self) -> Vec<(u64, String)> {
        self.heads_seen
            .iter()
            .rev()
            .map(|(n, h, _)| (*n, h.clone()))
            .collect()
    }

    /// [`Self::heads_seen`] with the move each was last seen in.
    pub fn heads_record(&self) -> Vec<(u64, String, u64)> {
        self.heads_seen.iter().rev().cloned().collect()
    }

    /// A `logs` subscription's blocks with delivered logs, newest first, with the move each was
    /// remembered in.
    pub fn delivered_record(&self, client_sub: &str) -> Vec<(u64, String, u64)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Logs { delivered, .. }) => delivered
                .blocks
                .iter()
                .rev()
                .map(|b| (b.number, b.hash.to_string(), b.epoch))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A move begins to change the session: what it records from now on is the new backend's.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
    }

    /// Whether the gateway's own `newHeads` subscription is to be made on the next backend.
    pub fn wants_hidden(&self) -> bool {
        self.wants_hidden
    }

    /// Every subscription and where its gap starts, for the move to another backend.
    pub fn gaps(&self) -> Vec<Gap> {
        self.subs
            .iter()
            .map(|(client_sub, sub)| {
                let (topic, from) = match &sub.progress {
                    Progress::Heads { given } => {
                        (Topic::Heads, given.back().map(|(l, _)| l.saturating_add(1)))
                    }
                    Progress::Logs { resume_from, .. } => (
                        Topic::Logs {
                            filter: params_value(&sub.params)
                                .get(1)
                                .cloned()
                                .unwrap_or_else(|| json!({})),
                        },
                        *resume_from,
                    ),
                    Progress::Other => (Topic::Other, None),
                };
                Gap {
                    client_sub: client_sub.clone(),
                    topic,
                    from,
                }
            })
            .collect()
    }

    /// The `eth_subscribe` parameters of each subscription, to create them again.
    pub fn subscriptions(&self) -> Vec<(String, Value)> {
        self.subs
            .iter()
            .map(|(id, sub)| (id.clone(), params_value(&sub.params)))
            .collect()
    }

    /// The heads a `newHeads` subscription delivered, newest first: `(number, hash)`.
    pub fn given_heads(&self, client_sub: &str) -> Vec<(u64, String)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Heads { given }) => given.iter().rev().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Blocks of a `logs` subscription's delivered logs, newest first: `(number, hash)`.
    #[cfg(test)]
    pub fn delivered_blocks(&self, client_sub: &str) -> Vec<(u64, String)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Logs { delivered, .. }) => delivered
                .blocks
                .iter()
                .rev()
                .map(|b| (b.number, b.hash.to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The notifications that take back the logs a subscription delivered from block `number`
    /// (`removed: true`, newest first, as a node sends them on a reorg); the subscription's gap
    /// then starts at that block.
    pub fn take_back(&mut self, client_sub: &str, number: u64) -> Vec<Vec<u8>> {
        let Some(sub) = self.subs.get_mut(client_sub) else {
            return Vec::new();
        };
        let Progress::Logs {
            resume_from,
            delivered,
        } = &mut sub.progress
        else {
            return Vec::new();
        };
        let out = delivered
            .take_back_where(|b| b.number >= number)
            .into_iter()
            .map(|log| taken_back(client_sub, log))
            .collect();
        *resume_from = Some(resume_from.map_or(number, |r| r.min(number)));
        out
    }

    /// After a move: the subscriptions now live on the new backend under these ids.
    pub fn rebind(&mut self, new_ids: &[(String, String)], hidden: Option<String>) {
        self.hidden = hidden;
        self.by_backend.clear();
        for (client_sub, backend_sub) in new_ids {
            if let Some(sub) = self.subs.get_mut(client_sub) {
                self.subs_bytes = self.subs_bytes.saturating_sub(sub.bytes(client_sub));
                sub.backend_id = backend_sub.clone();
                self.subs_bytes += sub.bytes(client_sub);
                self.by_backend
                    .insert(backend_sub.clone(), client_sub.clone());
            }
        }
    }

    /// A block the gap fill delivers to a subscription: the head (for `newHeads`) or the logs
    /// (for `logs`, each checked against what the client has). Returns the notifications.
    pub fn fill(&mut self, client_sub: &str, head: Option<&Value>, logs: &[Value]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for result in head.into_iter().chain(logs) {
            let Ok(raw) = serde_json::value::to_raw_value(result) else {
                continue;
            };
            let pass = self.admit(client_sub, &raw);
            // Logs taken back go first.
            out.append(&mut self.extra);
            if pass {
                out.push(notification(client_sub, raw.get().as_bytes()));
            }
        }
        out
    }

    /// After a move's fill up to block `head` (a block the new backend has: the move checked
    /// it): the logs up to it are complete, and those of blocks more than `max_gap` below it
    /// are forgotten. Heads need nothing: the client's heads are what it was given.
    pub fn filled_to(&mut self, head: u64, max_gap: u64) {
        for sub in self.subs.values_mut() {
            if let Progress::Logs {
                resume_from,
                delivered,
            } = &mut sub.progress
            {
                let next = head.saturating_add(1);
                *resume_from = Some(resume_from.map_or(next, |r| r.max(next)));
                delivered.trim(head.saturating_sub(max_gap));
            }
        }
    }

    /// The requests in flight when the backend went: those safe to repeat, to send again on the
    /// next one (as sent, one message per request or batch), and the client's answers for the
    /// others (an error saying they were not repeated; an `eth_unsubscribe` is done, as the
    /// subscription is not created again).
    pub fn on_move(&mut self, backend: &str, repeat: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut resend = Vec::new();
        let mut answers = Vec::new();
        // The old backend will not answer the gateway's own calls, and its ids mean nothing to
        // the next one.
        self.started.clear();
        self.requests.clear();
        self.hidden = None;
        self.hidden_call = None;
        let why = if repeat {
            Unanswered::Moved
        } else {
            Unanswered::Closed
        };
        let calls = std::mem::take(&mut self.in_flight);
        self.in_flight_bytes = 0;
        let mut batches: BTreeMap<u64, Vec<(u64, InFlight)>> = BTreeMap::new();
        for (id, call) in calls {
            if let Some(batch) = call.batch {
                batches.entry(batch).or_default().push((id, call));
                continue;
            }
            match (&call.kind, &call.sent) {
                (CallKind::Unsubscribe { client_sub }, _) => {
                    // The subscription is not created again: it is gone, as asked.
                    let known = self.subs.contains_key(client_sub);
                    self.drop_sub(&client_sub.clone());
                    answers.push(
                        format!(
                            r#"{{"jsonrpc":"2.0","id":{},"result":{known}}}"#,
                            call.client_id
                        )
                        .into_bytes(),
                    );
                }
                (_, Some(sent)) if repeat => {
                    resend.push(sent.to_vec());
                    self.keep(id, call);
                }
                _ => answers.push(not_answered(&call, backend, why)),
            }
        }
        for members in batches.into_values() {
            let repeatable = repeat
                && members.iter().all(|(_, c)| {
                    c.sent.is_some() && !matches!(c.kind, CallKind::Unsubscribe { .. })
                });
            if repeatable {
                let sent: Vec<&[u8]> = members
                    .iter()
                    .filter_map(|(_, c)| c.sent.as_deref())
                    .collect();
                resend.push(join_array(&sent));
                for (id, call) in members {
                    self.keep(id, call);
                }
            } else {
                let errors: Vec<Vec<u8>> = members
                    .iter()
                    .map(|(_, c)| not_answered(c, backend, why))
                    .collect();
                let errors: Vec<&[u8]> = errors.iter().map(Vec::as_slice).collect();
                answers.push(join_array(&errors));
            }
        }
        (resend, answers)
    }

    /// Puts a request among those in flight.
    fn keep(&mut self, id: u64, call: InFlight) {
        self.in_flight_bytes += call.bytes();
        self.in_flight.insert(id, call);
    }

    /// Takes the request sent under `gateway_id` out of those in flight, with the rest of its
    /// batch, and returns the client's answer: a JSON-RPC error (`code`, `message`) under the
    /// client's id, an array of them for a batch. `None` when no request of the client's has
    /// that id (one of the gateway's own, or one answered already).
    pub fn fail_request(&mut self, gateway_id: u64, code: i64, message: &str) -> Option<Vec<u8>> {
        let call = self.answered(gateway_id)?;
        let error = |call: &InFlight| match call.kind {
            // The gateway's own answer, whatever the node did.
            CallKind::NotARequest => call.client_id.as_bytes().to_vec(),
            _ => error_answer(&call.client_id, code, message),
        };
        let Some(batch) = call.batch else {
            return Some(error(&call));
        };
        let others: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.batch == Some(batch))
            .map(|(id, _)| *id)
            .collect();
        let mut errors = vec![error(&call)];
        errors.extend(
            others
                .into_iter()
                .filter_map(|id| self.answered(id))
                .map(|c| error(&c)),
        );
        let parts: Vec<&[u8]> = errors.iter().map(Vec::as_slice).collect();
        Some(join_array(&parts))
    }
}

/// Why a request in flight on a backend the session left is answered by the gateway.
#[derive(Debug, Clone, Copy)]
enum Unanswered {
    /// The backend was taken out of rotation; the request might have taken effect.
    Moved,
    /// The backend closed the connection with the request in flight: the request may be why
    /// (an answer too large, a call that brings the node down), so it goes nowhere else.
    Closed,
}

fn not_answered(call: &InFlight, backend: &str, why: Unanswered) -> Vec<u8> {
    if matches!(call.kind, CallKind::NotARequest) {
        // The gateway's answer, whatever the backend did.
        return call.client_id.as_bytes().to_vec();
    }
    let message = match why {
        Unanswered::Moved => format!(
            "backend {backend} failed before answering {}; the gateway moved this session to another backend and did not send it again, as it may have taken effect (check, then send it again)",
            call.method
        ),
        Unanswered::Closed => format!(
            "backend {backend} closed the connection before answering {}; the gateway moved this session to another backend and did not send it again, as it may be why (an answer too large, say)",
            call.method
        ),
    };
    error_answer(&call.client_id, NOT_REPEATED, &message)
}

/// A log the client has, taken back: the notification of its `removed: true` copy.
fn taken_back(client_sub: &str, removed: Vec<u8>) -> Vec<u8> {
    notification(client_sub, &removed)
}

/// A JSON-RPC error answer under `id` (JSON text).
fn error_answer(id: &str, code: i64, message: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        jsonrpc::json_string(message)
    )
    .into_bytes()
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

/// JSON texts as one array.
fn join_array(parts: &[&[u8]]) -> Vec<u8> {
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

/// A subscription's parameters as a value (on a move: to create it again, to fill its gap).
fn params_value(params: &Option<Box<RawValue>>) -> Value {
    params
        .as_ref()
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null)
}

/// A head's number and hash, from its text.
fn head_of(head: &RawValue) -> Option<(u64, String)> {
    let head = Object::read(head.get())?;
    let number = hex_u64_raw(head.get("number")?)?;
    let hash = jsonrpc::string(head.get("hash")?)?.into_owned();
    Some((number, hash))
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

impl LogMemory {
    fn has(&self, key: &LogKey) -> bool {
        self.blocks
            .iter()
            .rev()
            .find(|b| b.number == key.block && *b.hash == *key.hash)
            .is_some_and(|b| b.logs.iter().any(|(i, _)| *i == key.index))
    }

    /// Records a delivered log (its text) within `max_bytes`; returns the `removed: true`
    /// copies of the logs of the blocks it replaces (the same number or later under another
    /// hash), which the client must have taken back, newest first.
    fn remember(&mut self, key: &LogKey, log: &str, max_bytes: usize, epoch: u64) -> Vec<Vec<u8>> {
        let mut replaced = Vec::new();
        let at = match self
            .blocks
            .iter()
            .rposition(|b| b.number == key.block && *b.hash == *key.hash)
        {
            Some(at) => at,
            None => {
                // Another block at this number: the chain changed there, and the blocks from its
                // number on are the old chain's. With none, the block is new to the client (a
                // backend behind it catching up, or logs that came before their reorg's head,
                // which `saw_head` judges): it takes its place in the order of numbers.
                if self.blocks.iter().any(|b| b.number == key.block) {
                    replaced = self.take_back_where(|b| b.number >= key.block);
                }
                let at = self.blocks.partition_point(|b| b.number < key.block);
                let block = DeliveredBlock {
                    number: key.block,
                    hash: key.hash.as_str().into(),
                    logs: Vec::new(),
                    epoch,
                };
                self.bytes += block.overhead();
                self.blocks.insert(at, block);
                at
            }
        };
        if let Some(block) = self.blocks.get_mut(at) {
            block.logs.push((key.index, Some(log.into())));
            block.epoch = epoch;
            self.bytes += LOG_ENTRY + log.len();
        }
        self.fit(max_bytes);
        replaced
    }

    /// Holds at most `max` bytes: forgets the oldest blocks, then, of the newest alone, the text
    /// of its latest logs, then their keys.
    fn fit(&mut self, max: usize) {
        while self.bytes > max && self.blocks.len() > 1 {
            self.drop_oldest();
        }
        let Some(block) = self.blocks.back_mut() else {
            return;
        };
        for (_, text) in block.logs.iter_mut().rev() {
            if self.bytes <= max {
                return;
            }
            if let Some(text) = text.take() {
                self.bytes = self.bytes.saturating_sub(text.len());
            }
        }
        while self.bytes > max && block.logs.pop().is_some() {
            self.bytes = self.bytes.saturating_sub(LOG_ENTRY);
        }
        if block.logs.is_empty() {
            self.drop_newest();
        }
    }

    /// Takes out the blocks `orphaned` picks; returns the `removed: true` copies of their logs,
    /// newest first.
    fn take_back_where(&mut self, orphaned: impl Fn(&DeliveredBlock) -> bool) -> Vec<Vec<u8>> {
        let mut back = Vec::new();
        let mut kept = VecDeque::with_capacity(self.blocks.len());
        while let Some(block) = self.blocks.pop_back() {
            if !orphaned(&block) {
                kept.push_front(block);
                continue;
            }
            self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            for (index, text) in block.logs.iter().rev() {
                let removed = text.as_deref().and_then(jsonrpc::set_removed);
                back.push(removed.unwrap_or_else(|| {
                    // Only its key was kept: the notification names the log by it.
                    format!(
                        r#"{{"blockNumber":"{}","blockHash":{},"logIndex":"{}","removed":true}}"#,
                        hex(block.number),
                        jsonrpc::json_string(&block.hash),
                        hex(*index)
                    )
                    .into_bytes()
                }));
            }
        }
        self.blocks = kept;
        back
    }

    fn forget(&mut self, key: &LogKey) {
        let Some(at) = self
            .blocks
            .iter()
            .position(|b| b.number == key.block && *b.hash == *key.hash)
        else {
            return;
        };
        let block = &mut self.blocks[at];
        let mut freed = 0;
        block.logs.retain(|(i, text)| {
            let keep = *i != key.index;
            if !keep {
                freed += LOG_ENTRY + text.as_ref().map_or(0, |t| t.len());
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        if block.logs.is_empty() {
            if let Some(block) = self.blocks.remove(at) {
                self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            }
        }
    }

    /// Forgets the blocks before `oldest`.
    fn trim(&mut self, oldest: u64) {
        while self.blocks.front().is_some_and(|b| b.number < oldest) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(block) = self.blocks.pop_front() {
            self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            self.covers_from = self.covers_from.max(block.number.saturating_add(1));
        }
    }

    fn drop_newest(&mut self) -> Option<DeliveredBlock> {
        let block = self.blocks.pop_back()?;
        self.bytes = self.bytes.saturating_sub(block_bytes(&block));
        Some(block)
    }
}

/// Bytes a remembered block holds, as counted in [`LogMemory::bytes`].
fn block_bytes(block: &DeliveredBlock) -> usize {
    block.overhead()
        + block
            .logs
            .iter()
            .map(|(_, text)| LOG_ENTRY + text.as_ref().map_or(0, |t| t.len()))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &[u8]) -> Value {
        serde_json::from_slice(v).unwrap()
    }

    /// What goes to the backend.
    fn to_backend(out: Outgoing) -> Vec<u8> {
        match out {
            Outgoing::Backend(bytes) => bytes,
            Outgoing::Client(answer) => panic!("answered by the gateway: {answer:?}"),
        }
    }

    fn head(n: u64) -> Value {
        json!({"number": hex(n), "hash": format!("0x{n:064x}")})
    }

    fn log(block: u64, hash: &str, index: u64) -> Value {
        json!({"blockNumber": hex(block), "blockHash": hash, "logIndex": hex(index), "removed": false, "data": "0x"})
    }

    fn note(sub: &str, result: Value) -> Vec<u8> {
        notification(sub, result.to_string().as_bytes())
    }

    /// Subscribes through the state as a client would; returns the id the client got.
    fn subscribe(s: &mut SessionState, client_id: u64, params: Value, backend_sub: &str) -> String {
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
    fn after_a_move_notifications_and_unsubscribe_keep_the_clients_id() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xaaa");
        assert_eq!(sub, "0xaaa");
        s.rebind(&[(sub.clone(), "0xbbb".into())], None);
        let out = text(&s.backend_message(&note("0xbbb", head(5))).pop().unwrap());
        assert_eq!(out["params"]["subscription"], "0xaaa");
        assert!(
            s.backend_message(&note("0xaaa", head(6))).is_empty(),
            "the old backend's id is gone"
        );
        let sent = text(&to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","id":9,"method":"eth_unsubscribe","params":["0xaaa"]}"#,
        )));
        assert_eq!(sent["params"][0], "0xbbb");
        let back = json!({"jsonrpc":"2.0","id":sent["id"],"result":true}).to_string();
        assert_eq!(
            text(&s.backend_message(back.as_bytes()).pop().unwrap())["id"],
            9
        );
        assert!(s.subscriptions().is_empty());
        // A new backend may hand out an id the client already holds for another subscription.
        let one = subscribe(&mut s, 2, json!(["newHeads"]), "0x1");
        s.rebind(&[(one.clone(), "0x2".into())], None);
        let two = subscribe(&mut s, 3, json!(["syncing"]), "0x1");
        assert_ne!(one, two);
    }

    #[test]
    fn heads_the_client_has_are_dropped_after_a_move_and_gaps_start_after_the_last() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xa");
        for n in 10..=12 {
            assert!(s.backend_message(&note("0xa", head(n))).len() == 1);
        }
        assert_eq!(s.gaps()[0].from, Some(13));
        s.rebind(&[(sub.clone(), "0xb".into())], None);
        assert_eq!(s.fill(&sub, Some(&head(13)), &[]).len(), 1);
        s.filled_to(13, 100);
        assert!(s.backend_message(&note("0xb", head(12))).is_empty());
        assert!(s.backend_message(&note("0xb", head(13))).is_empty());
        assert!(s.backend_message(&note("0xb", head(14))).len() == 1);
        assert!(
            s.backend_message(&note("0xb", head(14))).is_empty(),
            "a head the client has is a repeat"
        );
        // Another block 13 is a reorg, reported as a node does: it passes, and so does the
        // next block 14 on its branch.
        let other = |n: u64| json!({"number": hex(n), "hash": format!("0x{:063x}f", n)});
        assert!(s.backend_message(&note("0xb", other(13))).len() == 1);
        assert!(s.backend_message(&note("0xb", other(14))).len() == 1);
        assert_eq!(s.gaps()[0].from, Some(15));
    }

    #[test]
    fn logs_are_delivered_once_and_a_reorg_takes_them_back() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {"address": "0x01"}]), "0xa");
        assert!(s.backend_message(&note("0xa", log(7, "0x07", 0))).len() == 1);
        assert!(
            s.backend_message(&note("0xa", log(7, "0x07", 0)))
                .is_empty(),
            "a repeat"
        );
        assert!(s.backend_message(&note("0xa", log(8, "0x08", 3))).len() == 1);
        assert_eq!(s.gaps()[0].from, Some(8));
        assert_eq!(
            s.delivered_blocks(&sub),
            vec![(8, "0x08".into()), (7, "0x07".into())]
        );
        // The new backend has another block 8: its log goes back, and the gap starts at 8.
        let back = s.take_back(&sub, 8);
        assert_eq!(back.len(), 1);
        let removed = text(&back[0]);
        assert_eq!(removed["params"]["result"]["removed"], true);
        assert_eq!(removed["params"]["result"]["logIndex"], "0x3");
        assert_eq!(s.gaps()[0].from, Some(8));
        let filled = s.fill(&sub, None, &[log(7, "0x07", 0), log(8, "0x8b", 1)]);
        assert_eq!(
            filled.len(),
            1,
            "block 7's log the client has is not sent again"
        );
        // A removed log passes once and is forgotten; a removal of a log the client no longer
        // holds does not pass (the gateway may have taken it back first).
        let mut gone = log(7, "0x07", 0);
        gone["removed"] = json!(true);
        assert!(s.backend_message(&note("0xa", gone.clone())).len() == 1);
        assert!(s.backend_message(&note("0xa", gone)).is_empty());
        // The same log added again passes, alone: block 8 may well be its child.
        assert_eq!(s.backend_message(&note("0xa", log(7, "0x07", 0))).len(), 1);
        // Another block 7: the client's logs of block 7 and later go back first, newest first,
        // as a node on the other branch would send them.
        let out = s.backend_message(&note("0xa", log(7, "0x7b", 0)));
        let out: Vec<(Value, Value)> = out
            .iter()
            .map(|m| {
                let r = &text(m)["params"]["result"];
                (r["blockHash"].clone(), r["removed"].clone())
            })
            .collect();
        assert_eq!(
            out,
            [
                (json!("0x8b"), json!(true)),
                (json!("0x07"), json!(true)),
                (json!("0x7b"), json!(false))
            ]
        );
    }

    /// Issue 24, item 5: logs of blocks 104 and 105 came from the old backend; the new one was
    /// at 103 and imports another 104 with no log for the filter. When its head comes (the
    /// gateway's own `newHeads`), the logs of 104 and of 105 after it go back, newest first.
    #[test]
    fn logs_of_blocks_a_new_head_orphans_go_back() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xl");
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xh"),
                _ => head(100),
            };
            let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            assert!(s.backend_message(answer.as_bytes()).is_empty());
        }
        for n in 101..=105 {
            let hash = format!("0x{n:064x}");
            assert_eq!(s.backend_message(&note("0xl", log(n, &hash, 0))).len(), 1);
            assert!(s.backend_message(&note("0xh", head(n))).is_empty());
        }
        // The move to a backend at 103, on the same chain up to there.
        s.on_move("ec-a", true);
        s.rebind(&[(sub.clone(), "0xl2".into())], Some("0xh2".into()));
        s.filled_to(103, 128);
        let other = json!({"number": hex(104), "hash": "0xb104"});
        let out: Vec<Value> = s
            .backend_message(&note("0xh2", other))
            .iter()
            .map(|m| text(m)["params"]["result"].clone())
            .collect();
        assert_eq!(
            out.iter()
                .map(|l| (l["blockNumber"].clone(), l["removed"].clone()))
                .collect::<Vec<_>>(),
            [(json!("0x69"), json!(true)), (json!("0x68"), json!(true))]
        );
        assert_eq!(
            s.gaps()[0].from,
            Some(104),
            "block 104's logs are to come again"
        );
        // The node's own removal of those logs, if it sends one, is not passed twice.
        let mut gone = log(104, &format!("0x{:064x}", 104), 0);
        gone["removed"] = json!(true);
        assert!(s.backend_message(&note("0xl2", gone)).is_empty());
    }

    /// A head below the client's first, from a backend behind it, is dropped unless the
    /// session knew another block there; logs of blocks before a subscription's first do not
    /// reach it.
    #[test]
    fn nothing_from_before_the_clients_first_block_reaches_it() {
        let mut s = SessionState::default();
        subscribe(&mut s, 1, json!(["newHeads"]), "0xh");
        subscribe(&mut s, 2, json!(["logs", {}]), "0xl");
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xg"),
                _ => head(100),
            };
            let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            assert!(s.backend_message(answer.as_bytes()).is_empty());
        }
        for n in 101..=102 {
            assert_eq!(s.backend_message(&note("0xh", head(n))).len(), 1);
        }
        assert!(s.backend_message(&note("0xh", head(99))).is_empty());
        let hash = format!("0x{:064x}", 98);
        assert!(s
            .backend_message(&note("0xl", log(98, &hash, 0)))
            .is_empty());
        assert_eq!(
            s.backend_message(&note("0xl", log(101, "0x65", 0))).len(),
            1
        );
    }

    #[test]
    fn a_quiet_logs_filter_moves_with_the_heads_of_the_gateways_own_subscription() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {"address": "0xcc"}]), "0xl");
        let own: Vec<Value> = s.take_requests().iter().map(|r| text(r)).collect();
        let hidden = own.iter().find(|r| r["method"] == "eth_subscribe").unwrap();
        assert_eq!(hidden["params"], json!(["newHeads"]));
        let answer = json!({"jsonrpc":"2.0","id":hidden["id"],"result":"0xh"}).to_string();
        assert!(
            s.backend_message(answer.as_bytes()).is_empty(),
            "not the client's"
        );
        for n in 100..=110 {
            assert!(
                s.backend_message(&note("0xh", head(n))).is_empty(),
                "its heads are not the client's"
            );
        }
        assert_eq!(
            s.gaps()[0].from,
            Some(109),
            "the gap starts at the last head, not at 100"
        );
        assert_eq!(s.heads_seen()[0], (110, format!("0x{:064x}", 110)));
        assert!(s.wants_hidden());
        let _ = sub;
    }

    #[test]
    fn heads_move_a_logs_gap_forward() {
        let mut s = SessionState::default();
        let _heads = subscribe(&mut s, 1, json!(["newHeads"]), "0xh");
        let _logs = subscribe(&mut s, 2, json!(["logs", {}]), "0xl");
        assert!(s.backend_message(&note("0xh", head(20))).len() == 1);
        let gaps = s.gaps();
        let logs_gap = gaps.iter().find(|g| g.client_sub == "0xl").unwrap();
        assert_eq!(
            logs_gap.from,
            Some(19),
            "block 19's logs were all sent before head 20"
        );
    }

    #[test]
    fn in_flight_requests_are_sent_again_when_safe_and_answered_otherwise() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xa");
        s.client_message(
            br#"{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x0","latest"]}"#,
        );
        s.client_message(
            br#"{"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
        );
        s.client_message(br#"[{"jsonrpc":"2.0","id":4,"method":"eth_call"},{"jsonrpc":"2.0","id":5,"method":"eth_chainId"}]"#);
        s.client_message(br#"[{"jsonrpc":"2.0","id":6,"method":"eth_call"},{"jsonrpc":"2.0","id":7,"method":"eth_sendTransaction"}]"#);
        s.client_message(
            format!(r#"{{"jsonrpc":"2.0","id":8,"method":"eth_unsubscribe","params":["{sub}"]}}"#)
                .as_bytes(),
        );
        let (resend, answers) = s.on_move("ec-a", true);
        assert_eq!(resend.len(), 2, "the balance and the safe batch");
        assert_eq!(text(&resend[0])["method"], "eth_getBalance");
        assert_eq!(text(&resend[1]).as_array().unwrap().len(), 2);
        let answers: Vec<Value> = answers.iter().map(|a| text(a)).collect();
        assert!(answers
            .iter()
            .any(|a| a["id"] == 3 && a["error"]["code"] == NOT_REPEATED));
        assert!(answers.iter().any(|a| a["id"] == 8 && a["result"] == true));
        let batch = answers.iter().find(|a| a.is_array()).unwrap();
        assert_eq!(batch.as_array().unwrap().len(), 2);
        assert!(s.subscriptions().is_empty(), "unsubscribed during the move");
        assert_eq!(
            s.in_flight(),
            3,
            "resent requests still wait for their answer"
        );
    }

    #[test]
    fn a_backend_that_closed_gets_nothing_repeated_and_kept_requests_are_counted() {
        let mut s = SessionState::default();
        s.client_message(br#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}"#);
        s.client_message(
            br#"{"jsonrpc":"2.0","id":2,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
        );
        let kept = s.in_flight_bytes();
        let entries = 2 * size_of::<(u64, InFlight)>();
        assert!(
            kept > entries + 50 && kept < entries + 150,
            "the repeatable request is kept, with both ids and names: {kept}"
        );
        let (resend, answers) = s.on_move("ec-a", false);
        assert!(resend.is_empty(), "it may be why the backend closed");
        assert_eq!(answers.len(), 2);
        assert!(text(&answers[0])["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed the connection"));
        assert_eq!((s.in_flight(), s.in_flight_bytes()), (0, 0));
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

    #[test]
    fn remembered_logs_are_bounded() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xa");
        let big = "00".repeat(64 * 1024);
        for block in 0..200u64 {
            let mut l = log(block, &format!("0x{block:x}"), 0);
            l["data"] = json!(format!("0x{big}"));
            s.backend_message(&note("0xa", l));
        }
        let Progress::Logs { delivered, .. } = &s.subs[&sub].progress else {
            panic!()
        };
        assert!(delivered.bytes <= MAX_REMEMBERED_LOG_BYTES);
        assert!(delivered.blocks.len() < 200);
        s.filled_to(199, 10);
        let Progress::Logs { delivered, .. } = &s.subs[&sub].progress else {
            panic!()
        };
        assert!(delivered.blocks.len() <= 11);
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
    fn answers_and_notifications_keep_the_nodes_bytes() {
        let mut s = SessionState::default();
        let sent = text(&to_backend(s.client_message(
            br#"{"id":"client-1","jsonrpc":"2.0","method":"eth_call","params":[]}"#,
        )));
        let answer = format!(
            r#"{{"result" : {{"z":1,"a":[1,2.50]}}, "id" : {}, "jsonrpc":"2.0"}}"#,
            sent["id"]
        );
        assert_eq!(
            s.backend_message(answer.as_bytes()),
            vec![
                br#"{"result" : {"z":1,"a":[1,2.50]}, "id" : "client-1", "jsonrpc":"2.0"}"#
                    .to_vec()
            ],
            "only the id is put back"
        );
        // A notification under the client's id (the same as the backend's): byte for byte.
        let sub = subscribe(&mut s, 2, json!(["newHeads"]), "0xa");
        let n = br#"{"params":{"result":{"number":"0x5","hash":"0x05","x":[]},"subscription":"0xa"},"method":"eth_subscription","jsonrpc":"2.0"}"#;
        assert_eq!(s.backend_message(n), vec![n.to_vec()]);
        // After a move, only the subscription id changes.
        s.rebind(&[(sub, "0xb".into())], None);
        let n = br#"{"params":{"result":{"number":"0x6","hash":"0x06"},"subscription":"0xb"},"method":"eth_subscription","jsonrpc":"2.0"}"#;
        assert_eq!(
            s.backend_message(n),
            vec![br#"{"params":{"result":{"number":"0x6","hash":"0x06"},"subscription":"0xa"},"method":"eth_subscription","jsonrpc":"2.0"}"#.to_vec()]
        );
        // A batch answer: each element's id put back, the elements as the node wrote them.
        let sent = text(&to_backend(s.client_message(
            br#"[{"jsonrpc":"2.0","id":[],"method":"eth_chainId"},{"jsonrpc":"2.0","id":"b","method":"eth_chainId"}]"#,
        )));
        assert_eq!(sent.as_array().unwrap().len(), 2);
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

    #[test]
    fn the_clients_ids_are_counted_and_given_back() {
        let mut s = SessionState::default();
        let id = format!("\"{}\"", "x".repeat(1 << 20));
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_sendRawTransaction","params":[]}}"#
        );
        let sent = text(&to_backend(s.client_message(request.as_bytes())));
        assert!(s.in_flight_bytes() > 1 << 20, "{}", s.in_flight_bytes());
        assert!(s.held_bytes() >= s.in_flight_bytes());
        let back =
            s.backend_message(format!(r#"{{"id":{},"result":"0x"}}"#, sent["id"]).as_bytes());
        assert_eq!(text(&back[0])["id"].as_str().unwrap().len(), 1 << 20);
        assert_eq!(s.in_flight_bytes(), 0);
        s.set_waiting(1000);
        let waiting = s.held_bytes();
        s.backend_message(&[b' '; 400]);
        assert_eq!(
            s.held_bytes(),
            waiting - 400,
            "a waiting message is taken off as it passes"
        );
    }

    /// A subscription's log memory, for the tests.
    fn memory(s: &SessionState, sub: &str) -> (usize, usize, usize) {
        let Progress::Logs { delivered, .. } = &s.subs[sub].progress else {
            panic!()
        };
        let texts = delivered
            .blocks
            .iter()
            .flat_map(|b| &b.logs)
            .filter(|(_, t)| t.is_some())
            .count();
        let counted: usize = delivered.blocks.iter().map(block_bytes).sum();
        assert_eq!(counted, delivered.bytes, "counted as held");
        (delivered.bytes, delivered.blocks.len(), texts)
    }

    #[test]
    fn the_log_bound_holds_with_the_newest_block_and_one_block_over_it_keeps_keys() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xa");
        let data = "00".repeat(300 * 1024);
        let big = |block: u64, index: u64| {
            let mut l = log(block, &format!("0x{block:x}"), index);
            l["data"] = json!(format!("0x{data}"));
            l
        };
        // 60 blocks of 600 KiB logs: the newest ones stay, within the bound.
        for block in 0..60u64 {
            s.backend_message(&note("0xa", big(block, 0)));
            let (bytes, _, _) = memory(&s, &sub);
            assert!(bytes <= MAX_REMEMBERED_LOG_BYTES, "{bytes}");
        }
        let (_, blocks, _) = memory(&s, &sub);
        assert!((12..14).contains(&blocks), "{blocks}");
        // One block alone over the bound: its latest logs keep their keys only.
        for index in 0..20u64 {
            let out = s.backend_message(&note("0xa", big(100, index)));
            assert_eq!(out.len(), 1, "delivered");
            let (bytes, _, _) = memory(&s, &sub);
            assert!(bytes <= MAX_REMEMBERED_LOG_BYTES, "{bytes}");
        }
        let (_, blocks, texts) = memory(&s, &sub);
        assert_eq!(blocks, 1, "the older blocks went first");
        assert!((6..20).contains(&texts), "{texts}");
        assert!(
            s.backend_message(&note("0xa", big(100, 19))).is_empty(),
            "a key kept is still never sent twice"
        );
        // Taken back, every log goes: whole where its bytes were kept, by its key otherwise.
        let back = s.take_back(&sub, 100);
        assert_eq!(back.len(), 20);
        let first = text(&back[0]);
        assert_eq!(first["params"]["result"]["removed"], true);
        assert_eq!(first["params"]["result"]["logIndex"], "0x13");
        assert!(first["params"]["result"].get("data").is_none());
        let last = text(&back[19]);
        assert_eq!(last["params"]["result"]["logIndex"], "0x0");
        assert!(last["params"]["result"]["data"].as_str().unwrap().len() > 1000);
        // A second logs subscription: the two together stay within the bound.
        for block in 101..120u64 {
            s.backend_message(&note("0xa", big(block, 0)));
        }
        let other = subscribe(&mut s, 2, json!(["logs", {"address": "0x02"}]), "0xb");
        for block in 101..120u64 {
            s.backend_message(&note("0xb", big(block, 0)));
        }
        let together = memory(&s, &sub).0 + memory(&s, &other).0;
        assert!(together <= MAX_REMEMBERED_LOG_BYTES, "{together}");
    }
}
