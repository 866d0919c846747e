//! Connect to a QMP socket and run a command.
//!
//! ```sh
//! qemu-system-x86_64 -machine none -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-blocking --example query -- /tmp/qmp.sock [COMMAND]
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use qmp_blocking::Connection;
use serde::Deserialize;

/// The part of `query-version`'s result this example reads.
#[derive(Deserialize)]
struct Version {
    qemu: qmp_blocking::QemuVersion,
    package: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: query SOCKET [COMMAND]")?;
    let command = args.next().unwrap_or_else(|| "query-commands".to_owned());

    let mut qmp = Connection::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_unix(&path)?;
    println!(
        "connected: capabilities {:?}, oob {}",
        qmp.greeting().capabilities,
        qmp.oob_enabled()
    );

    // A typed result.
    let v: Version = qmp.execute("query-version", &())?;
    println!("QEMU {} ({})", v.qemu, v.package);

    // Any command, its result as raw JSON; a QMP error carries its class and description.
    match qmp.execute::<Box<qmp_proto::RawValue>>(&command, &()) {
        Ok(result) => println!("{command}: {}", result.get()),
        Err(qmp_blocking::Error::Qmp(e)) => println!("{command} failed: {}: {}", e.class, e.desc),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
