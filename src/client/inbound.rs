//! Inbound: what each frame from the peer means (greeting, reply, event or diagnostic), as
//! the session's [`Stage`] says.
//!
//! The framer cuts the input into frames; each is decoded into a borrowed envelope (no
//! `serde_json::Value` tree) and routed: during `Greeting` it must be the greeting; during a
//! guest agent sync it goes to [`on_sync_message`](Inner::on_sync_message); otherwise a
//! member `return` or `error` (or an `id` without `event`) makes a reply, routed by its id
//! through the command table (the answer to `qmp_capabilities` included); a member `event`
//! makes an event; anything else is a diagnostic.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::client::output::{Diagnostic, Direction, Event};
use crate::client::session::Stage;
use crate::client::timers::Single;
use crate::client::{Client, Inner};
use crate::error::{CommandError, DisconnectReason, Excerpt, ProtocolError, QmpError};
use crate::framer::{Frame, FrameSink};
use crate::id::{CommandId, CommandResult};
use crate::message::{qemu_timestamp, Envelope, ErrorBody, Greeting, QmpEvent, Timestamp};
use crate::{whole, wire};
use serde_json::value::RawValue;

/// How long unexpected bytes may wait for the end of their line before they are reported:
/// long enough to gather what arrived in one burst, so the report shows the whole line.
const GARBAGE_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

impl Client {
    /// Frames `data`: as it is, or, while a guest agent sync is awaited, cut by the agent's
    /// `0xFF` delimiter ([`feed_syncing`](Client::feed_syncing)).
    pub(super) fn feed(&mut self, now: Instant, mut data: &[u8]) {
        while self.inner.session.is_live() {
            if !self.inner.session.is_syncing() {
                let sink = Sink {
                    inner: &mut self.inner,
                    now,
                };
                match self.framer.feed(data, sink) {
                    // A message began a guest agent sync (a command it freed a slot for
                    // went out, and a sync follows it): the rest of the input is framed as
                    // while a sync is awaited, as if it had come in another read.
                    Ok(used) if used < data.len() && self.inner.session.is_syncing() => {
                        data = &data[used..];
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => self.inner.shutdown(e.into()),
                }
                if !self.inner.session.is_live() {
                    self.framer.reset();
                }
                break;
            }
            match self.feed_syncing(now, data) {
                Some(rest) => data = rest,
                None => break,
            }
        }
        // Unexpected bytes wait for their line end, but not for long.
        let garbage = match self.inner.timers.get(Single::Garbage) {
            _ if !self.framer.in_garbage() => None,
            Some(d) => Some(d),
            None => now.checked_add(GARBAGE_GRACE),
        };
        self.inner.timers.set(Single::Garbage, garbage);
    }

    /// The grace for unexpected bytes ran out: they are reported (discarded while a guest
    /// agent sync is awaited, else fatal).
    pub(super) fn garbage_due(&mut self) {
        if self.inner.session.is_syncing() && self.framer.in_garbage() {
            let excerpt = Excerpt::new(self.framer.partial());
            self.inner.discard(excerpt);
            self.framer.reset();
        } else if let Some(error) = self.framer.at_eof() {
            self.inner.shutdown(error.into());
        }
    }
}

/// Where the client's frames go: to [`Inner::on_frame`], or, for a whole message at the
/// start of the input, parsed where it lies ([`Inner::on_whole`]).
struct Sink<'a> {
    inner: &'a mut Inner,
    now: Instant,
}

impl FrameSink for Sink<'_> {
    fn frame(&mut self, frame: Frame<'_>) -> ControlFlow<()> {
        let flow = self.inner.on_frame(self.now, frame);
        self.inner.stop_if_syncing(flow)
    }

    #[inline(always)]
    fn whole(&mut self, input: &str, max_depth: usize) -> Option<(usize, ControlFlow<()>)> {
        let (len, flow) = self.inner.on_whole(self.now, input, max_depth)?;
        Some((len, self.inner.stop_if_syncing(flow)))
    }
}

impl Inner {
    /// Stops framing without the sync framing once a guest agent sync began: what follows
    /// is cut by the agent's delimiter ([`Client::feed`] goes on with it).
    fn stop_if_syncing(&self, flow: ControlFlow<()>) -> ControlFlow<()> {
        if self.session.is_syncing() {
            ControlFlow::Break(())
        } else {
            flow
        }
    }

    fn fatal(&mut self, error: ProtocolError) -> ControlFlow<()> {
        self.shutdown(error.into());
        ControlFlow::Break(())
    }

