//! `/status`: every pool and backend with its health, reasons and last observation, and the
//! recent events, as JSON.

use crate::config::model::{Policy, PoolKind, SessionMode};
use crate::health::verdict::Verdict;
use crate::health::Facts;
use crate::metrics::events::{Event, Events, MAX_EVENTS};
use crate::upstream::Pool;
use serde::Serialize;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub pools: Vec<PoolStatus>,
    /// Recent health transitions, failovers, session cuts and moves, and reloads, newest first
    /// (the last [`MAX_EVENTS`]).
    pub events: Vec<Event>,
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub kind: &'static str,
    pub policy: &'static str,
    /// The backend plain requests go to now (the first healthy one in order).
    pub active: Option<String>,
    pub healthy_backends: usize,
    /// `cut` or `seamless`: what a failover does to long-lived sessions.
    pub sessions: &'static str,
    /// Sessions moved to another backend with their client connected, since start.
    pub sessions_moved: u64,
    /// The answer cache: what it holds and may hold; `None` when it is off.
    pub cache: Option<CacheStatus>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Serialize)]
pub struct CacheStatus {
    /// Bytes held now: answers, keys and a fixed overhead per entry.
    pub bytes: u64,
    pub entries: usize,
    /// `max_bytes`.
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub url: String,
    pub ws_url: String,
    pub backup: bool,
    /// Names of the headers added to its requests (values are secret and never shown).
    pub headers: Vec<String>,
    /// `up`, `down`, or `unknown` before the first check.
    pub state: &'static str,
    pub healthy: bool,
    /// One line: why the backend is down, or `healthy` with any notes.
    pub reason: Option<String>,
    pub verdict: Option<Verdict>,
    pub facts: Option<Facts>,
    pub latency_ms: Option<f64>,
    /// WebSocket and SSE sessions open to it now.
    pub sessions: i64,
    pub last_check: Option<String>,
    pub last_change: Option<String>,
}

/// A backend URL as shown to whoever reads the status: scheme, host and port. A path often
/// carries a provider's key (`https://provider.example/v3/KEY`), so it is shown only as `/…`
/// (credentials and queries are refused by the config already).
pub fn redacted(url: &url::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if !matches!(url.path(), "" | "/") {
        shown.push_str("/…");
    }
    shown
}

pub fn snapshot(pools: &[Arc<Pool>], events: &Events) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION"),
        pools: pools.iter().map(|p| pool_status(p)).collect(),
        events: events.recent(MAX_EVENTS),
    }
}

fn pool_status(pool: &Pool) -> PoolStatus {
    let backends: Vec<BackendStatus> = pool
        .backends
        .iter()
        .map(|b| {
            let record = b.record().clone();
            BackendStatus {
                name: b.name().to_string(),
                url: redacted(&b.config.http.url),
                // Kept as the HTTP URL the upgrade is sent to; shown as the WebSocket URL it is.
                ws_url: redacted(&b.config.ws.url).replacen("http", "ws", 1),
                backup: b.config.backup,
                headers: b
                    .config
                    .headers
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect(),
                state: match record.hysteresis.state() {
                    None => "unknown",
                    Some(_) if b.is_up() => "up",
                    Some(_) => "down",
                },
                healthy: b.is_up(),
                reason: record.verdict.as_ref().map(|v| {
                    // Healthy checks of a backend still down: say how far it is from coming back.
                    if v.healthy && record.hysteresis.state() == Some(false) {
                        format!(
                            "recovering: {} of {} good checks",
                            record.hysteresis.streak(),
                            pool.config.health.rise
                        )
                    } else {
                        v.summary()
                    }
                }),
                verdict: record.verdict,
                facts: record.facts,
                latency_ms: record.latency.map(|d| d.as_secs_f64() * 1000.0),
                sessions: b.metrics.sessions_open.iter().map(|g| g.get()).sum(),
                last_check: record.last_check.map(timestamp),
                last_change: record.last_change.map(timestamp),
            }
        })
        .collect();
    PoolStatus {
        name: pool.name().to_string(),
        kind: match pool.config.kind {
            PoolKind::Execution => "execution",
            PoolKind::Consensus => "consensus",
        },
        policy: match pool.config.policy {
            Policy::First => "first",
            Policy::RoundRobin => "round_robin",
        },
        active: pool.active().map(|i| pool.backends[i].name().to_string()),
        healthy_backends: backends.iter().filter(|b| b.healthy).count(),
        sessions: match pool.config.sessions {
            SessionMode::Cut => "cut",
            SessionMode::Seamless => "seamless",
        },
        sessions_moved: pool.metrics.moved.iter().flatten().map(|c| c.get()).sum(),
        cache: pool.cache.as_ref().map(|c| CacheStatus {
            bytes: c.bytes(),
            entries: c.entries(),
            capacity: c.capacity(),
            hits: pool.metrics.cache_hits.get(),
            misses: pool.metrics.cache_misses.get(),
        }),
        backends,
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn keys_in_urls_are_not_shown() {
        for (url, shown) in [
            ("https://node.example:8545/", "https://node.example:8545"),
            (
                "https://provider.example/v3/0123456789abcdef",
                "https://provider.example/…",
            ),
            (
                "wss://provider.example/ws/secret",
                "wss://provider.example/…",
            ),
            ("http://[::1]:5052", "http://[::1]:5052"),
        ] {
            let got = redacted(&url.parse().unwrap());
            assert_eq!(got, shown, "{url}");
            for secret in ["0123456789abcdef", "secret"] {
                assert!(!got.contains(secret), "{got}");
            }
        }
    }
}
