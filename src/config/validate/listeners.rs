//! Validates the `listeners` section: addresses, names, TLS files, per-listener auth and limits.

use super::validator::Validator;
use crate::config::file::ListenerSection;
use crate::config::model::*;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::Path;

impl Validator {
    pub(super) fn listeners(&mut self, value: Value, admin: Option<SocketAddr>) -> Vec<Listener> {
        let items = self.list("listeners", value);
        if items.is_empty() {
            self.error(
                "listeners",
                "at least one listener is needed",
                Some("add `- address: 0.0.0.0:8080`"),
            );
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("listeners[{i}]");
            if let Some(listener) = self.listener(&path, item, &listeners, admin) {
                listeners.push(listener);
            }
        }
        listeners
    }

    /// One listener at `path`, its name and address unused by the `earlier` ones and the admin
    /// listener; `None` when its shape or address is wrong.
    fn listener(
        &mut self,
        path: &str,
        item: Value,
        earlier: &[Listener],
        admin: Option<SocketAddr>,
    ) -> Option<Listener> {
        let section = self.node::<ListenerSection>(
            path,
            item,
            "a listener has `address`, and optionally `name`, `tls: {cert, key}` or `mode: passthrough`",
        )?;
        let address = self.socket_addr(&format!("{path}.address"), &section.address)?;
        let name = section
            .name
            .clone()
            .unwrap_or_else(|| section.address.trim().to_string());
        if earlier.iter().any(|l| l.name == name) {
            self.error(
                format!("{path}.name"),
                format!("listener name `{name}` is used twice"),
                None,
            );
        }
        if earlier.iter().any(|l| l.address == address) || Some(address) == admin {
            self.error(
                format!("{path}.address"),
                format!("{address} is already used by another listener"),
                None,
            );
        }
        let tls = section
            .tls
            .as_ref()
            .map(|tls| self.listener_tls(path, &tls.cert, &tls.key));
        let mode = section.mode.unwrap_or(ListenerMode::Http);
        let hello_timeout = self.positive_duration(
            &format!("{path}.hello_timeout"),
            section.hello_timeout.clone(),
            DEFAULT_HELLO_TIMEOUT,
        );
        self.check_mode(path, mode, &section, tls.is_some());
        Some(Listener {
            name,
            address,
            tls,
            max_websockets: section.max_websockets.unwrap_or(DEFAULT_MAX_WEBSOCKETS),
            auth: self.auth(&format!("{path}.auth"), section.auth),
            max_requests: self.positive(
                &format!("{path}.max_requests"),
                section.max_requests,
                DEFAULT_MAX_REQUESTS,
            ),
            max_requests_per_client: self.positive(
                &format!("{path}.max_requests_per_client"),
                section.max_requests_per_client,
                DEFAULT_MAX_REQUESTS_PER_CLIENT,
            ),
            mode,
            hello_timeout,
        })
    }

    /// A listener's certificate chain and key, relative to the config's directory, which must load
    /// as a TLS identity.
    fn listener_tls(&mut self, path: &str, cert: &Path, key: &Path) -> TlsFiles {
        let cert = self.base.join(cert);
        let key = self.base.join(key);
        if let Err(e) = crate::tls::cert_resolver_from_files(&cert, &key) {
            self.error(
                format!("{path}.tls"),
                e,
                Some("`cert` is a PEM chain, `key` its PEM private key"),
            );
        }
        TlsFiles { cert, key }
    }

