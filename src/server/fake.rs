//! A fake QEMU: a [`Handler`] with the commands a VM manager uses every day.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

#[cfg(unix)]
use std::os::fd::OwnedFd;

use serde_json::{json, Map, Value};

use super::fake_block::{Block, Image};
use super::fake_migrate::{Host, Migration};
use super::fake_qom::Qom;
use super::qapi;
use super::{Call, CallToken, CommandInfo, Context, Handler, Outcome, ServerConfig};

/// A custom command: runs with the context and the arguments.
pub type CustomCommand = Box<dyn FnMut(&mut Context<'_>, &Map<String, Value>) -> Outcome + Send>;

enum Timer {
    /// Complete a delayed command with its outcome.
    Complete(CallToken, Outcome),
    /// Send an event that comes after the reply of the command that caused it.
    Event(&'static str, Value),
    /// The next step of a migration (stale when its generation is not the current one).
    Migration(u64),
}

/// What a migration sees of the fake: the named descriptors and the objects.
struct MigrationHost<'a> {
    #[cfg(unix)]
    fds: &'a mut BTreeMap<String, OwnedFd>,
    qom: &'a Qom,
}

impl Host for MigrationHost<'_> {
    fn take_fd(&mut self, name: &str) -> bool {
        #[cfg(unix)]
        return self.fds.remove(name).is_some();
        #[cfg(not(unix))]
        return {
            let _ = name;
            false
        };
    }

    fn has_object(&self, id: &str) -> bool {
        self.qom.has_object(id)
    }
}

struct Custom {
    allow_oob: bool,
    run: CustomCommand,
}

