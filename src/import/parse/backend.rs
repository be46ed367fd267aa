//! Reading a `backend` section (or the back half of a `listen`): its servers, their health-check
//! parameters, its timeouts and retries.

use super::parsed::{Checks, Parsed, Server};
use super::value::{number, time};
use crate::import::error::ImportError;

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
