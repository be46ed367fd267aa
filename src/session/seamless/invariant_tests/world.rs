//! The generated sessions' world: chains on three backends, the nodes' answers, the client,
//! the steps and their strategies, and [`run`], which checks the invariant after each step.

use super::super::carry::{self, Answers, Ask, Fetched, Survey};
use super::super::subscriptions::{hex, hex_u64, Outgoing, SessionState};
use super::origins::{branch_of, Origins};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The first block of every chain.
const BASE: u64 = 1000;
/// The pool's `max_gap_blocks` in these sessions.
const MAX_GAP: u64 = 16;
/// The address every block has a log from (index 0).
const BUSY: &str = "0xaa";
/// The address of the quiet filter: a log (index 1) in one block of four.
const QUIET: &str = "0xcc";

/// A backend's chain: the branch of each block from [`BASE`] on. A block is its branch and
/// number, so two chains that agree on a block agree below it (branches are made by one reorg).
#[derive(Debug, Clone)]
struct Chain(Vec<u32>);

impl Chain {
    fn tip(&self) -> u64 {
        BASE + self.0.len() as u64 - 1
    }
    fn branch(&self, n: u64) -> Option<u32> {
        n.checked_sub(BASE)
            .and_then(|i| self.0.get(usize::try_from(i).ok()?))
            .copied()
    }
    fn hash(&self, n: u64) -> Option<String> {
        self.branch(n).map(|b| block_hash(b, n))
    }
    fn header(&self, n: u64) -> Option<Value> {
        let hash = self.hash(n)?;
        let parent = self.hash(n - 1).unwrap_or_default();
        Some(json!({"number": hex(n), "hash": hash, "parentHash": parent}))
    }
    fn logs(&self, n: u64) -> Vec<Value> {
        let Some(branch) = self.branch(n) else {
            return Vec::new();
        };
        let mut logs = vec![log(BUSY, n, branch, 0)];
        if (n + u64::from(branch)) % 4 == 0 {
            logs.push(log(QUIET, n, branch, 1));
        }
        logs
    }
}

fn block_hash(branch: u32, n: u64) -> String {
    format!("0x{branch:032x}{n:032x}")
}

fn log(address: &str, n: u64, branch: u32, index: u64) -> Value {
    json!({"address": address, "blockNumber": hex(n), "blockHash": block_hash(branch, n),
           "logIndex": hex(index), "removed": false, "data": "0x"})
}

/// What a subscription on a backend is of.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Heads,
    Logs(String),
}

fn kind_of(params: &Value) -> Kind {
    match params[0].as_str() {
        Some("logs") => Kind::Logs(params[1]["address"].as_str().unwrap_or_default().into()),
        _ => Kind::Heads,
    }
}

/// A `eth_getLogs` filter's answer on a chain, as the node writes it.
fn get_logs(chain: &Chain, filter: &Value) -> carry::RawText {
    let from = hex_u64(&filter["fromBlock"]).unwrap();
    let to = hex_u64(&filter["toBlock"]).unwrap().min(chain.tip());
    let address = filter["address"].as_str().unwrap_or_default();
    let logs = (from..=to)
        .flat_map(|n| chain.logs(n))
        .filter(|l| l["address"] == address)
        .collect::<Vec<_>>();
    json!(logs).to_string().into()
}

/// What a `eth_blockNumber` answers during a move.
#[derive(Debug, Clone, Copy)]
pub(super) enum Claim {
    Right,
    /// This many blocks above its head.
    High(u64),
    /// This many blocks below it.
    Low(u64),
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    /// The session's backend imports a block (logs before the head, or after); the others
    /// too if their bit is set.
    Block { logs_first: bool, others: u8 },
    /// The session's backend replaces its last `depth` blocks with `length` others.
    Reorg {
        depth: u64,
        length: u64,
        logs_first: bool,
    },
    /// Another backend imports a block, reorgs, or takes the session backend's chain (`lag`
    /// blocks behind, then `ahead` blocks of its own).
    Other { node: usize, op: OtherOp },
    /// The session moves; the new backend imports `before` blocks between the subscriptions
    /// and its `eth_blockNumber`, and `after` blocks after it.
    Move {
        to: usize,
        claim: Claim,
        before: u64,
        after: u64,
    },
}