/// A fake QEMU for tests: answers like qemu-system-x86_64 10.0.2 for the commands it knows,
/// with their events, and lets a test add commands and inject faults.
///
/// Commands: `query-version`, `query-status`, `stop` and `cont` (STOP/RESUME events),
/// `system_reset` (RESET), `system_powerdown` (POWERDOWN), `quit` (SHUTDOWN, then the reply,
/// then the connection closes), `query-name`, `query-commands` and `query-qmp-schema`
/// (QEMU's, with the added commands, or a schema set with [`schema`](Self::schema)),
/// `getfd`, `closefd`,
/// `add-fd`, `remove-fd`, `query-fdsets`, the block layer and its jobs (below),
/// `human-monitor-command` (a few `info` commands), the OOB-capable `query-yank`,
/// `query-iothreads` (none), `query-cpus-fast` (one vCPU, whose `thread-id` is 1),
/// `query-chardev` (the monitor, `compat_monitor0`, on the socket set with
/// [`monitor_path`](Self::monitor_path)), outgoing migration, and objects, devices and the
/// QOM tree of `-M pc -nodefaults`, as listed below.
///
/// Block layer (compared with qemu-storage-daemon 10.0.2). Images are in memory: files
/// registered with [`image`](Self::image) (raw), [`qcow2_image`](Self::qcow2_image) or
/// [`qcow2_overlay`](Self::qcow2_overlay) (qcow2 over a backing file), or made by
/// `blockdev-create`. `blockdev-add` of `null-co` (`size`), `file` (`filename`: a
/// registered path, else `Could not open 'P': No such file or directory`), `raw` and
/// `qcow2` (`file`: a node's name or an inline `{"driver": "file", "filename": P}`, which
/// becomes a generated `#blockNNN` node; qcow2 refuses a file that holds no qcow2 image, a
/// file node another qcow2 node uses (`Permission conflict on node ...`) and an image
/// another qcow2 node writes (`Failed to get "write" lock`); its `backing` is a node's
/// name or null, and without it QEMU's chain of backing files is opened read-only as
/// generated nodes, which go when nothing uses them any more), with QEMU's errors (missing, malformed or duplicate node-name, unknown child or
/// backing node). `blockdev-del` with QEMU's
/// errors in QEMU's order: no such node, a job's target or a file being formatted
/// (`Node x is in use`), a job's source (`Node 'x' is busy: block device is in use by block
/// job: mirror`), a backing node (`Node 'x' is busy: node is used as backing hd of 'y'`), a
/// generated node (`not owned by the monitor`), a node with parents
/// (`Block device x is in use`); an inline child goes with its parent.
/// `query-named-block-nodes` (newest first, with `flat`) shows QEMU's fields and values:
/// sizes, file names (`json:{...}` or `null-co://` for null-co), qcow2's format-specific
/// data, `actual-size` (0 for registered raw files, QEMU's 200704 for a fresh qcow2 image,
/// 4096 for a file made by `blockdev-create`; a qcow2 image a job wrote zeroes to has its
/// L2 tables allocated, as on QEMU), backing files and chains (`backing_file`,
/// `backing-filename`, `backing-image` and the depth unless `flat`), the `mirror_top`
/// filter of a running mirror or active commit, and `dirty-bitmaps`. `query-block` is QEMU's empty list (no device has a drive).
///
/// Dirty bitmaps: `block-dirty-bitmap-add` (granularity a power of two from 512, default
/// 64 KiB; `persistent` only on qcow2; `disabled`), `-remove`, `-clear`, `-enable`,
/// `-disable`, `-merge` (bitmaps of nodes of the same size), with QEMU's errors; they count
/// no dirty bytes (no IO). `transaction` of these actions is all or nothing: the first
/// failing action's error, and nothing changes.
///
/// Jobs: `blockdev-create` (qcow2 on a file node, or a new `file`; `concluded` with an
/// `error` when the node is missing or the size is not a multiple of 512; kept until
/// `job-dismiss`), `blockdev-mirror` (to `ready` with BLOCK_JOB_READY; nodes of different
/// sizes fail with BLOCK_JOB_COMPLETED's `error`; `job-complete` switches the source's
/// parents to the target), `blockdev-backup` (`sync: full`), `block-stream` (with
/// `base-node`: the node then backs onto the base, as its image's header says) and
/// `block-commit` (of an intermediate node: its overlay then backs onto the base; of the
/// active layer: `ready`, then completed like a mirror), with `auto-finalize` and
/// `auto-dismiss` (BLOCK_JOB_PENDING, `job-finalize`, `job-dismiss`), `job-pause`/`resume`
/// (`paused`/`standby` and back, before the reply), `job-cancel` (`aborting`,
/// BLOCK_JOB_CANCELLED), `block-job-cancel` (of a ready mirror without `force`: completes
/// without switching), `job-complete`, their `block-job-*` forms (`DeviceNotActive` for
/// an unknown job), `block-job-set-speed` (the speed events and queries show; jobs take
/// no longer), `query-jobs` and `query-block-jobs`, and QEMU's verb errors (`Job 'x' in
/// state 's' cannot accept command verb 'v'`, `Job not found`, a job id that is missing,
/// malformed or in use, `Need a root block node`, the same node twice, a base outside the
/// chain). Events come in QEMU's order with its data: what QEMU does before its reply
/// comes before the fake's, the rest after it (on the next
/// [`Server::handle_timeout`](super::Server::handle_timeout)), and the jobs' work takes
/// [`job_duration`](Self::job_duration) of virtual time. As on QEMU, a `transaction` and a
/// `blockdev-del` drain the graph: every running or ready job that is not paused sends
/// `paused` and `running` (or `standby` and `ready`) before the reply. Left out (answered
/// as not modelled, or not sent): other drivers and node options, a backing file that
/// is missing, raw or already open, the filter a running stream inserts, base and top given as file names, other sync modes of backup,
/// other transaction actions, bitmap contents and busy bitmaps, persistent bitmaps written
/// into the image, permission conflicts but those of qcow2 on its file,
/// the `standby`/`ready` pairs that ready jobs send while other jobs start and end (QEMU
/// sends several, interleaved with the other job's events), and a merge of an empty list
/// (which aborts QEMU 10.0.2). Caps: 64 images, 64 nodes, 32 bitmaps per node, 16 jobs;
/// past a cap the fake answers with a `GenericError` that names it (QEMU has no such
/// limit).
///
/// Objects: `object-add` of a `memory-backend-ram` (`size` only, a multiple of 4 KiB up to
/// 1 GiB) or a `secret` (`data` only), `object-del` (QEMU's errors: a duplicate id, a
/// malformed id, `size` 0, a secret without `data` or with `data` and `file`, an unknown
/// id, `pc.ram` in use). Devices: `device_add` of `pci-testdev`, `virtio-rng-pci`,
/// `piix3-usb-uhci` (up to 29 PCI devices, on `pci.0`) and `usb-tablet`, `usb-kbd`,
/// `usb-mouse` (on one UHCI controller, two at most), with an id (under
/// `/machine/peripheral`) or without (`device[N]` under `/machine/peripheral-anon`), and
/// QEMU's errors (`'x' is not a valid device model name`, an abstract type, a duplicate
/// id, no USB bus, an unknown property of `pci-testdev`); `query-pci` (each PCI device in
/// the first free slot, with its ids, class and unmapped BARs), `query-mice` (USB mice and
/// tablets with QEMU's handler indexes, the PS/2 mouse current) and `query-memdev` follow
/// them. `device_del` by id or path: a USB
/// device leaves at once and DEVICE_DELETED (`device` and `path`, or `path` alone) comes
/// 50 ms of virtual time after the reply, as QEMU sends it once its RCU thread finalizes the
/// device (a `quit` before then means no event, as in QEMU);
/// a PCI device waits for a guest that never answers: no event, the device stays, and every
/// later request is refused (`Device x is already in the process of unplug`; QEMU 10.0's
/// ACPI PCI hotplug sets no expiry to the request, paused or running), until
/// `system_reset` ejects it (DEVICE_DELETED after the reply, a virtio device's
/// `virtio-backend` child first, in slot order). `qom-list` of `/`,
/// `/machine` (QEMU's recorded list), `/objects`, the two peripheral containers (children
/// in QEMU's hash-table order), an object and a `pci-testdev`; `qom-get` of `type`, a
/// container's children, every property of `/machine` but `rtc-time` (QEMU's recorded
/// values), an object's `size` or `data`, a device's `realized` and `hotplugged`; `qom-set`
/// errors (`Property 'T.x' not found`, `... is not writable`, a backend's `size`) and
/// `realized` true; unknown paths are `DeviceNotFound`. Left out (answered as not
/// modelled): other object types and properties, other device types, aliases and buses,
/// partial paths, `qom-list` of other devices and of `/machine`'s children, writing the
/// machine's settings, reading or writing any other property, and what a PCI device's
/// unplug would do with a guest's help.
///
/// Migration (compared with QEMU in `tests/fake_migrate_vs_qemu.rs`):
/// `query-migrate-capabilities` and `migrate-set-capabilities` (QEMU's 22 capabilities and
/// its compatibility errors, such as `Postcopy is not yet compatible with multifd`; `There's
/// a migration process in progress` while one runs), `query-migrate-parameters` and
/// `migrate-set-parameters` (every parameter read back but `block-bitmap-mapping`, checked
/// as QEMU checks them, e.g. `Parameter 'downtime_limit' expects an integer in the range of
/// 0 to (2000 * 1000) ms`), `query-migrate` (`{}` before any migration, then QEMU's members
/// for each status, with `ram` progress). `migrate` to `exec:`, `unix:`, `tcp:`, `vsock:`,
/// `file:` (with `,offset=`), `fd:NAME` (a descriptor passed with `getfd`, which it takes)
/// or one `main` channel of the `channels` form, with QEMU's errors for malformed
/// addresses, `unknown migration protocol: x`, a migration already running, a VM in
/// `postmigrate`, `resume`; and with MIGRATION events `failed` before the error for an
/// empty `file:` name, an unknown `fd:` name or an `exec` channel whose program has no
/// `/`. Nothing is written, run or connected to: the migration sends `-M pc`'s 128 MiB of
/// RAM and ROMs (`ram.total` 134750208) as QEMU sends that VM in `prelaunch`, mostly zero
/// pages, 617030 bytes on the wire (`ram.transferred`), over virtual time at
/// `max-bandwidth` (128 MiB/s by default, so about 5 ms; changed on the fly; 0 is no
/// limit) or [`migration_speed`](Self::migration_speed) if slower. Its events, with the
/// `events` capability: MIGRATION `setup` before the reply, then MIGRATION_PASS 1 and
/// `active` on the next [`Server::handle_timeout`](super::Server::handle_timeout), then
/// when all is sent one more pass if that took 100 ms or more (QEMU has measured a
/// bandwidth by then and syncs once more), STOP (of a running VM; the VM is in
/// `finish-migrate`), `device`, the last MIGRATION_PASS, `completed`, and the VM in
/// `postmigrate` (`cont` runs it again). With `pause-before-switchover`, the migration waits in `pre-switchover` for
/// `migrate-continue` (`Migration not in expected state: x` otherwise; `cont` there is
/// `Migration is not finalized yet`). `migrate_cancel` of a running migration sends
/// `cancelling` before its reply (again if it is `cancelling` already), then `cancelled`
/// (a VM the migration stopped runs again with RESUME; `error-desc` as QEMU sets it); of
/// any other, nothing. `migrate-pause`, `migrate-incoming`, `migrate-recover` and
/// `migrate-start-postcopy` (without `postcopy-ram`) answer QEMU's errors for a VM with no postcopy and no `-incoming`.
/// `xbzrle` adds its (empty) cache's statistics to `query-migrate`; `rdma-pin-all`,
/// `auto-converge`, `zero-blocks`, `x-colo`, `release-ram`, `dirty-bitmaps`,
/// `postcopy-blocktime`, `late-block-activate`, `x-ignore-shared` and `validate-uuid`
/// change nothing of what QEMU shows of this migration; `multifd` refuses `exec:`
/// (`Migration requires multi-channel URIs (e.g. tcp)`). With `tls-creds` (the fake has
/// no TLS credentials objects) a migration to `exec:` or a socket fails, `migrate`
/// itself succeeds: `No TLS credentials with id 'x'` (or `Object with id 'x' is not TLS
/// credentials`), events before the reply for `exec:`, after it for a socket. Left out
/// (answered as not modelled): `migrate` with the other capabilities (postcopy,
/// `return-path`, `multifd` elsewhere, `mapped-ram`, `background-snapshot`, ...), with
/// `tls-creds` to a file or `fd:`, with a `mode` other than `normal`, to `rdma:` or a
/// numbered `fd:`; `block-bitmap-mapping`; postcopy,
/// incoming migration, HMP `info migrate`; a running guest dirtying its RAM (more passes
/// in QEMU), failures of the transport (an `exec:` command that fails, a `unix:` or `tcp:`
/// address nobody listens on); the short window in which QEMU has sent `completed` but
/// still reports `finish-migrate`; a `migrate_cancel` that QEMU's migration thread races
/// (the fake's `migrate` stays in `setup` until the next timer).
///
/// Every other command of QEMU's schema answers too: the `query-*` commands that take no
/// argument with QEMU's recorded reply (when called without arguments), the rest with a
/// `GenericError` saying that the fake does not model it. Commands QEMU does not have are
/// `CommandNotFound`. Before any of QEMU's commands runs, its arguments are checked
/// against QEMU's schema as QEMU checks them, with QEMU's errors (`Parameter 'x' is
/// missing`, `Invalid parameter type for 'x', expected: integer`, ...). QEMU's schema and
/// replies were recorded from qemu-system-x86_64 10.0.2 (`tools/record_fake_qemu.py`).
///
/// Run states follow QEMU's rules, events before the reply as QEMU sends them: `stop` of a
/// running VM sends STOP and pauses it, of any other VM does nothing (a VM in `prelaunch`
/// stays there); `cont` of a VM that is not running sends RESUME and runs it, of a running
/// one does nothing; `system_reset` sends RESET and puts a VM that is not running in
/// `prelaunch` (but for `finish-migrate`); `system_powerdown` only sends POWERDOWN (there is no guest OS to act on it);
/// HMP `info status` prints `VM status: running`, `VM status: paused` or
/// `VM status: paused (STATUS)`. Events that a guest would cause (a firmware's reset, a
/// guest's shutdown) never come.
///
/// Faults: [`delay`](Self::delay) a command's reply; and through the
/// [`Server`](super::Server): events, raw bytes and dropped connections.
pub struct FakeQemu {
    version: (u64, u64, u64),
    package: String,
    name: Option<String>,
    status: &'static str,
    running: bool,
    #[cfg(unix)]
    fds: BTreeMap<String, OwnedFd>,
    #[cfg(unix)]
    fdsets: BTreeMap<i64, Vec<(i64, OwnedFd, Option<String>)>>,
    next_fd: i64,
    block: Block,
    delays: BTreeMap<String, Duration>,
    timers: Vec<(Instant, Timer)>,
    custom: BTreeMap<String, Custom>,
    schema: Option<Value>,
    qom: Qom,
    migration: Migration,
    monitor_path: String,
}

