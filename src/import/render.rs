//! Writing the ssv-ha YAML from a decided [`Plan`]: a header comment saying what was carried over
//! and what was not, then the admin listener, listeners, timeouts, retries, pools and routes, each
//! with a comment naming the haproxy setting it came from. Nothing is decided here.

use super::duration::duration;
use super::rules::{Kind, Listener, Plan, Pool, Route, Settings};
use super::tls_files::TlsFiles;
use std::fmt::Write;

// Writing to a `String` cannot fail: the `fmt::Result`s below are dropped.

/// The YAML for `plan`; `tls`: the certificate the import was given.
pub(super) fn render(plan: &Plan<'_>, tls: Option<&TlsFiles>) -> String {
    let mut out = String::new();
    header(&mut out, plan);
    if let Some(port) = plan.admin_port {
        admin(&mut out, port);
    }
    listeners(&mut out, &plan.listeners, tls);
    settings(&mut out, &plan.settings);
    pools(&mut out, &plan.pools);
    routes(&mut out, &plan.routes);
    out
}

/// The header comment: what was carried over and how, then what was not.
fn header(out: &mut String, plan: &Plan<'_>) {
    let _ = writeln!(
        out,
        "# Imported from an haproxy configuration by `ssv-ha import-haproxy`. Review before use."
    );
    let _ = writeln!(out, "# Carried over:");
    for line in &plan.carried {
        let _ = writeln!(out, "# - {line}");
    }
    let _ = writeln!(out, "# - `on-marked-down shutdown-sessions` is built in: sessions on a backend marked down are ended");
    let _ = writeln!(out, "# - health rules: the external check scripts' MIN_PEERS is not in the haproxy file; min_peers is 10, as they had");
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "# Not carried over (no equivalent in ssv-ha):");
        for note in &plan.notes {
            let _ = writeln!(out, "# - {note}");
        }
    }
    out.push('\n');
}

/// The admin listener takes the place of the frontend serving haproxy's Prometheus exporter,
/// and serves what it served: metrics, to anyone who can reach it. The gateway's state and its
/// reload stay off that address.
fn admin(out: &mut String, port: u16) {
    let _ = writeln!(
        out,
        "# haproxy's Prometheus exporter listened here. This admin listener serves what it served,\n\
         # /metrics (plus /healthz and /readyz for health checks), on every address and without\n\
         # credentials. The status page, /status and POST /reload are not served here\n\
         # (`expose: metrics`); reload with SIGHUP. To have them, set `expose: all` on an address\n\
         # on 127.0.0.1, or with `auth:`.\n\
         admin:\n  address: 0.0.0.0:{port}\n  expose: metrics\n"
    );
}

