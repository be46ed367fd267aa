//! Requests their backend did not answer: on a move, those safe to repeat go to the next backend
//! and the others are answered with [`NOT_REPEATED`]; an answer too large fails its request (and
//! the rest of its batch) with the gateway's error under the client's ids.

use super::state::{CallKind, InFlight, SessionState};
use super::wire::{error_answer, join_array, NOT_A_REQUEST};
use std::collections::BTreeMap;

/// A JSON-RPC error code for a request the gateway answers itself after a move: the server
/// error range (-32000 to -32099) of JSON-RPC 2.0.
pub const NOT_REPEATED: i64 = -32003;

/// What is sent again on the next backend, besides the reads ([`crate::jsonrpc::reads`]): a
/// subscription (made again on the next node), and the gateway's own stand-ins for a denied call
/// and a message that was not a request, which change nothing. Everything else (a transaction, a
/// signature, a filter created on the old node) is answered with [`NOT_REPEATED`] instead.
const ALSO_REPEATED: [&str; 3] = [
    "eth_subscribe",
    crate::session::relay::DENIED_PLACEHOLDER,
    NOT_A_REQUEST,
];

/// Whether a request may go to the next backend when its own failed before answering.
pub fn safe_to_repeat(method: &str) -> bool {
    crate::jsonrpc::reads::is_read(method) || ALSO_REPEATED.contains(&method)
}

impl SessionState {
    /// The requests in flight when the backend went: those safe to repeat, to send again on the
    /// next one (as sent, one message per request or batch), and the client's answers for the
    /// others (an error saying they were not repeated; an `eth_unsubscribe` is done, as the
    /// subscription is not created again).
    pub fn on_move(&mut self, backend: &str, repeat: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut resend = Vec::new();
        let mut answers = Vec::new();
        // The old backend will not answer the gateway's own calls, and its ids mean nothing to
        // the next one.
        self.started.clear();
        self.requests.clear();
        self.hidden = None;
        self.hidden_call = None;
        let why = if repeat {
            Unanswered::Moved
        } else {
            Unanswered::Closed
        };
        let calls = std::mem::take(&mut self.in_flight);
        self.in_flight_bytes = 0;
        let mut batches: BTreeMap<u64, Vec<(u64, InFlight)>> = BTreeMap::new();
        for (id, call) in calls {
            if let Some(batch) = call.batch {
                batches.entry(batch).or_default().push((id, call));
                continue;
            }
            match (&call.kind, &call.sent) {
                (CallKind::Unsubscribe { client_sub }, _) => {
                    // The subscription is not created again: it is gone, as asked.
                    let known = self.subs.contains_key(client_sub);
                    self.drop_sub(&client_sub.clone());
                    answers.push(
                        format!(
                            r#"{{"jsonrpc":"2.0","id":{},"result":{known}}}"#,
                            call.client_id
                        )
                        .into_bytes(),
                    );
                }
                (_, Some(sent)) if repeat => {
                    resend.push(sent.to_vec());
                    self.keep(id, call);
                }
                _ => answers.push(not_answered(&call, backend, why)),
            }
        }
        for members in batches.into_values() {
            let repeatable = repeat
                && members.iter().all(|(_, c)| {
                    c.sent.is_some() && !matches!(c.kind, CallKind::Unsubscribe { .. })
                });
            if repeatable {
                let sent: Vec<&[u8]> = members
                    .iter()
                    .filter_map(|(_, c)| c.sent.as_deref())
                    .collect();
                resend.push(join_array(&sent));
                for (id, call) in members {
                    self.keep(id, call);
                }
            } else {
                let errors: Vec<Vec<u8>> = members
                    .iter()
                    .map(|(_, c)| not_answered(c, backend, why))
                    .collect();
                let errors: Vec<&[u8]> = errors.iter().map(Vec::as_slice).collect();
                answers.push(join_array(&errors));
            }
        }
        (resend, answers)
    }

