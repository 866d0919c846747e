//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use qmp_proto::server::{Handler, Server, ServerConfig, ServerEvent};
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

/// A client and a server engine connected by an in-memory pipe, with a virtual clock.
pub struct Pair<H> {
    pub client: Client,
    pub server: Server<H>,
    pub now: Instant,
    pub events: Vec<Event>,
    /// Bytes the client wrote, for inspection.
    pub wire: Vec<u8>,
}

impl<H: Handler> Pair<H> {
    pub fn new(config: ServerConfig, handler: H, client: ClientConfig) -> Self {
        let now = t0();
        let mut p = Pair {
            client: Client::new(client),
            server: Server::new(config, handler),
            now,
            events: Vec::new(),
            wire: Vec::new(),
        };
        p.server.accept(now);
        p.client.connect(now).unwrap();
        p.settle();
        p
    }

    /// Moves bytes both ways until nothing moves.
    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                let fds: Vec<_> = t.fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
                let data = t.data.to_vec();
                let n = data.len();
                self.client.advance_transmit(n);
                if !fds.is_empty() {
                    self.server.handle_fds(fds);
                }
                self.wire.extend_from_slice(&data);
                self.server.handle_input(self.now, &data);
                moved = true;
            }
            if let Some(out) = self.server.poll_transmit() {
                let out = out.data.to_vec();
                self.server.advance_transmit(out.len());
                self.client.handle_input(self.now, &out);
                moved = true;
            }
            if self.server.poll_event() == Some(ServerEvent::Closed) {
                self.client.handle_eof(self.now);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock on, fires both timers, and settles.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.settle();
    }
}
