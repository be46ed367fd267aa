//! `ssv-ha import-haproxy`: turns an haproxy configuration of the original SSV HA setup's shape into
//! an equivalent ssv-ha configuration, with a comment wherever something could not be carried over.
//!
//! Understood: `defaults` timeouts and `retries`; frontends' `bind`, SNI or Host `acl`s, `use_backend`
//! and `default_backend`; backends' `balance`, `external-check command` (`check-ecsync.sh` means an
//! execution pool, `check-ccsync.sh` a consensus pool), `inter`, and `server NAME ADDR [backup]`. Two
//! execution backends with the same server names (one reached by HTTPS, one by WSS, as the original
//! setup had) become one pool whose backends have a `url` and a `ws_url`: one health verdict per node.

use std::collections::BTreeMap;
use std::fmt::Write;

/// What the input must provide for an import to make sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("{0}")]
    Unusable(String),
}

/// Certificate and key for the TLS listener that replaces haproxy's TLS pass-through.
#[derive(Debug, Default, Clone)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default)]
struct Frontend {
    name: String,
    port: Option<u16>,
    http: bool,
    acls: BTreeMap<String, Vec<String>>,
    uses: Vec<(String, String)>,
    default_backend: Option<String>,
}

#[derive(Debug, Default)]
struct Backend {
    name: String,
    balance: Option<String>,
    check_command: Option<String>,
    inter_ms: Option<u64>,
    servers: Vec<Server>,
}

#[derive(Debug, Clone)]
struct Server {
    name: String,
    host: String,
    port: u16,
    backup: bool,
}

#[derive(Debug, Default)]
struct Parsed {
    frontends: Vec<Frontend>,
    backends: Vec<Backend>,
    timeouts: BTreeMap<String, String>,
    retries: Option<u32>,
    notes: Vec<String>,
}

/// Converts haproxy configuration text into ssv-ha YAML.
pub fn import(text: &str, tls: Option<&TlsFiles>) -> Result<String, ImportError> {
    let parsed = parse(text)?;
    render(&parsed, tls)
}

