//! Reading a `frontend` section (or the front half of a `listen`): its `bind`, its ACLs on the
//! host name, and its `use_backend` rules, each condition read as the names that select it.

use super::parsed::{Frontend, Parsed, Term, Use};
use super::value::{number, time};
use crate::import::error::ImportError;

/// Reads a directive of frontend `f`. Each directive adds at most one note or one carried line.
pub(super) fn frontend(
    p: &mut Parsed,
    f: usize,
    words: &[&str],
    line: usize,
) -> Result<(), ImportError> {
    let Parsed {
        frontends,
        notes,
        carried,
        client_timeout,
        ..
    } = p;
    let fe = &mut frontends[f];
    match words {
        ["bind", addr, rest @ ..] => bind(fe, addr, rest, notes),
        ["mode", mode, ..] => fe.http = *mode == "http",
        ["tcp-request", "inspect-delay", value, ..] => {
            fe.inspect_ms = Some(time(Some(value), "inspect-delay", line)?)
        }
        // A ClientHello is the only thing a passthrough listener accepts.
        ["tcp-request", "content", "accept", ..] => {
            if words.iter().any(|w| w.contains("ssl_hello_type")) {
                fe.sni = true;
            }
        }
        ["http-request", "use-service", "prometheus-exporter", ..] => fe.prometheus = true,
        ["acl", acl, fetch, rest @ ..] => {
            if fetch.contains("ssl_sni") {
                fe.sni = true;
            }
            let hosts = host_acl(fetch, rest);
            let entry = fe.acls.entry(acl.to_string()).or_insert(Some(Vec::new()));
            // Several lines of one ACL add up (an OR); one that is not about names spoils it.
            match (entry.as_mut(), hosts) {
                (Some(all), Some(hosts)) => all.extend(hosts),
                _ => *entry = None,
            }
        }
        ["use_backend", backend, rest @ ..] => {
            use_backend(fe, words, backend, rest, line, notes, carried)
        }
        ["default_backend", backend, ..] => fe.default_backend = Some(backend.to_string()),
        ["timeout", "client", value, ..] => {
            time(Some(value), "timeout client", line)?;
            *client_timeout = true;
        }
        ["tcp-request", ..]
        | ["http-request", ..]
        | ["option", ..]
        | ["log", ..]
        | ["no", "log"]
        | ["timeout", ..] => {}
        ["maxconn", n, ..] => fe.maxconn = Some(number(Some(n), "maxconn", line)?),
        _ => notes.push(format!(
            "frontend {}: `{}` has no equivalent",
            fe.name,
            words.join(" ")
        )),
    }
    Ok(())
}

/// A `bind` line: a listener has one address, so only the first one counts.
fn bind(fe: &mut Frontend, addr: &str, rest: &[&str], notes: &mut Vec<String>) {
    if fe.port.is_some() {
        notes.push(format!(
            "frontend {}: `bind {addr}`: a listener has one address; only the first bind is carried over",
            fe.name
        ));
    } else {
        let (host, port) = addr.rsplit_once(':').unwrap_or(("", addr));
        fe.port = port.parse().ok();
        let host = host.trim_matches(['[', ']']);
        if !host.is_empty() && host != "*" {
            fe.address = Some(host.to_string());
        }
    }
    if rest.contains(&"ssl") {
        fe.bind_ssl = true;
    }
}

/// A `use_backend` line: a rule with a condition, or (no condition) the backend for every
/// connection no rule before it took.
fn use_backend(
    fe: &mut Frontend,
    words: &[&str],
    backend: &str,
    rest: &[&str],
    line: usize,
    notes: &mut Vec<String>,
    carried: &mut Vec<String>,
) {
    let condition = match rest {
        ["if", cond @ ..] => condition(cond),
        ["unless", ..] => {
            notes.push(format!(
                "frontend {}: `{}` routes by what a name is not: not carried over",
                fe.name,
                words.join(" ")
            ));
            return;
        }
        [] => {
            // Matches every connection: it wins over default_backend, and later rules
            // never match.
            fe.always.get_or_insert_with(|| backend.to_string());
            return;
        }
        cond => {
            carried.push(format!(
                "line {line}: `{}` has no `if`: read as `use_backend {backend} if {}` (haproxy 1.x read it so; newer versions refuse the line)",
                words.join(" "),
                cond.join(" ")
            ));
            condition(cond)
        }
    };
    fe.uses.push(Use {
        backend: backend.to_string(),
        line,
        condition,
    });
}

/// The host names an ACL matches, when it is an ACL on the name (SNI or Host header); `None`
/// for anything else.
fn host_acl(fetch: &str, rest: &[&str]) -> Option<Vec<String>> {
    // Whole-name matches only: `hdr_dom` and `-m dom|beg|end|sub|reg` match parts of names,
    // which routes (exact names) cannot express.
    const NAME_FETCHES: [&str; 6] = [
        "req.ssl_sni",
        "req_ssl_sni",
        "ssl_fc_sni",
        "req.hdr(host)",
        "hdr(host)",
        "hdr(Host)",
    ];
    if !NAME_FETCHES.contains(&fetch) {
        return None;
    }
    let mut hosts = Vec::new();
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        match *word {
            // `-m str` and `-m dom` compare whole names (the gateway's routes do too).
            "-m" => match words.next() {
                Some(&"str") => {}
                _ => return None,
            },
            "-f" => return None,
            "--" => {}
            flag if flag.starts_with('-') => {}
            host => {
                // `hdr(host)` may carry the port.
                let host = host.rsplit_once(':').map_or(host, |(h, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        host
                    }
                });
                hosts.push(host.to_ascii_lowercase());
            }
        }
    }
    Some(hosts)
}

/// Reads a condition: alternatives separated by `||` or `or`, each a list of terms.
fn condition(words: &[&str]) -> Vec<Vec<Term>> {
    let mut alternatives = vec![Vec::new()];
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "||" | "or" => alternatives.push(Vec::new()),
            "{" => {
                let end = words[i..]
                    .iter()
                    .position(|w| *w == "}")
                    .map_or(words.len(), |e| i + e);
                let inner = &words[i + 1..end];
                let text = inner.join(" ");
                let hosts = inner.split_first().and_then(|(f, r)| host_acl(f, r));
                if let Some(last) = alternatives.last_mut() {
                    last.push(Term::Inline(hosts, text));
                }
                i = end;
            }
            term => {
                if let Some(last) = alternatives.last_mut() {
                    last.push(Term::Acl(term.to_string()));
                }
            }
        }
        i += 1;
    }
    alternatives
}
