//! Which events of a seamless event stream reach the client: the stream read event by event
//! ([`split_event`]), and the events the client already has dropped after a switch
//! ([`EventFilter`]). Pure, without I/O.

use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// How many recent events of topics without a slot or epoch are remembered to drop repeats.
pub const RECENT_EVENTS: usize = 1024;

/// The first whole event in `buffer` (its lines, without the blank line that ends it) and how many
/// bytes it took; else where a later look may resume, past what holds no event end. Line ends may
/// be `\n` or `\r\n`. `from` is where to resume (0, or what the last look returned).
pub(super) fn split_event(buffer: &[u8], from: usize) -> Result<(Vec<u8>, usize), usize> {
    let mut i = from.min(buffer.len());
    while let Some(at) = buffer[i..].iter().position(|&b| b == b'\n') {
        let newline = i + at;
        // The line that ends here: empty when its line end follows another line end.
        let line_end = match newline.checked_sub(1) {
            Some(cr) if buffer[cr] == b'\r' => cr,
            _ => newline,
        };
        if line_end == 0 || buffer[line_end - 1] == b'\n' {
            let block = &buffer[..line_end];
            let block = block.strip_suffix(b"\n").unwrap_or(block);
            let block = block.strip_suffix(b"\r").unwrap_or(block);
            return Ok((block.to_vec(), newline + 1));
        }
        i = newline + 1;
    }
    Err(buffer.len())
}

/// A backend's stream read event by event, however its bytes arrive (a byte at a time, or many
/// events in one read): each byte is looked at once, and what was taken goes in one drain.
#[derive(Debug, Default)]
pub(super) struct Events {
    pending: Vec<u8>,
    /// How far into `pending` no event end was found.
    scanned: usize,
}

impl Events {
    /// The whole events that `data` completes, in order.
    pub(super) fn feed(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut events = Vec::new();
        let mut taken = 0;
        loop {
            match split_event(&self.pending[taken..], self.scanned) {
                Ok((block, used)) => {
                    taken += used;
                    self.scanned = 0;
                    events.push(block);
                }
                Err(resume) => {
                    self.scanned = resume;
                    break;
                }
            }
        }
        self.pending.drain(..taken);
        events
    }

    /// Bytes of an event not yet whole.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Whether an SSE block is an event (has a `data` line): comments, `retry:` or `id:` alone and
/// blank blocks are not, and a backend that sent only those has delivered nothing.
pub(super) fn is_event(block: &[u8]) -> bool {
    block.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line == b"data" || line.starts_with(b"data:")
    })
}

/// Decides which events the client has not had yet.
///
/// A backend's own events pass in the order it sends them (a reorg's head at a lower slot too),
/// but for a repeat of the last one. After a switch, the new backend's events of a keyed topic
/// pass once they are past what the client has (the floor); the floor holds for
/// [`FLOOR_LIFETIME`] at most, so a slot no chain has reached yet (a node's bug) cannot silence a
/// stream for good.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// Per topic keyed by slot or epoch: the last key delivered and the block root with it.
    last: HashMap<String, (u64, String)>,
    /// After a switch: per topic, what the client has; and since when.
    floor: HashMap<String, (u64, String)>,
    floor_since: Option<Instant>,
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
}

/// Longest a floor holds after a switch: a new backend this far behind the client would be
/// judged lagging by its health checks long before.
pub const FLOOR_LIFETIME: Duration = Duration::from_secs(5 * 60);

impl EventFilter {
    /// The stream moved to another backend: its events must get past what the client has.
    pub fn switched(&mut self) {
        self.floor = self.last.clone();
        self.floor_since = Some(Instant::now());
    }

