//! The fake QEMU's outgoing migration: capabilities, parameters, and a migration that runs
//! in virtual time over the RAM of `-M pc -nodefaults` (128 MiB and the firmware's ROMs,
//! mostly zero pages: 617030 bytes on the wire), with QEMU's MIGRATION and MIGRATION_PASS events and run states (`finish-migrate`,
//! `postmigrate`). Nothing is written anywhere: an `exec:` command never runs, a `unix:` or
//! `tcp:` address is never connected to, a `file:` is never created.
//!
//! Each answer was compared with qemu-system-x86_64 10.0.2 (`-M pc -nodefaults -S`;
//! `-machine none` answers the same but for its RAM: `ram.total` 0, 1089 bytes sent). Whatever the model cannot
//! answer exactly is `None` here, which the fake turns into "does not model".

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{Context, Outcome};

/// `ram.total` of `-M pc -nodefaults` with its default 128 MiB (`pc.ram`, the BIOS and
/// the option ROMs), as `query-migrate` reports it.
const RAM_TOTAL: u64 = 134_750_208;

const PAGE_SIZE: u64 = 4096;

/// What QEMU 10.0.2 sends of that VM in `prelaunch`: almost all pages are zero pages
/// (`duplicate`, a few bytes each on the wire), a few hold data (`normal`); `transferred`
/// counts the bytes on the wire.
const WIRE_TOTAL: u64 = 617_030;
const PAGES: u64 = RAM_TOTAL / PAGE_SIZE;
const NORMAL_PAGES: u64 = 51;

/// QEMU measures the bandwidth (and so the threshold under which it syncs the dirty
/// bitmap once more before the switchover) every 100 ms of a migration.
const BANDWIDTH_PERIOD: Duration = Duration::from_millis(100);

/// QEMU's capabilities, in `query-migrate-capabilities` order.
const CAPS: [&str; 22] = [
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "events",
    "postcopy-ram",
    "x-colo",
    "release-ram",
    "return-path",
    "pause-before-switchover",
    "multifd",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
    "background-snapshot",
    "zero-copy-send",
    "postcopy-preempt",
    "switchover-ack",
    "dirty-limit",
    "mapped-ram",
];

/// The capabilities whose effect on `migrate` the model knows: those two, and those that
/// change nothing of what QEMU shows of a migration of this VM to `exec:` (`xbzrle` adds
/// its cache's statistics to `query-migrate`).
const MODELLED_CAPS: &[&str] = &[
    "events",
    "pause-before-switchover",
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "x-colo",
    "release-ram",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
];

/// The capabilities `background-snapshot` refuses, in the order QEMU checks them.
const BACKGROUND_SNAPSHOT_INCOMPATIBLE: &[&str] = &[
    "postcopy-ram",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "return-path",
    "multifd",
    "pause-before-switchover",
    "auto-converge",
    "release-ram",
    "rdma-pin-all",
    "xbzrle",
    "x-colo",
    "validate-uuid",
    "zero-copy-send",
];

/// QEMU's parameters with their defaults, in the schema's order (the order in which QEMU
/// inserts them into its dictionary; the server prints them in the dictionary's order).
const PARAMS: [(&str, Default); 28] = [
    ("announce-initial", Default::Int(50)),
    ("announce-max", Default::Int(550)),
    ("announce-rounds", Default::Int(5)),
    ("announce-step", Default::Int(100)),
    ("throttle-trigger-threshold", Default::Int(50)),
    ("cpu-throttle-initial", Default::Int(20)),
    ("cpu-throttle-increment", Default::Int(10)),
    ("cpu-throttle-tailslow", Default::Bool(false)),
    ("tls-creds", Default::Str("")),
    ("tls-hostname", Default::Str("")),
    ("tls-authz", Default::Str("")),
    ("max-bandwidth", Default::Int(128 << 20)),
    ("avail-switchover-bandwidth", Default::Int(0)),
    ("downtime-limit", Default::Int(300)),
    ("x-checkpoint-delay", Default::Int(20000)),
    ("multifd-channels", Default::Int(2)),
    ("xbzrle-cache-size", Default::Int(64 << 20)),
    ("max-postcopy-bandwidth", Default::Int(0)),
    ("max-cpu-throttle", Default::Int(99)),
    ("multifd-compression", Default::Str("none")),
    ("multifd-zlib-level", Default::Int(1)),
    ("multifd-qatzip-level", Default::Int(1)),
    ("multifd-zstd-level", Default::Int(1)),
    ("x-vcpu-dirty-limit-period", Default::Int(1000)),
    ("vcpu-dirty-limit", Default::Int(1)),
    ("mode", Default::Str("normal")),
    ("zero-page-detection", Default::Str("multifd")),
    ("direct-io", Default::Bool(false)),
];

