//! Listeners across sessions: a session's listener ends with its session; one across
//! sessions goes on, with a marker before each new session's events, and ends when the
//! driver finishes.

#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use qmp_kit::fanout::{SessionItem, Shared};
use qmp_kit::EventFilter;
use qmp_proto::{DisconnectReason, Greeting, QmpEvent, RunState};

fn event(name: &str) -> QmpEvent {
    QmpEvent {
        name: name.to_owned(),
        data: None,
        timestamp: None,
    }
}

struct Noop;

impl std::task::Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// What a stream has ready now, without waiting.
fn ready<S: Stream + Unpin>(stream: &mut S) -> Vec<Option<S::Item>> {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut items = Vec::new();
    while let Poll::Ready(item) = Pin::new(&mut *stream).poll_next(&mut cx) {
        let end = item.is_none();
        items.push(item);
        if end {
            break;
        }
    }
    items
}

fn session(shared: &Shared) {
    shared.transition(RunState::Idle, RunState::Connecting, None);
    shared.transition(
        RunState::Connecting,
        RunState::Running,
        Some((Greeting::default(), false)),
    );
}

fn end(shared: &Shared) {
    shared.transition(RunState::Running, RunState::Disconnecting, None);
    shared.transition(RunState::Disconnecting, RunState::Idle, None);
    shared.session_ended(&DisconnectReason::Eof { after_quit: false });
}

#[test]
fn a_listener_across_sessions_goes_on_with_a_marker() {
    let shared = Arc::new(Shared::new());
    session(&shared);
    let mut one = shared.subscribe(EventFilter::all());
    let mut across = shared.subscribe_across_sessions(EventFilter::name("STOP"));
    shared.dispatch(event("STOP"));
    shared.dispatch(event("RESUME"));
    end(&shared);
    // The session's listener ends with it.
    let items = ready(&mut one);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(matches!(&items[0], Some(Ok(e)) if e.name == "STOP"));
    assert!(items[2].is_none());

    session(&shared);
    assert_eq!(shared.session(), 2);
    shared.dispatch(event("STOP"));
    let items = ready(&mut across);
    let names: Vec<String> = items
        .iter()
        .map(|i| match i {
            Some(SessionItem::Event(e)) => e.name.clone(),
            Some(SessionItem::NewSession { session }) => format!("session {session}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["STOP", "session 2", "STOP"]);
    assert!(!across.is_closed());

    // The driver finishes: it ends too.
    end(&shared);
    shared.finish();
    assert!(across.is_closed());
    assert_eq!(ready(&mut across), vec![None]);
}
