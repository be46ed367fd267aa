//! The Ethereum health checks as Pingora [`HealthCheck`] implementors: [`ExecutionCheck`] and
//! [`ConsensusCheck`].
//!
//! A `check` probes one node and judges it. Two rules need the rest of the pool (lag behind the
//! best head, agreement on the network), so every check of a pool shares one [`PoolView`]: the
//! latest observation of each node and what the pool remembers. Judged alone (as Pingora's own
//! `LoadBalancer` calls it, one backend at a time), a node is judged against the latest
//! observations of the others. A driver that probes the whole pool at once (the gateway's monitor)
//! opens a round first ([`PoolView::begin_round`]): each check of the round then waits until the
//! last one arrives, and all are judged together on one set of observations.
//!
//! What identifies a node travels in the Pingora `Backend`'s `ext` as a [`NodeSpec`]; the
//! `Backend`'s address is where the probe goes (the address the traffic goes to), whatever the
//! URL's host name resolves to. A backend without a `NodeSpec` is probed at `http://{addr}/`.
//!
//! This file holds the two implementors. The pool view is in `view` (its rounds in
//! `view/round.rs`), the node spec, markers and settings in `spec`; both are re-exported here, so
//! a driver names everything as `health::check::...`.
//!
//! ```no_run
//! use pingora::lb::{selection::RoundRobin, LoadBalancer};
//! use ssv_ha::health::check::{CheckSettings, ExecutionCheck};
//!
//! let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["127.0.0.1:8545", "127.0.0.1:8546"])?;
//! lb.set_health_check(Box::new(ExecutionCheck::new(CheckSettings::execution())));
//! # Ok::<(), std::io::Error>(())
//! ```

pub use super::spec::{ByName, CheckSettings, NodeSpec, Started, Unresolved};
pub use super::view::{no_answer, HealthObserver, Observation, PoolView, Report};

use crate::config::model::PoolKind;
use async_trait::async_trait;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;

/// The health check of an execution pool (geth, Nethermind, Reth, ...): syncing, peers, head
/// lag behind the pool's best, head age, chain id.
pub struct ExecutionCheck {
    view: PoolView,
}

/// The health check of a consensus pool (Lighthouse, Teku, Lodestar, ...): syncing, optimistic,
/// execution layer offline, peers, slot lag behind the pool's best and the wall clock, genesis.
pub struct ConsensusCheck {
    view: PoolView,
}

impl ExecutionCheck {
    pub fn new(settings: CheckSettings) -> Self {
        ExecutionCheck {
            view: PoolView::new(PoolKind::Execution, settings),
        }
    }

    /// A check on a view its driver keeps (to open rounds and read reports).
    pub fn on(view: PoolView) -> Self {
        ExecutionCheck { view }
    }

    /// The pool state this check shares with the others of its pool.
    pub fn view(&self) -> &PoolView {
        &self.view
    }
}

impl ConsensusCheck {
    pub fn new(settings: CheckSettings) -> Self {
        ConsensusCheck {
            view: PoolView::new(PoolKind::Consensus, settings),
        }
    }

    /// A check on a view its driver keeps (to open rounds and read reports).
    pub fn on(view: PoolView) -> Self {
        ConsensusCheck { view }
    }

    /// The pool state this check shares with the others of its pool.
    pub fn view(&self) -> &PoolView {
        &self.view
    }
}

/// Both checks are their pool's [`PoolView`] seen through the trait: each hook hands over to it.
macro_rules! checks_through_the_view {
    ($($check:ty),+) => {$(
        #[async_trait]
        impl HealthCheck for $check {
            async fn check(&self, target: &Backend) -> pingora::Result<()> {
                self.view.check(target).await
            }

            async fn health_status_change(&self, target: &Backend, healthy: bool) {
                self.view.status_changed(target, healthy);
            }

            fn backend_summary(&self, target: &Backend) -> String {
                self.view.summary(target)
            }

            fn health_threshold(&self, success: bool) -> usize {
                self.view.threshold(success)
            }
        }
    )+};
}

checks_through_the_view!(ExecutionCheck, ConsensusCheck);

impl PoolView {
    /// The check of this pool's kind on this view, for a driver that holds the view.
    pub fn check_for_kind(&self) -> Box<dyn HealthCheck + Send + Sync> {
        match self.kind() {
            PoolKind::Execution => Box::new(ExecutionCheck::on(self.clone())),
            PoolKind::Consensus => Box::new(ConsensusCheck::on(self.clone())),
        }
    }
}