#[derive(Debug, Clone)]
pub(super) enum OtherOp {
    Advance,
    Reorg(u64),
    Sync { lag: u64, ahead: u64 },
}

fn claim() -> impl Strategy<Value = Claim> {
    prop_oneof![
        4 => Just(Claim::Right),
        1 => (1u64..1_000_000).prop_map(Claim::High),
        1 => (1u64..6).prop_map(Claim::High),
        1 => (1u64..6).prop_map(Claim::Low),
    ]
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<bool>(), 0u8..4).prop_map(|(logs_first, others)| Step::Block { logs_first, others }),
        2 => (1u64..4, 0u64..4, any::<bool>()).prop_map(|(depth, extra, logs_first)| Step::Reorg {
            depth,
            length: depth + extra,
            logs_first
        }),
        3 => (1usize..3, prop_oneof![
            3 => Just(OtherOp::Advance),
            1 => (1u64..4).prop_map(OtherOp::Reorg),
            2 => (0u64..5, 0u64..3).prop_map(|(lag, ahead)| OtherOp::Sync { lag, ahead }),
        ]).prop_map(|(node, op)| Step::Other { node, op }),
        2 => (1usize..3, claim(), 0u64..2, 0u64..2).prop_map(|(to, claim, before, after)| Step::Move { to, claim, before, after }),
    ]
}

/// The client's view: its heads as a chain, and per `logs` subscription the logs it holds.
#[derive(Debug, Default)]
struct Client {
    heads: Vec<(u64, String)>,
    logs: HashMap<String, HashMap<(u64, String, u64), ()>>,
}

impl Client {
    /// Takes a message the gateway sent; `Err`: it breaks the invariant on arrival.
    fn take(&mut self, message: &[u8], heads_sub: Option<&str>) -> Result<(), String> {
        let message: Value = serde_json::from_slice(message).map_err(|e| e.to_string())?;
        if message["method"] != "eth_subscription" {
            return Ok(());
        }
        let sub = message["params"]["subscription"]
            .as_str()
            .unwrap_or_default();
        let result = &message["params"]["result"];
        if Some(sub) == heads_sub {
            let n = hex_u64(&result["number"]).ok_or("a head without a number")?;
            let hash = result["hash"].as_str().unwrap_or_default().to_string();
            if let Some((top, _)) = self.heads.last() {
                if n > top + 1 {
                    return Err(format!("head {n} after {top}: a gap"));
                }
                if self.heads.iter().any(|(m, h)| *m == n && *h == hash) {
                    return Err(format!("head {n} again"));
                }
            }
            self.heads.retain(|(m, _)| *m < n);
            self.heads.push((n, hash));
            return Ok(());
        }
        let held = self.logs.entry(sub.to_string()).or_default();
        let key = (
            hex_u64(&result["blockNumber"]).ok_or("a log without a block")?,
            result["blockHash"].as_str().unwrap_or_default().to_string(),
            hex_u64(&result["logIndex"]).ok_or("a log without an index")?,
        );
        if result["removed"] == true {
            if held.remove(&key).is_none() {
                return Err(format!("removed {key:?}, which the client does not hold"));
            }
        } else if held.insert(key.clone(), ()).is_some() {
            return Err(format!("log {key:?} twice"));
        }
        Ok(())
    }
}

/// A generated session.
struct World {
    chains: Vec<Chain>,
    next_branch: u32,
    origins: Origins,
    on: usize,
    /// The session backend's subscriptions: its id, and what it is of (`None`: the gateway's
    /// own `newHeads`).
    backend_subs: Vec<(String, Option<Kind>)>,
    state: SessionState,
    client: Client,
    /// The client's subscriptions: heads, and per `logs` one its address and first block
    /// (the head when it was made: logs from the next block on are promised).
    heads_sub: Option<String>,
    logs_subs: Vec<(String, String, u64)>,
    moves: u32,
    /// The highest head the session's backends reached: the window is the [`MAX_GAP`] blocks
    /// below it and up (the gateway remembers no further).
    top: u64,
}

