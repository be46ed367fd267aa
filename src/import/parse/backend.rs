//! Reading a `backend` section (or the back half of a `listen`): its servers, their health-check
//! parameters, its timeouts and retries.

use super::{haproxy_ms, number, time, Parsed};
use crate::import::ImportError;
use std::collections::BTreeMap;

/// Health-check parameters of a server line or `default-server`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(in crate::import) struct Checks {
    pub(in crate::import) inter_ms: Option<u64>,
    pub(in crate::import) rise: Option<u32>,
    pub(in crate::import) fall: Option<u32>,
}

impl Checks {
    /// Reads `inter`, `rise` and `fall` from a line's words; one missing or unreadable stays
    /// unset (the gateway's default applies).
    pub(super) fn read(words: &[&str]) -> Checks {
        let value = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1]);
        Checks {
            inter_ms: value("inter").and_then(haproxy_ms),
            rise: value("rise").and_then(|v| v.parse().ok()),
            fall: value("fall").and_then(|v| v.parse().ok()),
        }
    }

    /// `self` with what `over` sets (a server line over `default-server`).
    pub(in crate::import) fn or(self, over: Checks) -> Checks {
        Checks {
            inter_ms: over.inter_ms.or(self.inter_ms),
            rise: over.rise.or(self.rise),
            fall: over.fall.or(self.fall),
        }
    }
}

/// An haproxy `backend` (or the back half of a `listen`): the servers traffic goes to.
#[derive(Debug, Default)]
pub(in crate::import) struct Backend {
    pub(in crate::import) name: String,
    pub(in crate::import) balance: Option<String>,
    pub(in crate::import) check_command: Option<String>,
    pub(in crate::import) default_checks: Checks,
    pub(in crate::import) servers: Vec<Server>,
    /// `timeout NAME` in ms: the `defaults` before it, then its own.
    pub(in crate::import) timeouts: BTreeMap<String, u64>,
    pub(in crate::import) retries: Option<u32>,
}

/// A `server` line of a backend.
#[derive(Debug, Clone)]
pub(in crate::import) struct Server {
    pub(in crate::import) name: String,
    pub(in crate::import) host: String,
    pub(in crate::import) port: u16,
    pub(in crate::import) backup: bool,
    /// `ssl` on the server line: haproxy spoke TLS to it.
    pub(in crate::import) ssl: bool,
    pub(in crate::import) checks: Checks,
}

/// Reads a directive of backend `b`.
pub(super) fn backend(
    p: &mut Parsed,
    b: usize,
    words: &[&str],
    line: usize,
) -> Result<(), ImportError> {
    let be = &mut p.backends[b];
    match words {
        ["balance", how, ..] => be.balance = Some(how.to_string()),
        ["external-check", "command", command, ..] => be.check_command = Some(command.to_string()),
        ["default-server", rest @ ..] => {
            be.default_checks = be.default_checks.or(Checks::read(rest))
        }
        ["server", server_name, addr, params @ ..] => {
            server(p, b, server_name, addr, params, line)?
        }
        ["timeout", which, value, ..] => {
            let ms = time(Some(value), &format!("timeout {which}"), line)?;
            if ms == 0 {
                // haproxy's "no timeout": ssv-ha keeps its default.
                be.timeouts.remove(*which);
            } else {
                be.timeouts.insert(which.to_string(), ms);
            }
        }
        ["retries", n, ..] => be.retries = Some(number(Some(n), "retries", line)?),
        ["mode", ..]
        | ["option", "external-check"]
        | ["external-check", ..]
        | ["log", ..]
        | ["option", "tcplog"]
        | ["option", "dontlognull"] => {}
        _ => {
            let note = format!(
                "backend {}: `{}` has no equivalent",
                be.name,
                words.join(" ")
            );
            p.notes.push(note);
        }
    }
    Ok(())
}

/// Server options ssv-ha has no place for, and why.
const SERVER_OPTIONS: [(&str, &str); 8] = [
    (
        "verify",
        "certificates are always verified (a private CA goes in the pool's or backend's `ca`)",
    ),
    (
        "ca-file",
        "add it as the backend's `ca` (relative to haproxy's ca-base)",
    ),
    ("sni", "the server name is the URL's host"),
    ("check-sni", "the server name is the URL's host"),
    ("weight", "no equivalent"),
    ("maxconn", "no equivalent"),
    ("fastinter", "no equivalent"),
    ("downinter", "no equivalent"),
];

/// A `server NAME ADDR [params]` line of backend `b` (port 443 when the address has none); a
/// `disabled` server is left out.
fn server(
    p: &mut Parsed,
    b: usize,
    server: &str,
    addr: &str,
    params: &[&str],
    line: usize,
) -> Result<(), ImportError> {
    let name = &p.backends[b].name;
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse().map_err(|_| ImportError::Syntax {
                line,
                message: format!("`{addr}` has no valid port"),
            })?,
        ),
        None => (addr, 443),
    };
    if params.contains(&"disabled") {
        p.carried.push(format!(
            "backend {name}: server {server} is disabled: left out"
        ));
        return Ok(());
    }
    for (option, why) in SERVER_OPTIONS {
        if let Some(at) = params.iter().position(|w| *w == option) {
            let value = params.get(at + 1).copied().unwrap_or("");
            p.notes.push(format!(
                "backend {name}: server {server} `{option} {value}`: {why}"
            ));
        }
    }
    p.backends[b].servers.push(Server {
        name: server.to_string(),
        host: host.to_string(),
        port,
        backup: params.contains(&"backup"),
        ssl: params.contains(&"ssl"),
        checks: Checks::read(params),
    });
    Ok(())
}
