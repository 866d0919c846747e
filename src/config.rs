//! Client configuration and per-command options.

use std::time::Duration;

/// Configuration of a [`Client`](crate::Client). Build it from [`Default`] and the setters:
///
/// ```
/// use std::time::Duration;
/// use qmp_proto::ClientConfig;
///
/// let config = ClientConfig::default()
///     .greeting_timeout(Some(Duration::from_secs(5)))
///     .command_timeout(Some(Duration::from_secs(60)))
///     .oob(false);
/// assert_eq!(config.get_max_in_flight(), 8);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) max_message_size: usize,
    pub(crate) max_depth: usize,
    pub(crate) greeting_timeout: Option<Duration>,
    pub(crate) negotiation_timeout: Option<Duration>,
    pub(crate) command_timeout: Option<Duration>,
    pub(crate) oob: bool,
    pub(crate) max_in_flight: usize,
    pub(crate) max_buffered_events: usize,
    pub(crate) max_events_before_greeting: usize,
    pub(crate) trace_messages: bool,
    pub(crate) guest_agent: bool,
    pub(crate) sync_timeout: Option<Duration>,
    pub(crate) sync_seed: u64,
    pub(crate) track_vm_status: bool,
    pub(crate) track_jobs: bool,
    pub(crate) max_tracked_jobs: usize,
}

/// The default command deadline of [`ClientConfig::for_guest_agent`]: an agent that is not
/// running in the guest answers nothing at all.
pub const GUEST_AGENT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_message_size: 10 * 1024 * 1024,
            max_depth: 1024,
            greeting_timeout: Some(Duration::from_secs(30)),
            negotiation_timeout: Some(Duration::from_secs(30)),
            command_timeout: None,
            oob: true,
            max_in_flight: 8,
            max_buffered_events: 10_000,
            max_events_before_greeting: 16,
            trace_messages: false,
            guest_agent: false,
            sync_timeout: Some(Duration::from_secs(10)),
            sync_seed: 0x9e37_79b9_7f4a_7c15,
            track_vm_status: false,
            track_jobs: false,
            max_tracked_jobs: 256,
        }
    }
}

impl ClientConfig {
    /// How many QMP events may come before the greeting (default 16). Some QEMU builds and
    /// set-ups send an event (a `VSERPORT_CHANGE`, say) before the greeting; they are held and
    /// delivered in order, ahead of everything after the greeting, once the greeting is
    /// valid. One more ends the session with
    /// [`ProtocolError::EventsBeforeGreeting`](crate::ProtocolError::EventsBeforeGreeting);
    /// `0` accepts none (the first message must be the greeting).
    pub fn max_events_before_greeting(mut self, events: usize) -> Self {
        self.max_events_before_greeting = events;
        self
    }

