//! What each haproxy construct becomes in ssv-ha's model, decided before anything is written:
//! `use_backend` rules become routes by host name (haproxy's first match wins), backends become
//! pools (an HTTPS and a WSS backend with the same servers become one pool, one health verdict
//! per node), frontends become listeners, and per-backend timeouts and retries become the one
//! setting ssv-ha has. What cannot be carried over is noted with the reason; an import that would
//! route nothing is refused.

use super::duration::duration;
use super::error::ImportError;
use super::parse::{Backend, Checks, Frontend, Parsed, Server, Term, Use};
use std::collections::{BTreeMap, BTreeSet};

/// Everything the ssv-ha configuration says, decided: [`super::render`] only writes it.
pub(super) struct Plan<'a> {
    /// How haproxy's settings were carried over, for the header comment.
    pub(super) carried: Vec<String>,
    /// What has no equivalent in ssv-ha, for the header comment.
    pub(super) notes: Vec<String>,
    /// The port of the frontend that becomes the admin listener.
    pub(super) admin_port: Option<u16>,
    pub(super) listeners: Vec<Listener<'a>>,
    pub(super) settings: Settings,
    pub(super) pools: Vec<Pool<'a>>,
    pub(super) routes: Vec<Route<'a>>,
}

/// A frontend that routes somewhere, as a listener.
pub(super) struct Listener<'a> {
    pub(super) frontend: &'a Frontend,
    pub(super) port: u16,
    pub(super) kind: Kind,
    /// haproxy `maxconn`: the frontend's (or its `defaults`'), else the global one.
    pub(super) max_requests: Option<usize>,
}

/// What a routed frontend becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// TCP mode routing TLS by SNI: a passthrough listener (or, given a certificate, TLS).
    Sni,
    /// haproxy terminated TLS (`bind ... ssl`).
    Tls,
    /// Plain HTTP (an HTTP frontend, or a TCP one that never looked at TLS).
    Http,
}

/// Settings haproxy has per backend and ssv-ha once for all, in ms where a time.
pub(super) struct Settings {
    /// haproxy `timeout connect`.
    pub(super) connect: Option<u64>,
    /// haproxy `timeout server`: ssv-ha's `response`.
    pub(super) response: Option<u64>,
    /// haproxy `timeout tunnel`: ssv-ha's `websocket_idle`.
    pub(super) tunnel: Option<u64>,
    pub(super) retries: Option<u32>,
}

/// A pool as it is written.
pub(super) struct Pool<'a> {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) policy: &'static str,
    /// A `balance` with no equivalent (round_robin is used in its place).
    pub(super) unknown_balance: Option<&'a str>,
    /// The servers' inter/rise/fall differ; ssv-ha's are per pool, the first server's are used.
    pub(super) checks_differ: bool,
    /// The first server's inter/rise/fall.
    pub(super) checks: Checks,
    /// The backend's `timeout check`.
    pub(super) check_timeout: Option<u64>,
    pub(super) backends: Vec<PoolBackend<'a>>,
}

/// A server of a pool, with the URL of its WebSocket twin when it has one.
pub(super) struct PoolBackend<'a> {
    pub(super) name: &'a str,
    pub(super) url: String,
    pub(super) ws_url: Option<String>,
    pub(super) backup: bool,
}

/// A route as it is written: a host name (or, `None`, any other) on a listener to a pool.
pub(super) struct Route<'a> {
    pub(super) host: Option<String>,
    pub(super) listener: &'a str,
    pub(super) pool: String,
    /// The route goes to the nodes' WebSocket addresses (`endpoint: ws_url`).
    pub(super) ws_endpoint: bool,
}

/// Decides what the parsed haproxy file becomes. `certificate`: the import was given a
/// certificate, so SNI-routing frontends terminate TLS instead of passing it through.
pub(super) fn plan(p: &Parsed, certificate: bool) -> Result<Plan<'_>, ImportError> {
    let mut notes = p.notes.clone();
    let mut carried = p.carried.clone();
    let rules = rules(p, &mut notes);
    note_plain_tcp(p, &mut notes);
    let pools = pools(p, &rules, &mut notes)?;
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
    let settings = settings(p, &pools, &mut carried, &mut notes);
    let listeners = listeners(p, &routed)?;
    let routes = routes(&rules, &pools, certificate)?;
    // Backends that got the clients' TLS as it was: they speak TLS.
    let passed: BTreeSet<&str> = rules
        .iter()
        .filter(|r| listener_kind(r.frontend) == Kind::Sni)
        .map(|r| r.backend)
        .collect();
    Ok(Plan {
        carried,
        notes,
        admin_port: admin_port(p),
        listeners,
        settings,
        pools: pools.plans.iter().map(|plan| pool(plan, &passed)).collect(),
        routes,
    })
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
                if let Some(names) = names(f, u, alternative, notes) {
                    hosts.extend(names);
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
    first_match_wins(&mut rules);
    rules
}