impl fmt::Debug for FakeQemu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeQemu")
            .field("status", &self.status)
            .field("nodes", &self.block.node_names())
            .field("qom", &self.qom)
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for FakeQemu {
    fn default() -> Self {
        Self::new()
    }
}

const BUILTIN: &[(&str, bool)] = &[
    ("add-fd", false),
    ("block-commit", false),
    ("block-dirty-bitmap-add", false),
    ("block-dirty-bitmap-clear", false),
    ("block-dirty-bitmap-disable", false),
    ("block-dirty-bitmap-enable", false),
    ("block-dirty-bitmap-merge", false),
    ("block-dirty-bitmap-remove", false),
    ("block-job-cancel", false),
    ("block-job-complete", false),
    ("block-job-dismiss", false),
    ("block-job-finalize", false),
    ("block-job-pause", false),
    ("block-job-resume", false),
    ("block-job-set-speed", false),
    ("block-stream", false),
    ("blockdev-add", false),
    ("blockdev-backup", false),
    ("blockdev-create", false),
    ("blockdev-del", false),
    ("blockdev-mirror", false),
    ("closefd", false),
    ("cont", false),
    ("device_add", false),
    ("device_del", false),
    ("getfd", false),
    ("human-monitor-command", false),
    ("job-cancel", false),
    ("job-complete", false),
    ("job-dismiss", false),
    ("job-finalize", false),
    ("job-pause", false),
    ("job-resume", false),
    ("migrate-pause", true),
    ("object-add", false),
    ("object-del", false),
    ("qmp_capabilities", false),
    ("qom-get", false),
    ("qom-list", false),
    ("qom-set", false),
    ("query-chardev", false),
    ("query-commands", false),
    ("query-fdsets", false),
    ("query-block-jobs", false),
    ("query-jobs", false),
    ("query-name", false),
    ("query-named-block-nodes", false),
    ("query-qmp-schema", false),
    ("query-status", false),
    ("query-version", false),
    ("query-yank", true),
    ("quit", false),
    ("remove-fd", false),
    ("stop", false),
    ("system_powerdown", false),
    ("system_reset", false),
    ("transaction", false),
];