    /// The largest message accepted from the server, in bytes (default 10 MiB, as libvirt and
    /// qemu.qmp use). A larger message ends the session with
    /// [`ProtocolError::MessageTooLarge`](crate::ProtocolError::MessageTooLarge) as soon as
    /// its size is exceeded, so the receive buffer never holds more than this. Some real
    /// replies are larger (`query-named-block-nodes` on deep backing chains): raise it for
    /// those. Values below 2 are treated as 2.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The deepest nesting accepted in a server message (default 1024, QEMU's own input
    /// limit). Deeper nesting ends the session with
    /// [`ProtocolError::TooDeep`](crate::ProtocolError::TooDeep). Values below 1 are treated
    /// as 1.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// How long to wait for the greeting after [`connect`](crate::Client::connect) (default
    /// 30 s; `None` waits forever). A monitor serves one client at a time, so a second client
    /// is never greeted while the first stays.
    pub fn greeting_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.greeting_timeout = timeout;
        self
    }

    /// How long to wait for the answer to `qmp_capabilities` (default 30 s; `None` waits
    /// forever).
    pub fn negotiation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.negotiation_timeout = timeout;
        self
    }

    /// The default deadline of each command, counted from the call (default `None`: no
    /// deadline). [`CallOptions::timeout`] overrides it per command.
    pub fn command_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Whether to enable out-of-band execution when the server offers it (default `true`).
    pub fn oob(mut self, enable: bool) -> Self {
        self.oob = enable;
        self
    }

    /// The most in-band commands sent and not yet answered (default 8, which is how many
    /// QEMU queues before it stops reading when OOB is enabled; the QMP specification asks
    /// clients to stay within it so that an OOB command can still be read). Further commands
    /// wait in a local queue, which OOB commands overtake. Values below 1 are treated as 1.
    pub fn max_in_flight(mut self, commands: usize) -> Self {
        self.max_in_flight = commands;
        self
    }

    /// The most server-driven outputs (QMP events and diagnostics) held for
    /// [`poll_event`](crate::Client::poll_event) (default 10,000). Beyond it, further ones are
    /// dropped and counted in [`Event::EventsLost`](crate::Event::EventsLost), so memory
    /// stays bounded when the application does not drain. Replies and state changes are never
    /// dropped.
    pub fn max_buffered_events(mut self, events: usize) -> Self {
        self.max_buffered_events = events;
        self
    }

    /// Whether to report every message sent and received as
    /// [`Event::Traffic`](crate::Event::Traffic) (default `false`), for traffic logs. Costs a
    /// copy of each message, so leave it off unless something will read it. Received
    /// messages count against [`max_buffered_events`](Self::max_buffered_events).
    pub fn trace_messages(mut self, enable: bool) -> Self {
        self.trace_messages = enable;
        self
    }

    /// The configuration for a QEMU guest agent (`qemu-ga`): [`guest_agent`](Self::guest_agent)
    /// mode with a default command deadline of [`GUEST_AGENT_COMMAND_TIMEOUT`] (30 s),
    /// since an agent that is not running in the guest answers nothing at all. Set
    /// [`sync_seed`](Self::sync_seed) from a random source too.
    ///
    /// ```
    /// use qmp_proto::ClientConfig;
    ///
    /// let config = ClientConfig::for_guest_agent().sync_seed(0x1234_5678);
    /// assert!(config.get_guest_agent());
    /// assert!(config.get_command_timeout().is_some());
    /// ```
    pub fn for_guest_agent() -> Self {
        Self::default().with_guest_agent_defaults()
    }

    /// This configuration switched to [`guest_agent`](Self::guest_agent) mode, with a
    /// command deadline of [`GUEST_AGENT_COMMAND_TIMEOUT`] unless one is set.
    pub fn with_guest_agent_defaults(self) -> Self {
        let timeout = self.command_timeout.unwrap_or(GUEST_AGENT_COMMAND_TIMEOUT);
        self.guest_agent(true).command_timeout(Some(timeout))
    }

    /// Whether the peer is a QEMU guest agent rather than a QMP monitor (default `false`).
    ///
    /// A guest agent sends no greeting and has no capabilities negotiation, so
    /// [`connect`](crate::Client::connect) moves straight to
    /// [`Running`](crate::RunState::Running). The channel to an agent outlives clients (a
    /// virtio-serial port keeps what an earlier client left unread, and the agent may be
    /// half-way through an earlier client's input), so the engine resynchronises as the
    /// guest agent protocol describes: it sends a `0xFF` byte and `guest-sync-delimited`
    /// with a fresh id, discards everything the agent sends until the matching reply (which
    /// the agent precedes with a `0xFF` byte), and only then sends the commands it holds. It
    /// does so on connect, after any command that timed out (so a late reply can never be
    /// taken for the next command's), after a command that gets no reply when it succeeds
    /// (`guest-shutdown`, `guest-suspend-*`), and on [`resync`](crate::Client::resync).
    /// No answer within [`sync_timeout`](Self::sync_timeout) ends the session with
    /// [`DisconnectReason::SyncTimeout`](crate::DisconnectReason::SyncTimeout). Prefer
    /// [`for_guest_agent`](Self::for_guest_agent), which also sets a command deadline.
    pub fn guest_agent(mut self, enable: bool) -> Self {
        self.guest_agent = enable;
        self
    }

    /// How long a guest agent may take to answer a resynchronisation (default 10 s; `None`
    /// waits forever). Guest agent mode only.
    pub fn sync_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// The seed of the ids of `guest-sync-delimited` (guest agent mode). Each
    /// resynchronisation takes the next number of a generator seeded with it, so the ids look
    /// random but a test can predict them. Applications should seed it from a random source
    /// (the adapters do), so that a reply left in the channel by another client, which used
    /// its own ids, is never taken for this client's.
    pub fn sync_seed(mut self, seed: u64) -> Self {
        self.sync_seed = seed;
        self
    }

    /// See [`guest_agent`](Self::guest_agent).
    pub fn get_guest_agent(&self) -> bool {
        self.guest_agent
    }

    /// See [`sync_timeout`](Self::sync_timeout).
    pub fn get_sync_timeout(&self) -> Option<Duration> {
        self.sync_timeout
    }

    /// See [`sync_seed`](Self::sync_seed).
    pub fn get_sync_seed(&self) -> u64 {
        self.sync_seed
    }

    /// See [`trace_messages`](Self::trace_messages).
    pub fn get_trace_messages(&self) -> bool {
        self.trace_messages
    }

    /// See [`max_message_size`](Self::max_message_size).
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// See [`max_depth`](Self::max_depth).
    pub fn get_max_depth(&self) -> usize {
        self.max_depth
    }

    /// See [`greeting_timeout`](Self::greeting_timeout).
    pub fn get_greeting_timeout(&self) -> Option<Duration> {
        self.greeting_timeout
    }

    /// See [`negotiation_timeout`](Self::negotiation_timeout).
    pub fn get_negotiation_timeout(&self) -> Option<Duration> {
        self.negotiation_timeout
    }

    /// See [`command_timeout`](Self::command_timeout).
    pub fn get_command_timeout(&self) -> Option<Duration> {
        self.command_timeout
    }

    /// See [`oob`](Self::oob).
    pub fn get_oob(&self) -> bool {
        self.oob
    }

    /// Whether to track the VM's run status (default `false`): the client asks
    /// `query-status` when each session starts and after the run-state events that do not
    /// say the new status, reads `RESUME`, and reports each change as
    /// [`Event::VmStatusChanged`](crate::Event::VmStatusChanged). Its own `query-status`
    /// commands take command ids and in-flight slots; the application never sees them. See
    /// [`status`](crate::status) for the rules. No effect in guest agent mode.
    ///
    /// ```
    /// use qmp_proto::ClientConfig;
    ///
    /// let config = ClientConfig::default().track_vm_status(true).track_jobs(true);
    /// assert!(config.get_track_vm_status() && config.get_track_jobs());
    /// ```
    pub fn track_vm_status(mut self, enable: bool) -> Self {
        self.track_vm_status = enable;
        self
    }

    /// Whether to track jobs (default `false`): a table fed by `JOB_STATUS_CHANGE` and the
    /// `BLOCK_JOB_*` events and brought up to date by `query-jobs` when each session starts
    /// and when a job appears or ends, each change reported as
    /// [`Event::JobChanged`](crate::Event::JobChanged). See [`status`](crate::status). No
    /// effect in guest agent mode.
    pub fn track_jobs(mut self, enable: bool) -> Self {
        self.track_jobs = enable;
        self
    }

    /// Both [`track_vm_status`](Self::track_vm_status) and [`track_jobs`](Self::track_jobs).
    pub fn track_status(self, enable: bool) -> Self {
        self.track_vm_status(enable).track_jobs(enable)
    }

    /// The most jobs tracked at once (default 256), so that a peer cannot grow the table
    /// without bound. A job beyond it is left out and reported once as
    /// [`Diagnostic::JobNotTracked`](crate::Diagnostic::JobNotTracked).
    pub fn max_tracked_jobs(mut self, jobs: usize) -> Self {
        self.max_tracked_jobs = jobs;
        self
    }

    /// See [`track_vm_status`](Self::track_vm_status).
    pub fn get_track_vm_status(&self) -> bool {
        self.track_vm_status
    }

    /// See [`track_jobs`](Self::track_jobs).
    pub fn get_track_jobs(&self) -> bool {
        self.track_jobs
    }

    /// See [`max_tracked_jobs`](Self::max_tracked_jobs).
    pub fn get_max_tracked_jobs(&self) -> usize {
        self.max_tracked_jobs
    }

    /// See [`max_in_flight`](Self::max_in_flight).
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// See [`max_events_before_greeting`](Self::max_events_before_greeting).
    pub fn get_max_events_before_greeting(&self) -> usize {
        self.max_events_before_greeting
    }

    /// See [`max_buffered_events`](Self::max_buffered_events).
    pub fn get_max_buffered_events(&self) -> usize {
        self.max_buffered_events
    }
}

