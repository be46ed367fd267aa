//! The decisions of a WebSocket session's move to another backend, without I/O: the session
//! loop ([`super::websocket`]'s `Carry::over`) makes the calls and feeds their answers to these
//! steps, in this order:
//!
//! 1. [`resubscriptions`]: the `eth_subscribe` calls that create the session's subscriptions
//!    again (and the gateway's own `newHeads`, never shown to the client);
//! 2. [`survey`]: which blocks of the new backend to ask for, one at a time, until it knows the
//!    backend's head (a block it has: its `eth_blockNumber` is only a claim, checked before it
//!    moves anything) and where its chain parts from what the client was given;
//! 3. [`plan`]: from that, a [`MovePlan`]: the logs to take back (`removed: true`), where each
//!    subscription's gap starts, and the blocks and logs to fetch; a gap longer than the pool's
//!    `max_gap_blocks` ends the session instead;
//! 4. [`apply`]: with the fetched heads and logs in hand, the session becomes the new backend's
//!    and the client's notifications come out in order: the logs taken back, then block by
//!    block the heads and logs it missed, each once.
//!
//! Replaying the requests in flight is [`SessionState::on_move`]'s.

use super::subscriptions::{hex, hex_u64_raw, Gap, SessionState, Topic};
use crate::jsonrpc::Object;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

/// Blocks the survey asks for above the head it settled on before it gives up on the backend
/// (a node importing blocks while it is asked finds one or two).
pub const HEAD_PROBES: usize = 8;

/// A subscription created again on the new backend: `None` for the gateway's own `newHeads`.
pub type Resubscription = (Option<String>, Value);

/// Step 1: the `eth_subscribe` parameters to send, the client's subscriptions first (by the id
/// the client holds), then the gateway's own `newHeads` when the session needs it.
pub fn resubscriptions(state: &SessionState) -> Vec<Resubscription> {
    let mut calls: Vec<Resubscription> = state
        .subscriptions()
        .into_iter()
        .map(|(client_sub, params)| (Some(client_sub), params))
        .collect();
    if state.wants_hidden() {
        calls.push((None, json!(["newHeads"])));
    }
    calls
}

/// What the survey needs to know next from the new backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `eth_getBlockByNumber(number)`: the block's hash, or that it has no such block.
    Block(u64),
    /// `eth_getBlockByNumber("latest")`: the number of the block at its head.
    Latest,
}

/// What the new backend answered so far.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// Its `eth_blockNumber`: a claim.
    pub claimed: u64,
    /// Its block hash at each number asked, lowercase (`None`: no such block).
    pub hashes: HashMap<u64, Option<String>>,
    /// The number of its latest block, once asked (`None` inside: it had none). Its hash goes
    /// in [`Answers::hashes`].
    pub latest: Option<Option<u64>>,
    /// The parent hash of each block asked, by the block's number: the session's record of the
    /// chain then reaches one block below each (a backend behind that record has something to
    /// compare with at the next move).
    pub parents: HashMap<u64, String>,
}

impl Answers {
    pub fn new(claimed: u64) -> Answers {
        Answers {
            claimed,
            ..Answers::default()
        }
    }
}

/// Where the new backend's chain and what the client was given part.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// The new backend's head: a block it has, with none above it.
    pub head: u64,
    /// The first number at or below the head where the session's heads are not the new
    /// backend's blocks.
    pub parted: Option<u64>,
    /// Where the session's chain may part from the new backend's: the block after the highest
    /// one found the same (the heads the session saw may skip numbers, as after a move).
    pub unsure_from: Option<u64>,
    /// The new backend's blocks that the survey learnt, up to its head, oldest first.
    pub chain: Vec<(u64, String)>,
    /// The same per subscription: a `newHeads` subscription's heads, a `logs` subscription's
    /// blocks with delivered logs.
    pub parts: Vec<(String, u64)>,
}

/// Step 2's outcome so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Survey {
    Ask(Ask),
    Done(Findings),
}

