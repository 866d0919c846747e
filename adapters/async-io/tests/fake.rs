//! Against the fake QEMU served in-process on a unix socket: bounded listeners under an
//! event flood, cancellation, timeouts, wrapped streams, an idle driver, and the runstate
//! watch. Each scenario runs under smol, async-executor and tokio.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Async;
use common::{sleep, within, FakePeer, Spawner};
use futures_lite::{future, AsyncRead, AsyncWrite, StreamExt};
use qmp_async::{
    Builder, CallOptions, DisconnectReason, Error, EventFilter, Lagged, QemuVersion, RunState,
};
use qmp_proto::server::FakeQemu;
use qmp_testkit::{flooding_fake, on_every_executor};
use serde::Deserialize;
use serde_json::{json, Value};

const FLOOD: u64 = 100_000;
const SLOW_CAPACITY: usize = 64;

#[derive(Deserialize)]
struct Version {
    qemu: QemuVersion,
}

fn tick_number(event: &qmp_async::QmpEvent) -> u64 {
    event.data_as::<Value>().unwrap()["n"].as_u64().unwrap()
}

/// A listener that never reads while 100,000 events arrive holds at most its capacity and
/// learns exactly how many it missed; a listener that keeps up gets every one, in order.
async fn flood_with_a_listener_that_never_reads(sp: Spawner) {
    let peer = FakePeer::serve(flooding_fake());
    let (qmp, driver) = peer.connect(&sp).await;
    let slow = qmp.subscribe(EventFilter::name("TICK").capacity(SLOW_CAPACITY));
    let mut fast = qmp.subscribe(EventFilter::name("TICK").capacity(2 * FLOOD as usize));
    let reader = sp.spawn(async move {
        let mut next = 0;
        while next < FLOOD {
            let event = fast
                .next()
                .await
                .unwrap()
                .expect("the fast listener never lags");
            assert_eq!(tick_number(&event), next);
            next += 1;
        }
        next
    });
    let started = Instant::now();
    qmp.execute::<Value, _>("flood", &json!({ "count": FLOOD }))
        .await
        .unwrap();
    assert_eq!(within(reader).await, FLOOD);
    eprintln!("{FLOOD} events in {:?}", started.elapsed());

    // The flood came before the reply: it is over, and memory stayed bounded.
    assert_eq!(slow.len(), SLOW_CAPACITY);
    assert_eq!(slow.missed_total(), FLOOD - SLOW_CAPACITY as u64);

    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    // What it holds, then how many it missed, then the end of the stream.
    let items: Vec<_> = within(slow.collect::<Vec<_>>()).await;
    assert_eq!(items.len(), SLOW_CAPACITY + 1);
    for (n, item) in items[..SLOW_CAPACITY].iter().enumerate() {
        assert_eq!(tick_number(item.as_ref().unwrap()), n as u64);
    }
    assert_eq!(
        items[SLOW_CAPACITY].as_ref().unwrap_err(),
        &Lagged {
            missed: FLOOD - SLOW_CAPACITY as u64
        }
    );
    assert_eq!(peer.finish().handler().status(), "running");
}

