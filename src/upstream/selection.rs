//! Backend selection as a pure function over the pool's health and roles.
//!
//! `first`: the first healthy primary in config order; backups, in order, only when no primary is
//! healthy (haproxy's `balance first` with `backup` servers). `round_robin`: rotate over healthy
//! primaries, then over healthy backups. Backends already tried by this request are skipped.

use crate::config::model::Policy;

/// One backend as selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub healthy: bool,
    pub backup: bool,
}

/// Picks a backend index. `tried` has bit `i` set for each backend this request already used;
/// `cursor` is the round-robin position (ignored by `first`).
pub fn select(
    policy: Policy,
    candidates: impl Fn(usize) -> Candidate,
    count: usize,
    tried: u64,
    cursor: usize,
) -> Option<usize> {
    let usable = |i: usize, backup: bool| {
        let c = candidates(i);
        c.healthy && c.backup == backup && tried & (1u64 << i) == 0
    };
    for backup in [false, true] {
        let found = match policy {
            Policy::First => (0..count).find(|&i| usable(i, backup)),
            Policy::RoundRobin => (0..count)
                .map(|k| (cursor + k) % count)
                .find(|&i| usable(i, backup)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(spec: &[(bool, bool)]) -> impl Fn(usize) -> Candidate + '_ {
        move |i| Candidate {
            healthy: spec[i].0,
            backup: spec[i].1,
        }
    }

    #[test]
    fn first_prefers_primaries_in_order() {
        let spec = [(true, false), (true, false), (true, true)];
        assert_eq!(select(Policy::First, pool(&spec), 3, 0, 7), Some(0));
        let spec = [(false, false), (true, false), (true, true)];
        assert_eq!(select(Policy::First, pool(&spec), 3, 0, 0), Some(1));
    }

    #[test]
    fn backups_only_when_no_primary_is_healthy() {
        let spec = [(true, true), (false, false), (true, true)];
        assert_eq!(select(Policy::First, pool(&spec), 3, 0, 0), Some(0));
        assert_eq!(select(Policy::RoundRobin, pool(&spec), 3, 0, 1), Some(2));
        let spec = [(false, false), (false, true)];
        assert_eq!(select(Policy::First, pool(&spec), 2, 0, 0), None);
    }

    #[test]
    fn tried_backends_are_skipped() {
        let spec = [(true, false), (true, false), (true, true)];
        assert_eq!(select(Policy::First, pool(&spec), 3, 0b001, 0), Some(1));
        assert_eq!(select(Policy::First, pool(&spec), 3, 0b011, 0), Some(2));
        assert_eq!(select(Policy::First, pool(&spec), 3, 0b111, 0), None);
    }

    #[test]
    fn round_robin_rotates_over_healthy_primaries() {
        let spec = [(true, false), (false, false), (true, false), (true, true)];
        let picks: Vec<_> = (0..6)
            .map(|c| select(Policy::RoundRobin, pool(&spec), 4, 0, c).unwrap())
            .collect();
        assert!(picks.iter().all(|&i| i == 0 || i == 2), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2));
    }
}