/// Options for one command, taken by every issuing method of the engine
/// ([`Client::execute`](crate::Client::execute), [`Client::call`](crate::Client::call),
/// [`Client::execute_raw`](crate::Client::execute_raw)) and, re-exported, of every adapter.
///
/// The default: the configured command timeout, in band, with an engine-assigned id, no file
/// descriptors.
///
/// ```
/// use std::time::Duration;
/// use qmp_proto::CallOptions;
///
/// let opts = CallOptions::new().timeout(Duration::from_secs(2)).oob(true);
/// assert_eq!(opts.get_timeout(), Some(Duration::from_secs(2)));
/// assert!(opts.get_oob());
/// ```
#[derive(Debug, Default)]
pub struct CallOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) oob: bool,
    pub(crate) without_id: bool,
    #[cfg(unix)]
    pub(crate) fds: Vec<std::os::fd::OwnedFd>,
}

impl CallOptions {
    /// No options: the configured default timeout, in band, no file descriptors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for this command, counted from the call, instead of the configured
    /// default. A command that times out resolves with
    /// [`CommandError::Timeout`](crate::CommandError::Timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the command out of band (`exec-oob`): it is written at once, ahead of queued
    /// in-band commands, and its reply may overtake theirs. The call fails with
    /// [`CallError::OobNotNegotiated`](crate::CallError::OobNotNegotiated) unless the session
    /// is running with OOB enabled, and a typed call with
    /// [`CallError::OobNotAllowed`](crate::CallError::OobNotAllowed) when the command does not
    /// allow it. For [`Client::execute_raw`](crate::Client::execute_raw) the request itself
    /// says `exec-oob`; this option then insists that it really goes out of band.
    pub fn oob(mut self, enable: bool) -> Self {
        self.oob = enable;
        self
    }

