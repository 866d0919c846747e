//! Many VMs from one process, each connection named in its tracing span: every line of
//! output says which VM it is about.
//!
//! ```sh
//! qmp fake /tmp/vm0.sock & qmp fake /tmp/vm1.sock &
//! cargo run -p qmp-tokio --example fleet -- /tmp/vm0.sock /tmp/vm1.sock
//! ```
#![allow(clippy::print_stdout)]

use qmp_tokio::{Builder, Error, EventFilter};
use serde_json::Value;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Any tracing subscriber: here the plain formatter, at debug level, with a line for
    // each command (span) when it is resolved.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .init();
    let mut tasks = Vec::new();
    for (n, path) in std::env::args().skip(1).enumerate() {
        tasks.push(tokio::spawn(async move {
            let qmp = Builder::new()
                .label(format!("vm{n}"))
                .connect_unix(&path)
                .await?;
            let mut stops = qmp.subscribe(EventFilter::names(["STOP"]));
            let _: Value = qmp.execute("stop", &()).await?;
            stops.recv().await;
            let _: Value = qmp.execute("query-status", &()).await?;
            qmp.close();
            qmp.closed().await;
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("a VM's task panicked")?;
    }
    Ok(())
}
