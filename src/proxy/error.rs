//! The gateway's own error kinds: the hooks end a request with them, and the error reply
//! ([`super::reply`]) and the error log tell them apart by kind.

use pingora::ErrorType;

/// A request body over `limits.max_body_bytes`.
pub(super) const TOO_LARGE: ErrorType = ErrorType::Custom("request body too large");
/// A client's WebSocket session ended by the gateway (a frame too large or against the protocol).
pub(super) const WEBSOCKET_REFUSED: ErrorType = ErrorType::Custom("WebSocket frame refused");
/// The error a request ends with when its pool has no healthy backend left to try.
pub(super) const NO_BACKEND: ErrorType = ErrorType::Custom("no healthy backend");
