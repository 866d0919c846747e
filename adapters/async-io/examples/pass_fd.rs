//! Pass a file descriptor to QEMU with `getfd`, then close it with `closefd`.
//!
//! ```sh
//! qemu-system-x86_64 -machine none -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//! cargo run -p qmp-async --example pass_fd -- /tmp/qmp.sock
//! ```
#![allow(clippy::print_stdout)]

use qmp_async::{Builder, CallOptions, IgnoredAny};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/qmp.sock".into());
    smol::block_on(async {
        let (qmp, driver) = Builder::new().connect_unix(&path).await?;
        let driver = smol::spawn(driver);
        let file = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
        // Sent as SCM_RIGHTS with the first byte of this command, in stream order.
        let name = json!({"fdname": "example"});
        qmp.execute_with::<IgnoredAny, _>("getfd", &name, CallOptions::new().fd(file))
            .await?;
        println!("QEMU holds the descriptor as \"example\"");
        qmp.execute::<IgnoredAny, _>("closefd", &name).await?;
        println!("and closed it");
        qmp.close();
        driver.await;
        Ok(())
    })
}