/// How long after `device_del`'s reply a USB device's DEVICE_DELETED comes: QEMU sends it
/// when the device is finalized, from its RCU thread, which first waits five times 10 ms
/// for more callbacks to pile up (measured: 50 to 60 ms).
const FINALIZE_DELAY: Duration = Duration::from_millis(50);

/// The host thread id `query-cpus-fast` gives the one vCPU.
const FAKE_THREAD_ID: u32 = 1;

/// The run states in which QEMU's `cont` asks for a reset first (`runstate_needs_reset`).
const NEEDS_RESET: &[&str] = &["shutdown", "internal-error", "guest-panicked"];

/// QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.` and `_`.
pub(crate) fn id_wellformed(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn arg_str<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, Outcome> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Outcome::generic_error(format!(
            "Invalid parameter type for '{name}', expected: string"
        ))),
        None => Err(Outcome::generic_error(format!(
            "Parameter '{name}' is missing"
        ))),
    }
}

impl FakeQemu {
    /// A running VM of version 10.0.2 that knows the built-in commands.
    pub fn new() -> Self {
        FakeQemu {
            version: (10, 0, 2),
            package: String::new(),
            name: None,
            status: "running",
            running: true,
            #[cfg(unix)]
            fds: BTreeMap::new(),
            #[cfg(unix)]
            fdsets: BTreeMap::new(),
            next_fd: 100,
            block: Block::default(),
            delays: BTreeMap::new(),
            timers: Vec::new(),
            custom: BTreeMap::new(),
            schema: None,
            qom: Qom::new(),
            migration: Migration::new(),
            monitor_path: "qmp.sock".to_owned(),
        }
    }

    /// Started with `-S`: status `prelaunch` until `cont`.
    pub fn prelaunch(mut self) -> Self {
        self.status = "prelaunch";
        self.running = false;
        self
    }

    /// The path of the monitor's unix socket, as `query-chardev` shows it (default
    /// `qmp.sock`).
    pub fn monitor_path(mut self, path: impl Into<String>) -> Self {
        self.monitor_path = path.into();
        self
    }

    /// The VM name returned by `query-name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The version to report (greeting and `query-version`).
    pub fn version(mut self, major: u64, minor: u64, micro: u64, package: &str) -> Self {
        self.version = (major, minor, micro);
        self.package = package.to_owned();
        self
    }

