//! What a backend keeps of its health: the hysteresis state, the last verdict and what the last
//! check saw. Written by the health checks' driver and by failures on live traffic; read by
//! `/status`.

use super::check::Report;
use super::facts::Facts;
use super::hysteresis::{Hysteresis, Transition};
use super::verdict::Verdict;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone)]
pub struct HealthRecord {
    pub hysteresis: Hysteresis,
    pub verdict: Option<Verdict>,
    pub facts: Option<Facts>,
    pub latency: Option<Duration>,
    pub last_check: Option<SystemTime>,
    pub last_change: Option<SystemTime>,
    /// Whether the backend was ever down (an `Up` after that is a recovery, not a first check).
    pub was_down: bool,
}

impl HealthRecord {
    /// Records one check's report; returns the transition it caused.
    pub fn observe(&mut self, report: Report, rise: u32, fall: u32) -> Option<Transition> {
        let transition = self.hysteresis.record(report.verdict.healthy, rise, fall);
        self.last_check = Some(SystemTime::now());
        self.latency = Some(report.latency);
        self.facts = report.facts.ok();
        self.settle(transition, report.verdict);
        transition
    }

    /// Records a failure on live traffic: at once down when `force`, else like one failed check.
    /// The last check's verdict stays unless this takes the backend down.
    pub fn fail_live(
        &mut self,
        reason: &str,
        force: bool,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let transition = if force {
            self.hysteresis.force_down()
        } else {
            self.hysteresis.record(false, rise, fall)
        };
        if transition.is_some() {
            let verdict = Verdict::failed(format!("failed on live traffic: {reason}"));
            self.settle(transition, verdict);
        }
        transition
    }

    fn settle(&mut self, transition: Option<Transition>, verdict: Verdict) {
        match transition {
            Some(Transition::Down) => {
                self.was_down = true;
                self.last_change = Some(SystemTime::now());
            }
            Some(Transition::Up) => self.last_change = Some(SystemTime::now()),
            None => {}
        }
        self.verdict = Some(verdict);
    }

    /// Whether the backend may get traffic.
    pub fn is_up(&self) -> bool {
        self.hysteresis.is_up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(healthy: bool) -> Report {
        Report {
            facts: Err("unused".into()),
            latency: Duration::from_millis(3),
            verdict: if healthy {
                Verdict {
                    healthy: true,
                    reasons: vec![],
                    notes: vec![],
                    lag: Some(0),
                }
            } else {
                Verdict::failed("syncing".into())
            },
        }
    }

    #[test]
    fn a_recovery_is_told_from_a_first_good_check() {
        let mut record = HealthRecord::default();
        assert_eq!(record.observe(report(true), 2, 2), Some(Transition::Up));
        assert!(!record.was_down, "a first good check is no recovery");
        assert_eq!(
            record.fail_live("reset", true, 2, 2),
            Some(Transition::Down)
        );
        assert!(record.was_down);
        assert_eq!(
            record.verdict.as_ref().map(Verdict::summary).as_deref(),
            Some("failed on live traffic: reset")
        );
        assert_eq!(record.observe(report(true), 2, 2), None);
        assert_eq!(record.observe(report(true), 2, 2), Some(Transition::Up));
        assert!(record.is_up());
    }

    #[test]
    fn a_counted_live_failure_keeps_the_last_verdict_until_it_takes_the_backend_down() {
        let mut record = HealthRecord::default();
        record.observe(report(true), 2, 2);
        assert_eq!(record.fail_live("timeout", false, 2, 2), None);
        assert_eq!(record.verdict.as_ref().map(|v| v.healthy), Some(true));
        assert_eq!(
            record.fail_live("timeout", false, 2, 2),
            Some(Transition::Down)
        );
        assert!(!record.is_up());
        assert_eq!(
            record.verdict.as_ref().map(Verdict::summary).as_deref(),
            Some("failed on live traffic: timeout")
        );
    }
}