impl World {
    fn new(heads: bool, busy: bool, quiet: bool) -> World {
        let chain = Chain(vec![0; 6]);
        let mut w = World {
            chains: vec![chain; 3],
            next_branch: 1,
            origins: Origins::new(),
            on: 0,
            backend_subs: Vec::new(),
            state: SessionState::default(),
            client: Client::default(),
            heads_sub: None,
            logs_subs: Vec::new(),
            moves: 0,
            top: BASE + 5,
        };
        let mut id = 0;
        if heads {
            id += 1;
            w.heads_sub = Some(w.subscribe(id, json!(["newHeads"])));
        }
        for (wanted, address) in [(busy, BUSY), (quiet, QUIET)] {
            if wanted {
                id += 1;
                let sub = w.subscribe(id, json!(["logs", {"address": address}]));
                let tip = w.chains[0].tip();
                w.logs_subs.push((sub, address.to_string(), tip));
            }
        }
        w
    }

    /// The client subscribes on the session's backend; the id it got.
    fn subscribe(&mut self, id: u64, params: Value) -> String {
        let request =
            json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": params});
        let Outgoing::Backend(sent) = self.state.client_message(request.to_string().as_bytes())
        else {
            panic!("answered by the gateway")
        };
        let sent: Value = serde_json::from_slice(&sent).unwrap();
        let answer = self.answer(&sent, false);
        let mut got = self.state.backend_message(answer.to_string().as_bytes());
        let back: Value = serde_json::from_slice(&got.pop().unwrap()).unwrap();
        // The gateway's own calls it prompted.
        for request in self.state.take_requests() {
            let request: Value = serde_json::from_slice(&request).unwrap();
            let answer = self.answer(&request, true);
            assert!(self
                .state
                .backend_message(answer.to_string().as_bytes())
                .is_empty());
        }
        back["result"].as_str().unwrap().to_string()
    }

    /// The session backend's answer to a call (`own`: the gateway's).
    fn answer(&mut self, request: &Value, own: bool) -> Value {
        let chain = &self.chains[self.on];
        let result = match request["method"].as_str().unwrap() {
            "eth_subscribe" => {
                let id = format!("0x{}{:x}", self.on, self.backend_subs.len() + 100);
                let kind = (!own).then(|| kind_of(&request["params"]));
                self.backend_subs.push((id.clone(), kind));
                json!(id)
            }
            "eth_getBlockByNumber" => match request["params"][0].as_str() {
                Some("latest") => chain.header(chain.tip()).unwrap(),
                _ => chain
                    .header(hex_u64(&request["params"][0]).unwrap())
                    .unwrap_or(Value::Null),
            },
            // A wrong claim at the start too: the gateway must not take it for a block.
            "eth_blockNumber" => json!(hex(chain.tip() + 7)),
            other => panic!("unexpected call {other}"),
        };
        json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
    }

    /// The notifications of block `n` of the session backend's chain.
    fn block_notes(&self, n: u64, logs_first: bool) -> Vec<Value> {
        let chain = &self.chains[self.on];
        let mut heads = Vec::new();
        let mut logs = Vec::new();
        for (id, kind) in &self.backend_subs {
            match kind {
                Some(Kind::Logs(address)) => logs.extend(
                    chain
                        .logs(n)
                        .into_iter()
                        .filter(|l| l["address"] == address.as_str())
                        .map(|l| note(id, l)),
                ),
                _ => heads.push(note(id, chain.header(n).unwrap())),
            }
        }
        if logs_first {
            logs.extend(heads);
            logs
        } else {
            heads.extend(logs);
            heads
        }
    }

    fn deliver(&mut self, notes: Vec<Value>) -> Result<(), String> {
        for message in notes {
            for out in self.state.backend_message(message.to_string().as_bytes()) {
                self.client.take(&out, self.heads_sub.as_deref())?;
            }
        }
        Ok(())
    }

    fn new_branch(&mut self) -> u32 {
        self.next_branch += 1;
        self.next_branch
    }

