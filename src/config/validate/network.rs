//! Validates a pool's expected network: `chain_id` for execution pools, `genesis_*` for consensus
//! pools.

use super::validator::Validator;
use crate::config::file::PoolSection;
use crate::config::model::*;

impl Validator {
    pub(super) fn network(
        &mut self,
        path: &str,
        kind: PoolKind,
        section: &PoolSection,
    ) -> ExpectedNetwork {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::config::parse;
    use std::path::Path;

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
}
