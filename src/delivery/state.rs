//! A subscriber's delivery state, and every transition of it, in one
//! place. Pure: the relay and the catch-up ask it what to do and tell it
//! what happened; it does no I/O.
//!
//! ```text
//!            join                 caught_up (level)
//!   ──────► Joining ──────────────────────────────► Live ◄──────┐
//!              │  ▲ caught_up (not level: another round)  │      │
//!              └──┘                                        │      │ caught_up
//!                                      pipe_full / lagged  ▼      │ (level)
//!                                                        Behind ──┘
//!                                                          │ ▲ caught_up
//!                                                          └─┘ (not level)
//!   any ── close ──► Closed (nothing more is written)
//! ```
//!
//! While `Joining` (its replay is being written) or `Behind` (its pipe was
//! full, or its relay lagged the ring), the relay skips frames for the
//! subscriber and only remembers the highest it skipped; a catch-up from
//! the subscriber's cursor covers them. It is `Live` again once a catch-up
//! brought it at least as far as that highest skipped frame, with no ring
//! lag in between.

use crate::domain::frame::StreamPos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Subscribed; its replay is being written.
    Joining,
    /// Frames are written as the relay reads them.
    Live,
    /// Frames were skipped; a catch-up is owed.
    Behind,
    /// Its closing event is written.
    Closed,
}

/// What the relay does with a broadcast frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Write,
    /// Not now: a catch-up will cover it.
    Skip,
    /// Already covered (by the replay or a catch-up), or closed.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    state: State,
    /// The last broadcast position written or covered by a catch-up.
    last: StreamPos,
    /// The highest position skipped while not live.
    skipped: StreamPos,
    /// Frames of unknown position were skipped (the ring lagged): one more
    /// catch-up round is owed whatever the positions say.
    round_owed: bool,
}

impl Delivery {
    /// A subscriber whose replay brings it up to `head`, joining a relay
    /// that has already read up to `relay_read` (and lagged, if
    /// `relay_lagging`): frames it read past `head` must be caught up.
    pub fn join(head: StreamPos, relay_read: StreamPos, relay_lagging: bool) -> Delivery {
        Delivery { state: State::Joining, last: head, skipped: relay_read, round_owed: relay_lagging }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_live(&self) -> bool {
        self.state == State::Live
    }

    /// A broadcast frame at `pos` arrives from the ring.
    pub fn frame(&mut self, pos: StreamPos) -> Verdict {
        match self.state {
            State::Closed => Verdict::Drop,
            _ if pos <= self.last => Verdict::Drop,
            State::Live => Verdict::Write,
            State::Joining | State::Behind => {
                self.skipped = self.skipped.max(pos);
                Verdict::Skip
            }
        }
    }

    /// The frame at `pos` was written (or was not for this subscriber's
    /// wire, which counts the same).
    pub fn wrote(&mut self, pos: StreamPos) {
        self.last = self.last.max(pos);
    }

    /// The frame at `pos` found the pipe full. `true`: the subscriber just
    /// fell behind, and its session must be told to catch up.
    pub fn pipe_full(&mut self, pos: StreamPos) -> bool {
        self.skipped = self.skipped.max(pos);
        self.fall_behind()
    }

    /// The relay lagged the ring: frames of unknown position were lost for
    /// every subscriber. `true` as for `pipe_full`.
    pub fn lagged(&mut self) -> bool {
        self.round_owed = true;
        self.fall_behind()
    }

    fn fall_behind(&mut self) -> bool {
        match self.state {
            State::Live => {
                self.state = State::Behind;
                true
            }
            State::Joining | State::Behind | State::Closed => false,
        }
    }

    /// A catch-up (or the replay) brought the subscriber up to `head`.
    /// `true`: it is live again; `false`: skipped frames lie beyond, and
    /// another round is owed.
    pub fn caught_up(&mut self, head: StreamPos) -> bool {
        self.last = self.last.max(head);
        if !matches!(self.state, State::Joining | State::Behind) {
            return self.state == State::Live;
        }
        if std::mem::take(&mut self.round_owed) || self.skipped > self.last {
            return false;
        }
        self.state = State::Live;
        true
    }

    /// Its closing event is written; nothing follows.
    pub fn close(&mut self) {
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> StreamPos {
        StreamPos::new(1, seq)
    }

    #[test]
    fn a_joining_subscriber_skips_until_its_replay_is_written() {
        let mut d = Delivery::join(p(3), p(3), false);
        assert_eq!(d.frame(p(2)), Verdict::Drop, "covered by the replay");
        assert_eq!(d.frame(p(4)), Verdict::Skip);
        assert!(!d.caught_up(p(3)), "frame 4 was skipped: another round");
        assert!(d.caught_up(p(4)));
        assert_eq!(d.frame(p(5)), Verdict::Write);
    }

    #[test]
    fn joining_behind_the_relay_owes_what_the_relay_read_past_the_replay() {
        let mut d = Delivery::join(p(1), p(3), false);
        assert!(!d.caught_up(p(1)));
        assert!(d.caught_up(p(3)));
        let mut lagging = Delivery::join(p(5), p(5), true);
        assert!(!lagging.caught_up(p(5)), "a lagging relay owes a round");
        assert!(lagging.caught_up(p(5)));
    }

    #[test]
    fn a_full_pipe_makes_it_behind_and_the_session_is_told_once() {
        let mut d = Delivery::join(p(0), p(0), false);
        assert!(d.caught_up(p(0)));
        assert_eq!(d.frame(p(1)), Verdict::Write);
        d.wrote(p(1));
        assert_eq!(d.frame(p(2)), Verdict::Write);
        assert!(d.pipe_full(p(2)), "told once");
        assert_eq!(d.state(), State::Behind);
        assert_eq!(d.frame(p(3)), Verdict::Skip);
        assert!(!d.pipe_full(p(3)), "not again");
        assert!(!d.caught_up(p(2)), "frame 3 lies beyond");
        assert!(d.caught_up(p(3)));
        assert!(d.is_live());
    }

    #[test]
    fn a_lag_of_the_ring_makes_live_subscribers_behind_with_a_round_owed() {
        let mut d = Delivery::join(p(0), p(0), false);
        d.caught_up(p(0));
        assert!(d.lagged());
        assert!(!d.caught_up(p(9)), "positions cannot tell what the lag lost");
        assert!(d.caught_up(p(9)));
    }

    #[test]
    fn a_closed_subscriber_gets_nothing_more() {
        let mut d = Delivery::join(p(0), p(0), false);
        d.caught_up(p(0));
        d.close();
        assert_eq!(d.frame(p(1)), Verdict::Drop);
        assert!(!d.pipe_full(p(1)) && !d.lagged());
        assert!(!d.caught_up(p(1)));
    }

    #[test]
    fn a_new_epoch_comes_after_every_position_of_the_old_one() {
        let mut d = Delivery::join(StreamPos::new(1, 900), StreamPos::new(1, 900), false);
        d.caught_up(StreamPos::new(1, 900));
        assert_eq!(d.frame(StreamPos::new(2, 1)), Verdict::Write);
    }
}
