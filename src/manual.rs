//! Design rationale: why the engine behaves as it does.
//!
//! This module has no items; it is documentation.
//!
//! # Framing by structure
//!
//! QEMU ends messages with `\r\n`, so a line-based reader seems natural, but a monitor with
//! `pretty=on` spreads one message over many lines and the guest agent ends lines with `\n`.
//! The framer counts brackets outside strings instead. Its state (depth, inside a string,
//! after a backslash) survives between inputs, so a message that arrives one byte at a time
//! costs the same as one that arrives whole; the unit tests count the bytes scanned to prove
//! it. A frame wholly inside one input is handed on without a copy; only an unfinished tail
//! is buffered, never more than `max_message_size`.
//!
//! Brackets are counted without checking that `]` closes `[`: a mismatched frame is still
//! delimited deterministically and is then refused as invalid JSON.
//!
//! # What ends a session and what does not
//!
//! Input the engine cannot interpret safely ends the session: invalid JSON (QEMU writes the
//! bare token `inf` for a number it cannot represent), invalid UTF-8, a message over the size
//! or depth limit, bytes between messages that cannot start one. After such input the engine
//! cannot know what the stream still means, and a command whose reply was in the bad message
//! would otherwise wait forever.
//!
//! Input that is well-formed but unexpected is dropped with a
//! [`Diagnostic`](crate::Diagnostic): a reply for an id not in flight (the QMP specification
//! asks clients to drop these), an object that is neither reply nor event (a future QEMU may
//! add message kinds), a greeting mid-session. A message with a pending command's id that is
//! not a valid reply resolves that command with
//! [`CommandError::MalformedReply`](crate::CommandError::MalformedReply), so it does not wait
//! for a reply that will not come.
//!
//! Every error report carries the offending bytes, at most
//! [`EXCERPT_LIMIT`](crate::EXCERPT_LIMIT) of them, chosen so that the report is the same
//! however the input was split: garbage is reported at the end of its line, and limit
//! violations show the message up to the offending byte.
//!
//! # Id-less errors
//!
//! QEMU answers input it cannot parse with a `GenericError` that has no id, in order with the
//! other in-band replies; one bad input can produce many. The engine never sends unparseable
//! input itself, so such an error means either that the caller sent a raw message without an
//! id ([`CallOptions::without_id`](crate::CallOptions::without_id), which it then
//! resolves) or that the stream is not what the engine thinks it is. In the second case the
//! session ends, as in the reference library. Only one id-less raw command may be pending, so
//! an id-less reply can always be attributed.
//!
//! # Ids
//!
//! The engine numbers commands from 1 and uses the number as the wire id, so the ids a
//! session sends match QEMU's own examples and captures. Numbers keep counting across
//! reconnections, so a stale reply from an earlier session cannot match a new command.
//!
//! A raw message may carry its own id of any JSON type. QEMU echoes ids after re-serialising
//! them (`1.0` becomes `1`, `1e2` becomes `100`, integers past `u64` become floats, object
//! members are re-spaced and may be reordered), so caller ids are matched by JSON value with
//! numbers compared by value, not by bytes. A caller id equal to a pending id is refused, and
//! engine ids skip numbers that pending caller ids hold.
//!
//! # Flow control and timeouts
//!
//! With OOB enabled QEMU queues at most 8 in-band commands before it stops reading its
//! socket; the specification asks clients to stay within that so an OOB command can still be
//! read. The engine caps in-band commands in flight (8 by default) and keeps the rest in a
//! local queue, which OOB commands overtake.
//!
//! A command that times out is resolved with
//! [`CommandError::Timeout`](crate::CommandError::Timeout) at once, but it keeps its in-flight
//! slot and its id until QEMU answers it: QEMU still holds it in its queue. Its late reply is
//! reported with [`Diagnostic::LateReply`](crate::Diagnostic::LateReply), then delivered as
//! its late outcome, [`Event::LateReply`](crate::Event::LateReply) (so an application can
//! learn whether the `blockdev-add` that timed out created its node). A command that times
//! out while still queued locally is never sent.
//!
//! # Bytes on the wire
//!
//! Commands are written compactly with no trailing newline. QEMU's streaming lexer needs none
//! after an object, and a newline after `quit` can be left unread when QEMU exits, which
//! resets the connection instead of closing it cleanly.
//!
//! # The end of a session
//!
//! `quit` is answered on a best-effort basis: QEMU may close the connection before or after
//! its reply, and may reset it if it exits with client bytes unread. So EOF resolves a `quit`
//! still in flight as a success, and a connection reset after a `quit` was sent counts as
//! EOF.
//!
//! The runstate passes through `Disconnecting` synchronously: the engine resolves every
//! pending command with the cause, drops unsent bytes (closing unsent file descriptors), and
//! emits the transition to `Idle` and then [`Event::Disconnected`](crate::Event::Disconnected),
//! which is the last output of the session. Closing the transport is the caller's job once
//! it sees that event. [`Client::disconnect_reason`](crate::Client::disconnect_reason) keeps
//! the reason until the next `connect`, so an adapter need not.
//!
//! A write that fails is reported with
//! [`Client::handle_write_error`](crate::Client::handle_write_error), and the engine decides
//! what follows, not the adapter: when the peer closed the connection (a broken pipe, a
//! reset), whatever it sent before closing (the reply to `quit`, a `SHUTDOWN` event, the EOF
//! itself) says more than the write error, so the engine offers nothing more to write and
//! waits a short grace for the EOF; the session ends with the write error only if the EOF
//! does not come. Any other write error ends the session at once.
//!
//! # One call API
//!
//! The engine has three issuing calls, and every adapter has the same verbs:
//! [`execute`](crate::Client::execute) (a name and arguments), [`call`](crate::Client::call)
//! (a typed command) and [`execute_raw`](crate::Client::execute_raw) (a whole request, with
//! its own id of any type or none). Each takes one [`CallOptions`](crate::CallOptions)
//! (timeout, out of band, without an id, file descriptors), which the adapters re-export, so
//! a new option is one field in one place. Whether a typed command may run out of band is
//! checked in `call` alone.
//!
//! # Bounded memory
//!
//! The receive buffer holds at most one unfinished message (`max_message_size`). Outputs
//! that the server can cause without limit (QMP events and diagnostics) are bounded by
//! `max_buffered_events` when the application does not poll them; beyond it they are counted
//! in [`Event::EventsLost`](crate::Event::EventsLost). Replies and runstate changes are
//! never dropped: there is one per command or per transition, which the application causes.
//!
//! # The guest agent
//!
//! The guest agent's channel (a virtio-serial port) is not reset when a client goes: output
//! for an earlier client may still be in it, and the agent may be half-way through an
//! earlier client's input. So the engine resynchronises as the agent's documentation
//! describes, with a `0xFF` byte (invalid UTF-8 in any position, so it resets the agent's
//! JSON parser, which answers it with an id-less parse error) and `guest-sync-delimited`
//! with an id nobody else uses. Everything before the matching reply is discarded as data,
//! never as a protocol error, since it is expected to be junk. The ids come from a seeded
//! generator rather than from a clock or the OS, which the core never reads: the adapters
//! seed it randomly, tests with a constant.
//!
//! The agent answers in order, so the sync reply also proves that every command sent before
//! it was answered or never will be. That is why a timed-out command is followed by a
//! resynchronisation (its late reply cannot then be mistaken for the next one's, even by a
//! reader that ignored ids), and why commands that are silent on success are followed by one
//! too: the sync reply arriving with no error before it is their success. The reply to the
//! sync is accepted even without its `0xFF`, as plain `guest-sync` would answer, because
//! the fresh id identifies it; a message over the limits before it cannot be framed
//! reliably, so input is skipped up to the next `0xFF`.
//!
//! # The server reproduces QEMU, byte for byte
//!
//! A fake QEMU is only useful for tests if it answers as QEMU does, bad input included.
//! `qmp_proto::server` (the `server` feature) therefore reproduces QEMU's JSON reader rather than using
//! serde_json: the same lexer states (with the recovery state that skips to the next
//! structural character, control byte or line end after an error), the same streamer (bracket
//! counting, limits of 64 MiB per token, 2 Mi tokens and nesting 1024) and the parser's own
//! error messages, so one bad input gives as many id-less errors as QEMU gives (1,026 for
//! nesting 1,025). Dispatch follows `monitor/qmp.c` and `qapi/qmp-dispatch.c`: a message with
//! `exec-oob` runs when read, parse errors queue in order with in-band requests, members are
//! checked in the order QEMU's hash table yields them (which decides which error is
//! reported), and reading is suspended while QEMU would suspend it (one request without OOB,
//! eight with). Output follows `json-writer.c` and `qdict.c`, so members come out in QEMU's
//! hash-table order and numbers as `%.17g`. `tests/server_vs_qemu.rs` holds it to real QEMU.
//!
//! Members that share a hash bucket come out in reverse insertion order, so the order in which
//! a handler inserts them matters; `Outcome::Json` keeps the order of its text, and
//! `FakeQemu` inserts members in QAPI schema order, as QEMU's generated code does.
//!
//! # Typed commands, and what a newer QEMU may send
//!
//! The engine keeps payloads raw, so typing is a layer on top: a [`Command`](crate::Command)
//! names itself and its return type, [`Client::call`](crate::Client::call) issues it like
//! `execute`, and the [`Pending`](crate::Pending) id it returns decodes the raw reply once,
//! from the bytes that arrived. Routing never looks at the payload, so a reply that does not
//! decode cannot desynchronise anything: it is a [`DecodeError`](crate::DecodeError) for that
//! call, carrying the raw JSON, and the next reply still goes to its own command. Events
//! are decoded the same way, on demand ([`QmpEvent::decode`](crate::QmpEvent::decode)), and
//! an event without a type is data, not an error. This is where the `qapi` crates differ:
//! they deserialise whole messages into one enum, so an unknown enum value or event fails the
//! stream rather than the message.
//!
//! The types of the `qmp-types` crate, generated from QEMU's schema, are forward-compatible
//! by construction: an enum keeps a value it does not know (`Other`), a union an unknown
//! case's raw JSON, and structs ignore members they do not know, so a newer QEMU decodes.
//!
//! The `qapi` feature is a blanket implementation of [`Command`](crate::Command) for every
//! `qapi_spec::Command` (and of [`TypedEvent`](crate::events::TypedEvent) for every
//! `qapi_spec::Event`) rather than a wrapper type, so generated values are passed as they
//! are: `call(qapi_qmp::query_status {})`. Coherence allows it beside this crate's own
//! implementations because those are for local types, which the qapi crates cannot
//! implement their traits for. The cost is that, with the feature on, a type of yours cannot
//! implement both `qapi_spec::Command` and [`Command`](crate::Command).
//!
//! Capabilities are asked of the connected QEMU, not of a version number: builds of the same
//! version differ (a storage daemon has no `query-status`, a distribution may leave devices
//! out). [`schema`](crate::schema) answers from `query-qmp-schema`, whose type names are
//! opaque numbers, by walking types: flat unions contribute every variant unless the tag's
//! value is known, alternates their object branches, arrays their elements, and each type is
//! visited once per walk so that a cyclic or hostile schema stays cheap.
