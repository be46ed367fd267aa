//! `bench-load`: the WebSocket and SSE side of `benches/run`, which wrk cannot drive.
//!
//! One binary, two roles, run as separate processes so that neither shares the other's file
//! descriptor limit:
//!
//! - `serve`: the backend behind every proxy under test. It answers any POST with the fixed
//!   JSON-RPC batch that also satisfies ssv-ha's execution health check, answers every WebSocket
//!   message on `/ws` with a fixed JSON-RPC answer, and streams `/eth/v1/events` as SSE: one event
//!   per tick to every subscriber, carrying the time it was sent.
//! - `serve-node`: an execution and a beacon node in one, answering each call by its method, for
//!   the read scenarios (`node.rs`).
//! - `ws`, `ws-idle`, `sse`: the clients. Each prints one line, `<figure> <p50 ms> <p99 ms>`, for
//!   the harness to collect (`nan` where a latency does not apply).
//!
//! Build: `cargo build --release --example bench-load`.

#[path = "node.rs"]
mod node;

use anyhow::{bail, Context, Result};
use axum::extract::ws::{Message as ServerMessage, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, Barrier};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The health check's batch answer: not syncing, 25 peers, block 16, chain 1.
const BATCH_ANSWER: &str = r#"[{"jsonrpc":"2.0","id":1,"result":false},{"jsonrpc":"2.0","id":2,"result":"0x19"},{"jsonrpc":"2.0","id":3,"result":"0x10"},{"jsonrpc":"2.0","id":4,"result":"0x1"}]"#;
const WS_REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
const WS_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":"0x10"}"#;