    /// Runs a step; `Ok(false)`: the session closed (as documented).
    fn run(&mut self, step: &Step) -> Result<bool, String> {
        match *step {
            Step::Block { logs_first, others } => {
                for (bit, node) in [self.on, (self.on + 1) % 3, (self.on + 2) % 3]
                    .into_iter()
                    .enumerate()
                {
                    if bit == 0 || others & (1 << (bit - 1)) != 0 {
                        let tip_branch = *self.chains[node].0.last().unwrap();
                        self.chains[node].0.push(tip_branch);
                    }
                }
                let tip = self.chains[self.on].tip();
                let notes = self.block_notes(tip, logs_first);
                self.deliver(notes)?;
            }
            Step::Reorg {
                depth,
                length,
                logs_first,
            } => {
                let depth = depth.min(self.chains[self.on].0.len() as u64 - 1);
                let old = self.chains[self.on].clone();
                let from = old.tip() + 1 - depth;
                // The node takes back the logs of the blocks it drops, newest first.
                let mut notes = Vec::new();
                for n in (from..=old.tip()).rev() {
                    for (id, kind) in &self.backend_subs {
                        if let Some(Kind::Logs(address)) = kind {
                            for mut l in old.logs(n).into_iter().rev() {
                                if l["address"] == address.as_str() {
                                    l["removed"] = json!(true);
                                    notes.push(note(id, l));
                                }
                            }
                        }
                    }
                }
                let branch = self.new_branch();
                let chain = &mut self.chains[self.on].0;
                chain.truncate(chain.len() - depth as usize);
                self.origins.record(branch, chain);
                chain.extend(std::iter::repeat_n(branch, length.max(1) as usize));
                for n in from..=self.chains[self.on].tip() {
                    notes.extend(self.block_notes(n, logs_first));
                }
                self.deliver(notes)?;
            }
            Step::Other { node, ref op } => {
                let node = (self.on + node) % 3;
                match *op {
                    OtherOp::Advance => {
                        let tip_branch = *self.chains[node].0.last().unwrap();
                        self.chains[node].0.push(tip_branch);
                    }
                    OtherOp::Reorg(depth) => {
                        let branch = self.new_branch();
                        let chain = &mut self.chains[node].0;
                        let keep = chain.len().saturating_sub(depth as usize).max(1);
                        chain.truncate(keep);
                        self.origins.record(branch, chain);
                        chain.extend(std::iter::repeat_n(branch, depth as usize));
                    }
                    OtherOp::Sync { lag, ahead } => {
                        let mut chain = self.chains[self.on].0.clone();
                        let keep = chain.len().saturating_sub(lag as usize).max(1);
                        chain.truncate(keep);
                        let tip_branch = *chain.last().unwrap();
                        chain.extend(std::iter::repeat_n(tip_branch, ahead as usize));
                        self.chains[node] = Chain(chain);
                    }
                }
            }
            Step::Move {
                to,
                claim,
                before,
                after,
            } => return self.move_to((self.on + to) % 3, claim, before, after),
        }
        Ok(true)
    }

    fn move_to(
        &mut self,
        to: usize,
        claim: Claim,
        before: u64,
        after: u64,
    ) -> Result<bool, String> {
        self.moves += 1;
        let (resend, answers) = self.state.on_move("old", true);
        assert!(resend.is_empty() && answers.is_empty());
        self.on = to;
        self.backend_subs.clear();
        let mut new_ids = Vec::new();
        let mut hidden = None;
        for (client_sub, params) in carry::resubscriptions(&self.state) {
            let id = format!(
                "0x{}{:x}",
                to,
                self.backend_subs.len() + 100 * self.moves as usize
            );
            let kind = client_sub.as_ref().map(|_| kind_of(&params));
            self.backend_subs.push((id.clone(), kind));
            match client_sub {
                Some(sub) => new_ids.push((sub, id)),
                None => hidden = Some(id),
            }
        }
        // Blocks the new backend imports during the move: their notifications wait.
        let mut waiting = Vec::new();
        let mut import = |w: &mut World, count: u64| {
            for _ in 0..count {
                let tip_branch = *w.chains[to].0.last().unwrap();
                w.chains[to].0.push(tip_branch);
                let tip = w.chains[to].tip();
                waiting.extend(w.block_notes(tip, true));
            }
        };
        import(self, before);
        let tip = self.chains[to].tip();
        let claimed = match claim {
            Claim::Right => tip,
            Claim::High(k) => tip + k,
            Claim::Low(k) => tip.saturating_sub(k).max(BASE),
        };
        import(self, after);
        let chain = self.chains[to].clone();
        let mut answers = Answers::new(claimed);
        let found = loop {
            match carry::survey(&self.state, &answers) {
                Err(e) => {
                    // A backend whose answers contradict each other is not used: with no
                    // other, the session closes (1012).
                    assert!(!matches!(claim, Claim::Right), "{e}");
                    return Ok(false);
                }
                Ok(Survey::Done(found)) => break found,
                Ok(Survey::Ask(Ask::Block(n))) => {
                    answers.hashes.insert(n, chain.hash(n));
                    if let Some(parent) = chain.hash(n).and_then(|_| chain.hash(n - 1)) {
                        answers.parents.insert(n, parent);
                    }
                }
                Ok(Survey::Ask(Ask::Latest)) => {
                    answers.hashes.insert(chain.tip(), chain.hash(chain.tip()));
                    if let Some(parent) = chain.hash(chain.tip() - 1) {
                        answers.parents.insert(chain.tip(), parent);
                    }
                    answers.latest = Some(Some(chain.tip()));
                }
            }
        };
        let Ok(plan) = carry::plan(&self.state, &found, MAX_GAP) else {
            // A gap too long closes the session (1011).
            return Ok(false);
        };
        let mut fetched = Fetched::default();
        for n in plan.blocks_wanted().into_iter().flatten() {
            fetched
                .heads
                .insert(n, chain.header(n).ok_or("a block below the head missing")?);
        }
        for (sub, filter) in plan.logs_wanted() {
            fetched.logs.insert(sub, get_logs(&chain, &filter));
        }
        let out = carry::apply(&mut self.state, &plan, &new_ids, hidden, &fetched, MAX_GAP);
        for message in out {
            self.client.take(&message, self.heads_sub.as_deref())?;
        }
        self.deliver(waiting)?;
        Ok(true)
    }

