//! Reconnection: where to dial again after a session ends, and when.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

pub(crate) use qmp_kit::Target;
use qmp_kit::{Reconnect, Settings};

use crate::transport::Stream;
use crate::Error;

/// How long a TCP connect may take when no connect timeout is set.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `target` (each TCP address in turn, each within `timeout`).
pub(crate) fn dial(target: &Target, timeout: Option<Duration>) -> Result<Stream, Error> {
    let timeout = timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    target
        .open(
            |path| UnixStream::connect(path).map(Stream::Unix),
            |addr| TcpStream::connect_timeout(&addr, timeout).map(Stream::Tcp),
        )
        .map_err(|e| Error::io(format!("cannot connect to {}", target.describe()), e))
}

/// A connection's reconnection: its target, options and policy, and the next attempt.
#[derive(Debug)]
pub(crate) struct Redial {
    pub(crate) target: Target,
    pub(crate) settings: Settings,
    pub(crate) policy: Reconnect,
    /// The attempt due next (from 1), once the session ended.
    pub(crate) attempt: u32,
    /// When it is due.
    pub(crate) next_at: Option<Instant>,
}

impl Redial {
    pub(crate) fn new(target: Target, settings: Settings, policy: Reconnect) -> Self {
        Redial {
            target,
            settings,
            policy,
            attempt: 0,
            next_at: None,
        }
    }

    /// The session ended: the first attempt is due after the policy's first delay.
    pub(crate) fn session_ended(&mut self, now: Instant) {
        self.attempt = 1;
        self.next_at = self.policy.next_delay(1).and_then(|d| now.checked_add(d));
    }

    /// Attempt `attempt` failed: schedules the next one, or returns `false` when the policy
    /// gives up.
    pub(crate) fn failed(&mut self, now: Instant) -> bool {
        self.attempt += 1;
        match self.policy.next_delay(self.attempt) {
            Some(d) => {
                self.next_at = now.checked_add(d);
                true
            }
            None => false,
        }
    }
}
