//! The health rules as pure functions: a pool's observations in, one verdict per node out, each
//! with reasons an operator can act on.
//!
//! A node is judged on its own facts (syncing, peers, optimistic, EL offline) and against the pool:
//! it must be on the pool's network (from the config, or else the network more than half of the
//! pool's configured nodes agree on, remembered from then on), and not more than `max_lag` behind
//! the best head among the nodes that pass every other rule (a head far ahead of all the others is
//! suspect, not the leader). A consensus node must also not trail the wall-clock slot by more than
//! `max_slot_lag`.

use super::facts::{ConsensusFacts, ExecutionFacts, Facts};
use crate::config::model::{ExpectedNetwork, PoolKind};
use serde::Serialize;
use std::fmt;

/// The pool settings the rules depend on.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Minimum peers; 0 switches the peer rule off.
    pub min_peers: u64,
    /// Blocks or slots behind the pool's best head that are tolerated.
    pub max_lag: u64,
    /// Consensus: slots behind the wall clock that are tolerated.
    pub max_slot_lag: u64,
    /// Execution: seconds the latest block may be old; `None`: not checked.
    pub max_head_age: Option<u64>,
    pub expected: ExpectedNetwork,
}

/// Healthy or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    /// What makes the node unhealthy; empty when healthy.
    pub reasons: Vec<String>,
    /// Things worth knowing that do not fail the node (a field an older client does not report).
    pub notes: Vec<String>,
    /// Blocks or slots behind the pool's best head, when both are known.
    pub lag: Option<u64>,
}

impl Verdict {
    /// One line for logs and the status page.
    pub fn summary(&self) -> String {
        if self.healthy {
            let mut s = "healthy".to_string();
            for note in &self.notes {
                s.push_str("; ");
                s.push_str(note);
            }
            s
        } else {
            self.reasons.join("; ")
        }
    }

    /// A verdict with one reason, for failures outside a health check (passive health).
    pub fn failed(reason: String) -> Self {
        Verdict {
            healthy: false,
            reasons: vec![reason],
            notes: Vec::new(),
            lag: None,
        }
    }
}

/// The network a node is on, as far as the rules compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkId {
    ChainId(u64),
    GenesisRoot(String),
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkId::ChainId(id) => write!(f, "chain id {id}"),
            NetworkId::GenesisRoot(root) => write!(f, "genesis root {}", short(root)),
        }
    }
}

/// What a pool remembers between rounds: the network its nodes first agreed on.
#[derive(Debug, Clone, Default)]
pub struct PoolMemory {
    agreed: Option<(NetworkId, Vec<String>)>,
}

/// One node's input to a round.
pub struct Observed<'a> {
    pub name: &'a str,
    pub facts: &'a Result<Facts, String>,
}

