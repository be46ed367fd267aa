//! The logs a `logs` subscription delivered in its last blocks ([`LogMemory`]), as the node sent
//! them: what tells a duplicate from a new log and what is taken back on a reorg, within its share
//! of [`MAX_REMEMBERED_LOG_BYTES`].

use super::wire::{hex, hex_u64_raw};
use crate::jsonrpc::{self, Object};
use std::collections::VecDeque;
use std::mem::size_of;

/// Bytes of delivered logs remembered per session, shared by its `logs` subscriptions.
pub const MAX_REMEMBERED_LOG_BYTES: usize = 8 * 1024 * 1024;

/// The logs a subscription delivered in its last blocks, oldest block first, each as the node
/// sent it; `bytes` counts what is held (the texts, the hashes and the entries).
///
/// It holds at most its share of [`MAX_REMEMBERED_LOG_BYTES`], the newest block included: past
/// it the oldest blocks are forgotten. When the newest block alone is over the share, its latest
/// logs keep only their key (block, hash, index: still never sent twice, but taken back with a
/// `removed: true` notification that carries only those fields), and past that they are not
/// remembered at all (after a move the gap fill may send them again).
#[derive(Debug, Default)]
pub(super) struct LogMemory {
    pub(super) blocks: VecDeque<DeliveredBlock>,
    pub(super) bytes: usize,
    /// From this block on, the memory holds every log the client has of the subscription (it
    /// starts at 0 and moves up as old blocks are forgotten): a log below it may be one the
    /// client has, and is not sent.
    pub(super) covers_from: u64,
    /// The subscription's first block (the head when it was made): logs of earlier blocks do
    /// not reach the client.
    pub(super) starts_at: u64,
}

#[derive(Debug)]
pub(super) struct DeliveredBlock {
    pub(super) number: u64,
    pub(super) hash: Box<str>,
    /// `(logIndex, the log as delivered)`; `None`: only its key is kept.
    pub(super) logs: Vec<(u64, Option<Box<str>>)>,
    /// The move it was remembered in.
    pub(super) epoch: u64,
}

/// Bytes one remembered log takes besides its text.
const LOG_ENTRY: usize = size_of::<(u64, Option<Box<str>>)>();

impl DeliveredBlock {
    /// Bytes it takes besides its logs.
    fn overhead(&self) -> usize {
        size_of::<DeliveredBlock>() + self.hash.len()
    }
}

/// What the gateway knows of a log from a notification or `eth_getLogs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogKey {
    pub block: u64,
    pub hash: String,
    pub index: u64,
    pub removed: bool,
}

impl LogKey {
    /// The key of a log object (its text); `None` when it lacks one of the fields.
    pub fn read(log: &str) -> Option<LogKey> {
        let log = Object::read(log)?;
        Some(LogKey {
            block: hex_u64_raw(log.get("blockNumber")?)?,
            hash: jsonrpc::string(log.get("blockHash")?)?.to_ascii_lowercase(),
            index: hex_u64_raw(log.get("logIndex")?)?,
            removed: log.get("removed").is_some_and(|r| r.get() == "true"),
        })
    }
}

impl LogMemory {
    pub(super) fn has(&self, key: &LogKey) -> bool {
        self.blocks
            .iter()
            .rev()
            .find(|b| b.number == key.block && *b.hash == *key.hash)
            .is_some_and(|b| b.logs.iter().any(|(i, _)| *i == key.index))
    }

