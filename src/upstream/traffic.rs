//! The kinds of traffic, which decide a request's upstream connection and timeouts.

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
