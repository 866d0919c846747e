//! A client engine and a server engine connected in memory, with a virtual clock.

#[cfg(unix)]
use std::collections::VecDeque;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::server::{Handler, Server, ServerConfig, ServerEvent};
use crate::{Client, ClientConfig, Event};

/// A [`Client`] and a [`Server`] connected by an in-memory pipe, with a virtual clock
/// ([`now`](Self::now)).
///
/// Drive it one of two ways:
///
/// * all at once: [`settle`](Self::settle) moves bytes both ways until nothing moves, and
///   collects the client's events in [`events`](Self::events); [`advance`](Self::advance)
///   moves the clock on, fires both engines' timers, and settles;
/// * step by step, as the fuzzer does: [`transmit`](Self::transmit) takes both engines'
///   output into the pipe; [`deliver_to_server`](Self::deliver_to_server) and
///   [`deliver_to_client`](Self::deliver_to_client) hand some of it on, through a function
///   that may corrupt it; [`tick`](Self::tick) moves the clock. The client's events are then
///   left to the caller.
///
/// File descriptors the client attaches to a command reach the server just before the
/// command's first byte. When the server ends the connection
/// ([`ServerEvent::Closed`]), the client reads what is still in the pipe, then EOF.
///
/// ```
/// use std::time::Instant;
/// use qmp_proto::server::FakeQemu;
/// use qmp_proto::testing::Pair;
/// use qmp_proto::{CallOptions, ClientConfig, RunState};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fake = FakeQemu::new();
/// let mut pair = Pair::new(Instant::now(), fake.server_config(), fake, ClientConfig::default());
/// assert_eq!(pair.client.state(), RunState::Running);
/// pair.client.execute(pair.now, "stop", &(), CallOptions::new())?;
/// pair.settle();
/// assert_eq!(pair.server.handler().status(), "paused");
/// # Ok(())
/// # }
/// ```
pub struct Pair<H> {
    /// The client engine.
    pub client: Client,
    /// The server engine.
    pub server: Server<H>,
    /// The virtual clock: the time given to both engines.
    pub now: Instant,
    /// The client's events, in order, as [`settle`](Self::settle) took them.
    pub events: Vec<Event>,
    /// Every byte the client wrote, for inspection.
    pub wire: Vec<u8>,
    /// Bytes on their way to the server.
    to_server: Vec<u8>,
    /// Bytes on their way to the client.
    to_client: Vec<u8>,
    /// How many bytes were taken from `to_server` so far: the stream offset of its first byte.
    taken_by_server: u64,
    /// File descriptors on their way to the server, at the stream offset of their command.
    #[cfg(unix)]
    fds: VecDeque<(u64, Vec<OwnedFd>)>,
    /// The server ended the connection: the client sees EOF once the pipe to it is empty.
    server_closed: bool,
}

impl<H: Handler> Pair<H> {
    /// A server with `handler` and a fresh client, connected at `now` and settled: the
    /// greeting and the negotiation are done (unless the handler or the client stop them).
    pub fn new(now: Instant, config: ServerConfig, handler: H, client: ClientConfig) -> Self {
        let mut pair = Pair::connecting(now, config, handler, client);
        pair.settle();
        pair
    }

    /// A server with `handler` and a fresh client, both connecting at `now`: the server has
    /// accepted and queued its greeting, the client has connected; nothing has moved yet.
    pub fn connecting(
        now: Instant,
        config: ServerConfig,
        handler: H,
        client: ClientConfig,
    ) -> Self {
        let mut server = Server::new(config, handler);
        server.accept(now);
        let mut client = Client::new(client);
        // A fresh client is idle, and connecting an idle client cannot fail.
        let _ = client.connect(now);
        Pair {
            client,
            server,
            now,
            events: Vec::new(),
            wire: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            taken_by_server: 0,
            #[cfg(unix)]
            fds: VecDeque::new(),
            server_closed: false,
        }
    }

