//! The health rules as a pure function: observed [`Facts`] (or a probe error) in, verdict with
//! reasons out. These are the original check scripts' rules, with every threshold from the config
//! and every failure explained in words an operator can act on.

use super::{ConsensusFacts, ExecutionFacts, Facts};
use serde::Serialize;

/// The pool settings the rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Minimum peers; 0 switches the peer rule off.
    pub min_peers: u64,
}

/// Healthy or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    /// What makes the node unhealthy; empty when healthy.
    pub reasons: Vec<String>,
    /// Things worth knowing that do not fail the node (a field an older client does not report).
    pub notes: Vec<String>,
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
}

pub fn judge(observed: &Result<Facts, String>, rules: Rules) -> Verdict {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    match observed {
        Err(error) => reasons.push(error.clone()),
        Ok(Facts::Execution(f)) => execution(f, rules, &mut reasons),
        Ok(Facts::Consensus(f)) => consensus(f, rules, &mut reasons, &mut notes),
    }
    Verdict {
        healthy: reasons.is_empty(),
        reasons,
        notes,
    }
}

fn execution(f: &ExecutionFacts, rules: Rules, reasons: &mut Vec<String>) {
    if f.syncing {
        reasons.push("syncing (eth_syncing is not false)".to_string());
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

fn consensus(f: &ConsensusFacts, rules: Rules, reasons: &mut Vec<String>, notes: &mut Vec<String>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(syncing: bool, peers: Option<u64>) -> Result<Facts, String> {
        Ok(Facts::Execution(ExecutionFacts {
            syncing,
            peers,
            peers_error: peers
                .is_none()
                .then(|| "error -32601: method not found".to_string()),
            head: Some(100),
            chain_id: Some(1),
        }))
    }

    fn cc(
        is_syncing: bool,
        optimistic: Option<bool>,
        el_offline: Option<bool>,
        peers: u64,
    ) -> Result<Facts, String> {
        Ok(Facts::Consensus(ConsensusFacts {
            is_syncing,
            is_optimistic: optimistic,
            el_offline,
            head_slot: Some(10),
            peers: Some(peers),
        }))
    }

    const TEN: Rules = Rules { min_peers: 10 };

    #[test]
    fn execution_rules() {
        assert!(judge(&ec(false, Some(10)), TEN).healthy);
        let v = judge(&ec(false, Some(3)), TEN);
        assert_eq!(v.reasons, ["peers 3 < 10"]);
        assert_eq!(v.summary(), "peers 3 < 10");
        let v = judge(&ec(true, Some(50)), TEN);
        assert!(!v.healthy);
        assert!(v.reasons[0].starts_with("syncing"));
    }

    #[test]
    fn missing_peer_count_fails_unless_the_rule_is_off() {
        let v = judge(&ec(false, None), TEN);
        assert!(!v.healthy);
        assert!(v.reasons[0].contains("min_peers: 0"), "{v:?}");
        assert!(judge(&ec(false, None), Rules { min_peers: 0 }).healthy);
    }

    #[test]
    fn consensus_rules() {
        assert!(judge(&cc(false, Some(false), Some(false), 12), TEN).healthy);
        assert!(!judge(&cc(true, Some(false), Some(false), 12), TEN).healthy);
        let v = judge(&cc(false, Some(true), Some(true), 2), TEN);
        assert_eq!(v.reasons.len(), 3, "{v:?}");
        assert!(v.reasons[0].starts_with("optimistic"));
        assert!(v.reasons[1].starts_with("execution client offline"));
        assert_eq!(v.reasons[2], "peers 2 < 10");
    }

    #[test]
    fn missing_el_offline_is_accepted_with_a_note() {
        let v = judge(&cc(false, Some(false), None, 12), TEN);
        assert!(v.healthy);
        assert_eq!(
            v.summary(),
            "healthy; el_offline not reported (older client), accepted"
        );
    }

    #[test]
    fn probe_error_is_the_reason() {
        let v = judge(&Err("timed out after 2s".to_string()), TEN);
        assert!(!v.healthy);
        assert_eq!(v.summary(), "timed out after 2s");
    }
}
