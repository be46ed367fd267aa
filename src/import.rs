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
    /// The first `bind` address (`*` and an empty host mean every address).
    address: Option<String>,
    port: Option<u16>,
    /// A `bind ... ssl`: haproxy terminated TLS here with its own certificate.
    bind_ssl: bool,
    /// The frontend routes TLS by its SNI name (`req.ssl_sni` ACLs, `req_ssl_hello_type`).
    sni: bool,
    /// An unconditional `use_backend` (it wins over `default_backend`).
    always: Option<String>,
    maxconn: Option<usize>,
    /// `mode http` (its own, or the `defaults` before it).
    http: bool,
    /// `tcp-request inspect-delay`: how long a ClientHello may take.
    inspect_ms: Option<u64>,
    /// Serves haproxy's Prometheus exporter: becomes the admin listener.
    prometheus: bool,
    /// ACL name -> the host names it matches (`None`: an ACL on something else than the name).
    acls: BTreeMap<String, Option<Vec<String>>>,
    uses: Vec<Use>,
    default_backend: Option<String>,
}

/// A `use_backend` rule, its condition read as the host names that select it.
#[derive(Debug)]
struct Use {
    backend: String,
    line: usize,
    /// Alternatives (`||`); each a list of terms that must all hold.
    condition: Vec<Vec<Term>>,
}

#[derive(Debug)]
enum Term {
    Acl(String),
    /// `{ req.ssl_sni -i a b }`: an anonymous ACL, already read.
    Inline(Option<Vec<String>>, String),
}

/// Health-check parameters of a server line or `default-server`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Checks {
    inter_ms: Option<u64>,
    rise: Option<u32>,
    fall: Option<u32>,
}

impl Checks {
    fn read(words: &[&str]) -> Checks {
        let value = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1]);
        Checks {
            inter_ms: value("inter").and_then(haproxy_ms),
            rise: value("rise").and_then(|v| v.parse().ok()),
            fall: value("fall").and_then(|v| v.parse().ok()),
        }
    }

    /// `self` with what `over` sets (a server line over `default-server`).
    fn or(self, over: Checks) -> Checks {
        Checks {
            inter_ms: over.inter_ms.or(self.inter_ms),
            rise: over.rise.or(self.rise),
            fall: over.fall.or(self.fall),
        }
    }
}

#[derive(Debug, Default)]
struct Backend {
    name: String,
    balance: Option<String>,
    check_command: Option<String>,
    default_checks: Checks,
    servers: Vec<Server>,
    /// `timeout NAME` in ms: the `defaults` before it, then its own.
    timeouts: BTreeMap<String, u64>,
    retries: Option<u32>,
}

#[derive(Debug, Clone)]
struct Server {
    name: String,
    host: String,
    port: u16,
    backup: bool,
    /// `ssl` on the server line: haproxy spoke TLS to it.
    ssl: bool,
    checks: Checks,
}

#[derive(Debug, Default, Clone)]
struct Defaults {
    http: bool,
    timeouts: BTreeMap<String, u64>,
    retries: Option<u32>,
    balance: Option<String>,
    checks: Checks,
    maxconn: Option<usize>,
}

#[derive(Debug, Default)]
struct Parsed {
    frontends: Vec<Frontend>,
    backends: Vec<Backend>,
    /// The last `defaults` section (what a section without its own settings falls back to).
    defaults: Defaults,
    maxconn: Option<usize>,
    /// Some section set `timeout client`.
    client_timeout: bool,
    /// How haproxy's settings were carried over, for the header comment.
    carried: Vec<String>,
    /// What has no equivalent in ssv-ha.
    notes: Vec<String>,
}

/// Words that start a section wherever they stand on the line (haproxy does not care about
/// indentation).
const SECTIONS: [&str; 16] = [
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "crt-store",
    "traces",
    "log-forward",
];