/// The names one alternative of rule `u` matches (all its terms must hold), or `None` with a
/// note when it is not about names. Terms on something else beside names are noted and dropped.
fn names(
    f: &Frontend,
    u: &Use,
    alternative: &[Term],
    notes: &mut Vec<String>,
) -> Option<Vec<String>> {
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
            other
                .retain(|t| !t.contains("req_ssl_hello_type") && !t.contains("req.ssl_hello_type"));
            if !other.is_empty() {
                notes.push(format!("frontend {}: line {}: `{}` also asks for {}, which has no equivalent: routed by the name alone", f.name, u.line, u.backend, other.join(" ")));
            }
            Some(names)
        }
        None => {
            notes.push(format!("frontend {}: line {}: a rule for `{}` that is not about the name ({}) is not carried over", f.name, u.line, u.backend, other.join(" ")));
            None
        }
    }
}

/// haproxy takes the first rule that matches: a name a rule before already routes stays there,
/// and a rule left with no name goes.
fn first_match_wins(rules: &mut Vec<Rule<'_>>) {
    let mut seen: Vec<(*const Frontend, String)> = Vec::new();
    for rule in rules.iter_mut() {
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
}

/// Notes the routing TCP frontends that never looked at TLS: ssv-ha serves them as HTTP.
fn note_plain_tcp(p: &Parsed, notes: &mut Vec<String>) {
    for f in &p.frontends {
        if !f.http && !f.sni && !f.bind_ssl && (!f.uses.is_empty() || f.default_backend.is_some()) {
            notes.push(format!(
                "frontend {}: plain TCP without TLS routing: ssv-ha serves it as HTTP",
                f.name
            ));
        }
    }
}

/// A pool to write: a main backend, and the backend whose servers give its WebSocket URLs.
struct PoolPlan<'a> {
    name: String,
    kind: &'static str,
    main: &'a Backend,
    ws: Option<&'a Backend>,
}

/// The pools the backends become, and where each backend's traffic goes.
struct Pools<'a> {
    plans: Vec<PoolPlan<'a>>,
    /// Backend name -> the pool that serves it.
    pool_of: BTreeMap<&'a str, String>,
    /// Backends whose servers became a pool's WebSocket URLs.
    websocket_backends: Vec<&'a str>,
}

/// The node a backend's external check script watches (`check-ecsync.sh`, `check-ccsync.sh`).
fn kind_of(b: &Backend) -> Option<&'static str> {
    match b.check_command.as_deref() {
        Some(c) if c.contains("ccsync") => Some("consensus"),
        Some(c) if c.contains("ecsync") => Some("execution"),
        _ => None,
    }
}

/// Two backends with the same server names: the same nodes, reached two ways.
fn same_servers(a: &Backend, b: &Backend) -> bool {
    a.servers.len() == b.servers.len()
        && a.servers
            .iter()
            .all(|s| b.servers.iter().any(|t| t.name == s.name))
}

/// The pools: each backend with servers, an execution one with its WebSocket twin folded in (a
/// backend is a WebSocket one by its name or the names routed to it).
fn pools<'a>(
    p: &'a Parsed,
    rules: &[Rule<'a>],
    notes: &mut Vec<String>,
) -> Result<Pools<'a>, ImportError> {
    // Hosts routed to each backend, over every frontend.
    let mut hosts_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for rule in rules {
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
    let mut pools = Pools {
        plans: Vec::new(),
        pool_of: BTreeMap::new(),
        websocket_backends: Vec::new(),
    };
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
        pools.pool_of.insert(&b.name, name.clone());
        if let Some(ws) = ws {
            pools.pool_of.insert(&ws.name, name.clone());
            pools.websocket_backends.push(&ws.name);
        }
        pools.plans.push(PoolPlan {
            name,
            kind,
            main: b,
            ws,
        });
    }
    add_orphans(p, &mut pools);
    if pools.plans.is_empty() {
        return Err(ImportError::Unusable(
            "no backend with servers found".into(),
        ));
    }
    Ok(pools)
}

/// A WebSocket backend without an HTTPS twin becomes a pool of its own.
fn add_orphans<'a>(p: &'a Parsed, pools: &mut Pools<'a>) {
    let orphans: Vec<&Backend> = p
        .backends
        .iter()
        .filter(|w| !w.servers.is_empty() && !pools.pool_of.contains_key(w.name.as_str()))
        .collect();
    for w in orphans {
        let name = w.name.trim_end_matches("-good").to_string();
        pools.pool_of.insert(&w.name, name.clone());
        pools.plans.push(PoolPlan {
            name,
            kind: "execution",
            main: w,
            ws: None,
        });
    }
}

