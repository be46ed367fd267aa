//! Routing as plain data: which pool serves a request, from the listener it came in on and its host.
//!
//! For each listener the table holds the host routes that apply to it (routes bound to this
//! listener first, then unbound ones) and an optional catch-all (a route with a listener and no
//! host). Hosts compare case-insensitively with the port and a trailing dot removed.

use super::Pool;
use crate::config::model::{Config, Limits, Route, RouteEndpoint, Timeouts};
use pingora::http::RequestHeader;
use std::sync::Arc;

/// What the listeners route with: swapped as a whole on a config reload, read lock-free per
/// request. A request keeps the pool it started with until it ends.
pub struct Routing {
    pub pools: Vec<Arc<Pool>>,
    /// One table per listener, in config order.
    pub tables: Vec<RouteTable>,
    pub retries: u32,
    /// The timeouts the pools' peers were built with.
    pub timeouts: Timeouts,
    /// Whether each request is logged (target `access`).
    pub access_log: bool,
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    hosts: Vec<(String, Target)>,
    fallback: Option<Target>,
}

/// Where a route leads: a pool, and (on a passthrough listener) which of its backends' addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub pool: usize,
    pub endpoint: RouteEndpoint,
}

impl RouteTable {
    /// The table of listener `listener` (an index into `config.listeners`).
    pub fn for_listener(config: &Config, listener: usize) -> Self {
        Self::from_routes(&config.routes, listener)
    }

    pub fn from_routes(routes: &[Route], listener: usize) -> Self {
        let mut table = RouteTable::default();
        let bound = routes.iter().filter(|r| r.listener == Some(listener));
        let unbound = routes.iter().filter(|r| r.listener.is_none());
        for route in bound.chain(unbound) {
            let target = Target {
                pool: route.pool,
                endpoint: route.endpoint,
            };
            match &route.host {
                Some(host) if !table.hosts.iter().any(|(h, _)| h == host) => {
                    table.hosts.push((host.clone(), target))
                }
                Some(_) => {}
                None => table.fallback = table.fallback.or(Some(target)),
            }
        }
        table
    }

    /// The pool for a host as sent by the client (`Host` header or authority, any case, port allowed).
    pub fn lookup(&self, host: Option<&str>) -> Option<usize> {
        self.target(host).map(|t| t.pool)
    }

    /// Where a host's route leads (see [`RouteTable::lookup`]).
    pub fn target(&self, host: Option<&str>) -> Option<Target> {
        let host = host.map(strip_port).unwrap_or("");
        self.hosts
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, target)| *target)
            .or(self.fallback)
    }
}

/// The host a request is for: the `Host` header, or the URI authority (HTTP/2, absolute-form).
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

fn strip_port(host: &str) -> &str {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, listener: Option<usize>, pool: usize) -> Route {
        Route {
            host: host.map(str::to_string),
            listener,
            pool,
            endpoint: RouteEndpoint::Url,
        }
    }

    #[test]
    fn host_match_ignores_case_port_and_trailing_dot() {
        let t = RouteTable::from_routes(&[route(Some("rpc.example.com"), None, 3)], 0);
        for host in [
            "rpc.example.com",
            "RPC.Example.com:443",
            "rpc.example.com.",
            "rpc.example.com.:8080",
        ] {
            assert_eq!(t.lookup(Some(host)), Some(3), "{host}");
        }
        assert_eq!(t.lookup(Some("other.example.com")), None);
        assert_eq!(t.lookup(Some("rpc.example.com.evil")), None);
        assert_eq!(t.lookup(None), None);
    }

    #[test]
    fn listener_routes_win_and_catch_all_applies_only_to_its_listener() {
        let routes = [
            route(Some("x.example.com"), None, 0),
            route(Some("x.example.com"), Some(1), 1),
            route(None, Some(1), 2),
        ];
        let on0 = RouteTable::from_routes(&routes, 0);
        let on1 = RouteTable::from_routes(&routes, 1);
        assert_eq!(on0.lookup(Some("x.example.com")), Some(0));
        assert_eq!(on1.lookup(Some("x.example.com")), Some(1));
        assert_eq!(on0.lookup(Some("ssv-ha:5052")), None);
        assert_eq!(on1.lookup(Some("ssv-ha:5052")), Some(2));
        assert_eq!(on1.lookup(None), Some(2));
    }

    #[test]
    fn ipv6_hosts() {
        let t = RouteTable::from_routes(&[route(Some("::1"), None, 0)], 0);
        assert_eq!(t.lookup(Some("[::1]:8080")), Some(0));
    }
}
