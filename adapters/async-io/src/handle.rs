//! The handle: commands, listeners and watchers, from any task.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use futures_lite::StreamExt;
use qmp_proto::events::TypedEvent;
use qmp_proto::schema::{Commands, Schema};
use qmp_proto::{CallError, Command, DisconnectReason, Greeting, QmpEvent, RawValue, RunState};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::driver::Request;
use crate::events::{EventFilter, EventStream};
use crate::shared::Shared;
use crate::watch::{StateWatch, StatusStream};
use crate::Error;

/// Options for one command: a timeout, out-of-band execution, file descriptors to pass.
///
/// ```no_run
/// # async fn f(qmp: qmp_async::Qmp) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use qmp_async::{CallOptions, IgnoredAny};
///
/// let log = std::fs::File::create("/tmp/serial.log")?;
/// let opts = CallOptions::new().timeout(Duration::from_secs(5)).fd(log);
/// qmp.execute_with::<IgnoredAny, _>("getfd", &serde_json::json!({"fdname": "serial"}), opts).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    oob: bool,
    fds: Vec<OwnedFd>,
}

impl CallOptions {
    /// The default timeout ([`Builder::timeout`](crate::Builder::timeout)), in band, no file
    /// descriptors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for this command, counted from the call, instead of the default one. Past
    /// it the call fails with [`Error::Timeout`]; the command keeps its place in QEMU's queue
    /// and its late reply is discarded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the command out of band (`exec-oob`): it is written at once, ahead of queued
    /// in-band commands, and QEMU may answer it before them. Needs OOB negotiated and a
    /// command that allows it.
    pub fn oob(mut self, oob: bool) -> Self {
        self.oob = oob;
        self
    }

    /// Attaches a file descriptor (a `File`, a socket, an `OwnedFd`, ...), sent as
    /// `SCM_RIGHTS` with the first byte of the command, in stream order, for `getfd` or
    /// `add-fd`. Unix sockets only ([`Error::FdsUnsupported`] otherwise). It is closed here
    /// once sent, or when the call fails.
    pub fn fd(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.fds.push(fd.into());
        self
    }
}

/// A cloneable, `Send + Sync` handle to a QMP connection run by a [`Driver`](crate::Driver).
///
/// Any number of tasks may call it at once: their commands are issued in the order of the
/// calls and pipeline on the one connection (the engine keeps at most
/// [`ClientConfig::max_in_flight`](crate::ClientConfig::max_in_flight) in-band commands in
/// flight and queues the rest; out-of-band ones overtake the queue).
///
/// # Methods
///
/// * **Typed commands**: [`call`](Self::call) is the typed form of `execute`:
///   `qmp.call(QueryStatus {}).await` returns a
///   [`StatusInfo`](qmp_proto::commands::StatusInfo) (types in [`qmp_proto::commands`], or
///   any [`Command`]); [`call_oob`](Self::call_oob), [`call_with`](Self::call_with),
///   [`call_and_wait`](Self::call_and_wait) (with a typed event).
/// * **Capabilities of this QEMU**: [`schema`](Self::schema) (`query-qmp-schema`, fetched
///   once per session), [`commands`](Self::commands) (`query-commands`).
/// * **Commands**: [`execute`](Self::execute) (name, arguments, result type),
///   [`execute_oob`](Self::execute_oob), [`execute_with`](Self::execute_with) (timeout,
///   out-of-band, file descriptors), [`execute_raw`](Self::execute_raw) (raw JSON),
///   [`execute_and_wait`](Self::execute_and_wait) (a command and the event it causes),
///   [`quit`](Self::quit).
/// * **Events**: [`subscribe`](Self::subscribe).
/// * **Connection**: [`state`](Self::state), [`state_watch`](Self::state_watch),
///   [`status`](Self::status), [`greeting`](Self::greeting),
///   [`oob_enabled`](Self::oob_enabled), [`pending`](Self::pending),
///   [`disconnect_reason`](Self::disconnect_reason), [`close`](Self::close).
///
/// # Cancellation
///
/// A command is issued when the method is called, not when its future is first polled. A
/// future dropped before the driver took its command cancels it (it is never sent); one
/// dropped later stops waiting: the reply is discarded when it comes, routed by its id, so
/// the stream never desynchronises, and nothing is kept for it afterwards.
///
/// The connection lives while a handle exists: when the last one is dropped, the driver
/// closes it.
#[derive(Debug, Clone)]
pub struct Qmp {
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

impl Qmp {
    pub(crate) fn new(tx: Sender<Request>, shared: Arc<Shared>) -> Self {
        Qmp { tx, shared }
    }

    /// Runs a command and decodes its result into `T` (use [`IgnoredAny`](crate::IgnoredAny)
    /// to ignore it, `serde_json::Value` to keep it loose). `args` must serialise to a JSON
    /// object, or `&()` for none. The arguments are serialised at the call, so the future
    /// borrows nothing and can be spawned.
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

    /// [`execute`](Self::execute) out of band.
    pub fn execute_oob<T, A>(
        &self,
        name: &str,
        args: &A,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.execute_with(name, args, CallOptions::new().oob(true))
    }

