//! The fake QEMU served on a unix socket by a thread of the test.

use std::fmt;
use std::marker::PhantomData;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use qmp_proto::server::{
    Call, CommandInfo, Context, FakeQemu, Handler, Outcome, Script, Server, ServerConfig,
};
use serde_json::Value;

use crate::tempdir;

/// A [`Handler`] of the server engine (the [`FakeQemu`], a
/// [`Script`](qmp_proto::server::Script), ...) serving one client on a unix socket, from a
/// thread, with the blocking server loop ([`qmp_blocking::serve_unix`]).
///
/// The socket is `sock`, in a private directory that lives as long as this value. The
/// flavour `F` gives it `connect` methods: use the aliases
/// [`blocking::FakePeer`](crate::blocking::FakePeer) and `asynchronous::FakePeer`.
pub struct Fake<H, F> {
    _dir: tempfile::TempDir,
    /// The socket the client connects to.
    pub sock: PathBuf,
    thread: JoinHandle<Server<H>>,
    flavour: PhantomData<F>,
}

impl<H, F> fmt::Debug for Fake<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fake")
            .field("sock", &self.sock)
            .finish_non_exhaustive()
    }
}

impl<F> Fake<FakeQemu, F> {
    /// Serves `fake`, greeting with its version.
    pub fn serve(fake: FakeQemu) -> Self {
        let config = fake.server_config();
        Self::serve_handler(config, fake)
    }
}

impl<F> Fake<Script, F> {
    /// Serves the transcript `text` (see [`Script`]), with the default server
    /// configuration. Panics if the transcript does not parse.
    pub fn script(text: &str) -> Self {
        let script = Script::parse(text).unwrap_or_else(|e| panic!("{e}"));
        Self::serve_handler(ServerConfig::default(), script)
    }

    /// Waits for the end of the session, then checks that the client sent exactly the
    /// script's requests: none unexpected, none missing.
    pub fn assert_played(self) {
        let server = self.finish();
        let script = server.handler();
        assert!(
            script.mismatches().is_empty(),
            "unexpected requests: {:#?}",
            script.mismatches()
        );
        assert_eq!(script.remaining(), 0, "requests the client never sent");
    }
}

impl<H: Handler + Send + 'static, F> Fake<H, F> {
    /// Serves `handler` with the server configured by `config` (greeting, capabilities,
    /// event timestamps).
    pub fn serve_handler(config: ServerConfig, handler: H) -> Self {
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).expect("bind the fake QEMU's socket");
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut server = Server::new(config, handler);
            qmp_blocking::serve_unix(stream, &mut server).expect("serve");
            server
        });
        Fake {
            _dir: dir,
            sock,
            thread,
            flavour: PhantomData,
        }
    }

    /// Waits for the end of the session (the client went away, or the server closed the
    /// connection), and returns the server, to look at its handler.
    pub fn finish(self) -> Server<H> {
        self.thread.join().expect("the fake QEMU's thread panicked")
    }
}

/// The [`FakeQemu`] plus the command `flood {"count": N}`, which emits `N` events `TICK`,
/// numbered (`{"n": 0}`, `{"n": 1}`, ...), before its reply.
pub fn flooding_fake() -> FakeQemu {
    let mut fake = FakeQemu::new();
    fake.add_command("flood", false, |ctx, args| {
        let count = args.get("count").and_then(Value::as_u64).unwrap_or(0);
        for n in 0..count {
            ctx.emit_event_json("TICK", &format!(r#"{{"n": {n}}}"#));
        }
        Outcome::empty()
    });
    fake
}

/// A [`Handler`] that runs every command with another one and keeps the names of those it
/// ran, in order: what a client asked the peer for.
#[derive(Debug)]
pub struct Recorded<H> {
    handler: H,
    calls: Vec<String>,
}

impl<H> Recorded<H> {
    /// Records the commands that `handler` runs.
    pub fn new(handler: H) -> Self {
        Recorded {
            handler,
            calls: Vec::new(),
        }
    }

    /// The names of the commands run so far, in order.
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    /// The handler that runs the commands.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<H: Handler> Handler for Recorded<H> {
    fn command(&self, name: &str) -> Option<CommandInfo> {
        self.handler.command(name)
    }

    fn execute(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome {
        self.calls.push(call.name.clone());
        self.handler.execute(ctx, call)
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.handler.on_timer(ctx);
    }

    fn on_connect(&mut self, ctx: &mut Context<'_>) {
        self.handler.on_connect(ctx);
    }

    fn command_names(&self) -> Vec<String> {
        self.handler.command_names()
    }
}
