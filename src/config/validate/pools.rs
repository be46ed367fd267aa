//! Validates the `pools` section: each pool and its per-pool settings (lag, head age, failback,
//! methods, sessions, CA file). A pool's backends are checked in `backends`.
//!
//! [`Validator::pool`] reads as the list of a pool's checks: each step below takes the settings
//! it is about, records its errors in the order the sections are read, and returns the resolved
//! value.

use super::validator::Validator;
use crate::config::file::{HedgeSection, Policy, PoolSection};
use crate::config::methods::{MethodPolicy, DEFAULT_MAX_BATCH, SEAMLESS_MOVE_METHODS};
use crate::config::model::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How far behind a pool's nodes may be: the resolved lag settings of one pool.
struct Lag {
    max_lag: u64,
    max_slot_lag: u64,
    max_head_age: Option<Duration>,
}

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

    /// One pool: its name and shape, then each group of settings in turn.
    fn pool(&mut self, name: String, value: Value) -> Option<PoolConfig> {
        let path = format!("pools.{name}");
        if !valid_name(&name) {
            self.error(&path, format!("pool name `{name}` has characters other than letters, digits, `-`, `_` and `.`"), None);
        }
        let mut section: PoolSection = self.node(
            &path,
            value,
            "a pool has `kind` (execution or consensus), `backends`, and optionally `policy`, `min_peers`, `max_lag`, `max_slot_lag`, `max_head_age`, `chain_id`, `genesis_validators_root`, `genesis_fork_version`, `ca`, `cache`, `health`",
        )?;
        let network = self.network(&path, section.kind, &section);
        let health = self.health(&path, section.health.take().unwrap_or_default());
        let hedge = section.hedge.take().and_then(|value| {
            let hint = "`hedge` is `{ delay: 300ms, max: 1 }`";
            let hedge = self.node(&format!("{path}.hedge"), value, hint)?;
            self.hedge(&path, hedge, section.backends.len())
        });
        let pool_ca = section
            .ca
            .take()
            .map(|ca| self.ca_file(&format!("{path}.ca"), &ca));
        let backends = self.backends(&path, std::mem::take(&mut section.backends), pool_ca);
        let lag = self.lag(&path, &mut section);
        let failback = self.failback(&path, &mut section);
        let methods = self.method_policy(&path, &mut section);
        let sessions = section.sessions.unwrap_or_default();
        self.check_seamless(&path, &section, sessions, &methods);
        let max_gap_blocks = self.max_gap_blocks(&path, section.max_gap_blocks);
        let cache = self.cache(&path, section.cache.take());
        Some(PoolConfig {
            cache,
            methods,
            failback,
            sessions,
            max_gap_blocks,
            hedge,
            name,
            kind: section.kind,
            policy: section.policy.unwrap_or(Policy::First),
            min_peers: section.min_peers.unwrap_or(DEFAULT_MIN_PEERS),
            max_lag: lag.max_lag,
            max_slot_lag: lag.max_slot_lag,
            max_head_age: lag.max_head_age,
            network,
            health,
            backends,
        })
    }

    /// `max_lag` (in the pool kind's unit), `max_slot_lag` (consensus only) and `max_head_age`
    /// (execution only, or `off`).
    fn lag(&mut self, path: &str, section: &mut PoolSection) -> Lag {
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
        Lag {
            max_lag: section.max_lag.unwrap_or(default_lag),
            max_slot_lag: section.max_slot_lag.unwrap_or(DEFAULT_MAX_SLOT_LAG),
            max_head_age,
        }
    }

    /// `failback` and `failback_delay`: how long a healthy-again primary waits before sessions
    /// move back to it; `None` when they stay where they are.
    fn failback(&mut self, path: &str, section: &mut PoolSection) -> Option<Duration> {
        let failback_delay = self.duration(
            &format!("{path}.failback_delay"),
            section.failback_delay.take(),
            DEFAULT_FAILBACK_DELAY,
        );
        section.failback.unwrap_or(true).then_some(failback_delay)
    }

    /// `methods` and `max_batch`: execution pools only, each pattern a method name or a prefix
    /// ending in `*`.
    fn method_policy(&mut self, path: &str, section: &mut PoolSection) -> MethodPolicy {
        if section.kind == PoolKind::Consensus
            && (section.methods.is_some() || section.max_batch.is_some())
        {
            self.error(
                path,
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
        MethodPolicy {
            allow: methods.allow,
            deny: methods.deny,
            max_batch: self.positive(
                &format!("{path}.max_batch"),
                section.max_batch,
                DEFAULT_MAX_BATCH,
            ),
        }
    }

    /// `sessions: seamless` against the rest of the pool: `max_gap_blocks` only where a session
    /// fills a gap, and a policy that lets through the calls the gateway makes to move one.
    fn check_seamless(
        &mut self,
        path: &str,
        section: &PoolSection,
        sessions: SessionMode,
        methods: &MethodPolicy,
    ) {
        let seamless_execution =
            sessions == SessionMode::Seamless && section.kind == PoolKind::Execution;
        if section.max_gap_blocks.is_some() && !seamless_execution {
            self.error(
                format!("{path}.max_gap_blocks"),
                "only an execution pool with `sessions: seamless` fills the gap of a moving WebSocket session",
                Some("add `sessions: seamless` to this execution pool, or remove max_gap_blocks"),
            );
        }
        if !seamless_execution {
            return;
        }
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

    /// `max_gap_blocks`: at least one block.
    fn max_gap_blocks(&mut self, path: &str, value: Option<u64>) -> u64 {
        let max_gap_blocks = value.unwrap_or(DEFAULT_MAX_GAP_BLOCKS);
        if max_gap_blocks == 0 {
            self.error(
                format!("{path}.max_gap_blocks"),
                "0 blocks would close every session that misses a block while it moves",
                Some("use 1 or more (default 128)"),
            );
        }
        max_gap_blocks
    }

    /// `hedge`: a delay of [`MIN_HEDGE_DELAY`] to [`MAX_HEDGE_DELAY`], 1 to [`MAX_HEDGES`] extra
    /// backends, and a pool with a second backend to ask.
    fn hedge(&mut self, path: &str, section: HedgeSection, backends: usize) -> Option<Hedge> {
        let errors = self.errors.len();
        let delay = self.positive_duration(
            &format!("{path}.hedge.delay"),
            section.delay,
            DEFAULT_HEDGE_DELAY,
        );
        if delay < MIN_HEDGE_DELAY {
            self.error(
                format!("{path}.hedge.delay"),
                format!("{delay:?} is shorter than {MIN_HEDGE_DELAY:?}"),
                Some("below a millisecond every read would go to two nodes: use 50ms to 2s"),
            );
        } else if delay > MAX_HEDGE_DELAY {
            self.error(
                format!("{path}.hedge.delay"),
                format!("{delay:?} is longer than {MAX_HEDGE_DELAY:?}"),
                Some("a hedge helps when it comes well before the client gives up: use 50ms to 2s"),
            );
        }
        let max = section.max.unwrap_or(1);
        if !(1..=MAX_HEDGES).contains(&max) {
            self.error(
                format!("{path}.hedge.max"),
                format!("{max} extra backends per read is out of bounds"),
                Some("use 1 to 8 (1: one more backend, the usual choice)"),
            );
        }
        if backends < 2 {
            self.error(
                format!("{path}.hedge"),
                "a hedge goes to another backend, and this pool has only one",
                Some("add a backend, or remove `hedge`"),
            );
        }
        (self.errors.len() == errors).then_some(Hedge { delay, max })
    }

    /// A CA file (`ca` of a pool or a backend), relative to the config's directory, that must
    /// hold at least one PEM certificate.
    pub(super) fn ca_file(&mut self, path: &str, file: &Path) -> PathBuf {
        let file = self.base.join(file);
        if let Err(e) = crate::tls::load_certs(&file) {
            self.error(path, e, Some("a PEM file with one or more CA certificates"));
        }
        file
    }
}

/// A pool or backend name: letters, digits, `-`, `_` and `.` (it shows in metric labels and
/// `/status`).
pub(super) fn valid_name(name: &str) -> bool {
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

#[cfg(test)]
mod hedge_tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::config::model::Hedge;
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    fn with_hedge(hedge: &str) -> String {
        MINIMAL.replace(
            "    kind: execution\n",
            &format!("    kind: execution\n    hedge: {hedge}\n"),
        )
    }

    #[test]
    fn hedging_is_off_unless_asked_and_takes_its_defaults() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.pools[0].hedge, None);
        let c = parse(&with_hedge("{}"), Path::new(".")).expect("valid");
        let default = Hedge {
            delay: Duration::from_millis(300),
            max: 1,
        };
        assert_eq!(c.pools[0].hedge, Some(default));
        let c = parse(&with_hedge("{ delay: 50ms, max: 2 }"), Path::new(".")).expect("valid");
        let set = Hedge {
            delay: Duration::from_millis(50),
            max: 2,
        };
        assert_eq!(c.pools[0].hedge, Some(set));
    }

    #[test]
    fn bad_hedges_are_reported_with_their_paths() {
        for (hedge, path) in [
            ("{ delay: 0s }", "pools.execution.hedge.delay"),
            ("{ delay: soon }", "pools.execution.hedge.delay"),
            ("{ delay: 2m }", "pools.execution.hedge.delay"),
            ("{ delay: 999us }", "pools.execution.hedge.delay"),
            ("{ delay: 1ns }", "pools.execution.hedge.delay"),
            ("{ max: 0 }", "pools.execution.hedge.max"),
            ("{ max: 9 }", "pools.execution.hedge.max"),
            ("{ after: 1s }", "pools.execution.hedge"),
        ] {
            let errs = errors(&with_hedge(hedge));
            assert_eq!(errs.len(), 1, "{hedge}: {errs:?}");
            assert_eq!(errs[0].path, path, "{hedge}");
        }
        let alone = with_hedge("{}").replace(
            "      - { name: ec-b, url: \"http://10.0.0.2:8545\", backup: true }\n",
            "",
        );
        let errs = errors(&alone);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "pools.execution.hedge");
    }
}
