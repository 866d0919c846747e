//! Session lifecycle invariants: the greeting is exposed, transitions are emitted once and in
//! order, Disconnected is last, and every command is resolved exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use qmp_proto::{
    CallError, CallOptions, Client, ClientConfig, CommandError, DisconnectReason, Event, RunState,
};

#[test]
fn greeting_is_exposed_and_oob_enabled() {
    let now = t0();
    let c = running(ClientConfig::default(), now);
    let g = c.greeting().unwrap();
    assert_eq!(
        (g.version.major, g.version.minor, g.version.micro),
        (10, 0, 2)
    );
    assert!(g.has_capability("oob"));
    assert!(c.oob_enabled());
    assert_eq!(c.state(), RunState::Running);
}

#[test]
fn transitions_follow_the_state_machine() {
    use RunState::*;
    for (from, to) in [
        (Idle, Connecting),
        (Connecting, Running),
        (Connecting, Disconnecting),
        (Running, Disconnecting),
        (Disconnecting, Idle),
    ] {
        assert!(from.can_move_to(to));
    }
    assert!(!Idle.can_move_to(Running));
    assert!(!Running.can_move_to(Idle));
    assert!(!Disconnecting.can_move_to(Running));

    let now = t0();
    let mut c = Client::new(ClientConfig::default());
    let mut seen = Vec::new();
    let mut record = |c: &mut Client| {
        for e in events(c) {
            if let Event::StateChanged { from, to } = e {
                assert!(from.can_move_to(to));
                seen.push((from, to));
            }
        }
    };
    c.connect(now).unwrap();
    record(&mut c);
    c.handle_input(now, GREETING);
    flush(&mut c);
    c.handle_input(now, b"{\"return\": {}, \"id\": 1}");
    record(&mut c);
    c.handle_eof(now);
    record(&mut c);
    assert_eq!(
        seen,
        [
            (Idle, Connecting),
            (Connecting, Running),
            (Running, Disconnecting),
            (Disconnecting, Idle)
        ]
    );
}

/// Drives many sessions with commands, timeouts and endings, and checks the resolution
/// invariants on every one.
#[test]
fn every_command_resolves_once_and_disconnected_is_last() {
    let endings: [fn(&mut Client, std::time::Instant); 5] = [
        |c, now| c.handle_eof(now),
        |c, _| c.close(),
        |c, now| {
            c.handle_input(
                now,
                b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}",
            )
        },
        |c, now| c.handle_input(now, b"garbage\n"),
        |c, now| c.handle_io_error(now, &std::io::Error::other("boom")),
    ];
    for (i, end) in endings.iter().enumerate() {
        let mut now = t0();
        let mut c = running(ClientConfig::default().max_in_flight(2), now);
        let mut issued = Vec::new();
        for k in 0..6 {
            let opts = if k % 2 == 0 {
                CallOptions::new().timeout(Duration::from_secs(1))
            } else {
                CallOptions::new()
            };
            issued.push(c.execute(now, "x", &(), opts).unwrap());
        }
        issued.push(
            c.execute(now, "query-yank", &(), CallOptions::new().oob(true))
                .unwrap(),
        );
        flush(&mut c);
        c.handle_input(now, b"{\"return\": {}, \"id\": 3}");
        now += Duration::from_secs(2);
        c.handle_timeout(now);
        end(&mut c, now);
        let evs = events(&mut c);
        let mut count: HashMap<_, usize> = HashMap::new();
        for e in &evs {
            if let Event::Reply { id, .. } = e {
                *count.entry(*id).or_default() += 1;
            }
        }
        for id in &issued {
            assert_eq!(
                count.get(id),
                Some(&1),
                "ending {i}: command {id} resolved {:?} times",
                count.get(id)
            );
        }
        assert!(
            matches!(evs.last(), Some(Event::Disconnected(_))),
            "ending {i}"
        );
        assert_eq!(
            evs.iter()
                .filter(|e| matches!(e, Event::Disconnected(_)))
                .count(),
            1
        );
        assert_eq!(c.state(), RunState::Idle);
        assert_eq!(c.in_flight() + c.queued(), 0);
        assert!(c.poll_timeout().is_none());
        // Nothing more comes out of an idle client.
        c.handle_input(now, b"{\"return\": {}, \"id\": 2}");
        c.handle_timeout(now + Duration::from_secs(100));
        c.handle_eof(now);
        c.close();
        assert!(c.poll_event().is_none());
    }
}