#[derive(Clone, Copy)]
enum Default {
    Bool(bool),
    Int(u64),
    Str(&'static str),
}

/// `migrate_params_check`'s range checks, in its order: the parameter, its name in the
/// message, the bounds and what the message says it expects.
const RANGES: &[(&str, &str, u64, u64, &str)] = &[
    (
        "throttle-trigger-threshold",
        "throttle_trigger_threshold",
        1,
        100,
        "an integer in the range of 1 to 100",
    ),
    (
        "cpu-throttle-initial",
        "cpu_throttle_initial",
        1,
        99,
        "an integer in the range of 1 to 99",
    ),
    (
        "cpu-throttle-increment",
        "cpu_throttle_increment",
        1,
        99,
        "an integer in the range of 1 to 99",
    ),
    (
        "downtime-limit",
        "downtime_limit",
        0,
        2_000_000,
        "an integer in the range of 0 to (2000 * 1000) ms",
    ),
    (
        "multifd-channels",
        "multifd_channels",
        1,
        255,
        "a value between 1 and 255",
    ),
    (
        "multifd-zlib-level",
        "multifd_zlib_level",
        0,
        9,
        "a value between 0 and 9",
    ),
    (
        "multifd-qatzip-level",
        "multifd_qatzip_level",
        1,
        9,
        "a value between 1 and 9",
    ),
    (
        "multifd-zstd-level",
        "multifd_zstd_level",
        0,
        20,
        "a value between 0 and 20",
    ),
];

/// The checks after `xbzrle-cache-size` and `max-cpu-throttle`.
const ANNOUNCE_RANGES: &[(&str, &str, u64, u64, &str)] = &[
    (
        "announce-initial",
        "announce_initial",
        0,
        100_000,
        "a value between 0 and 100000",
    ),
    (
        "announce-max",
        "announce_max",
        0,
        100_000,
        "a value between 0 and 100000",
    ),
    (
        "announce-rounds",
        "announce_rounds",
        0,
        1000,
        "a value between 0 and 1000",
    ),
    (
        "announce-step",
        "announce_step",
        1,
        10_000,
        "a value between 0 and 10000",
    ),
    (
        "x-vcpu-dirty-limit-period",
        "x-vcpu-dirty-limit-period",
        1,
        1000,
        "a value between 1 and 1000",
    ),
];

/// A migration's status, as `MigrationStatus` names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    None,
    Setup,
    Active,
    PreSwitchover,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::None => "none",
            Phase::Setup => "setup",
            Phase::Active => "active",
            Phase::PreSwitchover => "pre-switchover",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
        }
    }

    /// QEMU's `migration_is_running`.
    fn running(self) -> bool {
        matches!(
            self,
            Phase::Setup | Phase::Active | Phase::PreSwitchover | Phase::Cancelling
        )
    }
}

/// What the migration's next timer does.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Next {
    /// The migration thread starts: MIGRATION_PASS 1, `active`.
    Start,
    /// All of RAM is sent: the VM stops, then `pre-switchover` or the end.
    Finish,
    /// `device`, the last pass, `completed`.
    Complete,
    /// A cancelled migration ends.
    Cancelled(Phase),
    /// The migration fails with this error.
    Fail(String),
}

/// The state of outgoing migration: capabilities, parameters, the last migration.
#[derive(Debug)]
pub(crate) struct Migration {
    caps: [bool; 22],
    params: Vec<Value>,
    /// The link's speed in bytes per second (0: no limit but `max-bandwidth`).
    link_speed: u64,
    phase: Phase,
    /// When the migration started, went `active`, and ended (none before the first one).
    start: Option<Instant>,
    active_at: Option<Instant>,
    end: Option<Instant>,
    /// RAM sent at `base_at`, and the rate since then (bytes per second, 0: all at once).
    base_at: Option<Instant>,
    base_bytes: u64,
    rate: u64,
    /// The RAM transfer stopped (the migration was cancelled or finished sending).
    frozen: bool,
    passes: u64,
    expected_downtime: u64,
    error_desc: Option<String>,
    /// The VM's state when the migration stopped it for the switchover.
    old_status: Option<&'static str>,
    generation: u64,
    pending: Option<(u64, Next)>,
    wake: Option<(Instant, u64)>,
}

/// Milliseconds from `a` to `b` (0 when either is unknown).
fn ms(a: Option<Instant>, b: Option<Instant>) -> u64 {
    match (a, b) {
        (Some(a), Some(b)) => {
            u64::try_from(b.saturating_duration_since(a).as_millis()).unwrap_or(u64::MAX)
        }
        _ => 0,
    }
}

/// A number as QEMU prints a double: integers without a fraction.
fn float_text(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_owned()
    }
}

/// An integer argument as QEMU's input visitor reads it for an unsigned parameter: a
/// negative number wraps around.
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_i64().map(|i| i as u64))
}

