//! The status page (`GET /` on the admin listener): one self-contained HTML page, rendered on the
//! server from the same snapshot as `/status`, refreshing itself. No script, no external asset.

use super::status::{BackendStatus, PoolStatus, Status};
use crate::health::Facts;
use crate::metrics::events::Event;
use std::fmt::Write;

/// Seconds between two automatic refreshes of the page.
pub const REFRESH_SECONDS: u32 = 3;

/// Recent events listed under the tables (`/status` has them all).
pub const PAGE_EVENTS: usize = 50;

pub fn render(status: &Status) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ssv-ha status</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f6f7f9; }}
h1 {{ font-size: 1.3em; margin: 0 0 .2em; }}
h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
.meta {{ color: #5b6475; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0001; }}
th, td {{ text-align: left; padding: .45em .7em; border-bottom: 1px solid #e4e7ec; vertical-align: top; }}
th {{ background: #eef0f4; font-weight: 600; }}
.state {{ font-weight: 700; }}
.up .state {{ color: #137333; }} .down .state {{ color: #b3261e; }} .unknown .state {{ color: #8a6d00; }}
tr.down {{ background: #fdf1f0; }}
.active {{ display: inline-block; padding: 0 .4em; border-radius: 3px; background: #137333; color: #fff; font-size: .85em; }}
.none {{ color: #b3261e; font-weight: 700; }}
tr.backend_down td.kind, tr.failover td.kind, tr.reload_failed td.kind {{ color: #b3261e; font-weight: 600; }}
tr.backend_up td.kind {{ color: #137333; font-weight: 600; }}
code {{ font-size: .92em; }}
</style></head><body>
<h1>ssv-ha {version}</h1>
<p class="meta">Refreshes every {REFRESH_SECONDS} s. The same facts as JSON: <a href="/status">/status</a>; metrics: <a href="/metrics">/metrics</a>.</p>
"#,
        version = escape(status.version)
    );
    for pool in &status.pools {
        pool_section(&mut html, pool);
    }
    events_section(&mut html, &status.events);
    html.push_str("</body></html>\n");
    html
}

fn pool_section(html: &mut String, pool: &PoolStatus) {
    let _ = writeln!(
        html,
        "<h2 id=\"pool-{name}\">{name} <span class=\"meta\">({kind}, {policy}, {healthy} of {total} healthy)</span></h2>",
        name = escape(&pool.name),
        kind = pool.kind,
        policy = pool.policy,
        healthy = pool.healthy_backends,
        total = pool.backends.len(),
    );
    match &pool.active {
        Some(active) => {
            let _ = writeln!(html, "<p>Traffic goes to <b>{}</b>.</p>", escape(active));
        }
        None => {
            html.push_str("<p class=\"none\">No healthy backend: requests are answered 503.</p>\n")
        }
    }
    if pool.sessions == "seamless" {
        let _ = writeln!(
            html,
            "<p class=\"meta\">Sessions move on a failover (seamless): {} moved so far.</p>",
            pool.sessions_moved
        );
    }
    if let Some(cache) = &pool.cache {
        let _ = writeln!(
            html,
            "<p class=\"meta\">Cache: {} answers, {} of {} bytes; {} hits, {} misses.</p>",
            cache.entries, cache.bytes, cache.capacity, cache.hits, cache.misses
        );
    }
    html.push_str(
        "<table><tr><th>backend</th><th>state</th><th>reason</th><th>head</th><th>lag</th><th>peers</th>\
         <th>network</th><th>latency</th><th>sessions</th><th>last check</th><th>last change</th></tr>\n",
    );
    for b in &pool.backends {
        backend_row(html, b, pool.active.as_deref() == Some(b.name.as_str()));
    }
    html.push_str("</table>\n");
}

fn backend_row(html: &mut String, b: &BackendStatus, active: bool) {
    let (head, peers, network) = match &b.facts {
        Some(Facts::Execution(f)) => (f.head, f.peers, f.chain_id.map(|c| format!("chain {c}"))),
        Some(Facts::Consensus(f)) => (
            f.head_slot,
            f.peers,
            f.genesis.as_ref().map(|g| {
                format!(
                    "genesis {}",
                    &g.validators_root[..g.validators_root.len().min(10)]
                )
            }),
        ),
        None => (None, None, None),
    };
    let dash = || "–".to_string();
    let _ = writeln!(
        html,
        "<tr class=\"backend {state}\" id=\"backend-{name}\"><td><b>{name}</b>{backup}{active}<br><code>{url}</code></td>\
         <td class=\"state\">{state}</td><td class=\"reason\">{reason}</td><td>{head}</td><td>{lag}</td><td>{peers}</td>\
         <td>{network}</td><td>{latency}</td><td>{sessions}</td><td>{check}</td><td>{change}</td></tr>",
        state = b.state,
        name = escape(&b.name),
        backup = if b.backup { " <span class=\"meta\">backup</span>" } else { "" },
        active = if active { " <span class=\"active\">active</span>" } else { "" },
        url = escape(&b.url),
        reason = escape(b.reason.as_deref().unwrap_or("not checked yet")),
        head = head.map_or_else(dash, |h| h.to_string()),
        lag = b.verdict.as_ref().and_then(|v| v.lag).map_or_else(dash, |l| l.to_string()),
        peers = peers.map_or_else(dash, |p| p.to_string()),
        network = network.map_or_else(dash, |n| escape(&n)),
        latency = b.latency_ms.map_or_else(dash, |l| format!("{l:.1} ms")),
        sessions = b.sessions,
        check = b.last_check.as_deref().map_or_else(dash, escape),
        change = b.last_change.as_deref().map_or_else(dash, escape),
    );
}

/// The latest [`PAGE_EVENTS`] events, newest first (as `/status` lists them).
fn events_section(html: &mut String, events: &[Event]) {
    html.push_str("<h2 id=\"events\">Recent events</h2>\n");
    if events.is_empty() {
        html.push_str("<p class=\"meta\">Nothing has happened since the start.</p>\n");
        return;
    }
    html.push_str(
        "<table id=\"event-list\"><tr><th>time</th><th>event</th><th>pool</th><th>backend</th><th>what and why</th></tr>\n",
    );
    for e in events.iter().take(PAGE_EVENTS) {
        let dash = || "–".to_string();
        let _ = writeln!(
            html,
            "<tr class=\"event {kind}\"><td>{time}</td><td class=\"kind\">{kind}</td><td>{pool}</td><td>{backend}</td><td class=\"reason\">{reason}</td></tr>",
            kind = e.kind.as_str(),
            time = escape(&e.time),
            pool = e.pool.as_deref().map_or_else(dash, escape),
            backend = e.backend.as_deref().map_or_else(dash, escape),
            reason = escape(&e.reason),
        );
    }
    html.push_str("</table>\n");
}

/// Escapes text for HTML: reasons can quote what a backend sent.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::events::EventKind;

    #[test]
    fn escapes_what_backends_send() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn lists_the_latest_events_newest_first_escaped() {
        let events = crate::metrics::events::Events::default();
        for n in 0..PAGE_EVENTS + 5 {
            events.record(
                EventKind::Failover,
                Some("execution"),
                Some("ec-b"),
                format!("event {n} <b>"),
            );
        }
        let status = Status {
            version: "1.2.3",
            pools: vec![],
            events: events.recent(usize::MAX),
        };
        let html = render(&status);
        let listed: Vec<&str> = html
            .match_indices("<tr class=\"event failover\">")
            .map(|(at, _)| &html[at..])
            .collect();
        assert_eq!(listed.len(), PAGE_EVENTS);
        let newest = format!("event {} &lt;b&gt;", PAGE_EVENTS + 4);
        assert!(listed[0].contains(&newest), "{html}");
        assert!(
            html.find(&newest) < html.find("event 5 &lt;b&gt;"),
            "newest first"
        );
        assert!(!html.contains("event 4 "), "only the latest {PAGE_EVENTS}");
        assert!(!html.contains("<b></td>"), "escaped");

        let quiet = render(&Status {
            version: "1.2.3",
            pools: vec![],
            events: vec![],
        });
        assert!(quiet.contains("Nothing has happened since the start."));
    }

    #[test]
    fn renders_pools_backends_and_reasons() {
        let status = Status {
            version: "1.2.3",
            pools: vec![PoolStatus {
                name: "execution".into(),
                kind: "execution",
                policy: "first",
                active: None,
                healthy_backends: 0,
                sessions: "cut",
                sessions_moved: 0,
                cache: None,
                backends: vec![BackendStatus {
                    name: "ec-a".into(),
                    url: "https://a.example.com/".into(),
                    ws_url: "https://a.example.com/".into(),
                    backup: false,
                    headers: vec![],
                    state: "down",
                    healthy: false,
                    reason: Some("reply is not JSON (`<html>`)".into()),
                    verdict: None,
                    facts: None,
                    latency_ms: Some(1.25),
                    sessions: 0,
                    last_check: None,
                    last_change: None,
                }],
            }],
            events: vec![],
        };
        let html = render(&status);
        assert!(html.contains("No healthy backend"));
        assert!(html.contains("<tr class=\"backend down\" id=\"backend-ec-a\">"));
        assert!(html.contains("reply is not JSON (`&lt;html&gt;`)"));
        assert!(html.contains("1.2 ms") || html.contains("1.3 ms"));
        assert!(!html.contains("<html>`"), "backend text is escaped");
    }
}