    /// Settings that belong to the other mode: on a passthrough listener, what needs the HTTP
    /// inside the TLS (`has_tls`: it holds a certificate); on an HTTP one, `hello_timeout`.
    fn check_mode(
        &mut self,
        path: &str,
        mode: ListenerMode,
        section: &ListenerSection,
        has_tls: bool,
    ) {
        if mode != ListenerMode::Passthrough {
            if section.hello_timeout.is_some() {
                self.error(
                    format!("{path}.hello_timeout"),
                    "`hello_timeout` is for passthrough listeners",
                    Some("add `mode: passthrough`, or remove it"),
                );
            }
            return;
        }
        // What needs the HTTP inside the TLS cannot be had without terminating it.
        let l7 = [
            (
                "tls",
                has_tls,
                "it passes TLS through to the nodes and holds no certificate",
            ),
            (
                "auth",
                section.auth.is_some(),
                "credentials are sent inside the TLS it does not open",
            ),
            (
                "max_websockets",
                section.max_websockets.is_some(),
                "it cannot tell WebSocket upgrades inside TLS; `max_requests` caps its connections",
            ),
        ];
        for (field, set, why) in l7 {
            if set {
                self.error(
                    format!("{path}.{field}"),
                    format!("`{field}` does not apply to a passthrough listener: {why}"),
                    Some("remove it, or use `mode: http` with `tls` to terminate TLS here"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::config::model::{ListenerMode, RouteEndpoint, DEFAULT_HELLO_TIMEOUT};
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    fn passthrough(listener_extra: &str, route_extra: &str, pool_extra: &str) -> String {
        MINIMAL
            .replace(
                "  - address: 127.0.0.1:8080",
                &format!("  - {{ name: tls, address: 127.0.0.1:8443, mode: passthrough{listener_extra} }}"),
            )
            .replace("    kind: execution\n", &format!("    kind: execution\n{pool_extra}"))
            .replace(
                "  - { host: RPC.example.com, pool: execution }",
                &format!("  - {{ host: RPC.example.com, pool: execution{route_extra} }}"),
            )
    }

    /// Backends a passthrough listener can pass TLS to: TLS, no path.
    fn tls_nodes(text: String) -> String {
        text.replace("https://a.example.com/key/", "https://a.example.com")
            .replace("http://10.0.0.2:8545", "https://10.0.0.2:8545")
    }

    #[test]
    fn a_passthrough_listener_and_its_routes() {
        let c = parse(
            &tls_nodes(passthrough(", hello_timeout: 2s", ", endpoint: ws_url", "")),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(c.listeners[0].mode, ListenerMode::Passthrough);
        assert_eq!(c.listeners[0].hello_timeout, Duration::from_secs(2));
        assert_eq!(c.routes[0].endpoint, RouteEndpoint::WsUrl);
        // Connections per source address are capped there too (before any TLS is read).
        let c = parse(
            &tls_nodes(passthrough(", max_requests_per_client: 10", "", "")),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(c.listeners[0].max_requests_per_client, 10);
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.listeners[0].mode, ListenerMode::Http);
        assert_eq!(c.listeners[0].hello_timeout, DEFAULT_HELLO_TIMEOUT);
        assert_eq!(c.routes[0].endpoint, RouteEndpoint::Url);
    }

    #[test]
    fn what_needs_the_http_inside_the_tls_is_refused_on_a_passthrough_listener() {
        for (extra, path) in [
            (", tls: { cert: a.crt, key: a.key }", "listeners[0].tls"),
            (
                ", auth: { bearer: a-long-enough-secret-token-0123456789 }",
                "listeners[0].auth",
            ),
            (", max_websockets: 10", "listeners[0].max_websockets"),
        ] {
            let errs = errors(&tls_nodes(passthrough(extra, "", "")));
            assert!(
                errs.iter().any(|e| e.path == path
                    && e.message
                        .contains("does not apply to a passthrough listener")),
                "{extra}: {errs:?}"
            );
        }
        // MINIMAL's backends: an https URL with a path, a plain http one.
        let errs = errors(&passthrough("", "", ""));
        assert!(
            errs.iter().any(|e| e.message.contains("it has a path")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.message.contains("it is not TLS")),
            "{errs:?}"
        );
        let errs = errors(&tls_nodes(passthrough(
            "",
            "",
            "    methods: { allow: [eth_*] }\n",
        )));
        assert!(
            errs.iter()
                .any(|e| e.path == "routes[0].pool" && e.message.contains("cannot apply")),
            "{errs:?}"
        );
    }

    #[test]
    fn passthrough_settings_are_refused_on_an_http_listener() {
        let text = MINIMAL.replace(
            "  - address: 127.0.0.1:8080",
            "  - { address: 127.0.0.1:8080, hello_timeout: 2s }",
        );
        assert_eq!(errors(&text)[0].path, "listeners[0].hello_timeout");
        let text = MINIMAL.replace(
            "  - { host: RPC.example.com, pool: execution }",
            "  - { host: RPC.example.com, pool: execution, endpoint: ws_url }",
        );
        assert_eq!(errors(&text)[0].path, "routes[0].endpoint");
    }
}