/// A `file:` URI's offset, as `qemu_strtosz` reads it; the error is `file URI has bad
/// offset ...`.
fn parse_offset(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (num, suffix) = text.split_at(digits);
    if text.starts_with('-') {
        return Err(format!(
            "file URI has bad offset {text}: Numerical result out of range"
        ));
    }
    let shift = match suffix {
        "" | "b" | "B" => Some(0),
        "k" | "K" => Some(10),
        "m" | "M" => Some(20),
        "g" | "G" => Some(30),
        "t" | "T" => Some(40),
        "p" | "P" => Some(50),
        "e" | "E" => Some(60),
        _ => None,
    };
    match (num.parse::<u64>(), shift) {
        (Ok(n), Some(s)) => n.checked_mul(1 << s).ok_or_else(|| {
            format!("file URI has bad offset {text}: Numerical result out of range")
        }),
        _ => Err(format!("file URI has bad offset {text}: Invalid argument")),
    }
}

/// QEMU's `inet_parse` of `host:port` (or `[v6]:port`), with its errors.
fn inet_parse(addr: &str) -> Result<(), String> {
    let main = addr.split(',').next().unwrap_or_default();
    if let Some(port) = main.strip_prefix(':') {
        return if port.is_empty() {
            Err(format!("error parsing port in address '{addr}'"))
        } else {
            Ok(())
        };
    }
    if let Some(v6) = main.strip_prefix('[') {
        return match v6.split_once("]:") {
            Some((host, port)) if !host.is_empty() && !port.is_empty() => Ok(()),
            _ => Err(format!("error parsing IPv6 address '{addr}'")),
        };
    }
    match main.split_once(':') {
        Some((host, port)) if !host.is_empty() && !port.is_empty() => Ok(()),
        _ => Err(format!("error parsing address '{addr}'")),
    }
}

/// What a migration needs of the rest of the fake.
pub(crate) trait Host {
    /// Takes the descriptor passed with `getfd` under this name, if there is one.
    fn take_fd(&mut self, name: &str) -> bool;
    /// Whether `/objects` has an object with this id.
    fn has_object(&self, id: &str) -> bool;
}

/// Where a migration goes, once its address is understood.
enum Target {
    /// A socket (`unix`, `inet`, `vsock`), connected in the background.
    Socket,
    /// A file.
    File,
    /// A program's standard input (`exec`): one channel only.
    Exec,
    /// A `file:` that cannot be created (an empty name) or a program that cannot run:
    /// QEMU's message.
    CannotCreate(String),
    /// `fd:NAME`: a descriptor passed with `getfd`.
    Fd(String),
}

/// QEMU's `migrate_uri_parse` for the URIs the model knows; `None` for the others.
fn parse_uri(uri: &str) -> Option<Result<Target, String>> {
    if uri.starts_with("exec:") {
        return Some(Ok(Target::Exec));
    }
    if let Some(path) = uri.strip_prefix("unix:") {
        return Some(if path.is_empty() {
            Err("invalid Unix socket address".to_owned())
        } else {
            Ok(Target::Socket)
        });
    }
    if let Some(addr) = uri.strip_prefix("tcp:") {
        return Some(inet_parse(addr).map(|()| Target::Socket));
    }
    if let Some(addr) = uri.strip_prefix("vsock:") {
        return Some(match addr.split_once(':') {
            Some((cid, port)) if !cid.is_empty() && !port.is_empty() => Ok(Target::Socket),
            _ => Err(format!("error parsing address '{addr}'")),
        });
    }
    if let Some(rest) = uri.strip_prefix("file:") {
        let (name, offset) = match rest.find(",offset=") {
            Some(at) => (&rest[..at], Some(&rest[at + ",offset=".len()..])),
            None => (rest, None),
        };
        if let Some(o) = offset {
            if let Err(e) = parse_offset(o) {
                return Some(Err(e));
            }
        }
        return Some(Ok(file_target(name)));
    }
    if let Some(name) = uri.strip_prefix("fd:") {
        if name.is_empty() {
            return Some(Err("invalid file descriptor address".to_owned()));
        }
        // A number is a descriptor of QEMU's own: nothing the model has.
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        return Some(Ok(Target::Fd(name.to_owned())));
    }
    if uri.starts_with("rdma:") {
        return None;
    }
    Some(Err(format!("unknown migration protocol: {uri}")))
}

fn file_target(name: &str) -> Target {
    if name.is_empty() {
        Target::CannotCreate(format!(
            "Could not create '{name}': No such file or directory"
        ))
    } else {
        Target::File
    }
}

/// The `channels` form of `migrate`: one `main` channel (the schema has checked its shape).
fn parse_channels(channels: &[Value]) -> Option<Result<Target, String>> {
    let mains = channels
        .iter()
        .filter(|c| c.get("channel-type").and_then(Value::as_str) == Some("main"))
        .count();
    if mains > 1 {
        return Some(Err("Channel list has more than one main entry".to_owned()));
    }
    let [channel] = channels else {
        return None;
    };
    if mains != 1 {
        return None;
    }
    let addr = channel.get("addr")?;
    match addr.get("transport").and_then(Value::as_str)? {
        "exec" => {
            // QEMU spawns the program without a search of `PATH`: a bare name is a file
            // of the current directory, which the model takes as missing.
            let program = addr.get("args")?.as_array()?.first()?.as_str()?;
            Some(Ok(if program.contains('/') {
                Target::Exec
            } else {
                Target::CannotCreate(format!(
                    "Failed to execute child process \u{201c}{program}\u{201d} (No such file or directory)"
                ))
            }))
        }
        "file" => Some(Ok(file_target(addr.get("filename")?.as_str()?))),
        "socket" => match addr.get("type").and_then(Value::as_str)? {
            "unix" | "inet" | "vsock" => Some(Ok(Target::Socket)),
            _ => None,
        },
        _ => None,
    }
}

