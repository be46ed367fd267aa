//! A pool's cache of answers that cannot change: the bounded store ([`AnswerCache`]), what a
//! backend's last health check tells it ([`Standing`]: the network and the finalized block), and
//! the consensus rules ([`beacon`]). The execution rules are [`crate::jsonrpc::cacheable`].
//!
//! An entry is keyed by the pool's agreed network (the store is the pool's own) and the request
//! (the method and raw params of a JSON-RPC call, or a `GET`'s path and query), and is filled
//! only by an answer from a backend whose last check was healthy on that same network. See
//! [the cache's page](../../../docs/reads.md#cache).

pub mod beacon;
mod request;
mod standing;
mod store;

pub use request::{look_up, takes_json, Asked, Fill, Lookup, CONSENSUS_VERSION};
pub use standing::Standing;
pub use store::{AnswerCache, CacheMetrics, Entry, ENTRY_OVERHEAD};
