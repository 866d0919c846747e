//! `qmp wrap`: starts QEMU connected to a private QMP socket, and runs the shell on it.
//!
//! The socket lives in a fresh directory that only its owner can enter (mode 0700, made by
//! `tempfile` with that mode, never widened), and is itself mode 0600; QEMU is started with `-qmp unix:PATH` appended
//! to its arguments and connects to it. When the shell ends, QEMU is asked to `quit`,
//! killed if it has not exited within [`QUIT_GRACE`], and the directory is removed.
//! QEMU's standard input is closed (the terminal is the shell's); what it prints goes to
//! the terminal, as when it runs alone.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::shell::{self, Connect, Prepared, ShellOptions};
use crate::EXIT_FAILURE;

/// How long QEMU has to connect to the socket after it starts.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long QEMU has to exit after `quit` when the shell ends.
pub const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Runs `qmp wrap -- QEMU ARGS...`. The exit status is QEMU's when it exited by itself
/// with a failure, else the shell's.
pub fn run(opts: ShellOptions, command: &[String]) -> ExitCode {
    match wrap(opts, command) {
        Ok(code) => code,
        Err(e) => {
            crate::fail(&format!("qmp wrap: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn wrap(opts: ShellOptions, command: &[String]) -> Result<ExitCode, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no QEMU command given (qmp wrap -- qemu-system-x86_64 ARGS...)".into());
    };
    let dir = tempfile::Builder::new()
        .prefix("qmp-wrap-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| format!("cannot create a private directory: {e}"))?;
    let sock = dir.path().join("qmp.sock");
    let prepared = Prepared::new(&opts)?;
    let listener = prepared
        .builder(&opts)
        .listen(&sock)
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(program)
        .args(args)
        .arg("-qmp")
        .arg(format!("unix:{}", sock.display()))
        // The terminal belongs to the shell.
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;

    let accepted = smol::block_on(futures_lite::future::or(
        async { Some(listener.accept().await) },
        async {
            let deadline = Instant::now() + ACCEPT_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            None
        },
    ));
    // The connection stays up; the socket file goes.
    drop(listener);
    let (qmp, driver) = match accepted {
        Some(Ok(session)) => session,
        Some(Err(e)) => {
            stop(&mut child);
            return Err(e.to_string());
        }
        None => {
            let why = match child.try_wait() {
                Ok(Some(status)) => format!("{program} exited ({status}) before connecting"),
                _ => format!("{program} did not connect within {ACCEPT_TIMEOUT:?}"),
            };
            stop(&mut child);
            return Err(why);
        }
    };

    let result = shell::run_prepared(Connect::Session(qmp, Box::new(driver)), opts, prepared);
    if let Ok(qmp) = &result {
        if !qmp.is_finished() {
            // Ask QEMU to leave; EOF after quit is success.
            let quit = qmp.quit();
            let _ = smol::block_on(qmp_async::timeout(QUIT_GRACE, quit));
        }
    }
    let status = wait_exit(&mut child, QUIT_GRACE);
    drop(dir);
    let code = shell::exit(result);
    Ok(match status {
        Some(s) if !s.success() => {
            crate::note(&format!("{program} exited ({s})"));
            ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1))
        }
        _ => code,
    })
}

/// Waits up to `grace` for the child to exit, then kills it.
fn wait_exit(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                stop(child);
                return None;
            }
        }
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
