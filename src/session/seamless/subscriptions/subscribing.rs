//! What the session does with the client's subscriptions: binds the ones a backend made, drops
//! the ones the client or the backend ended, and on a move binds each to the new backend's id
//! and says what it missed ([`Gap`]). The types are [`super::subscription`]'s.

use super::budget::counted;
use super::log_memory::LogMemory;
use super::state::SessionState;
use super::subscription::{Gap, Progress, Subscription, Topic};
use crate::jsonrpc;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::VecDeque;

impl SessionState {
    /// A subscription the backend made for the client: bound, and for the first `logs` one the
    /// gateway's own calls that follow it.
    pub(super) fn subscribed(
        &mut self,
        client_sub: String,
        backend_sub: String,
        params: Option<Box<RawValue>>,
    ) {
        let logs = params
            .as_deref()
            .and_then(jsonrpc::array)
            .and_then(|p| {
                p.first()
                    .and_then(|k| jsonrpc::string(k))
                    .map(|k| k == "logs")
            })
            .unwrap_or(false);
        self.bind(client_sub.clone(), backend_sub, params);
        if !logs {
            return;
        }
        self.wants_hidden = true;
        if self.hidden.is_none() && self.hidden_call.is_none() {
            let id = self.own_id();
            self.hidden_call = Some(id);
            self.requests.push(
                json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": ["newHeads"]})
                    .to_string()
                    .into_bytes(),
            );
        }
        // Blocks from the current head on reach the subscription: a gap fill starts there at
        // the earliest.
        let id = self.own_id();
        self.started.insert(id, client_sub);
        self.requests.push(
            json!({"jsonrpc": "2.0", "id": id, "method": "eth_getBlockByNumber", "params": ["latest", false]})
                .to_string()
                .into_bytes(),
        );
    }

    /// The id the client gets for a new subscription: the backend's, unless the client already
    /// holds that id (from an earlier backend).
    pub(super) fn issue(&mut self, backend_sub: &str) -> String {
        if !self.subs.contains_key(backend_sub) {
            return backend_sub.to_string();
        }
        loop {
            self.issued += 1;
            let id = format!("0x55{:030x}", self.issued);
            if !self.subs.contains_key(&id) {
                return id;
            }
        }
    }

    fn bind(&mut self, client_sub: String, backend_sub: String, params: Option<Box<RawValue>>) {
        let kind = params.as_deref().and_then(jsonrpc::array).and_then(|p| {
            p.first()
                .and_then(|k| jsonrpc::string(k))
                .map(Cow::into_owned)
        });
        let progress = match kind.as_deref() {
            Some("newHeads") => Progress::Heads {
                given: VecDeque::new(),
            },
            Some("logs") => Progress::Logs {
                resume_from: None,
                delivered: LogMemory::default(),
            },
            _ => Progress::Other,
        };
        let logs = matches!(progress, Progress::Logs { .. });
        self.by_backend
            .insert(backend_sub.clone(), client_sub.clone());
        let sub = Subscription {
            params,
            backend_id: backend_sub,
            progress,
        };
        self.subs_bytes += sub.bytes(&client_sub);
        if let Some(old) = self.subs.insert(client_sub.clone(), sub) {
            self.subs_bytes = self.subs_bytes.saturating_sub(old.bytes(&client_sub));
            self.logs_bytes = self.logs_bytes.saturating_sub(old.progress.log_bytes());
        }
        if logs {
            // One more shares the session's log memory: each holds its smaller share now.
            let share = self.log_share();
            for sub in self.subs.values_mut() {
                if let Progress::Logs { delivered, .. } = &mut sub.progress {
                    counted(&mut self.logs_bytes, delivered, |d| d.fit(share));
                }
            }
        }
    }

    pub(super) fn drop_sub(&mut self, client_sub: &str) {
        if let Some(sub) = self.subs.remove(client_sub) {
            self.subs_bytes = self.subs_bytes.saturating_sub(sub.bytes(client_sub));
            self.logs_bytes = self.logs_bytes.saturating_sub(sub.progress.log_bytes());
            self.by_backend.remove(&sub.backend_id);
        }
    }

    /// Whether the gateway's own `newHeads` subscription is to be made on the next backend.
    pub fn wants_hidden(&self) -> bool {
        self.wants_hidden
    }

