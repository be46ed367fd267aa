//! The calls of a move: a seamless WebSocket session carried over to a new backend's WebSocket,
//! step by step ([`Carry::over`]): resubscribe, survey the new backend's chain (which finds what
//! the client must take back), fill the heads and the logs of the gap, then deliver it all to
//! the client. The decisions are [`carry`]'s pure steps; this file makes their calls and, until
//! the last step, shows the client nothing.

use super::super::backend::BackendSocket;
use super::super::carry::{self, Ask, Findings, MovePlan, RawText, Survey};
use super::super::subscriptions::{hex, hex_u64, SessionState};
use super::client::to_client;
use crate::jsonrpc::{self, Shape};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::Message;

/// Bytes of the new backend's messages that wait while a session moves.
pub const MAX_WAITING_BYTES: usize = 16 * 1024 * 1024;

/// The longest a move may take, every backend tried included: the client's frames are not read
/// while it lasts (a ping waits for its pong), so past it the session closes (1012) instead.
pub const MOVE_DEADLINE: Duration = Duration::from_secs(10);

/// Why a move to one backend did not work.
pub(super) enum MoveFailed {
    /// That backend failed: the next one is tried.
    Backend(String),
    /// The session cannot be carried anywhere: it closes with this reason.
    Session(String),
}

/// Carries a session's subscriptions over to a new backend's WebSocket.
pub(super) struct Carry<'a> {
    pub(super) upstream: &'a mut BackendSocket,
    pub(super) state: &'a mut SessionState,
    /// The backend's messages that came while the gateway waited for its own answers.
    pub(super) waiting: Vec<Message>,
    pub(super) waiting_bytes: usize,
    /// How long one call may take.
    pub(super) timeout: Duration,
    /// When the whole move must be done.
    pub(super) deadline: tokio::time::Instant,
}

/// The subscriptions created again on the new backend: its ids by the client's, and the id of
/// the gateway's own `newHeads`, if the session needs one.
struct Resubscribed {
    new_ids: Vec<(String, String)>,
    hidden: Option<String>,
}

