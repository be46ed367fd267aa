//! Validates a pool's `cache`: `{ max_bytes: N }` or `off`; on by default with
//! [`DEFAULT_CACHE_MAX_BYTES`].

use super::validator::Validator;
use crate::config::model::*;
use serde::Deserialize;
use serde_yaml::Value;

/// The mapping form of `cache`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheSection {
    /// Bytes held at most (keys and bookkeeping included).
    max_bytes: Option<u64>,
}

const HINT: &str = "`cache: { max_bytes: 33554432 }` (bytes, default 32 MiB) or `cache: off`";

impl Validator {
    /// A pool's answer cache; `None` when it is `off`.
    pub(super) fn cache(&mut self, pool: &str, value: Option<Value>) -> Option<CacheConfig> {
        let path = format!("{pool}.cache");
        let section = match value {
            None | Some(Value::Null) => CacheSection { max_bytes: None },
            Some(Value::String(s)) if s.trim() == "off" => return None,
            Some(Value::Bool(false)) => return None,
            Some(Value::String(s)) => {
                self.error(
                    &path,
                    format!("`{s}` is not `off` nor a mapping"),
                    Some(HINT),
                );
                return None;
            }
            Some(value) => self.node(&path, value, HINT)?,
        };
        let max_bytes = section.max_bytes.unwrap_or(DEFAULT_CACHE_MAX_BYTES);
        if !(MIN_CACHE_MAX_BYTES..=MAX_CACHE_MAX_BYTES).contains(&max_bytes) {
            self.error(
                format!("{path}.max_bytes"),
                format!(
                    "{max_bytes} bytes is outside {MIN_CACHE_MAX_BYTES} (64 KiB) to {MAX_CACHE_MAX_BYTES} (16 GiB)"
                ),
                Some("the default is 33554432 (32 MiB); `cache: off` turns the cache off"),
            );
            return None;
        }
        Some(CacheConfig { max_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::config::model::{CacheConfig, DEFAULT_CACHE_MAX_BYTES};
    use crate::config::parse;
    use std::path::Path;

    fn with_cache(cache: &str) -> String {
        MINIMAL.replace(
            "    kind: execution\n",
            &format!("    kind: execution\n    cache: {cache}\n"),
        )
    }

    #[test]
    fn the_cache_is_on_by_default_and_can_be_sized_or_turned_off() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        let default = Some(CacheConfig {
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
        });
        assert_eq!(c.pools[0].cache, default);
        let c = parse(&with_cache("{ max_bytes: 1048576 }"), Path::new(".")).expect("valid");
        assert_eq!(c.pools[0].cache.map(|c| c.max_bytes), Some(1048576));
        let c = parse(&with_cache("{}"), Path::new(".")).expect("valid");
        assert_eq!(c.pools[0].cache, default);
        for off in ["off", "false"] {
            let c = parse(&with_cache(off), Path::new(".")).expect("valid");
            assert_eq!(c.pools[0].cache, None, "{off}");
        }
    }

    #[test]
    fn a_bad_cache_is_named_by_its_path() {
        for (cache, path) in [
            ("{ max_bytes: 0 }", "pools.execution.cache.max_bytes"),
            ("{ max_bytes: 1000 }", "pools.execution.cache.max_bytes"),
            (
                "{ max_bytes: 99999999999999 }",
                "pools.execution.cache.max_bytes",
            ),
            ("{ max_bytes: -1 }", "pools.execution.cache"),
            ("{ size: 10 }", "pools.execution.cache"),
            ("on", "pools.execution.cache"),
            ("[1]", "pools.execution.cache"),
        ] {
            let errs = errors(&with_cache(cache));
            assert_eq!(errs.len(), 1, "{cache}: {errs:?}");
            assert_eq!(errs[0].path, path, "{cache}");
        }
    }
}
