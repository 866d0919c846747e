//! Connect to a QMP socket and run commands, from many tasks at once.
//!
//! ```sh
//! qemu-system-x86_64 -machine none -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-async --example query -- /tmp/qmp.sock
//! ```
#![allow(clippy::print_stdout)]

use qmp_async::{Builder, Error, QemuVersion};
use serde::Deserialize;

#[derive(Deserialize)]
struct Version {
    qemu: QemuVersion,
}

#[derive(Deserialize)]
struct Command {
    name: String,
}

fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/qmp.sock".into());
    smol::block_on(async {
        let (qmp, driver) = Builder::new().connect_unix(&path).await?;
        // The driver owns the socket; spawn it on any executor.
        let driver = smol::spawn(driver);
        let greeting = qmp.greeting().expect("negotiated");
        println!(
            "connected to QEMU {} (oob: {})",
            greeting.version,
            qmp.oob_enabled()
        );

        // Calls from separate tasks pipeline on the one connection.
        let version = smol::spawn({
            let qmp = qmp.clone();
            async move { qmp.execute::<Version, _>("query-version", &()).await }
        });
        let commands = smol::spawn({
            let qmp = qmp.clone();
            async move { qmp.execute::<Vec<Command>, _>("query-commands", &()).await }
        });
        println!("version {}", version.await?.qemu);
        let commands = commands.await?;
        println!(
            "{} commands, for example {}",
            commands.len(),
            commands[0].name
        );

        qmp.close();
        println!("session ended: {}", driver.await);
        Ok(())
    })
}
