//! Validates the `routes` section: each route's host, listener and pool, and duplicates.

use super::validator::Validator;
use crate::config::file::RouteSection;
use crate::config::model::*;
use serde_yaml::Value;

impl Validator {
    pub(super) fn routes(
        &mut self,
        value: Value,
        listeners: &[Listener],
        pools: &[PoolConfig],
    ) -> Vec<Route> {
        let items = self.list("routes", value);
        if items.is_empty() {
            self.error(
                "routes",
                "at least one route is needed",
                Some("add `- { host: rpc.example.com, pool: execution }`"),
            );
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            let Some(route) = self.route(&path, item, listeners, pools) else {
                continue;
            };
            if routes
                .iter()
                .any(|other| other.host == route.host && other.listener == route.listener)
            {
                self.error(
                    &path,
                    "another route already matches the same host and listener",
                    None,
                );
                continue;
            }
            routes.push(route);
        }
        routes
    }

    /// One route at `path`: its pool, listener and host, then what its listeners can carry.
    /// `None` when it names nothing it can serve.
    fn route(
        &mut self,
        path: &str,
        item: Value,
        listeners: &[Listener],
        pools: &[PoolConfig],
    ) -> Option<Route> {
        let r = self.node::<RouteSection>(
            path,
            item,
            "a route has `pool` and `host`, `listener` or both",
        )?;
        let pool = self.route_pool(path, &r.pool, pools);
        let listener = match &r.listener {
            None => None,
            Some(name) => self.route_listener(path, name, listeners),
        };
        let host = r.host.as_deref().map(|h| h.trim().to_ascii_lowercase());
        if let Some(h) = &host {
            if !valid_host(h) {
                self.error(
                    format!("{path}.host"),
                    format!("`{h}` is not a host name"),
                    Some("write only the name, without scheme, port or path"),
                );
            }
        }
        if host.is_none() && r.listener.is_none() {
            self.error(path, "a route needs `host`, `listener` or both", None);
            return None;
        }
        let pool = pool?;
        if r.listener.is_some() && listener.is_none() {
            return None;
        }
        // The listeners this route serves on.
        let on: Vec<&Listener> = match listener {
            Some(l) => listeners.get(l).into_iter().collect(),
            None => listeners.iter().collect(),
        };
        let endpoint = r.endpoint.unwrap_or_default();
        self.check_passthrough(path, &on, endpoint, pools.get(pool));
        Some(Route {
            host,
            listener,
            pool,
            endpoint,
        })
    }

    /// The index of the pool named `name`, or an error listing the pools there are.
    fn route_pool(&mut self, path: &str, name: &str, pools: &[PoolConfig]) -> Option<usize> {
        let pool = pools.iter().position(|p| p.name == name);
        if pool.is_none() {
            let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            let hint = if known.is_empty() {
                "no valid pool is defined".to_string()
            } else {
                format!("pools: {}", known.join(", "))
            };
            self.error(
                format!("{path}.pool"),
                format!("no pool named `{name}`"),
                Some(&hint),
            );
        }
        pool
    }

    /// The index of the listener named `name` (or with that address), or an error listing the
    /// listeners there are.
    fn route_listener(&mut self, path: &str, name: &str, listeners: &[Listener]) -> Option<usize> {
        let found = listeners
            .iter()
            .position(|l| l.name == name || l.address.to_string() == name);
        if found.is_none() {
            let known: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            self.error(
                format!("{path}.listener"),
                format!("no listener named `{name}`"),
                Some(&format!("listeners: {}", known.join(", "))),
            );
        }
        found
    }

    /// What a route on passthrough listeners needs: `endpoint` only there, and a pool whose nodes
    /// can take the client's TLS as it is and which has nothing to apply inside it.
    fn check_passthrough(
        &mut self,
        path: &str,
        on: &[&Listener],
        endpoint: RouteEndpoint,
        pool: Option<&PoolConfig>,
    ) {
        let passthrough: Vec<&str> = on
            .iter()
            .filter(|l| l.mode == ListenerMode::Passthrough)
            .map(|l| l.name.as_str())
            .collect();
        if endpoint != RouteEndpoint::Url && passthrough.len() != on.len() {
            self.error(
                format!("{path}.endpoint"),
                "`endpoint` is for routes on passthrough listeners only",
                Some("on an HTTP listener, WebSocket upgrades go to the backends' ws_url by themselves"),
            );
        }
        let (Some(name), Some(p)) = (passthrough.first(), pool) else {
            return;
        };
        // The client's TLS goes to the node as it is: the node must speak TLS at that address,
        // and nothing can be added to the requests inside.
        for b in &p.backends {
            let (field, e) = match endpoint {
                RouteEndpoint::Url => ("url", &b.http),
                RouteEndpoint::WsUrl => ("ws_url", &b.ws),
            };
            if let Some(why) = passthrough_refusal(e, b) {
                self.error(
                    format!("{path}.pool"),
                    format!("backend {}/{} ({field} {}) cannot take passthrough listener `{name}`'s connections: {why}", p.name, b.name, e.url),
                    Some("route this pool through a listener with `tls` (mode: http)"),
                );
            }
        }
        if !p.methods.is_default() {
            self.error(
                format!("{path}.pool"),
                format!("pool `{}` has a `methods` policy, which passthrough listener `{name}` cannot apply: it does not open the TLS its calls travel in", p.name),
                Some("route this pool through a listener with `tls` (mode: http), or remove its `methods`"),
            );
        }
    }
}

/// Why backend `b` cannot take a passthrough listener's connections at endpoint `e`; `None` when
/// it can.
fn passthrough_refusal(e: &Endpoint, b: &BackendConfig) -> Option<&'static str> {
    if !e.tls {
        Some("it is not TLS (https:// or wss://), and the client's TLS would reach a plain port")
    } else if !e.path_prefix.is_empty() {
        Some("it has a path, which cannot be put before paths inside TLS the gateway does not open")
    } else if !b.headers.is_empty() {
        Some("it has `headers`, which cannot be added to requests inside TLS the gateway does not open")
    } else {
        None
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::errors;
    use crate::config::model::Route;
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn routes_bind_to_listeners_by_name() {
        let text = r#"
listeners:
  - { name: rpc, address: 127.0.0.1:8545 }
  - { name: beacon, address: 127.0.0.1:5052 }
pools:
  consensus:
    kind: consensus
    policy: round_robin
    backends: [{ name: cc-a, url: "http://10.0.0.1:5052" }]
routes:
  - { listener: beacon, pool: consensus }
"#;
        let c = parse(text, Path::new(".")).expect("valid");
        assert_eq!(
            c.routes[0],
            Route {
                host: None,
                listener: Some(1),
                pool: 0,
                endpoint: crate::config::model::RouteEndpoint::Url,
            }
        );
        let bad = text.replace("listener: beacon", "listener: becaon");
        let errs = errors(&bad);
        assert_eq!(errs[0].path, "routes[0].listener");
        assert_eq!(errs[0].hint.as_deref(), Some("listeners: rpc, beacon"));
    }
}