    /// Whether the event (an SSE block: `event:`, `data:` lines) goes to the client; records it.
    /// Comments and events without data pass.
    pub fn admit(&mut self, block: &[u8]) -> bool {
        let text = String::from_utf8_lossy(block);
        let mut event = "message".to_string();
        let mut data = String::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            return true;
        }
        let json: Option<Value> = serde_json::from_str(&data).ok();
        let field = |name: &str| -> Option<&str> { json.as_ref()?.get(name)?.as_str() };
        let keyed = match event.as_str() {
            "head" | "block" | "block_gossip" | "blob_sidecar" => field("slot")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|slot| (slot, field("block").or(field("block_root")).unwrap_or(""))),
            "finalized_checkpoint" => field("epoch")
                .and_then(|e| e.parse::<u64>().ok())
                .map(|epoch| (epoch, "")),
            _ => None,
        };
        if let Some((key, root)) = keyed {
            // blob sidecars share a slot and block: each index is its own event.
            if event != "blob_sidecar" {
                let floor_holds = self
                    .floor_since
                    .is_some_and(|since| since.elapsed() < FLOOR_LIFETIME);
                if let Some((floor, floor_root)) = self.floor.get(&event) {
                    if floor_holds && (key < *floor || (key == *floor && root == floor_root)) {
                        return false;
                    }
                    self.floor.remove(&event);
                }
                if self
                    .last
                    .get(&event)
                    .is_some_and(|(last, last_root)| key == *last && root == last_root)
                {
                    return false;
                }
                self.last.insert(event, (key, root.to_string()));
                return true;
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (event.as_str(), data.as_str()).hash(&mut hasher);
        let key = hasher.finish();
        if !self.recent_set.insert(key) {
            return false;
        }
        self.recent.push_back(key);
        if self.recent.len() > RECENT_EVENTS {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(slot: u64, root: &str) -> Vec<u8> {
        format!("event: head\ndata: {{\"slot\":\"{slot}\",\"block\":\"{root}\"}}").into_bytes()
    }

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_line_ends() {
        let buffer = b"event: head\r\ndata: {}\r\n\r\nevent: block\ndata: {}\n\nevent: par";
        let (first, used) = split_event(buffer, 0).unwrap();
        assert_eq!(first, b"event: head\r\ndata: {}");
        let (second, used2) = split_event(&buffer[used..], 0).unwrap();
        assert_eq!(second, b"event: block\ndata: {}");
        let rest = &buffer[used + used2..];
        assert_eq!(split_event(rest, 0), Err(rest.len()));
        // Resumed byte by byte, the ends are found where a whole look finds them.
        let mut resume = 0;
        let mut found = Vec::new();
        let mut start = 0;
        for end in 1..=buffer.len() {
            match split_event(&buffer[start..end], resume) {
                Ok((block, used)) => {
                    found.push(block);
                    start += used;
                    resume = 0;
                }
                Err(at) => resume = at,
            }
        }
        assert_eq!(found, vec![first, second]);
        assert_eq!(split_event(b"\n\ndata: x", 0), Ok((Vec::new(), 1)));
    }

    /// The session loop's way of reading, fed `chunks`.
    fn read_like_follow(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut events = Events::default();
        chunks.iter().flat_map(|data| events.feed(data)).collect()
    }

    #[test]
    fn attack_events_are_the_same_at_every_split_in_two_and_three() {
        let streams: [&[u8]; 4] = [
            b"event: head\r\ndata: {\"slot\":\"1\"}\r\n\r\n:\r\n\r\nevent: block\r\ndata: {}\r\n\r\n",
            b"event: head\ndata: a\n\n\n\nevent: x\ndata: b\ndata: c\n\n:ka\n\n",
            b"data: x\r\n\ndata: y\n\r\ndata: z\r\n\r\n",
            b"\r\n\r\ndata: q\r\n\r\n",
        ];
        for stream in streams {
            let whole = read_like_follow(&[stream]);
            for i in 0..=stream.len() {
                for j in i..=stream.len() {
                    let got = read_like_follow(&[&stream[..i], &stream[i..j], &stream[j..]]);
                    assert_eq!(
                        got,
                        whole,
                        "split at {i} and {j} of {:?}",
                        String::from_utf8_lossy(stream)
                    );
                }
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(read_like_follow(&bytes), whole);
        }
    }

    #[test]
    fn a_head_the_client_has_or_an_older_one_is_dropped_after_a_switch() {
        let mut f = EventFilter::default();
        assert!(f.admit(&head(10, "0xa")));
        assert!(!f.admit(&head(10, "0xa")), "the same head again");
        assert!(
            f.admit(&head(9, "0x9")),
            "the backend's own reorg to a lower slot"
        );
        assert!(f.admit(&head(10, "0xa")));
        f.switched();
        assert!(
            !f.admit(&head(9, "0x9")),
            "an older head from the next backend"
        );
        assert!(!f.admit(&head(10, "0xa")), "one the client has");
        assert!(
            f.admit(&head(10, "0xb")),
            "another block at the same slot (a reorg)"
        );
        assert!(f.admit(&head(11, "0xc")));
        assert!(
            f.admit(&head(10, "0xd")),
            "past the floor, the backend's order again"
        );
        let block = b"event: block\ndata: {\"slot\":\"11\",\"block\":\"0xc\"}";
        assert!(f.admit(block), "topics are kept apart");
        assert!(!f.admit(block));
    }

    #[test]
    fn an_absurd_slot_does_not_silence_the_stream_for_good() {
        let mut f = EventFilter::default();
        assert!(f.admit(&head(u64::MAX - 1, "0xbad")));
        f.switched();
        assert!(
            !f.admit(&head(12, "0xc")),
            "held back while the floor holds"
        );
        f.floor_since = Instant::now().checked_sub(FLOOR_LIFETIME);
        assert!(f.admit(&head(13, "0xd")), "the floor expired");
        assert!(f.admit(&head(14, "0xe")));
    }

    #[test]
    fn only_a_block_with_data_is_an_event() {
        assert!(is_event(b"event: head\r\ndata: {}"));
        assert!(is_event(b"data"));
        assert!(!is_event(b": ok"));
        assert!(!is_event(b"retry: 1000\nid: 7"));
        assert!(!is_event(b""));
        assert!(!is_event(b"event: head\ndatum: 1"));
    }

    #[test]
    fn checkpoints_go_by_epoch_and_other_topics_by_content() {
        let mut f = EventFilter::default();
        let cp = |e: u64| {
            format!("event: finalized_checkpoint\ndata: {{\"epoch\":\"{e}\",\"block\":\"0x1\"}}")
                .into_bytes()
        };
        assert!(f.admit(&cp(3)));
        assert!(!f.admit(&cp(3)));
        f.switched();
        assert!(!f.admit(&cp(2)));
        assert!(f.admit(&cp(4)));
        let exit = b"event: voluntary_exit\ndata: {\"message\":{\"epoch\":\"1\",\"validator_index\":\"7\"}}";
        assert!(f.admit(exit));
        assert!(!f.admit(exit));
        assert!(f.admit(b": keep-alive"), "comments pass");
        for i in 0..(RECENT_EVENTS + 10) {
            f.admit(format!("event: attestation\ndata: {{\"n\":{i}}}").as_bytes());
        }
        assert!(f.recent.len() <= RECENT_EVENTS && f.recent_set.len() <= RECENT_EVENTS);
    }
}