#[derive(Parser)]
#[command(about = "WebSocket and SSE load for benches/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an execution and a beacon node in one (`node.rs`) until killed: the backend of the
    /// read scenarios.
    ServeNode {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// How late client requests are answered (health checks are answered at once).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        delay: Duration,
        /// How long an `eth_getLogs` takes the node (a real one filters thousands of blocks).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        logs_cost: Duration,
    },
    /// Serve the benchmark backend until killed.
    Serve {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Time between two SSE events.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        tick: Duration,
    },
    /// Request/answer round trips over WebSocket connections, each waiting for its answer before
    /// sending again. Prints messages answered per second and the round trip's p50 and p99.
    Ws {
        #[arg(long)]
        url: String,
        #[arg(long)]
        conns: usize,
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Opens idle WebSocket sessions (each proven end to end by one round trip), then prints the
    /// resident memory of the given processes and their children, in MB.
    WsIdle {
        #[arg(long)]
        url: String,
        #[arg(long)]
        conns: usize,
        /// Processes whose memory to add up (the proxy; children such as nginx workers count too).
        #[arg(long, value_delimiter = ',', required = true)]
        pids: Vec<u32>,
        /// Each session also subscribes to `newHeads` and `logs`, as an SSV node's does, and the
        /// figure is the memory the sessions added (resident after, less before they opened).
        #[arg(long)]
        subscribed: bool,
    },
    /// Subscribes SSE streams and measures how late each event arrives. Prints events delivered
    /// per second over all streams and the delivery delay's p50 and p99.
    Sse {
        #[arg(long)]
        url: String,
        #[arg(long)]
        streams: usize,
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench-load: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(line) => {
            if let Some(line) = line {
                println!("{line}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<Option<String>> {
    match command {
        Command::Serve { listen, tick } => serve(listen, tick).await.map(|()| None),
        Command::ServeNode {
            listen,
            delay,
            logs_cost,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            axum::serve(listener, node::app(delay, logs_cost))
                .await
                .context("serving")
                .map(|()| None)
        }
        Command::Ws {
            url,
            conns,
            duration,
        } => ws_round_trips(&url, conns, duration).await.map(Some),
        Command::WsIdle {
            url,
            conns,
            pids,
            subscribed,
        } => ws_idle(&url, conns, &pids, subscribed).await.map(Some),
        Command::Sse {
            url,
            streams,
            duration,
        } => sse_delivery(&url, streams, duration).await.map(Some),
    }
}

// --- the backend ---------------------------------------------------------------------------

async fn serve(listen: std::net::SocketAddr, tick: Duration) -> Result<()> {
    let (events, _) = broadcast::channel::<u128>(16);
    let ticker = events.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            // No subscribers is fine: the send only fails then.
            let _ = ticker.send(unix_nanos());
        }
    });
    let app = axum::Router::new()
        .route("/ws", get(websocket))
        .route(
            "/eth/v1/events",
            get(move || event_stream(events.subscribe())),
        )
        .fallback(post(|| async {
            ([("content-type", "application/json")], BATCH_ANSWER)
        }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    axum::serve(listener, app).await.context("serving")
}

async fn websocket(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    // Small buffers: ten thousand idle sessions should not cost the backend gigabytes.
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(answer_messages)
}

async fn answer_messages(mut socket: WebSocket) {
    // Subscription ids handed out on this connection.
    let mut subscriptions = 0u64;
    while let Some(Ok(message)) = socket.recv().await {
        let answer = match message {
            // The answer bears the request's id: a gateway that sends requests under ids of its
            // own (`sessions: seamless`) matches answers by them.
            ServerMessage::Text(text) if text.as_str() == WS_REQUEST => {
                ServerMessage::Text(WS_ANSWER.into())
            }
            ServerMessage::Text(text) => {
                let request = serde_json::from_str::<serde_json::Value>(text.as_str())
                    .unwrap_or(serde_json::Value::Null);
                let id = request
                    .get("id")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                // A subscription gets an id of its own (no notifications follow: the sessions
                // stay idle); any other call the same block number.
                let result =
                    if request.get("method").and_then(|m| m.as_str()) == Some("eth_subscribe") {
                        subscriptions += 1;
                        format!("0x{subscriptions:032x}")
                    } else {
                        "0x10".to_string()
                    };
                let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
                ServerMessage::Text(answer.to_string().into())
            }
            ServerMessage::Close(_) => return,
            _ => continue,
        };
        if socket.send(answer).await.is_err() {
            return;
        }
    }
}

async fn event_stream(events: broadcast::Receiver<u128>) -> impl IntoResponse {
    let stream = futures::stream::unfold(events, |mut events| async move {
        loop {
            match events.recv().await {
                Ok(sent) => {
                    let event = Event::default().event("head").data(sent.to_string());
                    return Some((Ok::<_, Infallible>(event), events));
                }
                // A slow subscriber skips what it missed; its delays show that.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

// --- the clients ---------------------------------------------------------------------------

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Result<Socket> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("opening a WebSocket to {url}"))?;
    Ok(socket)
}

/// Sends one request and waits for its answer.
async fn round_trip(socket: &mut Socket) -> Result<()> {
    socket.send(Message::text(WS_REQUEST)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == WS_ANSWER => return Ok(()),
            // The same answer written another way (a gateway that re-serializes it).
            Some(Ok(Message::Text(text)))
                if serde_json::from_str::<serde_json::Value>(text.as_str()).ok()
                    == serde_json::from_str::<serde_json::Value>(WS_ANSWER).ok() =>
            {
                return Ok(())
            }
            Some(Ok(Message::Text(text))) => bail!("unexpected answer: {text}"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected message: {other:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection closed"),
        }
    }
}

/// Opens `count` connections with `open`, at most 256 at a time.
async fn open_all<T, F, Fut>(count: usize, open: F) -> Result<Vec<T>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    futures::stream::iter((0..count).map(|_| open()))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Opens `count` WebSockets, each proven by one round trip.
async fn connect_many(url: &str, count: usize) -> Result<Vec<Socket>> {
    open_all(count, || async {
        let mut socket = connect(url).await?;
        round_trip(&mut socket).await?;
        Ok(socket)
    })
    .await
}

/// Runs `measure` on every connection, all starting together, and prints the rate of the delays
/// they gathered over `duration` with their p50 and p99.
async fn measure_all<T, F, Fut>(
    connections: Vec<T>,
    duration: Duration,
    measure: F,
) -> Result<String>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Duration>>> + Send + 'static,
{
    let start = Arc::new(Barrier::new(connections.len()));
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let start = start.clone();
            // Not polled before the barrier: each measurement's clock starts with the others.
            let measurement = measure(connection);
            tokio::spawn(async move {
                start.wait().await;
                measurement.await
            })
        })
        .collect();
    let mut delays = Vec::new();
    for task in tasks {
        delays.extend(task.await.context("a client task failed")??);
    }
    let rate = delays.len() as f64 / duration.as_secs_f64();
    Ok(format!("{rate:.0} {}", percentiles(&mut delays)))
}

async fn ws_round_trips(url: &str, conns: usize, duration: Duration) -> Result<String> {
    let sockets = connect_many(url, conns).await?;
    measure_all(sockets, duration, |mut socket| async move {
        let deadline = Instant::now() + duration;
        let mut delays = Vec::new();
        while Instant::now() < deadline {
            let sent = Instant::now();
            round_trip(&mut socket).await?;
            delays.push(sent.elapsed());
        }
        let _ = socket.close(None).await;
        Ok(delays)
    })
    .await
}

async fn ws_idle(url: &str, conns: usize, pids: &[u32], subscribed: bool) -> Result<String> {
    let resident = || -> Result<u64> { pids.iter().map(|pid| resident_kib(*pid)).sum() };
    let before = resident()?;
    let sockets = if subscribed {
        open_all(conns, || async {
            let mut socket = connect(url).await?;
            round_trip(&mut socket).await?;
            subscribe(&mut socket, 2, r#"["newHeads"]"#).await?;
            subscribe(
                &mut socket,
                3,
                r#"["logs",{"address":"0x00000000219ab540356cbb839cbe05303d7705fa"}]"#,
            )
            .await?;
            Ok(socket)
        })
        .await?
    } else {
        connect_many(url, conns).await?
    };
    // Let the proxies settle what they allocated while the sessions opened.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident()?;
    drop(sockets);
    let kib = if subscribed {
        after.saturating_sub(before)
    } else {
        after
    };
    Ok(format!("{:.1} nan nan", kib as f64 / 1024.0))
}

/// Subscribes (`params`, JSON text) and waits for the subscription's id.
async fn subscribe(socket: &mut Socket, id: u64, params: &str) -> Result<()> {
    let request =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_subscribe","params":{params}}}"#);
    socket.send(Message::text(request)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let answer: serde_json::Value = serde_json::from_str(text.as_str())
                    .with_context(|| format!("an answer that is not JSON: {text}"))?;
                if answer["id"] == id && answer["result"].is_string() {
                    return Ok(());
                }
                bail!("unexpected answer to eth_subscribe: {text}");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected message: {other:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection closed"),
        }
    }
}

/// Resident memory of a process and its direct children (nginx's workers), in KiB.
fn resident_kib(pid: u32) -> Result<u64> {
    let mut total = vm_rss(pid)?;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised command name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            total += vm_rss(child).unwrap_or(0);
        }
    }
    Ok(total)
}

fn vm_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in the status of process {pid}"))
}

async fn sse_delivery(url: &str, streams: usize, duration: Duration) -> Result<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .context("building an HTTP client")?;
    let opened = open_all(streams, || async {
        let response = client
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("subscribing {url}"))?;
        if !response.status().is_success() {
            bail!("subscribing {url}: {}", response.status());
        }
        Ok(response)
    })
    .await?;
    measure_all(opened, duration, |mut response| async move {
        let deadline = tokio::time::Instant::now() + duration;
        let mut delays = Vec::new();
        let mut pending = Vec::new();
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Ok(delays),
                Ok(chunk) => chunk.context("reading an event stream")?,
            };
            let Some(chunk) = chunk else {
                bail!("an event stream ended early");
            };
            pending.extend_from_slice(&chunk);
            let received = unix_nanos();
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(sent) = line
                    .strip_prefix(b"data:")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse::<u128>().ok())
                {
                    let delay = received.saturating_sub(sent);
                    delays.push(Duration::from_nanos(delay.min(u64::MAX as u128) as u64));
                }
            }
        }
    })
    .await
}

/// "p50 p99" in milliseconds.
fn percentiles(delays: &mut [Duration]) -> String {
    if delays.is_empty() {
        return "nan nan".into();
    }
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("{:.3} {:.3}", at(0.50), at(0.99))
}
