//! A simulated consensus client: the beacon REST endpoints the health checks and the SSV node use,
//! and the `/eth/v1/events` SSE stream with `head` and `block` events.

use super::state::NodeState;
use super::status::SECONDS_PER_SLOT;
use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/eth/v1/node/syncing", get(syncing))
        .route("/eth/v1/node/peer_count", get(peer_count))
        .route("/eth/v1/node/health", get(health))
        .route("/eth/v1/node/version", get(version))
        .route("/eth/v1/beacon/genesis", get(genesis))
        .route("/eth/v1/config/spec", get(spec))
        .route("/eth/v1/beacon/headers/{block_id}", get(header))
        .route("/eth/v1/events", get(events))
        .fallback(not_found)
}

async fn syncing(State(state): State<Arc<NodeState>>) -> Json<Value> {
    let s = state.status();
    let mut data = json!({
        "head_slot": s.head.to_string(),
        "sync_distance": if s.syncing { "64" } else { "0" },
        "is_syncing": s.syncing,
        "is_optimistic": s.optimistic,
    });
    if let Some(offline) = s.el_offline {
        data["el_offline"] = json!(offline);
    }
    Json(json!({ "data": data }))
}

async fn peer_count(State(state): State<Arc<NodeState>>) -> Json<Value> {
    let peers = state.status().peers;
    Json(
        json!({"data": {"disconnected": "0", "connecting": "0", "connected": peers.to_string(), "disconnecting": "0"}}),
    )
}

async fn health(State(state): State<Arc<NodeState>>) -> http::StatusCode {
    let s = state.status();
    if s.syncing || s.optimistic || s.el_offline == Some(true) {
        http::StatusCode::PARTIAL_CONTENT
    } else {
        http::StatusCode::OK
    }
}

async fn version(State(state): State<Arc<NodeState>>) -> Json<Value> {
    Json(json!({"data": {"version": format!("ssv-ha-sim/{}", state.name)}}))
}

async fn genesis(State(state): State<Arc<NodeState>>) -> Json<Value> {
    let s = state.status();
    Json(json!({"data": {
        "genesis_time": s.genesis_time.to_string(),
        "genesis_validators_root": s.genesis_validators_root,
        "genesis_fork_version": "0x00000000",
    }}))
}

async fn spec() -> Json<Value> {
    Json(
        json!({"data": {"SECONDS_PER_SLOT": SECONDS_PER_SLOT.to_string(), "SLOTS_PER_EPOCH": "32"}}),
    )
}

/// Slots behind the head at which the simulated chain's blocks are finalized (two epochs).
pub const FINALITY_SLOTS: u64 = 64;

