//! Validates a pool's `health` settings: probe interval, timeout, rise and fall.

use super::validator::Validator;
use crate::config::file::HealthSection;
use crate::config::model::*;

impl Validator {
    pub(super) fn health(&mut self, pool_path: &str, h: HealthSection) -> HealthSettings {
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
}
