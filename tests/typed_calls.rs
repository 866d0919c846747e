//! Typed commands and events (`Client::call` with the generated `qmp-types` vocabulary,
//! `qmp_proto::events`) against the fake QEMU, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::t0;
use qmp_proto::commands::Empty;
use qmp_proto::events::{EventSet, OneOf, TypedEvent};
use qmp_proto::schema::{QueryCommands, QueryQmpSchema};
use qmp_proto::server::{FakeQemu, Outcome, Server};
use qmp_proto::testing::Pair;
use qmp_proto::{
    CallError, CallOptions, Client, ClientConfig, Command, CommandError, DecodeTarget, Event,
    Pending, QmpEvent,
};
use qmp_types::qmp::{
    AddFd, Closefd, Cont, Getfd, JobStatus, JobStatusChange, Powerdown, QueryName, QueryStatus,
    QueryVersion, Quit, RemoveFd, Reset, Resume, RunState, Shutdown, ShutdownCause, Stop,
    StopEvent, SystemPowerdown, SystemReset,
};
use serde::Serialize;
use serde_json::json;

/// A client and the fake QEMU connected in memory, negotiated, with the wire log cleared.
fn pair(fake: FakeQemu) -> Pair<FakeQemu> {
    let mut p = Pair::new(t0(), fake.server_config(), fake, ClientConfig::default());
    p.wire.clear();
    p
}

/// Shorthands over [`Pair`] for these tests.
trait PairExt {
    fn result<C: Command>(&self, pending: Pending<C>) -> Result<C::Returns, CommandError>;
    fn call<C: Command>(&mut self, cmd: C) -> Result<C::Returns, CommandError>;
    fn qmp_events(&mut self) -> Vec<QmpEvent>;
}

impl PairExt for Pair<FakeQemu> {
    /// The typed result of a call, once settled.
    fn result<C: Command>(&self, pending: Pending<C>) -> Result<C::Returns, CommandError> {
        let result = self
            .events
            .iter()
            .find_map(|e| match e {
                Event::Reply { id, result } if pending == *id => Some(result.clone()),
                _ => None,
            })
            .expect("no reply");
        pending.decode_result(result)
    }

    fn call<C: Command>(&mut self, cmd: C) -> Result<C::Returns, CommandError> {
        let pending = self
            .client
            .call(self.now, &cmd, CallOptions::new())
            .unwrap();
        self.settle();
        self.result(pending)
    }