/// Step 2: the next question for the new backend, or what its answers show. `Err`: its answers
/// contradict each other (the backend is not to be used).
///
/// The head: the claimed number must be a block the backend has (or else its latest block is
/// asked for); a block above it means the claim was behind (or blocks came meanwhile), and the
/// head goes up to the latest block, at most [`HEAD_PROBES`] times. A session with nothing
/// delivered and no `logs` subscription needs no head and asks nothing.
///
/// Where the chains part: each list of blocks the client was given is walked newest first,
/// skipping those above the head, until one is the new backend's block; the last one that was
/// not is where they part.
pub fn survey(state: &SessionState, answers: &Answers) -> Result<Survey, String> {
    let gaps = state.gaps();
    let heads_seen = state.heads_record();
    let needed = !heads_seen.is_empty()
        || gaps
            .iter()
            .any(|g| g.from.is_some() || matches!(g.topic, Topic::Logs { .. }));
    if !needed {
        return Ok(Survey::Done(Findings {
            head: answers.claimed,
            parted: None,
            unsure_from: None,
            parts: Vec::new(),
            chain: Vec::new(),
        }));
    }
    let head = match head(answers)? {
        Ok(head) => head,
        Err(ask) => return Ok(Survey::Ask(ask)),
    };
    let (parted, unsure_from) = match part(&heads_seen, head, answers) {
        Ok(Some(part)) => (Some(part.at), Some(part.unsure_from)),
        Ok(None) => (None, None),
        Err(ask) => return Ok(Survey::Ask(ask)),
    };
    let mut parts = Vec::new();
    for gap in &gaps {
        let given: Vec<(u64, String, u64)> = match gap.topic {
            // The client's heads are one chain: a match vouches for every head below it.
            Topic::Heads => state
                .given_heads(&gap.client_sub)
                .into_iter()
                .map(|(n, h)| (n, h, 0))
                .collect(),
            Topic::Logs { .. } => state.delivered_record(&gap.client_sub),
            Topic::Other => continue,
        };
        match part(&given, head, answers) {
            Ok(Some(part)) => parts.push((gap.client_sub.clone(), part.at)),
            Ok(None) => {}
            Err(ask) => return Ok(Survey::Ask(ask)),
        }
    }
    let mut chain: Vec<(u64, String)> = answers
        .hashes
        .iter()
        .filter(|(n, _)| **n <= head)
        .filter_map(|(n, hash)| Some((*n, hash.clone()?)))
        .collect();
    for (n, parent) in &answers.parents {
        if let Some(below) = n.checked_sub(1).filter(|b| *b < head) {
            if !answers.hashes.contains_key(&below) {
                chain.push((below, parent.clone()));
            }
        }
    }
    chain.sort();
    chain.dedup_by_key(|(n, _)| *n);
    Ok(Survey::Done(Findings {
        head,
        parted,
        unsure_from,
        parts,
        chain,
    }))
}

/// The new backend's head as its answers show it, or the question to ask first.
fn head(answers: &Answers) -> Result<Result<u64, Ask>, String> {
    let claimed = answers.claimed;
    let mut head = match answers.hashes.get(&claimed) {
        None => return Ok(Err(Ask::Block(claimed))),
        Some(Some(_)) => claimed,
        Some(None) => match answers.latest {
            None => return Ok(Err(Ask::Latest)),
            Some(Some(latest)) => latest,
            Some(None) => {
                return Err(format!(
                "eth_blockNumber answered {}, a block it does not have, and it has no latest block",
                hex(claimed)
            ))
            }
        },
    };
    for _ in 0..HEAD_PROBES {
        let above = head.saturating_add(1);
        match answers.hashes.get(&above) {
            None => return Ok(Err(Ask::Block(above))),
            Some(None) => return Ok(Ok(head)),
            Some(Some(_)) => {
                head = match answers.latest {
                    None => return Ok(Err(Ask::Latest)),
                    Some(Some(latest)) if latest > above => latest,
                    _ => above,
                }
            }
        }
    }
    Err(format!(
        "eth_blockNumber answered {}, but blocks go on past {}",
        hex(claimed),
        hex(head)
    ))
}

