//! Watch QMP events and the connection status, reconnecting when QEMU restarts.
//!
//! ```sh
//! qemu-system-x86_64 -M pc -accel tcg -S -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-async --example events -- /tmp/qmp.sock
//! ```
//! Then `cont`/`stop` the VM from another client, or restart QEMU. Ctrl-C to stop.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures_lite::StreamExt;
use qmp_async::{Builder, Error, EventFilter, Reconnect, Status};

fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/qmp.sock".into());
    smol::block_on(async {
        let policy = Reconnect::new().max(Duration::from_secs(2));
        let (qmp, driver) = Builder::new().reconnect(policy).connect_unix(&path).await?;
        let driver = smol::spawn(driver);
        let mut status = qmp.status();
        loop {
            // A listener lives as long as its session: subscribe for each one.
            let mut events = qmp.subscribe(EventFilter::all().capacity(1024));
            println!("listening (runstate {})", qmp.state());
            while let Some(item) = events.next().await {
                match item {
                    Ok(event) => println!(
                        "{:?} {} {}",
                        event.timestamp,
                        event.name,
                        event.data.as_deref().map_or("", |d| d.get())
                    ),
                    Err(lagged) => println!("(missed {} events)", lagged.missed),
                }
            }
            // The session ended: follow the driver until it is back, or gone.
            loop {
                match status.next().await {
                    Some(Status::Connected { session, greeting }) => {
                        println!("session {session}: QEMU {}", greeting.version);
                        break;
                    }
                    Some(other) => println!("{other:?}"),
                    None => {
                        println!("driver finished: {}", driver.await);
                        return Ok(());
                    }
                }
            }
        }
    })
}
