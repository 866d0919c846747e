//! Timers: every deadline the engine keeps, in one table.
//!
//! [`Client::poll_timeout`](crate::Client::poll_timeout) reads only this table, and
//! [`Client::handle_timeout`](crate::Client::handle_timeout) fires what is due in a fixed
//! order: the grace for unexpected bytes, then the grace after a failed write, then the
//! stage's deadline (greeting, negotiation, guest agent sync: it ends the session, resolving
//! every command), then command deadlines in the order they fall due (ties by command id).

use std::collections::BTreeSet;
use std::time::Instant;

/// A deadline that exists at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Single {
    /// Unexpected bytes without a line end are reported anyway.
    Garbage = 0,
    /// A write failed: the session ends with it unless the peer's EOF comes first.
    WriteError = 1,
    /// The stage's deadline: the greeting, negotiation or a guest agent sync.
    Stage = 2,
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    single: [Option<Instant>; 3],
    /// Command deadlines, by command id.
    commands: BTreeSet<(Instant, u64)>,
}

impl Timers {
    /// Arms `timer` for `at` (`None`: disarms it).
    pub(super) fn set(&mut self, timer: Single, at: Option<Instant>) {
        self.single[timer as usize] = at;
    }

    pub(super) fn get(&self, timer: Single) -> Option<Instant> {
        self.single[timer as usize]
    }

    /// Disarms `timer` if it is due at `now`, and says whether it was.
    pub(super) fn take_due(&mut self, timer: Single, now: Instant) -> bool {
        let due = self.get(timer).is_some_and(|at| at <= now);
        if due {
            self.set(timer, None);
        }
        due
    }

    pub(super) fn arm_command(&mut self, at: Option<Instant>, id: u64) {
        if let Some(at) = at {
            self.commands.insert((at, id));
        }
    }

    pub(super) fn disarm_command(&mut self, at: Option<Instant>, id: u64) {
        if let Some(at) = at {
            self.commands.remove(&(at, id));
        }
    }

    /// The next command whose deadline is due at `now`, disarmed.
    pub(super) fn pop_due_command(&mut self, now: Instant) -> Option<u64> {
        let &(at, id) = self.commands.first()?;
        if at > now {
            return None;
        }
        self.commands.pop_first();
        Some(id)
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        let mut next = self.commands.first().map(|(at, _)| *at);
        for at in self.single.iter().flatten() {
            if next.map_or(true, |n| *at < n) {
                next = Some(*at);
            }
        }
        next
    }

    pub(super) fn clear(&mut self) {
        *self = Timers::default();
    }
}
