//! The invariant of [`super::super::subscriptions`] (written in its module doc), checked after every
//! step of generated sessions: simulated chains on three backends, blocks, reorgs on the
//! session's backend and on the others, backends that fall behind or run ahead, moves (with
//! wrong `eth_blockNumber` answers and blocks arriving during the move), and a client holding
//! `newHeads`, a `logs` filter every block matches and a quiet one.
//!
//! The session is driven through the pure state only ([`SessionState`](super::super::subscriptions::SessionState) and the steps of
//! [`super::super::carry`]); the backends answer as nodes do.

mod origins;
mod world;

use proptest::prelude::*;
use world::{run, step, Claim, OtherOp, Step};

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_client_holds_the_final_chain_after_every_step(
        subs in (any::<bool>(), any::<bool>(), any::<bool>()),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        if let Err(e) = run(subs, &steps) {
            prop_assert!(false, "{}", e);
        }
    }
}

// The cases the property test found, shrunk, each a rule it made the gateway change.

use Claim::Right;
use OtherOp::{Advance, Sync};
use Step::{Block, Move, Other};

const QUIET_ONLY: (bool, bool, bool) = (false, false, true);

fn block() -> Step {
    Block {
        logs_first: false,
        others: 0,
    }
}

fn moved(to: usize, claim: Claim, before: u64, after: u64) -> Step {
    Move {
        to,
        claim,
        before,
        after,
    }
}

/// A move records the new backend's blocks as the session's heads: without them, a move back
/// to a backend on another branch found nothing to compare and a quiet filter's log there was
/// never sent.
#[test]
fn after_a_move_the_session_knows_the_new_chain() {
    let steps = [
        block(),
        block(),
        Other {
            node: 1,
            op: OtherOp::Reorg(1),
        },
        Other {
            node: 1,
            op: OtherOp::Reorg(1),
        },
        moved(2, Right, 0, 0),
        block(),
        block(),
        Other {
            node: 1,
            op: Advance,
        },
        Block {
            logs_first: false,
            others: 2,
        },
        block(),
        Other {
            node: 2,
            op: Advance,
        },
        block(),
        block(),
        Block {
            logs_first: false,
            others: 2,
        },
        block(),
        block(),
        moved(2, Right, 0, 0),
        moved(1, Right, 0, 0),
    ];
    run(QUIET_ONLY, &steps).unwrap();
}

/// A log of a block the client's memory lacks, below blocks it has, is a backend behind it
/// catching up, not a reorg: it took back the client's later logs.
#[test]
fn a_backend_behind_catching_up_takes_nothing_back() {
    let steps = [
        Other {
            node: 1,
            op: Advance,
        },
        Other {
            node: 1,
            op: Advance,
        },
        moved(2, Right, 0, 1),
        Other {
            node: 1,
            op: Sync { lag: 3, ahead: 0 },
        },
        moved(1, Right, 0, 1),
        Other {
            node: 1,
            op: Advance,
        },
        moved(1, Right, 0, 0),
    ];
    run((false, true, false), &steps).unwrap();
}

/// A head below the client's first one, from a backend behind it, is no reorg report.
#[test]
fn a_head_below_the_clients_first_from_a_backend_behind_is_dropped() {
    let steps = [
        Other {
            node: 2,
            op: Sync { lag: 2, ahead: 0 },
        },
        block(),
        Block {
            logs_first: false,
            others: 1,
        },
        moved(2, Right, 1, 0),
        moved(1, Right, 0, 0),
    ];
    run((true, true, false), &steps).unwrap();
}

/// The parent of the latest block, asked for after a wrong `eth_blockNumber`, is recorded too.
#[test]
fn a_wrong_block_number_still_leaves_a_record_of_the_chain() {
    let steps = [
        Other {
            node: 2,
            op: Advance,
        },
        moved(2, Claim::High(1), 1, 0),
        Other {
            node: 1,
            op: OtherOp::Reorg(1),
        },
        block(),
        Block {
            logs_first: false,
            others: 1,
        },
        moved(1, Right, 0, 0),
    ];
    run(QUIET_ONLY, &steps).unwrap();
}

/// Logs of blocks before the subscription's first, from a backend behind it on another
/// branch, do not reach the client (they would stay, orphaned).
#[test]
fn logs_from_before_the_subscription_do_not_reach_the_client() {
    let steps = [
        Other {
            node: 2,
            op: Sync { lag: 3, ahead: 0 },
        },
        Other {
            node: 2,
            op: OtherOp::Reorg(1),
        },
        Block {
            logs_first: false,
            others: 1,
        },
        moved(2, Right, 0, 1),
        moved(1, Right, 0, 0),
    ];
    run((false, true, false), &steps).unwrap();
}

/// A move fetches the headers of the whole gap, quiet filters' too, so that the session's
/// record of the chain has no hole a later backend behind it could part in.
#[test]
fn a_quiet_filters_gap_is_recorded_block_by_block() {
    let steps = [
        Other {
            node: 1,
            op: Advance,
        },
        Step::Reorg {
            depth: 1,
            length: 4,
            logs_first: false,
        },
        block(),
        block(),
        block(),
        Step::Reorg {
            depth: 2,
            length: 3,
            logs_first: false,
        },
        Other {
            node: 1,
            op: Sync { lag: 3, ahead: 2 },
        },
        moved(2, Right, 0, 0),
        Block {
            logs_first: false,
            others: 1,
        },
        block(),
        moved(1, Right, 1, 0),
        moved(1, Right, 0, 0),
    ];
    run(QUIET_ONLY, &steps).unwrap();
}

/// Where the chains part, a quiet filter's resume point comes back even with no log to take
/// back: it was complete on the old chain only.
#[test]
fn the_resume_point_comes_back_where_the_chains_part() {
    let steps = [
        block(),
        moved(2, Right, 1, 1),
        Step::Reorg {
            depth: 1,
            length: 3,
            logs_first: false,
        },
        Block {
            logs_first: false,
            others: 2,
        },
        moved(1, Right, 1, 1),
        moved(1, Right, 0, 0),
        Other {
            node: 1,
            op: OtherOp::Reorg(1),
        },
        moved(1, Right, 0, 0),
        moved(2, Right, 0, 1),
        moved(2, Right, 0, 0),
    ];
    run(QUIET_ONLY, &steps).unwrap();
}

/// Blocks a backend behind the session's heads sent are asked about at the next move, even
/// below a head found the same (that head was another backend's).
#[test]
fn a_match_vouches_only_for_what_was_recorded_with_it() {
    let steps = [
        Other {
            node: 1,
            op: Sync { lag: 4, ahead: 0 },
        },
        block(),
        Other {
            node: 1,
            op: OtherOp::Reorg(3),
        },
        moved(1, Right, 1, 1),
        moved(1, Right, 0, 1),
    ];
    run((false, true, false), &steps).unwrap();
}

/// Moving to a backend behind the session's heads and then on keeps the heads above its head
/// as a record to compare with.
#[test]
fn heads_above_a_backend_behind_stay_on_record() {
    let steps = [
        Other {
            node: 1,
            op: Advance,
        },
        block(),
        Other {
            node: 1,
            op: Advance,
        },
        block(),
        Other {
            node: 1,
            op: Sync { lag: 0, ahead: 0 },
        },
        block(),
        Step::Reorg {
            depth: 1,
            length: 1,
            logs_first: false,
        },
        Other {
            node: 1,
            op: Advance,
        },
        block(),
        block(),
        moved(2, Right, 0, 0),
        moved(2, Right, 0, 0),
    ];
    run(QUIET_ONLY, &steps).unwrap();
}