/// Converts haproxy configuration text into ssv-ha YAML.
pub fn import(text: &str, tls: Option<&TlsFiles>) -> Result<String, ImportError> {
    let parsed = parse(text)?;
    render(&parsed, tls)
}

enum Section {
    Other,
    Global,
    Defaults,
    Frontend(usize),
    Backend(usize),
    /// A `listen` section: its frontend and its backend.
    Listen(usize, usize),
}

fn parse(text: &str) -> Result<Parsed, ImportError> {
    let mut p = Parsed::default();
    let mut section = Section::Other;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"'))
            .filter(|w| !w.is_empty())
            .collect();
        let Some(&keyword) = words.first() else {
            continue;
        };
        let syntax = |message: String| ImportError::Syntax {
            line: line_no,
            message,
        };
        if SECTIONS.contains(&keyword) {
            section = match keyword {
                "global" => Section::Global,
                "defaults" => {
                    // A new `defaults` section starts from haproxy's defaults.
                    p.defaults = Defaults::default();
                    Section::Defaults
                }
                "frontend" | "listen" | "backend" => {
                    let name = words
                        .get(1)
                        .ok_or_else(|| syntax(format!("a {keyword} needs a name")))?;
                    let new_backend = |p: &Parsed| Backend {
                        name: name.to_string(),
                        timeouts: p.defaults.timeouts.clone(),
                        retries: p.defaults.retries,
                        balance: p.defaults.balance.clone(),
                        default_checks: p.defaults.checks,
                        ..Backend::default()
                    };
                    let new_frontend = |p: &Parsed| Frontend {
                        name: name.to_string(),
                        http: p.defaults.http,
                        maxconn: p.defaults.maxconn,
                        ..Frontend::default()
                    };
                    match keyword {
                        "backend" => {
                            p.backends.push(new_backend(&p));
                            Section::Backend(p.backends.len() - 1)
                        }
                        "frontend" => {
                            p.frontends.push(new_frontend(&p));
                            Section::Frontend(p.frontends.len() - 1)
                        }
                        _ => {
                            // A frontend and a backend in one: it routes to itself by default.
                            p.backends.push(new_backend(&p));
                            let mut frontend = new_frontend(&p);
                            frontend.default_backend = Some(name.to_string());
                            p.frontends.push(frontend);
                            Section::Listen(p.frontends.len() - 1, p.backends.len() - 1)
                        }
                    }
                }
                "resolvers" => {
                    p.carried.push(format!(
                        "resolvers {}: backend names are resolved again before every health check, by the system's resolver",
                        words.get(1).unwrap_or(&"")
                    ));
                    Section::Other
                }
                other => {
                    p.notes.push(format!("section `{other}` has no equivalent"));
                    Section::Other
                }
            };
            continue;
        }
        match section {
            Section::Global => global(&mut p, &words, line_no)?,
            Section::Defaults => defaults(&mut p, &words, line_no)?,
            Section::Frontend(f) => frontend(&mut p, f, &words, line_no)?,
            Section::Backend(b) => backend(&mut p, b, &words, line_no)?,
            Section::Listen(f, b) => match words[0] {
                "server" | "default-server" | "balance" | "external-check" | "retries" => {
                    backend(&mut p, b, &words, line_no)?
                }
                "timeout" if words.get(1) != Some(&"client") => {
                    backend(&mut p, b, &words, line_no)?
                }
                "option" if words.get(1) == Some(&"external-check") => {}
                _ => frontend(&mut p, f, &words, line_no)?,
            },
            Section::Other => {}
        }
    }
    Ok(p)
}

fn number<T: std::str::FromStr>(
    value: Option<&&str>,
    what: &str,
    line: usize,
) -> Result<T, ImportError> {
    let value = value.copied().unwrap_or("");
    value.parse().map_err(|_| ImportError::Syntax {
        line,
        message: format!("{what} `{value}` is not a number"),
    })
}