    /// Sends the command without an `"id"` member. Its reply has none either: the next id-less
    /// reply resolves it, and so does an id-less error, which QEMU sends when it cannot parse
    /// its input. Only one such command may be pending at a time
    /// ([`CallError::IdlessPending`](crate::CallError::IdlessPending)); a raw request given
    /// with this option must not carry an id
    /// ([`CallError::UnexpectedId`](crate::CallError::UnexpectedId)).
    pub fn without_id(mut self) -> Self {
        self.without_id = true;
        self
    }

    /// Attaches a file descriptor (a `File`, a socket, an `OwnedFd`, ...) to send with this
    /// command (as `SCM_RIGHTS` on a unix socket), for `getfd` or `add-fd`.
    /// [`Client::poll_transmit`](crate::Client::poll_transmit) hands it out with the first
    /// byte of the command; the engine closes its copy once that byte is written. If the call
    /// fails, the descriptor is closed.
    #[cfg(unix)]
    pub fn fd(mut self, fd: impl Into<std::os::fd::OwnedFd>) -> Self {
        self.fds.push(fd.into());
        self
    }

    /// The timeout set with [`timeout`](Self::timeout), if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the command goes out of band ([`oob`](Self::oob)).
    pub fn get_oob(&self) -> bool {
        self.oob
    }

    /// Whether the command is sent without an id ([`without_id`](Self::without_id)).
    pub fn get_without_id(&self) -> bool {
        self.without_id
    }

    /// The file descriptors attached with [`fd`](Self::fd).
    #[cfg(unix)]
    pub fn get_fds(&self) -> &[std::os::fd::OwnedFd] {
        &self.fds
    }
}