    /// Records a delivered log (its text) within `max_bytes`; returns the `removed: true`
    /// copies of the logs of the blocks it replaces (the same number or later under another
    /// hash), which the client must have taken back, newest first.
    pub(super) fn remember(
        &mut self,
        key: &LogKey,
        log: &str,
        max_bytes: usize,
        epoch: u64,
    ) -> Vec<Vec<u8>> {
        let mut replaced = Vec::new();
        let at = match self
            .blocks
            .iter()
            .rposition(|b| b.number == key.block && *b.hash == *key.hash)
        {
            Some(at) => at,
            None => {
                // Another block at this number: the chain changed there, and the blocks from its
                // number on are the old chain's. With none, the block is new to the client (a
                // backend behind it catching up, or logs that came before their reorg's head,
                // which `saw_head` judges): it takes its place in the order of numbers.
                if self.blocks.iter().any(|b| b.number == key.block) {
                    replaced = self.take_back_where(|b| b.number >= key.block);
                }
                let at = self.blocks.partition_point(|b| b.number < key.block);
                let block = DeliveredBlock {
                    number: key.block,
                    hash: key.hash.as_str().into(),
                    logs: Vec::new(),
                    epoch,
                };
                self.bytes += block.overhead();
                self.blocks.insert(at, block);
                at
            }
        };
        if let Some(block) = self.blocks.get_mut(at) {
            block.logs.push((key.index, Some(log.into())));
            block.epoch = epoch;
            self.bytes += LOG_ENTRY + log.len();
        }
        self.fit(max_bytes);
        replaced
    }

    /// Holds at most `max` bytes: forgets the oldest blocks, then, of the newest alone, the text
    /// of its latest logs, then their keys.
    pub(super) fn fit(&mut self, max: usize) {
        while self.bytes > max && self.blocks.len() > 1 {
            self.drop_oldest();
        }
        let Some(block) = self.blocks.back_mut() else {
            return;
        };
        for (_, text) in block.logs.iter_mut().rev() {
            if self.bytes <= max {
                return;
            }
            if let Some(text) = text.take() {
                self.bytes = self.bytes.saturating_sub(text.len());
            }
        }
        while self.bytes > max && block.logs.pop().is_some() {
            self.bytes = self.bytes.saturating_sub(LOG_ENTRY);
        }
        if block.logs.is_empty() {
            self.drop_newest();
        }
    }

    /// Takes out the blocks `orphaned` picks; returns the `removed: true` copies of their logs,
    /// newest first.
    pub(super) fn take_back_where(
        &mut self,
        orphaned: impl Fn(&DeliveredBlock) -> bool,
    ) -> Vec<Vec<u8>> {
        let mut back = Vec::new();
        let mut kept = VecDeque::with_capacity(self.blocks.len());
        while let Some(block) = self.blocks.pop_back() {
            if !orphaned(&block) {
                kept.push_front(block);
                continue;
            }
            self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            for (index, text) in block.logs.iter().rev() {
                let removed = text.as_deref().and_then(jsonrpc::set_removed);
                back.push(removed.unwrap_or_else(|| {
                    // Only its key was kept: the notification names the log by it.
                    format!(
                        r#"{{"blockNumber":"{}","blockHash":{},"logIndex":"{}","removed":true}}"#,
                        hex(block.number),
                        jsonrpc::json_string(&block.hash),
                        hex(*index)
                    )
                    .into_bytes()
                }));
            }
        }
        self.blocks = kept;
        back
    }

