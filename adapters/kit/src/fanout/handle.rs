//! The handle of an async adapter: commands, listeners and watchers, from any task, the same
//! in every async adapter. What differs between runtimes (how a request reaches the driver,
//! the clock, a timeout) is a [`Runtime`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qmp_proto::events::EventSet;
use qmp_proto::schema::{Commands, Schema};
use qmp_proto::status::{Job, VmStatus};
#[cfg(doc)]
use qmp_proto::{CallError, Client};
use qmp_proto::{Command, DisconnectReason, Greeting, QmpEvent, RawValue, RunState};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use serde_json::Value;

use super::{
    decode, Body, EventStream, JobWatch, Request, SessionEventStream, Shared, StateWatch,
    StatusStream, VmStatusWatch,
};
use crate::{CallOptions, Error, EventFilter};

/// What an async adapter's runtime gives its [`Handle`]: how a request reaches the driver
/// task, the clock commands' deadlines count from, and a timeout.
pub trait Runtime: Send + Sync + 'static {
    /// The sending end of the driver's request queue.
    type Sender: Clone + Send + Sync + 'static;
    /// The adapter's log target.
    const TARGET: &'static str;

    /// Hands `request` to the driver; gives it back if the driver is gone.
    fn send(tx: &Self::Sender, request: Request) -> Result<(), Request>;

    /// The time now, on the clock the driver feeds the engine (a runtime's paused clock, say).
    fn now() -> Instant;

    /// `fut`'s output, or [`Error::Timeout`] once `limit` has passed.
    fn timeout<F>(limit: Duration, fut: F) -> impl Future<Output = Result<F::Output, Error>> + Send
    where
        F: Future + Send,
        F::Output: Send;
}

/// A cloneable, `Send + Sync` handle to a QMP connection run by an async adapter's driver task
/// (`qmp_async::Qmp` and `qmp_tokio::Qmp` are this handle).
///
/// Any number of tasks may call it at once: their commands are issued in the order of the
/// calls and pipeline on the one connection (the engine keeps at most
/// [`ClientConfig::max_in_flight`](qmp_proto::ClientConfig::max_in_flight) in-band commands in
/// flight and queues the rest; out-of-band ones overtake the queue).
///
/// # Methods
///
/// The calls are the core's ([`qmp_proto::Client`]) and the blocking adapter's, each with
/// one [`CallOptions`] (timeout, [out of band](CallOptions::oob),
/// [without an id](CallOptions::without_id), [file descriptors](CallOptions::fd)):
///
/// * **Commands**: [`execute`](Self::execute) (a name and arguments, the result decoded
///   into any type) and [`execute_with`](Self::execute_with);
///   [`execute_and_wait`](Self::execute_and_wait) (a command and the event it causes);
///   [`quit`](Self::quit).
/// * **Typed commands**: [`call`](Self::call) is the typed form of `execute`:
///   `qmp.call(QueryStatus::new()).await` returns a `StatusInfo` (the types of the
///   `qmp-types` crate, or any [`Command`]); [`call_with`](Self::call_with),
///   [`call_and_wait`](Self::call_and_wait) (with a typed event).
/// * **Raw requests**: [`execute_raw`](Self::execute_raw) (a whole request as JSON, with any
///   id or none; the result undecoded).
/// * **Capabilities of this QEMU**: [`schema`](Self::schema) (`query-qmp-schema`, fetched
///   once per session), [`commands`](Self::commands) (`query-commands`).
/// * **Events**: [`subscribe`](Self::subscribe),
///   [`subscribe_across_sessions`](Self::subscribe_across_sessions).
/// * **Tracked VM status and jobs** (with the builder's `track_status`):
///   [`vm_status`](Self::vm_status), [`jobs`](Self::jobs),
///   [`vm_status_watch`](Self::vm_status_watch), [`job_watch`](Self::job_watch),
///   [`wait_vm_status`](Self::wait_vm_status), [`wait_job`](Self::wait_job),
///   [`refresh_status`](Self::refresh_status), [`status_settled`](Self::status_settled).
/// * **Connection**: [`state`](Self::state), [`state_watch`](Self::state_watch),
///   [`status`](Self::status), [`greeting`](Self::greeting), [`oob_enabled`](Self::oob_enabled),
///   [`pending`](Self::pending), [`disconnect_reason`](Self::disconnect_reason),
///   [`is_finished`](Self::is_finished), [`closed`](Self::closed), [`close`](Self::close).
///
/// # Cancellation
///
/// A command is issued when the method is called, not when its future is first polled. A
/// future dropped before the driver took its command cancels it (it is never sent); one
/// dropped later stops waiting: the reply is discarded when it comes, routed by its id, so
/// the stream never desynchronises, and nothing is kept for it afterwards.
///
/// A command's deadline is counted on the runtime's clock ([`Runtime::now`]), from the
/// moment of the call (with `qmp-tokio` and paused time, timeouts fire as the runtime's clock
/// advances).
///
/// The connection lives while a handle exists: when the last one is dropped, the driver
/// closes it.
pub struct Handle<R: Runtime> {
    tx: R::Sender,
    shared: Arc<Shared>,
}