#[test]
fn reset_after_quit_is_a_clean_eof() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let quit = c.execute(now, "quit", &(), CallOptions::new()).unwrap();
    flush(&mut c);
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    c.handle_io_error(now, &reset);
    let evs = events(&mut c);
    assert!(evs.iter().any(
        |e| matches!(e, Event::Reply { id, result: Ok(r) } if *id == quit && r.get() == "{}")
    ));
    assert!(matches!(
        evs.last(),
        Some(Event::Disconnected(DisconnectReason::Eof {
            after_quit: true
        }))
    ));
}

#[test]
fn errors_are_sticky_clones_with_the_cause() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let a = c.execute(now, "a", &(), CallOptions::new()).unwrap();
    c.handle_input(now, b"{\"return\": nan, \"id\": 2}");
    let evs = events(&mut c);
    let cause = match evs.last() {
        Some(Event::Disconnected(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert!(evs.iter().any(|e| matches!(e, Event::Reply { id, result: Err(CommandError::Interrupted(r)) } if *id == a && *r == cause)));
    assert!(cause.to_string().contains("nan"));
}

#[test]
fn local_misuse_names_the_state() {
    let now = t0();
    let mut c = Client::new(ClientConfig::default());
    let e = c.execute(now, "x", &(), CallOptions::new()).unwrap_err();
    assert_eq!(
        e,
        CallError::InvalidState {
            operation: "execute",
            state: RunState::Idle
        }
    );
    assert_eq!(e.to_string(), "cannot execute while the connection is idle");
    assert!(c.poll_event().is_none());
}

#[test]
fn huge_timeouts_mean_no_deadline_not_a_panic() {
    let now = t0();
    let config = ClientConfig::default()
        .greeting_timeout(Some(Duration::MAX))
        .negotiation_timeout(Some(Duration::MAX))
        .command_timeout(Some(Duration::MAX));
    let mut c = Client::new(config);
    c.connect(now).unwrap();
    c.execute(now, "x", &(), CallOptions::new()).unwrap();
    assert!(c.poll_timeout().is_none());
    c.handle_input(now, GREETING);
    assert!(c.poll_timeout().is_none());
}

#[test]
fn broken_pipe_after_quit_is_a_clean_eof_too() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    c.execute(now, "quit", &(), CallOptions::new()).unwrap();
    flush(&mut c);
    c.handle_io_error(now, &std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    let evs = events(&mut c);
    assert!(matches!(
        evs.last(),
        Some(Event::Disconnected(DisconnectReason::Eof {
            after_quit: true
        }))
    ));
    // Without quit it is a transport error.
    let mut c = running(ClientConfig::default(), now);
    c.handle_io_error(now, &std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    let evs = events(&mut c);
    assert!(matches!(
        evs.last(),
        Some(Event::Disconnected(DisconnectReason::Transport { .. }))
    ));
}

#[test]
fn disconnect_reason_is_sticky_until_the_next_connect() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    assert_eq!(c.disconnect_reason(), None);
    c.handle_eof(now);
    let _ = events(&mut c);
    let eof = DisconnectReason::Eof { after_quit: false };
    assert_eq!(c.disconnect_reason(), Some(&eof));
    // Calls that fail do not clear it.
    assert!(c.execute(now, "x", &(), CallOptions::new()).is_err());
    assert_eq!(c.disconnect_reason(), Some(&eof));
    c.connect(now).unwrap();
    assert_eq!(c.disconnect_reason(), None);
    c.close();
    assert_eq!(c.disconnect_reason(), Some(&DisconnectReason::Closed));
}

#[test]
fn out_of_band_and_without_id_are_options() {
    let now = t0();
    // The greeting offers OOB; the configuration does not take it.
    let mut c = running(ClientConfig::default().oob(false), now);
    assert_eq!(
        c.execute(now, "query-yank", &(), CallOptions::new().oob(true)),
        Err(CallError::OobNotNegotiated)
    );
    let raw = serde_json::json!({"execute": "query-status"});
    assert_eq!(
        c.execute_raw(now, raw.clone(), CallOptions::new().oob(true)),
        Err(CallError::OobNotNegotiated)
    );
    c.execute(now, "stop", &(), CallOptions::new().without_id())
        .unwrap();
    assert_eq!(
        c.execute_raw(now, raw, CallOptions::new().without_id()),
        Err(CallError::IdlessPending)
    );
    let t = c.poll_transmit().unwrap();
    assert!(t.data.ends_with(br#"{"execute":"stop"}"#));
}