    /// Takes the request sent under `gateway_id` out of those in flight, with the rest of its
    /// batch, and returns the client's answer: a JSON-RPC error (`code`, `message`) under the
    /// client's id, an array of them for a batch. `None` when no request of the client's has
    /// that id (one of the gateway's own, or one answered already).
    pub fn fail_request(&mut self, gateway_id: u64, code: i64, message: &str) -> Option<Vec<u8>> {
        let call = self.answered(gateway_id)?;
        let error = |call: &InFlight| match call.kind {
            // The gateway's own answer, whatever the node did.
            CallKind::NotARequest => call.client_id.as_bytes().to_vec(),
            _ => error_answer(&call.client_id, code, message),
        };
        let Some(batch) = call.batch else {
            return Some(error(&call));
        };
        let others: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.batch == Some(batch))
            .map(|(id, _)| *id)
            .collect();
        let mut errors = vec![error(&call)];
        errors.extend(
            others
                .into_iter()
                .filter_map(|id| self.answered(id))
                .map(|c| error(&c)),
        );
        let parts: Vec<&[u8]> = errors.iter().map(Vec::as_slice).collect();
        Some(join_array(&parts))
    }
}

/// Why a request in flight on a backend the session left is answered by the gateway.
#[derive(Debug, Clone, Copy)]
enum Unanswered {
    /// The backend was taken out of rotation; the request might have taken effect.
    Moved,
    /// The backend closed the connection with the request in flight: the request may be why
    /// (an answer too large, a call that brings the node down), so it goes nowhere else.
    Closed,
}

fn not_answered(call: &InFlight, backend: &str, why: Unanswered) -> Vec<u8> {
    if matches!(call.kind, CallKind::NotARequest) {
        // The gateway's answer, whatever the backend did.
        return call.client_id.as_bytes().to_vec();
    }
    let message = match why {
        Unanswered::Moved => format!(
            "backend {backend} failed before answering {}; the gateway moved this session to another backend and did not send it again, as it may have taken effect (check, then send it again)",
            call.method
        ),
        Unanswered::Closed => format!(
            "backend {backend} closed the connection before answering {}; the gateway moved this session to another backend and did not send it again, as it may be why (an answer too large, say)",
            call.method
        ),
    };
    error_answer(&call.client_id, NOT_REPEATED, &message)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::{json, Value};
    use std::mem::size_of;

    #[test]
    fn in_flight_requests_are_sent_again_when_safe_and_answered_otherwise() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xa");
        s.client_message(
            br#"{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x0","latest"]}"#,
        );
        s.client_message(
            br#"{"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
        );
        s.client_message(br#"[{"jsonrpc":"2.0","id":4,"method":"eth_call"},{"jsonrpc":"2.0","id":5,"method":"eth_chainId"}]"#);
        s.client_message(br#"[{"jsonrpc":"2.0","id":6,"method":"eth_call"},{"jsonrpc":"2.0","id":7,"method":"eth_sendTransaction"}]"#);
        s.client_message(
            format!(r#"{{"jsonrpc":"2.0","id":8,"method":"eth_unsubscribe","params":["{sub}"]}}"#)
                .as_bytes(),
        );
        let (resend, answers) = s.on_move("ec-a", true);
        assert_eq!(resend.len(), 2, "the balance and the safe batch");
        assert_eq!(text(&resend[0])["method"], "eth_getBalance");
        assert_eq!(text(&resend[1]).as_array().unwrap().len(), 2);
        let answers: Vec<Value> = answers.iter().map(|a| text(a)).collect();
        assert!(answers
            .iter()
            .any(|a| a["id"] == 3 && a["error"]["code"] == NOT_REPEATED));
        assert!(answers.iter().any(|a| a["id"] == 8 && a["result"] == true));
        let batch = answers.iter().find(|a| a.is_array()).unwrap();
        assert_eq!(batch.as_array().unwrap().len(), 2);
        assert!(s.subscriptions().is_empty(), "unsubscribed during the move");
        assert_eq!(
            s.in_flight(),
            3,
            "resent requests still wait for their answer"
        );
    }

    #[test]
    fn a_backend_that_closed_gets_nothing_repeated_and_kept_requests_are_counted() {
        let mut s = SessionState::default();
        s.client_message(br#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}"#);
        s.client_message(
            br#"{"jsonrpc":"2.0","id":2,"method":"eth_sendRawTransaction","params":["0x00"]}"#,
        );
        let kept = s.in_flight_bytes();
        let entries = 2 * size_of::<(u64, InFlight)>();
        assert!(
            kept > entries + 50 && kept < entries + 150,
            "the repeatable request is kept, with both ids and names: {kept}"
        );
        let (resend, answers) = s.on_move("ec-a", false);
        assert!(resend.is_empty(), "it may be why the backend closed");
        assert_eq!(answers.len(), 2);
        assert!(text(&answers[0])["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed the connection"));
        assert_eq!((s.in_flight(), s.in_flight_bytes()), (0, 0));
    }
}
