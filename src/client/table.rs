//! The command table: one entry per command, from the call that issues it to its one
//! resolution.
//!
//! # Theory of operation
//!
//! A command gets its id when it is issued, and then an entry that is, in turn:
//!
//! * **queued**, holding its serialised bytes (and file descriptors) while no in-band slot
//!   is free or commands do not flow yet (negotiation, a guest agent sync). Queued commands
//!   leave in order; an out-of-band command never queues;
//! * **sent**: written to the send buffer. An in-band command holds one of the
//!   [`max_in_flight`](crate::ClientConfig::max_in_flight) slots until QEMU answers;
//! * **abandoned**: sent, then given up (cancelled, timed out). It is already resolved for the
//!   application, but QEMU still holds it, so it keeps its slot and its id until the reply
//!   comes, which is then dropped as a late reply.
//!
//! It is resolved exactly once, by one of: its reply ([`resolve`](Table::resolve)), giving
//! up ([`give_up`](Table::give_up); a queued command is then never sent), a guest agent sync
//! that the agent answered after it ([`synced`](Table::synced)), or the end of the session
//! ([`drain`](Table::drain)). The entry owns everything about its command: its route (how its
//! reply finds it), the caller-id index, the id-less slot, the in-band count and its deadline
//! in the [`Timers`] table. Nothing else touches per-command state.

use std::collections::hash_map::Entry::Occupied;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

#[cfg(unix)]
use std::os::fd::OwnedFd;

use serde_json::Value;

use crate::client::timers::Timers;
use crate::client::tracker::Query;
use crate::error::CallError;

/// How a command's reply finds it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Route {
    /// The engine assigned the wire id (the command id).
    Engine,
    /// The caller supplied this wire id.
    Caller(Value),
    /// Sent without an id.
    Idless,
}

/// What the table keeps of a command besides its id.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) route: Route,
    pub(super) oob: bool,
    pub(super) quit: bool,
    /// A guest agent command that sends no reply when it succeeds.
    pub(super) silent: bool,
    pub(super) deadline: Option<Instant>,
    /// A tracker's query: its reply goes to the tracker, not to the application.
    pub(super) query: Option<Query>,
}

/// File descriptors to pass with a command's first byte.
#[cfg(unix)]
pub(super) type Fds = Vec<OwnedFd>;
/// File descriptors to pass with a command's first byte (none on this platform).
#[cfg(not(unix))]
pub(super) type Fds = ();

#[derive(Debug)]
enum Status {
    Queued { bytes: Vec<u8>, fds: Fds },
    Sent,
    Abandoned,
}

#[derive(Debug)]
struct Entry {
    command: Command,
    status: Status,
}

/// A queued command leaving the table for the send buffer.
pub(super) struct Outgoing {
    pub(super) bytes: Vec<u8>,
    pub(super) fds: Fds,
    pub(super) quit: bool,
    pub(super) silent: bool,
}

/// A command that was pending when the session ended.
pub(super) struct Drained {
    pub(super) id: u64,
    /// A `quit` that was sent: EOF answers it.
    pub(super) sent_quit: bool,
    /// A tracker's query: nobody waits for its resolution.
    pub(super) query: Option<Query>,
}

/// A sent command whose reply came.
pub(super) struct Resolved {
    /// It had been given up: the reply is late.
    pub(super) abandoned: bool,
    /// A tracker's query.
    pub(super) query: Option<Query>,
}