    /// Moves bytes both ways until nothing moves, taking the client's events into
    /// [`events`](Self::events).
    pub fn settle(&mut self) {
        loop {
            let mut moved = self.transmit_client();
            self.deliver_to_server(usize::MAX, |_| {});
            moved |= self.transmit_server();
            self.deliver_to_client(usize::MAX, |_| {});
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock on by `d`, fires both engines' timers, and settles.
    pub fn advance(&mut self, d: Duration) {
        self.tick(d);
        self.settle();
    }

    /// Moves the clock on by `d` and fires both engines' timers; nothing is moved.
    pub fn tick(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
    }

    /// Takes both engines' output into the pipe, without delivering it; a
    /// [`ServerEvent::Closed`] schedules EOF for the client. Returns whether anything moved.
    pub fn transmit(&mut self) -> bool {
        let client = self.transmit_client();
        let server = self.transmit_server();
        client || server
    }

    /// The bytes in the pipe to the server.
    pub fn to_server(&self) -> &[u8] {
        &self.to_server
    }

    /// The bytes in the pipe to the client.
    pub fn to_client(&self) -> &[u8] {
        &self.to_client
    }

    /// Hands up to `n` bytes of the pipe to the server, after `corrupt` has had its way with
    /// them (flipped bits, dropped bytes: anything). Returns how many bytes left the pipe.
    pub fn deliver_to_server(&mut self, n: usize, corrupt: impl FnOnce(&mut Vec<u8>)) -> usize {
        let n = n.min(self.to_server.len());
        let mut chunk: Vec<u8> = self.to_server.drain(..n).collect();
        let start = self.taken_by_server;
        self.taken_by_server += n as u64;
        corrupt(&mut chunk);
        let mut from = 0;
        #[cfg(unix)]
        while self
            .fds
            .front()
            .is_some_and(|(at, _)| *at < self.taken_by_server)
        {
            let Some((at, fds)) = self.fds.pop_front() else {
                break;
            };
            // The descriptors go just before the first byte of their command.
            let to = usize::try_from(at.saturating_sub(start))
                .map_or(chunk.len(), |to| to.min(chunk.len()));
            if to > from {
                self.server.handle_input(self.now, &chunk[from..to]);
                from = to;
            }
            self.server.handle_fds(fds);
        }
        if from < chunk.len() {
            self.server.handle_input(self.now, &chunk[from..]);
        }
        n
    }

    /// Hands up to `n` bytes of the pipe to the client, after `corrupt` has had its way with
    /// them; then EOF if the server ended the connection and the pipe is empty. Returns how
    /// many bytes left the pipe.
    pub fn deliver_to_client(&mut self, n: usize, corrupt: impl FnOnce(&mut Vec<u8>)) -> usize {
        let n = n.min(self.to_client.len());
        let mut chunk: Vec<u8> = self.to_client.drain(..n).collect();
        corrupt(&mut chunk);
        if !chunk.is_empty() {
            self.client.handle_input(self.now, &chunk);
        }
        self.eof_to_client_when_due();
        n
    }

    /// Both ends see the connection break: the bytes in the pipe are lost, and the server and
    /// the client get EOF.
    pub fn disconnect(&mut self) {
        self.server.handle_eof(self.now);
        self.client.handle_eof(self.now);
        self.empty_pipe();
    }

    /// Connects the client again, if it is idle: the server forgets its connection and
    /// accepts the new one, and the bytes in the pipe are lost. Returns whether the client
    /// connected.
    pub fn reconnect(&mut self) -> bool {
        if self.client.connect(self.now).is_err() {
            return false;
        }
        self.server.handle_eof(self.now);
        self.server.accept(self.now);
        self.empty_pipe();
        true
    }

    /// The client's output into the pipe, with the file descriptors it attaches.
    fn transmit_client(&mut self) -> bool {
        let mut moved = false;
        while let Some(t) = self.client.poll_transmit() {
            #[cfg(unix)]
            if !t.fds.is_empty() {
                let at = self.taken_by_server + self.to_server.len() as u64;
                let fds = t.fds.iter().filter_map(|fd| fd.try_clone().ok());
                self.fds.push_back((at, fds.collect()));
            }
            self.to_server.extend_from_slice(t.data);
            self.wire.extend_from_slice(t.data);
            let n = t.data.len();
            self.client.advance_transmit(n);
            moved = true;
        }
        moved
    }

    /// The server's output into the pipe, and its end of the connection.
    fn transmit_server(&mut self) -> bool {
        let mut moved = false;
        while let Some(t) = self.server.poll_transmit() {
            self.to_client.extend_from_slice(t.data);
            let n = t.data.len();
            self.server.advance_transmit(n);
            moved = true;
        }
        while let Some(event) = self.server.poll_event() {
            if event == ServerEvent::Closed {
                self.server_closed = true;
                moved = true;
            }
        }
        self.eof_to_client_when_due();
        moved
    }

    fn eof_to_client_when_due(&mut self) {
        if self.server_closed && self.to_client.is_empty() {
            self.server_closed = false;
            self.client.handle_eof(self.now);
        }
    }

    fn empty_pipe(&mut self) {
        self.taken_by_server += self.to_server.len() as u64;
        self.to_server.clear();
        self.to_client.clear();
        #[cfg(unix)]
        self.fds.clear();
        self.server_closed = false;
    }
}
