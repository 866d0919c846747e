//! Where a connection was opened to, so that reconnection opens it again.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What a connection was opened to: a unix socket path, or the addresses a TCP name resolved
/// to when the connection was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// TCP addresses, tried in turn.
    Tcp(Vec<SocketAddr>),
}

impl Target {
    /// The path, or the addresses separated by commas (for messages).
    pub fn describe(&self) -> String {
        match self {
            Target::Unix(path) => path.display().to_string(),
            Target::Tcp(addrs) => addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Opens it: `unix` for a path, `tcp` for each address in turn until one connects
    /// (the last error if none does).
    pub fn open<T>(
        &self,
        unix: impl FnOnce(&Path) -> io::Result<T>,
        mut tcp: impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> io::Result<T> {
        match self {
            Target::Unix(path) => unix(path),
            Target::Tcp(addrs) => {
                let mut last = None;
                for addr in addrs {
                    match tcp(*addr) {
                        Ok(t) => return Ok(t),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(no_address))
            }
        }
    }

    /// [`open`](Self::open) for an async runtime's connects.
    pub async fn open_async<T, U, V>(
        &self,
        unix: impl FnOnce(PathBuf) -> U,
        mut tcp: impl FnMut(SocketAddr) -> V,
    ) -> io::Result<T>
    where
        U: Future<Output = io::Result<T>>,
        V: Future<Output = io::Result<T>>,
    {
        match self {
            Target::Unix(path) => unix(path.clone()).await,
            Target::Tcp(addrs) => {
                let mut last = None;
                for addr in addrs {
                    match tcp(*addr).await {
                        Ok(t) => return Ok(t),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(no_address))
            }
        }
    }
}

/// What an async adapter opens again after a session ends: the target, the policy, and how
/// long each attempt may take. `None` unless the settings ask for reconnection.
#[derive(Debug, Clone)]
pub struct Redial {
    /// What to open.
    pub target: Target,
    /// When and how often.
    pub policy: crate::Reconnect,
    /// How long each attempt may take to connect.
    pub connect_timeout: Option<std::time::Duration>,
}

impl Redial {
    /// How to open `target` again, if `settings` ask for reconnection.
    pub fn from_settings(target: Target, settings: &crate::Settings) -> Option<Self> {
        settings.get_reconnect().map(|policy| Redial {
            target,
            policy,
            connect_timeout: settings.get_connect_timeout(),
        })
    }
}

fn no_address() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_in_turn_and_the_last_error() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        let target = Target::Tcp(addrs);
        assert_eq!(target.describe(), "127.0.0.1:1, 127.0.0.1:2");
        let mut tried = Vec::new();
        let opened = target.open(
            |_| unreachable!(),
            |a| {
                tried.push(a.port());
                if a.port() == 2 {
                    Ok(a.port())
                } else {
                    Err(io::ErrorKind::ConnectionRefused.into())
                }
            },
        );
        assert_eq!(opened.unwrap(), 2);
        assert_eq!(tried, [1, 2]);
        let none = Target::Tcp(Vec::new()).open(|_| Ok(()), |_| Ok(()));
        assert_eq!(none.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
