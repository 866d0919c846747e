//! Connect to a QMP socket and run commands, from many tasks at once.
//!
//! ```sh
//! qemu-system-x86_64 -machine none -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-tokio --example query -- /tmp/qmp.sock
//! ```
#![allow(clippy::print_stdout)]

use qmp_tokio::{Builder, Error, QemuVersion};
use serde::Deserialize;

#[derive(Deserialize)]
struct Version {
    qemu: QemuVersion,
}

#[derive(Deserialize)]
struct Command {
    name: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/qmp.sock".into());
    // The driver runs as a task on this runtime; no thread of its own.
    let qmp = Builder::new().connect_unix(&path).await?;
    let greeting = qmp.greeting().expect("negotiated");
    println!(
        "connected to QEMU {} (oob: {})",
        greeting.version,
        qmp.oob_enabled()
    );

    // Calls from separate tasks pipeline on the one connection.
    let version = tokio::spawn(qmp.execute::<Version, _>("query-version", &()));
    let commands = tokio::spawn(qmp.execute::<Vec<Command>, _>("query-commands", &()));
    let version = version.await.expect("the task")?;
    let commands = commands.await.expect("the task")?;
    println!("version {}", version.qemu);
    println!(
        "{} commands, for example {}",
        commands.len(),
        commands.first().map_or("none", |c| c.name.as_str())
    );

    qmp.close();
    println!("session ended: {}", qmp.closed().await);
    Ok(())
}
