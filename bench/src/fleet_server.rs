//! The server process of the fleet (`qmp-bench fleet-serve SOCK`): a fake QEMU per
//! connection, each a task on one small tokio runtime (two worker threads, not a thread per
//! connection), each driving its own [`Server`] engine.
//!
//! Once a client asks for them with [`START`], a session sends a [`EVENT`] event every
//! [`EVENT_PERIOD`], numbered from 0 in its data (`{"n": 0}`, `{"n": 1}`, ...). The sessions'
//! timers are spread over the period (by the order the connections were accepted in), so
//! they do not all fire at once. [`STOP`] stops them and answers how many the session sent
//! (`{"sent": N}`): since QEMU writes its messages in order, every event counted there
//! reached the socket before that reply, and the client can check that each one was either
//! received or reported lost. Every other command is the stock
//! [`FakeQemu`]'s (`query-status`, ...).

use std::path::Path;
use std::time::{Duration, Instant};

use qmp_proto::server::{Call, CommandInfo, Context, FakeQemu, Handler, Outcome, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{Interval, MissedTickBehavior};

use crate::engine_report::log;

/// The command that starts a session's events.
pub const START: &str = "x-fleet-start";
/// The command that stops them and answers `{"sent": N}`.
pub const STOP: &str = "x-fleet-stop";
/// The event each session sends.
pub const EVENT: &str = "TICK";
/// Time between two events of a session: 10 events a second.
pub const EVENT_PERIOD: Duration = Duration::from_millis(100);
/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`, 4096 by default
/// since Linux 5.4).
pub const BACKLOG: u32 = 65_535;

/// A number in [0, 1) for the `index`th session: the fractional parts of multiples of the
/// golden ratio, which spread evenly over the interval for any number of sessions.
pub fn spread(index: u64) -> f64 {
    (index as f64 * 0.618_033_988_749_895).fract()
}

/// Raises this process's soft limit on open files to its hard limit, and returns the soft
/// limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

/// The fake QEMU of one session: the stock one, plus [`START`] and [`STOP`].
#[derive(Debug)]
pub struct FleetQemu {
    fake: FakeQemu,
    ticking: bool,
    sent: u64,
}

impl FleetQemu {
    /// A running VM that sends no events until [`START`].
    pub fn new() -> Self {
        FleetQemu {
            fake: FakeQemu::new(),
            ticking: false,
            sent: 0,
        }
    }
}

impl Default for FleetQemu {
    fn default() -> Self {
        Self::new()
    }
}

impl Handler for FleetQemu {
    fn command(&self, name: &str) -> Option<CommandInfo> {
        match name {
            START | STOP => Some(CommandInfo { allow_oob: false }),
            _ => self.fake.command(name),
        }
    }

    fn execute(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome {
        match call.name.as_str() {
            START => {
                self.ticking = true;
                Outcome::empty()
            }
            STOP => {
                self.ticking = false;
                Outcome::Return(json!({ "sent": self.sent }))
            }
            _ => self.fake.execute(ctx, call),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.fake.on_timer(ctx);
    }

    fn on_connect(&mut self, ctx: &mut Context<'_>) {
        self.fake.on_connect(ctx);
    }

    fn command_names(&self) -> Vec<String> {
        let mut names = self.fake.command_names();
        names.extend([START.to_owned(), STOP.to_owned()]);
        names
    }
}

/// Serves fake QEMUs on `path` until killed: binds a temporary name, listens with a
/// [`BACKLOG`], then renames the socket to `path`, so that the path appears only once
/// connections are accepted.
pub fn serve(path: &Path) -> std::io::Result<()> {
    let fds = raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(path);
        let binding = path.with_extension("binding");
        let _ = std::fs::remove_file(&binding);
        let socket = tokio::net::UnixSocket::new_stream()?;
        socket.bind(&binding)?;
        let listener = socket.listen(BACKLOG)?;
        std::fs::rename(&binding, path)?;
        log(&format!(
            "fleet-serve: listening on {} (open files: {})",
            path.display(),
            fds.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
        ));
        let mut index = 0;
        let mut refused = 0u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_one(stream, index));
                    index += 1;
                }
                Err(e) => {
                    // Out of file descriptors, say: the client sees its connection wait.
                    refused += 1;
                    if refused.is_power_of_two() {
                        log(&format!(
                            "fleet-serve: accept failed ({refused} times): {e}"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// What woke a session's task.
enum Wake {
    Read(std::io::Result<usize>),
    Tick,
    Deadline,
    Nothing,
}

/// Serves one connection until the client leaves (or the fake closes it after `quit`).
async fn serve_one(stream: UnixStream, index: u64) {
    let fake = FleetQemu::new();
    let mut server = Server::new(fake.fake.server_config(), fake);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 4096];
    let offset = EVENT_PERIOD.mul_f64(spread(index));
    let mut ticks: Option<Interval> = None;
    server.accept(Instant::now());
    loop {
        while let Some(t) = server.poll_transmit() {
            let n = t.data.len();
            if wr.write_all(t.data).await.is_err() {
                return;
            }
            server.advance_transmit(n);
        }
        if server.poll_event().is_some() {
            return;
        }
        match (server.handler().ticking, ticks.is_some()) {
            (true, false) => {
                let first = tokio::time::Instant::now() + offset;
                let mut every = tokio::time::interval_at(first, EVENT_PERIOD);
                // A server that fell behind sends fewer events rather than a burst: the
                // client reports the rate it got.
                every.set_missed_tick_behavior(MissedTickBehavior::Skip);
                ticks = Some(every);
            }
            (false, true) => ticks = None,
            _ => {}
        }
        let deadline = server.poll_timeout().map(tokio::time::Instant::from_std);
        let reading = server.wants_input();
        let wake = tokio::select! {
            r = rd.read(&mut buf), if reading => Wake::Read(r),
            () = tick(&mut ticks), if ticks.is_some() => Wake::Tick,
            () = sleep_until(deadline), if deadline.is_some() => Wake::Deadline,
            else => Wake::Nothing,
        };
        let now = Instant::now();
        match wake {
            Wake::Read(Ok(0) | Err(_)) | Wake::Nothing => {
                server.handle_eof(now);
                return;
            }
            Wake::Read(Ok(n)) => server.handle_input(now, &buf[..n]),
            Wake::Tick => {
                let n = server.handler().sent;
                server.emit_event(now, EVENT, Some(json!({ "n": n })));
                server.handler_mut().sent += 1;
            }
            Wake::Deadline => server.handle_timeout(now),
        }
    }
}

async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