impl<R: Runtime> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R: Runtime> fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Handle<R> {
    /// A handle that sends its requests on `tx`, to the driver that updates `shared`.
    pub fn new(tx: R::Sender, shared: Arc<Shared>) -> Self {
        Handle { tx, shared }
    }

    /// The error a call gets when no session can take it: why the last session ended, or
    /// [`Error::DriverGone`].
    pub fn gone_error(&self) -> Error {
        self.shared.gone_error()
    }

    /// Runs a command and decodes its result into `T` (use [`IgnoredAny`](serde::de::IgnoredAny)
    /// to ignore it, `serde_json::Value` to keep it loose, [`Box<RawValue>`](RawValue) to
    /// keep it undecoded). `args` must serialise to a JSON object, or `&()` for none. The
    /// arguments are serialised at the call, so the future borrows nothing and can be
    /// spawned.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use serde_json::{json, Value};
    ///
    /// let status: Value = qmp.execute("query-status", &()).await?;
    /// let raw: Box<qmp_proto::RawValue> = qmp.execute("query-block", &()).await?;
    /// qmp.execute::<serde::de::IgnoredAny, _>("system_reset", &()).await?;
    /// let args = json!({"command-line": "info mtree"});
    /// let _: Value = qmp.execute("human-monitor-command", &args).await?;
    /// # let _ = (status, raw);
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute<T, A>(
        &self,
        name: &str,
        args: &A,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.execute_with(name, args, CallOptions::new())
    }

    /// [`execute`](Self::execute) with [`CallOptions`]: a timeout, out of band
    /// ([`CallOptions::oob`]: `exec-oob`, which needs OOB negotiated), without an id, file
    /// descriptors to pass.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use qmp_kit::CallOptions;
    /// use serde::de::IgnoredAny;
    ///
    /// let log = std::fs::File::create("/tmp/serial.log")?;
    /// let opts = CallOptions::new().timeout(Duration::from_secs(5)).fd(log);
    /// qmp.execute_with::<IgnoredAny, _>("getfd", &serde_json::json!({"fdname": "serial"}), opts).await?;
    /// let yanks: serde_json::Value =
    ///     qmp.execute_with("query-yank", &(), CallOptions::new().oob(true)).await?;
    /// # let _ = yanks;
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_with<T, A>(
        &self,
        name: &str,
        args: &A,
        opts: CallOptions,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        let call = self.issue(Body::execute(name, args), opts);
        async move { decode(&call.await?) }
    }

    /// Runs a typed command: the typed form of [`execute`](Self::execute). The command's
    /// name comes from its type, its fields are the arguments, and the result decodes into
    /// its [`Returns`](Command::Returns) type. The command is serialised at the call, so the
    /// future borrows nothing and can be spawned.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// # use qmp_proto::{commands::Empty, Command};
    /// # #[derive(serde::Serialize)] struct QueryStatus {}
    /// # #[derive(serde::Deserialize)] struct StatusInfo { status: String }
    /// # impl Command for QueryStatus { const NAME: &'static str = "query-status"; type Returns = StatusInfo; }
    /// # #[derive(serde::Serialize)] struct Cont {}
    /// # impl Command for Cont { const NAME: &'static str = "cont"; type Returns = Empty; }
    /// // QueryStatus and Cont: the qmp-types crate's, or types of your own.
    /// if qmp.call(QueryStatus {}).await?.status == "prelaunch" {
    ///     qmp.call(Cont {}).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A reply that does not decode (a member of an unexpected type) fails this call with [`Error::TypedDecode`], which carries the raw JSON; the connection
    /// and the other calls are not affected.
    pub fn call<C>(
        &self,
        command: C,
    ) -> impl Future<Output = Result<C::Returns, Error>> + Send + 'static
    where
        C: Command + 'static,
    {
        self.call_with(command, CallOptions::new())
    }