/// Where blocks the client was given part from the new backend's chain.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    /// The lowest of those blocks that is not the new backend's.
    at: u64,
    /// The block after the highest one that is (or `at`): blocks between them were not known.
    unsure_from: u64,
}

/// Where blocks the client was given (newest first, each with the move it was recorded in)
/// part from the new backend's chain, up to its head; or the block to ask about first. A block
/// found the same vouches for those below it recorded in the same move or earlier (a chain
/// they were checked against then, or that sent them); one recorded later, by a backend that
/// was behind, is asked about in turn.
fn part(given: &[(u64, String, u64)], head: u64, answers: &Answers) -> Result<Option<Part>, Ask> {
    let mut parted: Option<Part> = None;
    let mut vouched: Option<u64> = None;
    for (number, hash, epoch) in given {
        if *number > head || vouched.is_some_and(|v| *epoch <= v) {
            // Above it: not there yet, a head of the new backend's tells later (`saw_head`).
            continue;
        }
        match answers.hashes.get(number) {
            None => return Err(Ask::Block(*number)),
            Some(theirs) if theirs.as_deref() == Some(hash.as_str()) => {
                vouched = Some(vouched.map_or(*epoch, |v| v.max(*epoch)));
                if let Some(part) = &mut parted {
                    part.unsure_from = part.unsure_from.min(number.saturating_add(1));
                }
            }
            Some(_) => {
                parted = Some(Part {
                    at: *number,
                    unsure_from: parted.map_or(*number, |p| p.unsure_from.min(*number)),
                })
            }
        }
    }
    Ok(parted)
}

/// One subscription's gap on the new backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub client_sub: String,
    pub topic: Topic,
    /// The first block filled; the last is the head.
    pub from: u64,
}

/// What a move does, decided before the client sees any of it.
#[derive(Debug, Clone, PartialEq)]
pub struct MovePlan {
    /// The new backend's head (checked): the gap is filled up to it.
    pub head: u64,
    /// Where the session's heads part from the new backend's chain: forgotten from there.
    pub parted: Option<u64>,
    /// The new backend's blocks the survey learnt: the session's heads from then on.
    pub chain: Vec<(u64, String)>,
    /// `logs` subscriptions whose logs from this block on go back (`removed: true`), and whose
    /// resume point comes back to it.
    pub take_back: Vec<(String, u64)>,
    /// The gaps to fill, in the order of the subscriptions.
    pub fills: Vec<Fill>,
}

/// Step 3: the plan of the move from what the survey found; `Err`: the gap is longer than
/// `max_gap` blocks, and the session closes with this reason.
///
/// A `newHeads` subscription is filled from the block after its last head, or from where its
/// heads part from the new chain (the client then gets those heads again, as a node reports a
/// reorg). A `logs` subscription's logs go back from where its delivered blocks or the
/// session's heads part from the new chain (every block the client has from there on is of the
/// old one), and it is filled from there or from its resume point, whichever is earlier.
pub fn plan(state: &SessionState, found: &Findings, max_gap: u64) -> Result<MovePlan, String> {
    let part_of = |client_sub: &str| {
        found
            .parts
            .iter()
            .find(|(sub, _)| sub == client_sub)
            .map(|(_, at)| *at)
    };
    let earliest = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut take_back = Vec::new();
    let mut starts: Vec<(Gap, u64)> = Vec::new();
    for gap in state.gaps() {
        let from = match gap.topic {
            Topic::Heads => earliest(gap.from, part_of(&gap.client_sub)),
            Topic::Logs { .. } => {
                let back = earliest(part_of(&gap.client_sub), found.parted);
                // Even with no logs to take back: the resume point, on the old chain past
                // here, comes back to it.
                if let Some(back) = back {
                    take_back.push((gap.client_sub.clone(), back));
                }
                earliest(earliest(gap.from, back), found.unsure_from)
            }
            Topic::Other => None,
        };
        if let Some(from) = from {
            starts.push((gap, from));
        }
    }
    let head = found.head;
    if let Some(first) = starts.iter().map(|(_, from)| *from).min() {
        if first <= head {
            let length = (head - first).saturating_add(1);
            if length > max_gap {
                return Err(format!(
                    "the client is {length} blocks behind the next backend, more than the pool's max_gap_blocks ({max_gap}); reconnect"
                ));
            }
        }
    }
    let fills = starts
        .into_iter()
        .filter(|(_, from)| *from <= head)
        .map(|(gap, from)| Fill {
            client_sub: gap.client_sub,
            topic: gap.topic,
            from,
        })
        .collect();
    Ok(MovePlan {
        head,
        parted: found.parted,
        chain: found.chain.clone(),
        take_back,
        fills,
    })
}

