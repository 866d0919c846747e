//! Where QMP is: a unix socket path or a TCP `HOST:PORT`.

use std::fmt;
use std::path::PathBuf;

/// A QMP endpoint given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket (`-qmp unix:PATH,server=on,wait=off`).
    Unix(PathBuf),
    /// A TCP address (`-qmp tcp:HOST:PORT,server=on,wait=off`).
    Tcp(String),
}

impl Target {
    /// Reads an endpoint: anything with a `/`, or naming an existing file, is a unix socket
    /// path; `HOST:PORT` with a numeric port (`localhost:4444`, `[::1]:4444`) is TCP;
    /// anything else is a unix socket path relative to the current directory.
    ///
    /// ```
    /// use qmp_cli::target::Target;
    ///
    /// assert_eq!(Target::parse("/run/vm/qmp.sock"), Target::Unix("/run/vm/qmp.sock".into()));
    /// assert_eq!(Target::parse("localhost:4444"), Target::Tcp("localhost:4444".into()));
    /// assert_eq!(Target::parse("[::1]:4444"), Target::Tcp("[::1]:4444".into()));
    /// assert_eq!(Target::parse("qmp.sock"), Target::Unix("qmp.sock".into()));
    /// assert_eq!(Target::parse("./a:1"), Target::Unix("./a:1".into()));
    /// ```
    pub fn parse(text: &str) -> Target {
        let path = PathBuf::from(text);
        if text.contains('/') || path.exists() {
            return Target::Unix(path);
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Target::Tcp(text.to_owned())
            }
            _ => Target::Unix(path),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => f.write_str(a),
        }
    }
}
