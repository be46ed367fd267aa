//! Recent events: the last [`MAX_EVENTS`] health transitions, failovers, session cuts and moves,
//! and configuration reloads, kept in memory for `/status` and the status page.
//!
//! One [`Events`] is made per gateway with its [`Metrics`](super::Metrics) and outlives reloads
//! (pools and backends are rebuilt; the metrics registry is not), so the failover that a reload
//! followed is still listed after it.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// Events kept; the oldest is forgotten when one more comes.
pub const MAX_EVENTS: usize = 256;

/// The longest reason an event keeps, in bytes: a reason may quote a node's own error text, which
/// can be as long as the node likes. A longer one is cut, with `…`.
pub const MAX_REASON_BYTES: usize = 512;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A backend passed its health rules again (`rise` checks in a row).
    BackendUp,
    /// A backend was taken out of rotation, by its checks or by a failure on live traffic.
    BackendDown,
    /// The backend a pool sends plain traffic to changed (or the pool has none left).
    Failover,
    /// The gateway ended a backend's WebSocket and SSE sessions.
    SessionsCut,
    /// A session moved to another backend with its client connected.
    SessionMoved,
    /// A configuration reload was applied.
    Reload,
    /// A configuration reload was refused; the running configuration stayed.
    ReloadFailed,
}

impl EventKind {
    /// Its name in `/status` and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BackendUp => "backend_up",
            EventKind::BackendDown => "backend_down",
            EventKind::Failover => "failover",
            EventKind::SessionsCut => "sessions_cut",
            EventKind::SessionMoved => "session_moved",
            EventKind::Reload => "reload",
            EventKind::ReloadFailed => "reload_failed",
        }
    }
}

/// One event, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Wall-clock time, RFC 3339 in UTC with milliseconds.
    pub time: String,
    pub kind: EventKind,
    /// The pool it concerns (`None` for reloads).
    pub pool: Option<String>,
    /// The backend it concerns: for a failover or a move, the one traffic went to.
    pub backend: Option<String>,
    /// What happened and why, in one line.
    pub reason: String,
}

/// The ring of recent events (newest last inside; read newest first).
#[derive(Debug)]
pub struct Events {
    ring: Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl Default for Events {
    fn default() -> Self {
        Events::with_capacity(MAX_EVENTS)
    }
}

impl Events {
    /// A ring that keeps the last `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Events {
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Records an event that happens now.
    pub fn record(
        &self,
        kind: EventKind,
        pool: Option<&str>,
        backend: Option<&str>,
        mut reason: String,
    ) {
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        let mut ring = self.lock();
        // Stamped under the lock: the ring's order is the order of the times.
        let event = Event {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind,
            pool: pool.map(str::to_string),
            backend: backend.map(str::to_string),
            reason,
        };
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// A session of `kind` (`sse`, `websocket`) moved from backend `from` (`None`: it had none
    /// left) to `to` with its client connected, because of `reason` (a label of
    /// [`MOVE_REASONS`](super::MOVE_REASONS) or a few words).
    pub fn record_move(&self, pool: &str, kind: &str, from: Option<&str>, to: &str, reason: &str) {
        self.record(
            EventKind::SessionMoved,
            Some(pool),
            Some(to),
            format!(
                "{kind} session moved from {} to {to}: {reason}",
                from.unwrap_or("-")
            ),
        );
    }

    /// Up to `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        self.lock().iter().rev().take(limit).cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Event>> {
        // A panic elsewhere mid-push leaves a usable ring.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn newest_first() {
        let events = Events::default();
        for n in 0..3 {
            events.record(EventKind::Failover, Some("p"), None, format!("e{n}"));
        }
        assert_eq!(reasons(&events.recent(10)), ["e2", "e1", "e0"]);
        assert_eq!(reasons(&events.recent(2)), ["e2", "e1"], "the newest two");
    }

    #[test]
    fn keeps_only_the_last_capacity_events() {
        let events = Events::with_capacity(4);
        for n in 0..10 {
            events.record(
                EventKind::BackendDown,
                Some("p"),
                Some("b"),
                format!("e{n}"),
            );
        }
        assert_eq!(
            reasons(&events.recent(usize::MAX)),
            ["e9", "e8", "e7", "e6"]
        );

        let full = Events::default();
        for n in 0..MAX_EVENTS + 10 {
            full.record(EventKind::Reload, None, None, format!("e{n}"));
        }
        let kept = full.recent(usize::MAX);
        assert_eq!(kept.len(), MAX_EVENTS);
        assert_eq!(kept[0].reason, format!("e{}", MAX_EVENTS + 9));
        assert_eq!(kept[MAX_EVENTS - 1].reason, "e10");
    }

    #[test]
    fn an_event_has_its_time_kind_pool_backend_and_reason() {
        let events = Events::default();
        events.record_move(
            "consensus",
            "websocket",
            Some("cc-a"),
            "cc-b",
            "backend_down",
        );
        let [event] = &events.recent(1)[..] else {
            panic!("one event")
        };
        assert_eq!(event.kind.as_str(), "session_moved");
        assert_eq!(event.pool.as_deref(), Some("consensus"));
        assert_eq!(event.backend.as_deref(), Some("cc-b"));
        assert_eq!(
            event.reason,
            "websocket session moved from cc-a to cc-b: backend_down"
        );
        humantime::parse_rfc3339(&event.time).expect("RFC 3339");
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(json["kind"], "session_moved");
    }

    /// A reason can quote a node (a JSON-RPC error's message, a reply it did not expect) up to
    /// the probe's 1 MiB reply bound; 256 of them would hold 256 MiB and make `/status` as large.
    #[test]
    fn a_reason_is_bounded() {
        let events = Events::default();
        let huge = format!(
            "eth_syncing failed: error -32000: {}",
            "<x>".repeat(300_000)
        );
        events.record(EventKind::BackendDown, Some("p"), Some("b"), huge);
        let reason = &events.recent(1)[0].reason;
        assert!(
            reason.len() <= MAX_REASON_BYTES + '…'.len_utf8() && reason.ends_with('…'),
            "a reason of {} bytes kept",
            reason.len()
        );
    }
}
