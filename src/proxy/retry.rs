//! Whether a failed attempt is sent again, as a pure function of what failed and where the request
//! stands: the hooks (`fail_to_connect`, `error_while_proxy`, `upstream_response_filter`, and the
//! gateway's own exchange) gather the facts, call [`decide`], and mark the error accordingly.
//!
//! A request is tried again only while nothing of the answer has reached the client, its body can
//! be replayed, and the retry budget is not spent; then on another backend, or on the same one when
//! only a stale pooled connection failed. The gateway running out of its own descriptors or ports
//! fails every connect alike: no other backend is tried.

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Connecting to the backend failed. `local_resources`: the gateway itself ran out of file
    /// descriptors or local ports (its own trouble, not the backend's).
    Connect { local_resources: bool },
    /// The exchange failed after connecting. `stale_connection`: it went out on a pooled connection
    /// the backend had closed while idle (the backend itself may be fine).
    Exchange { stale_connection: bool },
    /// The backend answered with what counts as its failure: 502/503/504, or an HTML page in answer
    /// to JSON-RPC.
    BadAnswer,
}

/// Where the request stands when an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Some of the answer (its header at least) has been written to the client.
    pub answer_started: bool,
    /// The request body can be sent again (Pingora's retry buffer kept all of it).
    pub body_replayable: bool,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// The configured retry budget (`retries`): at most this many attempts after the first.
    pub retries: u32,
    /// The pool has a healthy backend this request has not been sent to.
    pub untried_backend: bool,
}

/// What becomes of the request after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No further attempt: the client gets the failure (the gateway's error reply, or the
    /// backend's own answer as it is).
    Answer,
    /// Send the request to another backend not tried yet.
    TryAnother,
    /// Send the request to the same backend again, on a new connection (its backend stays
    /// eligible: the hook forgets it was tried).
    TrySameAgain,
}

/// Decides whether a failed attempt is sent again, and where.
pub fn decide(failed: Failed, attempt: Attempt) -> Decision {
    let may_retry =
        !attempt.answer_started && attempt.body_replayable && attempt.attempts <= attempt.retries;
    match failed {
        Failed::Connect {
            local_resources: true,
        } => Decision::Answer,
        _ if !may_retry => Decision::Answer,
        Failed::Exchange {
            stale_connection: true,
        } => Decision::TrySameAgain,
        _ if attempt.untried_backend => Decision::TryAnother,
        _ => Decision::Answer,
    }
}

impl Decision {
    /// Whether the request is sent again (what the hooks mark on the error).
    pub fn retries(self) -> bool {
        self != Decision::Answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first attempt with every retry still open.
    fn fresh() -> Attempt {
        Attempt {
            answer_started: false,
            body_replayable: true,
            attempts: 1,
            retries: 2,
            untried_backend: true,
        }
    }

    const CONNECT: Failed = Failed::Connect {
        local_resources: false,
    };
    const EXCHANGE: Failed = Failed::Exchange {
        stale_connection: false,
    };
    const STALE: Failed = Failed::Exchange {
        stale_connection: true,
    };

    #[test]
    fn a_failure_goes_to_another_backend_while_one_is_left() {
        for failed in [CONNECT, EXCHANGE, Failed::BadAnswer] {
            assert_eq!(decide(failed, fresh()), Decision::TryAnother, "{failed:?}");
            let none_left = Attempt {
                untried_backend: false,
                ..fresh()
            };
            assert_eq!(decide(failed, none_left), Decision::Answer, "{failed:?}");
        }
    }

    #[test]
    fn running_out_of_local_resources_tries_no_other_backend() {
        let failed = Failed::Connect {
            local_resources: true,
        };
        assert_eq!(decide(failed, fresh()), Decision::Answer);
    }

    #[test]
    fn a_stale_pooled_connection_tries_the_same_backend_even_with_none_left() {
        assert_eq!(decide(STALE, fresh()), Decision::TrySameAgain);
        let none_left = Attempt {
            untried_backend: false,
            ..fresh()
        };
        assert_eq!(decide(STALE, none_left), Decision::TrySameAgain);
    }

    #[test]
    fn nothing_is_retried_once_the_answer_has_started() {
        let started = Attempt {
            answer_started: true,
            ..fresh()
        };
        for failed in [CONNECT, EXCHANGE, STALE, Failed::BadAnswer] {
            assert_eq!(decide(failed, started), Decision::Answer, "{failed:?}");
        }
    }

    #[test]
    fn nothing_is_retried_when_the_body_cannot_be_replayed() {
        let truncated = Attempt {
            body_replayable: false,
            ..fresh()
        };
        for failed in [CONNECT, EXCHANGE, STALE, Failed::BadAnswer] {
            assert_eq!(decide(failed, truncated), Decision::Answer, "{failed:?}");
        }
    }

    #[test]
    fn the_retry_budget_allows_that_many_attempts_after_the_first() {
        let last_retry = Attempt {
            attempts: 2,
            ..fresh()
        };
        assert_eq!(decide(EXCHANGE, last_retry), Decision::TryAnother);
        let spent = Attempt {
            attempts: 3,
            ..fresh()
        };
        for failed in [CONNECT, EXCHANGE, STALE, Failed::BadAnswer] {
            assert_eq!(decide(failed, spent), Decision::Answer, "{failed:?}");
        }
        let no_retries = Attempt {
            retries: 0,
            ..fresh()
        };
        assert_eq!(decide(CONNECT, no_retries), Decision::Answer);
    }
}