/// Dropping a call in flight, or letting it time out, never desynchronises the stream:
/// later calls get their own results, and nothing is kept for the dropped call once QEMU
/// has answered it.
async fn cancelled_and_timed_out_calls(sp: Spawner) {
    let mut fake = FakeQemu::new().name("vm0");
    fake.delay("query-status", Duration::from_millis(200));
    let peer = FakePeer::serve(fake);
    let (qmp, driver) = peer.connect(&sp).await;

    // In flight, then dropped.
    let mut slow = Box::pin(qmp.execute::<Value, _>("query-status", &()));
    assert!(future::poll_once(&mut slow).await.is_none());
    let waited = qmp_async::timeout(Duration::from_millis(30), slow).await;
    assert!(matches!(waited, Err(Error::Timeout)), "{waited:?}");
    assert_eq!(qmp.pending(), 1, "still in QEMU's queue");

    // Calls issued after it get their own replies, once the delayed one is out of the way.
    let (version, name) = future::zip(
        qmp.execute::<Version, _>("query-version", &()),
        qmp.execute::<Value, _>("query-name", &()),
    )
    .await;
    assert_eq!(version.unwrap().qemu.major, 10);
    assert_eq!(name.unwrap(), json!({"name": "vm0"}));
    assert_eq!(qmp.pending(), 0, "nothing kept for the dropped call");

    // A per-call timeout: the engine resolves the call; the reply, when it comes, is its late
    // outcome.
    let started = Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_millis(50));
    let timed_out = qmp
        .execute_with::<Value, _>("query-status", &(), opts)
        .await;
    assert!(
        matches!(timed_out, Err(Error::CommandTimeout(_))),
        "{timed_out:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(190));
    let Err(Error::CommandTimeout(late)) = timed_out else {
        unreachable!()
    };
    let outcome = within(late.outcome()).await.unwrap();
    assert!(outcome.get().contains("\"running\""), "{}", outcome.get());
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["status"], "running");

    // Many calls dropped at once, some never issued: the connection stays in step.
    for _ in 0..100 {
        drop(qmp.execute::<Value, _>("query-version", &()));
    }
    let version: Version = qmp.execute("query-version", &()).await.unwrap();
    assert_eq!(version.qemu.minor, 0);
    assert_eq!(qmp.pending(), 0);

    // A call dropped while it waits in the local queue (behind a slow one, with one command
    // in flight at most) is never sent: `stop` does not run.
    let (qmp1, driver1) = {
        let mut fake = FakeQemu::new();
        fake.delay("query-status", Duration::from_millis(300));
        let peer1 = FakePeer::serve(fake);
        let builder = Builder::new().config(qmp_async::ClientConfig::default().max_in_flight(1));
        let (q, d) = peer1.connect_with(&builder, &sp).await;
        let slow = sp.spawn(q.execute::<Value, _>("query-status", &()));
        // Issued at the call; the driver hands it to the engine, which queues it.
        let stop = q.execute::<qmp_async::IgnoredAny, _>("stop", &());
        sleep(Duration::from_millis(50)).await;
        assert_eq!(q.pending(), 2, "both issued to the engine");
        drop(stop);
        assert_eq!(within(slow).await.unwrap()["status"], "running");
        let status: Value = q.execute("query-status", &()).await.unwrap();
        assert_eq!(
            status["status"], "running",
            "the dropped stop was never sent"
        );
        (q, (d, peer1))
    };
    qmp1.close();
    let (d1, peer1) = driver1;
    assert_eq!(within(d1).await, DisconnectReason::Closed);
    assert_eq!(peer1.finish().handler().status(), "running");

    // A result that does not decode is a decode error, and the session goes on.
    let wrong = qmp.execute::<u32, _>("query-version", &()).await;
    assert!(matches!(wrong, Err(Error::Decode(_))), "{wrong:?}");
    let missing = qmp.execute::<Value, _>("nope", &()).await;
    assert!(
        matches!(&missing, Err(Error::Qmp(e)) if e.class == "CommandNotFound"),
        "{missing:?}"
    );
    let bad_args = qmp.execute::<Value, _>("query-version", &[1, 2]).await;
    assert!(matches!(bad_args, Err(Error::Call(_))), "{bad_args:?}");

    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    let after = qmp.execute::<Value, _>("query-version", &()).await;
    assert!(
        matches!(after, Err(Error::Disconnected(DisconnectReason::Closed))),
        "{after:?}"
    );
    peer.finish();
}

/// Counts how often a future is polled.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// An idle driver sleeps: it is not polled again until there is IO, a request or a deadline.
async fn idle_driver_does_not_spin(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (qmp, driver) = Builder::new().connect_unix(&peer.sock).await.unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let driver = sp.spawn(Counted {
        inner: Box::pin(driver),
        polls: Arc::clone(&polls),
    });
    let _: Value = qmp.execute("query-version", &()).await.unwrap();
    let before = polls.load(Ordering::Relaxed);
    sleep(Duration::from_millis(300)).await;
    let idle = polls.load(Ordering::Relaxed) - before;
    assert!(
        idle <= 2,
        "the idle driver was polled {idle} times in 300 ms"
    );
    let _: Value = qmp.execute("query-version", &()).await.unwrap();
    assert!(polls.load(Ordering::Relaxed) > before, "a request wakes it");
    drop(qmp);
    // Every handle gone: the driver closes the connection and finishes.
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    peer.finish();
}

/// Any futures-io stream can carry a session; file descriptors cannot travel on it.
async fn wrapped_stream(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let stream = Async::<std::os::unix::net::UnixStream>::connect(&peer.sock)
        .await
        .unwrap();
    let (qmp, driver) = Builder::new().connect_stream(stream).await.unwrap();
    let driver = sp.spawn(driver);
    assert!(qmp.oob_enabled());
    let yank: Value = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .await
        .unwrap();
    assert_eq!(yank[0]["type"], "chardev");
    common::assert_fds_refused(&qmp).await;
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["running"], true);
    qmp.quit().await.unwrap();
    assert_eq!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: true }
    );
    assert_eq!(peer.finish().handler().status(), "shutdown");
}

