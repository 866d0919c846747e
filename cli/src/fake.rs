//! `qmp fake`: the fake QEMU of `qmp_proto::server`, served on a socket, one client at a
//! time like QEMU's monitor (each client gets a fresh session with the same VM state).

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qmp_proto::server::{FakeQemu, Server, ServerConfig};

use crate::record::{Conn, Listening};
use crate::target::Target;

/// How long the fake's block jobs run, so their events come after the reply, as real
/// QEMU's do.
pub const JOB_DURATION: Duration = Duration::from_millis(500);

/// The fake QEMU the tool serves: a running VM (paused in prelaunch with `prelaunch`), with
/// jobs that take [`JOB_DURATION`].
pub fn fake_qemu(prelaunch: bool) -> FakeQemu {
    let fake = FakeQemu::new().job_duration(JOB_DURATION);
    if prelaunch {
        fake.prelaunch()
    } else {
        fake
    }
}

/// The server configuration for `fake`: event timestamps from the wall clock.
pub fn server_config(fake: &FakeQemu, pretty: bool) -> ServerConfig {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    fake.server_config().pretty(pretty).epoch_micros(micros)
}

/// Serves a fake QEMU on one end of a socket pair in a thread, and returns the other end.
pub fn spawn_in_process(prelaunch: bool) -> io::Result<UnixStream> {
    let (client, server_end) = UnixStream::pair()?;
    std::thread::Builder::new()
        .name("fake-qemu".into())
        .spawn(move || {
            let fake = fake_qemu(prelaunch);
            let mut server = Server::new(server_config(&fake, false), fake);
            let _ = qmp_blocking::serve_unix(server_end, &mut server);
        })?;
    Ok(client)
}

/// Serves clients on `listen`, one at a time, until a client runs `quit` (the fake then
/// exits, as QEMU does) or the process gets SIGTERM, SIGHUP or SIGINT. The VM state (run
/// status, block nodes, jobs, file descriptors) carries over from one client to the next, as
/// in QEMU. The unix socket is created owner-only (mode 0600) and removed at the end, signals
/// included. A stale socket at the path (nobody listens on it) is replaced; a socket another
/// process listens on, or any other file, is an error, never replaced.
pub fn serve(listen: &Target, prelaunch: bool, pretty: bool) -> io::Result<()> {
    let mut fake = fake_qemu(prelaunch);
    if let Target::Unix(path) = listen {
        // `query-chardev` shows the monitor's socket as QEMU would.
        fake = fake.monitor_path(path.display().to_string());
    }
    let mut server = Server::new(server_config(&fake, pretty), fake);
    let listening = Listening::bind(listen, |signal| {
        // The socket file goes (if it is still ours) and the fake leaves, as QEMU does.
        crate::note(&format!("terminating on signal {signal}"));
        0
    })?;
    crate::note(&format!(
        "fake QEMU listening on {} (Ctrl-C stops)",
        listening.shown
    ));
    let served = (|| -> io::Result<()> {
        loop {
            let served = match listening.accept()? {
                Conn::Unix(s) => qmp_blocking::serve_unix(s, &mut server),
                Conn::Tcp(s) => qmp_blocking::serve_tcp(s, &mut server),
            };
            if let Err(e) = served {
                crate::note(&format!("client connection failed: {e}"));
            }
            if server.handler().status() == "shutdown" {
                return Ok(());
            }
        }
    })();
    listening.close();
    served
}
