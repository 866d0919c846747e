//! Guest agent mode: the agent's framing and resynchronisation.
//!
//! # Theory of operation
//!
//! The guest agent (`qemu-ga`) speaks QMP's commands over a channel that outlives its
//! clients: there is no greeting, and output left over from an earlier client (or from a
//! command that timed out) may still be in the channel. The engine therefore
//! resynchronises: it writes a `0xFF` byte and `guest-sync-delimited` with a fresh random
//! id, and until the agent answers `{"return": id}` (preceded by its own `0xFF`), it
//! discards everything else but replies to commands in flight. The `0xFF` byte cuts the
//! input: what came before it is dropped unless it was a whole message.
//!
//! A sync is written on connect (the session is `Connecting` until it is answered), after a
//! command that was sent times out (so its late reply can never be taken for the next
//! command's), after a command that sends nothing when it succeeds (the sync's answer then
//! resolves it with `{}`), and on [`Client::resync`](crate::Client::resync). The agent
//! answers in order, so a command it left unanswered when it answered a later sync never
//! will be: it resolves with [`CommandError::NoReply`].

use std::time::Instant;

use crate::client::output::Diagnostic;
use crate::client::timers::Single;
use crate::client::{Client, Inner};
use crate::error::{CommandError, Excerpt, ProtocolError};
use crate::framer::Frame;
use crate::message::Envelope;
use crate::wire::{self, SYNC_DELIMITER};

/// Guest agent commands that send no reply when they succeed (`'success-response': false`
/// in the agent's schema): a resynchronisation after them tells success from silence.
const SILENT_ON_SUCCESS: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];

/// The agent-specific state of the engine.
#[derive(Debug)]
pub(super) struct Agent {
    /// The state of the generator of guest-sync ids.
    rng: u64,
    /// Resynchronising after a message over the limits: input is skipped up to the next
    /// `0xFF` delimiter.
    skip_to_delimiter: bool,
}

impl Agent {
    pub(super) fn new(seed: u64) -> Self {
        Agent {
            rng: seed,
            skip_to_delimiter: false,
        }
    }

    /// Whether `name` is a guest agent command that sends nothing when it succeeds.
    pub(super) fn is_silent(name: &str) -> bool {
        SILENT_ON_SUCCESS.contains(&name)
    }

    /// The next guest-sync id: splitmix64 over the seeded state, cut to 1..2^53 so that any
    /// JSON implementation holds it exactly.
    fn next_sync_id(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11).max(1)
    }

    /// Whether input is skipped up to the next delimiter.
    pub(super) fn skipping(&self) -> bool {
        self.skip_to_delimiter
    }

    /// Skips input up to the next delimiter (`true`), or stops skipping.
    pub(super) fn skip_to_delimiter(&mut self, skip: bool) {
        self.skip_to_delimiter = skip;
    }
}

impl Client {
    /// Frames input while a sync is awaited: up to the next `0xFF` delimiter, what is not a
    /// whole message is discarded (and after a message over the limits, everything is
    /// skipped up to the delimiter). Returns the input left to frame: after the delimiter
    /// while the sync is still awaited, or from the delimiter on once the sync was answered
    /// before it (that delimiter is then no longer expected); `None` when all was taken.
    pub(super) fn feed_syncing<'a>(&mut self, now: Instant, data: &'a [u8]) -> Option<&'a [u8]> {
        let delimiter = data.iter().position(|&b| b == SYNC_DELIMITER);
        let chunk = delimiter.map_or(data, |at| &data[..at]);
        if !self.inner.agent.skipping() {
            let inner = &mut self.inner;
            if let Err(e) = self
                .framer
                .feed(chunk, |frame: Frame<'_>| inner.on_frame(now, frame))
            {
                if self.inner.session.is_syncing() {
                    // A message over the limits: nothing before the next delimiter can be
                    // framed reliably, so all of it is skipped.
                    self.inner.discard(match e {
                        ProtocolError::MessageTooLarge { excerpt, .. }
                        | ProtocolError::TooDeep { excerpt, .. } => excerpt,
                        other => Excerpt::new(other.to_string().as_bytes()),
                    });
                    self.inner.agent.skip_to_delimiter(true);
                } else {
                    self.inner.shutdown(e.into());
                }
            }
        }
        if !self.inner.session.is_live() {
            self.framer.reset();
            return None;
        }
        let at = delimiter?;
        if !self.inner.session.is_syncing() {
            return Some(&data[at..]);
        }
        if !self.framer.partial().is_empty() {
            let excerpt = Excerpt::new(self.framer.partial());
            self.inner.discard(excerpt);
        }
        self.framer.reset();
        self.inner.agent.skip_to_delimiter(false);
        Some(&data[at + 1..])
    }
}

impl Inner {
    /// Reports something dropped while resynchronising with a guest agent.
    pub(super) fn discard(&mut self, excerpt: Excerpt) {
        self.out
            .diagnostic(Diagnostic::DiscardedBeforeSync(excerpt));
    }

    /// Writes a `0xFF` byte and `guest-sync-delimited` with a fresh id and holds further
    /// commands until the agent answers it. A no-op while one is under way: that one was
    /// written after every command sent so far, so it covers them too.
    pub(super) fn start_sync(&mut self, now: Instant) {
        if self.session.is_syncing() || !self.session.is_live() || self.write_error.is_some() {
            return;
        }
        let id = self.agent.next_sync_id();
        let at = self.tx.len();
        wire::guest_sync(self.tx.buf_mut(), id);
        self.trace_sent(at, true);
        self.session.syncing(id);
        let deadline = self.config.sync_timeout.and_then(|t| now.checked_add(t));
        self.timers.set(Single::Stage, deadline);
    }

    /// While resynchronising: the matching `{"return": id}` ends it; replies to commands in
    /// flight are delivered; the id-less error that answers the `0xFF` byte is dropped;
    /// anything else is discarded with a diagnostic.
    pub(super) fn on_sync_message(
        &mut self,
        now: Instant,
        sync_id: u64,
        env: &Envelope<'_>,
        frame: &[u8],
    ) {
        if let (Some(ret), None) = (env.ret, env.error) {
            if ret.get().trim().parse::<u64>() == Ok(sync_id) {
                return self.synced(now);
            }
        }
        let routed = env.id.and_then(|id| self.table.route(id)).is_some();
        if routed {
            self.on_reply(now, env, frame);
        } else if !(env.id.is_none() && env.error.is_some()) {
            self.discard(Excerpt::new(frame));
        }
    }

    /// The agent answered the sync. Commands sent before it that are still unanswered
    /// never will be: those that send nothing on success succeeded; the others resolve with
    /// [`CommandError::NoReply`]; abandoned ones free their slots, and that is their late
    /// outcome. Then held commands go.
    fn synced(&mut self, now: Instant) {
        self.timers.set(Single::Stage, None);
        self.agent.skip_to_delimiter(false);
        for (id, silent, abandoned) in self.table.synced(&mut self.timers) {
            let result = if silent {
                Ok(crate::client::empty_object())
            } else {
                Err(CommandError::NoReply)
            };
            if abandoned {
                self.out.late_reply(id, result);
            } else {
                self.out.reply(id, result);
            }
        }
        self.session.synced(&mut self.out);
        self.pump(now);
    }
}