    /// The invariant, against the session backend's chain as it is now.
    fn check(&mut self) -> Result<(), String> {
        let chain = &self.chains[self.on];
        let tip = chain.tip();
        self.top = self.top.max(tip);
        let window = self.top.saturating_sub(MAX_GAP);
        if self.heads_sub.is_some() {
            if let Some((top, _)) = self.client.heads.last() {
                if *top < tip {
                    return Err(format!(
                        "the client's heads end at {top}, the chain at {tip}"
                    ));
                }
            }
            for (n, hash) in &self.client.heads {
                if *n >= window && *n <= tip && chain.hash(*n).as_ref() != Some(hash) {
                    return Err(format!("the client's head {n} is not the chain's"));
                }
            }
        }
        for (sub, address, start) in &self.logs_subs {
            let held = self.client.logs.get(sub).cloned().unwrap_or_default();
            for (n, hash, index) in held.keys() {
                if *n >= window && *n <= tip && chain.hash(*n).as_ref() != Some(hash) {
                    return Err(format!(
                        "{sub}: the client holds log {index} of orphaned block {n}"
                    ));
                }
                // Above the head: built on a block of the window, after the subscription's
                // first (the session saw it as a head), that the chain replaced.
                let parted = branch_of(hash).and_then(|b| self.origins.parted(&chain.0, b));
                let at = parted.map(|i| BASE + i as u64);
                if *n > tip && at.is_some_and(|at| at > *start && at >= window) {
                    return Err(format!(
                        "{sub}: the client holds log {index} of block {n}, built on {at:?}, which the chain replaced"
                    ));
                }
            }
            for n in (start + 1).max(window)..=tip {
                for l in chain.logs(n) {
                    if l["address"] != address.as_str() {
                        continue;
                    }
                    let key = (
                        n,
                        l["blockHash"].as_str().unwrap().to_string(),
                        hex_u64(&l["logIndex"]).unwrap(),
                    );
                    if !held.contains_key(&key) {
                        return Err(format!("{sub}: the client lacks log {key:?}"));
                    }
                }
            }
        }
        Ok(())
    }
}

fn note(sub: &str, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": result}})
}

/// Runs a session's steps, checking the invariant after each; `Err`: the step that broke it.
pub(super) fn run(subs: (bool, bool, bool), steps: &[Step]) -> Result<(), String> {
    let (heads, busy, quiet) = subs;
    let mut world = World::new(heads || !(busy || quiet), busy, quiet);
    world.check().map_err(|e| format!("at the start: {e}"))?;
    for (i, step) in steps.iter().enumerate() {
        match world.run(step) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(format!("step {i} {step:?}: {e}")),
        }
        world
            .check()
            .map_err(|e| format!("after step {i} {step:?}: {e}"))?;
    }
    Ok(())
}