fn time(value: Option<&&str>, what: &str, line: usize) -> Result<u64, ImportError> {
    let value = value.copied().unwrap_or("");
    haproxy_ms(value).ok_or_else(|| ImportError::Syntax {
        line,
        message: format!("{what} `{value}` is not an haproxy time (like 5s or 500ms)"),
    })
}

fn global(p: &mut Parsed, words: &[&str], line: usize) -> Result<(), ImportError> {
    match words {
        ["maxconn", n, ..] => p.maxconn = Some(number(Some(n), "maxconn", line)?),
        // Built in or meaningless here: logs go to stdout, checks are not scripts, TLS is 1.2+
        // (rustls), the system's CA store is trusted.
        ["log", ..]
        | ["external-check", ..]
        | ["insecure-fork-wanted", ..]
        | ["ssl-default-server-options", ..]
        | ["ssl-default-bind-options", ..]
        | ["ca-base", ..]
        | ["daemon", ..]
        | ["pidfile", ..]
        | ["chroot", ..] => {}
        ["user", ..] | ["group", ..] => {}
        ["stats", "socket", ..] => p.carried.push(
            "stats socket: an admin listener's /status (with `expose: all`) and SIGHUP for reloads"
                .to_string(),
        ),
        _ => p
            .notes
            .push(format!("global `{}` has no equivalent", words.join(" "))),
    }
    Ok(())
}

fn defaults(p: &mut Parsed, words: &[&str], line: usize) -> Result<(), ImportError> {
    match words {
        ["mode", mode, ..] => p.defaults.http = *mode == "http",
        ["timeout", which, value, ..] => {
            let ms = time(Some(value), &format!("timeout {which}"), line)?;
            // 0 is haproxy's "no timeout": ssv-ha keeps its default.
            if ms == 0 {
                p.defaults.timeouts.remove(*which);
            } else {
                p.defaults.timeouts.insert(which.to_string(), ms);
            }
        }
        ["retries", n, ..] => p.defaults.retries = Some(number(Some(n), "retries", line)?),
        ["balance", how, ..] => p.defaults.balance = Some(how.to_string()),
        ["default-server", rest @ ..] => {
            p.defaults.checks = p.defaults.checks.or(Checks::read(rest))
        }
        ["maxconn", n, ..] => p.defaults.maxconn = Some(number(Some(n), "maxconn", line)?),
        ["log", ..] | ["option", ..] => {}
        _ => p
            .notes
            .push(format!("defaults `{}` has no equivalent", words.join(" "))),
    }
    Ok(())
}

