//! Pass a file descriptor to QEMU with `getfd`, then close it with `closefd`.
//!
//! ```sh
//! qemu-system-x86_64 -machine none -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-blocking --example send_fd -- /tmp/qmp.sock /tmp/some-file
//! ```
//!
//! The descriptor travels as `SCM_RIGHTS` with the first byte of the `getfd` command, so it
//! is in stream order with the command that names it. Unix sockets only.
#![allow(clippy::print_stdout)]

use qmp_blocking::{CallOptions, Connection, IgnoredAny};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: send_fd SOCKET FILE")?;
    let file = args.next().ok_or("usage: send_fd SOCKET FILE")?;

    let mut qmp = Connection::connect_unix(&path)?;
    let fd = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)?;

    let name = json!({"fdname": "example"});
    // The connection closes its copy of the descriptor once it is sent.
    qmp.execute_with::<IgnoredAny>("getfd", &name, CallOptions::new().fd(fd))?;
    println!("QEMU now holds {file} as fd \"example\"");
    qmp.execute::<IgnoredAny>("closefd", &name)?;
    println!("and closed it");
    Ok(())
}