    pub(super) fn on_frame(&mut self, now: Instant, frame: Frame<'_>) -> ControlFlow<()> {
        if !self.session.is_live() {
            return ControlFlow::Break(());
        }
        let frame = match frame {
            Frame::Message(message) => message,
            Frame::Garbage(line) if self.session.is_syncing() => {
                self.discard(Excerpt::new(line));
                return ControlFlow::Continue(());
            }
            Frame::Garbage(line) => {
                return self.fatal(ProtocolError::UnexpectedData(Excerpt::new(line)))
            }
        };
        self.trace_in(frame);
        let parsed = match std::str::from_utf8(frame) {
            Err(_) => Err(ProtocolError::InvalidUtf8(Excerpt::new(frame))),
            Ok(text) if !text.starts_with('{') => {
                Err(ProtocolError::NotAnObject(Excerpt::new(frame)))
            }
            Ok(text) => {
                serde_json::from_str::<Envelope<'_>>(text).map_err(|e| ProtocolError::InvalidJson {
                    error: e.to_string(),
                    excerpt: Excerpt::new(frame),
                })
            }
        };
        let env = match parsed {
            Ok(env) => env,
            Err(_) if self.session.is_syncing() => {
                self.discard(Excerpt::new(frame));
                return ControlFlow::Continue(());
            }
            Err(e) => return self.fatal(e),
        };
        self.on_message(now, &env, frame)
    }

    /// A whole message at the start of `input` (cut at the size limit by the framer),
    /// parsed where it lies rather than scanned first: its length and flow, or `None` if
    /// it is not a whole, valid message there nested within `max_depth`, which leaves it to
    /// the scan and [`on_frame`](Self::on_frame) (the same frame, or the same error).
    fn on_whole(
        &mut self,
        now: Instant,
        input: &str,
        max_depth: usize,
    ) -> Option<(usize, ControlFlow<()>)> {
        if !self.session.is_live() {
            return None;
        }
        let mut env = Envelope::default();
        let len = whole::envelope(input, max_depth, &mut env)?;
        let frame = &input.as_bytes()[..len];
        self.trace_in(frame);
        Some((len, self.on_message(now, &env, frame)))
    }

    /// The peer's message as traffic, when traced.
    fn trace_in(&mut self, frame: &[u8]) {
        if self.config.trace_messages {
            self.out.push_peer(Event::Traffic {
                direction: Direction::In,
                message: String::from_utf8_lossy(frame).into_owned(),
                delimited: false,
            });
        }
    }

    /// Routes a parsed message as the session's stage says.
    fn on_message(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) -> ControlFlow<()> {
        match self.session.stage() {
            Stage::Syncing { id } => self.on_sync_message(now, id, env, frame),
            Stage::Greeting => self.on_greeting(now, env, frame),
            _ if env.qmp.is_some() => {
                self.out
                    .diagnostic(Diagnostic::UnexpectedGreeting(Excerpt::new(frame)));
            }
            _ if env.ret.is_some()
                || env.error.is_some()
                || (env.id.is_some() && env.event.is_none()) =>
            {
                self.on_reply(now, env, frame);
            }
            _ if env.event.is_some() => self.on_event(now, env, frame),
            _ => self
                .out
                .diagnostic(Diagnostic::UnknownMessage(Excerpt::new(frame))),
        }
        if self.session.is_live() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    fn on_greeting(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) {
        let limit = self.config.max_events_before_greeting;
        let event_only = env.qmp.is_none() && env.ret.is_none() && env.error.is_none();
        if let (true, Some(event), true) = (event_only, decode_event(env), limit > 0) {
            // An event before the greeting: held, within the bound.
            if self.session.hold_early_event(event, limit).is_err() {
                let excerpt = Excerpt::new(frame);
                self.shutdown(ProtocolError::EventsBeforeGreeting { limit, excerpt }.into());
            }
            return;
        }
        let parsed = match env.qmp {
            None => Err("expected the greeting {\"QMP\": ...} first".to_owned()),
            Some(body) => Greeting::from_body(body),
        };
        let greeting = match parsed {
            Ok(g) => g,
            Err(reason) => {
                let excerpt = Excerpt::new(frame);
                self.shutdown(ProtocolError::InvalidGreeting { reason, excerpt }.into());
                return;
            }
        };
        let oob = self.config.oob && greeting.has_capability("oob");
        let id = self.table.alloc_id();
        let at = self.tx.len();
        wire::capabilities(self.tx.buf_mut(), oob, id);
        self.trace_out(at);
        self.session.greeted(&mut self.out, greeting, oob, id);
        let deadline = self
            .config
            .negotiation_timeout
            .and_then(|t| now.checked_add(t));
        self.timers.set(Single::Stage, deadline);
    }

    pub(super) fn on_reply(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) {
        // Decoded only for a reply that is delivered: unknown and late replies are dropped
        // without copying their payload.
        let decode = || -> CommandResult {
            match (env.ret, env.error) {
                (Some(ret), None) => Ok(ret.to_owned()),
                (None, Some(error)) => match serde_json::from_str::<ErrorBody>(error.get()) {
                    Ok(body) => Err(CommandError::Qmp(QmpError {
                        class: body.class,
                        desc: body.desc,
                    })),
                    Err(_) => Err(CommandError::MalformedReply(Excerpt::new(frame))),
                },
                _ => Err(CommandError::MalformedReply(Excerpt::new(frame))),
            }
        };
        if let (Stage::Negotiating { id }, Some(reply_id)) = (self.session.stage(), env.id) {
            if reply_id.parse::<u64>() == Ok(id) {
                self.on_negotiated(now, decode(), frame);
                self.pump(now);
                return;
            }
        }
        let target = match env.id {
            Some(id) => self.table.route(id),
            None => self.table.idless_target(),
        };
        let Some(target) = target else {
            if env.id.is_none() && env.error.is_some() {
                // QEMU could not parse something it was sent.
                let error = match decode() {
                    Err(CommandError::Qmp(e)) => e,
                    _ => QmpError {
                        class: String::new(),
                        desc: Excerpt::new(frame).to_string(),
                    },
                };
                self.shutdown(ProtocolError::IdlessError(error).into());
                return;
            }
            self.out.diagnostic(Diagnostic::UnknownReply {
                id: env.id.map(ToOwned::to_owned),
                excerpt: Excerpt::new(frame),
            });
            return;
        };
        let Some(resolved) = self.table.resolve(target, &mut self.timers) else {
            return;
        };
        if let Some(query) = resolved.query {
            let asks = self.trackers.on_reply(query, decode(), &mut self.out);
            self.ask(now, asks);
        } else if resolved.abandoned {
            self.out.diagnostic(Diagnostic::LateReply {
                id: CommandId(target),
                excerpt: Excerpt::new(frame),
            });
            self.out.late_reply(target, decode());
        } else {
            self.out.reply(target, decode());
        }
        self.pump(now);
    }

    fn on_negotiated(&mut self, now: Instant, result: CommandResult, frame: &[u8]) {
        self.timers.set(Single::Stage, None);
        match result {
            Ok(_) => {
                self.session.negotiated(&mut self.out);
                if !self.config.guest_agent {
                    let asks = self.trackers.session_started();
                    self.ask(now, asks);
                }
            }
            Err(CommandError::Qmp(e)) => self.shutdown(DisconnectReason::NegotiationFailed(e)),
            Err(_) => self.shutdown(
                ProtocolError::InvalidReply {
                    to: "qmp_capabilities",
                    excerpt: Excerpt::new(frame),
                }
                .into(),
            ),
        }
    }

    fn on_event(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) {
        let event = decode_event(env);
        if event.as_ref().is_some_and(|e| e.name == "SHUTDOWN") {
            self.session.shutdown_announced();
        }
        match event {
            Some(event) if self.trackers.concerns(&event.name) => {
                // The event goes first; the changes it makes follow it.
                self.out.push_peer(Event::Qmp(event.clone()));
                let asks = self.trackers.on_event(&event, &mut self.out);
                self.ask(now, asks);
            }
            Some(event) => self.out.push_peer(Event::Qmp(event)),
            None => self
                .out
                .diagnostic(Diagnostic::MalformedEvent(Excerpt::new(frame))),
        }
    }
}