impl MovePlan {
    /// The blocks whose headers the move fetches (`eth_getBlockByNumber`): those of every gap,
    /// for the `newHeads` gaps' notifications and for the session's record of the chain (so
    /// that the next move can tell where a backend behind it parts, quiet filters too).
    pub fn blocks_wanted(&self) -> Option<RangeInclusive<u64>> {
        self.fills
            .iter()
            .filter(|f| f.topic != Topic::Other)
            .map(|f| f.from)
            .min()
            .map(|from| from..=self.head)
    }

    /// The `eth_getLogs` filter of each `logs` gap: the subscription's, over the gap's blocks.
    pub fn logs_wanted(&self) -> Vec<(String, Value)> {
        self.fills
            .iter()
            .filter_map(|fill| {
                let Topic::Logs { filter } = &fill.topic else {
                    return None;
                };
                let mut filter = filter.clone();
                if let Some(object) = filter.as_object_mut() {
                    object.remove("blockHash");
                    object.insert("fromBlock".into(), json!(hex(fill.from)));
                    object.insert("toBlock".into(), json!(hex(self.head)));
                }
                Some((fill.client_sub.clone(), filter))
            })
            .collect()
    }
}

/// A block as `eth_getBlockByNumber` returns it, as a head notification sends it: its header.
pub fn header(mut block: Value) -> Value {
    if let Some(object) = block.as_object_mut() {
        for body in [
            "transactions",
            "uncles",
            "withdrawals",
            "size",
            "totalDifficulty",
        ] {
            object.remove(body);
        }
    }
    block
}

/// What the move fetched: block headers by number ([`MovePlan::blocks_wanted`]), and each
/// `logs` gap's logs as `eth_getLogs` returned them (an array's text: read log by log, never
/// as a tree, as a wide answer of small logs takes several times its size as one).
#[derive(Debug, Default)]
pub struct Fetched {
    pub heads: BTreeMap<u64, Value>,
    pub logs: HashMap<String, RawText>,
}

/// A JSON text of the backend's (the result of one of the gateway's calls), held in the bytes
/// of the message it came in: read without building a tree, copied nowhere.
#[derive(Debug, Clone)]
pub struct RawText(Bytes);

impl RawText {
    /// `bytes` as a text; `None` when they are not UTF-8.
    pub fn new(bytes: Bytes) -> Option<RawText> {
        std::str::from_utf8(&bytes).ok()?;
        Some(RawText(bytes))
    }