#[derive(Debug)]
pub(super) struct Table {
    /// The next command id; engine-assigned wire ids are the same numbers.
    next_id: u64,
    /// By command id (unordered: what needs id order sorts).
    entries: HashMap<u64, Entry, BuildHasherDefault<IdHasher>>,
    /// Queued commands, in order.
    queue: VecDeque<u64>,
    /// Caller-supplied wire ids of queued or sent commands.
    caller_ids: Vec<(Value, u64)>,
    /// The id-less command, queued or sent.
    idless: Option<u64>,
    /// In-band commands sent and not answered, abandoned ones included: QEMU still holds
    /// them in its queue.
    in_band: usize,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            next_id: 1,
            entries: HashMap::default(),
            queue: VecDeque::new(),
            caller_ids: Vec::new(),
            idless: None,
            in_band: 0,
        }
    }

    // ----- ids -----

    /// The next id that no pending caller-supplied id equals; not consumed.
    pub(super) fn peek_id(&mut self) -> u64 {
        while !self.caller_ids.is_empty() && {
            let v = Value::from(self.next_id);
            self.caller_ids.iter().any(|(c, _)| json_eq(c, &v))
        } {
            self.next_id += 1;
        }
        self.next_id
    }

    /// The next id, consumed.
    pub(super) fn alloc_id(&mut self) -> u64 {
        let id = self.peek_id();
        self.next_id += 1;
        id
    }

    /// Fails if `wire`, a caller's id, equals the wire id of a pending command (or
    /// `reserved`, the id of `qmp_capabilities` in flight).
    pub(super) fn check_caller_id(
        &self,
        wire: &Value,
        reserved: Option<u64>,
    ) -> Result<(), CallError> {
        let clash = self.caller_ids.iter().any(|(c, _)| json_eq(c, wire))
            || as_engine_id(wire).is_some_and(|n| {
                reserved == Some(n)
                    || self
                        .entries
                        .get(&n)
                        .is_some_and(|e| matches!(e.command.route, Route::Engine))
            });
        if clash {
            return Err(CallError::DuplicateId(wire.to_string()));
        }
        Ok(())
    }

    /// Fails if an id-less command is pending.
    pub(super) fn check_idless(&self) -> Result<(), CallError> {
        match self.idless {
            Some(_) => Err(CallError::IdlessPending),
            None => Ok(()),
        }
    }

    // ----- counts -----

    /// Commands sent and not yet answered or given up.
    pub(super) fn in_flight(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.status, Status::Sent))
            .count()
    }

    /// Commands queued.
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a new command may be written at once (else it queues): out-of-band commands
    /// always may; in-band ones if none is queued, commands flow and a slot is free.
    pub(super) fn can_send(&self, oob: bool, flowing: bool, max_in_flight: usize) -> bool {
        oob || (self.queue.is_empty() && flowing && self.in_band < max_in_flight.max(1))
    }

    // ----- issue and pump -----

    /// Records command `id` (as returned by [`peek_id`](Self::peek_id), now consumed) and
    /// arms its deadline. `queued`: its bytes, if it waits; `None` if it was written to the
    /// send buffer.
    pub(super) fn insert(
        &mut self,
        id: u64,
        command: Command,
        queued: Option<(Vec<u8>, Fds)>,
        timers: &mut Timers,
    ) {
        if id >= self.next_id {
            self.next_id = id + 1;
        }
        timers.arm_command(command.deadline, id);
        match &command.route {
            Route::Engine => {}
            Route::Caller(wire) => self.caller_ids.push((wire.clone(), id)),
            Route::Idless => self.idless = Some(id),
        }
        let status = match queued {
            Some((bytes, fds)) => {
                self.queue.push_back(id);
                Status::Queued { bytes, fds }
            }
            None => {
                if !command.oob {
                    self.in_band += 1;
                }
                Status::Sent
            }
        };
        self.entries.insert(id, Entry { command, status });
    }

    /// The head of the queue, marked sent, if a slot is free.
    pub(super) fn next_to_send(&mut self, max_in_flight: usize) -> Option<Outgoing> {
        if self.in_band >= max_in_flight.max(1) {
            return None;
        }
        let id = self.queue.pop_front()?;
        let entry = self.entries.get_mut(&id)?;
        let Status::Queued { bytes, fds } = std::mem::replace(&mut entry.status, Status::Sent)
        else {
            return None;
        };
        self.in_band += 1;
        Some(Outgoing {
            bytes,
            fds,
            quit: entry.command.quit,
            silent: entry.command.silent,
        })
    }

    // ----- routing replies -----

    /// The sent (or abandoned) command a reply's id (raw JSON text) designates.
    pub(super) fn route(&self, id: &str) -> Option<u64> {
        if let Some(n) = engine_id(id) {
            if self
                .entries
                .get(&n)
                .is_some_and(|e| matches!(e.command.route, Route::Engine) && e.is_out())
            {
                return Some(n);
            }
        }
        if self.caller_ids.is_empty() {
            return None;
        }
        let v: Value = serde_json::from_str(id).ok()?;
        self.caller_ids
            .iter()
            .find(|(c, cid)| json_eq(c, &v) && self.entries.get(cid).is_some_and(Entry::is_out))
            .map(|(_, cid)| *cid)
    }

    /// The id-less command, if it was sent.
    pub(super) fn idless_target(&self) -> Option<u64> {
        self.idless
            .filter(|id| self.entries.get(id).is_some_and(Entry::is_out))
    }

    /// Whether command `id` was resolved without its reply while the peer still has it:
    /// its reply is still to come, as its late outcome.
    pub(super) fn awaits_late_reply(&self, id: u64) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| matches!(e.status, Status::Abandoned))
    }

    // ----- resolutions -----

    /// The reply of sent command `id` arrived: removes it, freeing its slot. Returns whether
    /// it had been abandoned (its reply is then late) and whose query it is, or `None` if
    /// `id` is not out.
    pub(super) fn resolve(&mut self, id: u64, timers: &mut Timers) -> Option<Resolved> {
        let entry = match self.entries.entry(id) {
            Occupied(e) if e.get().is_out() => e.remove(),
            // Not sent yet: replies never route to it.
            _ => return None,
        };
        self.shrink();
        self.forget(id, &entry, timers);
        if !entry.command.oob {
            self.in_band -= 1;
        }
        Some(Resolved {
            abandoned: matches!(entry.status, Status::Abandoned),
            query: entry.command.query,
        })
    }

    /// Resolves command `id` without its reply: a queued command is removed (never sent); a
    /// sent one is abandoned, keeping its slot and id until QEMU answers. Returns whether it
    /// had been sent, or `None` if it was not pending.
    pub(super) fn give_up(&mut self, id: u64, timers: &mut Timers) -> Option<bool> {
        let entry = self.entries.get_mut(&id)?;
        match entry.status {
            Status::Abandoned => None,
            Status::Sent => {
                entry.status = Status::Abandoned;
                timers.disarm_command(entry.command.deadline.take(), id);
                Some(true)
            }
            Status::Queued { .. } => {
                self.queue.retain(|q| *q != id);
                self.remove(id, timers);
                Some(false)
            }
        }
    }

    /// Guest agent: the agent answered a sync written after every command sent so far, so
    /// those it left unanswered never will be. Removes every sent and abandoned command
    /// (freeing the slots) and returns them, in id order, each with whether it is silent on
    /// success and whether it was abandoned. Queued commands stay.
    pub(super) fn synced(&mut self, timers: &mut Timers) -> Vec<(u64, bool, bool)> {
        let mut out: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.is_out())
            .map(|(id, _)| *id)
            .collect();
        out.sort_unstable();
        let mut unanswered = Vec::new();
        for id in out {
            if let Some(entry) = self.remove(id, timers) {
                let abandoned = matches!(entry.status, Status::Abandoned);
                unanswered.push((id, entry.command.silent, abandoned));
            }
        }
        self.in_band = 0;
        unanswered
    }

    /// The session ended: every pending command (sent or queued; not abandoned), in id
    /// order. Empties the table; the caller clears the timers.
    pub(super) fn drain(&mut self) -> Vec<Drained> {
        let mut entries: Vec<(u64, Entry)> =
            std::mem::take(&mut self.entries).into_iter().collect();
        entries.sort_unstable_by_key(|(id, _)| *id);
        let pending = entries
            .into_iter()
            .filter_map(|(id, e)| match e.status {
                Status::Abandoned => None,
                Status::Sent => Some(Drained {
                    id,
                    sent_quit: e.command.quit,
                    query: e.command.query,
                }),
                Status::Queued { .. } => Some(Drained {
                    id,
                    sent_quit: false,
                    query: e.command.query,
                }),
            })
            .collect();
        self.queue.clear();
        self.caller_ids.clear();
        self.idless = None;
        self.in_band = 0;
        pending
    }

    /// Removes entry `id` and everything that refers to it but the queue and the count.
    fn remove(&mut self, id: u64, timers: &mut Timers) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.shrink();
        self.forget(id, &entry, timers);
        Some(entry)
    }

    /// After a removal: memory follows the commands pending, not the most there ever were.
    fn shrink(&mut self) {
        let capacity = self.entries.capacity();
        if capacity > 1024 && self.entries.len() * 8 < capacity {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    /// Drops what refers to the removed entry `id`: its deadline, its route.
    fn forget(&mut self, id: u64, entry: &Entry, timers: &mut Timers) {
        timers.disarm_command(entry.command.deadline, id);
        match entry.command.route {
            Route::Engine => {}
            Route::Caller(_) => self.caller_ids.retain(|(_, cid)| *cid != id),
            Route::Idless => self.idless = None,
        }
    }
}

/// The number a reply's id (raw JSON text) is, if it is a JSON integer within `u64`: what
/// an engine-assigned id is echoed as. (Digits only: JSON has no `+` and no leading zeros,
/// and a sign, fraction or exponent is never an engine id.)
fn engine_id(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 19 {
        // Might not fit.
        return text.parse().ok();
    }
    // 19 digits always fit.
    Some(bytes.iter().fold(0, |n, b| n * 10 + u64::from(b - b'0')))
}

/// Hashes a command id: ids are the engine's own sequential numbers (never the peer's), so
/// one multiplication spreads them over the table.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Entry {
    /// Sent or abandoned: QEMU has it.
    fn is_out(&self) -> bool {
        matches!(self.status, Status::Sent | Status::Abandoned)
    }
}

