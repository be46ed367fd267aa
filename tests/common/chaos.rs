//! What the chaos tests share: a seeded generator to pick faults, and the gateway process's
//! resources (descriptors, resident memory) to hold against a baseline.

/// xorshift64*: small, deterministic, good enough to pick faults.
pub struct Rng(pub u64);

impl Rng {
    /// The seed of a chaos run: `SSV_HA_CHAOS_SEED` when set (to replay a run), else `default`;
    /// printed so that a failure can be replayed.
    pub fn seeded(default: u64) -> Rng {
        let seed: u64 = std::env::var("SSV_HA_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("chaos seed {seed} (SSV_HA_CHAOS_SEED={seed} replays this run)");
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A process's open file descriptors and resident memory in kB.
pub fn process_stats(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (fds, rss_kb)
}