    /// How long a block job's work takes in virtual time (default zero). With zero, a
    /// `blockdev-backup` or `blockdev-mirror` between two `null-co` nodes runs to its end
    /// (to `ready` for a mirror) before its reply, as on real QEMU, whose null-co IO never
    /// waits; other jobs do their work right after the reply.
    pub fn job_duration(mut self, d: Duration) -> Self {
        self.block.job_duration = d;
        self
    }

    /// Registers an in-memory raw file of `size` bytes at `path`, which `file` nodes can
    /// open (QEMU's error for any other path) and `blockdev-create` can format. At most
    /// 64 files; more are ignored.
    pub fn image(mut self, path: impl Into<String>, size: u64) -> Self {
        self.block.add_image(&path.into(), Image::raw(size));
        self
    }

    /// Registers an in-memory qcow2 image of `size` virtual bytes at `path`, as
    /// `qemu-img create -f qcow2 PATH SIZE` makes it (64 KiB clusters, no backing file).
    pub fn qcow2_image(mut self, path: impl Into<String>, size: u64) -> Self {
        self.block.add_image(&path.into(), Image::qcow2(size));
        self
    }

    /// Registers an in-memory qcow2 image of `size` virtual bytes at `path` whose header
    /// names `backing` as its backing file, as `qemu-img create -f qcow2 -b BACKING -F qcow2
    /// PATH SIZE` makes it. A qcow2 node on it without a `backing` option opens the chain
    /// (read-only, as generated nodes), as QEMU does.
    pub fn qcow2_overlay(mut self, path: impl Into<String>, size: u64, backing: &str) -> Self {
        self.block
            .add_image(&path.into(), Image::qcow2_overlay(size, backing));
        self
    }

    /// The speed of the link an outgoing migration sends the VM's RAM over, in bytes per
    /// second (default 0: only the `max-bandwidth` parameter limits it, 128 MiB/s unless
    /// changed, so the 617030 bytes QEMU sends of the modelled VM take about 5 ms of
    /// virtual time). With both at 0, all goes at once.
    pub fn migration_speed(mut self, bytes_per_sec: u64) -> Self {
        self.migration.set_link_speed(bytes_per_sec);
        self
    }

    /// Replies to `command` only after `d` of virtual time (fault injection). An in-band
    /// command delayed this way holds up the in-band commands after it.
    pub fn delay(&mut self, command: &str, d: Duration) -> &mut Self {
        self.delays.insert(command.to_owned(), d);
        self
    }

