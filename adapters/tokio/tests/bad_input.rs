//! Every outcome of the bad-input table (README, "Bad input has a documented outcome"), as a
//! qmp-tokio user sees it, against a server that sends exactly those bytes; on both runtime
//! flavours. Skippable input goes on with a warning in the connection's tracing span;
//! unusable input ends the session, and every pending call fails with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{on_both_runtimes, within};
use qmp_testkit::raw::{reply, RawConn, RawPeer, GREETING};
use qmp_testkit::traces::{Capture, Level};
use qmp_tokio::{Builder, CallOptions, ClientConfig, DisconnectReason, Error, ProtocolError, Qmp};
use serde_json::{json, Value};

/// The process's tracing subscriber (every connection has a label of its own, so tests
/// running at once tell theirs apart).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::new();
        capture.set_global_default();
        capture
    })
}

/// A label no other test uses.
fn label(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{what}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The messages of the events at `level` in the span of the connection labelled `label`.
fn said(label: &str, level: Level) -> Vec<String> {
    let spans = capture().spans();
    capture()
        .events()
        .into_iter()
        .filter(|e| e.level == level)
        .filter(|e| {
            e.span
                .is_some_and(|s| spans[s].field("name") == Some(label))
        })
        .filter_map(|e| e.field("message").map(str::to_owned))
        .collect()
}

async fn connect(peer: &RawPeer, label: &str) -> Qmp {
    capture();
    within(
        Builder::new()
            .label(label)
            .connect_timeout(Duration::from_millis(500))
            .connect_unix(&peer.sock),
    )
    .await
    .unwrap()
}

async fn query(qmp: &Qmp) -> Result<Value, Error> {
    within(qmp.execute::<Value, _>("query-status", &())).await
}

/// The session ended for `protocol`'s reason: a pending call failed with it, and so does
/// the session.
async fn ended(qmp: &Qmp, call: Result<Value, Error>, protocol: impl Fn(&ProtocolError) -> bool) {
    let reason = match call {
        Err(Error::Disconnected(reason)) => reason,
        other => panic!("expected the session to end, got {other:?}"),
    };
    assert!(
        matches!(&reason, DisconnectReason::Protocol(p) if protocol(p)),
        "{reason:?}"
    );
    assert_eq!(within(qmp.closed()).await, reason);
}

/// A reply for an id not in flight, and a duplicate: dropped with a warning; the call gets
/// its own reply.
async fn unknown_and_duplicate_replies() {
    let peer = RawPeer::serve(|conn| {
        conn.greet_and_negotiate();
        let c = conn.recv().unwrap();
        conn.send("{\"return\": {}, \"id\": 999}\r\n");
        conn.send(&reply(&c, "{\"n\": 1}"));
        conn.send(&reply(&c, "{\"n\": 1}"));
        let c = conn.recv().unwrap();
        conn.send(&reply(&c, "{\"n\": 2}"));
        conn.wait_eof();
    });
    let label = label("unknown");
    let qmp = connect(&peer, &label).await;
    assert_eq!(query(&qmp).await.unwrap(), json!({"n": 1}));
    assert_eq!(query(&qmp).await.unwrap(), json!({"n": 2}));
    let warnings = said(&label, Level::WARN);
    assert!(
        warnings[0].starts_with("dropped a reply for an unknown id 999:"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].starts_with("dropped a reply for an unknown id"),
        "{warnings:#?}"
    );
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// The reply of a timed-out command: dropped with a warning; the session goes on.
async fn late_reply() {
    let peer = RawPeer::serve(|conn| {
        conn.greet_and_negotiate();
        let c = conn.recv().unwrap();
        conn.pause(Duration::from_millis(300));
        conn.send(&reply(&c, "{}"));
        let c = conn.recv().unwrap();
        conn.send(&reply(&c, "{\"n\": 2}"));
        conn.wait_eof();
    });
    let label = label("late");
    let qmp = connect(&peer, &label).await;
    let short = CallOptions::new().timeout(Duration::from_millis(50));
    let timed_out = qmp
        .execute_with::<Value, _>("query-status", &(), short)
        .await;
    assert!(
        matches!(timed_out, Err(Error::CommandTimeout(_))),
        "{timed_out:?}"
    );
    assert_eq!(query(&qmp).await.unwrap(), json!({"n": 2}));
    let warnings = said(&label, Level::WARN);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("late reply of command")),
        "{warnings:#?}"
    );
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// A reply with both `return` and `error`, or neither: that command fails; the session
/// goes on.
async fn malformed_replies() {
    let peer = RawPeer::serve(|conn| {
        conn.greet_and_negotiate();
        let c = conn.recv().unwrap();
        conn.send(&format!(
            "{{\"return\": {{}}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"x\"}}, \"id\": {}}}\r\n",
            c["id"]
        ));
        let c = conn.recv().unwrap();
        conn.send(&format!("{{\"id\": {}}}\r\n", c["id"]));
        let c = conn.recv().unwrap();
        conn.send(&reply(&c, "{\"n\": 3}"));
        conn.wait_eof();
    });
    let qmp = connect(&peer, &label("malformed")).await;
    for _ in 0..2 {
        let r = query(&qmp).await;
        assert!(matches!(r, Err(Error::MalformedReply(_))), "{r:?}");
    }
    assert_eq!(query(&qmp).await.unwrap(), json!({"n": 3}));
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

const IDLESS_ERROR: &str =
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n";

/// An error without an id resolves the pending id-less raw command.
async fn idless_error_answers_the_idless_command() {
    let peer = RawPeer::serve(|conn| {
        conn.greet_and_negotiate();
        let c = conn.recv().unwrap();
        assert!(c.get("id").is_none(), "{c}");
        conn.send(IDLESS_ERROR);
        let c = conn.recv().unwrap();
        conn.send(&reply(&c, "{}"));
        conn.wait_eof();
    });
    let qmp = connect(&peer, &label("idless")).await;
    let r = within(qmp.execute_raw(
        json!({"execute": "query-status"}),
        CallOptions::new().without_id(),
    ))
    .await;
    match r {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "GenericError"),
        other => panic!("{other:?}"),
    }
    query(&qmp).await.unwrap();
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// An error without an id, with no id-less command pending, ends the session.
async fn idless_error_otherwise_ends_the_session() {
    let peer = RawPeer::serve(|conn| {
        conn.greet_and_negotiate();
        conn.recv().unwrap();
        conn.send(IDLESS_ERROR);
        conn.wait_eof();
    });
    let qmp = connect(&peer, &label("idless-end")).await;
    let r = query(&qmp).await;
    ended(
        &qmp,
        r,
        |p| matches!(p, ProtocolError::IdlessError(e) if e.class == "GenericError"),
    )
    .await;
    peer.finish();
}

/// Serves a greeting, then answers the first command with `bad` (bytes), then waits for
/// the client to go.
fn serving(bad: &'static [u8]) -> RawPeer {
    RawPeer::serve(move |conn| {
        conn.greet_and_negotiate();
        conn.recv().unwrap();
        conn.send_bytes(bad);
        conn.wait_eof();
    })
}

/// `inf`, `nan`, invalid JSON, invalid UTF-8, an array, garbage between messages: the
/// session ends with the matching protocol error.
async fn unusable_input_ends_the_session() {
    type Check = fn(&ProtocolError) -> bool;
    let cases: [(&[u8], Check); 7] = [
        (b"{\"return\": inf}\r\n", |p| {
            matches!(p, ProtocolError::InvalidJson { .. })
        }),
        (b"{\"return\": nan}\r\n", |p| {
            matches!(p, ProtocolError::InvalidJson { .. })
        }),
        (b"{\"return\": {]}\r\n", |p| {
            matches!(p, ProtocolError::InvalidJson { .. })
        }),
        (b"{\"return\": \"\xff\xfe\"}\r\n", |p| {
            matches!(p, ProtocolError::InvalidUtf8(_))
        }),
        (b"[1, 2]\r\n", |p| {
            matches!(p, ProtocolError::NotAnObject(_))
        }),
        (b"xyz\r\n", |p| {
            matches!(p, ProtocolError::UnexpectedData(_))
        }),
        (
            b"{\"event\": \"X\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}} 17\r\n",
            |p| matches!(p, ProtocolError::UnexpectedData(_)),
        ),
    ];
    for (bad, check) in cases {
        let peer = serving(bad);
        let qmp = connect(&peer, &label("unusable")).await;
        let r = query(&qmp).await;
        ended(&qmp, r, check).await;
        peer.finish();
    }
}

/// A message past the size limit, or nested past the depth limit, ends the session as soon
/// as the limit is crossed: the server never finishes the message and waits for the client
/// to go.
async fn limits_end_the_session_when_crossed() {
    let big: &'static [u8] = Box::leak(
        format!("{{\"return\": \"{}", "a".repeat(8000))
            .into_bytes()
            .into_boxed_slice(),
    );
    let deep: &'static [u8] = Box::leak(
        format!("{{\"return\": {}", "[".repeat(1100))
            .into_bytes()
            .into_boxed_slice(),
    );
    for (bad, size) in [(big, true), (deep, false)] {
        let peer = serving(bad);
        let qmp = within(
            Builder::new()
                .label(label("limit"))
                .config(ClientConfig::default().max_message_size(4096))
                .connect_unix(&peer.sock),
        )
        .await
        .unwrap();
        let r = query(&qmp).await;
        ended(&qmp, r, |p| {
            if size {
                matches!(p, ProtocolError::MessageTooLarge { limit: 4096, .. })
            } else {
                matches!(p, ProtocolError::TooDeep { limit: 1024, .. })
            }
        })
        .await;
        peer.finish();
    }
}

