//! Backends and pools at run time: resolved peers, health state read lock-free on the request
//! path, the selection policies, and the [`monitor`] that drives their health checks.

pub mod backend;
pub mod connections;
pub mod exchange;
pub mod monitor;
pub mod pool;
pub mod routing;
pub mod selection;
pub mod session;

pub use backend::Backend;
pub use pool::Pool;

/// What a request is, as far as choosing its upstream connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traffic {
    /// A request and its response: pooled connections, the response timeout.
    #[default]
    Plain,
    /// A server-sent event stream: a cuttable connection, the idle timeout.
    EventStream,
    /// A WebSocket upgrade: the backend's `ws_url`, a cuttable connection, the idle timeout.
    WebSocket,
}