/// The listeners: their address, how they take TLS, and haproxy's `maxconn`.
fn listeners(out: &mut String, listeners: &[Listener<'_>], tls: Option<&TlsFiles>) {
    let _ = writeln!(out, "listeners:");
    for listener in listeners {
        let (f, port) = (listener.frontend, listener.port);
        let address = match f.address.as_deref() {
            None => format!("0.0.0.0:{port}"),
            Some(ip) if ip.contains(':') => format!("\"[{ip}]:{port}\""),
            Some(ip) => format!("{ip}:{port}"),
        };
        let _ = writeln!(out, "  - name: {}\n    address: {address}", f.name);
        match (listener.kind, tls) {
            (Kind::Sni, Some(tls)) | (Kind::Tls, Some(tls)) => {
                let _ = writeln!(out, "    tls: {{ cert: {}, key: {} }}", tls.cert, tls.key);
            }
            (Kind::Sni, None) => {
                let _ = writeln!(
                    out,
                    "    mode: passthrough   # as haproxy did: TLS passes through to the node, routed by its SNI name"
                );
                if let Some(ms) = f.inspect_ms {
                    let _ = writeln!(
                        out,
                        "    hello_timeout: {}   # haproxy `tcp-request inspect-delay`",
                        duration(ms)
                    );
                }
            }
            (Kind::Tls, None) => {
                let _ = writeln!(
                    out,
                    "    # haproxy terminated TLS here with its own certificate (`bind ... ssl`): run\n    # import-haproxy with --cert and --key, or add `tls: {{ cert, key }}`"
                );
            }
            (Kind::Http, _) => {}
        }
        if let Some(n) = listener.max_requests {
            let _ = writeln!(out, "    max_requests: {n}   # haproxy `maxconn`");
        }
    }
}

/// The `timeouts` section and `retries`, when haproxy set them.
fn settings(out: &mut String, settings: &Settings) {
    let Settings {
        connect,
        response,
        tunnel,
        retries,
    } = *settings;
    if connect.is_some() || response.is_some() || tunnel.is_some() {
        let _ = writeln!(out, "\ntimeouts:");
        if let Some(ms) = connect {
            let _ = writeln!(out, "  connect: {}", duration(ms));
        }
        if let Some(ms) = response {
            let _ = writeln!(
                out,
                "  response: {}   # haproxy `timeout server`",
                duration(ms)
            );
        }
        if let Some(ms) = tunnel {
            let _ = writeln!(
                out,
                "  websocket_idle: {}   # haproxy `timeout tunnel`",
                duration(ms)
            );
        }
    }
    if let Some(retries) = retries {
        let _ = writeln!(out, "\nretries: {retries}   # on the next healthy backend (haproxy retried the same server)");
    }
}

/// The pools: kind, policy, health parameters and backends with their URLs.
fn pools(out: &mut String, pools: &[Pool<'_>]) {
    let _ = writeln!(out, "\npools:");
    for pool in pools {
        if let Some(other) = pool.unknown_balance {
            let _ = writeln!(
                out,
                "  # balance `{other}` has no equivalent; round_robin is used"
            );
        }
        let _ = writeln!(
            out,
            "  {}:\n    kind: {}\n    policy: {}\n    min_peers: 10",
            pool.name, pool.kind, pool.policy
        );
        if pool.checks_differ {
            let _ = writeln!(out, "    # its servers' inter/rise/fall differ; ssv-ha's are per pool: the first server's are used");
        }
        health(out, pool);
        let _ = writeln!(out, "    backends:");
        for b in &pool.backends {
            let _ = write!(out, "      - {{ name: {}, url: \"{}\"", b.name, b.url);
            if let Some(ws_url) = &b.ws_url {
                let _ = write!(out, ", ws_url: \"{ws_url}\"");
            }
            if b.backup {
                out.push_str(", backup: true");
            }
            out.push_str(" }\n");
        }
    }
}

/// A pool's `health` line, when haproxy set any of its parameters.
fn health(out: &mut String, pool: &Pool<'_>) {
    let mut health = Vec::new();
    if let Some(ms) = pool.checks.inter_ms {
        health.push(format!("interval: {}", duration(ms)));
    }
    if let Some(ms) = pool.check_timeout {
        health.push(format!("timeout: {}", duration(ms)));
    }
    if let Some(n) = pool.checks.rise {
        health.push(format!("rise: {n}"));
    }
    if let Some(n) = pool.checks.fall {
        health.push(format!("fall: {n}"));
    }
    if !health.is_empty() {
        let _ = writeln!(
            out,
            "    health: {{ {} }}   # haproxy `inter`, `rise`, `fall`",
            health.join(", ")
        );
    }
}

/// The routes, one line each.
fn routes(out: &mut String, routes: &[Route<'_>]) {
    let _ = writeln!(out, "\nroutes:");
    for route in routes {
        let Route {
            listener,
            pool,
            ws_endpoint,
            ..
        } = route;
        let endpoint = if *ws_endpoint {
            ", endpoint: ws_url"
        } else {
            ""
        };
        match &route.host {
            Some(host) => {
                let _ = writeln!(
                    out,
                    "  - {{ host: {host}, listener: {listener}, pool: {pool}{endpoint} }}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  - {{ listener: {listener}, pool: {pool}{endpoint} }}"
                );
            }
        }
    }
}