impl Migration {
    pub(crate) fn new() -> Self {
        Migration {
            caps: [false; 22],
            params: PARAMS
                .iter()
                .map(|(_, d)| match d {
                    Default::Bool(b) => Value::Bool(*b),
                    Default::Int(i) => Value::from(*i),
                    Default::Str(s) => Value::String((*s).to_owned()),
                })
                .collect(),
            link_speed: 0,
            phase: Phase::None,
            start: None,
            active_at: None,
            end: None,
            base_at: None,
            base_bytes: 0,
            rate: 0,
            frozen: false,
            passes: 0,
            expected_downtime: 0,
            error_desc: None,
            old_status: None,
            generation: 0,
            pending: None,
            wake: None,
        }
    }

    /// Sets the link's speed (bytes per second; 0: only `max-bandwidth` limits).
    pub(crate) fn set_link_speed(&mut self, bytes_per_sec: u64) {
        self.link_speed = bytes_per_sec;
    }

    /// The `migrate-pause` answer: the model has no postcopy.
    pub(crate) fn pause_error() -> Outcome {
        Outcome::generic_error(
            "migrate-pause is currently only supported during postcopy-active or postcopy-recover state",
        )
    }

    /// The timer the fake must set, if any: when, and the generation to hand back.
    pub(crate) fn take_wake(&mut self) -> Option<(Instant, u64)> {
        self.wake.take()
    }

    fn cap(&self, name: &str) -> bool {
        CAPS.iter()
            .position(|c| *c == name)
            .is_some_and(|i| self.caps[i])
    }

    fn param_u64(params: &[Value], name: &str) -> u64 {
        let i = PARAMS.iter().position(|(n, _)| *n == name).unwrap_or(0);
        as_u64(&params[i]).unwrap_or(0)
    }

