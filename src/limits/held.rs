//! What a listener may hold of its clients' bytes at once.
//!
//! Execution pools read every request body whole before judging it, and a WebSocket message is
//! held until it is complete; each is bounded by `limits.max_body_bytes`, and all of them together
//! on one listener by `limits.max_held_bytes`, so many clients sending large bodies at once meet a
//! clear refusal (503, or close code 1013 on a WebSocket) instead of the gateway's memory running
//! out. The first 64 KiB of each are free: small calls, the bulk of the traffic, never touch the
//! shared count.
//!
//! A passthrough listener counts the ClientHello bytes each connection holds while it waits for
//! the rest, every byte of them ([`HeldBudget::share_counted`]): thousands of connections may wait
//! at once for little each, so no part is free there.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes each request or session holds without counting against the listener's budget.
pub const FREE_BYTES: usize = 64 * 1024;

/// The bytes held on one listener beyond each holder's free part, also shown as a gauge.
#[derive(Debug)]
pub struct HeldBudget {
    held: AtomicUsize,
    gauge: IntGauge,
}

impl HeldBudget {
    pub fn new(gauge: IntGauge) -> Self {
        HeldBudget {
            held: AtomicUsize::new(0),
            gauge,
        }
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        self.gauge.sub(bytes as i64);
    }

    /// A new holder's share, empty; its first [`FREE_BYTES`] are not counted.
    pub fn share(self: &Arc<Self>) -> Share {
        Share {
            budget: self.clone(),
            bytes: 0,
            free: FREE_BYTES,
        }
    }

    /// A new holder's share, empty, that counts every byte it holds.
    pub fn share_counted(self: &Arc<Self>) -> Share {
        Share {
            budget: self.clone(),
            bytes: 0,
            free: 0,
        }
    }

    /// Bytes counted now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One request's or session's part of the budget, given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<HeldBudget>,
    bytes: usize,
    /// Bytes held without counting.
    free: usize,
}

impl Share {
    /// Makes the share fit `holding` bytes held. `false` (and the share unchanged) when the
    /// listener would hold more than `max` bytes with it.
    pub fn hold(&mut self, holding: usize, max: usize) -> bool {
        let want = holding.saturating_sub(self.free);
        if want <= self.bytes {
            self.budget.give_back(self.bytes - want);
            self.bytes = want;
            return true;
        }
        let more = want - self.bytes;
        let before = self.budget.held.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > max {
            self.budget.held.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        self.budget.gauge.add(more as i64);
        self.bytes = want;
        true
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_count_beyond_the_free_part_and_are_given_back() {
        let gauge = IntGauge::new("held", "held").unwrap();
        let budget = Arc::new(HeldBudget::new(gauge.clone()));
        let max = 1000;
        let mut a = budget.share();
        assert!(a.hold(FREE_BYTES, max), "the free part costs nothing");
        assert_eq!(budget.held(), 0);
        assert!(a.hold(FREE_BYTES + 600, max));
        let mut b = budget.share();
        assert!(!b.hold(FREE_BYTES + 500, max), "600 + 500 is over 1000");
        assert_eq!(budget.held(), 600, "a refused share takes nothing");
        assert!(b.hold(FREE_BYTES + 400, max));
        assert!(a.hold(10, max), "shrinking gives back");
        assert_eq!(budget.held(), 400);
        assert_eq!(gauge.get(), 400, "the gauge follows");
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(gauge.get(), 0);
        let mut c = budget.share_counted();
        assert!(
            c.hold(600, max),
            "a counted share counts from its first byte"
        );
        assert_eq!(budget.held(), 600);
        assert!(!c.hold(1001, max));
        drop(c);
        assert_eq!(budget.held(), 0);
    }
}
