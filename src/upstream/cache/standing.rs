//! What a backend's last health check tells the cache: the network it is on and, for execution
//! nodes, its chain id and finalized block.

use crate::health::Facts;
use crate::jsonrpc::cacheable::Known;
use std::sync::Arc;

/// A backend's standing for the cache, from a healthy check; a backend without one (unhealthy,
/// unchecked, its network unknown) neither fills the cache nor names the pool's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The network, as the cache key names it: `chain 1`, or `genesis 0x..root 0x..fork`.
    pub network: Arc<str>,
    pub known: Known,
}

impl Standing {
    /// From what a healthy check saw; `None` when it did not tell the network.
    pub fn of(facts: &Facts) -> Option<Standing> {
        match facts {
            Facts::Execution(f) => Some(Standing {
                network: format!("chain {}", f.chain_id?).into(),
                known: Known {
                    chain_id: f.chain_id,
                    finalized: f.finalized,
                },
            }),
            Facts::Consensus(f) => {
                let genesis = f.genesis.as_ref()?;
                Some(Standing {
                    network: format!(
                        "genesis {} {}",
                        genesis.validators_root, genesis.fork_version
                    )
                    .into(),
                    known: Known::default(),
                })
            }
        }
    }
}