/// Judges every node of a pool from one round of observations. `now_unix` is the wall clock in
/// seconds (for the consensus wall-clock rule).
pub fn judge_pool(
    kind: PoolKind,
    nodes: &[Observed<'_>],
    rules: &Rules,
    memory: &mut PoolMemory,
    now_unix: u64,
) -> Vec<Verdict> {
    let identities: Vec<Option<NetworkId>> = nodes.iter().map(|n| identity(n.facts)).collect();
    let network: Vec<Result<(), String>> = network_checks(kind, nodes, &identities, rules, memory);

    let head = |n: &Observed<'_>| match n.facts {
        Ok(Facts::Execution(f)) => f.head,
        Ok(Facts::Consensus(f)) => f.head_slot,
        Err(_) => None,
    };
    let unit = match kind {
        PoolKind::Execution => "blocks",
        PoolKind::Consensus => "slots",
    };
    // Each node on its own rules and the pool's network first.
    let mut judged: Vec<(Vec<String>, Vec<String>)> = nodes
        .iter()
        .zip(network)
        .map(|(node, net)| {
            let mut reasons = Vec::new();
            let mut notes = Vec::new();
            match node.facts {
                Err(error) => reasons.push(error.clone()),
                Ok(Facts::Execution(f)) => execution(f, rules, now_unix, &mut reasons),
                Ok(Facts::Consensus(f)) => consensus(f, rules, now_unix, &mut reasons, &mut notes),
            }
            if let Err(reason) = net {
                reasons.push(reason);
            }
            (reasons, notes)
        })
        .collect();
    // The lag rule's leader comes from the nodes that pass all of that: a syncing node, one on
    // another network or one that stopped cannot set the pace.
    let candidates: Vec<(usize, u64)> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| judged[*i].0.is_empty())
        .filter_map(|(i, n)| head(n).map(|h| (i, h)))
        .collect();
    let suspects = outliers(&candidates, rules.max_lag);
    let best = candidates
        .iter()
        .filter(|(i, _)| !suspects.contains(i))
        .max_by_key(|(_, h)| *h)
        .map(|&(i, h)| (h, nodes[i].name));
    for &i in &suspects {
        let others = candidates.iter().filter(|(j, _)| *j != i);
        if let (Some(h), Some(&(other, next))) = (head(&nodes[i]), others.max_by_key(|(_, h)| *h)) {
            judged[i].0.push(format!(
                "head {h} is {} {unit} ahead of every other node (next best: {next} at {}): another fork or a wrong head",
                h - next,
                nodes[other].name
            ));
        }
    }

    nodes
        .iter()
        .zip(judged)
        .map(|(node, (mut reasons, notes))| {
            let lag = match (head(node), best) {
                (Some(h), Some((best, _))) => Some(best.saturating_sub(h)),
                _ => None,
            };
            if let (Some(lag), Some((_, leader))) = (lag, best) {
                if lag > rules.max_lag {
                    reasons.push(format!("{lag} {unit} behind {leader}"));
                }
            }
            Verdict {
                healthy: reasons.is_empty(),
                reasons,
                notes,
                lag,
            }
        })
        .collect()
}

/// The candidates (index, head) whose head is more than `max_lag` ahead of every other one,
/// where at least two others exist: the others then outvote it. With fewer, nobody can tell
/// which side is wrong (the head-age and wall-clock rules catch a stalled side).
fn outliers(candidates: &[(usize, u64)], max_lag: u64) -> Vec<usize> {
    if candidates.len() < 3 {
        return Vec::new();
    }
    candidates
        .iter()
        .filter(|(i, h)| {
            candidates
                .iter()
                .filter(|(j, _)| j != i)
                .all(|(_, other)| h.saturating_sub(*other) > max_lag)
        })
        .map(|(i, _)| *i)
        .collect()
}

fn identity(facts: &Result<Facts, String>) -> Option<NetworkId> {
    match facts {
        Ok(Facts::Execution(f)) => f.chain_id.map(NetworkId::ChainId),
        Ok(Facts::Consensus(f)) => f
            .genesis
            .as_ref()
            .map(|g| NetworkId::GenesisRoot(g.validators_root.clone())),
        Err(_) => None,
    }
}