    pub(super) fn forget(&mut self, key: &LogKey) {
        let Some(at) = self
            .blocks
            .iter()
            .position(|b| b.number == key.block && *b.hash == *key.hash)
        else {
            return;
        };
        let block = &mut self.blocks[at];
        let mut freed = 0;
        block.logs.retain(|(i, text)| {
            let keep = *i != key.index;
            if !keep {
                freed += LOG_ENTRY + text.as_ref().map_or(0, |t| t.len());
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        if block.logs.is_empty() {
            if let Some(block) = self.blocks.remove(at) {
                self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            }
        }
    }

    /// Forgets the blocks before `oldest`.
    pub(super) fn trim(&mut self, oldest: u64) {
        while self.blocks.front().is_some_and(|b| b.number < oldest) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(block) = self.blocks.pop_front() {
            self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            self.covers_from = self.covers_from.max(block.number.saturating_add(1));
        }
    }

    fn drop_newest(&mut self) -> Option<DeliveredBlock> {
        let block = self.blocks.pop_back()?;
        self.bytes = self.bytes.saturating_sub(block_bytes(&block));
        Some(block)
    }
}

/// Bytes a remembered block holds, as counted in [`LogMemory::bytes`].
fn block_bytes(block: &DeliveredBlock) -> usize {
    block.overhead()
        + block
            .logs
            .iter()
            .map(|(_, text)| LOG_ENTRY + text.as_ref().map_or(0, |t| t.len()))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::super::state::SessionState;
    use super::super::subscription::Progress;
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn remembered_logs_are_bounded() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xa");
        let big = "00".repeat(64 * 1024);
        for block in 0..200u64 {
            let mut l = log(block, &format!("0x{block:x}"), 0);
            l["data"] = json!(format!("0x{big}"));
            s.backend_message(&note("0xa", l));
        }
        let Progress::Logs { delivered, .. } = &s.subs[&sub].progress else {
            panic!()
        };
        assert!(delivered.bytes <= MAX_REMEMBERED_LOG_BYTES);
        assert!(delivered.blocks.len() < 200);
        s.filled_to(199, 10);
        let Progress::Logs { delivered, .. } = &s.subs[&sub].progress else {
            panic!()
        };
        assert!(delivered.blocks.len() <= 11);
    }

    /// A subscription's log memory, for the tests.
    fn memory(s: &SessionState, sub: &str) -> (usize, usize, usize) {
        let Progress::Logs { delivered, .. } = &s.subs[sub].progress else {
            panic!()
        };
        let texts = delivered
            .blocks
            .iter()
            .flat_map(|b| &b.logs)
            .filter(|(_, t)| t.is_some())
            .count();
        let counted: usize = delivered.blocks.iter().map(block_bytes).sum();
        assert_eq!(counted, delivered.bytes, "counted as held");
        (delivered.bytes, delivered.blocks.len(), texts)
    }

    #[test]
    fn the_log_bound_holds_with_the_newest_block_and_one_block_over_it_keeps_keys() {
        let mut s = SessionState::default();
        let sub = subscribe(&mut s, 1, json!(["logs", {}]), "0xa");
        let data = "00".repeat(300 * 1024);
        let big = |block: u64, index: u64| {
            let mut l = log(block, &format!("0x{block:x}"), index);
            l["data"] = json!(format!("0x{data}"));
            l
        };
        // 60 blocks of 600 KiB logs: the newest ones stay, within the bound.
        for block in 0..60u64 {
            s.backend_message(&note("0xa", big(block, 0)));
            let (bytes, _, _) = memory(&s, &sub);
            assert!(bytes <= MAX_REMEMBERED_LOG_BYTES, "{bytes}");
        }
        let (_, blocks, _) = memory(&s, &sub);
        assert!((12..14).contains(&blocks), "{blocks}");
        // One block alone over the bound: its latest logs keep their keys only.
        for index in 0..20u64 {
            let out = s.backend_message(&note("0xa", big(100, index)));
            assert_eq!(out.len(), 1, "delivered");
            let (bytes, _, _) = memory(&s, &sub);
            assert!(bytes <= MAX_REMEMBERED_LOG_BYTES, "{bytes}");
        }
        let (_, blocks, texts) = memory(&s, &sub);
        assert_eq!(blocks, 1, "the older blocks went first");
        assert!((6..20).contains(&texts), "{texts}");
        assert!(
            s.backend_message(&note("0xa", big(100, 19))).is_empty(),
            "a key kept is still never sent twice"
        );
        // Taken back, every log goes: whole where its bytes were kept, by its key otherwise.
        let back = s.take_back(&sub, 100);
        assert_eq!(back.len(), 20);
        let first = text(&back[0]);
        assert_eq!(first["params"]["result"]["removed"], true);
        assert_eq!(first["params"]["result"]["logIndex"], "0x13");
        assert!(first["params"]["result"].get("data").is_none());
        let last = text(&back[19]);
        assert_eq!(last["params"]["result"]["logIndex"], "0x0");
        assert!(last["params"]["result"]["data"].as_str().unwrap().len() > 1000);
        // A second logs subscription: the two together stay within the bound.
        for block in 101..120u64 {
            s.backend_message(&note("0xa", big(block, 0)));
        }
        let other = subscribe(&mut s, 2, json!(["logs", {"address": "0x02"}]), "0xb");
        for block in 101..120u64 {
            s.backend_message(&note("0xb", big(block, 0)));
        }
        let together = memory(&s, &sub).0 + memory(&s, &other).0;
        assert!(together <= MAX_REMEMBERED_LOG_BYTES, "{together}");
    }
}