/// JSON equality as QEMU's echo preserves it: numbers by value (`1.0` equals `1`), objects
/// regardless of member order.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The engine id a caller's id would clash with, if it is a non-negative integer.
fn as_engine_id(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_eq_follows_qemu_echo() {
        let eq = |a: &str, b: &str| {
            json_eq(
                &serde_json::from_str(a).unwrap(),
                &serde_json::from_str(b).unwrap(),
            )
        };
        assert!(eq("1.0", "1"));
        assert!(eq("1e2", "100"));
        assert!(eq(r#"{"a":1,"b":[1,2]}"#, r#"{"b": [1, 2], "a": 1.0}"#));
        assert!(!eq("1", "\"1\""));
        assert!(!eq(r#"{"a":1}"#, r#"{"a":1,"b":2}"#));
        assert!(eq("18446744073709551616", "1.8446744073709552e19"));
    }

    #[test]
    fn engine_ids_are_the_json_integers_within_u64() {
        for text in [
            "0",
            "7",
            "1234",
            "18446744073709551615",
            "00018446744073709551615",
        ] {
            let json = serde_json::from_str::<Value>(text).ok();
            let expected = json.as_ref().and_then(Value::as_u64);
            if json.is_some() {
                assert_eq!(engine_id(text), expected, "{text}");
            }
        }
        for text in [
            "",
            "-1",
            "1.0",
            "1e2",
            "\"7\"",
            "18446744073709551616",
            "+7",
            "7 ",
            "null",
            "99999999999999999999",
        ] {
            assert_eq!(engine_id(text), None, "{text}");
        }
    }
}
