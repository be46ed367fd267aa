//! The wall clock in Unix seconds, as the simulated chains date their blocks and genesis.

/// Seconds since the Unix epoch now (0 on a clock set before it).
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