/// `GET /eth/v1/beacon/headers/{block_id}`: `head`, a slot up to the head, or the root of one;
/// `finalized` as a node says it, the slot [`FINALITY_SLOTS`] or more behind the head (never for
/// `head`, which the cache must not keep).
async fn header(State(state): State<Arc<NodeState>>, Path(block_id): Path<String>) -> Response {
    let head = state.status().head;
    let slot = match block_id.as_str() {
        "head" => Some(head),
        id if id.starts_with("0x") => (0..=head).find(|s| root(*s) == id),
        id => id.parse::<u64>().ok().filter(|s| *s <= head),
    };
    let Some(slot) = slot else {
        let body = json!({"code": 404, "message": format!("block {block_id} not found")});
        return (http::StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    Json(json!({
        "execution_optimistic": false,
        "finalized": block_id != "head" && slot + FINALITY_SLOTS <= head,
        "data": {
            "root": root(slot),
            "canonical": true,
            "header": {"message": {"slot": slot.to_string(), "proposer_index": "1", "parent_root": root(slot.saturating_sub(1))}},
        },
    }))
    .into_response()
}

async fn not_found(uri: http::Uri) -> Response {
    let body = json!({"code": 404, "message": format!("route {} not found", uri.path())});
    (http::StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// `GET /eth/v1/events?topics=head&topics=block`: one event per topic per new head.
async fn events(State(state): State<Arc<NodeState>>, RawQuery(query): RawQuery) -> Response {
    let topics: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "topics")
        .map(|(_, v)| v.into_owned())
        .collect();
    if topics.is_empty() || topics.iter().any(|t| t != "head" && t != "block") {
        let body =
            json!({"code": 400, "message": "topics must be head and/or block, as repeated keys"});
        return (http::StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    // Keep-alive comment lines only when asked for: a silent stream must be possible.
    let keep_alive = state.status().sse_keep_alive_ms;
    let events = match state.status().sse_flood_bytes {
        _ if state.status().sse_comment_then_end => {
            futures::stream::once(async { Ok(Event::default().comment("ok")) }).boxed()
        }
        Some(bytes) => flood_events(state, bytes).boxed(),
        None => head_events(state, topics).boxed(),
    };
    let sse = Sse::new(events);
    match keep_alive {
        Some(ms) => sse
            .keep_alive(
                KeepAlive::new()
                    .interval(Duration::from_millis(ms))
                    .text("keep-alive"),
            )
            .into_response(),
        None => sse.into_response(),
    }
}

/// An event stream, counted open (in [`NodeState::event_streams`]) until it is dropped.
struct Open(Arc<NodeState>);

impl Open {
    fn new(state: Arc<NodeState>) -> Self {
        state.event_streams.fetch_add(1, Ordering::SeqCst);
        Open(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.event_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `head` events with slots counting up from the node's head, each padded to about `bytes`, as
/// fast as the connection takes them (`sse_flood_bytes`).
fn flood_events(
    state: Arc<NodeState>,
    bytes: usize,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let kill = state.kill.subscribe();
    let slot = state.status().head;
    let padding: Arc<str> = "0".repeat(bytes).into();
    let open = Open::new(state);
    futures::stream::unfold((kill, slot, open), move |(kill, slot, open)| {
        let padding = padding.clone();
        async move {
            if kill.has_changed().unwrap_or(true) {
                return None;
            }
            // Other tasks of the node (its health endpoints) get their turn between events.
            tokio::task::yield_now().await;
            let slot = slot + 1;
            let data = format!(
                r#"{{"slot":"{slot}","block":"{}","padding":"{padding}"}}"#,
                root(slot)
            );
            let event = Event::default().event("head").data(data);
            open.0.events_sent.fetch_add(1, Ordering::SeqCst);
            Some((Ok(event), (kill, slot, open)))
        }
    })
}

fn head_events(
    state: Arc<NodeState>,
    topics: Vec<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let heads = state.heads.subscribe();
    let kill = state.kill.subscribe();
    let end_at_once = state.status().sse_end_at_once;
    let open = Open::new(state);
    futures::stream::unfold(
        (heads, kill, Vec::<Event>::new(), open),
        move |(mut heads, mut kill, mut queue, open)| {
            let topics = topics.clone();
            async move {
                if end_at_once {
                    return None;
                }
                loop {
                    if let Some(event) = queue.pop() {
                        open.0.events_sent.fetch_add(1, Ordering::SeqCst);
                        return Some((Ok(event), (heads, kill, queue, open)));
                    }
                    tokio::select! {
                        head = heads.recv() => {
                            let Ok(slot) = head else { continue };
                            // Popped from the back: push in reverse so `head` goes out before `block`.
                            for topic in topics.iter().rev() {
                                let data = match topic.as_str() {
                                    "head" => json!({"slot": slot.to_string(), "block": root(slot), "state": root(slot + 1), "epoch_transition": false}),
                                    _ => json!({"slot": slot.to_string(), "block": root(slot), "execution_optimistic": false}),
                                };
                                queue.push(Event::default().event(topic.clone()).data(data.to_string()));
                            }
                        }
                        _ = kill.changed() => return None,
                    }
                }
            }
        },
    )
}

/// The root of the block at `slot`.
pub fn root(slot: u64) -> String {
    format!("0x{:064x}", slot.wrapping_mul(0x9e37_79b9))
}