    /// [`call`](Self::call) with [`CallOptions`] (timeout, out of band, without an id, file
    /// descriptors). The command is issued through the engine's typed call
    /// ([`Client::call`]), which applies the command's rules: out of band, it fails with
    /// [`Error::Call`]`(`[`CallError::OobNotAllowed`]`)` when the command does not allow
    /// OOB ([`Command::ALLOW_OOB`]), and with `Error::Call(CallError::OobNotNegotiated)`
    /// unless OOB was negotiated; nothing is sent then.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use std::time::Duration;
    /// use qmp_kit::CallOptions;
    /// # use qmp_proto::Command;
    /// # #[derive(serde::Serialize)] struct QueryStatus {}
    /// # impl Command for QueryStatus { const NAME: &'static str = "query-status"; type Returns = serde_json::Value; }
    ///
    /// let opts = CallOptions::new().timeout(Duration::from_secs(1));
    /// let status = qmp.call_with(QueryStatus {}, opts).await?;
    /// # let _ = status;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_with<C>(
        &self,
        command: C,
        opts: CallOptions,
    ) -> impl Future<Output = Result<C::Returns, Error>> + Send + 'static
    where
        C: Command + 'static,
    {
        let call = self.issue(Body::call(&command), opts);
        async move {
            let raw = call.await?;
            Ok(qmp_proto::decode_return::<C>(&raw)?)
        }
    }

    /// Sends a whole request, as the core's [`Client::execute_raw`] takes it, and returns
    /// the result as raw JSON, undecoded. The request must be a JSON object. An `"id"` in
    /// it, of any JSON type, is sent as it is and the reply is routed by it (it must not
    /// equal another pending command's: [`CallError::DuplicateId`]); without one, the engine
    /// adds its own, or sends none with [`CallOptions::without_id`]. The request says
    /// whether it runs out of band (`"exec-oob"`); [`CallOptions::oob`] insists that it
    /// does.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use qmp_kit::CallOptions;
    /// use serde_json::json;
    ///
    /// let request = json!({"execute": "query-status", "id": "status-1"});
    /// let status = qmp.execute_raw(request, CallOptions::new()).await?;
    /// println!("{}", status.get());
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_raw(
        &self,
        request: Value,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Box<RawValue>, Error>> + Send + 'static {
        self.issue(Ok(Body::raw(request)), opts)
    }

    /// Hands a request to the driver and waits for its result. `body` is `Err` when it could
    /// not be made (its arguments did not serialise): then nothing is sent.
    fn issue(
        &self,
        body: Result<Body, Error>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Box<RawValue>, Error>> + Send + 'static {
        let issued = body.and_then(|body| {
            let (request, result) = Request::call(body, opts, R::now());
            R::send(&self.tx, request)
                .map(|()| result)
                .map_err(|_| self.shared.gone_error())
        });
        let shared = Arc::clone(&self.shared);
        async move {
            match issued?.await {
                Some(result) => result,
                None => Err(shared.gone_error()),
            }
        }
    }

    /// Runs a command and waits for the first event matching `filter` that comes after the
    /// call, whether QEMU sends it before or after the reply (`STOP` comes before `stop`'s
    /// reply; a job's events may come later). The listener is subscribed before the command
    /// is issued, so the event cannot be missed. A timeout in `opts` bounds the whole wait.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use qmp_kit::{CallOptions, EventFilter};
    /// use serde::de::IgnoredAny;
    ///
    /// let (_, stop) = qmp
    ///     .execute_and_wait::<IgnoredAny, _>("stop", &(), CallOptions::new(), EventFilter::name("STOP"))
    ///     .await?;
    /// println!("stopped at {:?}", stop.timestamp);
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_and_wait<T, A>(
        &self,
        name: &str,
        args: &A,
        opts: CallOptions,
        filter: EventFilter,
    ) -> impl Future<Output = Result<(T, Arc<QmpEvent>), Error>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
        A: Serialize + ?Sized,
    {
        let events = self.subscribe(filter);
        let limit = opts.get_timeout();
        let call = self.execute_with::<T, A>(name, args, opts);
        self.then_event(call, events, limit, "execute_and_wait", |event| {
            Some(Ok(event))
        })
    }

    /// Runs a typed command and waits for the first event of the set `S` that comes after
    /// the call (before or after the reply) and that `matches` accepts, decoded. `S` is one
    /// typed event, or one of several ([`OneOf`](qmp_proto::events::OneOf)). As
    /// [`execute_and_wait`](Self::execute_and_wait): subscribed before the command is issued,
    /// and a timeout in `opts` bounds the whole wait. An event of the set that does not
    /// decode ends the wait with [`Error::TypedDecode`] (it may have been the one).
    ///
    /// The predicate is what tells this `DEVICE_DELETED` from the one of a device's backend
    /// child, or of another device unplugged at the same time:
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// # use qmp_proto::{commands::Empty, events::TypedEvent, Command};
    /// # #[derive(serde::Serialize)] struct DeviceDel { id: String }
    /// # impl Command for DeviceDel { const NAME: &'static str = "device_del"; type Returns = Empty; }
    /// # #[derive(serde::Deserialize)] struct DeviceDeleted { device: Option<String> }
    /// # impl TypedEvent for DeviceDeleted { const NAME: &'static str = "DEVICE_DELETED"; }
    /// use qmp_kit::CallOptions;
    ///
    /// // DeviceDel and DeviceDeleted: the qmp-types crate's, or types of your own.
    /// let del = DeviceDel { id: "disk1".into() };
    /// let (_, _deleted) = qmp
    ///     .call_and_wait(del, CallOptions::new(), |e: &DeviceDeleted| {
    ///         e.device.as_deref() == Some("disk1")
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_and_wait<C, S, F>(
        &self,
        command: C,
        opts: CallOptions,
        mut matches: F,
    ) -> impl Future<Output = Result<(C::Returns, S), Error>> + Send + 'static
    where
        C: Command + 'static,
        C::Returns: Send,
        S: EventSet + Send + 'static,
        F: FnMut(&S) -> bool + Send + 'static,
    {
        let events = self.subscribe(EventFilter::all().predicate(|e| S::has(&e.name)));
        let limit = opts.get_timeout();
        let call = self.call_with(command, opts);
        self.then_event(
            call,
            events,
            limit,
            "call_and_wait",
            move |event| match S::decode_event(&event)? {
                Ok(decoded) if matches(&decoded) => Some(Ok(decoded)),
                Ok(_) => None,
                Err(e) => Some(Err(Error::from(e))),
            },
        )
    }

    /// `call`'s value, then the first event of `events` that `pick` takes (`None` skips
    /// one), all within `limit`: the common part of the `*_and_wait` methods.
    fn then_event<V, P>(
        &self,
        call: impl Future<Output = Result<V, Error>> + Send + 'static,
        mut events: EventStream,
        limit: Option<Duration>,
        what: &'static str,
        mut pick: impl FnMut(Arc<QmpEvent>) -> Option<Result<P, Error>> + Send + 'static,
    ) -> impl Future<Output = Result<(V, P), Error>> + Send + 'static
    where
        V: Send + 'static,
        P: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let both = async move {
            let value = call.await?;
            loop {
                match events.recv().await {
                    Some(Ok(event)) => {
                        if let Some(picked) = pick(event) {
                            return Ok((value, picked?));
                        }
                    }
                    Some(Err(lagged)) => {
                        crate::trace::note(
                            R::TARGET,
                            log::Level::Warn,
                            format_args!("{what}: {lagged}"),
                        );
                    }
                    None => return Err(shared.gone_error()),
                }
            }
        };
        async move {
            match limit {
                Some(limit) => R::timeout(limit, both).await?,
                None => both.await,
            }
        }
    }

    /// This QEMU's QMP schema (`query-qmp-schema`), fetched once per session and shared by
    /// every handle: ask it whether this QEMU has a command, an argument or an event before
    /// relying on one (QEMU versions and builds differ). After a reconnection it is fetched
    /// again, since the peer may be another QEMU.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// let schema = qmp.schema().await?;
    /// if schema.has_command("migrate-pause") && schema.command("migrate-pause").unwrap().allow_oob {
    ///     // ...
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn schema(&self) -> impl Future<Output = Result<Arc<Schema>, Error>> + Send + 'static {
        let (session, cached) = self.shared.cached_schema();
        // Either the cached schema or the call that fetches it.
        let fetch = match cached {
            Some(schema) => Ok(schema),
            None => Err(self.call(qmp_proto::schema::QueryQmpSchema {})),
        };
        let shared = Arc::clone(&self.shared);
        async move {
            let call = match fetch {
                Ok(schema) => return Ok(schema),
                Err(call) => call,
            };
            let schema = Arc::new(call.await?);
            // Kept only if it came from the session it was asked of.
            shared.store_schema(session, &schema);
            Ok(schema)
        }
    }

    /// The names of this QEMU's commands (`query-commands`: much smaller than the schema),
    /// fetched on each call.
    pub fn commands(&self) -> impl Future<Output = Result<Commands, Error>> + Send + 'static {
        self.call(qmp_proto::schema::QueryCommands {})
    }

    /// Asks QEMU to exit. EOF (or a connection reset) after `quit` is the normal end, so
    /// this succeeds when QEMU closes the connection, replied or not. The driver then
    /// finishes.
    pub fn quit(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let call = self.execute::<IgnoredAny, _>("quit", &());
        async move { call.await.map(drop) }
    }

    /// Listens for the events that pass `filter`. Takes effect at once: every matching event
    /// the driver handles from now on is queued for this listener. See [`EventStream`].
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) {
    /// use qmp_kit::EventFilter;
    ///
    /// let mut events = qmp.subscribe(EventFilter::names(["STOP", "RESUME"]));
    /// while let Some(item) = events.recv().await {
    ///     match item {
    ///         Ok(event) => println!("{}", event.name),
    ///         Err(lagged) => println!("missed {}", lagged.missed),
    ///     }
    /// }
    /// // The session ended.
    /// # }
    /// ```
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.shared.subscribe(filter)
    }

    /// Listens for the events that pass `filter` across sessions: after a reconnection the
    /// stream goes on, with a [`SessionItem::NewSession`](super::SessionItem::NewSession)
    /// marker before the events of each new session; it ends when the driver finishes. See
    /// [`SessionEventStream`].
    pub fn subscribe_across_sessions(&self, filter: EventFilter) -> SessionEventStream {
        self.shared.subscribe_across_sessions(filter)
    }

    /// The connection runstate now.
    pub fn state(&self) -> RunState {
        self.shared.runstate()
    }

    /// A watcher of every runstate transition from now on. See [`StateWatch`].
    pub fn state_watch(&self) -> StateWatch {
        self.shared.state_watch()
    }

    /// A stream of connection status changes from now on: sessions connected and ended,
    /// reconnection attempts. See [`StatusStream`].
    pub fn status(&self) -> StatusStream {
        self.shared.status_stream()
    }

    /// The greeting of the current (or last) session: QEMU's version and the capabilities it
    /// offered. A guest agent sends none: an empty one ([`Greeting::default`]) stands for it.
    pub fn greeting(&self) -> Option<Greeting> {
        self.shared.greeting()
    }

    /// Whether out-of-band execution was negotiated on the current (or last) session.
    pub fn oob_enabled(&self) -> bool {
        self.shared.oob_enabled()
    }

    /// Commands issued and not resolved yet (replied, timed out or failed). Calls whose
    /// futures were dropped count until QEMU answers them.
    pub fn pending(&self) -> usize {
        self.shared.pending()
    }

    /// Why the last session ended, once one has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared.disconnect_reason()
    }

    /// Whether the driver has finished: no more sessions will be made.
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// Waits for the driver to finish, and returns why the session ended (at once if it
    /// already has). [`DisconnectReason::Closed`] also stands for a driver that was dropped
    /// (its runtime shut down) before any session ended.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// qmp.quit().await?;
    /// let reason = qmp.closed().await; // Eof { after_quit: true }
    /// # let _ = reason;
    /// # Ok(())
    /// # }
    /// ```
    pub fn closed(&self) -> impl Future<Output = DisconnectReason> + Send + 'static {
        let mut watch = self.shared.state_watch();
        let shared = Arc::clone(&self.shared);
        async move {
            while watch.changed().await.is_some() {}
            shared
                .disconnect_reason()
                .unwrap_or(DisconnectReason::Closed)
        }
    }

    /// The VM's run status, when tracked (the builder's `track_status`) and known: `None`
    /// until the first `query-status` is answered, and for a peer without it
    /// (qemu-storage-daemon). See [`qmp_proto::status`].
    pub fn vm_status(&self) -> Option<VmStatus> {
        self.shared.vm_status()
    }

    /// The tracked jobs, in the order they appeared.
    pub fn jobs(&self) -> Vec<Job> {
        self.shared.jobs()
    }

    /// A watcher of the tracked VM status: its value now, and every change from now on
    /// (across reconnections). See [`VmStatusWatch`].
    pub fn vm_status_watch(&self) -> VmStatusWatch {
        self.shared.vm_status_watch()
    }

    /// A watcher of the tracked jobs: the table now, and every change from now on (across
    /// reconnections). See [`JobWatch`].
    pub fn job_watch(&self) -> JobWatch {
        self.shared.job_watch()
    }

    /// Waits until `pred` holds for the tracked VM status (at once if it holds now), and
    /// returns the status then; fails with [`Error::Timeout`] after `timeout`, or when the
    /// driver finishes first.
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use std::time::Duration;
    /// use qmp_proto::status::VmStatus;
    ///
    /// qmp.execute::<serde::de::IgnoredAny, _>("stop", &()).await?;
    /// qmp.wait_vm_status(|s| s == Some(&VmStatus::Paused), Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_vm_status<F>(
        &self,
        pred: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<VmStatus>, Error>> + Send + 'static
    where
        F: FnMut(Option<&VmStatus>) -> bool + Send + 'static,
    {
        let mut watch = self.shared.vm_status_watch();
        async move { R::timeout(timeout, async move { watch.wait_for(pred).await }).await? }
    }

    /// Waits until `pred` holds for job `id` (`None`: not in the table, or gone from it), at
    /// once if it holds now, and returns the job then (or as it was last, when the change
    /// removed it); fails with [`Error::Timeout`] after `timeout`, or when the driver
    /// finishes first. See [`JobWatch::wait_job`].
    ///
    /// ```no_run
    /// # async fn f<R: qmp_kit::fanout::Runtime>(qmp: qmp_kit::fanout::Handle<R>) -> Result<(), qmp_kit::Error> {
    /// use std::time::Duration;
    /// use qmp_proto::status::JobStatus;
    ///
    /// let ready = |j: Option<&qmp_proto::status::Job>| j.is_some_and(|j| j.status == JobStatus::Ready);
    /// qmp.wait_job("mirror0", ready, Duration::from_secs(60)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_job<F>(
        &self,
        id: &str,
        pred: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Job>, Error>> + Send + 'static
    where
        F: FnMut(Option<&Job>) -> bool + Send + 'static,
    {
        let mut watch = self.shared.job_watch();
        let id = id.to_owned();
        async move { R::timeout(timeout, async move { watch.wait_job(&id, pred).await }).await? }
    }

    /// Asks QEMU again for the tracked VM status and jobs (`query-status`, `query-jobs`),
    /// to learn what changes without events (a job's progress); resolves once the answers
    /// are in and every change they made is reported. Fails when no session is up.
    pub fn refresh_status(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.status_request(true)
    }

    /// Resolves once the queries the trackers have in flight (after a `STOP`, say: see
    /// [`qmp_proto::status::asks_vm_status`]) are answered and their changes reported,
    /// without asking anything new: at once when none is. Fails when no session is up.
    pub fn status_settled(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.status_request(false)
    }

    fn status_request(
        &self,
        ask: bool,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let (reply, done) = super::reply::slot();
        let request = Request::RefreshStatus {
            at: R::now(),
            reply,
            ask,
        };
        let sent = R::send(&self.tx, request);
        let shared = Arc::clone(&self.shared);
        async move {
            if sent.is_err() {
                return Err(shared.gone_error());
            }
            done.await.unwrap_or_else(|| Err(shared.gone_error()))
        }
    }

    /// Closes the connection: pending calls fail with
    /// [`Error::Disconnected`]`(`[`DisconnectReason::Closed`]`)`, listeners end, the driver
    /// finishes. Idempotent; takes effect when the driver next runs.
    pub fn close(&self) {
        let _ = R::send(&self.tx, Request::Close);
    }
}