    /// Every subscription and where its gap starts, for the move to another backend.
    pub fn gaps(&self) -> Vec<Gap> {
        self.subs
            .iter()
            .map(|(client_sub, sub)| {
                let (topic, from) = match &sub.progress {
                    Progress::Heads { given } => {
                        (Topic::Heads, given.back().map(|(l, _)| l.saturating_add(1)))
                    }
                    Progress::Logs { resume_from, .. } => (
                        Topic::Logs {
                            filter: params_value(&sub.params)
                                .get(1)
                                .cloned()
                                .unwrap_or_else(|| json!({})),
                        },
                        *resume_from,
                    ),
                    Progress::Other => (Topic::Other, None),
                };
                Gap {
                    client_sub: client_sub.clone(),
                    topic,
                    from,
                }
            })
            .collect()
    }

    /// The `eth_subscribe` parameters of each subscription, to create them again.
    pub fn subscriptions(&self) -> Vec<(String, Value)> {
        self.subs
            .iter()
            .map(|(id, sub)| (id.clone(), params_value(&sub.params)))
            .collect()
    }

    /// After a move: the subscriptions now live on the new backend under these ids.
    pub fn rebind(&mut self, new_ids: &[(String, String)], hidden: Option<String>) {
        self.hidden = hidden;
        self.by_backend.clear();
        for (client_sub, backend_sub) in new_ids {
            if let Some(sub) = self.subs.get_mut(client_sub) {
                self.subs_bytes = self.subs_bytes.saturating_sub(sub.bytes(client_sub));
                sub.backend_id = backend_sub.clone();
                self.subs_bytes += sub.bytes(client_sub);
                self.by_backend
                    .insert(backend_sub.clone(), client_sub.clone());
            }
        }
    }
}

/// A subscription's parameters as a value (on a move: to create it again, to fill its gap).
fn params_value(params: &Option<Box<RawValue>>) -> Value {
    params
        .as_ref()
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn after_a_move_notifications_and_unsubscribe_keep_the_clients_id() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xaaa");
        assert_eq!(sub, "0xaaa");
        s.rebind(&[(sub.clone(), "0xbbb".into())], None);
        let out = text(&s.backend_message(&note("0xbbb", head(5))).pop().unwrap());
        assert_eq!(out["params"]["subscription"], "0xaaa");
        assert!(
            s.backend_message(&note("0xaaa", head(6))).is_empty(),
            "the old backend's id is gone"
        );
        let sent = text(&to_backend(s.client_message(
            br#"{"jsonrpc":"2.0","id":9,"method":"eth_unsubscribe","params":["0xaaa"]}"#,
        )));
        assert_eq!(sent["params"][0], "0xbbb");
        let back = json!({"jsonrpc":"2.0","id":sent["id"],"result":true}).to_string();
        assert_eq!(
            text(&s.backend_message(back.as_bytes()).pop().unwrap())["id"],
            9
        );
        assert!(s.subscriptions().is_empty());
        // A new backend may hand out an id the client already holds for another subscription.
        let one = subscribe(&mut s, 2, json!(["newHeads"]), "0x1");
        s.rebind(&[(one.clone(), "0x2".into())], None);
        let two = subscribe(&mut s, 3, json!(["syncing"]), "0x1");
        assert_ne!(one, two);
    }

    #[test]
    fn a_quiet_logs_filter_moves_with_the_heads_of_the_gateways_own_subscription() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {"address": "0xcc"}]), "0xl");
        let own: Vec<Value> = s.take_requests().iter().map(|r| text(r)).collect();
        let hidden = own.iter().find(|r| r["method"] == "eth_subscribe").unwrap();
        assert_eq!(hidden["params"], json!(["newHeads"]));
        let answer = json!({"jsonrpc":"2.0","id":hidden["id"],"result":"0xh"}).to_string();
        assert!(
            s.backend_message(answer.as_bytes()).is_empty(),
            "not the client's"
        );
        for n in 100..=110 {
            assert!(
                s.backend_message(&note("0xh", head(n))).is_empty(),
                "its heads are not the client's"
            );
        }
        assert_eq!(
            s.gaps()[0].from,
            Some(109),
            "the gap starts at the last head, not at 100"
        );
        assert_eq!(s.heads_seen()[0], (110, format!("0x{:064x}", 110)));
        assert!(s.wants_hidden());
        let _ = sub;
    }
}
