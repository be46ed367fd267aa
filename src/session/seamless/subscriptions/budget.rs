//! The bytes a session holds ([`SessionState::held_bytes`]) and the limits they are held to.

use super::log_memory::LogMemory;
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
    ///
    /// It is read on every message, so each part is a running count, kept by the code that
    /// changes what it counts.
    pub fn held_bytes(&self) -> usize {
        let held = self.in_flight_bytes()
            + self.subs_bytes
            + self.logs_bytes
            + self.heads_bytes
            + self.waiting;
        debug_assert_eq!(held, self.held_bytes_recounted(), "a running count drifted");
        held
    }

    /// [`SessionState::held_bytes`] summed afresh over the logs and heads held, which the
    /// running counts must equal.
    fn held_bytes_recounted(&self) -> usize {
        let logs: usize = self.subs.values().map(|s| s.progress.log_bytes()).sum();
        let heads: usize = self.heads_seen.iter().map(|(_, h, _)| head_bytes(h)).sum();
        self.in_flight_bytes() + self.subs_bytes + logs + heads + self.waiting
    }

    /// The bytes the session loop holds for this session now (the new backend's notifications
    /// waiting during a move), counted in [`SessionState::held_bytes`].
    pub fn set_waiting(&mut self, bytes: usize) {
        self.waiting = bytes;
    }
}

impl Progress {
    /// Bytes its log memory holds (only a `logs` subscription has one).
    pub(super) fn log_bytes(&self) -> usize {
        match self {
            Progress::Logs { delivered, .. } => delivered.bytes,
            _ => 0,
        }
    }
}

/// Bytes one head seen holds (number, hash and the move it was seen in).
pub(super) fn head_bytes(hash: &str) -> usize {
    size_of::<(u64, String, u64)>() + hash.len()
}

/// Runs `change` on a subscription's log memory; the session's count of log bytes
/// (`logs_bytes`) follows what it did.
pub(super) fn counted<R>(
    logs_bytes: &mut usize,
    memory: &mut LogMemory,
    change: impl FnOnce(&mut LogMemory) -> R,
) -> R {
    let before = memory.bytes;
    let out = change(memory);
    *logs_bytes = logs_bytes.saturating_sub(before) + memory.bytes;
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::window::HEADS_SEEN;
    use super::super::wire::hex;
    use super::*;
    use serde_json::json;

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

    /// The running counts of the logs and heads held against a sum over them afresh, after each
    /// step of a session that changes both every way the state does: logs delivered, taken
    /// back and forgotten, memories shrunk by a new subscription and trimmed after a move,
    /// heads past [`HEADS_SEEN`], reorgs, subscriptions dropped.
    #[test]
    fn the_running_counts_equal_a_recount() {
        let check = |s: &SessionState, step: &str| {
            assert_eq!(s.held_bytes(), s.held_bytes_recounted(), "after {step}");
        };
        let mut s = SessionState::default();
        let heads = subscribe(&mut s, 1, json!(["newHeads"]), "0xh");
        let logs = subscribe(&mut s, 2, json!(["logs", {}]), "0xl");
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xg"),
                _ => head(100),
            };
            let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            s.backend_message(answer.as_bytes());
        }
        check(&s, "the gateway's own calls");
        let data = format!("0x{}", "00".repeat(300 * 1024));
        let big = |block: u64, hash: &str, index: u64| {
            let mut l = log(block, hash, index);
            l["data"] = json!(data);
            l
        };
        for n in 101..=110 {
            let hash = format!("0x{n:064x}");
            s.backend_message(&note("0xl", big(n, &hash, 0)));
            s.backend_message(&note("0xh", head(n)));
            check(&s, &format!("block {n}"));
        }
        let other = subscribe(&mut s, 3, json!(["logs", {"address": "0x02"}]), "0xm");
        check(
            &s,
            "a second logs subscription shrinks the first one's memory",
        );
        let mut gone = big(110, &format!("0x{:064x}", 110), 0);
        gone["removed"] = json!(true);
        s.backend_message(&note("0xl", gone));
        check(&s, "a log removed");
        s.backend_message(&note("0xg", json!({"number": hex(108), "hash": "0xb108"})));
        check(&s, "a head that orphans blocks 108 on");
        s.backend_message(&note("0xl", big(107, "0xb107", 1)));
        check(&s, "a log of another block 107");
        s.take_back(&logs, 105);
        check(&s, "logs taken back");
        s.client_message(
            format!(
                r#"{{"jsonrpc":"2.0","id":9,"method":"eth_unsubscribe","params":["{other}"]}}"#
            )
            .as_bytes(),
        );
        s.on_move("ec-a", true);
        check(&s, "a move that drops a subscription");
        s.rebind(
            &[
                (heads.clone(), "0xh2".into()),
                (logs.clone(), "0xl2".into()),
            ],
            Some("0xg2".into()),
        );
        s.forget_heads_from(104);
        check(&s, "heads forgotten");
        s.saw_chain(&[(104, "0xc104".into()), (105, "0xc105".into())]);
        check(&s, "the new backend's chain");
        fill(
            &mut s,
            &logs,
            &[big(105, "0xc105", 0), big(106, "0xc106", 0)],
        );
        s.filled_to(106, 0);
        check(&s, "a fill, and the logs below the gap limit forgotten");
        for n in 107..=(107 + 2 * HEADS_SEEN as u64) {
            s.backend_message(&note("0xg2", head(n)));
        }
        check(&s, "more heads than are kept");
        let sent = text(&to_backend(
            s.client_message(
                format!(
                    r#"{{"jsonrpc":"2.0","id":10,"method":"eth_unsubscribe","params":["{logs}"]}}"#
                )
                .as_bytes(),
            ),
        ));
        let answer = json!({"jsonrpc":"2.0","id":sent["id"],"result":true}).to_string();
        s.backend_message(answer.as_bytes());
        check(&s, "the logs subscription dropped");
        assert_eq!(s.logs_bytes, 0, "no logs are held");
    }
}
