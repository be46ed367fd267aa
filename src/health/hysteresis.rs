//! Rise/fall hysteresis as a pure state machine, like haproxy's `rise`/`fall`.
//!
//! A backend starts *unknown* and gets no traffic. Its first check decides at once (up on a good
//! check, down on a bad one), so a healthy gateway serves within one check of starting; after that a
//! backend needs `rise` consecutive good checks to come up and `fall` consecutive bad ones to go down.

/// Up/down state of one backend with its current streak of opposite results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hysteresis {
    state: Option<bool>,
    streak: u32,
}

/// A change of state caused by one check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

impl Hysteresis {
    /// `Some(true)` when up, `Some(false)` when down, `None` before the first check.
    pub fn state(&self) -> Option<bool> {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == Some(true)
    }

    /// Consecutive results against the current state so far (good checks of a backend that is
    /// down, bad ones of a backend that is up).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records one check result and returns the transition it caused, if any.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Transition> {
        match self.state {
            None => {
                self.state = Some(ok);
                self.streak = 0;
                Some(if ok { Transition::Up } else { Transition::Down })
            }
            Some(current) if current == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok { rise } else { fall };
                if self.streak >= needed.max(1) {
                    self.state = Some(ok);
                    self.streak = 0;
                    Some(if ok { Transition::Up } else { Transition::Down })
                } else {
                    None
                }
            }
        }
    }

    /// Takes the backend down at once, whatever the streak (passive health).
    pub fn force_down(&mut self) -> Option<Transition> {
        let was_up = self.is_up();
        self.state = Some(false);
        self.streak = 0;
        was_up.then_some(Transition::Down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_check_decides_at_once() {
        let mut h = Hysteresis::default();
        assert_eq!(h.state(), None);
        assert!(!h.is_up(), "unknown is not up");
        assert_eq!(h.record(true, 3, 3), Some(Transition::Up));
        let mut h = Hysteresis::default();
        assert_eq!(h.record(false, 3, 3), Some(Transition::Down));
        assert_eq!(h.state(), Some(false));
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = Hysteresis::default();
        h.record(true, 2, 3);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), None, "a good check resets the streak");
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), Some(Transition::Down));
        assert!(!h.is_up());
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut h = Hysteresis::default();
        h.record(false, 2, 1);
        assert_eq!(h.record(true, 2, 1), None);
        assert_eq!(h.record(false, 2, 1), None);
        assert_eq!(h.record(true, 2, 1), None);
        assert_eq!(h.record(true, 2, 1), Some(Transition::Up));
        assert_eq!(
            h.record(false, 2, 1),
            Some(Transition::Down),
            "fall 1 reacts at once"
        );
    }

    #[test]
    fn force_down_reports_only_real_changes() {
        let mut h = Hysteresis::default();
        assert_eq!(h.force_down(), None);
        h.record(true, 1, 1);
        h.record(true, 1, 1);
        assert_eq!(h.force_down(), Some(Transition::Down));
        assert_eq!(h.force_down(), None);
    }
}