    /// The reply to `query-qmp-schema`, instead of QEMU's (arguments are still checked
    /// against QEMU's schema).
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Adds (or replaces) a command. Its arguments are not checked: it gets them as they
    /// came. One QEMU does not have joins `query-commands` and `query-qmp-schema` (taking
    /// no arguments, returning `any`); one that replaces QEMU's keeps QEMU's entries.
    pub fn add_command(
        &mut self,
        name: &str,
        allow_oob: bool,
        run: impl FnMut(&mut Context<'_>, &Map<String, Value>) -> Outcome + Send + 'static,
    ) -> &mut Self {
        self.custom.insert(
            name.to_owned(),
            Custom {
                allow_oob,
                run: Box::new(run),
            },
        );
        self
    }

    /// A [`ServerConfig`] whose greeting matches this fake's version.
    pub fn server_config(&self) -> ServerConfig {
        let (a, b, c) = self.version;
        ServerConfig::default()
            .version(a, b, c)
            .package(self.package.clone())
    }

    /// The current run status (`running`, `paused`, `prelaunch`, `shutdown`).
    pub fn status(&self) -> &str {
        self.status
    }

    /// The names given to file descriptors with `getfd` and not closed.
    #[cfg(unix)]
    pub fn fd_names(&self) -> Vec<String> {
        self.fds.keys().cloned().collect()
    }

    /// Sets the run status; the VM runs in `running` only.
    fn set_status(&mut self, status: &'static str) {
        self.status = status;
        self.running = status == "running";
    }

    /// HMP `info status`, as QEMU's `hmp_info_status` prints it: `running` or `paused`,
    /// and the status in parentheses when the VM is neither running nor plainly paused.
    fn info_status(&self) -> String {
        if self.running {
            "VM status: running\r\n".to_owned()
        } else if self.status == "paused" {
            "VM status: paused\r\n".to_owned()
        } else {
            format!("VM status: paused ({})\r\n", self.status)
        }
    }

    fn schedule(&mut self, ctx: &mut Context<'_>, at: Instant, timer: Timer) {
        self.timers.push((at, timer));
        ctx.wake_at(at);
    }

    /// A migration command, with the VM's run state and the named descriptors it may use.
    fn migration_command(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        args: &Map<String, Value>,
    ) -> Outcome {
        let mut status = self.status;
        let mut host = MigrationHost {
            #[cfg(unix)]
            fds: &mut self.fds,
            qom: &self.qom,
        };
        let outcome = self
            .migration
            .command(ctx, name, args, &mut status, &mut host);
        self.set_status(status);
        self.schedule_migration(ctx);
        outcome.unwrap_or_else(|| Self::unmodelled(name, args))
    }

    fn schedule_migration(&mut self, ctx: &mut Context<'_>) {
        if let Some((at, generation)) = self.migration.take_wake() {
            // A migration has one timer at most: a new one replaces the one before.
            self.timers
                .retain(|(_, t)| !matches!(t, Timer::Migration(_)));
            self.schedule(ctx, at, Timer::Migration(generation));
        }
    }

    /// The reply to `query-qmp-schema`: the one set with [`schema`](Self::schema), or
    /// QEMU's with an entry for each added command QEMU does not have.
    fn schema_reply(&self) -> Outcome {
        if let Some(s) = &self.schema {
            return Outcome::Return(s.clone());
        }
        let Some(schema) = qapi::schema() else {
            return Outcome::Return(Value::Array(Vec::new()));
        };
        let extra: Vec<String> = self
            .custom
            .iter()
            .filter(|(name, _)| !schema.has_command(name))
            .map(|(name, c)| {
                let oob = if c.allow_oob { ", \"allow-oob\": true" } else { "" };
                // "0" is the empty object type of QEMU's schema.
                format!(
                    r#"{{"name": {}, "ret-type": "any", "meta-type": "command", "arg-type": "0"{oob}}}"#,
                    Value::String(name.clone())
                )
            })
            .collect();
        Outcome::Json(append_to_array(&schema.text, &extra))
    }

    /// The reply to `query-commands`: QEMU's, plus the added commands QEMU does not have.
    fn commands_reply(&self) -> Outcome {
        let Some(schema) = qapi::schema() else {
            return Outcome::Return(Value::Array(Vec::new()));
        };
        let extra: Vec<String> = self
            .custom
            .keys()
            .filter(|name| !schema.has_command(name))
            .map(|name| format!(r#"{{"name": {}}}"#, Value::String(name.clone())))
            .collect();
        match schema.query_reply("query-commands") {
            Some(Ok(text)) => Outcome::Json(append_to_array(text, &extra)),
            _ => Outcome::Json(append_to_array("[]", &extra)),
        }
    }

    /// A command of QEMU's that the fake does not model: QEMU's recorded answer to an
    /// argument-free query, else an error that says so.
    fn unmodelled(name: &str, args: &Map<String, Value>) -> Outcome {
        if args.is_empty() {
            match qapi::schema().and_then(|s| s.query_reply(name)) {
                Some(Ok(text)) => return Outcome::Json(text.clone()),
                Some(Err((class, desc))) => {
                    return Outcome::Error {
                        class: class.clone(),
                        desc: desc.clone(),
                    }
                }
                None => {}
            }
        }
        Outcome::generic_error(format!("The fake QEMU does not model '{name}'"))
    }

    fn run(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome {
        let args = &call.arguments;
        // A command added with `add_command` replaces a built-in one of the same name.
        if let Some(c) = self.custom.get_mut(call.name.as_str()) {
            return (c.run)(ctx, args);
        }
        // QEMU's generated marshaller checks the arguments before the command runs.
        if let Some(Err(desc)) = qapi::schema().map(|s| s.check_arguments(&call.name, args)) {
            return Outcome::generic_error(desc);
        }
        let (major, minor, micro) = self.version;
        match call.name.as_str() {
            "query-version" => Outcome::Json(format!(
                r#"{{"qemu": {{"major": {major}, "minor": {minor}, "micro": {micro}}}, "package": {}}}"#,
                Value::String(self.package.clone())
            )),
            "query-status" => Outcome::Json(format!(
                r#"{{"running": {}, "status": "{}"}}"#,
                self.running, self.status
            )),
            "query-name" => Outcome::Return(match &self.name {
                Some(n) => json!({"name": n}),
                None => json!({}),
            }),
            "stop" => {
                // QEMU's `vm_stop`: only a live VM stops (with STOP); a paused one, even in
                // `prelaunch`, keeps its status and sends nothing.
                if self.running {
                    ctx.emit_event("STOP", None);
                    self.set_status("paused");
                }
                Outcome::empty()
            }
            "cont" => {
                // QEMU's `qmp_cont` and `vm_start`: a VM that needs a reset refuses; a running
                // one sends nothing; any other resumes with RESUME.
                if NEEDS_RESET.contains(&self.status) {
                    return Outcome::generic_error("Resetting the Virtual Machine is required");
                }
                // Stopped for a migration's switchover (`pause-before-switchover`).
                if self.status == "finish-migrate" {
                    return Outcome::generic_error("Migration is not finalized yet");
                }
                if !self.running {
                    ctx.emit_event("RESUME", None);
                    self.set_status("running");
                }
                Outcome::empty()
            }
            "system_reset" => {
                // QEMU's main loop after a reset request: RESET, then a VM that is not
                // running is in `prelaunch` (a running one keeps running, one stopped for a
                // migration's switchover stays in `finish-migrate`).
                ctx.emit_event_json(
                    "RESET",
                    r#"{"guest": false, "reason": "host-qmp-system-reset"}"#,
                );
                if !self.running && self.status != "finish-migrate" {
                    self.set_status("prelaunch");
                }
                // The reset ejects the PCI devices whose unplug the guest never answered.
                let at = ctx.now() + FINALIZE_DELAY;
                for (name, data) in self.qom.reset() {
                    self.schedule(ctx, at, Timer::Event(name, data));
                }
                Outcome::empty()
            }
            "system_powerdown" => {
                // Without a guest OS to act on the ACPI power button, nothing else happens.
                ctx.emit_event("POWERDOWN", None);
                Outcome::empty()
            }
            "quit" => {
                ctx.emit_event_json("SHUTDOWN", r#"{"guest": false, "reason": "host-qmp-quit"}"#);
                self.set_status("shutdown");
                ctx.close();
                Outcome::empty()
            }
            "query-commands" => self.commands_reply(),
            "query-qmp-schema" => self.schema_reply(),
            "query-yank" => {
                Outcome::Json(r#"[{"type": "chardev", "id": "compat_monitor0"}]"#.into())
            }
            "migrate-pause" => Migration::pause_error(),
            "query-migrate"
            | "query-migrate-capabilities"
            | "query-migrate-parameters"
            | "migrate"
            | "migrate_cancel"
            | "migrate-continue"
            | "migrate-set-capabilities"
            | "migrate-set-parameters"
            | "migrate-incoming"
            | "migrate-recover"
            | "migrate-start-postcopy" => self.migration_command(ctx, &call.name, args),
            "human-monitor-command" => match arg_str(args, "command-line") {
                Err(e) => e,
                Ok(line) => Outcome::Return(Value::String(match line.trim() {
                    "info status" => self.info_status(),
                    "info version" => format!("{major}.{minor}.{micro}{}\r\n", self.package),
                    "info name" => self.name.clone().map(|n| n + "\r\n").unwrap_or_default(),
                    "" => String::new(),
                    other => format!(
                        "unknown command: '{}'\r\n",
                        other.split_whitespace().next().unwrap_or_default()
                    ),
                })),
            },
            "getfd" | "add-fd" | "closefd" | "remove-fd" | "query-fdsets" => self.fd_command(call),
            "blockdev-add"
            | "blockdev-del"
            | "blockdev-create"
            | "blockdev-mirror"
            | "blockdev-backup"
            | "block-stream"
            | "block-commit"
            | "query-named-block-nodes"
            | "transaction"
            | "query-jobs"
            | "query-block-jobs" => self.block_command(ctx, &call.name, args),
            name if name.starts_with("block-dirty-bitmap-")
                || name.starts_with("job-")
                || name.starts_with("block-job-") =>
            {
                self.block_command(ctx, name, args)
            }
            "object-add" => self
                .qom
                .object_add(args)
                .unwrap_or_else(|| Self::unmodelled("object-add", args)),
            "object-del" => self
                .qom
                .object_del(args)
                .unwrap_or_else(|| Self::unmodelled("object-del", args)),
            "device_add" => self
                .qom
                .device_add(args)
                .unwrap_or_else(|| Self::unmodelled("device_add", args)),
            "device_del" => match self.qom.device_del(args) {
                None => Self::unmodelled("device_del", args),
                Some((outcome, events)) => {
                    let at = ctx.now() + FINALIZE_DELAY;
                    for (name, data) in events {
                        self.schedule(ctx, at, Timer::Event(name, data));
                    }
                    outcome
                }
            },
            "qom-list" => self
                .qom
                .qom_list(args)
                .unwrap_or_else(|| Self::unmodelled("qom-list", args)),
            "qom-get" => self
                .qom
                .qom_get(args)
                .unwrap_or_else(|| Self::unmodelled("qom-get", args)),
            "qom-set" => self
                .qom
                .qom_set(args)
                .unwrap_or_else(|| Self::unmodelled("qom-set", args)),
            "query-memdev" if args.is_empty() => self.qom.query_memdev(),
            "query-pci" if args.is_empty() => self.qom.query_pci(),
            "query-mice" if args.is_empty() => self.qom.query_mice(),
            "query-iothreads" if args.is_empty() => Outcome::Json("[]".into()),
            // One vCPU; its thread id is the fake's own choice (QEMU's is the host thread's).
            "query-cpus-fast" if args.is_empty() => Outcome::Json(format!(
                r#"[{{"cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "thread-id": {FAKE_THREAD_ID}, "props": {{"socket-id": 0, "core-id": 0, "thread-id": 0}}, "target": "x86_64"}}]"#
            )),
            "query-chardev" => Outcome::Return(json!([{
                "frontend-open": true,
                "filename": format!("unix:{},server=on", self.monitor_path),
                "label": "compat_monitor0",
            }])),
            name => match self.custom.get_mut(name) {
                Some(c) => (c.run)(ctx, args),
                None if qapi::schema().is_some_and(|s| s.has_command(name)) => {
                    Self::unmodelled(name, args)
                }
                None => Outcome::Error {
                    class: "CommandNotFound".into(),
                    desc: format!("The command {name} has not been found"),
                },
            },
        }
    }

    /// A command of the block layer (`fake_block`), or "not modelled".
    fn block_command(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        args: &Map<String, Value>,
    ) -> Outcome {
        let outcome = self
            .block
            .command(ctx, name, args)
            .unwrap_or_else(|| Self::unmodelled(name, args));
        self.wake_block(ctx);
        outcome
    }

    /// Asks for a timer when a job has a step due.
    fn wake_block(&self, ctx: &mut Context<'_>) {
        if let Some(at) = self.block.next_wake() {
            ctx.wake_at(at);
        }
    }

    #[cfg(unix)]
    fn fd_command(&mut self, mut call: Call) -> Outcome {
        let args = &call.arguments;
        match call.name.as_str() {
            "getfd" => {
                let name = match arg_str(args, "fdname") {
                    Ok(n) => n.to_owned(),
                    Err(e) => return e,
                };
                if name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Outcome::generic_error(
                        "Parameter 'fdname' expects a name not starting with a digit",
                    );
                }
                let Some(fd) = call.fds.pop() else {
                    return Outcome::generic_error("No file descriptor supplied via SCM_RIGHTS");
                };
                self.fds.insert(name, fd);
                Outcome::empty()
            }
            "closefd" => match arg_str(args, "fdname") {
                Err(e) => e,
                Ok(name) => match self.fds.remove(name) {
                    Some(_) => Outcome::empty(),
                    None => {
                        Outcome::generic_error(format!("File descriptor named '{name}' not found"))
                    }
                },
            },
            "add-fd" => {
                let set = args
                    .get("fdset-id")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| self.fdsets.keys().max().map_or(0, |m| m + 1));
                let opaque = args
                    .get("opaque")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(fd) = call.fds.pop() else {
                    return Outcome::generic_error("No file descriptor supplied via SCM_RIGHTS");
                };
                self.next_fd += 1;
                let n = self.next_fd;
                self.fdsets.entry(set).or_default().push((n, fd, opaque));
                Outcome::Json(format!(r#"{{"fdset-id": {set}, "fd": {n}}}"#))
            }
            "remove-fd" => {
                let Some(set) = args.get("fdset-id").and_then(Value::as_i64) else {
                    return Outcome::generic_error("Parameter 'fdset-id' is missing");
                };
                let fd = args.get("fd").and_then(Value::as_i64);
                let removed = match (self.fdsets.get_mut(&set), fd) {
                    (Some(fds), Some(fd)) => {
                        let before = fds.len();
                        fds.retain(|(n, _, _)| *n != fd);
                        fds.len() < before
                    }
                    (Some(fds), None) => {
                        fds.clear();
                        true
                    }
                    (None, _) => false,
                };
                self.fdsets.retain(|_, fds| !fds.is_empty());
                if removed {
                    Outcome::empty()
                } else {
                    let what = match fd {
                        Some(fd) => format!("fdset-id:{set}, fd:{fd}"),
                        None => format!("fdset-id:{set}"),
                    };
                    Outcome::generic_error(format!("File descriptor named '{what}' not found"))
                }
            }
            _ => Outcome::Return(Value::Array(
                self.fdsets
                    .iter()
                    .map(|(set, fds)| {
                        let fds: Vec<Value> = fds
                            .iter()
                            .map(|(n, _, opaque)| match opaque {
                                Some(o) => json!({"fd": n, "opaque": o}),
                                None => json!({"fd": n}),
                            })
                            .collect();
                        json!({"fdset-id": set, "fds": fds})
                    })
                    .collect(),
            )),
        }
    }

    #[cfg(not(unix))]
    fn fd_command(&mut self, _call: Call) -> Outcome {
        Outcome::generic_error("No file descriptor supplied via SCM_RIGHTS")
    }
}

impl Handler for FakeQemu {
    fn command(&self, name: &str) -> Option<CommandInfo> {
        if let Some(c) = self.custom.get(name) {
            return Some(CommandInfo {
                allow_oob: c.allow_oob,
            });
        }
        if let Some(schema) = qapi::schema() {
            return schema
                .commands
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, oob)| CommandInfo { allow_oob: *oob });
        }
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, oob)| CommandInfo { allow_oob: *oob })
    }

    fn execute(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome {
        let delay = self.delays.get(&call.name).copied();
        let token = call.token;
        let outcome = self.run(ctx, call);
        match delay {
            Some(d) if !matches!(outcome, Outcome::Deferred) => {
                let at = ctx.now() + d;
                self.schedule(ctx, at, Timer::Complete(token, outcome));
                Outcome::Deferred
            }
            _ => outcome,
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                due.push(self.timers.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(at, _)| *at);
        for (_, timer) in due {
            match timer {
                Timer::Complete(token, outcome) => ctx.complete(token, outcome),
                Timer::Event(name, data) => ctx.emit_event(name, Some(data)),
                Timer::Migration(generation) => {
                    let mut status = self.status;
                    self.migration.on_timer(ctx, generation, &mut status);
                    self.set_status(status);
                    self.schedule_migration(ctx);
                }
            }
        }
        self.block.on_timer(ctx);
        self.wake_block(ctx);
        if let Some(next) = self.timers.iter().map(|(at, _)| *at).min() {
            ctx.wake_at(next);
        }
    }

    fn command_names(&self) -> Vec<String> {
        let known: Vec<&str> = match qapi::schema() {
            Some(schema) => schema.commands.iter().map(|(n, _)| n.as_str()).collect(),
            None => BUILTIN.iter().map(|(n, _)| *n).collect(),
        };
        let mut names: Vec<String> = known
            .into_iter()
            .filter(|n| !self.custom.contains_key(*n))
            .map(str::to_owned)
            .collect();
        names.extend(self.custom.keys().cloned());
        names
    }
}

/// A JSON array's text with more elements (JSON texts) appended.
fn append_to_array(array: &str, extra: &[String]) -> String {
    if extra.is_empty() {
        return array.to_owned();
    }
    let inner = array.trim_end().strip_suffix(']').unwrap_or("[").trim_end();
    let sep = if inner.ends_with('[') { "" } else { ", " };
    format!("{inner}{sep}{}]", extra.join(", "))
}