    /// [`execute`](Self::execute) with [`CallOptions`].
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
        let call = self.execute_raw(name, args, opts);
        async move { decode(&call.await?) }
    }

    /// Runs a typed command: the typed form of [`execute`](Self::execute). The command's
    /// name comes from its type, its fields are the arguments, and the result decodes into
    /// its [`Returns`](Command::Returns) type. The command is serialised at the call, so the
    /// future borrows nothing and can be spawned.
    ///
    /// ```no_run
    /// # async fn f(qmp: qmp_async::Qmp) -> Result<(), qmp_async::Error> {
    /// use qmp_proto::commands::{Cont, QueryStatus, VmRunState};
    ///
    /// if qmp.call(QueryStatus {}).await?.status == VmRunState::Prelaunch {
    ///     qmp.call(Cont {}).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A reply that does not decode (such as an enum value newer than these types) fails
    /// this call with [`Error::TypedDecode`], which carries the raw JSON; the connection
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

    /// [`call`](Self::call) out of band. Fails with
    /// [`Error::Call`]`(`[`CallError::OobNotAllowed`]`)` when the command does not allow
    /// OOB ([`Command::ALLOW_OOB`]), and with `Error::Call(CallError::OobNotNegotiated)`
    /// unless OOB was negotiated; nothing is sent then.
    pub fn call_oob<C>(
        &self,
        command: C,
    ) -> impl Future<Output = Result<C::Returns, Error>> + Send + 'static
    where
        C: Command + 'static,
    {
        self.call_with(command, CallOptions::new().oob(true))
    }

    /// [`call`](Self::call) with [`CallOptions`] (timeout, out of band, file descriptors).
    pub fn call_with<C>(
        &self,
        command: C,
        opts: CallOptions,
    ) -> impl Future<Output = Result<C::Returns, Error>> + Send + 'static
    where
        C: Command + 'static,
    {
        let call = if opts.oob && !C::ALLOW_OOB {
            // The descriptors in `opts` are closed here: nothing is sent.
            Err(Error::Call(CallError::OobNotAllowed(C::NAME)))
        } else {
            Ok(self.execute_raw(C::NAME, &command, opts))
        };
        async move {
            let raw = call?.await?;
            Ok(qmp_proto::decode_return::<C>(&raw)?)
        }
    }