/// Timeouts and retries are per backend in haproxy, one setting for all in ssv-ha: the backends
/// in use must agree, or the largest value is taken with a note.
fn settings(
    p: &Parsed,
    pools: &Pools<'_>,
    carried: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Settings {
    let used: Vec<&Backend> = p
        .backends
        .iter()
        .filter(|b| pools.pool_of.contains_key(b.name.as_str()))
        .collect();
    let timeout = |which: &str, carried: &mut Vec<String>| {
        let values: Vec<(&str, u64)> = used
            .iter()
            .filter_map(|b| b.timeouts.get(which).map(|ms| (b.name.as_str(), *ms)))
            .collect();
        agreed(&values, &format!("timeout {which}"), carried, duration)
    };
    let connect = timeout("connect", carried);
    let response = timeout("server", carried);
    let tunnel = timeout("tunnel", carried);
    let retries: Vec<(&str, u32)> = used
        .iter()
        .filter_map(|b| b.retries.map(|n| (b.name.as_str(), n)))
        .collect();
    let retries = agreed(&retries, "retries", carried, |n| n.to_string());
    if p.client_timeout
        || p.defaults.timeouts.contains_key("client")
        || used.iter().any(|b| b.timeouts.contains_key("client"))
    {
        notes.push("`timeout client` has no equivalent: clients are not timed out while idle between requests".to_string());
    }
    Settings {
        connect,
        response,
        tunnel,
        retries,
    }
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

/// The frontend serving haproxy's Prometheus exporter (or an HTTP one routing nowhere) becomes
/// the admin listener, on its port.
fn admin_port(p: &Parsed) -> Option<u16> {
    p.frontends
        .iter()
        .find(|f| f.prometheus || (f.http && f.uses.is_empty() && f.default_backend.is_none()))
        .and_then(|f| f.port)
}

/// What a frontend becomes: TLS terminated by haproxy wins, then SNI routing in TCP mode.
fn listener_kind(f: &Frontend) -> Kind {
    if f.bind_ssl {
        Kind::Tls
    } else if !f.http && f.sni {
        Kind::Sni
    } else {
        Kind::Http
    }
}

/// The routed frontends as listeners; one without a `bind` port is refused.
fn listeners<'a>(p: &Parsed, routed: &[&'a Frontend]) -> Result<Vec<Listener<'a>>, ImportError> {
    routed
        .iter()
        .map(|f| {
            let port = f.port.ok_or_else(|| {
                ImportError::Unusable(format!("frontend {} has no `bind` port", f.name))
            })?;
            Ok(Listener {
                frontend: f,
                port,
                kind: listener_kind(f),
                max_requests: f.maxconn.or(p.maxconn),
            })
        })
        .collect()
}

/// The rules as routes, one per host name; a rule to a backend that became no pool is refused.
fn routes<'a>(
    rules: &[Rule<'a>],
    pools: &Pools<'a>,
    certificate: bool,
) -> Result<Vec<Route<'a>>, ImportError> {
    let mut routes = Vec::new();
    for rule in rules {
        let pool = pools.pool_of.get(rule.backend).ok_or_else(|| {
            ImportError::Unusable(format!(
                "use_backend {}: no such backend with servers",
                rule.backend
            ))
        })?;
        // Through a passthrough listener the connection goes to the node as it is: a WebSocket
        // name must reach the nodes' WebSocket addresses.
        let passthrough = listener_kind(rule.frontend) == Kind::Sni && !certificate;
        let ws_endpoint = passthrough && pools.websocket_backends.contains(&rule.backend);
        let route = |host: Option<String>| Route {
            host,
            listener: &rule.frontend.name,
            pool: pool.clone(),
            ws_endpoint,
        };
        match &rule.hosts {
            Some(hosts) => routes.extend(hosts.iter().map(|h| route(Some(h.clone())))),
            None => routes.push(route(None)),
        }
    }
    Ok(routes)
}

/// What a pool plan becomes: its policy from `balance`, its health checks from the first
/// server's, and its servers' URLs (`passed`: backends that got the clients' TLS as it was).
fn pool<'a>(plan: &PoolPlan<'a>, passed: &BTreeSet<&str>) -> Pool<'a> {
    let (policy, unknown_balance) = match plan.main.balance.as_deref() {
        None | Some("first") => ("first", None),
        Some("roundrobin") | Some("leastconn") | Some("random") | Some("static-rr") => {
            ("round_robin", None)
        }
        Some(other) => ("round_robin", Some(other)),
    };
    let checks: Vec<Checks> = plan
        .main
        .servers
        .iter()
        .map(|s| plan.main.default_checks.or(s.checks))
        .collect();
    let first = checks.first().copied().unwrap_or_default();
    let ws_passed = plan.ws.is_some_and(|w| passed.contains(w.name.as_str()));
    let backends = plan
        .main
        .servers
        .iter()
        .map(|s| PoolBackend {
            name: &s.name,
            url: url(s, false, passed.contains(plan.main.name.as_str())),
            ws_url: plan
                .ws
                .and_then(|w| w.servers.iter().find(|t| t.name == s.name))
                .map(|ws| url(ws, true, ws_passed)),
            backup: s.backup,
        })
        .collect();
    Pool {
        name: plan.name.clone(),
        kind: plan.kind,
        policy,
        unknown_balance,
        checks_differ: checks.iter().any(|c| *c != first),
        checks: first,
        check_timeout: plan.main.timeouts.get("check").copied(),
        backends,
    }
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
    use crate::import::tests::imported;

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
}