    pub fn get(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The elements of the array it holds; `None` when it holds no array.
    pub fn elements(&self) -> Option<Vec<&RawValue>> {
        serde_json::from_str(self.get()).ok()
    }
}

impl From<String> for RawText {
    fn from(text: String) -> RawText {
        RawText(Bytes::from(text))
    }
}

/// A log's block number, from its text.
fn block_of(log: &RawValue) -> Option<u64> {
    hex_u64_raw(Object::read(log.get())?.get("blockNumber")?)
}

/// Step 4: the session is the new backend's (its subscription ids `new_ids` by the client's,
/// its `hidden` `newHeads`); returns what the client gets, in order: the logs taken back, then
/// block by block each subscription's head or logs it lacks.
pub fn apply(
    state: &mut SessionState,
    plan: &MovePlan,
    new_ids: &[(String, String)],
    hidden: Option<String>,
    fetched: &Fetched,
    max_gap: u64,
) -> Vec<Vec<u8>> {
    state.rebind(new_ids, hidden);
    let mut out = Vec::new();
    for (client_sub, from) in &plan.take_back {
        out.extend(state.take_back(client_sub, *from));
    }
    // The session's heads from where the chains part are not its record of the chain any
    // more; the new backend's blocks are, marked with this move.
    state.next_epoch();
    if let Some(parted) = plan.parted {
        state.forget_heads_from(parted);
    }
    state.saw_chain(&plan.chain);
    let fetched_chain: Vec<(u64, String)> = fetched
        .heads
        .iter()
        .filter_map(|(n, block)| Some((*n, block.get("hash")?.as_str()?.to_string())))
        .collect();
    state.saw_chain(&fetched_chain);
    let mut logs: HashMap<&str, BTreeMap<u64, Vec<&RawValue>>> = HashMap::new();
    for (client_sub, found) in &fetched.logs {
        let by_block = logs.entry(client_sub.as_str()).or_default();
        for log in found.elements().unwrap_or_default() {
            if let Some(number) = block_of(log) {
                by_block.entry(number).or_default().push(log);
            }
        }
    }
    if let Some(first) = plan.fills.iter().map(|f| f.from).min() {
        for number in first..=plan.head {
            for fill in plan.fills.iter().filter(|f| f.from <= number) {
                let sub = fill.client_sub.as_str();
                match fill.topic {
                    Topic::Heads => {
                        let head = fetched.heads.get(&number);
                        if let Some(Ok(head)) = head.map(serde_json::value::to_raw_value) {
                            out.extend(state.fill(sub, &[&head]));
                        }
                    }
                    Topic::Logs { .. } => {
                        if let Some(found) = logs.get(sub).and_then(|b| b.get(&number)) {
                            out.extend(state.fill(sub, found));
                        }
                    }
                    Topic::Other => {}
                }
            }
        }
    }
    state.filled_to(plan.head, max_gap);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::seamless::subscriptions::{notification, Outgoing};

    fn text(v: &[u8]) -> Value {
        serde_json::from_slice(v).unwrap()
    }

    /// Block `n` of branch `b`.
    fn hash(b: u64, n: u64) -> String {
        format!("0x{b:032x}{n:032x}")
    }

    fn head(b: u64, n: u64) -> Value {
        json!({"number": hex(n), "hash": hash(b, n), "parentHash": hash(b, n - 1)})
    }

    fn log(b: u64, n: u64) -> Value {
        json!({"address": "0xaa", "blockNumber": hex(n), "blockHash": hash(b, n), "logIndex": "0x0", "removed": false})
    }

    /// A session subscribed to `newHeads` ("0xh") and `logs` ("0xl"), the gateway's own
    /// `newHeads` "0xg", started at block 100, and given blocks 101..=`to` of branch 0.
    fn session(to: u64) -> SessionState {
        let mut s = SessionState::default();
        for (id, params, sub) in [
            (1, json!(["newHeads"]), "0xh"),
            (2, json!(["logs", {"address": "0xaa"}]), "0xl"),
        ] {
            let request =
                json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": params});
            let Outgoing::Backend(sent) = s.client_message(request.to_string().as_bytes()) else {
                panic!()
            };
            let answer = json!({"jsonrpc": "2.0", "id": text(&sent)["id"], "result": sub});
            s.backend_message(answer.to_string().as_bytes());
        }
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xg"),
                _ => head(0, 100),
            };
            let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
            assert!(s.backend_message(answer.to_string().as_bytes()).is_empty());
        }
        for n in 101..=to {
            for (sub, result) in [("0xl", log(0, n)), ("0xg", head(0, n)), ("0xh", head(0, n))] {
                s.backend_message(&notification(sub, result.to_string().as_bytes()));
            }
        }
        s
    }

    /// Runs the survey against a chain (`chain(n)`: its hash of block `n`, if it has one).
    fn survey_on(
        s: &SessionState,
        claimed: u64,
        chain: impl Fn(u64) -> Option<String>,
        tip: u64,
    ) -> (Result<Findings, String>, Vec<Ask>) {
        let mut answers = Answers::new(claimed);
        let mut asked = Vec::new();
        loop {
            match survey(s, &answers) {
                Err(e) => return (Err(e), asked),
                Ok(Survey::Done(found)) => return (Ok(found), asked),
                Ok(Survey::Ask(ask)) => {
                    assert!(!asked.contains(&ask), "asked twice: {ask:?}");
                    asked.push(ask);
                    match ask {
                        Ask::Block(n) => {
                            answers.hashes.insert(n, chain(n));
                        }
                        Ask::Latest => match chain(tip) {
                            Some(hash) => {
                                answers.hashes.insert(tip, Some(hash));
                                answers.latest = Some(Some(tip));
                            }
                            None => answers.latest = Some(None),
                        },
                    }
                }
            }
        }
    }

    fn on_branch(b: u64, from: u64, tip: u64) -> impl Fn(u64) -> Option<String> {
        move |n| (n <= tip).then(|| hash(if n >= from { b } else { 0 }, n))
    }

    #[test]
    fn resubscriptions_are_the_clients_then_the_gateways_own() {
        let s = session(101);
        let calls = resubscriptions(&s);
        assert_eq!(
            calls,
            vec![
                (Some("0xh".to_string()), json!(["newHeads"])),
                (
                    Some("0xl".to_string()),
                    json!(["logs", {"address": "0xaa"}])
                ),
                (None, json!(["newHeads"])),
            ]
        );
        assert!(resubscriptions(&SessionState::default()).is_empty());
    }

    /// Issue 24, item 10: an `eth_blockNumber` above the backend's chain is checked before
    /// anything moves: the head is its latest block.
    #[test]
    fn a_claimed_head_the_backend_does_not_have_is_not_the_head() {
        let s = session(105);
        let (found, asked) = survey_on(&s, 1_000_000, on_branch(0, 0, 105), 105);
        assert_eq!(found.unwrap().head, 105);
        assert_eq!(
            &asked[..3],
            [Ask::Block(1_000_000), Ask::Latest, Ask::Block(106)]
        );
        // Behind: the head goes up to the latest block.
        let (found, _) = survey_on(&s, 103, on_branch(0, 0, 105), 105);
        assert_eq!(found.unwrap().head, 105);
        // No block at the claim and none latest: the backend is not used.
        let (found, _) = survey_on(&s, 1_000, |_| None, 0);
        assert!(found.unwrap_err().contains("does not have"));
        // A session with nothing to fill asks nothing.
        let (found, asked) = survey_on(&SessionState::default(), 7, |_| None, 0);
        assert_eq!((found.unwrap().head, asked), (7, vec![]));
    }

    /// Issue 24, item 10: after a move whose `eth_blockNumber` was wrong, the heads and logs
    /// that follow on the new backend pass: nothing rests on the claim.
    #[test]
    fn after_a_wrong_claim_the_next_blocks_pass() {
        let mut s = session(105);
        let (found, _) = survey_on(&s, 1_000_000, on_branch(0, 0, 105), 105);
        let plan = plan(&s, &found.unwrap(), 128).unwrap();
        // The logs' margin block only: the head is the backend's, 105, not the claim.
        assert_eq!(plan.head, 105);
        assert_eq!(plan.blocks_wanted(), Some(105..=105));
        let out = apply(
            &mut s,
            &plan,
            &[("0xh".into(), "0xh2".into()), ("0xl".into(), "0xl2".into())],
            Some("0xg2".into()),
            &Fetched::default(),
            128,
        );
        assert!(out.is_empty());
        assert_eq!(
            s.backend_message(&notification("0xh2", head(0, 106).to_string().as_bytes()))
                .len(),
            1
        );
        assert_eq!(
            s.backend_message(&notification("0xl2", log(0, 106).to_string().as_bytes()))
                .len(),
            1
        );
        let gaps = s.gaps();
        assert_eq!(
            gaps.iter().map(|g| g.from).collect::<Vec<_>>(),
            [Some(107), Some(106)]
        );
    }

    #[test]
    fn where_the_chains_part_logs_go_back_and_the_gap_starts_there() {
        let s = session(105);
        // The new backend's chain is another from 104 on, and at 106.
        let (found, _) = survey_on(&s, 106, on_branch(1, 104, 106), 106);
        let found = found.unwrap();
        assert_eq!((found.head, found.parted), (106, Some(104)));
        let plan = plan(&s, &found, 128).unwrap();
        assert_eq!(plan.take_back, vec![("0xl".to_string(), 104)]);
        assert_eq!(
            plan.fills.iter().map(|f| f.from).collect::<Vec<_>>(),
            [104, 104]
        );
        assert_eq!(plan.blocks_wanted(), Some(104..=106));
        let (_, filter) = &plan.logs_wanted()[0];
        assert_eq!(
            (&filter["fromBlock"], &filter["toBlock"]),
            (&json!("0x68"), &json!("0x6a"))
        );
        // The same gap over a limit of 2 blocks ends the session.
        assert!(super::plan(&s, &found, 2)
            .unwrap_err()
            .contains("max_gap_blocks (2)"));
    }

    #[test]
    fn apply_takes_back_then_fills_block_by_block() {
        let mut s = session(105);
        let (found, _) = survey_on(&s, 106, on_branch(1, 104, 106), 106);
        let plan = plan(&s, &found.unwrap(), 128).unwrap();
        let mut fetched = Fetched::default();
        for n in 104..=106 {
            fetched.heads.insert(n, head(1, n));
        }
        let found: Vec<Value> = (104..=106).map(|n| log(1, n)).collect();
        fetched
            .logs
            .insert("0xl".into(), json!(found).to_string().into());
        let out = apply(
            &mut s,
            &plan,
            &[("0xh".into(), "0xh2".into()), ("0xl".into(), "0xl2".into())],
            Some("0xg2".into()),
            &fetched,
            128,
        );
        let out: Vec<(String, String, bool)> = out
            .iter()
            .map(|m| {
                let m = text(m);
                let r = &m["params"]["result"];
                let n = r
                    .get("blockNumber")
                    .unwrap_or(&r["number"])
                    .as_str()
                    .unwrap()
                    .to_string();
                (
                    m["params"]["subscription"].as_str().unwrap().to_string(),
                    n,
                    r["removed"] == true,
                )
            })
            .collect();
        let e = |sub: &str, n: &str, removed| (sub.to_string(), n.to_string(), removed);
        assert_eq!(
            out,
            [
                e("0xl", "0x69", true),
                e("0xl", "0x68", true),
                e("0xh", "0x68", false),
                e("0xl", "0x68", false),
                e("0xh", "0x69", false),
                e("0xl", "0x69", false),
                e("0xh", "0x6a", false),
                e("0xl", "0x6a", false),
            ]
        );
        // The new chain is the session's now: its next block passes, a repeat does not.
        assert_eq!(
            s.backend_message(&notification("0xh2", head(1, 107).to_string().as_bytes()))
                .len(),
            1
        );
        assert!(s
            .backend_message(&notification("0xl2", log(1, 106).to_string().as_bytes()))
            .is_empty());
    }

    #[test]
    fn headers_lose_their_bodies() {
        let block = json!({"number": "0x1", "hash": "0x2", "transactions": [], "size": "0x3", "uncles": []});
        assert_eq!(header(block), json!({"number": "0x1", "hash": "0x2"}));
    }
}
