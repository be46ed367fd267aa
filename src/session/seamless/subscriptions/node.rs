//! Each message of the backend's on its way to the client: an answer with the client's id put
//! back, a notification under the client's subscription id (or dropped: one the client has, one
//! of a subscription it dropped, the gateway's own), and the answers to the gateway's own calls.

use super::state::{CallKind, SessionState};
use super::subscription::Progress;
use super::window::head_of;
use super::wire::{hex_u64_raw, join_array};
use crate::jsonrpc::{self, Message, Object, Shape};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What becomes of one message object of the backend's.
enum Pass {
    /// The client does not see it.
    Drop,
    /// The client gets it as the node sent it.
    Keep,
    /// The client gets these bytes (an id put back).
    Bytes(Vec<u8>),
}

impl SessionState {
    /// The backend's message as it goes to the client, if the client is to see it (not a
    /// notification it has, or one for a subscription it dropped, or the gateway's own): the
    /// node's bytes with only an id or a subscription id put back.
    ///
    /// Before it, the notifications the gateway makes itself (logs of a block the new backend
    /// replaced, taken back).
    pub fn backend_message(&mut self, message: &[u8]) -> Vec<Vec<u8>> {
        self.waiting = self.waiting.saturating_sub(message.len());
        let out = self.backend_message_alone(message);
        let mut all = std::mem::take(&mut self.extra);
        all.extend(out);
        all
    }

    fn backend_message_alone(&mut self, message: &[u8]) -> Option<Vec<u8>> {
        let Ok(text) = std::str::from_utf8(message) else {
            return Some(message.to_vec());
        };
        match Message::read(text) {
            Ok(Shape::Object(object)) => match self.answer_or_notification(text, &object) {
                Pass::Drop => None,
                Pass::Keep => Some(message.to_vec()),
                Pass::Bytes(bytes) => Some(bytes),
            },
            Ok(Shape::Array(items)) if !items.is_empty() => {
                let mut out: Vec<Cow<[u8]>> = Vec::with_capacity(items.len());
                for raw in &items {
                    let pass = match Message::element(raw) {
                        Some(object) => self.answer_or_notification(raw.get(), &object),
                        None => Pass::Keep,
                    };
                    match pass {
                        Pass::Drop => {}
                        Pass::Keep => out.push(Cow::Borrowed(raw.get().as_bytes())),
                        Pass::Bytes(bytes) => out.push(Cow::Owned(bytes)),
                    }
                }
                if out.is_empty() {
                    return None;
                }
                let parts: Vec<&[u8]> = out.iter().map(|s| s.as_ref()).collect();
                Some(join_array(&parts))
            }
            _ => Some(message.to_vec()),
        }
    }

    /// One object of the backend's (`text`, read as `object`).
    fn answer_or_notification(&mut self, text: &str, object: &Message) -> Pass {
        let notification = object
            .method
            .is_some_and(|m| jsonrpc::string(m).as_deref() == Some("eth_subscription"));
        if notification {
            return self.notification(text, object);
        }
        let gateway_id = object
            .id
            .and_then(|id| serde_json::from_str::<u64>(id.get()).ok());
        let result = object.result;
        if gateway_id.is_some() && gateway_id == self.hidden_call {
            self.hidden_call = None;
            self.hidden = result.and_then(jsonrpc::string).map(Cow::into_owned);
            return Pass::Drop;
        }
        if let Some(client_sub) = gateway_id.and_then(|id| self.started.remove(&id)) {
            // The head when a `logs` subscription began: its gap can start no earlier. It is
            // the number of a block the backend sent, not an `eth_blockNumber` claim: one wrong
            // answer would hold the resume point above the chain for the rest of the session.
            let head = result
                .and_then(|block| Object::read(block.get()))
                .and_then(|block| block.get("number"))
                .and_then(hex_u64_raw);
            if let (Some(head), Some(sub)) = (head, self.subs.get_mut(&client_sub)) {
                if let Progress::Logs {
                    resume_from,
                    delivered,
                } = &mut sub.progress
                {
                    *resume_from = Some(resume_from.map_or(head, |r| r.max(head)));
                    // Logs of earlier blocks are not the subscription's (a backend behind, on
                    // another branch, importing them after a move).
                    let first = delivered
                        .blocks
                        .front()
                        .map_or(head, |b| b.number.min(head));
                    delivered.starts_at = first;
                }
            }
            return Pass::Drop;
        }
        let Some(id) = object.id else {
            return Pass::Keep;
        };
        let Some(call) = gateway_id.and_then(|id| self.answered(id)) else {
            // Not an answer to a request of the client's in flight. Under `null`, the backend's
            // answer to something it could not read: passed as is. Under any other id, one of
            // the gateway's own calls that came late, or a node's repeat: its id is the
            // gateway's numbering, which may be the id of another of the client's requests,
            // so the client never sees it.
            return if id.get() == "null" {
                Pass::Keep
            } else {
                Pass::Drop
            };
        };
        let mut edits: Vec<(&RawValue, Vec<u8>)> = Vec::with_capacity(2);
        match call.kind {
            CallKind::Plain => {}
            CallKind::NotARequest => return Pass::Bytes(call.client_id.as_bytes().to_vec()),
            CallKind::Subscribe { params } => {
                if let Some((raw, backend_sub)) =
                    result.and_then(|r| Some((r, jsonrpc::string(r)?.into_owned())))
                {
                    let client_sub = self.issue(&backend_sub);
                    if client_sub != backend_sub {
                        edits.push((raw, jsonrpc::json_string(&client_sub).into_bytes()));
                    }
                    self.subscribed(client_sub, backend_sub, params);
                }
            }
            CallKind::Unsubscribe { client_sub } => {
                if result.is_some_and(|r| r.get() == "true") {
                    self.drop_sub(&client_sub);
                }
            }
        }
        edits.push((id, call.client_id.as_bytes().to_vec()));
        let spliced: Vec<(&RawValue, &[u8])> =
            edits.iter().map(|(at, b)| (*at, b.as_slice())).collect();
        Pass::Bytes(jsonrpc::splice(text, &spliced))
    }