fn frontend(p: &mut Parsed, f: usize, words: &[&str], line: usize) -> Result<(), ImportError> {
    let name = p.frontends[f].name.clone();
    let mut notes = Vec::new();
    let mut carried = Vec::new();
    let mut fe_client_timeout = None;
    let fe = &mut p.frontends[f];
    match words {
        ["bind", addr, rest @ ..] => {
            if fe.port.is_some() {
                notes.push(format!("frontend {name}: `bind {addr}`: a listener has one address; only the first bind is carried over"));
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
            let condition = match rest {
                ["if", cond @ ..] => condition(cond),
                ["unless", ..] => {
                    notes.push(format!(
                        "frontend {name}: `{}` routes by what a name is not: not carried over",
                        words.join(" ")
                    ));
                    p.notes.extend(notes);
                    return Ok(());
                }
                [] => {
                    // Matches every connection: it wins over default_backend, and later rules
                    // never match.
                    fe.always.get_or_insert_with(|| backend.to_string());
                    return Ok(());
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
        ["default_backend", backend, ..] => fe.default_backend = Some(backend.to_string()),
        ["timeout", "client", value, ..] => {
            let ms = time(Some(value), "timeout client", line)?;
            fe_client_timeout = Some(ms);
        }
        ["tcp-request", ..]
        | ["http-request", ..]
        | ["option", ..]
        | ["log", ..]
        | ["no", "log"]
        | ["timeout", ..] => {}
        ["maxconn", n, ..] => fe.maxconn = Some(number(Some(n), "maxconn", line)?),
        _ => notes.push(format!(
            "frontend {name}: `{}` has no equivalent",
            words.join(" ")
        )),
    }
    p.notes.extend(notes);
    p.carried.extend(carried);
    if fe_client_timeout.is_some() {
        p.client_timeout = true;
    }
    Ok(())
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

fn backend(p: &mut Parsed, b: usize, words: &[&str], line: usize) -> Result<(), ImportError> {
    let be = &mut p.backends[b];
    let name = be.name.clone();
    match words {
        ["balance", how, ..] => be.balance = Some(how.to_string()),
        ["external-check", "command", command, ..] => be.check_command = Some(command.to_string()),
        ["default-server", rest @ ..] => {
            be.default_checks = be.default_checks.or(Checks::read(rest))
        }
        ["server", server, addr, params @ ..] => {
            let (host, port) = match addr.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse().map_err(|_| ImportError::Syntax {
                        line,
                        message: format!("`{addr}` has no valid port"),
                    })?,
                ),
                None => (*addr, 443),
            };
            if params.contains(&"disabled") {
                p.carried.push(format!(
                    "backend {name}: server {server} is disabled: left out"
                ));
                return Ok(());
            }
            for option in [
                "verify",
                "ca-file",
                "sni",
                "check-sni",
                "weight",
                "maxconn",
                "fastinter",
                "downinter",
            ] {
                if let Some(at) = params.iter().position(|w| *w == option) {
                    let value = params.get(at + 1).copied().unwrap_or("");
                    let why = match option {
                        "verify" => "certificates are always verified (a private CA goes in the pool's or backend's `ca`)",
                        "ca-file" => "add it as the backend's `ca` (relative to haproxy's ca-base)",
                        "sni" | "check-sni" => "the server name is the URL's host",
                        _ => "no equivalent",
                    };
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
        _ => p.notes.push(format!(
            "backend {name}: `{}` has no equivalent",
            words.join(" ")
        )),
    }
    Ok(())
}

/// An haproxy time (`5s`, `5m`, `3600s`, `500ms`, or bare milliseconds) in milliseconds.
fn haproxy_ms(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000),
        "" | "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => None,
    }
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

/// One rule of a frontend: these names (or, `None`, any other) go to that backend.
struct Rule<'a> {
    frontend: &'a Frontend,
    hosts: Option<Vec<String>>,
    backend: &'a str,
}

/// The frontends' rules as host names, with a note for every condition that is not about names.
fn rules<'a>(p: &'a Parsed, notes: &mut Vec<String>) -> Vec<Rule<'a>> {
    let mut rules = Vec::new();
    for f in &p.frontends {
        for u in &f.uses {
            let mut hosts: Vec<String> = Vec::new();
            for alternative in &u.condition {
                let mut names: Option<Vec<String>> = None;
                let mut other = Vec::new();
                for term in alternative {
                    let (matched, text) = match term {
                        Term::Acl(acl) => match f.acls.get(acl.trim_start_matches('!')) {
                            _ if acl.starts_with('!') => (None, acl.clone()),
                            Some(hosts) => (hosts.clone(), acl.clone()),
                            None => {
                                notes.push(format!(
                                    "frontend {}: line {}: acl `{acl}` is not defined",
                                    f.name, u.line
                                ));
                                (None, acl.clone())
                            }
                        },
                        Term::Inline(hosts, text) => (hosts.clone(), format!("{{ {text} }}")),
                    };
                    match matched {
                        // Both must hold: the names both match.
                        Some(m) => {
                            names = Some(match names {
                                None => m,
                                Some(n) => n.into_iter().filter(|h| m.contains(h)).collect(),
                            })
                        }
                        None => other.push(text),
                    }
                }
                match names {
                    Some(names) => {
                        // A ClientHello check is what a passthrough listener does anyway.
                        other.retain(|t| !t.contains("req_ssl_hello_type") && !t.contains("req.ssl_hello_type"));
                        if !other.is_empty() {
                            notes.push(format!("frontend {}: line {}: `{}` also asks for {}, which has no equivalent: routed by the name alone", f.name, u.line, u.backend, other.join(" ")));
                        }
                        hosts.extend(names);
                    }
                    None => notes.push(format!("frontend {}: line {}: a rule for `{}` that is not about the name ({}) is not carried over", f.name, u.line, u.backend, other.join(" "))),
                }
            }
            if !hosts.is_empty() {
                rules.push(Rule {
                    frontend: f,
                    hosts: Some(hosts),
                    backend: &u.backend,
                });
            }
        }
        // An unconditional `use_backend` takes what no rule before it took, before default_backend.
        if let Some(backend) = f.always.as_ref().or(f.default_backend.as_ref()) {
            rules.push(Rule {
                frontend: f,
                hosts: None,
                backend,
            });
        }
    }
    // haproxy takes the first rule that matches: a name a rule before already routes stays there.
    let mut seen: Vec<(*const Frontend, String)> = Vec::new();
    for rule in &mut rules {
        if let Some(hosts) = &mut rule.hosts {
            hosts.retain(|h| {
                let key = (rule.frontend as *const Frontend, h.clone());
                let new = !seen.contains(&key);
                if new {
                    seen.push(key);
                }
                new
            });
        }
    }
    rules.retain(|r| r.hosts.as_ref().is_none_or(|h| !h.is_empty()));
    rules
}

/// The one value every backend agrees on, or the largest with a note naming the others.
fn agreed<T: Copy + Ord + std::fmt::Display>(
    values: &[(&str, T)],
    what: &str,
    carried: &mut Vec<String>,
    show: impl Fn(T) -> String,
) -> Option<T> {
    let largest = values.iter().map(|(_, v)| *v).max()?;
    if values.iter().any(|(_, v)| *v != largest) {
        let each: Vec<String> = values
            .iter()
            .map(|(b, v)| format!("{b} {}", show(*v)))
            .collect();
        carried.push(format!(
            "{what} differs between backends ({}): ssv-ha's is one for all, the largest is used",
            each.join(", ")
        ));
    }
    Some(largest)
}

/// What a routed frontend becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// TCP mode routing TLS by SNI: a passthrough listener (or, given a certificate, TLS).
    Sni,
    /// haproxy terminated TLS (`bind ... ssl`).
    Tls,
    /// Plain HTTP (an HTTP frontend, or a TCP one that never looked at TLS).
    Http,
}

fn listener_kind(f: &Frontend) -> Kind {
    if f.bind_ssl {
        Kind::Tls
    } else if !f.http && f.sni {
        Kind::Sni
    } else {
        Kind::Http
    }
}

fn render(p: &Parsed, tls: Option<&TlsFiles>) -> Result<String, ImportError> {
    let kind_of = |b: &Backend| match b.check_command.as_deref() {
        Some(c) if c.contains("ccsync") => Some("consensus"),
        Some(c) if c.contains("ecsync") => Some("execution"),
        _ => None,
    };
    let mut notes = p.notes.clone();
    let mut carried = p.carried.clone();
    let rules = rules(p, &mut notes);
    // Backends that got the clients' TLS as it was: they speak TLS.
    let passed: std::collections::BTreeSet<&str> = rules
        .iter()
        .filter(|r| listener_kind(r.frontend) == Kind::Sni)
        .map(|r| r.backend)
        .collect();
    for f in &p.frontends {
        if !f.http && !f.sni && !f.bind_ssl && (!f.uses.is_empty() || f.default_backend.is_some()) {
            notes.push(format!(
                "frontend {}: plain TCP without TLS routing: ssv-ha serves it as HTTP",
                f.name
            ));
        }
    }
    // Hosts routed to each backend, over every frontend.
    let mut hosts_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for rule in &rules {
        hosts_of
            .entry(rule.backend)
            .or_default()
            .extend(rule.hosts.clone().unwrap_or_default());
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

    let mut plans: Vec<PoolPlan<'_>> = Vec::new();
    let mut pool_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut websocket_backends: Vec<&str> = Vec::new();
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
            websocket_backends.push(&ws.name);
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
    let routed: Vec<&Frontend> = p
        .frontends
        .iter()
        .filter(|f| rules.iter().any(|r| std::ptr::eq(r.frontend, *f)))
        .collect();
    if routed.is_empty() {
        return Err(ImportError::Unusable(
            "no frontend routes to a backend (`use_backend` / `default_backend`)".into(),
        ));
    }

    // Timeouts and retries are per backend in haproxy, one setting for all in ssv-ha.
    let used: Vec<&Backend> = p
        .backends
        .iter()
        .filter(|b| pool_of.contains_key(b.name.as_str()))
        .collect();
    let timeout = |which: &str, carried: &mut Vec<String>| {
        let values: Vec<(&str, u64)> = used
            .iter()
            .filter_map(|b| b.timeouts.get(which).map(|ms| (b.name.as_str(), *ms)))
            .collect();
        agreed(&values, &format!("timeout {which}"), carried, duration)
    };
    let connect = timeout("connect", &mut carried);
    let response = timeout("server", &mut carried);
    let tunnel = timeout("tunnel", &mut carried);
    let retries: Vec<(&str, u32)> = used
        .iter()
        .filter_map(|b| b.retries.map(|n| (b.name.as_str(), n)))
        .collect();
    let retries = agreed(&retries, "retries", &mut carried, |n| n.to_string());
    if p.client_timeout
        || p.defaults.timeouts.contains_key("client")
        || used.iter().any(|b| b.timeouts.contains_key("client"))
    {
        notes.push("`timeout client` has no equivalent: clients are not timed out while idle between requests".to_string());
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from an haproxy configuration by `ssv-ha import-haproxy`. Review before use."
    );
    let _ = writeln!(out, "# Carried over:");
    for line in &carried {
        let _ = writeln!(out, "# - {line}");
    }
    let _ = writeln!(out, "# - `on-marked-down shutdown-sessions` is built in: sessions on a backend marked down are ended");
    let _ = writeln!(out, "# - health rules: the external check scripts' MIN_PEERS is not in the haproxy file; min_peers is 10, as they had");
    if !notes.is_empty() {
        let _ = writeln!(out, "# Not carried over (no equivalent in ssv-ha):");
        for note in &notes {
            let _ = writeln!(out, "# - {note}");
        }
    }
    out.push('\n');

    // The admin listener takes the place of the frontend serving haproxy's Prometheus exporter,
    // and serves what it served: metrics, to anyone who can reach it. The gateway's state and
    // its reload stay off that address.
    if let Some(port) = p
        .frontends
        .iter()
        .find(|f| f.prometheus || (f.http && f.uses.is_empty() && f.default_backend.is_none()))
        .and_then(|f| f.port)
    {
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

    let _ = writeln!(out, "listeners:");
    for f in &routed {
        let port = f.port.ok_or_else(|| {
            ImportError::Unusable(format!("frontend {} has no `bind` port", f.name))
        })?;
        let address = match f.address.as_deref() {
            None => format!("0.0.0.0:{port}"),
            Some(ip) if ip.contains(':') => format!("\"[{ip}]:{port}\""),
            Some(ip) => format!("{ip}:{port}"),
        };
        let _ = writeln!(out, "  - name: {}\n    address: {address}", f.name);
        match (listener_kind(f), tls) {
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
        if let Some(n) = f.maxconn.or(p.maxconn) {
            let _ = writeln!(out, "    max_requests: {n}   # haproxy `maxconn`");
        }
    }

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

    let _ = writeln!(out, "\npools:");
    for plan in &plans {
        let policy = match plan.main.balance.as_deref() {
            None | Some("first") => "first",
            Some("roundrobin") | Some("leastconn") | Some("random") | Some("static-rr") => {
                "round_robin"
            }
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
        let checks: Vec<Checks> = plan
            .main
            .servers
            .iter()
            .map(|s| plan.main.default_checks.or(s.checks))
            .collect();
        let first = checks.first().copied().unwrap_or_default();
        if checks.iter().any(|c| *c != first) {
            let _ = writeln!(out, "    # its servers' inter/rise/fall differ; ssv-ha's are per pool: the first server's are used");
        }
        let timeout_check = plan.main.timeouts.get("check");
        let mut health = Vec::new();
        if let Some(ms) = first.inter_ms {
            health.push(format!("interval: {}", duration(ms)));
        }
        if let Some(ms) = timeout_check {
            health.push(format!("timeout: {}", duration(*ms)));
        }
        if let Some(n) = first.rise {
            health.push(format!("rise: {n}"));
        }
        if let Some(n) = first.fall {
            health.push(format!("fall: {n}"));
        }
        if !health.is_empty() {
            let _ = writeln!(
                out,
                "    health: {{ {} }}   # haproxy `inter`, `rise`, `fall`",
                health.join(", ")
            );
        }
        let _ = writeln!(out, "    backends:");
        for s in &plan.main.servers {
            let _ = write!(
                out,
                "      - {{ name: {}, url: \"{}\"",
                s.name,
                url(s, false, passed.contains(plan.main.name.as_str()))
            );
            if let Some(ws) = plan
                .ws
                .and_then(|w| w.servers.iter().find(|t| t.name == s.name))
            {
                let _ = write!(
                    out,
                    ", ws_url: \"{}\"",
                    url(
                        ws,
                        true,
                        plan.ws.is_some_and(|w| passed.contains(w.name.as_str()))
                    )
                );
            }
            if s.backup {
                out.push_str(", backup: true");
            }
            out.push_str(" }\n");
        }
    }

    let _ = writeln!(out, "\nroutes:");
    for rule in &rules {
        let pool = pool_of.get(rule.backend).ok_or_else(|| {
            ImportError::Unusable(format!(
                "use_backend {}: no such backend with servers",
                rule.backend
            ))
        })?;
        // Through a passthrough listener the connection goes to the node as it is: a WebSocket
        // name must reach the nodes' WebSocket addresses.
        let passthrough = listener_kind(rule.frontend) == Kind::Sni && tls.is_none();
        let endpoint = if passthrough && websocket_backends.contains(&rule.backend) {
            ", endpoint: ws_url"
        } else {
            ""
        };
        let listener = &rule.frontend.name;
        match &rule.hosts {
            Some(hosts) => {
                for host in hosts {
                    let _ = writeln!(
                        out,
                        "  - {{ host: {host}, listener: {listener}, pool: {pool}{endpoint} }}"
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  - {{ listener: {listener}, pool: {pool}{endpoint} }}"
                );
            }
        }
    }
    Ok(out)
}

/// The server's URL: TLS when haproxy spoke TLS to it (`ssl`), passed clients' TLS through to it,
/// or it listens on 443.
fn url(s: &Server, websocket: bool, passed_tls: bool) -> String {
    let tls = s.ssl || passed_tls || s.port == 443;
    let (scheme, default) = match (tls, websocket) {
        (false, false) => ("http", 80),
        (false, true) => ("ws", 80),
        (true, false) => ("https", 443),
        (true, true) => ("wss", 443),
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

#[cfg(test)]
mod readings {
    use super::*;
    use crate::config::model::{ListenerMode, Policy};
    use std::path::Path;

    /// Imports `text` and validates the result; returns the YAML and the config.
    fn imported(text: &str, tls: Option<&TlsFiles>) -> (String, crate::config::model::Config) {
        let yaml = import(text, tls).unwrap_or_else(|e| panic!("{e}"));
        let config =
            crate::config::parse(&yaml, Path::new(".")).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
        (yaml, config)
    }

    #[test]
    fn a_listen_section_and_the_defaults_before_it() {
        let text = "\
defaults
  mode http
  balance roundrobin
  default-server inter 3s rise 3 fall 4
  maxconn 500
  timeout server 0
listen api
  bind 127.0.0.1:8545
  server a 10.0.0.1:8545 check
  server b 10.0.0.2:8545 check ssl
  server old 10.0.0.3:8545 disabled
";
        let (yaml, c) = imported(text, None);
        assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:8545");
        assert_eq!(c.listeners[0].mode, ListenerMode::Http);
        assert_eq!(c.listeners[0].max_requests, 500);
        let pool = &c.pools[0];
        assert_eq!(pool.policy, Policy::RoundRobin);
        assert_eq!(
            (
                pool.health.interval.as_secs(),
                pool.health.rise,
                pool.health.fall
            ),
            (3, 3, 4)
        );
        let urls: Vec<&str> = pool.backends.iter().map(|b| b.http.url.as_str()).collect();
        assert_eq!(urls, ["http://10.0.0.1:8545/", "https://10.0.0.2:8545/"]);
        assert!(yaml.contains("server old is disabled: left out"), "{yaml}");
        assert_eq!(
            c.routes[0].host, None,
            "the listen section routes to itself"
        );
    }

    #[test]
    fn rules_are_read_in_order_and_only_whole_names_route() {
        let text = "\
frontend in
  mode tcp
  bind :443
  tcp-request content accept if { req_ssl_hello_type 1 }
  acl one req.ssl_sni -i a.example.com
  acl both req.ssl_sni -i a.example.com b.example.com
  acl zone req.ssl_sni -m dom example.net
  use_backend first if one
  use_backend second if both
  use_backend third if zone
  default_backend second
  use_backend third
backend first
  server f 10.0.0.1:443
backend second
  server s 10.0.0.2:443
backend third
  server t 10.0.0.3:443
";
        let (yaml, c) = imported(text, None);
        let table = crate::upstream::routing::RouteTable::for_listener(&c, 0);
        let pool = |host: &str| table.lookup(Some(host)).map(|i| c.pools[i].name.as_str());
        assert_eq!(pool("a.example.com"), Some("first"), "the first rule wins");
        assert_eq!(pool("b.example.com"), Some("second"));
        assert_eq!(
            pool("rpc.example.net"),
            Some("third"),
            "the unconditional use_backend takes the rest, before default_backend"
        );
        assert!(
            yaml.contains("is not carried over"),
            "the dom match is noted:\n{yaml}"
        );
    }

    #[test]
    fn odd_but_valid_values_are_read() {
        assert_eq!(haproxy_ms("500000us"), Some(500));
        assert_eq!(haproxy_ms("213503982336d"), None, "no overflow");
        let text = "\
frontend web
  mode http
  bind \"[::]:8443\" ssl crt /etc/haproxy/site.pem
  default_backend nodes
backend nodes
  server n \"10.0.0.1:8545\"
";
        let files = TlsFiles {
            cert: "conf/tls/example.crt".into(),
            key: "conf/tls/example.key".into(),
        };
        let yaml = import(text, Some(&files)).unwrap();
        assert!(yaml.contains("address: \"[::]:8443\""), "{yaml}");
        assert!(yaml.contains("tls: { cert: conf/tls/example.crt"), "{yaml}");
        let yaml = import(text, None).unwrap();
        assert!(
            yaml.contains("run\n    # import-haproxy with --cert"),
            "{yaml}"
        );
    }
}