fn tick(n: usize) -> String {
    format!(
        "{{\"event\": \"TICK\", \"data\": {{\"n\": {n}}}, \"timestamp\": {{\"seconds\": 1, \"microseconds\": {n}}}}}\r\n"
    )
}

/// Events before the greeting are held and delivered in order once it came; past 16 the
/// session ends.
async fn events_before_the_greeting() {
    let peer = RawPeer::serve(|conn| {
        for n in 0..3 {
            conn.send(&tick(n));
        }
        conn.greet_and_negotiate();
        let c = conn.recv().unwrap();
        conn.send(&reply(&c, "{}"));
        conn.wait_eof();
    });
    let label = label("early");
    let qmp = connect(&peer, &label).await;
    query(&qmp).await.unwrap();
    let spans = capture().spans();
    let ticks: Vec<String> = capture()
        .events()
        .into_iter()
        .filter(|e| {
            e.span
                .is_some_and(|s| spans[s].field("name") == Some(&*label))
        })
        .filter(|e| e.field("event") == Some("TICK"))
        .filter_map(|e| e.field("data").map(str::to_owned))
        .collect();
    assert_eq!(ticks, ["{\"n\": 0}", "{\"n\": 1}", "{\"n\": 2}"]);
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();

    let peer = RawPeer::serve(|conn| {
        for n in 0..17 {
            conn.send(&tick(n));
        }
        conn.send(GREETING);
        conn.wait_eof();
    });
    let refused = within(Builder::new().connect_unix(&peer.sock)).await;
    assert!(
        matches!(
            &refused,
            Err(Error::Disconnected(DisconnectReason::Protocol(
                ProtocolError::EventsBeforeGreeting { limit: 16, .. }
            )))
        ),
        "{refused:?}"
    );
    peer.finish();
}

