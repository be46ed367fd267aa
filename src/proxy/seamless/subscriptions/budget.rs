//! The bytes a session holds ([`SessionState::held_bytes`]) and the limits they are held to.

use super::state::SessionState;
use super::subscription::Progress;
use std::mem::size_of;

/// Requests a session may have waiting for an answer; past it the client is not read until
/// answers come.
pub const MAX_IN_FLIGHT: usize = 1024;

/// One memory budget per session: the bytes its state holds ([`SessionState::held_bytes`]: the
/// requests in flight with the client's ids, the requests kept to send again, the
/// subscriptions, the remembered logs, the heads seen, and the new backend's notifications that
/// wait during a move). Past it the client is not read until answers come; the logs
/// ([`MAX_REMEMBERED_LOG_BYTES`]) and subscriptions ([`MAX_SUBSCRIPTION_BYTES`]) are bounded
/// well within it, so the requests in flight always have at least 7 MiB.
///
/// [`MAX_REMEMBERED_LOG_BYTES`]: super::log_memory::MAX_REMEMBERED_LOG_BYTES
/// [`MAX_SUBSCRIPTION_BYTES`]: super::client::MAX_SUBSCRIPTION_BYTES
pub const MAX_SESSION_BYTES: usize = 16 * 1024 * 1024;

impl SessionState {
    /// Bytes the requests in flight hold: the client's ids, the method names and the requests
    /// kept to send again.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Every byte the session's state holds: the requests in flight, the subscriptions, the
    /// remembered logs, the heads seen and what the session loop counted with
    /// [`SessionState::set_waiting`]. This is what counts against the listener's
    /// `max_held_bytes`, with the client's message being read.
    pub fn held_bytes(&self) -> usize {
        let logs: usize = self
            .subs
            .values()
            .map(|s| match &s.progress {
                Progress::Logs { delivered, .. } => delivered.bytes,
                _ => 0,
            })
            .sum();
        let heads: usize = self
            .heads_seen
            .iter()
            .map(|(_, hash, _)| size_of::<(u64, String, u64)>() + hash.len())
            .sum();
        self.in_flight_bytes() + self.subs_bytes + logs + heads + self.waiting
    }

    /// The bytes the session loop holds for this session now (the new backend's notifications
    /// waiting during a move), counted in [`SessionState::held_bytes`].
    pub fn set_waiting(&mut self, bytes: usize) {
        self.waiting = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_clients_ids_are_counted_and_given_back() {
        let mut s = SessionState::default();
        let id = format!("\"{}\"", "x".repeat(1 << 20));
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_sendRawTransaction","params":[]}}"#
        );
        let sent = text(&to_backend(s.client_message(request.as_bytes())));
        assert!(s.in_flight_bytes() > 1 << 20, "{}", s.in_flight_bytes());
        assert!(s.held_bytes() >= s.in_flight_bytes());
        let back =
            s.backend_message(format!(r#"{{"id":{},"result":"0x"}}"#, sent["id"]).as_bytes());
        assert_eq!(text(&back[0])["id"].as_str().unwrap().len(), 1 << 20);
        assert_eq!(s.in_flight_bytes(), 0);
        s.set_waiting(1000);
        let waiting = s.held_bytes();
        s.backend_message(&[b' '; 400]);
        assert_eq!(
            s.held_bytes(),
            waiting - 400,
            "a waiting message is taken off as it passes"
        );
    }
}
