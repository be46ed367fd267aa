//! Validates the `pools` section: each pool, its backends, and its per-pool settings (lag, head
//! age, failback, methods, CA files).

use super::Validator;
use crate::config::file::{BackendSection, Policy, PoolSection};
use crate::config::methods::SEAMLESS_MOVE_METHODS;
use crate::config::model::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl Validator {
    pub(super) fn pools(&mut self, value: Value) -> Vec<PoolConfig> {
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
        let sessions = section.sessions.unwrap_or_default();
        if section.max_gap_blocks.is_some()
            && (sessions != SessionMode::Seamless || section.kind != PoolKind::Execution)
        {
            self.error(
                format!("{path}.max_gap_blocks"),
                "only an execution pool with `sessions: seamless` fills the gap of a moving WebSocket session",
                Some("add `sessions: seamless` to this execution pool, or remove max_gap_blocks"),
            );
        }
        if sessions == SessionMode::Seamless && section.kind == PoolKind::Execution {
            let denied: Vec<&str> = SEAMLESS_MOVE_METHODS
                .iter()
                .copied()
                .filter(|m| !methods.permits(m))
                .collect();
            if !denied.is_empty() {
                self.error(
                    format!("{path}.methods"),
                    format!(
                        "denies {}, which the gateway itself calls to move a `sessions: seamless` WebSocket session (it needs {})",
                        denied.join(", "),
                        SEAMLESS_MOVE_METHODS.join(", ")
                    ),
                    Some("allow them in this pool's `methods`, or use `sessions: cut`"),
                );
            }
        }
        let max_gap_blocks = section.max_gap_blocks.unwrap_or(DEFAULT_MAX_GAP_BLOCKS);
        if max_gap_blocks == 0 {
            self.error(
                format!("{path}.max_gap_blocks"),
                "0 blocks would close every session that misses a block while it moves",
                Some("use 1 or more (default 128)"),
            );
        }
        Some(PoolConfig {
            methods,
            failback,
            sessions,
            max_gap_blocks,
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

    fn ca_file(&mut self, path: &str, file: &Path) -> PathBuf {
        let file = self.base.join(file);
        if let Err(e) = crate::tls::load_certs(&file) {
            self.error(path, e, Some("a PEM file with one or more CA certificates"));
        }
        file
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod session_mode_tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::config::model::SessionMode;
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn the_gap_limit_is_for_seamless_execution_pools() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.pools[0].sessions, SessionMode::Cut);
        let seamless = MINIMAL.replace(
            "    kind: execution\n",
            "    kind: execution\n    sessions: seamless\n    max_gap_blocks: 16\n",
        );
        let c = parse(&seamless, Path::new(".")).expect("valid");
        assert_eq!(
            (c.pools[0].sessions, c.pools[0].max_gap_blocks),
            (SessionMode::Seamless, 16)
        );
        let cut = MINIMAL.replace(
            "    kind: execution\n",
            "    kind: execution\n    max_gap_blocks: 16\n",
        );
        assert_eq!(errors(&cut)[0].path, "pools.execution.max_gap_blocks");
        let zero = seamless.replace("max_gap_blocks: 16", "max_gap_blocks: 0");
        assert_eq!(errors(&zero)[0].path, "pools.execution.max_gap_blocks");
    }

    /// A pool whose `methods` are these lines, with `sessions`.
    fn with_methods(sessions: &str, methods: &str) -> String {
        MINIMAL.replace(
            "    kind: execution\n",
            &format!("    kind: execution\n    sessions: {sessions}\n{methods}"),
        )
    }

    #[test]
    fn a_seamless_pools_policy_must_permit_the_calls_that_move_a_session() {
        // Denied by name, by prefix, in any case, or left out of an allow list.
        for (methods, denied) in [
            ("    methods: { deny: [eth_getLogs] }\n", "eth_getLogs"),
            (
                "    methods: { deny: [\"eth_get*\"] }\n",
                "eth_getBlockByNumber, eth_getLogs",
            ),
            ("    methods: { deny: [ETH_SUBSCRIBE] }\n", "eth_subscribe"),
            (
                "    methods: { allow: [eth_call, eth_subscribe, eth_getLogs] }\n",
                "eth_blockNumber, eth_getBlockByNumber",
            ),
        ] {
            let errs = errors(&with_methods("seamless", methods));
            assert_eq!(errs.len(), 1, "{methods}: {errs:?}");
            assert_eq!(errs[0].path, "pools.execution.methods", "{methods}");
            assert!(
                errs[0].message.starts_with(&format!("denies {denied}, ")),
                "{methods}: {}",
                errs[0]
            );
            // The same policy is fine where sessions are cut.
            parse(&with_methods("cut", methods), Path::new(".")).expect("valid under cut");
        }
        // The default policy, and an allow list that names them, permit the moves.
        parse(&with_methods("seamless", ""), Path::new(".")).expect("valid");
        let allowed = "    methods: { allow: [eth_call, \"eth_get*\", eth_blockNumber, eth_subscribe, eth_unsubscribe] }\n";
        parse(&with_methods("seamless", allowed), Path::new(".")).expect("valid");
    }
}