/// An invalid greeting, no greeting, no answer to `qmp_capabilities`: connecting fails
/// with the cause.
async fn bad_greetings() {
    let builder = Builder::new().connect_timeout(Duration::from_millis(200));
    type Script = fn(&mut RawConn);
    type Check = fn(&DisconnectReason) -> bool;
    let cases: [(Script, Check); 3] = [
        (
            |conn| {
                conn.send("{\"QMP\": {\"version\": 1}}\r\n");
                conn.wait_eof();
            },
            |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(ProtocolError::InvalidGreeting { .. })
                )
            },
        ),
        (
            |conn| conn.wait_eof(),
            |r| matches!(r, DisconnectReason::GreetingTimeout(d) if *d == Duration::from_millis(200)),
        ),
        (
            |conn| {
                conn.send(GREETING);
                conn.recv().unwrap();
                conn.wait_eof();
            },
            |r| matches!(r, DisconnectReason::NegotiationTimeout(d) if *d == Duration::from_millis(200)),
        ),
    ];
    for (script, check) in cases {
        let peer = RawPeer::serve(script);
        match within(builder.connect_unix(&peer.sock)).await {
            Err(Error::Disconnected(reason)) => assert!(check(&reason), "{reason:?}"),
            other => panic!("{other:?}"),
        }
        peer.finish();
    }
}

on_both_runtimes!(
    unknown_and_duplicate_replies,
    late_reply,
    malformed_replies,
    idless_error_answers_the_idless_command,
    idless_error_otherwise_ends_the_session,
    unusable_input_ends_the_session,
    limits_end_the_session_when_crossed,
    events_before_the_greeting,
    bad_greetings,
);
