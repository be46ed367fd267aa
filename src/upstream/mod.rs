//! Backends and pools at run time: resolved peers, health state read lock-free on the request
//! path, and the selection policies.

pub mod backend;
pub mod pool;
pub mod selection;

pub use backend::Backend;
pub use pool::Pool;
