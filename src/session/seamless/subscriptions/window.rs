//! The heads and logs already given: what a repeat, a reorg report or a reorg across a switch is
//! judged against (the records of the invariant in [`super`]: the heads given, the heads seen,
//! the resume point and the remembered logs), and the gap fill after a move.

use super::budget::{counted, head_bytes};
use super::log_memory::{LogKey, LogMemory, MAX_REMEMBERED_LOG_BYTES};
use super::state::SessionState;
use super::subscription::Progress;
use super::wire::{hex_u64_raw, notification};
use crate::jsonrpc::{self, Object};
use serde_json::value::RawValue;
use std::collections::VecDeque;

/// Heads remembered per session (number and hash), to find where a new backend's chain parts
/// from the one the client had.
pub const HEADS_SEEN: usize = 256;

/// Heads remembered per `newHeads` subscription (number and hash): what the client's chain is,
/// to tell a repeat from a reorg report and to find where a new backend's chain parts from it.
pub const HEADS_GIVEN: usize = 64;

impl SessionState {
    /// Each `logs` subscription's part of [`MAX_REMEMBERED_LOG_BYTES`].
    pub(super) fn log_share(&self) -> usize {
        let logs_subs = self
            .subs
            .values()
            .filter(|s| matches!(s.progress, Progress::Logs { .. }))
            .count();
        MAX_REMEMBERED_LOG_BYTES / logs_subs.max(1)
    }

    /// Whether a notification's result (its text) goes to the client; records how far the
    /// subscription got.
    pub(super) fn admit(&mut self, client_sub: &str, result: &RawValue) -> bool {
        // The session's log memory, shared by its `logs` subscriptions.
        let log_bytes = self.log_share();
        let epoch = self.epoch;
        let Some(sub) = self.subs.get_mut(client_sub) else {
            return false;
        };
        match &mut sub.progress {
            Progress::Heads { given } => match given_head(given, &self.heads_seen, result) {
                Head::Repeat => false,
                Head::Unread => true,
                Head::New(number, hash) => {
                    if !hash.is_empty() {
                        self.saw_head(number, &hash);
                    }
                    true
                }
            },
            Progress::Logs {
                resume_from,
                delivered,
            } => {
                let (pass, replaced) = counted(&mut self.logs_bytes, delivered, |d| {
                    given_log(resume_from, d, result, log_bytes, epoch)
                });
                for log in replaced {
                    self.extra.push(taken_back(client_sub, log));
                }
                pass
            }
            Progress::Other => true,
        }
    }

    /// A head of the backend's chain (the gateway's own `newHeads`, the client's, or a gap
    /// fill's): remembered, and the logs gap moves past the blocks before it.
    ///
    /// A head at a number where the session knew another block is a reorg: the blocks it knew
    /// from there on are orphaned. Logs the client has of an orphaned block, or of another block
    /// at this number, go back (`removed: true`, newest first) as a node sends them on a reorg,
    /// and the logs gap starts at this number again. (A block's logs may come before its head:
    /// logs of blocks the session never saw as heads are left to the next head at their number.)
    pub(super) fn saw_head(&mut self, number: u64, hash: &str) {
        let hash = hash.to_ascii_lowercase();
        let orphaned = self.remember_head(number, &hash);
        // A node sends a block's logs as it imports the block, before the next head: the logs of
        // the blocks before this head have all been sent. The gap starts one block earlier still,
        // as a margin (what the client has is not sent twice).
        let resume = number.saturating_sub(1);
        for (client_sub, sub) in self.subs.iter_mut() {
            let Progress::Logs {
                resume_from,
                delivered,
            } = &mut sub.progress
            else {
                continue;
            };
            let back = counted(&mut self.logs_bytes, delivered, |d| {
                d.take_back_where(|block| {
                    (block.number == number && *block.hash != *hash)
                        || orphaned
                            .iter()
                            .any(|(n, h)| *n == block.number && **h == *block.hash)
                })
            });
            if !orphaned.is_empty() || !back.is_empty() {
                *resume_from = Some(resume_from.map_or(number, |r| r.min(number)));
            }
            for log in back {
                self.extra.push(taken_back(client_sub, log));
            }
            *resume_from = Some(resume_from.map_or(resume, |r| r.max(resume)));
        }
    }