fn parse(text: &str) -> Result<Parsed, ImportError> {
    enum Section {
        Other,
        Global,
        Defaults,
        Frontend(usize),
        Backend(usize),
    }
    let mut p = Parsed::default();
    let mut section = Section::Other;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if !indented {
            section = match words[0] {
                "global" => Section::Global,
                "defaults" => Section::Defaults,
                "frontend" | "listen" => {
                    let name = words.get(1).ok_or(ImportError::Syntax {
                        line: line_no,
                        message: "a frontend needs a name".into(),
                    })?;
                    p.frontends.push(Frontend {
                        name: name.to_string(),
                        ..Frontend::default()
                    });
                    Section::Frontend(p.frontends.len() - 1)
                }
                "backend" => {
                    let name = words.get(1).ok_or(ImportError::Syntax {
                        line: line_no,
                        message: "a backend needs a name".into(),
                    })?;
                    p.backends.push(Backend {
                        name: name.to_string(),
                        ..Backend::default()
                    });
                    Section::Backend(p.backends.len() - 1)
                }
                other => {
                    p.notes.push(format!("section `{other}` ({}) not carried over: ssv-ha resolves backend names on every check by itself", words.join(" ")));
                    Section::Other
                }
            };
            continue;
        }
        match &section {
            Section::Global => match words[0] {
                "maxconn" => p.notes.push(format!(
                    "global `maxconn {}`: ssv-ha caps WebSocket sessions per listener (`max_websockets`, default 10000)",
                    words.get(1).unwrap_or(&"?")
                )),
                "external-check" | "insecure-fork-wanted" => {}
                _ => p.notes.push(format!("global `{}` not carried over", words.join(" "))),
            },
            Section::Defaults => match words.as_slice() {
                ["timeout", which, value, ..] => {
                    p.timeouts.insert(which.to_string(), value.to_string());
                }
                ["retries", n, ..] => {
                    p.retries = Some(n.parse().map_err(|_| ImportError::Syntax { line: line_no, message: format!("retries `{n}` is not a number") })?);
                }
                ["mode", ..] | ["log", ..] | ["option", ..] => {}
                _ => p.notes.push(format!("defaults `{}` not carried over", words.join(" "))),
            },
            Section::Frontend(f) => {
                let f = &mut p.frontends[*f];
                match words.as_slice() {
                    ["bind", addr, ..] => {
                        let port = addr.rsplit(':').next().and_then(|port| port.parse().ok());
                        f.port = port.or(f.port);
                    }
                    ["mode", mode, ..] => f.http = *mode == "http",
                    ["acl", name, fetch, rest @ ..] if fetch.contains("ssl_sni") || fetch.contains("hdr(host)") => {
                        let hosts = rest.iter().filter(|w| !w.starts_with('-')).map(|h| h.to_ascii_lowercase());
                        f.acls.entry(name.to_string()).or_default().extend(hosts);
                    }
                    ["use_backend", backend, "if", acl, ..] => f.uses.push((backend.to_string(), acl.to_string())),
                    ["default_backend", backend] => f.default_backend = Some(backend.to_string()),
                    ["tcp-request", ..] | ["http-request", ..] | ["option", ..] | ["log", ..] => {}
                    _ => p.notes.push(format!("frontend {} `{}` not carried over", f.name, words.join(" "))),
                }
            }
            Section::Backend(b) => {
                let b = &mut p.backends[*b];
                let inter = words.windows(2).find(|w| w[0] == "inter").and_then(|w| haproxy_ms(w[1]));
                match words.as_slice() {
                    ["balance", how, ..] => b.balance = Some(how.to_string()),
                    ["external-check", "command", command, ..] => b.check_command = Some(command.to_string()),
                    ["default-server", ..] => b.inter_ms = inter.or(b.inter_ms),
                    ["server", name, addr, params @ ..] => {
                        let (host, port) = match addr.rsplit_once(':') {
                            Some((host, port)) => (
                                host,
                                port.parse().map_err(|_| ImportError::Syntax { line: line_no, message: format!("`{addr}` has no valid port") })?,
                            ),
                            None => (*addr, 443),
                        };
                        b.servers.push(Server { name: name.to_string(), host: host.to_string(), port, backup: params.contains(&"backup") });
                        b.inter_ms = inter.or(b.inter_ms);
                    }
                    ["mode", ..] | ["option", ..] | ["external-check", ..] | ["log", ..] => {}
                    _ => p.notes.push(format!("backend {} `{}` not carried over", b.name, words.join(" "))),
                }
            }
            Section::Other => {}
        }
    }
    Ok(p)
}

/// An haproxy time (`5s`, `5m`, `3600s`, `500ms`, or bare milliseconds) in milliseconds.
fn haproxy_ms(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    Some(match unit {
        "" | "ms" => number,
        "s" => number * 1000,
        "m" => number * 60_000,
        "h" => number * 3_600_000,
        "d" => number * 86_400_000,
        _ => return None,
    })
}

fn duration(ms: u64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A pool to write: a main backend, and the backend whose servers give its WebSocket URLs.
struct PoolPlan<'a> {
    name: String,
    kind: &'static str,
    main: &'a Backend,
    ws: Option<&'a Backend>,
}

