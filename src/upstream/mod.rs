//! Backends and pools at run time: resolved peers, health state read lock-free on the request
//! path, the selection policies, the [`routing`] tables that pick a pool, the gateway's own
//! [`exchange`] with a backend, and the [`monitor`] that drives their health checks.

pub mod backend;
pub mod cache;
pub mod connections;
pub mod exchange;
pub mod monitor;
pub mod pool;
pub mod routing;
pub mod selection;
pub mod session;
mod traffic;

pub use backend::Backend;
pub use pool::Pool;
pub use traffic::Traffic;