    /// Records a head of the chain; returns the heads it orphaned (those from its number on,
    /// when the session knew another block there). A number the session knew nothing of (below
    /// its heads, as from a backend behind it) takes its place and orphans nothing.
    fn remember_head(&mut self, number: u64, hash: &str) -> Vec<(u64, String)> {
        let at = self.heads_seen.partition_point(|(n, ..)| *n < number);
        let mut orphaned = Vec::new();
        let epoch = self.epoch;
        match self.heads_seen.get_mut(at) {
            Some((n, h, seen)) if *n == number && h == hash => {
                *seen = epoch;
                return orphaned;
            }
            Some((n, ..)) if *n == number => {
                for (n, h, _) in self.heads_seen.drain(at..) {
                    self.heads_bytes = self.heads_bytes.saturating_sub(head_bytes(&h));
                    orphaned.push((n, h));
                }
                self.heads_bytes += head_bytes(hash);
                self.heads_seen.push_back((number, hash.to_string(), epoch));
            }
            _ => {
                self.heads_bytes += head_bytes(hash);
                self.heads_seen
                    .insert(at, (number, hash.to_string(), epoch));
            }
        }
        while self.heads_seen.len() > HEADS_SEEN {
            if let Some((_, h, _)) = self.heads_seen.pop_front() {
                self.heads_bytes = self.heads_bytes.saturating_sub(head_bytes(&h));
            }
        }
        orphaned
    }

    /// After a move: blocks of the new backend's chain (oldest first), as the session's heads.
    pub fn saw_chain(&mut self, blocks: &[(u64, String)]) {
        for (number, hash) in blocks {
            self.remember_head(*number, &hash.to_ascii_lowercase());
        }
    }

    /// After a move: the heads the session saw from block `number` on are not the new
    /// backend's chain.
    pub fn forget_heads_from(&mut self, number: u64) {
        while self.heads_seen.back().is_some_and(|(n, ..)| *n >= number) {
            if let Some((_, h, _)) = self.heads_seen.pop_back() {
                self.heads_bytes = self.heads_bytes.saturating_sub(head_bytes(&h));
            }
        }
    }

    /// The heads the session saw, newest first.
    #[cfg(test)]
    pub fn heads_seen(&self) -> Vec<(u64, String)> {
        self.heads_seen
            .iter()
            .rev()
            .map(|(n, h, _)| (*n, h.clone()))
            .collect()
    }

    /// [`Self::heads_seen`] with the move each was last seen in.
    pub fn heads_record(&self) -> Vec<(u64, String, u64)> {
        self.heads_seen.iter().rev().cloned().collect()
    }