/// The event an envelope carries: `None` unless its member `event` is a string.
fn decode_event(env: &Envelope<'_>) -> Option<QmpEvent> {
    Some(QmpEvent {
        name: event_name(env.event?)?,
        data: env.data.map(ToOwned::to_owned),
        timestamp: env
            .qemu_timestamp
            .or_else(|| env.timestamp.and_then(timestamp)),
    })
}

/// The event name from its raw JSON: a string without escapes is its text (the envelope's
/// parse validated it); anything else is decoded by serde (`None` if not a string).
fn event_name(text: &str) -> Option<String> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(inner.to_owned()),
        _ => serde_json::from_str::<String>(text).ok(),
    }
}

/// The timestamp from its raw JSON, `None` if malformed. QEMU's own form,
/// `{"seconds": N, "microseconds": M}` with plain integers, is read directly; any other is
/// decoded by serde, which gives the same result for QEMU's form.
fn timestamp(raw: &RawValue) -> Option<Timestamp> {
    qemu_timestamp(raw.get()).or_else(|| serde_json::from_str::<Timestamp>(raw.get()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_with_and_without_escapes() {
        assert_eq!(event_name(r#""STOP""#).as_deref(), Some("STOP"));
        assert_eq!(event_name(r#""A\u0042\"""#).as_deref(), Some("AB\""));
        assert_eq!(event_name("5"), None);
        assert_eq!(event_name(r#""\ud800""#), None);
    }
}
