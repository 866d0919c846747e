//! The connection's span, each command's span, events and diagnostics as tracing events
//! (its own test binary: the subscriber is process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::FakePeer;
use qmp_blocking::{Builder, CallOptions, Error};
use qmp_testkit::traces::{assert_scenario_traced, traced_fake, Capture, SCENARIO, SLOW};
use serde_json::Value;

fn scenario(label: Option<&str>) -> String {
    let peer = FakePeer::serve(traced_fake());
    let name = label.map_or_else(|| peer.sock.display().to_string(), str::to_owned);
    let mut builder = Builder::new();
    if let Some(label) = label {
        builder = builder.label(label);
    }
    let mut qmp = peer.connect_with(&builder);
    for (command, ok) in SCENARIO {
        let opts = if command == SLOW {
            CallOptions::new().timeout(Duration::from_millis(50))
        } else {
            CallOptions::new()
        };
        let result = qmp.execute_with::<Value>(command, &(), opts);
        assert_eq!(result.is_ok(), ok, "{command}: {result:?}");
        if command == SLOW {
            assert!(
                matches!(result, Err(Error::CommandTimeout(_))),
                "{result:?}"
            );
        }
    }
    drop(qmp);
    peer.finish();
    name
}

#[test]
fn connections_and_commands_are_spans() {
    let capture = Capture::new();
    capture.set_global_default();
    for label in [None, Some("vm7")] {
        let name = scenario(label);
        assert_scenario_traced(&capture, &name);
        capture.clear();
    }
}