    fn qmp_events(&mut self) -> Vec<QmpEvent> {
        let events = std::mem::take(&mut self.events);
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Qmp(q) => Some(q),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn queries_decode_into_their_types() {
    let mut p = pair(
        FakeQemu::new()
            .prelaunch()
            .name("vm0")
            .version(10, 0, 2, "pkg"),
    );
    let version = p.call(QueryVersion::new()).unwrap();
    assert_eq!(
        (version.qemu.major, version.qemu.minor, version.qemu.micro),
        (10, 0, 2)
    );
    assert_eq!(version.package, "pkg");
    let status = p.call(QueryStatus::new()).unwrap();
    assert_eq!(status.status, RunState::Prelaunch);
    assert!(!status.running);
    assert_eq!(
        p.call(QueryName::new()).unwrap().name.as_deref(),
        Some("vm0")
    );
    let commands = p.call(QueryCommands {}).unwrap();
    assert!(commands.has("query-status") && commands.has("add-fd"));
    assert!(!commands.has("nope"));
    let schema = p.call(QueryQmpSchema {}).unwrap();
    assert!(schema.has_command("query-status"));
    assert!(schema.has_event("STOP"));
}

#[test]
fn argument_less_commands_send_no_arguments_member() {
    let mut p = pair(FakeQemu::new());
    let id = p
        .client
        .call(p.now, &QueryStatus::new(), CallOptions::new())
        .unwrap();
    p.settle();
    let wire = String::from_utf8(p.wire.clone()).unwrap();
    assert_eq!(
        wire,
        format!(r#"{{"execute":"query-status","id":{}}}"#, id.id().as_u64())
    );
    p.wire.clear();
    p.call(Getfd::new("x".into())).unwrap_err();
    let wire = String::from_utf8(p.wire.clone()).unwrap();
    assert!(
        wire.starts_with(r#"{"execute":"getfd","arguments":{"fdname":"x"},"id":"#),
        "{wire}"
    );
    // Optional members are left out when `None`.
    p.wire.clear();
    p.call(RemoveFd::new(7)).unwrap_err();
    let wire = String::from_utf8(p.wire.clone()).unwrap();
    assert!(
        wire.starts_with(r#"{"execute":"remove-fd","arguments":{"fdset-id":7},"id":"#),
        "{wire}"
    );
}

#[test]
fn run_state_commands_and_their_typed_events() {
    let mut p = pair(FakeQemu::new().prelaunch());
    p.qmp_events();
    let _: Empty = p.call(Cont::new()).unwrap();
    let evs = p.qmp_events();
    assert!(matches!(evs[0].decode::<Resume>(), Some(Ok(_))));
    assert_eq!(
        p.call(QueryStatus::new()).unwrap().status,
        RunState::Running
    );
    p.call(Stop::new()).unwrap();
    let evs = p.qmp_events();
    assert!(evs[0].decode::<StopEvent>().unwrap().is_ok());
    assert!(evs[0].decode::<Resume>().is_none(), "another event");
    p.call(SystemReset::new()).unwrap();
    let evs = p.qmp_events();
    // One of several kinds, as typed waits take them.
    type RunEvents = OneOf<StopEvent, OneOf<Resume, Reset>>;
    assert!(RunEvents::has("RESET") && !RunEvents::has("SHUTDOWN"));
    let Some(Ok(OneOf::Second(OneOf::Second(reset)))) = RunEvents::decode_event(&evs[0]) else {
        panic!("{evs:?}")
    };
    assert!(!reset.guest);
    assert_eq!(reset.reason, ShutdownCause::HostQmpSystemReset);
    p.call(SystemPowerdown::new()).unwrap();
    let evs = p.qmp_events();
    assert_eq!(evs[0].name, Powerdown::NAME);
    assert!(matches!(evs[0].decode::<Powerdown>(), Some(Ok(_))));
    p.call(Quit::new()).unwrap();
    let evs = p.qmp_events();
    let shutdown = evs[0].decode::<Shutdown>().unwrap().unwrap();
    assert_eq!(shutdown.reason, ShutdownCause::HostQmpQuit);
}

/// A value QEMU may add to an enum later decodes (`Other`); a reply that does not decode at
/// all fails only that call, with the raw JSON.
#[test]
fn a_bad_reply_fails_only_that_call() {
    let mut fake = FakeQemu::new();
    fake.add_command("query-status", false, |_, _| {
        Outcome::Json(r#"{"status": "some-future-state", "running": false}"#.into())
    });
    fake.add_command("query-name", false, |_, _| {
        Outcome::Json(r#"{"name": ["not", "a", "string"]}"#.into())
    });
    let mut p = pair(fake);
    let status = p.call(QueryStatus::new()).unwrap();
    assert_eq!(status.status, RunState::Other("some-future-state".into()));
    // Pipelined: the bad reply and the next one arrive together.
    let name = p
        .client
        .call(p.now, &QueryName::new(), CallOptions::new())
        .unwrap();
    let version = p
        .client
        .call(p.now, &QueryVersion::new(), CallOptions::new())
        .unwrap();
    p.settle();
    let Err(CommandError::Decode(e)) = p.result(name) else {
        panic!("{:?}", p.events)
    };
    assert_eq!(e.target(), DecodeTarget::Return);
    assert_eq!(e.name(), "query-name");
    assert_eq!(e.raw().get(), r#"{"name": ["not", "a", "string"]}"#);
    assert!(e.to_string().contains("query-name"), "{e}");
    assert!(e.to_string().contains(r#""not""#), "{e}");
    // The next call got its own reply, and the session goes on.
    assert_eq!(p.result(version).unwrap().qemu.major, 10);
    assert!(p.call(QueryStatus::new()).is_ok());
    // The raw value is still there for an untyped look.
    let raw: serde_json::Value = serde_json::from_str(e.raw().get()).unwrap();
    assert_eq!(raw["name"][0], "not");
}

#[test]
fn a_bad_event_fails_only_that_event() {
    let mut p = pair(FakeQemu::new());
    p.qmp_events();
    let now = p.now;
    p.server.emit_event(
        now,
        "JOB_STATUS_CHANGE",
        Some(json!({"id": "j0", "status": "hibernating"})),
    );
    p.server.emit_event(
        now,
        "JOB_STATUS_CHANGE",
        Some(json!({"id": 7, "status": "concluded"})),
    );
    p.server
        .emit_event(now, "SOME_FUTURE_EVENT", Some(json!({"x": 1})));
    p.server.emit_event(now, "STOP", None);
    p.settle();
    let evs = p.qmp_events();
    assert_eq!(evs.len(), 4);
    // A status this crate does not know is kept.
    let change = evs[0].decode::<JobStatusChange>().unwrap().unwrap();
    assert_eq!(change.status, JobStatus::Other("hibernating".into()));
    assert_eq!(change.id, "j0");
    // An id that is not a string does not decode: that event alone fails.
    let e = evs[1].decode::<JobStatusChange>().unwrap().unwrap_err();
    assert_eq!(e.target(), DecodeTarget::Event);
    assert_eq!(e.name(), "JOB_STATUS_CHANGE");
    let raw: serde_json::Value = serde_json::from_str(e.raw().get()).unwrap();
    assert_eq!(raw["event"], "JOB_STATUS_CHANGE");
    assert_eq!(raw["data"], json!({"id": 7, "status": "concluded"}));
    assert!(raw["timestamp"]["seconds"].is_i64());
    // An event without a type is data, and the rest still decode.
    assert!(evs[2].decode::<JobStatusChange>().is_none());
    assert_eq!(evs[2].name, "SOME_FUTURE_EVENT");
    assert!(matches!(evs[3].decode::<StopEvent>(), Some(Ok(_))));
    assert_eq!(StopEvent::NAME, "STOP");
}

#[test]
fn errors_stay_errors() {
    let mut p = pair(FakeQemu::new());
    let Err(CommandError::Qmp(e)) = p.call(Closefd::new("nope".into())) else {
        panic!()
    };
    assert_eq!(e.class, "GenericError");
}

#[test]
fn file_descriptors_travel_with_typed_calls() {
    let mut p = pair(FakeQemu::new());
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let id = p
        .client
        .call(p.now, &Getfd::new("fd0".into()), CallOptions::new().fd(a))
        .unwrap();
    p.settle();
    p.result(id).unwrap();
    assert_eq!(p.server.handler().fd_names(), ["fd0"]);
    p.call(Closefd::new("fd0".into())).unwrap();
    assert!(p.server.handler().fd_names().is_empty());

    let id = p
        .client
        .call(
            p.now,
            &AddFd::new().with_opaque("disk".into()),
            CallOptions::new().fd(b),
        )
        .unwrap();
    p.settle();
    let info = p.result(id).unwrap();
    p.call(RemoveFd::new(info.fdset_id).with_fd(info.fd))
        .unwrap();
}

/// `query-yank`, which QEMU allows out of band.
#[derive(Serialize)]
struct QueryYank;

impl Command for QueryYank {
    const NAME: &'static str = "query-yank";
    const ALLOW_OOB: bool = true;
    type Returns = Vec<serde_json::Value>;
}

#[test]
fn out_of_band_calls_honour_allow_oob() {
    let mut p = pair(FakeQemu::new());
    assert_eq!(
        p.client
            .call(p.now, &QueryStatus::new(), CallOptions::new().oob(true))
            .unwrap_err(),
        CallError::OobNotAllowed("query-status")
    );
    assert!(p.wire.is_empty(), "nothing was sent");
    let id = p
        .client
        .call(p.now, &QueryYank, CallOptions::new().oob(true))
        .unwrap();
    p.settle();
    assert!(String::from_utf8(p.wire.clone())
        .unwrap()
        .starts_with(r#"{"exec-oob":"query-yank","id":"#));
    assert!(!p.result(id).unwrap().is_empty());

    // Without OOB negotiated, a command that allows it is refused locally too.
    let fake = FakeQemu::new();
    let mut client = Client::new(ClientConfig::default().oob(false));
    let mut server = Server::new(fake.server_config(), fake);
    let now = t0();
    server.accept(now);
    client.connect(now).unwrap();
    let greeting = server.take_output();
    client.handle_input(now, &greeting);
    assert_eq!(
        client
            .call(now, &QueryYank, CallOptions::new().oob(true))
            .unwrap_err(),
        CallError::OobNotNegotiated
    );
}

#[test]
fn pending_ids() {
    let mut p = pair(FakeQemu::new());
    let a = p
        .client
        .call(p.now, &QueryStatus::new(), CallOptions::new())
        .unwrap();
    let b = a;
    assert_eq!(a, b);
    assert_eq!(a.id(), qmp_proto::CommandId::from(b));
    assert!(format!("{a:?}").contains("QueryStatus"));
    assert!(p.client.cancel(a.id()));
    p.settle();
    assert_eq!(p.result(a).unwrap_err(), CommandError::Cancelled);
}