    fn param_str<'a>(params: &'a [Value], name: &str) -> &'a str {
        let i = PARAMS.iter().position(|(n, _)| *n == name).unwrap_or(0);
        params[i].as_str().unwrap_or_default()
    }

    /// Sets the next timer, and forgets the one before.
    fn set_timer(&mut self, at: Instant, next: Next) {
        self.generation += 1;
        self.pending = Some((self.generation, next));
        self.wake = Some((at, self.generation));
    }

    fn event(&self, ctx: &mut Context<'_>, status: &str) {
        if self.cap("events") {
            ctx.emit_event_json("MIGRATION", &format!(r#"{{"status": "{status}"}}"#));
        }
    }

    fn pass(&mut self, ctx: &mut Context<'_>) {
        self.passes += 1;
        if self.cap("events") {
            ctx.emit_event_json("MIGRATION_PASS", &format!(r#"{{"pass": {}}}"#, self.passes));
        }
    }

    fn set_phase(&mut self, ctx: &mut Context<'_>, phase: Phase) {
        self.phase = phase;
        self.event(ctx, phase.name());
    }

    /// The rate of the RAM transfer: the smaller of `max-bandwidth` and the link's speed.
    fn current_rate(&self) -> u64 {
        let max = Self::param_u64(&self.params, "max-bandwidth");
        match (max, self.link_speed) {
            (0, l) => l,
            (m, 0) => m,
            (m, l) => m.min(l),
        }
    }

    fn transferred(&self, now: Instant) -> u64 {
        if self.frozen {
            return self.base_bytes;
        }
        if self.rate == 0 {
            return WIRE_TOTAL;
        }
        let Some(base_at) = self.base_at else {
            return self.base_bytes;
        };
        let elapsed = now.saturating_duration_since(base_at).as_nanos();
        let sent = elapsed.saturating_mul(u128::from(self.rate)) / 1_000_000_000;
        let sent = u64::try_from(sent).unwrap_or(u64::MAX);
        self.base_bytes.saturating_add(sent).min(WIRE_TOTAL)
    }

    /// Freezes the transfer at what was sent by `now`.
    fn freeze(&mut self, now: Instant) {
        self.base_bytes = self.transferred(now);
        self.base_at = Some(now);
        self.frozen = true;
    }

    /// Restarts the transfer from what was sent by `now` at the current rate, and sets the
    /// timer for its end.
    fn retime(&mut self, now: Instant) {
        self.base_bytes = self.transferred(now);
        self.base_at = Some(now);
        self.frozen = false;
        self.rate = self.current_rate();
        let left = WIRE_TOTAL - self.base_bytes;
        let at = if self.rate == 0 {
            Some(now)
        } else {
            let nanos = (u128::from(left) * 1_000_000_000).div_ceil(u128::from(self.rate));
            now.checked_add(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        };
        match at {
            Some(at) => self.set_timer(at, Next::Finish),
            // Beyond what the clock can tell: the migration never ends.
            None => {
                self.generation += 1;
                self.pending = None;
            }
        }
    }

    /// Runs a migration command; `None` for the other commands. `status` is the VM's run
    /// state, which a migration changes.
    pub(crate) fn command(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        args: &Map<String, Value>,
        status: &mut &'static str,
        host: &mut dyn Host,
    ) -> Option<Outcome> {
        Some(match name {
            "query-migrate-capabilities" => {
                let items: Vec<String> = CAPS
                    .iter()
                    .zip(self.caps)
                    .map(|(c, on)| format!(r#"{{"capability": "{c}", "state": {on}}}"#))
                    .collect();
                Outcome::Json(format!("[{}]", items.join(", ")))
            }
            "migrate-set-capabilities" => self.set_capabilities(args),
            "query-migrate-parameters" => {
                let items: Vec<String> = PARAMS
                    .iter()
                    .zip(&self.params)
                    .map(|((n, _), v)| format!(r#""{n}": {v}"#))
                    .collect();
                Outcome::Json(format!("{{{}}}", items.join(", ")))
            }
            "migrate-set-parameters" => return self.set_parameters(ctx, args),
            "query-migrate" => self.query(ctx.now()),
            "migrate" => return self.migrate(ctx, args, status, host),
            "migrate_cancel" => self.cancel(ctx),
            "migrate-continue" => {
                let want = args
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if want != self.phase.name() {
                    return Some(Outcome::generic_error(format!(
                        "Migration not in expected state: {}",
                        self.phase.name()
                    )));
                }
                // Elsewhere than in `pre-switchover` it releases nothing: QEMU drains the
                // semaphore before it waits on it.
                if self.phase == Phase::PreSwitchover {
                    self.set_timer(ctx.now(), Next::Complete);
                }
                Outcome::empty()
            }
            "migrate-pause" => Self::pause_error(),
            "migrate-incoming" => {
                Outcome::generic_error("'-incoming' was not specified on the command line")
            }
            "migrate-recover" => {
                Outcome::generic_error("Migrate recover can only be run when postcopy is paused.")
            }
            "migrate-start-postcopy" if !self.cap("postcopy-ram") => Outcome::generic_error(
                "Enable postcopy with migrate_set_capability before the start of migration",
            ),
            _ => return None,
        })
    }

    /// QEMU's `qmp_migrate_set_capabilities` and `migrate_caps_check`.
    fn set_capabilities(&mut self, args: &Map<String, Value>) -> Outcome {
        if self.phase.running() {
            return Outcome::generic_error("There's a migration process in progress");
        }
        let mut new = self.caps;
        let list = args.get("capabilities").and_then(Value::as_array);
        for item in list.into_iter().flatten() {
            let name = item.get("capability").and_then(Value::as_str);
            let state = item.get("state").and_then(Value::as_bool);
            if let (Some(name), Some(state)) = (name, state) {
                if let Some(i) = CAPS.iter().position(|c| *c == name) {
                    new[i] = state;
                }
            }
        }
        let on = |name: &str| CAPS.iter().position(|c| *c == name).is_some_and(|i| new[i]);
        let compressed = Self::param_str(&self.params, "multifd-compression") != "none";
        let tls = !Self::param_str(&self.params, "tls-creds").is_empty();
        let error = if on("postcopy-ram") && on("x-ignore-shared") {
            Some("Postcopy is not compatible with ignore-shared".to_owned())
        } else if on("postcopy-ram") && on("multifd") {
            Some("Postcopy is not yet compatible with multifd".to_owned())
        } else if let Some(c) = BACKGROUND_SNAPSHOT_INCOMPATIBLE
            .iter()
            .find(|c| on("background-snapshot") && on(c))
        {
            Some(format!("Background-snapshot is not compatible with {c}"))
        } else if on("zero-copy-send") && (!on("multifd") || on("xbzrle") || compressed || tls) {
            Some("Zero copy only available for non-compressed non-TLS multifd migration".to_owned())
        } else if on("postcopy-preempt") && !on("postcopy-ram") {
            Some("Postcopy preempt requires postcopy-ram".to_owned())
        } else if on("switchover-ack") && !on("return-path") {
            Some("Capability 'switchover-ack' requires capability 'return-path'".to_owned())
        } else if on("dirty-limit") && on("auto-converge") {
            Some(
                "dirty-limit conflicts with auto-converge either of then available currently"
                    .to_owned(),
            )
        } else if on("dirty-limit") {
            Some(
                "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set"
                    .to_owned(),
            )
        } else if on("multifd") && on("xbzrle") {
            Some("Multifd is not compatible with xbzrle".to_owned())
        } else if on("mapped-ram") && on("xbzrle") {
            Some("Mapped-ram migration is incompatible with xbzrle".to_owned())
        } else if on("mapped-ram") && on("postcopy-ram") {
            Some("Mapped-ram migration is incompatible with postcopy".to_owned())
        } else {
            None
        };
        match error {
            Some(e) => Outcome::generic_error(e),
            None => {
                self.caps = new;
                Outcome::empty()
            }
        }
    }

    /// QEMU's `qmp_migrate_set_parameters` and `migrate_params_check`, on the parameters
    /// as they would be after the change.
    fn set_parameters(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        if args.contains_key("block-bitmap-mapping") {
            return None;
        }
        let mut new = self.params.clone();
        for (name, value) in args {
            let i = PARAMS.iter().position(|(n, _)| n == name)?;
            new[i] = match PARAMS[i].1 {
                Default::Bool(_) => Value::Bool(value.as_bool()?),
                Default::Int(_) => Value::from(as_u64(value)?),
                // `tls-*` take null for "".
                Default::Str(_) => Value::String(value.as_str().unwrap_or_default().to_owned()),
            };
        }
        let get = |name: &str| Self::param_u64(&new, name);
        let expects = |name: &str, what: &str| {
            Some(Outcome::generic_error(format!(
                "Parameter '{name}' expects {what}"
            )))
        };
        for (param, shown, lo, hi, what) in RANGES {
            let v = get(param);
            if v < *lo || v > *hi {
                return expects(shown, what);
            }
        }
        let cache = get("xbzrle-cache-size");
        if cache < PAGE_SIZE || !cache.is_power_of_two() {
            return expects(
                "xbzrle_cache_size",
                "a power of two no less than the target page size",
            );
        }
        let max_throttle = get("max-cpu-throttle");
        if max_throttle < get("cpu-throttle-initial") || max_throttle > 99 {
            return expects(
                "max_cpu_throttle",
                "an integer in the range of cpu_throttle_initial to 99",
            );
        }
        for (param, shown, lo, hi, what) in &ANNOUNCE_RANGES[..4] {
            let v = get(param);
            if v < *lo || v > *hi {
                return expects(shown, what);
            }
        }
        let compressed = Self::param_str(&new, "multifd-compression") != "none";
        let tls = !Self::param_str(&new, "tls-creds").is_empty();
        if self.cap("zero-copy-send") && (compressed || tls) {
            return Some(Outcome::generic_error(
                "Zero copy only available for non-compressed non-TLS multifd migration",
            ));
        }
        // QEMU checks the parameters in force, not the new ones, here.
        let old_compressed = Self::param_str(&self.params, "multifd-compression") != "none";
        let old_tls = !Self::param_str(&self.params, "tls-creds").is_empty();
        if self.cap("mapped-ram") && (old_compressed || old_tls) {
            return Some(Outcome::generic_error(
                "Mapped-ram only available for non-compressed non-TLS multifd migration",
            ));
        }
        for (param, shown, lo, hi, what) in &ANNOUNCE_RANGES[4..] {
            let v = get(param);
            if v < *lo || v > *hi {
                return expects(shown, what);
            }
        }
        if get("vcpu-dirty-limit") < 1 {
            return Some(Outcome::generic_error(
                "Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s",
            ));
        }
        let bandwidth_changed =
            get("max-bandwidth") != Self::param_u64(&self.params, "max-bandwidth");
        self.params = new;
        // A new bandwidth applies to a migration that is sending RAM.
        if bandwidth_changed && self.phase == Phase::Active && !self.frozen {
            self.retime(ctx.now());
        }
        Some(Outcome::empty())
    }

    /// QEMU's `qmp_migrate` for the addresses, capabilities and parameters the model knows.
    fn migrate(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
        status: &mut &'static str,
        host: &mut dyn Host,
    ) -> Option<Outcome> {
        let uri = args.get("uri").and_then(Value::as_str);
        let channels = args
            .get("channels")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty());
        let target = match (uri, channels) {
            (Some(u), None) => parse_uri(u)?,
            (None, Some(c)) => parse_channels(c)?,
            _ => {
                return Some(Outcome::generic_error(
                    "need either 'uri' or 'channels' argument",
                ))
            }
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => return Some(Outcome::generic_error(e)),
        };
        // `migration_transport_compatible`.
        if self.cap("multifd") && matches!(target, Target::Exec) {
            return Some(Outcome::generic_error(
                "Migration requires multi-channel URIs (e.g. tcp)",
            ));
        }
        if args.get("resume").and_then(Value::as_bool) == Some(true) {
            return Some(Outcome::generic_error(
                "Cannot resume if there is no paused migration",
            ));
        }
        if self.phase.running() {
            return Some(Outcome::generic_error(
                "There's a migration process in progress",
            ));
        }
        if *status == "postmigrate" {
            return Some(Outcome::generic_error(
                "Can't migrate the vm that was paused due to previous migration",
            ));
        }
        let unmodelled_cap = CAPS
            .iter()
            .zip(self.caps)
            .any(|(c, on)| on && !MODELLED_CAPS.contains(c));
        let tls = Self::param_str(&self.params, "tls-creds").to_owned();
        if unmodelled_cap
            || Self::param_str(&self.params, "mode") != "normal"
            || (!tls.is_empty() && !matches!(target, Target::Exec | Target::Socket))
        {
            return None;
        }
        // `migrate_init`.
        let now = ctx.now();
        self.start = Some(now);
        self.active_at = Some(now);
        self.end = None;
        self.base_at = Some(now);
        self.base_bytes = 0;
        self.rate = 0;
        // Nothing is sent before the migration is `active`.
        self.frozen = true;
        self.passes = 0;
        self.error_desc = None;
        self.old_status = None;
        self.pending = None;
        self.expected_downtime = Self::param_u64(&self.params, "downtime-limit");
        self.set_phase(ctx, Phase::Setup);
        let error = match &target {
            Target::Socket | Target::File | Target::Exec => None,
            Target::CannotCreate(e) => Some(e.clone()),
            Target::Fd(name) => (!host.take_fd(name))
                .then(|| format!("File descriptor named '{name}' has not been found")),
        };
        if let Some(e) = error {
            self.fail(ctx, e.clone());
            return Some(Outcome::generic_error(e));
        }
        // The channel's TLS handshake finds no credentials (the fake has no `tls-creds-*`
        // objects): the migration fails, and `migrate` itself succeeds. A socket gets
        // there once connected, after the reply.
        if !tls.is_empty() {
            let e = if host.has_object(&tls) {
                format!("Object with id '{tls}' is not TLS credentials")
            } else {
                format!("No TLS credentials with id '{tls}'")
            };
            if matches!(target, Target::Socket) {
                self.set_timer(now, Next::Fail(e));
            } else {
                self.fail(ctx, e);
            }
            return Some(Outcome::empty());
        }
        self.set_timer(now, Next::Start);
        Some(Outcome::empty())
    }

    /// The migration fails with this error.
    fn fail(&mut self, ctx: &mut Context<'_>, e: String) {
        self.end = Some(ctx.now());
        self.error_desc = Some(e);
        self.set_phase(ctx, Phase::Failed);
    }

    /// QEMU's `migration_cancel`: a running migration is `cancelling`, and ends on the
    /// next timer; one `cancelling` already says so again; otherwise nothing happens.
    fn cancel(&mut self, ctx: &mut Context<'_>) -> Outcome {
        let from = self.phase;
        // Once more while `cancelling`: QEMU sets the same status again, with its event.
        if from == Phase::Cancelling {
            self.set_phase(ctx, Phase::Cancelling);
            return Outcome::empty();
        }
        if !matches!(from, Phase::Setup | Phase::Active | Phase::PreSwitchover) {
            return Outcome::empty();
        }
        let now = ctx.now();
        if from == Phase::Active {
            self.freeze(now);
        }
        self.set_phase(ctx, Phase::Cancelling);
        self.set_timer(now, Next::Cancelled(from));
        Outcome::empty()
    }

    /// Runs the migration's timer, if `generation` is its current one.
    pub(crate) fn on_timer(
        &mut self,
        ctx: &mut Context<'_>,
        generation: u64,
        status: &mut &'static str,
    ) {
        let Some((g, next)) = self.pending.take() else {
            return;
        };
        if g != generation {
            self.pending = Some((g, next));
            return;
        }
        let now = ctx.now();
        match next {
            Next::Start => {
                self.pass(ctx);
                self.set_phase(ctx, Phase::Active);
                self.active_at = Some(now);
                self.retime(now);
                if self.rate == 0 {
                    self.pending = None;
                    self.wake = None;
                    self.finish(ctx, status);
                }
            }
            Next::Finish => self.finish(ctx, status),
            Next::Complete => self.complete(ctx, status),
            Next::Fail(e) => self.fail(ctx, e),
            Next::Cancelled(from) => {
                match from {
                    Phase::Setup => {
                        self.pass(ctx);
                        self.error_desc =
                            Some("ram_save_setup failed: Input/output error".to_owned());
                    }
                    Phase::PreSwitchover => {
                        self.error_desc = Some("Channel error: Input/output error".to_owned());
                    }
                    _ => {}
                }
                // `migration_iteration_finish`: a VM the migration stopped runs again, or
                // goes back to the state it had.
                match self.old_status {
                    Some("running") => {
                        ctx.emit_event("RESUME", None);
                        *status = "running";
                    }
                    Some(old) if *status == "finish-migrate" => *status = old,
                    _ => {}
                }
                self.end = Some(now);
                self.set_phase(ctx, Phase::Cancelled);
            }
        }
    }

    /// All of RAM is sent: the VM stops (STOP if it ran), then the switchover.
    fn finish(&mut self, ctx: &mut Context<'_>, status: &mut &'static str) {
        let now = ctx.now();
        self.freeze(now);
        self.base_bytes = WIRE_TOTAL;
        // A migration that ran long enough for QEMU to measure its bandwidth has a
        // threshold above the nothing that is left: one more sync (a pass) first.
        if self
            .active_at
            .is_some_and(|a| now.saturating_duration_since(a) >= BANDWIDTH_PERIOD)
        {
            self.pass(ctx);
        }
        self.old_status = Some(*status);
        if *status == "running" {
            ctx.emit_event("STOP", None);
        }
        *status = "finish-migrate";
        if self.cap("pause-before-switchover") {
            self.set_phase(ctx, Phase::PreSwitchover);
            return;
        }
        self.complete(ctx, status);
    }

    fn complete(&mut self, ctx: &mut Context<'_>, status: &mut &'static str) {
        self.event(ctx, "device");
        self.pass(ctx);
        self.end = Some(ctx.now());
        *status = "postmigrate";
        self.set_phase(ctx, Phase::Completed);
    }

    /// `query-migrate`, in QEMU's shape for each status (members in the order QEMU inserts
    /// them).
    fn query(&self, now: Instant) -> Outcome {
        let status = self.phase.name();
        let text = match self.phase {
            Phase::None => "{}".to_owned(),
            Phase::Setup => format!(r#"{{"status": "{status}"}}"#),
            Phase::Failed | Phase::Cancelled => match &self.error_desc {
                Some(e) => format!(
                    r#"{{"status": "{status}", "error-desc": {}}}"#,
                    Value::String(e.clone())
                ),
                None => format!(r#"{{"status": "{status}"}}"#),
            },
            Phase::Active | Phase::PreSwitchover | Phase::Cancelling => format!(
                r#"{{"status": "{status}", "ram": {}{}, "total-time": {}, "expected-downtime": {}, "setup-time": {}}}"#,
                self.ram_text(now),
                self.xbzrle_text(),
                ms(self.start, Some(now)),
                self.expected_downtime,
                ms(self.start, self.active_at),
            ),
            Phase::Completed => format!(
                r#"{{"status": "{status}", "ram": {}{}, "total-time": {}, "downtime": 0, "setup-time": {}}}"#,
                self.ram_text(now),
                self.xbzrle_text(),
                ms(self.start, self.end),
                ms(self.start, self.active_at),
            ),
        };
        Outcome::Json(text)
    }

    /// The `xbzrle-cache` member of `query-migrate` (after `ram`), with `xbzrle`: an empty
    /// cache, the VM's pages never change.
    fn xbzrle_text(&self) -> String {
        if !self.cap("xbzrle") {
            return String::new();
        }
        format!(
            r#", "xbzrle-cache": {{"cache-size": {}, "bytes": 0, "pages": 0, "cache-miss": 0, "cache-miss-rate": 0, "encoding-rate": 0, "overflow": 0}}"#,
            Self::param_u64(&self.params, "xbzrle-cache-size")
        )
    }

    /// The `ram` member of `query-migrate`.
    fn ram_text(&self, now: Instant) -> String {
        let completed = self.phase == Phase::Completed;
        let at = if completed {
            self.end.unwrap_or(now)
        } else {
            now
        };
        let sent = self.transferred(at);
        // The pages gone so far, in proportion to the bytes on the wire.
        let done = u64::try_from(u128::from(PAGES) * u128::from(sent) / u128::from(WIRE_TOTAL))
            .unwrap_or(PAGES);
        let normal =
            u64::try_from(u128::from(NORMAL_PAGES) * u128::from(sent) / u128::from(WIRE_TOTAL))
                .unwrap_or(NORMAL_PAGES);
        let secs = self
            .active_at
            .map_or(0.0, |a| at.saturating_duration_since(a).as_secs_f64());
        let sending = !completed && !self.frozen && self.rate > 0;
        let mbps = if sending {
            self.rate as f64 * 8.0 / 1e6
        } else if secs > 0.0 {
            sent as f64 * 8.0 / 1e6 / secs
        } else {
            0.0
        };
        let pps = if sending {
            u64::try_from(u128::from(self.rate) * u128::from(PAGES) / u128::from(WIRE_TOTAL))
                .unwrap_or(u64::MAX)
        } else {
            0
        };
        format!(
            concat!(
                r#"{{"transferred": {sent}, "remaining": {remaining}, "total": {total}, "#,
                r#""duplicate": {duplicate}, "normal": {normal}, "normal-bytes": {normal_bytes}, "#,
                r#""dirty-pages-rate": 0, "mbps": {mbps}, "dirty-sync-count": {syncs}, "#,
                r#""postcopy-requests": 0, "page-size": 4096, "multifd-bytes": 0, "#,
                r#""pages-per-second": {pps}, "precopy-bytes": {sent}, "downtime-bytes": 0, "#,
                r#""postcopy-bytes": 0, "dirty-sync-missed-zero-copy": 0}}"#
            ),
            total = RAM_TOTAL,
            syncs = self.passes.max(1),
            pps = pps,
            remaining = RAM_TOTAL - done * PAGE_SIZE,
            duplicate = done - normal,
            mbps = float_text(mbps),
            sent = sent,
            normal_bytes = normal * PAGE_SIZE,
            normal = normal,
        )
    }
}
