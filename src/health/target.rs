//! A node to probe: its probe client, the address its host name is pinned to and the constants
//! read once from it, kept between its checks; and the probe of what a pool's rules need.

use super::consensus::NodeConstants;
use super::facts::Facts;
use super::spec::NodeSpec;
use super::verdict::Rules;
use super::{consensus, execution, probe};
use crate::config::model::PoolKind;
use std::sync::Mutex;
use url::Url;

/// A node to probe, with what is kept between its checks.
pub(super) struct Target {
    pub(super) spec: NodeSpec,
    client: Result<reqwest::Client, String>,
    /// The address the probe's host name stands for (see [`probe::Pin`]).
    pub(super) pin: probe::Pin,
    constants: Mutex<NodeConstants>,
}

impl Target {
    pub(super) fn new(spec: NodeSpec) -> Self {
        let pin = probe::Pin::default();
        Target {
            client: probe::client(spec.ca.as_deref(), &spec.headers, pin.clone()),
            spec,
            pin,
            constants: Mutex::new(NodeConstants::default()),
        }
    }
}

/// Probes a node for what the rules need: peers only when they are checked, the head's age only
/// when it is.
pub(super) async fn probe_facts(
    kind: PoolKind,
    target: &Target,
    url: &Url,
    rules: &Rules,
) -> Result<Facts, String> {
    let client = target.client.as_ref().map_err(Clone::clone)?;
    let want_peers = rules.min_peers > 0;
    match kind {
        PoolKind::Execution => execution::probe(client, url, rules.max_head_age.is_some()).await,
        PoolKind::Consensus => {
            let mut constants = target
                .constants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let facts = consensus::probe(client, url, want_peers, &mut constants).await;
            *target.constants.lock().unwrap_or_else(|e| e.into_inner()) = constants;
            facts
        }
    }
}