    /// Runs a typed command and waits for the first event `E` that comes after the call,
    /// before or after the reply, decoded. As [`execute_and_wait`](Self::execute_and_wait):
    /// subscribed before the command is issued, and a timeout in `opts` bounds the whole
    /// wait.
    ///
    /// ```no_run
    /// # async fn f(qmp: qmp_async::Qmp) -> Result<(), qmp_async::Error> {
    /// use qmp_async::CallOptions;
    /// use qmp_proto::{commands, events};
    ///
    /// let (_, events::Stop {}) = qmp.call_and_wait(commands::Stop {}, CallOptions::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_and_wait<C, E>(
        &self,
        command: C,
        opts: CallOptions,
    ) -> impl Future<Output = Result<(C::Returns, E), Error>> + Send + 'static
    where
        C: Command + 'static,
        C::Returns: Send,
        E: TypedEvent + Send + 'static,
    {
        let events = self.subscribe(EventFilter::name(E::NAME));
        let limit = opts.timeout;
        let call = self.call_with(command, opts);
        self.then_event(call, events, limit, "call_and_wait", |event| {
            event
                .decode::<E>()
                .map(|decoded| decoded.map_err(Error::from))
        })
    }

    /// `call`'s value, then the first event of `events` that `pick` takes (`None` skips
    /// one), all within `limit`: the common part of the `*_and_wait` methods.
    fn then_event<V, R>(
        &self,
        call: impl Future<Output = Result<V, Error>> + Send + 'static,
        mut events: EventStream,
        limit: Option<Duration>,
        what: &'static str,
        mut pick: impl FnMut(Arc<QmpEvent>) -> Option<Result<R, Error>> + Send + 'static,
    ) -> impl Future<Output = Result<(V, R), Error>> + Send + 'static
    where
        V: Send + 'static,
        R: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let both = async move {
            let value = call.await?;
            loop {
                match events.next().await {
                    Some(Ok(event)) => {
                        if let Some(picked) = pick(event) {
                            return Ok((value, picked?));
                        }
                    }
                    Some(Err(lagged)) => {
                        log::warn!(target: crate::driver::TARGET, "{what}: {lagged}");
                    }
                    None => return Err(shared.gone_error()),
                }
            }
        };
        async move {
            match limit {
                Some(limit) => crate::timeout(limit, both).await?,
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
    /// # async fn f(qmp: qmp_async::Qmp) -> Result<(), qmp_async::Error> {
    /// let schema = qmp.schema().await?;
    /// if schema.has_command("migrate-pause") && schema.command("migrate-pause").unwrap().allow_oob {
    ///     // ...
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn schema(&self) -> impl Future<Output = Result<Arc<Schema>, Error>> + Send + 'static {
        let (session, cached) = {
            let s = self.shared.lock();
            let cached = s
                .schema
                .as_ref()
                .filter(|(session, _)| *session == s.session)
                .map(|(_, schema)| Arc::clone(schema));
            (s.session, cached)
        };
        // Either the cached schema or the call that fetches it.
        let fetch = match cached {
            Some(schema) => Ok(schema),
            None => Err(self.call(qmp_proto::commands::QueryQmpSchema {})),
        };
        let shared = Arc::clone(&self.shared);
        async move {
            let call = match fetch {
                Ok(schema) => return Ok(schema),
                Err(call) => call,
            };
            let schema = Arc::new(call.await?);
            let mut s = shared.lock();
            // Kept only if it came from the session it was asked of.
            if s.session == session {
                s.schema = Some((session, Arc::clone(&schema)));
            }
            Ok(schema)
        }
    }

    /// The names of this QEMU's commands (`query-commands`: much smaller than the schema),
    /// fetched on each call.
    pub fn commands(&self) -> impl Future<Output = Result<Commands, Error>> + Send + 'static {
        self.call(qmp_proto::commands::QueryCommands {})
    }

    /// Runs a command and returns its result as raw JSON, undecoded.
    pub fn execute_raw<A>(
        &self,
        name: &str,
        args: &A,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Box<RawValue>, Error>> + Send + 'static
    where
        A: Serialize + ?Sized,
    {
        let (reply, result) = crate::reply::slot();
        let issued = serde_json::value::to_raw_value(args)
            .map_err(|e| Error::Call(CallError::Serialize(e.to_string())))
            .and_then(|args| {
                let request = Request::Execute {
                    oob: opts.oob,
                    name: name.to_owned(),
                    args,
                    timeout: opts.timeout,
                    fds: opts.fds,
                    at: Instant::now(),
                    reply,
                };
                self.tx
                    .try_send(request)
                    .map_err(|_| self.shared.gone_error())
            });
        let shared = Arc::clone(&self.shared);
        async move {
            issued?;
            match result.await {
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
    /// # async fn f(qmp: qmp_async::Qmp) -> Result<(), qmp_async::Error> {
    /// use qmp_async::{CallOptions, EventFilter, IgnoredAny};
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
        let limit = opts.timeout;
        let call = self.execute_with::<T, A>(name, args, opts);
        self.then_event(call, events, limit, "execute_and_wait", |event| {
            Some(Ok(event))
        })
    }

    /// Asks QEMU to exit. EOF (or a connection reset) after `quit` is the normal end, so
    /// this succeeds when QEMU closes the connection, replied or not. The driver then
    /// finishes, or reconnects if it was built with [`Reconnect`](crate::Reconnect).
    pub fn quit(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let call = self.execute_raw("quit", &(), CallOptions::new());
        async move { call.await.map(drop) }
    }

    /// Listens for the events that pass `filter`. Takes effect at once: every matching event
    /// the driver handles from now on is queued for this listener. See [`EventStream`].
    ///
    /// ```no_run
    /// # async fn f(qmp: qmp_async::Qmp) {
    /// use futures_lite::StreamExt;
    /// use qmp_async::EventFilter;
    ///
    /// let mut events = qmp.subscribe(EventFilter::names(["STOP", "RESUME"]));
    /// while let Some(item) = events.next().await {
    ///     match item {
    ///         Ok(event) => println!("{}", event.name),
    ///         Err(lagged) => println!("missed {}", lagged.missed),
    ///     }
    /// }
    /// // The session ended.
    /// # }
    /// ```
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        EventStream::new(Arc::clone(&self.shared), filter)
    }

    /// The connection runstate now.
    pub fn state(&self) -> RunState {
        self.shared.lock().runstate
    }

    /// A watcher of every runstate transition from now on. See [`StateWatch`].
    pub fn state_watch(&self) -> StateWatch {
        StateWatch::new(Arc::clone(&self.shared))
    }

    /// A stream of connection status changes from now on: sessions connected and ended,
    /// reconnection attempts. See [`StatusStream`].
    pub fn status(&self) -> StatusStream {
        StatusStream::new(Arc::clone(&self.shared))
    }

    /// The greeting of the current (or last) session.
    pub fn greeting(&self) -> Option<Greeting> {
        self.shared.lock().greeting.clone()
    }

    /// Whether out-of-band execution was negotiated on the current (or last) session.
    pub fn oob_enabled(&self) -> bool {
        self.shared.lock().oob
    }

    /// Commands issued and not resolved yet (replied, timed out or failed). Calls whose
    /// futures were dropped count until QEMU answers them.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending
    }

    /// Why the last session ended, once one has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared.lock().last_reason.clone()
    }

    /// Whether the driver has finished: no more sessions will be made.
    pub fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Closes the connection and stops reconnecting: pending calls fail with
    /// [`Error::Disconnected`]`(`[`DisconnectReason::Closed`]`)`, listeners end, the driver
    /// finishes. Idempotent; takes effect when the driver next runs.
    pub fn close(&self) {
        let _ = self.tx.try_send(Request::Close);
    }
}

fn decode<T: DeserializeOwned>(raw: &RawValue) -> Result<T, Error> {
    Ok(serde_json::from_str(raw.get())?)
}
