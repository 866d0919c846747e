//! The connection's span, each command's span, events and diagnostics as tracing events,
//! under both runtime flavours (its own test binary: the subscriber is process-wide, so that
//! the worker threads of a multi-thread runtime report to it too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::FakePeer;
use qmp_testkit::traces::{assert_scenario_traced, traced_fake, Capture, SCENARIO, SLOW};
use qmp_tokio::{Builder, CallOptions, Error};
use serde_json::Value;

async fn scenario(label: Option<&str>) -> String {
    let peer = FakePeer::serve(traced_fake());
    let name = label.map_or_else(|| peer.sock.display().to_string(), str::to_owned);
    let mut builder = Builder::new();
    if let Some(label) = label {
        builder = builder.label(label);
    }
    let qmp = builder.connect_unix(&peer.sock).await.unwrap();
    for (name, ok) in SCENARIO {
        let opts = if name == SLOW {
            CallOptions::new().timeout(Duration::from_millis(50))
        } else {
            CallOptions::new()
        };
        let result = qmp.execute_with::<Value, _>(name, &(), opts).await;
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
        if name == SLOW {
            assert!(
                matches!(result, Err(Error::CommandTimeout(_))),
                "{result:?}"
            );
        }
    }
    qmp.close();
    qmp.closed().await;
    drop(qmp);
    peer.finish();
    name
}

#[test]
fn connections_and_commands_are_spans_under_both_runtimes() {
    let capture = Capture::new();
    capture.set_global_default();
    for (threaded, label) in [(false, None), (true, Some("vm7")), (true, None)] {
        let rt = common::runtime(threaded);
        let name = rt.block_on(scenario(label));
        drop(rt);
        assert_scenario_traced(&capture, &name);
        capture.clear();
    }
}
