//! Rounds: the checks of a pool that a driver runs at once, judged together on one set of
//! observations once the last one arrives (see [`PoolView::begin_round`]). A check missing from
//! its round holds the others for the probe timeout and [`ROUND_GRACE`], then each is judged alone.

use super::{verdict_of, Node, Observation, PoolView, State};
use crate::health::target::Target;
use crate::health::verdict::{Observed, Verdict};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks of a pool that are judged together.
pub(super) struct Round {
    generation: u64,
    names: Vec<String>,
    pending: HashSet<String>,
}

/// How much longer than the probe timeout a check waits for the rest of its round.
const ROUND_GRACE: Duration = Duration::from_secs(1);

impl PoolView {
    /// Opens a round: the next checks of `names` are judged together, once all have arrived. The
    /// driver must then run every one of them to the end: a check missing from a round holds the
    /// others for the probe timeout and a second, after which each is judged alone. A round still
    /// open is closed first, its nodes judged on what arrived.
    pub fn begin_round(&self, names: &[&str]) {
        let mut state = self.state();
        if let Some(generation) = state.round.as_ref().map(|r| r.generation) {
            self.close_round(&mut state);
            self.shared.closed.send_replace(generation);
        }
        state.generations += 1;
        state.round = Some(Round {
            generation: state.generations,
            names: names.iter().map(|n| n.to_string()).collect(),
            pending: names.iter().map(|n| n.to_string()).collect(),
        });
    }

    /// Takes node `name` out of the open round (its check could not run), closing the round
    /// when it was the last one awaited.
    pub(super) fn leave_round(&self, name: &str) {
        let mut state = self.state();
        let Some(round) = state.round.as_mut() else {
            return;
        };
        if round.pending.remove(name) && round.pending.is_empty() {
            let generation = round.generation;
            self.close_round(&mut state);
            self.shared.closed.send_replace(generation);
        }
    }

    /// Records a node's observation and returns its verdict: at once when it is not part of a
    /// round, else once the round is judged.
    pub(super) async fn submit(&self, target: &Arc<Target>, observation: Observation) -> Verdict {
        let name = target.spec.name.as_str();
        let waiting = {
            let mut state = self.state();
            match state.nodes.iter_mut().find(|n| n.name == name) {
                Some(node) => node.latest = Some(observation),
                // Forgotten while its check ran.
                None => state.nodes.push(Node {
                    name: name.to_string(),
                    target: target.clone(),
                    touched: Instant::now(),
                    latest: Some(observation),
                    verdict: None,
                }),
            }
            let in_round = state.round.as_mut().and_then(|round| {
                let arrived = round.pending.remove(name);
                arrived.then_some((round.generation, round.pending.is_empty()))
            });
            match in_round {
                Some((generation, true)) => {
                    self.close_round(&mut state);
                    self.shared.closed.send_replace(generation);
                    return verdict_of(&state, name);
                }
                Some((generation, false)) => Some((generation, self.shared.closed.subscribe())),
                None => None,
            }
        };
        if let Some((generation, mut closed)) = waiting {
            let wait = closed.wait_for(|closed| *closed >= generation);
            let patience = self.shared.settings.timeout + ROUND_GRACE;
            if let Ok(Ok(_)) = tokio::time::timeout(patience, wait).await {
                return verdict_of(&self.state(), name);
            }
            // The rest of the round never came (its driver stopped): judge this one alone.
            let mut state = self.state();
            if state
                .round
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                state.round = None;
            }
        }
        let mut state = self.state();
        self.judge_alone(&mut state, name)
    }

    /// Judges the round's nodes together and stores each verdict.
    fn close_round(&self, state: &mut State) {
        let Some(round) = state.round.take() else {
            return;
        };
        let verdicts = {
            let State { nodes, memory, .. } = &mut *state;
            let observed: Vec<Observed<'_>> = round
                .names
                .iter()
                .filter_map(|name| nodes.iter().find(|n| &n.name == name))
                .filter_map(|n| {
                    n.latest.as_ref().map(|o| Observed {
                        name: &n.name,
                        facts: &o.facts,
                    })
                })
                .collect();
            let names: Vec<String> = observed.iter().map(|o| o.name.to_string()).collect();
            let verdicts = self.judge(&observed, memory);
            names.into_iter().zip(verdicts).collect::<Vec<_>>()
        };
        for (name, verdict) in verdicts {
            if let Some(node) = state.nodes.iter_mut().find(|n| n.name == name) {
                node.verdict = Some(verdict);
            }
        }
    }
}