fn render(p: &Parsed, tls: Option<&TlsFiles>) -> Result<String, ImportError> {
    let kind_of = |b: &Backend| match b.check_command.as_deref() {
        Some(c) if c.contains("ccsync") => Some("consensus"),
        Some(c) if c.contains("ecsync") => Some("execution"),
        _ => None,
    };
    // Hosts routed to each backend, over every frontend.
    let mut hosts_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in &p.frontends {
        for (backend, acl) in &f.uses {
            hosts_of
                .entry(backend)
                .or_default()
                .extend(f.acls.get(acl).cloned().unwrap_or_default());
        }
    }
    let is_ws = |b: &Backend| {
        b.name.contains("ws")
            || hosts_of
                .get(b.name.as_str())
                .is_some_and(|hs| hs.iter().any(|h| h.contains("ws")))
    };
    let same_servers = |a: &Backend, b: &Backend| {
        a.servers.len() == b.servers.len()
            && a.servers
                .iter()
                .all(|s| b.servers.iter().any(|t| t.name == s.name))
    };

    let mut notes = p.notes.clone();
    let mut plans: Vec<PoolPlan<'_>> = Vec::new();
    let mut pool_of: BTreeMap<&str, String> = BTreeMap::new();
    for b in p.backends.iter().filter(|b| !b.servers.is_empty()) {
        let kind = match kind_of(b) {
            Some(kind) => kind,
            None => {
                notes.push(format!("backend {} has no check-ecsync/check-ccsync external check: imported as an execution pool; check `kind`", b.name));
                "execution"
            }
        };
        if kind == "execution" && is_ws(b) {
            continue; // folded into its HTTPS twin below, when it has one
        }
        let ws = (kind == "execution")
            .then(|| {
                p.backends.iter().find(|w| {
                    !std::ptr::eq(*w, b)
                        && is_ws(w)
                        && kind_of(w) == Some("execution")
                        && same_servers(b, w)
                })
            })
            .flatten();
        let name = b.name.trim_end_matches("-good").to_string();
        pool_of.insert(&b.name, name.clone());
        if let Some(ws) = ws {
            pool_of.insert(&ws.name, name.clone());
        }
        plans.push(PoolPlan {
            name,
            kind,
            main: b,
            ws,
        });
    }
    // A WebSocket backend without an HTTPS twin becomes a pool of its own.
    let orphans: Vec<&Backend> = p
        .backends
        .iter()
        .filter(|w| !w.servers.is_empty() && !pool_of.contains_key(w.name.as_str()))
        .collect();
    for w in orphans {
        let name = w.name.trim_end_matches("-good").to_string();
        pool_of.insert(&w.name, name.clone());
        plans.push(PoolPlan {
            name,
            kind: "execution",
            main: w,
            ws: None,
        });
    }
    if plans.is_empty() {
        return Err(ImportError::Unusable(
            "no backend with servers found".into(),
        ));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from an haproxy configuration by `ssv-ha import-haproxy`. Review before use."
    );
    for note in &notes {
        let _ = writeln!(out, "# - {note}");
    }
    let _ = writeln!(out, "# - health rules: the external check scripts' MIN_PEERS is not in the haproxy file; min_peers is 10, as they had");
    let _ = writeln!(out, "# - `on-marked-down shutdown-sessions` is built in: sessions on a backend marked down are ended");
    out.push('\n');

    // The admin listener takes the place of an HTTP frontend serving /metrics.
    if let Some(port) = p
        .frontends
        .iter()
        .find(|f| f.http && f.uses.is_empty())
        .and_then(|f| f.port)
    {
        let _ = writeln!(
            out,
            "admin:\n  address: 0.0.0.0:{port}   # /metrics, /status, /healthz, /readyz\n"
        );
    }

    let _ = writeln!(out, "listeners:");
    let routed: Vec<&Frontend> = p
        .frontends
        .iter()
        .filter(|f| !f.uses.is_empty() || f.default_backend.is_some())
        .collect();
    if routed.is_empty() {
        return Err(ImportError::Unusable(
            "no frontend routes to a backend (`use_backend` / `default_backend`)".into(),
        ));
    }
    for f in &routed {
        let port = f.port.ok_or_else(|| {
            ImportError::Unusable(format!("frontend {} has no `bind` port", f.name))
        })?;
        let _ = writeln!(out, "  - name: {}\n    address: 0.0.0.0:{port}", f.name);
        match (f.http, tls) {
            (false, Some(tls)) => {
                let _ = writeln!(out, "    tls: {{ cert: {}, key: {} }}", tls.cert, tls.key);
            }
            (false, None) => {
                let _ = writeln!(
                    out,
                    "    # haproxy passed TLS through here (TCP mode, routing by SNI). ssv-ha terminates it to route\n    # by name: add `tls: {{ cert: FILE, key: FILE }}` with a certificate for the names below,\n    # or run import-haproxy with --cert and --key."
                );
            }
            (true, _) => {}
        }
    }

    if let Some(ms) = p.timeouts.get("connect").and_then(|t| haproxy_ms(t)) {
        let response = p.timeouts.get("server").and_then(|t| haproxy_ms(t));
        let tunnel = p.timeouts.get("tunnel").and_then(|t| haproxy_ms(t));
        let _ = writeln!(out, "\ntimeouts:\n  connect: {}", duration(ms));
        if let Some(ms) = response {
            let _ = writeln!(out, "  response: {}", duration(ms));
        }
        if let Some(ms) = tunnel {
            let _ = writeln!(out, "  websocket_idle: {}", duration(ms));
        }
        if p.timeouts.contains_key("client") {
            let _ = writeln!(out, "  # `timeout client` has no equivalent: clients are not timed out while idle between requests");
        }
    }
    if let Some(retries) = p.retries {
        let _ = writeln!(out, "\nretries: {retries}   # on the next healthy backend (haproxy retried the same server)");
    }

    let _ = writeln!(out, "\npools:");
    for plan in &plans {
        let policy = match plan.main.balance.as_deref() {
            None | Some("first") => "first",
            Some("roundrobin") | Some("leastconn") | Some("random") => "round_robin",
            Some(other) => {
                let _ = writeln!(
                    out,
                    "  # balance `{other}` has no equivalent; round_robin is used"
                );
                "round_robin"
            }
        };
        let _ = writeln!(
            out,
            "  {}:\n    kind: {}\n    policy: {policy}\n    min_peers: 10",
            plan.name, plan.kind
        );
        if let Some(ms) = plan.main.inter_ms {
            let _ = writeln!(
                out,
                "    health: {{ interval: {} }}   # haproxy `inter`",
                duration(ms)
            );
        }
        let _ = writeln!(out, "    backends:");
        for s in &plan.main.servers {
            let _ = write!(
                out,
                "      - {{ name: {}, url: \"{}\"",
                s.name,
                url(s, false)
            );
            if let Some(ws) = plan
                .ws
                .and_then(|w| w.servers.iter().find(|t| t.name == s.name))
            {
                let _ = write!(out, ", ws_url: \"{}\"", url(ws, true));
            }
            if s.backup {
                out.push_str(", backup: true");
            }
            out.push_str(" }\n");
        }
    }

    let _ = writeln!(out, "\nroutes:");
    for f in &routed {
        for (backend, acl) in &f.uses {
            let pool = pool_of.get(backend.as_str()).ok_or_else(|| {
                ImportError::Unusable(format!(
                    "use_backend {backend}: no such backend with servers"
                ))
            })?;
            for host in f.acls.get(acl).into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  - {{ host: {host}, listener: {}, pool: {pool} }}",
                    f.name
                );
            }
        }
        if let Some(backend) = &f.default_backend {
            if let Some(pool) = pool_of.get(backend.as_str()) {
                let _ = writeln!(out, "  - {{ listener: {}, pool: {pool} }}", f.name);
            }
        }
    }
    Ok(out)
}

fn url(s: &Server, websocket: bool) -> String {
    let (scheme, default) = match (s.port, websocket) {
        (80, false) => ("http", 80),
        (80, true) => ("ws", 80),
        (_, false) => ("https", 443),
        (_, true) => ("wss", 443),
    };
    if s.port == default {
        format!("{scheme}://{}", s.host)
    } else {
        format!("{scheme}://{}:{}", s.host, s.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_times() {
        assert_eq!(haproxy_ms("5s"), Some(5000));
        assert_eq!(haproxy_ms("5m"), Some(300_000));
        assert_eq!(haproxy_ms("10000"), Some(10_000));
        assert_eq!(haproxy_ms("soon"), None);
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(120_000), "2m");
        assert_eq!(duration(1500), "1500ms");
    }

    #[test]
    fn nothing_to_import_is_an_error() {
        assert!(import("global\n    maxconn 10\n", None).is_err());
        let err = import("backend b\n    server a\n", None).unwrap_err();
        assert!(matches!(err, ImportError::Unusable(_)), "{err:?}");
    }
}