impl Carry<'_> {
    /// Creates the subscriptions again, takes back logs of blocks the new backend replaced, and
    /// fills the gap; the client sees the outcome only once every call succeeded.
    pub(super) async fn over(
        &mut self,
        session: &mut Session,
        max_gap: u64,
    ) -> Result<(), MoveFailed> {
        let resubscribed = self.resubscribe().await?;
        let found = self.survey().await?;
        let plan = carry::plan(self.state, &found, max_gap).map_err(MoveFailed::Session)?;
        // The gap's content, fetched before the client sees any of it.
        let mut fetched = carry::Fetched::default();
        self.fill_heads(&plan, &mut fetched).await?;
        self.fill_logs(&plan, &mut fetched).await?;
        // Everything is in hand: the session is the new backend's.
        let out = carry::apply(
            self.state,
            &plan,
            &resubscribed.new_ids,
            resubscribed.hidden,
            &fetched,
            max_gap,
        );
        for message in out {
            to_client(session, OpCode::Data(Data::Text), &message)
                .await
                .map_err(|e| MoveFailed::Session(format!("the client went away: {e}")))?;
        }
        Ok(())
    }

    /// Resubscribe: the session's subscriptions, and the gateway's own `newHeads`, created again
    /// ([`carry::resubscriptions`]).
    async fn resubscribe(&mut self) -> Result<Resubscribed, MoveFailed> {
        let mut resubscribed = Resubscribed {
            new_ids: Vec::new(),
            hidden: None,
        };
        for (client_sub, params) in carry::resubscriptions(self.state) {
            let id = self.call("eth_subscribe", params).await?;
            let Some(id) = id.as_str() else {
                return Err(MoveFailed::Backend(format!(
                    "eth_subscribe answered {id}, not a subscription id"
                )));
            };
            match client_sub {
                Some(client_sub) => resubscribed.new_ids.push((client_sub, id.to_string())),
                None => resubscribed.hidden = Some(id.to_string()),
            }
        }
        Ok(resubscribed)
    }

    /// Survey: the new backend's head, and where its chain parts from what the client was given
    /// (what the client takes back), asking for block after block as [`carry::survey`] wants.
    async fn survey(&mut self) -> Result<Findings, MoveFailed> {
        let claimed = self.call("eth_blockNumber", json!([])).await?;
        let claimed = hex_u64(&claimed)
            .ok_or_else(|| MoveFailed::Backend(format!("eth_blockNumber answered {claimed}")))?;
        let mut answers = carry::Answers::new(claimed);
        loop {
            match carry::survey(self.state, &answers).map_err(MoveFailed::Backend)? {
                Survey::Done(found) => return Ok(found),
                Survey::Ask(Ask::Block(number)) => self.ask_block(number, &mut answers).await?,
                Survey::Ask(Ask::Latest) => self.ask_latest(&mut answers).await?,
            }
        }
    }

    /// The new backend's block `number`: its hash (or that it has none), and its parent's.
    async fn ask_block(
        &mut self,
        number: u64,
        answers: &mut carry::Answers,
    ) -> Result<(), MoveFailed> {
        let block = self.block(json!(hex(number))).await?;
        if let Some(parent) = block.as_ref().and_then(|b| hash_in(b, "parentHash")) {
            answers.parents.insert(number, parent);
        }
        answers
            .hashes
            .insert(number, block.as_ref().and_then(|b| hash_in(b, "hash")));
        Ok(())
    }

    /// The new backend's latest block: its number and hash (or that it has none), and its
    /// parent's.
    async fn ask_latest(&mut self, answers: &mut carry::Answers) -> Result<(), MoveFailed> {
        let latest = self.block(json!("latest")).await?;
        let number = latest
            .as_ref()
            .and_then(|b| b.get("number"))
            .and_then(hex_u64);
        let hash = latest.as_ref().and_then(|b| hash_in(b, "hash"));
        let (Some(number), Some(hash)) = (number, hash) else {
            answers.latest = Some(None);
            return Ok(());
        };
        if let Some(parent) = latest.as_ref().and_then(|b| hash_in(b, "parentHash")) {
            answers.parents.insert(number, parent);
        }
        answers.hashes.insert(number, Some(hash));
        answers.latest = Some(Some(number));
        Ok(())
    }

    /// Fill heads: the heads of the gap, block by block up to the new head.
    async fn fill_heads(
        &mut self,
        plan: &MovePlan,
        fetched: &mut carry::Fetched,
    ) -> Result<(), MoveFailed> {
        for number in plan.blocks_wanted().into_iter().flatten() {
            let Some(block) = self.block(json!(hex(number))).await? else {
                return Err(MoveFailed::Backend(format!(
                    "block {number} missing below its head {}",
                    plan.head
                )));
            };
            fetched.heads.insert(number, carry::header(block));
        }
        Ok(())
    }

    /// Fill logs: each `logs` subscription's logs of the gap, with its own filter.
    async fn fill_logs(
        &mut self,
        plan: &MovePlan,
        fetched: &mut carry::Fetched,
    ) -> Result<(), MoveFailed> {
        for (client_sub, filter) in plan.logs_wanted() {
            // Kept as the node wrote it: a tree of many small logs is several times their size.
            let found = self.ask("eth_getLogs", json!([filter])).await?;
            if found.elements().is_none() {
                return Err(MoveFailed::Backend(format!(
                    "eth_getLogs answered {}",
                    short_raw(found.get())
                )));
            }
            fetched.logs.insert(client_sub, found);
        }
        Ok(())
    }

    /// `eth_getBlockByNumber` without transactions (`number` a hex number or `"latest"`);
    /// `None` when the backend has no such block.
    async fn block(&mut self, number: Value) -> Result<Option<Value>, MoveFailed> {
        let block = self
            .call("eth_getBlockByNumber", json!([number, false]))
            .await?;
        Ok((!block.is_null()).then_some(block))
    }

    /// One call of the gateway's own on the new backend: its result, or why it failed.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, MoveFailed> {
        let result = self.ask(method, params).await?;
        serde_json::from_str(result.get())
            .map_err(|e| MoveFailed::Backend(format!("{method}: an answer it cannot read: {e}")))
    }

    /// One call of the gateway's own on the new backend: its result's text, or why it failed.
    /// Other messages that come meanwhile wait.
    async fn ask(&mut self, method: &str, params: Value) -> Result<RawText, MoveFailed> {
        let id = self.state.own_id();
        // What an earlier backend's attempt left waiting is gone.
        self.state.set_waiting(self.waiting_bytes);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let fail = |e: String| MoveFailed::Backend(format!("{method}: {e}"));
        self.upstream
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let deadline = (tokio::time::Instant::now() + self.timeout).min(self.deadline);
        loop {
            let message = match tokio::time::timeout_at(deadline, self.upstream.next()).await {
                Err(_) => {
                    return Err(fail(format!(
                        "no answer in time (a call has {:?}, a move {MOVE_DEADLINE:?} in all)",
                        self.timeout
                    )))
                }
                Ok(None) => return Err(fail("the backend closed the WebSocket".into())),
                Ok(Some(Err(e))) => return Err(fail(e.to_string())),
                Ok(Some(Ok(message))) => message,
            };
            let text = match &message {
                Message::Text(text) => Bytes::from(text.clone()),
                Message::Binary(bytes) => bytes.clone(),
                Message::Close(_) => return Err(fail("the backend closed the WebSocket".into())),
                _ => continue,
            };
            // Read once, without a tree: the answer to this call is kept as it came.
            if let Some(answer) = own_answer(&text, id) {
                return answer.map_err(fail);
            }
            self.waiting_bytes += text.len();
            if self.waiting_bytes > MAX_WAITING_BYTES {
                return Err(MoveFailed::Session(format!(
                    "the next backend sent more than {MAX_WAITING_BYTES} bytes while the session moved"
                )));
            }
            self.state.set_waiting(self.waiting_bytes);
            self.waiting.push(message);
        }
    }
}

/// A block's `hash` or `parentHash`, lowercase.
fn hash_in(block: &Value, field: &str) -> Option<String> {
    block
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

/// The result of the answer to the gateway's call `id` (its text, in the message's own bytes),
/// if `message` is that answer (its error, cut short, if it failed); `None` for any other
/// message.
fn own_answer(message: &Bytes, id: u64) -> Option<Result<RawText, String>> {
    let text = std::str::from_utf8(message).ok()?;
    let Ok(Shape::Object(answer)) = jsonrpc::Message::read(text) else {
        return None;
    };
    if answer.method.is_some() || answer.id.map(|i| i.get()) != Some(id.to_string().as_str()) {
        return None;
    }
    if let Some(error) = answer.error {
        return Some(Err(short_raw(error.get())));
    }
    let result = match answer.result {
        None => RawText::from("null".to_string()),
        Some(result) => {
            match jsonrpc::span(text, result).and_then(|at| RawText::new(message.slice(at))) {
                Some(result) => result,
                None => return Some(Err("an answer it cannot read".into())),
            }
        }
    };
    Some(Ok(result))
}

/// A JSON text for a log line or a reason, cut short.
fn short_raw(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    if end < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_short() {
        let long = "é".repeat(500);
        assert!(short_raw(&long).len() < 210);
    }
}
