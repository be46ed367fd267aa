//! Where each branch of the generated chains left the chain it grew from: a block's ancestry,
//! for the blocks a client holds above its backend's head.

use std::collections::HashMap;

/// Per branch, the branches of the blocks below its first (from the chains' first block on).
pub(super) struct Origins(HashMap<u32, Vec<u32>>);

impl Origins {
    /// Branch 0, the first chain's, grows from nothing.
    pub(super) fn new() -> Origins {
        Origins(HashMap::from([(0, Vec::new())]))
    }

    /// Branch `branch` starts on top of the blocks `below`.
    pub(super) fn record(&mut self, branch: u32, below: &[u32]) {
        self.0.insert(branch, below.to_vec());
    }

    /// Where a block of `branch` left `chain` (both as branches from the chains' first block
    /// on), the block being above the chain's head: the index of the first block below it the
    /// chain does not have; `None` when it is built on the chain's head.
    pub(super) fn parted(&self, chain: &[u32], branch: u32) -> Option<usize> {
        let below = self.0.get(&branch)?;
        (0..chain.len()).find(|&i| below.get(i).copied().unwrap_or(branch) != chain[i])
    }
}

/// The branch of a block, read from its hash (`world::block_hash`).
pub(super) fn branch_of(hash: &str) -> Option<u32> {
    hash.get(2..34)
        .and_then(|b| u32::from_str_radix(b, 16).ok())
}