    /// A `logs` subscription's blocks with delivered logs, newest first, with the move each was
    /// remembered in.
    pub fn delivered_record(&self, client_sub: &str) -> Vec<(u64, String, u64)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Logs { delivered, .. }) => delivered
                .blocks
                .iter()
                .rev()
                .map(|b| (b.number, b.hash.to_string(), b.epoch))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A move begins to change the session: what it records from now on is the new backend's.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
    }

    /// The heads a `newHeads` subscription delivered, newest first: `(number, hash)`.
    pub fn given_heads(&self, client_sub: &str) -> Vec<(u64, String)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Heads { given }) => given.iter().rev().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Blocks of a `logs` subscription's delivered logs, newest first: `(number, hash)`.
    #[cfg(test)]
    pub fn delivered_blocks(&self, client_sub: &str) -> Vec<(u64, String)> {
        match self.subs.get(client_sub).map(|s| &s.progress) {
            Some(Progress::Logs { delivered, .. }) => delivered
                .blocks
                .iter()
                .rev()
                .map(|b| (b.number, b.hash.to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The notifications that take back the logs a subscription delivered from block `number`
    /// (`removed: true`, newest first, as a node sends them on a reorg); the subscription's gap
    /// then starts at that block.
    pub fn take_back(&mut self, client_sub: &str, number: u64) -> Vec<Vec<u8>> {
        let Some(sub) = self.subs.get_mut(client_sub) else {
            return Vec::new();
        };
        let Progress::Logs {
            resume_from,
            delivered,
        } = &mut sub.progress
        else {
            return Vec::new();
        };
        let out = counted(&mut self.logs_bytes, delivered, |d| {
            d.take_back_where(|b| b.number >= number)
        })
        .into_iter()
        .map(|log| taken_back(client_sub, log))
        .collect();
        *resume_from = Some(resume_from.map_or(number, |r| r.min(number)));
        out
    }

    /// A block the gap fill delivers to a subscription (the texts of its results): the head
    /// (for `newHeads`) or the logs (for `logs`, each checked against what the client has).
    /// Returns the notifications.
    pub fn fill(&mut self, client_sub: &str, results: &[&RawValue]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for result in results {
            let pass = self.admit(client_sub, result);
            // Logs taken back go first.
            out.append(&mut self.extra);
            if pass {
                out.push(notification(client_sub, result.get().as_bytes()));
            }
        }
        out
    }

    /// After a move's fill up to block `head` (a block the new backend has: the move checked
    /// it): the logs up to it are complete, and those of blocks more than `max_gap` below it
    /// are forgotten. Heads need nothing: the client's heads are what it was given.
    pub fn filled_to(&mut self, head: u64, max_gap: u64) {
        for sub in self.subs.values_mut() {
            if let Progress::Logs {
                resume_from,
                delivered,
            } = &mut sub.progress
            {
                let next = head.saturating_add(1);
                *resume_from = Some(resume_from.map_or(next, |r| r.max(next)));
                counted(&mut self.logs_bytes, delivered, |d| {
                    d.trim(head.saturating_sub(max_gap))
                });
            }
        }
    }
}

/// What a head of a `newHeads` subscription's is to the client's heads.
enum Head {
    /// The client has it: dropped.
    Repeat,
    /// No number to read: passed as the node sent it, and not recorded.
    Unread,
    /// A new head or a reorg report, recorded among the heads given (number, hash).
    New(u64, String),
}

/// Judges a head of a `newHeads` subscription (`result`, its text) against the heads the client
/// was `given` and the heads the session saw; records it among the heads given when it passes.
fn given_head(
    given: &mut VecDeque<(u64, String)>,
    heads_seen: &VecDeque<(u64, String, u64)>,
    result: &RawValue,
) -> Head {
    let Some(object) = Object::read(result.get()) else {
        return Head::Unread;
    };
    let Some(number) = object.get("number").and_then(hex_u64_raw) else {
        return Head::Unread;
    };
    let hash = object
        .get("hash")
        .and_then(jsonrpc::string)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mine = given.iter().find(|(n, _)| *n == number);
    if mine.is_some_and(|(_, h)| *h == hash) {
        // The client has it (a new backend catching up, a fill's repeat).
        return Head::Repeat;
    }
    let below = given.front().is_some_and(|(first, _)| number < *first);
    if mine.is_none() && below {
        // Below the client's first head: a reorg report only where the session knew another
        // block (else a backend behind it catching up).
        let other = heads_seen
            .iter()
            .any(|(n, h, _)| *n == number && *h != hash);
        if !other {
            return Head::Repeat;
        }
    }
    // At or below the last: a reorg report, which replaces the client's heads from there.
    while given.back().is_some_and(|(n, _)| *n >= number) {
        given.pop_back();
    }
    given.push_back((number, hash.clone()));
    if given.len() > HEADS_GIVEN {
        given.pop_front();
    }
    Head::New(number, hash)
}

/// Judges a log of a `logs` subscription (`result`, its text) against the logs the client was
/// given (`delivered`, within `max_bytes`); records it when it passes, and moves the resume
/// point. Returns whether it passes, and the `removed: true` copies of the logs it replaces.
fn given_log(
    resume_from: &mut Option<u64>,
    delivered: &mut LogMemory,
    result: &RawValue,
    max_bytes: usize,
    epoch: u64,
) -> (bool, Vec<Vec<u8>>) {
    let Some(key) = LogKey::read(result.get()) else {
        return (true, Vec::new());
    };
    if key.removed {
        if delivered.has(&key) {
            delivered.forget(&key);
            return (true, Vec::new());
        }
        // Not a log the memory holds: one the gateway took back already (a head of the new
        // chain came first), one it never sent, or one of a block it forgot (more than the gap
        // limit below the head). Removing a log the client may not hold would break its count;
        // the forgotten are outside the window.
        return (false, Vec::new());
    }
    if key.block < delivered.starts_at {
        return (false, Vec::new());
    }
    if delivered.has(&key) || key.block < delivered.covers_from {
        // The client has it, or may: the memory no longer covers that block (more than the gap
        // limit below the head), and a log is never sent twice.
        return (false, Vec::new());
    }
    // A block at a number the client has under another hash (a backend after a switch, on
    // another branch, that did not take them back): the client's logs of it and of later blocks
    // go back first, as a node does on a reorg.
    let replaced = delivered.remember(&key, result.get(), max_bytes, epoch);
    *resume_from = Some(resume_from.map_or(key.block, |r| r.max(key.block)));
    (true, replaced)
}

/// A log the client has, taken back: the notification of its `removed: true` copy.
fn taken_back(client_sub: &str, removed: Vec<u8>) -> Vec<u8> {
    notification(client_sub, &removed)
}

/// A head's number and hash, from its text.
pub(super) fn head_of(head: &RawValue) -> Option<(u64, String)> {
    let head = Object::read(head.get())?;
    let number = hex_u64_raw(head.get("number")?)?;
    let hash = jsonrpc::string(head.get("hash")?)?.into_owned();
    Some((number, hash))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::wire::hex;
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn heads_the_client_has_are_dropped_after_a_move_and_gaps_start_after_the_last() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["newHeads"]), "0xa");
        for n in 10..=12 {
            assert!(s.backend_message(&note("0xa", head(n))).len() == 1);
        }
        assert_eq!(s.gaps()[0].from, Some(13));
        s.rebind(&[(sub.clone(), "0xb".into())], None);
        assert_eq!(fill(&mut s, &sub, &[head(13)]).len(), 1);
        s.filled_to(13, 100);
        assert!(s.backend_message(&note("0xb", head(12))).is_empty());
        assert!(s.backend_message(&note("0xb", head(13))).is_empty());
        assert!(s.backend_message(&note("0xb", head(14))).len() == 1);
        assert!(
            s.backend_message(&note("0xb", head(14))).is_empty(),
            "a head the client has is a repeat"
        );
        // Another block 13 is a reorg, reported as a node does: it passes, and so does the
        // next block 14 on its branch.
        let other = |n: u64| json!({"number": hex(n), "hash": format!("0x{:063x}f", n)});
        assert!(s.backend_message(&note("0xb", other(13))).len() == 1);
        assert!(s.backend_message(&note("0xb", other(14))).len() == 1);
        assert_eq!(s.gaps()[0].from, Some(15));
    }

    #[test]
    fn logs_are_delivered_once_and_a_reorg_takes_them_back() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {"address": "0x01"}]), "0xa");
        assert!(s.backend_message(&note("0xa", log(7, "0x07", 0))).len() == 1);
        assert!(
            s.backend_message(&note("0xa", log(7, "0x07", 0)))
                .is_empty(),
            "a repeat"
        );
        assert!(s.backend_message(&note("0xa", log(8, "0x08", 3))).len() == 1);
        assert_eq!(s.gaps()[0].from, Some(8));
        assert_eq!(
            s.delivered_blocks(&sub),
            vec![(8, "0x08".into()), (7, "0x07".into())]
        );
        // The new backend has another block 8: its log goes back, and the gap starts at 8.
        let back = s.take_back(&sub, 8);
        assert_eq!(back.len(), 1);
        let removed = text(&back[0]);
        assert_eq!(removed["params"]["result"]["removed"], true);
        assert_eq!(removed["params"]["result"]["logIndex"], "0x3");
        assert_eq!(s.gaps()[0].from, Some(8));
        let filled = fill(&mut s, &sub, &[log(7, "0x07", 0), log(8, "0x8b", 1)]);
        assert_eq!(
            filled.len(),
            1,
            "block 7's log the client has is not sent again"
        );
        // A removed log passes once and is forgotten; a removal of a log the client no longer
        // holds does not pass (the gateway may have taken it back first).
        let mut gone = log(7, "0x07", 0);
        gone["removed"] = json!(true);
        assert!(s.backend_message(&note("0xa", gone.clone())).len() == 1);
        assert!(s.backend_message(&note("0xa", gone)).is_empty());
        // The same log added again passes, alone: block 8 may well be its child.
        assert_eq!(s.backend_message(&note("0xa", log(7, "0x07", 0))).len(), 1);
        // Another block 7: the client's logs of block 7 and later go back first, newest first,
        // as a node on the other branch would send them.
        let out = s.backend_message(&note("0xa", log(7, "0x7b", 0)));
        let out: Vec<(Value, Value)> = out
            .iter()
            .map(|m| {
                let r = &text(m)["params"]["result"];
                (r["blockHash"].clone(), r["removed"].clone())
            })
            .collect();
        assert_eq!(
            out,
            [
                (json!("0x8b"), json!(true)),
                (json!("0x07"), json!(true)),
                (json!("0x7b"), json!(false))
            ]
        );
    }

    /// Issue 24, item 5: logs of blocks 104 and 105 came from the old backend; the new one was
    /// at 103 and imports another 104 with no log for the filter. When its head comes (the
    /// gateway's own `newHeads`), the logs of 104 and of 105 after it go back, newest first.
    #[test]
    fn logs_of_blocks_a_new_head_orphans_go_back() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xl");
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xh"),
                _ => head(100),
            };
            let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            assert!(s.backend_message(answer.as_bytes()).is_empty());
        }
        for n in 101..=105 {
            let hash = format!("0x{n:064x}");
            assert_eq!(s.backend_message(&note("0xl", log(n, &hash, 0))).len(), 1);
            assert!(s.backend_message(&note("0xh", head(n))).is_empty());
        }
        // The move to a backend at 103, on the same chain up to there.
        s.on_move("ec-a", true);
        s.rebind(&[(sub.clone(), "0xl2".into())], Some("0xh2".into()));
        s.filled_to(103, 128);
        let other = json!({"number": hex(104), "hash": "0xb104"});
        let out: Vec<Value> = s
            .backend_message(&note("0xh2", other))
            .iter()
            .map(|m| text(m)["params"]["result"].clone())
            .collect();
        assert_eq!(
            out.iter()
                .map(|l| (l["blockNumber"].clone(), l["removed"].clone()))
                .collect::<Vec<_>>(),
            [(json!("0x69"), json!(true)), (json!("0x68"), json!(true))]
        );
        assert_eq!(
            s.gaps()[0].from,
            Some(104),
            "block 104's logs are to come again"
        );
        // The node's own removal of those logs, if it sends one, is not passed twice.
        let mut gone = log(104, &format!("0x{:064x}", 104), 0);
        gone["removed"] = json!(true);
        assert!(s.backend_message(&note("0xl2", gone)).is_empty());
    }

    /// A head below the client's first, from a backend behind it, is dropped unless the
    /// session knew another block there; logs of blocks before a subscription's first do not
    /// reach it.
    #[test]
    fn nothing_from_before_the_clients_first_block_reaches_it() {
        let mut s = SessionState::default();
        subscribe(&mut s, 1, json!(["newHeads"]), "0xh");
        subscribe(&mut s, 2, json!(["logs", {}]), "0xl");
        for request in s.take_requests() {
            let request = text(&request);
            let result = match request["method"].as_str() {
                Some("eth_subscribe") => json!("0xg"),
                _ => head(100),
            };
            let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            assert!(s.backend_message(answer.as_bytes()).is_empty());
        }
        for n in 101..=102 {
            assert_eq!(s.backend_message(&note("0xh", head(n))).len(), 1);
        }
        assert!(s.backend_message(&note("0xh", head(99))).is_empty());
        let hash = format!("0x{:064x}", 98);
        assert!(s
            .backend_message(&note("0xl", log(98, &hash, 0)))
            .is_empty());
        assert_eq!(
            s.backend_message(&note("0xl", log(101, "0x65", 0))).len(),
            1
        );
    }

    #[test]
    fn heads_move_a_logs_gap_forward() {
        let mut s = SessionState::default();
        let _heads = subscribe(&mut s, 1, json!(["newHeads"]), "0xh");
        let _logs = subscribe(&mut s, 2, json!(["logs", {}]), "0xl");
        assert!(s.backend_message(&note("0xh", head(20))).len() == 1);
        let gaps = s.gaps();
        let logs_gap = gaps.iter().find(|g| g.client_sub == "0xl").unwrap();
        assert_eq!(
            logs_gap.from,
            Some(19),
            "block 19's logs were all sent before head 20"
        );
    }
}