/// A watcher read only after the driver has finished still sees every transition, in
/// order, then the end.
async fn state_watch_misses_nothing(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (qmp, driver) = peer.connect(&sp).await;
    assert_eq!(qmp.state(), RunState::Running);
    let mut watch = qmp.state_watch();
    assert_eq!(watch.current(), RunState::Running);
    let mut events = qmp.subscribe(EventFilter::all());
    qmp.close();
    within(driver).await;
    let seen: Vec<_> = within(async {
        let mut seen = Vec::new();
        while let Some(t) = watch.changed().await {
            seen.push(t);
        }
        seen
    })
    .await;
    let moves: Vec<_> = seen.iter().map(|t| (t.from, t.to, t.session)).collect();
    assert_eq!(
        moves,
        [
            (RunState::Running, RunState::Disconnecting, 1),
            (RunState::Disconnecting, RunState::Idle, 1)
        ]
    );
    // The first session's transitions were 1 (Idle -> Connecting) and 2 (-> Running).
    assert_eq!(seen[0].seq, 3);
    assert_eq!(seen[1].seq, 4);
    assert_eq!(watch.missed(), 0);
    assert_eq!(qmp.state(), RunState::Idle);
    assert!(qmp.is_finished());
    // Listeners ended with the session; waiting for a state the driver will never reach fails.
    assert!(within(events.next()).await.is_none());
    let never = watch.wait_for(RunState::Running).await;
    assert!(matches!(
        never,
        Err(Error::Disconnected(DisconnectReason::Closed))
    ));
    peer.finish();
}

/// An in-memory QMP server that is always ready: a greeting, the answer to negotiation,
/// then TICK events as fast as they are read, up to `limit` bytes, then EOF. Writes are
/// swallowed.
struct Firehose {
    pending: Vec<u8>,
    pos: usize,
    served: Arc<AtomicUsize>,
    limit: usize,
}

impl Firehose {
    fn new(served: Arc<AtomicUsize>, limit: usize) -> Self {
        let hello = concat!(
            r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "#,
            r#""package": ""}, "capabilities": ["oob"]}}"#,
            "\r\n",
            r#"{"return": {}, "id": 1}"#,
            "\r\n"
        );
        Firehose {
            pending: hello.as_bytes().to_vec(),
            pos: 0,
            served,
            limit,
        }
    }
}

impl AsyncRead for Firehose {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pos == this.pending.len() {
            if this.served.load(Ordering::Relaxed) >= this.limit {
                return Poll::Ready(Ok(0));
            }
            let tick = "{\"event\": \"TICK\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n";
            this.pending = tick.repeat(1000).into_bytes();
            this.pos = 0;
        }
        let n = buf.len().min(this.pending.len() - this.pos);
        buf[..n].copy_from_slice(&this.pending[this.pos..this.pos + n]);
        this.pos += n;
        this.served.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Firehose {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Fairness: against a peer whose input never runs dry, the driver yields after a bounded
/// amount of work, so other tasks on the same single-threaded executor run in the middle
/// of the flood (a driver that read until `Pending` would hold the thread to the end).
/// The other task is spawned: `Executor::run` polls its own main future only every 200 task
/// runs.
async fn driver_yields_under_endless_input(sp: Spawner) {
    const LIMIT: usize = 20 * 1024 * 1024;
    let served = Arc::new(AtomicUsize::new(0));
    let (qmp, driver) = Builder::new()
        .connect_stream(Firehose::new(Arc::clone(&served), LIMIT))
        .await
        .unwrap();
    let events = qmp.subscribe(EventFilter::name("TICK").capacity(16));
    let driver = sp.spawn(driver);
    let ticker = sp.spawn({
        let qmp = qmp.clone();
        async move {
            let mut ran_mid_flood = 0;
            while !qmp.is_finished() {
                future::yield_now().await;
                let s = served.load(Ordering::Relaxed);
                if s > 0 && s < LIMIT {
                    ran_mid_flood += 1;
                }
            }
            ran_mid_flood
        }
    });
    let ran_mid_flood = within(ticker).await;
    assert!(
        ran_mid_flood >= 10,
        "other tasks ran {ran_mid_flood} times during the flood"
    );
    assert_eq!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: false }
    );
    assert!(events.missed_total() > 100_000, "{}", events.missed_total());
    assert_eq!(events.len(), 16);
}

on_every_executor!(
    flood_with_a_listener_that_never_reads,
    cancelled_and_timed_out_calls,
    idle_driver_does_not_spin,
    wrapped_stream,
    state_watch_misses_nothing,
    driver_yields_under_endless_input,
);
