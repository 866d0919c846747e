//! Payloads stay raw JSON: the caller's typed `Deserialize` runs once, from the bytes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use qmp_proto::{CallOptions, ClientConfig, Event};
use serde::Deserialize;

#[derive(Deserialize, Debug, PartialEq)]
struct StatusInfo<'a> {
    status: &'a str,
    running: bool,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Shutdown {
    guest: bool,
    reason: String,
}

#[test]
fn results_and_event_data_decode_into_caller_types() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let id = c
        .execute(now, "query-status", &(), CallOptions::new())
        .unwrap();
    c.handle_input(
        now,
        b"{\"timestamp\": {\"seconds\": 1795321861, \"microseconds\": 162705}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n\
          {\"return\": {\"status\": \"paused\", \"running\": false}, \"id\": 2}\r\n",
    );
    let evs = events(&mut c);
    let Event::Qmp(shutdown) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(shutdown.name, "SHUTDOWN");
    assert_eq!(
        shutdown.data_as::<Shutdown>().unwrap(),
        Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }
    );
    assert_eq!(shutdown.timestamp.unwrap().microseconds, 162705);
    let Event::Reply {
        id: got,
        result: Ok(raw),
    } = &evs[1]
    else {
        panic!("{evs:?}")
    };
    assert_eq!(*got, id);
    // Borrowing straight from the raw bytes.
    let status: StatusInfo<'_> = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(
        status,
        StatusInfo {
            status: "paused",
            running: false
        }
    );
}

#[test]
fn data_as_decodes_missing_data_as_empty_object() {
    #[derive(Deserialize)]
    struct Empty {}
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    c.handle_input(
        now,
        b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}",
    );
    let evs = events(&mut c);
    let Event::Qmp(stop) = &evs[0] else { panic!() };
    assert!(stop.data.is_none());
    assert!(stop.data_as::<Empty>().is_ok());
}