    /// An `eth_subscription` notification of the backend's.
    fn notification(&mut self, text: &str, object: &Message) -> Pass {
        let Some(params) = object.params.and_then(|p| Object::read(p.get())) else {
            return Pass::Drop;
        };
        let (Some(sub), Some(result)) = (params.get("subscription"), params.get("result")) else {
            return Pass::Drop;
        };
        let Some(backend_sub) = jsonrpc::string(sub) else {
            return Pass::Drop;
        };
        if self.hidden.as_deref() == Some(backend_sub.as_ref()) {
            if let Some((number, hash)) = head_of(result) {
                self.saw_head(number, &hash);
            }
            return Pass::Drop;
        }
        let Some(client_sub) = self.by_backend.get(backend_sub.as_ref()).cloned() else {
            return Pass::Drop;
        };
        if !self.admit(&client_sub, result) {
            return Pass::Drop;
        }
        if client_sub == backend_sub {
            return Pass::Keep;
        }
        let id = jsonrpc::json_string(&client_sub);
        Pass::Bytes(jsonrpc::splice(text, &[(sub, id.as_bytes())]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_and_notifications_keep_the_nodes_bytes() {
        let mut s = SessionState::default();
        let sent = text(&to_backend(s.client_message(
            br#"{"id":"client-1","jsonrpc":"2.0","method":"eth_call","params":[]}"#,
        )));
        let answer = format!(
            r#"{{"result" : {{"z":1,"a":[1,2.50]}}, "id" : {}, "jsonrpc":"2.0"}}"#,
            sent["id"]
        );
        assert_eq!(
            s.backend_message(answer.as_bytes()),
            vec![
                br#"{"result" : {"z":1,"a":[1,2.50]}, "id" : "client-1", "jsonrpc":"2.0"}"#
                    .to_vec()
            ],
            "only the id is put back"
        );
        // A notification under the client's id (the same as the backend's): byte for byte.
        let sub = subscribe(&mut s, 2, json!(["newHeads"]), "0xa");
        let n = br#"{"params":{"result":{"number":"0x5","hash":"0x05","x":[]},"subscription":"0xa"},"method":"eth_subscription","jsonrpc":"2.0"}"#;
        assert_eq!(s.backend_message(n), vec![n.to_vec()]);
        // After a move, only the subscription id changes.
        s.rebind(&[(sub, "0xb".into())], None);
        let n = br#"{"params":{"result":{"number":"0x6","hash":"0x06"},"subscription":"0xb"},"method":"eth_subscription","jsonrpc":"2.0"}"#;
        assert_eq!(
            s.backend_message(n),
            vec![br#"{"params":{"result":{"number":"0x6","hash":"0x06"},"subscription":"0xa"},"method":"eth_subscription","jsonrpc":"2.0"}"#.to_vec()]
        );
        // A batch answer: each element's id put back, the elements as the node wrote them.
        let sent = text(&to_backend(s.client_message(
            br#"[{"jsonrpc":"2.0","id":[],"method":"eth_chainId"},{"jsonrpc":"2.0","id":"b","method":"eth_chainId"}]"#,
        )));
        assert_eq!(sent.as_array().unwrap().len(), 2);
    }
}
