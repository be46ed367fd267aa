//! Turns YAML text into a resolved [`Config`], collecting every error with its path and a hint.
//!
//! Sections and list entries are deserialized one by one, so a shape error in one backend does not
//! hide a shape error in another; semantic checks (addresses, URLs, cross-references, files) run on
//! whatever parsed.

use super::file::{
    AdminSection, AuthSection, BackendSection, HealthSection, LimitsSection, ListenerSection,
    LogSection, Policy, PoolSection, RouteSection, ServerSection, TimeoutSection,
};
use super::model::*;
use super::ConfigError;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

const TOP_LEVEL_KEYS: &[&str] = &[
    "limits",
    "log",
    "server",
    "admin",
    "listeners",
    "pools",
    "routes",
    "timeouts",
    "retries",
];

/// Parses and validates configuration text. `base` is the directory relative file paths start from.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        errors: Vec::new(),
        base: base.to_path_buf(),
    };
    let config = v.config(text);
    match config {
        Some(config) if v.errors.is_empty() => Ok(config),
        _ => Err(v.errors),
    }
}

struct Validator {
    errors: Vec<ConfigError>,
    base: PathBuf,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    /// Deserializes one YAML node, recording a shape error at `path`.
    fn node<T: DeserializeOwned>(&mut self, path: &str, value: Value, hint: &str) -> Option<T> {
        match serde_yaml::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e.to_string(), Some(hint));
                None
            }
        }
    }

    fn config(&mut self, text: &str) -> Option<Config> {
        let top: Value = match serde_yaml::from_str(text) {
            Ok(Value::Null) => {
                self.error("", "the file is empty", Some("start from a file in conf/"));
                return None;
            }
            Ok(v) => v,
            Err(e) => {
                self.error("", format!("not valid YAML: {e}"), None);
                return None;
            }
        };
        let Value::Mapping(mut top) = top else {
            self.error(
                "",
                "expected a mapping of sections",
                Some("start from a file in conf/"),
            );
            return None;
        };
        let mut take = |key: &str| top.remove(key).unwrap_or(Value::Null);
        let server = take("server");
        let admin = take("admin");
        let listeners = take("listeners");
        let pools = take("pools");
        let routes = take("routes");
        let timeouts = take("timeouts");
        let retries = take("retries");
        let log = take("log");
        let limits = take("limits");
        for (key, _) in top {
            let key = serde_yaml::to_string(&key).unwrap_or_default();
            self.error(
                key.trim(),
                "unknown section",
                Some(&format!("known sections: {}", TOP_LEVEL_KEYS.join(", "))),
            );
        }

        let server: ServerSection = self.optional_section("server", server);
        let admin: AdminSection = self.optional_section("admin", admin);
        let timeouts: TimeoutSection = self.optional_section("timeouts", timeouts);
        let log: LogSection = self.optional_section("log", log);
        let level = log.level.unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            self.error(
                "log.level",
                format!("`{level}` is not a level or filter: {e}"),
                Some("error, warn, info, debug or trace, optionally per target: info,ssv_ha=debug"),
            );
        }
        let limits: LimitsSection = self.optional_section("limits", limits);
        let limits = Limits {
            max_body_bytes: self.positive(
                "limits.max_body_bytes",
                limits.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
            ),
            max_url_bytes: self.positive(
                "limits.max_url_bytes",
                limits.max_url_bytes,
                DEFAULT_MAX_URL_BYTES,
            ),
            max_headers: self.positive(
                "limits.max_headers",
                limits.max_headers,
                DEFAULT_MAX_HEADERS,
            ),
            max_header_bytes: self.positive(
                "limits.max_header_bytes",
                limits.max_header_bytes,
                DEFAULT_MAX_HEADER_BYTES,
            ),
            max_held_bytes: self.positive(
                "limits.max_held_bytes",
                limits.max_held_bytes,
                DEFAULT_MAX_HELD_BYTES,
            ),
            body_timeout: self.positive_duration(
                "limits.body_timeout",
                limits.body_timeout,
                DEFAULT_BODY_TIMEOUT,
            ),
        };
        if limits.max_held_bytes < limits.max_body_bytes {
            self.error(
                "limits.max_held_bytes",
                format!(
                    "{} is less than limits.max_body_bytes ({}): a body of the largest size could never be held",
                    limits.max_held_bytes, limits.max_body_bytes
                ),
                Some("raise max_held_bytes or lower max_body_bytes"),
            );
        }
        let log = LogSettings {
            format: log.format.unwrap_or(LogFormat::Text),
            level,
            access: log.access.unwrap_or(true),
        };

        let threads = match server.threads {
            Some(0) => {
                self.error("server.threads", "must be at least 1", None);
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let grace_period = self.duration(
            "server.grace_period",
            server.grace_period,
            DEFAULT_GRACE_PERIOD,
        );
        let admin_address = admin.address.as_deref().unwrap_or(DEFAULT_ADMIN_ADDRESS);
        let admin_auth = self.auth("admin.auth", admin.auth);
        let admin = self.socket_addr("admin.address", admin_address);

        let timeouts = Timeouts {
            connect: self.positive_duration(
                "timeouts.connect",
                timeouts.connect,
                DEFAULT_CONNECT_TIMEOUT,
            ),
            response: self.positive_duration(
                "timeouts.response",
                timeouts.response,
                DEFAULT_RESPONSE_TIMEOUT,
            ),
            websocket_idle: self.positive_duration(
                "timeouts.websocket_idle",
                timeouts.websocket_idle,
                DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
            ),
            backend_idle: self.positive_duration(
                "timeouts.backend_idle",
                timeouts.backend_idle,
                DEFAULT_BACKEND_IDLE_TIMEOUT,
            ),
        };
        let retries = match retries {
            Value::Null => DEFAULT_RETRIES,
            v => self
                .node("retries", v, "a small whole number such as 2")
                .unwrap_or(DEFAULT_RETRIES),
        };

        let listeners = self.listeners(listeners, admin);
        let pools = self.pools(pools);
        let routes = self.routes(routes, &listeners, &pools);

        let upgrade_socket = server
            .upgrade_socket
            .map(|p| self.base.join(p))
            .unwrap_or_else(|| std::env::temp_dir().join("ssv-ha-upgrade.sock"));
        let pid_file = server
            .pid_file
            .map(|p| self.base.join(p))
            .unwrap_or_else(|| std::env::temp_dir().join("ssv-ha.pid"));
        Some(Config {
            threads,
            grace_period,
            upgrade_socket,
            pid_file,
            admin: admin?,
            admin_auth,
            listeners,
            pools,
            routes,
            timeouts,
            retries,
            log,
            limits,
        })
    }

    fn optional_section<T: DeserializeOwned + Default>(&mut self, path: &str, value: Value) -> T {
        if value.is_null() {
            return T::default();
        }
        self.node(path, value, "see the configuration reference in README.md")
            .unwrap_or_default()
    }

    fn positive(&mut self, path: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.error(path, "must be at least 1", None);
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    fn duration(&mut self, path: &str, text: Option<String>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    path,
                    format!("`{text}` is not a duration: {e}"),
                    Some("write it like 500ms, 5s, 2m or 1h"),
                );
                default
            }
        }
    }

    fn positive_duration(
        &mut self,
        path: &str,
        text: Option<String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, text, default);
        if d.is_zero() {
            self.error(path, "must be longer than zero", None);
            return default;
        }
        d
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not an IP address with a port"),
                    Some("write it like 0.0.0.0:8080 or 127.0.0.1:8405; host names are not allowed here"),
                );
                None
            }
        }
    }

    fn list(&mut self, path: &str, value: Value) -> Vec<Value> {
        match value {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items,
            _ => {
                self.error(
                    path,
                    "expected a list",
                    Some("write each entry on its own line starting with `- `"),
                );
                Vec::new()
            }
        }
    }

    fn listeners(&mut self, value: Value, admin: Option<SocketAddr>) -> Vec<Listener> {
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
            let Some(section) = self.node::<ListenerSection>(
                &path,
                item,
                "a listener has `address`, and optionally `name` and `tls: {cert, key}`",
            ) else {
                continue;
            };
            let Some(address) = self.socket_addr(&format!("{path}.address"), &section.address)
            else {
                continue;
            };
            let name = section
                .name
                .clone()
                .unwrap_or_else(|| section.address.trim().to_string());
            if listeners.iter().any(|l| l.name == name) {
                self.error(
                    format!("{path}.name"),
                    format!("listener name `{name}` is used twice"),
                    None,
                );
            }
            if listeners.iter().any(|l| l.address == address) || Some(address) == admin {
                self.error(
                    format!("{path}.address"),
                    format!("{address} is already used by another listener"),
                    None,
                );
            }
            let tls = section.tls.map(|tls| {
                let cert = self.base.join(&tls.cert);
                let key = self.base.join(&tls.key);
                if let Err(e) = crate::tls::cert_resolver_from_files(&cert, &key) {
                    self.error(
                        format!("{path}.tls"),
                        e,
                        Some("`cert` is a PEM chain, `key` its PEM private key"),
                    );
                }
                TlsFiles { cert, key }
            });
            let max_websockets = section.max_websockets.unwrap_or(DEFAULT_MAX_WEBSOCKETS);
            let auth = self.auth(&format!("{path}.auth"), section.auth);
            let max_requests = self.positive(
                &format!("{path}.max_requests"),
                section.max_requests,
                DEFAULT_MAX_REQUESTS,
            );
            let max_requests_per_client = self.positive(
                &format!("{path}.max_requests_per_client"),
                section.max_requests_per_client,
                DEFAULT_MAX_REQUESTS_PER_CLIENT,
            );
            listeners.push(Listener {
                name,
                address,
                tls,
                max_websockets,
                auth,
                max_requests,
                max_requests_per_client,
            });
        }
        listeners
    }

    fn pools(&mut self, value: Value) -> Vec<PoolConfig> {
        let map: BTreeMap<String, Value> = match value {
            Value::Null => BTreeMap::new(),
            v => self
                .node("pools", v, "`pools` maps a pool name to its settings")
                .unwrap_or_default(),
        };
        if map.is_empty() {
            self.error(
                "pools",
                "at least one pool is needed",
                Some("see conf/ for examples"),
            );
        }
        map.into_iter()
            .filter_map(|(name, value)| self.pool(name, value))
            .collect()
    }

    fn pool(&mut self, name: String, value: Value) -> Option<PoolConfig> {
        let path = format!("pools.{name}");
        if !valid_name(&name) {
            self.error(&path, format!("pool name `{name}` has characters other than letters, digits, `-`, `_` and `.`"), None);
        }
        let mut section: PoolSection = self.node(
            &path,
            value,
            "a pool has `kind` (execution or consensus), `backends`, and optionally `policy`, `min_peers`, `max_lag`, `max_slot_lag`, `max_head_age`, `chain_id`, `genesis_validators_root`, `genesis_fork_version`, `ca`, `health`",
        )?;
        let network = self.network(&path, section.kind, &section);
        let health = self.health(&path, section.health.take().unwrap_or_default());
        let pool_ca = section
            .ca
            .map(|ca| self.ca_file(&format!("{path}.ca"), &ca));
        if section.backends.is_empty() {
            self.error(
                format!("{path}.backends"),
                "a pool needs at least one backend",
                None,
            );
        }
        if section.backends.len() > MAX_BACKENDS_PER_POOL {
            self.error(
                format!("{path}.backends"),
                format!(
                    "{} backends; at most {MAX_BACKENDS_PER_POOL} per pool",
                    section.backends.len()
                ),
                None,
            );
        }
        let mut backends: Vec<BackendConfig> = Vec::new();
        for (i, value) in section.backends.into_iter().enumerate() {
            let path = format!("{path}.backends[{i}]");
            let Some(b) = self.node::<BackendSection>(
                &path,
                value,
                "a backend has `name`, `url`, and optionally `ws_url`, `backup`, `ca`",
            ) else {
                continue;
            };
            if !valid_name(&b.name) {
                self.error(
                    format!("{path}.name"),
                    format!(
                        "`{}` has characters other than letters, digits, `-`, `_` and `.`",
                        b.name
                    ),
                    None,
                );
            }
            if backends.iter().any(|other| other.name == b.name) {
                self.error(
                    format!("{path}.name"),
                    format!("backend name `{}` is used twice in this pool", b.name),
                    None,
                );
            }
            let http = self.endpoint(&format!("{path}.url"), &b.url, false);
            let ws = match &b.ws_url {
                Some(ws) => self.endpoint(&format!("{path}.ws_url"), ws, true),
                None => http.clone(),
            };
            let ca = match b.ca {
                Some(ca) => Some(self.ca_file(&format!("{path}.ca"), &ca)),
                None => pool_ca.clone(),
            };
            let headers = self.headers(&format!("{path}.headers"), &b.headers);
            if let (Some(http), Some(ws)) = (http, ws) {
                backends.push(BackendConfig {
                    name: b.name,
                    http,
                    ws,
                    backup: b.backup,
                    ca,
                    headers,
                });
            }
        }
        if !backends.is_empty() && backends.iter().all(|b| b.backup) {
            self.error(
                format!("{path}.backends"),
                "every backend is a backup",
                Some("mark at least one backend as primary (remove `backup: true`)"),
            );
        }
        let (default_lag, lag_unit) = match section.kind {
            PoolKind::Execution => (DEFAULT_EXECUTION_MAX_LAG, "blocks"),
            PoolKind::Consensus => (DEFAULT_CONSENSUS_MAX_LAG, "slots"),
        };
        if section.max_lag == Some(0) {
            self.error(
                format!("{path}.max_lag"),
                format!("0 {lag_unit} leaves no room for a block in flight"),
                Some("use 1 or more"),
            );
        }
        if section.kind == PoolKind::Execution && section.max_slot_lag.is_some() {
            self.error(
                format!("{path}.max_slot_lag"),
                "only consensus pools have slots",
                Some("use max_lag for execution pools"),
            );
        }
        let max_head_age = match (section.kind, section.max_head_age.take()) {
            (PoolKind::Consensus, Some(_)) => {
                self.error(
                    format!("{path}.max_head_age"),
                    "only execution pools are judged by their latest block's age",
                    Some("consensus pools have max_slot_lag against the wall clock"),
                );
                None
            }
            (PoolKind::Consensus, None) => None,
            (PoolKind::Execution, Some(off)) if off.trim() == "off" => None,
            (PoolKind::Execution, text) => Some(self.positive_duration(
                &format!("{path}.max_head_age"),
                text,
                DEFAULT_MAX_HEAD_AGE,
            )),
        };
        let failback_delay = self.duration(
            &format!("{path}.failback_delay"),
            section.failback_delay.take(),
            DEFAULT_FAILBACK_DELAY,
        );
        let failback = section.failback.unwrap_or(true).then_some(failback_delay);
        if section.kind == PoolKind::Consensus
            && (section.methods.is_some() || section.max_batch.is_some())
        {
            self.error(
                &path,
                "`methods` and `max_batch` are for execution pools",
                Some("consensus pools speak REST, not JSON-RPC"),
            );
        }
        let methods = section.methods.take().unwrap_or_default();
        for (list, patterns) in [("allow", &methods.allow), ("deny", &methods.deny)] {
            for (i, p) in patterns.iter().enumerate() {
                let name = p.strip_suffix('*').unwrap_or(p);
                if name.is_empty()
                    || name.contains('*')
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.error(
                        format!("{path}.methods.{list}[{i}]"),
                        format!("`{p}` is not a method name or prefix"),
                        Some("write eth_call, or eth_* for a prefix"),
                    );
                }
            }
        }
        let methods = crate::config::methods::MethodPolicy {
            allow: methods.allow,
            deny: methods.deny,
            max_batch: self.positive(
                &format!("{path}.max_batch"),
                section.max_batch,
                DEFAULT_MAX_BATCH,
            ),
        };
        Some(PoolConfig {
            methods,
            failback,
            name,
            kind: section.kind,
            policy: section.policy.unwrap_or(Policy::First),
            min_peers: section.min_peers.unwrap_or(DEFAULT_MIN_PEERS),
            max_lag: section.max_lag.unwrap_or(default_lag),
            max_slot_lag: section.max_slot_lag.unwrap_or(DEFAULT_MAX_SLOT_LAG),
            max_head_age,
            network,
            health,
            backends,
        })
    }

    fn network(&mut self, path: &str, kind: PoolKind, section: &PoolSection) -> ExpectedNetwork {
        let mut hex = |key: &str, value: &Option<String>, digits: usize| -> Option<String> {
            let value = value.as_deref()?.trim().to_ascii_lowercase();
            let ok = value
                .strip_prefix("0x")
                .is_some_and(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                self.error(
                    format!("{path}.{key}"),
                    format!("`{value}` is not 0x followed by {digits} hex digits"),
                    None,
                );
                return None;
            }
            Some(value)
        };
        let network = ExpectedNetwork {
            chain_id: section.chain_id,
            genesis_validators_root: hex(
                "genesis_validators_root",
                &section.genesis_validators_root,
                64,
            ),
            genesis_fork_version: hex("genesis_fork_version", &section.genesis_fork_version, 8),
        };
        match kind {
            PoolKind::Execution
                if network.genesis_validators_root.is_some()
                    || network.genesis_fork_version.is_some() =>
            {
                self.error(
                    path,
                    "genesis_* settings are for consensus pools",
                    Some("execution pools check `chain_id`"),
                );
            }
            PoolKind::Consensus if network.chain_id.is_some() => {
                self.error(
                    format!("{path}.chain_id"),
                    "chain_id is for execution pools",
                    Some(
                        "consensus pools check `genesis_validators_root` or `genesis_fork_version`",
                    ),
                );
            }
            _ => {}
        }
        network
    }

    fn health(&mut self, pool_path: &str, h: HealthSection) -> HealthSettings {
        let path = format!("{pool_path}.health");
        let interval = self.positive_duration(
            &format!("{path}.interval"),
            h.interval,
            DEFAULT_HEALTH_INTERVAL,
        );
        let timeout = self.positive_duration(
            &format!("{path}.timeout"),
            h.timeout,
            DEFAULT_HEALTH_TIMEOUT,
        );
        if timeout > interval {
            self.error(
                format!("{path}.timeout"),
                format!("{timeout:?} is longer than the interval {interval:?}"),
                Some("a probe must end before the next one starts"),
            );
        }
        let mut count = |key: &str, value: Option<u32>, default: u32| match value {
            Some(0) => {
                self.error(format!("{path}.{key}"), "must be at least 1", None);
                default
            }
            Some(n) => n,
            None => default,
        };
        HealthSettings {
            interval,
            timeout,
            rise: count("rise", h.rise, DEFAULT_RISE),
            fall: count("fall", h.fall, DEFAULT_FALL),
        }
    }

    /// A secret from the config: `${NAME}` is read from the environment variable NAME.
    fn secret(&mut self, path: &str, value: &str) -> Option<String> {
        let Some(var) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
            return Some(value.to_string());
        };
        match std::env::var(var) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(
                    path,
                    format!("environment variable `{var}` is not set"),
                    Some("export it before starting ssv-ha"),
                );
                None
            }
        }
    }

    fn auth(&mut self, path: &str, section: Option<AuthSection>) -> Option<Auth> {
        use base64::Engine;
        let section = section?;
        let mut accepted = Vec::new();
        let mut challenge = "Bearer";
        if let Some(token) = &section.bearer {
            if let Some(token) = self.secret(&format!("{path}.bearer"), token) {
                match http::HeaderValue::from_str(&format!("Bearer {token}")) {
                    Ok(v) if !token.is_empty() => accepted.push(v),
                    _ => self.error(
                        format!("{path}.bearer"),
                        "the token is empty or has characters a header cannot carry",
                        None,
                    ),
                }
            }
        }
        if let Some(basic) = &section.basic {
            let user = self.secret(&format!("{path}.basic.user"), &basic.user);
            let password = self.secret(&format!("{path}.basic.password"), &basic.password);
            if let (Some(user), Some(password)) = (user, password) {
                if user.contains(':') || user.is_empty() {
                    self.error(
                        format!("{path}.basic.user"),
                        "the user must be non-empty and without `:`",
                        None,
                    );
                }
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                if let Ok(v) = http::HeaderValue::from_str(&format!("Basic {encoded}")) {
                    accepted.push(v);
                }
                challenge = "Basic realm=\"ssv-ha\"";
            }
        }
        if section.bearer.is_none() && section.basic.is_none() {
            self.error(
                path,
                "give `bearer` or `basic`",
                Some("auth: { bearer: \"${ADMIN_TOKEN}\" }"),
            );
        }
        for v in &mut accepted {
            v.set_sensitive(true);
        }
        Some(Auth {
            accepted,
            challenge,
        })
    }

    fn headers(
        &mut self,
        path: &str,
        headers: &BTreeMap<String, String>,
    ) -> Vec<(http::HeaderName, http::HeaderValue)> {
        const RESERVED: &[&str] = &[
            "host",
            "connection",
            "upgrade",
            "transfer-encoding",
            "content-length",
            "te",
            "trailer",
            "keep-alive",
            "proxy-connection",
        ];
        let mut out = Vec::new();
        for (name, value) in headers {
            let at = format!("{path}.{name}");
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.error(at, format!("`{name}` is not a header name"), None);
                continue;
            };
            if RESERVED.contains(&header.as_str()) {
                self.error(
                    at,
                    format!("`{name}` is set by the gateway itself"),
                    Some("headers are for credentials and the like"),
                );
                continue;
            }
            let Some(value) = self.secret(&at, value) else {
                continue;
            };
            match http::HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.push((header, v));
                }
                // The value itself is a secret: never echo it.
                Err(_) => self.error(at, "the value has characters a header cannot carry", None),
            }
        }
        out
    }

    fn ca_file(&mut self, path: &str, file: &Path) -> PathBuf {
        let file = self.base.join(file);
        if let Err(e) = crate::tls::load_certs(&file) {
            self.error(path, e, Some("a PEM file with one or more CA certificates"));
        }
        file
    }

    fn endpoint(&mut self, path: &str, text: &str, websocket: bool) -> Option<Endpoint> {
        let schemes = if websocket {
            "ws://, wss://, http:// or https://"
        } else {
            "http:// or https://"
        };
        let hint =
            format!("a URL like https://node.example.com or http://10.0.0.5:8545/ ({schemes})");
        let url = match Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.error(path, format!("`{text}` is not a URL: {e}"), Some(&hint));
                return None;
            }
        };
        let tls = match (url.scheme(), websocket) {
            ("https", _) | ("wss", true) => true,
            ("http", _) | ("ws", true) => false,
            (other, _) => {
                self.error(
                    path,
                    format!("scheme `{other}` is not supported here"),
                    Some(&hint),
                );
                return None;
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            self.error(path, "the URL has no host", Some(&hint));
            return None;
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.error(path, "credentials in the URL are not supported", None);
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.error(
                path,
                "a backend URL cannot carry a query or fragment",
                Some("only a path prefix is kept"),
            );
            return None;
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path_prefix = url.path().trim_end_matches('/').to_string();
        let mut url = url;
        if websocket {
            // `set_scheme` refuses ws -> http; rebuild the URL instead. Cannot fail: the rest parsed.
            let rebuilt = format!(
                "{}{}",
                if tls { "https" } else { "http" },
                &url.as_str()[url.scheme().len()..]
            );
            url = Url::parse(&rebuilt).ok()?;
        }
        Some(Endpoint {
            url,
            tls,
            host,
            port,
            path_prefix,
        })
    }

    fn routes(&mut self, value: Value, listeners: &[Listener], pools: &[PoolConfig]) -> Vec<Route> {
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
            let Some(r) = self.node::<RouteSection>(
                &path,
                item,
                "a route has `pool` and `host`, `listener` or both",
            ) else {
                continue;
            };
            let pool = pools.iter().position(|p| p.name == r.pool);
            if pool.is_none() {
                let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
                let hint = if known.is_empty() {
                    "no valid pool is defined".to_string()
                } else {
                    format!("pools: {}", known.join(", "))
                };
                self.error(
                    format!("{path}.pool"),
                    format!("no pool named `{}`", r.pool),
                    Some(&hint),
                );
            }
            let listener = match &r.listener {
                None => None,
                Some(name) => {
                    let found = listeners
                        .iter()
                        .position(|l| &l.name == name || l.address.to_string() == *name);
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
                self.error(&path, "a route needs `host`, `listener` or both", None);
                continue;
            }
            let Some(pool) = pool else { continue };
            if r.listener.is_some() && listener.is_none() {
                continue;
            }
            let route = Route {
                host,
                listener,
                pool,
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
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
    use super::*;

    const MINIMAL: &str = r#"
listeners:
  - address: 127.0.0.1:8080
pools:
  execution:
    kind: execution
    backends:
      - { name: ec-a, url: "https://a.example.com/key/", ws_url: "wss://a-ws.example.com:8546" }
      - { name: ec-b, url: "http://10.0.0.2:8545", backup: true }
routes:
  - { host: RPC.example.com, pool: execution }
"#;

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(text, Path::new(".")).expect_err("config should be rejected")
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.admin.to_string(), DEFAULT_ADMIN_ADDRESS);
        assert_eq!(c.timeouts.connect, Duration::from_secs(5));
        assert_eq!(c.timeouts.response, Duration::from_secs(120));
        assert_eq!(c.timeouts.websocket_idle, Duration::from_secs(3600));
        assert_eq!(c.retries, 2);
        let pool = &c.pools[0];
        assert_eq!(pool.policy, Policy::First);
        assert_eq!(pool.min_peers, 10);
        assert_eq!(pool.max_lag, 5);
        assert_eq!(pool.network, ExpectedNetwork::default());
        let a = &pool.backends[0];
        assert_eq!(
            (a.http.host.as_str(), a.http.port, a.http.tls),
            ("a.example.com", 443, true)
        );
        assert_eq!(a.http.path_prefix, "/key");
        assert_eq!(
            (a.ws.host.as_str(), a.ws.port, a.ws.tls),
            ("a-ws.example.com", 8546, true)
        );
        assert_eq!(a.ws.host_header(), "a-ws.example.com:8546");
        assert_eq!(
            pool.backends[1].ws, pool.backends[1].http,
            "ws_url defaults to url"
        );
        assert_eq!(c.routes[0].host.as_deref(), Some("rpc.example.com"));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
listeners:
  - address: "8080"
  - address: 127.0.0.1:9000
    colour: blue
pools:
  execution:
    kind: execution
    health: { interval: soon }
    backends:
      - { name: ec-a, url: "ftp://a.example.com" }
      - { name: ec-a, url: "https://b.example.com", wsurl: "wss://x" }
routes:
  - { host: rpc.example.com, pool: executoin }
  - { pool: execution }
timeouts: { connect: 0s }
"#;
        let errs = errors(text);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "listeners[0].address",
            "listeners[1]",
            "pools.execution.health.interval",
            "pools.execution.backends[0].url",
            "pools.execution.backends[1]",
            "routes[0].pool",
            "routes[1]",
            "timeouts.connect",
        ] {
            assert!(
                paths.contains(&expected),
                "missing error at {expected}: {errs:#?}"
            );
        }
        let unknown = errs.iter().find(|e| e.path == "listeners[1]").unwrap();
        assert!(unknown.message.contains("colour"), "{unknown}");
        let pool = errs.iter().find(|e| e.path == "routes[0].pool").unwrap();
        assert_eq!(pool.hint.as_deref(), Some("pools: execution"));
    }

    #[test]
    fn the_held_bytes_limit_must_hold_one_largest_body() {
        let errs = errors(&format!(
            "{MINIMAL}\nlimits: {{ max_body_bytes: 2000000, max_held_bytes: 1000000 }}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "limits.max_held_bytes");
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.limits.max_held_bytes, DEFAULT_MAX_HELD_BYTES);
    }

    #[test]
    fn unknown_top_level_section_and_empty_file_are_errors() {
        let errs = errors(&format!("{MINIMAL}\nlisteners_extra: 1\n"));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "listeners_extra");
        assert!(errors("").iter().any(|e| e.message.contains("empty")));
        assert!(errors("[1, 2")
            .iter()
            .any(|e| e.message.contains("not valid YAML")));
    }

    #[test]
    fn duplicate_routes_and_names_are_rejected() {
        let text = MINIMAL.replace(
            "routes:\n",
            "routes:\n  - { host: rpc.example.com, pool: execution }\n",
        );
        assert!(errors(&text)
            .iter()
            .any(|e| e.message.contains("same host and listener")));
        let text = MINIMAL.replace("name: ec-b", "name: ec-a");
        assert!(errors(&text)
            .iter()
            .any(|e| e.message.contains("used twice")));
    }

    #[test]
    fn network_settings_are_checked_per_kind() {
        let text = MINIMAL.replace("    kind: execution\n", "    kind: execution\n    chain_id: 1\n    max_slot_lag: 3\n    genesis_fork_version: \"0x0000\"\n");
        let errs = errors(&text);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"pools.execution.max_slot_lag"), "{errs:#?}");
        assert!(
            paths.contains(&"pools.execution.genesis_fork_version"),
            "{errs:#?}"
        );
        let good = MINIMAL.replace(
            "    kind: execution\n",
            "    kind: execution\n    chain_id: 17000\n    max_lag: 3\n",
        );
        let c = parse(&good, Path::new(".")).expect("valid");
        assert_eq!(c.pools[0].network.chain_id, Some(17000));
        assert_eq!(c.pools[0].max_lag, 3);
    }

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
                pool: 0
            }
        );
        let bad = text.replace("listener: beacon", "listener: becaon");
        let errs = errors(&bad);
        assert_eq!(errs[0].path, "routes[0].listener");
        assert_eq!(errs[0].hint.as_deref(), Some("listeners: rpc, beacon"));
    }

    #[test]
    fn all_backups_and_missing_files_are_rejected() {
        let text = MINIMAL.replace(
            "ws_url: \"wss://a-ws.example.com:8546\" }",
            "backup: true }",
        );
        assert!(errors(&text)
            .iter()
            .any(|e| e.message.contains("every backend is a backup")));
        let text = MINIMAL.replace("  - address: 127.0.0.1:8080", "  - address: 127.0.0.1:8080\n    tls: { cert: /nonexistent.crt, key: /nonexistent.key }");
        assert!(errors(&text)
            .iter()
            .any(|e| e.path == "listeners[0].tls" && e.message.contains("/nonexistent.crt")));
    }
}
