//! What a driver tells a health check: the node's [`NodeSpec`], carried in a Pingora `Backend`'s
//! `ext` with the markers [`Unresolved`], [`Started`] and [`ByName`] beside it, and the pool's
//! [`CheckSettings`]. The pool view reads these; nothing here knows the view.

use super::verdict::Rules;
use crate::config::model::{self, ExpectedNetwork};
use http::{HeaderName, HeaderValue};
use pingora::lb::Backend;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use url::Url;

/// What identifies a node to its check; carried in a Pingora `Backend`'s `ext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's name in logs and reports; unique in its pool.
    pub name: String,
    /// Its API: JSON-RPC over HTTP(S) for an execution node, the beacon REST API for a consensus
    /// node. Its host name is sent (Host header, TLS server name); the `Backend`'s address is
    /// where the probe connects.
    pub url: Url,
    /// A PEM file of extra CA certificates to trust for this node.
    pub ca: Option<PathBuf>,
    /// Sent with every probe (an API key a node's proxy asks for).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>, url: Url) -> Self {
        NodeSpec {
            name: name.into(),
            url,
            ca: None,
            headers: Vec::new(),
        }
    }

    /// The spec of a backend that carries none: its address, over plain HTTP.
    fn of_address(backend: &Backend) -> Result<Self, String> {
        let addr = backend
            .addr
            .as_inet()
            .ok_or_else(|| format!("{} is not an IP address and port", backend.addr))?;
        let url = Url::parse(&format!("http://{addr}/"))
            .map_err(|e| format!("no URL for {addr}: {e}"))?;
        Ok(NodeSpec::new(addr.to_string(), url))
    }
}

/// Put in a `Backend`'s `ext` by a driver that could not find the node's address: the check fails
/// with this reason and probes nothing.
#[derive(Debug, Clone)]
pub struct Unresolved(pub String);

/// Put in a `Backend`'s `ext` by a driver that spent time on the check before calling it (looking
/// the name up): the probe ends by this instant plus the timeout, and its latency counts from it.
#[derive(Debug, Clone, Copy)]
pub struct Started(pub Instant);

/// Put in a `Backend`'s `ext` to probe the URL's host name as the system resolves it (each of its
/// addresses tried in turn), not the `Backend`'s address: for a one-off check of URLs
/// (`ssv-ha probe`), where no traffic goes.
#[derive(Debug, Clone, Copy)]
pub struct ByName;

/// How a pool's nodes are checked.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub rules: Rules,
    /// Longest one probe may take.
    pub timeout: Duration,
    /// Good checks in a row that bring a down node up.
    pub rise: u32,
    /// Bad checks in a row that take an up node down.
    pub fall: u32,
}

impl CheckSettings {
    /// The gateway's defaults for an execution pool.
    pub fn execution() -> Self {
        CheckSettings {
            rules: Rules {
                min_peers: model::DEFAULT_MIN_PEERS,
                max_lag: model::DEFAULT_EXECUTION_MAX_LAG,
                max_slot_lag: model::DEFAULT_MAX_SLOT_LAG,
                max_head_age: Some(model::DEFAULT_MAX_HEAD_AGE.as_secs()),
                expected: ExpectedNetwork::default(),
            },
            timeout: model::DEFAULT_HEALTH_TIMEOUT,
            rise: model::DEFAULT_RISE,
            fall: model::DEFAULT_FALL,
        }
    }

    /// The gateway's defaults for a consensus pool.
    pub fn consensus() -> Self {
        let mut settings = CheckSettings::execution();
        settings.rules.max_lag = model::DEFAULT_CONSENSUS_MAX_LAG;
        settings.rules.max_head_age = None;
        settings
    }

    /// The settings of a configured pool.
    pub fn of_pool(pool: &model::PoolConfig) -> Self {
        CheckSettings {
            rules: Rules {
                min_peers: pool.min_peers,
                max_lag: pool.max_lag,
                max_slot_lag: pool.max_slot_lag,
                max_head_age: pool.max_head_age.map(|d| d.as_secs()),
                expected: pool.network.clone(),
            },
            timeout: pool.health.timeout,
            rise: pool.health.rise,
            fall: pool.health.fall,
        }
    }
}

/// The spec of `backend`: the one in its `ext`, else its address over plain HTTP.
pub(super) fn spec_of(backend: &Backend) -> Result<NodeSpec, String> {
    match backend.ext.get::<NodeSpec>() {
        Some(spec) => Ok(spec.clone()),
        None => NodeSpec::of_address(backend),
    }
}