/// Whether each node is on the right network; nodes that could not be observed pass (their probe
/// error already fails them).
fn network_checks(
    kind: PoolKind,
    nodes: &[Observed<'_>],
    identities: &[Option<NetworkId>],
    rules: &Rules,
    memory: &mut PoolMemory,
) -> Vec<Result<(), String>> {
    let expected = &rules.expected;
    let configured = match kind {
        PoolKind::Execution => expected.chain_id.is_some(),
        PoolKind::Consensus => {
            expected.genesis_validators_root.is_some() || expected.genesis_fork_version.is_some()
        }
    };
    if configured {
        return nodes
            .iter()
            .map(|n| configured_check(n.facts, expected))
            .collect();
    }
    if memory.agreed.is_none() {
        memory.agreed = majority(nodes, identities);
    }
    // Until then, the network most nodes report gets traffic and the others do not; a tie
    // gets none.
    let leading = plurality(identities);
    nodes
        .iter()
        .zip(identities)
        .map(|(node, id)| {
            if node.facts.is_err() {
                return Ok(());
            }
            let Some(id) = id else {
                return Err(match kind {
                    PoolKind::Execution => "network unknown: eth_chainId gave no answer".to_string(),
                    PoolKind::Consensus => "network unknown: no genesis".to_string(),
                });
            };
            match &memory.agreed {
                Some((agreed, _)) if agreed == id => Ok(()),
                Some((agreed, by)) => Err(format!("wrong network: {id}, the pool agreed on {agreed} ({})", by.join(", "))),
                None if leading.as_ref() == Some(id) => Ok(()),
                None => {
                    let others: Vec<String> = nodes
                        .iter()
                        .zip(identities)
                        .filter(|(n, other)| n.name != node.name && other.as_ref().is_some_and(|o| o != id))
                        .map(|(n, other)| format!("{} at {}", other.as_ref().map(|o| o.to_string()).unwrap_or_default(), n.name))
                        .collect();
                    Err(format!(
                        "networks disagree: {id} here, {}; no network has a majority of the pool's {} nodes yet (set the expected network in the pool's config)",
                        others.join(", "),
                        nodes.len()
                    ))
                }
            }
        })
        .collect()
}

/// The network held by more than half of the pool's configured nodes (not of those that
/// happened to answer: one node answering first must not decide for the pool).
fn majority(
    nodes: &[Observed<'_>],
    identities: &[Option<NetworkId>],
) -> Option<(NetworkId, Vec<String>)> {
    identities.iter().flatten().find_map(|candidate| {
        let holders: Vec<String> = identities
            .iter()
            .zip(nodes)
            .filter(|(id, _)| id.as_ref() == Some(candidate))
            .map(|(_, n)| n.name.to_string())
            .collect();
        (holders.len() * 2 > nodes.len()).then(|| (candidate.clone(), holders))
    })
}

/// The network reported by more nodes than any other, if one is.
fn plurality(identities: &[Option<NetworkId>]) -> Option<NetworkId> {
    let count = |id: &NetworkId| identities.iter().flatten().filter(|o| *o == id).count();
    let best = identities.iter().flatten().max_by_key(|id| count(id))?;
    let unique = identities
        .iter()
        .flatten()
        .all(|id| id == best || count(id) < count(best));
    unique.then(|| best.clone())
}

fn configured_check(
    facts: &Result<Facts, String>,
    expected: &ExpectedNetwork,
) -> Result<(), String> {
    match facts {
        Err(_) => Ok(()),
        Ok(Facts::Execution(f)) => match (f.chain_id, expected.chain_id) {
            (_, None) => Ok(()),
            (Some(id), Some(want)) if id == want => Ok(()),
            (Some(id), Some(want)) => Err(format!("wrong network: chain id {id}, expected {want}")),
            (None, Some(_)) => Err("network unknown: eth_chainId gave no answer".to_string()),
        },
        Ok(Facts::Consensus(f)) => {
            let Some(genesis) = &f.genesis else {
                return Err("network unknown: no genesis".to_string());
            };
            if let Some(want) = &expected.genesis_validators_root {
                if &genesis.validators_root != want {
                    return Err(format!(
                        "wrong network: genesis root {}, expected {}",
                        short(&genesis.validators_root),
                        short(want)
                    ));
                }
            }
            if let Some(want) = &expected.genesis_fork_version {
                if &genesis.fork_version != want {
                    return Err(format!(
                        "wrong network: genesis fork version {}, expected {want}",
                        genesis.fork_version
                    ));
                }
            }
            Ok(())
        }
    }
}

fn execution(f: &ExecutionFacts, rules: &Rules, now_unix: u64, reasons: &mut Vec<String>) {
    if f.syncing {
        reasons.push("syncing (eth_syncing is not false)".to_string());
    }
    if let (Some(max), Some(made)) = (rules.max_head_age, f.head_time) {
        let age = now_unix.saturating_sub(made);
        // A minute of clock skew is tolerated; a block from further ahead is a wrong clock or a
        // wrong answer, and would otherwise pass the age rule for ever.
        if made > now_unix + 60 {
            reasons.push(format!(
                "latest block is dated {} s in the future: a wrong clock on the node or here",
                made - now_unix
            ));
        } else if age > max {
            reasons.push(format!(
                "latest block is {age} s old (max_head_age {max} s): the node stopped following the chain; set max_head_age: off for a chain that makes blocks on demand"
            ));
        }
    }
    if rules.min_peers > 0 {
        match (f.peers, &f.peers_error) {
            (Some(peers), _) if peers < rules.min_peers => {
                reasons.push(format!("peers {peers} < {}", rules.min_peers))
            }
            (Some(_), _) => {}
            (None, error) => reasons.push(format!(
                "net_peerCount unavailable ({}); set min_peers: 0 to skip the peer rule",
                error.as_deref().unwrap_or("no answer")
            )),
        }
    }
}

fn consensus(
    f: &ConsensusFacts,
    rules: &Rules,
    now_unix: u64,
    reasons: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    if f.is_syncing {
        reasons.push("syncing (node/syncing is_syncing is true)".to_string());
    }
    match f.is_optimistic {
        Some(true) => reasons.push("optimistic (execution payloads not verified)".to_string()),
        Some(false) => {}
        None => notes.push("is_optimistic not reported".to_string()),
    }
    match f.el_offline {
        Some(true) => reasons.push("execution client offline (el_offline is true)".to_string()),
        Some(false) => {}
        None => notes.push("el_offline not reported (older client), accepted".to_string()),
    }
    if rules.min_peers > 0 {
        match f.peers {
            Some(peers) if peers < rules.min_peers => {
                reasons.push(format!("peers {peers} < {}", rules.min_peers))
            }
            Some(_) => {}
            None => reasons.push("peer count unknown".to_string()),
        }
    }
    if let (Some(genesis), Some(seconds), Some(head)) =
        (&f.genesis, f.seconds_per_slot, f.head_slot)
    {
        if seconds > 0 && now_unix > genesis.time {
            let wall = (now_unix - genesis.time) / seconds;
            if wall > head + rules.max_slot_lag {
                reasons.push(format!(
                    "head slot {head} is {} slots behind the wall clock (slot {wall})",
                    wall - head
                ));
            }
        }
    }
}

fn short(root: &str) -> String {
    if root.len() > 12 {
        format!("{}…", &root[..10])
    } else {
        root.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Genesis;

    fn ec(head: u64, chain: u64) -> Result<Facts, String> {
        Ok(Facts::Execution(ExecutionFacts {
            syncing: false,
            peers: Some(25),
            peers_error: None,
            head: Some(head),
            chain_id: Some(chain),
            head_time: None,
            finalized: None,
        }))
    }

    fn ec_with(f: impl FnOnce(&mut ExecutionFacts)) -> Result<Facts, String> {
        let mut facts = ExecutionFacts {
            syncing: false,
            peers: Some(25),
            peers_error: None,
            head: Some(100),
            chain_id: Some(1),
            head_time: None,
            finalized: None,
        };
        f(&mut facts);
        Ok(Facts::Execution(facts))
    }

    fn cc_with(f: impl FnOnce(&mut ConsensusFacts)) -> Result<Facts, String> {
        let mut facts = ConsensusFacts {
            is_syncing: false,
            is_optimistic: Some(false),
            el_offline: Some(false),
            head_slot: Some(100),
            peers: Some(12),
            genesis: Some(Genesis {
                time: 1_000,
                validators_root: format!("0x{:064x}", 1),
                fork_version: "0x00000000".into(),
            }),
            seconds_per_slot: Some(12),
        };
        f(&mut facts);
        Ok(Facts::Consensus(facts))
    }

    fn rules() -> Rules {
        Rules {
            min_peers: 10,
            max_lag: 5,
            max_slot_lag: 32,
            max_head_age: Some(120),
            expected: ExpectedNetwork::default(),
        }
    }

    /// Wall clock at slot 100 of the test genesis.
    const NOW: u64 = 1_000 + 100 * 12;

    fn judge(
        kind: PoolKind,
        facts: &[(&str, Result<Facts, String>)],
        rules: &Rules,
        memory: &mut PoolMemory,
    ) -> Vec<Verdict> {
        let nodes: Vec<Observed<'_>> = facts
            .iter()
            .map(|(name, f)| Observed { name, facts: f })
            .collect();
        judge_pool(kind, &nodes, rules, memory, NOW)
    }

    fn one(kind: PoolKind, facts: Result<Facts, String>) -> Verdict {
        judge(kind, &[("n", facts)], &rules(), &mut PoolMemory::default()).remove(0)
    }

    #[test]
    fn execution_node_rules() {
        assert!(one(PoolKind::Execution, ec(100, 1)).healthy);
        assert_eq!(
            one(PoolKind::Execution, ec_with(|f| f.peers = Some(3))).reasons,
            ["peers 3 < 10"]
        );
        assert!(
            one(PoolKind::Execution, ec_with(|f| f.syncing = true)).reasons[0]
                .starts_with("syncing")
        );
        let v = one(
            PoolKind::Execution,
            ec_with(|f| {
                f.peers = None;
                f.peers_error = Some("error -32601: Method not found".into());
            }),
        );
        assert!(v.reasons[0].contains("min_peers: 0"), "{v:?}");
        let mut no_peer_rule = rules();
        no_peer_rule.min_peers = 0;
        let facts = [("n", ec_with(|f| f.peers = None))];
        assert!(
            judge(
                PoolKind::Execution,
                &facts,
                &no_peer_rule,
                &mut PoolMemory::default()
            )[0]
            .healthy
        );
    }

    #[test]
    fn consensus_node_rules() {
        assert!(one(PoolKind::Consensus, cc_with(|_| {})).healthy);
        assert!(!one(PoolKind::Consensus, cc_with(|f| f.is_syncing = true)).healthy);
        let v = one(
            PoolKind::Consensus,
            cc_with(|f| {
                f.is_optimistic = Some(true);
                f.el_offline = Some(true);
                f.peers = Some(2);
            }),
        );
        assert_eq!(v.reasons.len(), 3, "{v:?}");
        assert!(v.reasons[0].starts_with("optimistic"));
        assert!(v.reasons[1].starts_with("execution client offline"));
        assert_eq!(v.reasons[2], "peers 2 < 10");
        let old = one(PoolKind::Consensus, cc_with(|f| f.el_offline = None));
        assert!(old.healthy);
        assert_eq!(
            old.summary(),
            "healthy; el_offline not reported (older client), accepted"
        );
    }

    #[test]
    fn probe_error_is_the_reason() {
        let v = one(PoolKind::Execution, Err("no answer within 2s".into()));
        assert!(!v.healthy);
        assert_eq!(v.summary(), "no answer within 2s");
    }

    #[test]
    fn lag_behind_the_best_node() {
        let facts = [
            ("ec-a", ec(93, 1)),
            ("ec-b", ec(100, 1)),
            ("ec-c", ec(96, 1)),
        ];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert_eq!(v[0].reasons, ["7 blocks behind ec-b"]);
        assert_eq!(v[0].lag, Some(7));
        assert!(v[1].healthy && v[1].lag == Some(0));
        assert!(v[2].healthy, "4 behind is within max_lag 5");
        // A node that did not answer neither leads nor lags.
        let facts = [("ec-a", ec(93, 1)), ("ec-b", Err("timed out".into()))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(v[0].healthy);
    }

    #[test]
    fn consensus_lag_and_wall_clock() {
        let facts = [
            ("cc-a", cc_with(|f| f.head_slot = Some(80))),
            ("cc-b", cc_with(|_| {})),
        ];
        let v = judge(
            PoolKind::Consensus,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert_eq!(v[0].reasons, ["20 slots behind cc-b"]);
        // Both stuck: each agrees with the other, but the wall clock does not.
        let facts = [
            ("cc-a", cc_with(|f| f.head_slot = Some(50))),
            ("cc-b", cc_with(|f| f.head_slot = Some(50))),
        ];
        let v = judge(
            PoolKind::Consensus,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert_eq!(
            v[0].reasons,
            ["head slot 50 is 50 slots behind the wall clock (slot 100)"]
        );
        // Missing spec: the wall-clock rule cannot apply and does not fail the node.
        assert!(
            one(
                PoolKind::Consensus,
                cc_with(|f| {
                    f.seconds_per_slot = None;
                    f.head_slot = Some(1)
                })
            )
            .healthy
        );
    }

    #[test]
    fn configured_network_is_enforced() {
        let mut r = rules();
        r.expected.chain_id = Some(1);
        let facts = [
            ("ec-a", ec(100, 5)),
            ("ec-b", ec(100, 1)),
            ("ec-c", ec_with(|f| f.chain_id = None)),
        ];
        let v = judge(PoolKind::Execution, &facts, &r, &mut PoolMemory::default());
        assert_eq!(v[0].reasons, ["wrong network: chain id 5, expected 1"]);
        assert!(v[1].healthy);
        assert!(v[2].reasons[0].starts_with("network unknown"));

        let mut r = rules();
        r.expected.genesis_fork_version = Some("0x01017000".into());
        let v = one_with(PoolKind::Consensus, cc_with(|_| {}), &r);
        assert_eq!(
            v.reasons,
            ["wrong network: genesis fork version 0x00000000, expected 0x01017000"]
        );
    }

    fn one_with(kind: PoolKind, facts: Result<Facts, String>, rules: &Rules) -> Verdict {
        judge(kind, &[("n", facts)], rules, &mut PoolMemory::default()).remove(0)
    }

    #[test]
    fn without_config_the_majority_network_wins_and_is_remembered() {
        let mut memory = PoolMemory::default();
        let facts = [
            ("ec-a", ec(100, 1)),
            ("ec-b", ec(100, 5)),
            ("ec-c", ec(100, 1)),
        ];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(v[0].healthy && v[2].healthy);
        assert_eq!(
            v[1].reasons,
            ["wrong network: chain id 5, the pool agreed on chain id 1 (ec-a, ec-c)"]
        );
        // Later only the wrong node answers: it is still wrong, and it does not lead the lag rule.
        let facts = [
            ("ec-a", Err("down".to_string())),
            ("ec-b", ec(500, 5)),
            ("ec-c", Err("down".to_string())),
        ];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(!v[1].healthy);
        let facts = [("ec-a", ec(100, 1)), ("ec-b", ec(500, 5))];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(
            v[0].healthy,
            "a wrong-network head must not make a right node lag: {:?}",
            v[0]
        );
    }

    #[test]
    fn a_tie_fails_every_disagreeing_node() {
        let facts = [("ec-a", ec(100, 1)), ("ec-b", ec(100, 5))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(!v[0].healthy && !v[1].healthy);
        assert_eq!(v[0].reasons, ["networks disagree: chain id 1 here, chain id 5 at ec-b; no network has a majority of the pool's 2 nodes yet (set the expected network in the pool's config)"]);
    }

    #[test]
    fn one_early_node_does_not_decide_the_network_for_the_pool() {
        let mut memory = PoolMemory::default();
        let down = || Err::<Facts, String>("cannot connect".to_string());
        // Three nodes configured; the one on another chain answers first.
        let facts = [
            ("early-wrong", ec(100, 5)),
            ("ec-b", down()),
            ("ec-c", down()),
        ];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(
            v[0].healthy,
            "alone and undisputed, it may serve: {:?}",
            v[0]
        );
        // The two right ones come up: they are the majority of the three configured.
        let facts = [
            ("early-wrong", ec(100, 5)),
            ("ec-b", ec(100, 1)),
            ("ec-c", ec(100, 1)),
        ];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(v[1].healthy && v[2].healthy, "{v:?}");
        assert_eq!(
            v[0].reasons,
            ["wrong network: chain id 5, the pool agreed on chain id 1 (ec-b, ec-c)"]
        );
        // Undecided among five: the network most report serves, the other does not.
        let mut memory = PoolMemory::default();
        let facts = [
            ("a", ec(100, 1)),
            ("b", ec(100, 1)),
            ("c", ec(100, 5)),
            ("d", down()),
            ("e", down()),
        ];
        let v = judge(PoolKind::Execution, &facts, &rules(), &mut memory);
        assert!(v[0].healthy && v[1].healthy && !v[2].healthy, "{v:?}");
        assert!(v[2].reasons[0].contains("no network has a majority of the pool's 5 nodes"));
    }

    #[test]
    fn nodes_stalled_together_are_judged_by_their_latest_block_s_age() {
        let stalled = |made: u64| ec_with(|f| f.head_time = Some(made));
        let facts = [("ec-a", stalled(NOW - 300)), ("ec-b", stalled(NOW - 300))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        for verdict in &v {
            assert_eq!(
                verdict.reasons,
                ["latest block is 300 s old (max_head_age 120 s): the node stopped following the chain; set max_head_age: off for a chain that makes blocks on demand"]
            );
        }
        let facts = [("ec-a", stalled(NOW - 20))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(v[0].healthy);
        let facts = [("ec-a", stalled(NOW + 3600))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(
            v[0].reasons[0].contains("in the future"),
            "a block from the future does not pass for ever: {:?}",
            v[0]
        );
        let off = Rules {
            max_head_age: None,
            ..rules()
        };
        let v = judge(
            PoolKind::Execution,
            &[("ec-a", stalled(0))],
            &off,
            &mut PoolMemory::default(),
        );
        assert!(v[0].healthy, "off for chains that make blocks on demand");
    }

    #[test]
    fn the_lag_leader_passes_its_own_rules_and_a_lone_runaway_head_is_suspect() {
        let syncing_ahead = ec_with(|f| {
            f.head = Some(5000);
            f.syncing = true;
        });
        let facts = [("ec-a", ec(100, 1)), ("ec-b", syncing_ahead)];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(v[0].healthy, "a syncing node does not lead: {:?}", v[0]);
        // Three right nodes close together, one far ahead (another fork or a wrong head).
        let facts = [
            ("ec-a", ec(100, 1)),
            ("ec-b", ec(102, 1)),
            ("ec-c", ec(101, 1)),
            ("fork", ec(900, 1)),
        ];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(v[0].healthy && v[1].healthy && v[2].healthy, "{v:?}");
        assert_eq!(v[0].lag, Some(2));
        assert_eq!(
            v[3].reasons,
            ["head 900 is 798 blocks ahead of every other node (next best: 102 at ec-b): another fork or a wrong head"]
        );
        // Two nodes apart: nobody can tell which is wrong, the lag rule stands.
        let facts = [("ec-a", ec(100, 1)), ("ec-b", ec(900, 1))];
        let v = judge(
            PoolKind::Execution,
            &facts,
            &rules(),
            &mut PoolMemory::default(),
        );
        assert!(!v[0].healthy && v[1].healthy);
    }
}
