//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

#[cfg(unix)]
pub mod qemu;

use std::time::Instant;

use qmp_proto::{Client, ClientConfig, Event};

pub const GREETING: &[u8] = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

/// A fixed starting instant for a virtual clock.
pub fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// Writes everything pending and returns it.
pub fn flush(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = client.poll_transmit() {
        out.extend_from_slice(t.data);
        let n = t.data.len();
        client.advance_transmit(n);
    }
    out
}

pub fn events(client: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// A client that completed negotiation (id 1), with its output drained.
pub fn running(config: ClientConfig, now: Instant) -> Client {
    let mut c = Client::new(config);
    c.connect(now).unwrap();
    c.handle_input(now, GREETING);
    flush(&mut c);
    c.handle_input(now, b"{\"return\": {}, \"id\": 1}\r\n");
    events(&mut c);
    c
}

/// A server for `fake`, accepted and negotiated at `now`, its output so far taken.
#[cfg(feature = "server")]
pub fn negotiated(
    fake: qmp_proto::server::FakeQemu,
    now: Instant,
) -> qmp_proto::server::Server<qmp_proto::server::FakeQemu> {
    let mut server = qmp_proto::server::Server::new(fake.server_config(), fake);
    server.accept(now);
    server.take_output();
    server.handle_input(now, br#"{"execute": "qmp_capabilities"}"#);
    server.take_output();
    server
}
