//! The connection's span, each command's span, events and diagnostics as tracing events,
//! under each executor (its own test binary: the subscriber is process-wide, so that tasks
//! on any thread report to it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{under_async_executor, under_smol, under_tokio, FakePeer, Spawner};
use qmp_async::{Builder, CallOptions, Error};
use qmp_testkit::traces::{assert_scenario_traced, traced_fake, Capture, SCENARIO, SLOW};
use serde_json::Value;

async fn scenario(sp: Spawner, label: Option<&str>) -> String {
    let peer = FakePeer::serve(traced_fake());
    let name = label.map_or_else(|| peer.sock.display().to_string(), str::to_owned);
    let mut builder = Builder::new();
    if let Some(label) = label {
        builder = builder.label(label);
    }
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;
    for (command, ok) in SCENARIO {
        let opts = if command == SLOW {
            CallOptions::new().timeout(Duration::from_millis(50))
        } else {
            CallOptions::new()
        };
        let result = qmp.execute_with::<Value, _>(command, &(), opts).await;
        assert_eq!(result.is_ok(), ok, "{command}: {result:?}");
        if command == SLOW {
            assert!(
                matches!(result, Err(Error::CommandTimeout(_))),
                "{result:?}"
            );
        }
    }
    qmp.close();
    driver.await;
    drop(qmp);
    peer.finish();
    name
}

#[test]
fn connections_and_commands_are_spans_under_every_executor() {
    let capture = Capture::new();
    capture.set_global_default();
    let check = |name: &str| {
        assert_scenario_traced(&capture, name);
        capture.clear();
    };
    let mut name = String::new();
    under_smol(|sp| async { name = scenario(sp, None).await });
    check(&name);
    under_async_executor(|sp| async { name = scenario(sp, Some("vm7")).await });
    check(&name);
    under_tokio(|sp| async { name = scenario(sp, None).await });
    check(&name);
}
