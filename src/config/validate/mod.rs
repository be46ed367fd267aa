//! Turns YAML text into a resolved [`Config`], collecting every error with its path and a hint.
//!
//! Sections and list entries are deserialized one by one, so a shape error in one backend does not
//! hide a shape error in another; semantic checks (addresses, URLs, cross-references, files) run on
//! whatever parsed.
//!
//! This module holds the entry point ([`parse`]) and the top-level sections (server, admin,
//! timeouts, retries, log, limits); the error-collecting `Validator` with its shared helpers lives
//! in `validator.rs`, and each other section has its own file.

mod backends;
mod cache;
mod endpoints;
mod health;
mod listeners;
mod network;
mod pools;
mod routes;
mod security;
#[cfg(test)]
mod tests;
mod validator;

use super::error::ConfigError;
use super::file::{AdminSection, LimitsSection, LogSection, ServerSection, TimeoutSection};
use super::model::*;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::Path;
use validator::Validator;

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

/// The top-level sections of the file, each `Null` when it is absent.
struct Sections {
    server: Value,
    admin: Value,
    listeners: Value,
    pools: Value,
    routes: Value,
    timeouts: Value,
    retries: Value,
    log: Value,
    limits: Value,
}

/// The resolved `admin` section.
struct AdminSettings {
    /// `None` when `admin.address` is not an address (an error is recorded).
    address: Option<SocketAddr>,
    auth: Option<Auth>,
    expose: AdminExpose,
}

impl Validator {
    /// The whole file: its sections in turn, each step recording its own errors. The order of the
    /// steps is the order errors are listed in.
    fn config(&mut self, text: &str) -> Option<Config> {
        let top = self.top_level(text)?;
        let server: ServerSection = self.optional_section("server", top.server);
        let admin: AdminSection = self.optional_section("admin", top.admin);
        let timeouts: TimeoutSection = self.optional_section("timeouts", top.timeouts);
        let log = self.log(top.log);
        let limits = self.limits(top.limits);
        let threads = self.threads(server.threads);
        let grace_period = self.duration(
            "server.grace_period",
            server.grace_period,
            DEFAULT_GRACE_PERIOD,
        );
        let admin = self.admin(admin);
        let timeouts = self.timeouts(timeouts);
        let retries = self.retries(top.retries);
        let listeners = self.listeners(top.listeners, admin.address);
        let pools = self.pools(top.pools);
        let routes = self.routes(top.routes, &listeners, &pools);
        Some(Config {
            threads,
            grace_period,
            upgrade_socket: self.file_or_temp(server.upgrade_socket, "ssv-ha-upgrade.sock"),
            pid_file: self.file_or_temp(server.pid_file, "ssv-ha.pid"),
            admin: admin.address?,
            admin_auth: admin.auth,
            admin_expose: admin.expose,
            listeners,
            pools,
            routes,
            timeouts,
            retries,
            log,
            limits,
        })
    }

    /// The file as YAML and its mapping of sections, each taken out by name; every other key is an
    /// unknown section. `None` when the file is empty, not YAML or not a mapping.
    fn top_level(&mut self, text: &str) -> Option<Sections> {
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
        let sections = Sections {
            server: take("server"),
            admin: take("admin"),
            listeners: take("listeners"),
            pools: take("pools"),
            routes: take("routes"),
            timeouts: take("timeouts"),
            retries: take("retries"),
            log: take("log"),
            limits: take("limits"),
        };
        for (key, _) in top {
            let key = serde_yaml::to_string(&key).unwrap_or_default();
            self.error(
                key.trim(),
                "unknown section",
                Some(&format!("known sections: {}", TOP_LEVEL_KEYS.join(", "))),
            );
        }
        Some(sections)
    }

    /// `log`: format, level (a level or a tracing filter) and the access log switch.
    fn log(&mut self, value: Value) -> LogSettings {
        let log: LogSection = self.optional_section("log", value);
        let level = log.level.unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            self.error(
                "log.level",
                format!("`{level}` is not a level or filter: {e}"),
                Some("error, warn, info, debug or trace, optionally per target: info,ssv_ha=debug"),
            );
        }
        LogSettings {
            format: log.format.unwrap_or(LogFormat::Text),
            level,
            access: log.access.unwrap_or(true),
        }
    }

    /// `limits`: each at least 1, and room to hold a body of the largest size.
    fn limits(&mut self, value: Value) -> Limits {
        let limits: LimitsSection = self.optional_section("limits", value);
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
        limits
    }

    /// `server.threads`: at least 1; by default one per CPU core.
    fn threads(&mut self, threads: Option<usize>) -> usize {
        match threads {
            Some(0) => {
                self.error("server.threads", "must be at least 1", None);
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// `admin`: credentials, what it exposes and its address (`None` when that is not one).
    fn admin(&mut self, admin: AdminSection) -> AdminSettings {
        let address = admin.address.as_deref().unwrap_or(DEFAULT_ADMIN_ADDRESS);
        let auth = self.auth("admin.auth", admin.auth);
        let expose = admin
            .expose
            .and_then(|value| self.node("admin.expose", value, "`all` or `metrics`"))
            .unwrap_or_default();
        AdminSettings {
            auth,
            expose,
            address: self.socket_addr("admin.address", address),
        }
    }

    /// `timeouts`: each longer than zero.
    fn timeouts(&mut self, timeouts: TimeoutSection) -> Timeouts {
        Timeouts {
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
        }
    }

    /// `retries`: a whole number.
    fn retries(&mut self, value: Value) -> u32 {
        match value {
            Value::Null => DEFAULT_RETRIES,
            v => self
                .node("retries", v, "a small whole number such as 2")
                .unwrap_or(DEFAULT_RETRIES),
        }
    }
}
