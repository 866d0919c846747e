//! The fake QEMU's block layer: in-memory images, a graph of block nodes (`null-co`,
//! `file`, `raw`, `qcow2` with backing nodes), dirty bitmaps, transactions of bitmap
//! actions, and block jobs (`blockdev-create`, `blockdev-mirror`, `blockdev-backup`,
//! `block-stream`, `block-commit`) with their events over virtual time.
//!
//! A job's life: `created` and `running` before the reply; its work (`Step::Work`) is due
//! after the job duration, or done before the reply when QEMU's would not wait for IO
//! (null-co on both ends, nothing to stream); then `ready` (mirror, active commit) or
//! `waiting`, `pending` and, unless it waits for `job-finalize`, its effect on the graph,
//! BLOCK_JOB_COMPLETED, `concluded` and (with auto-dismiss) `null`. A cancel or a failure
//! goes through `aborting` instead. Every transition is in `run_due`, `finish`, `finalize`,
//! `abort` and `conclude`.
//!
//! Each answer was compared with qemu-storage-daemon 10.0.2 (`tests/fake_block_vs_qemu.rs`).
//! Whatever the model cannot answer exactly is `None` here, which the fake turns into "does
//! not model".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::fake::id_wellformed;
use super::{Context, Outcome};

/// The most images (files) the model keeps.
pub(crate) const MAX_IMAGES: usize = 64;
/// The most block nodes the model keeps (explicit, implicit and job filters together).
pub(crate) const MAX_NODES: usize = 64;
/// The most dirty bitmaps on one node.
pub(crate) const MAX_BITMAPS: usize = 32;
/// The most jobs the model keeps (running or concluded and not dismissed).
pub(crate) const MAX_JOBS: usize = 16;

/// QEMU's longest bitmap name (`BDRV_BITMAP_MAX_NAME_SIZE`).
const MAX_BITMAP_NAME: usize = 1023;

/// The default granularity of a dirty bitmap on every modelled driver (64 KiB).
const DEFAULT_GRANULARITY: u64 = 65536;

/// The size of a `null-co` node without `size` (1 GiB).
const NULL_CO_DEFAULT_SIZE: u64 = 1 << 30;

/// What `du` says of a fresh qcow2 image on QEMU's test host (the fake cannot know: it is
/// the file system's allocation). Raw images registered with `image` are sparse: 0.
const QCOW2_ACTUAL_SIZE: u64 = 200_704;

/// What a raw file made by `blockdev-create` occupies (QEMU writes its first 4 KiB).
const CREATED_RAW_ACTUAL_SIZE: u64 = 4096;

/// The length of a fresh qcow2 file of `size` bytes, as `blockdev-create` and `qemu-img
/// create` lay it out with 64 KiB clusters: header, refcount table and one refcount block,
/// then the L1 table (one entry per 512 MiB), in 512-byte sectors.
pub(crate) fn qcow2_file_len(size: u64) -> u64 {
    let l1 = size.div_ceil(65536 * 8192).max(1);
    3 * 65536 + (l1 * 8).div_ceil(512) * 512
}

/// An in-memory file.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The file's length.
    len: u64,
    /// What it occupies on disk (`actual-size`).
    actual: u64,
    /// The virtual size, if it holds a qcow2 image.
    qcow2: Option<u64>,
    /// Whether a job wrote to the qcow2 image (its L2 tables are allocated).
    written: bool,
    /// The backing file named in the qcow2 header.
    backing: Option<String>,
}

impl Image {
    /// A raw file of `len` bytes.
    pub(crate) fn raw(len: u64) -> Image {
        Image {
            len,
            actual: 0,
            qcow2: None,
            written: false,
            backing: None,
        }
    }

    /// A fresh qcow2 image of `size` virtual bytes.
    pub(crate) fn qcow2(size: u64) -> Image {
        Image {
            len: qcow2_file_len(size),
            actual: QCOW2_ACTUAL_SIZE,
            qcow2: Some(size),
            written: false,
            backing: None,
        }
    }

    /// A fresh qcow2 image of `size` virtual bytes over the qcow2 image at `backing`.
    pub(crate) fn qcow2_overlay(size: u64, backing: &str) -> Image {
        Image {
            backing: Some(backing.to_owned()),
            ..Image::qcow2(size)
        }
    }

    /// A job copied zeroes into the qcow2 image: QEMU writes them as zero clusters, which
    /// allocates the L2 tables (one per 512 MiB, 64 KiB each) after the L1 table's
    /// cluster. (Every image the fake knows reads as zeroes.)
    fn write_zeroes(&mut self) {
        let Some(size) = self.qcow2 else {
            return;
        };
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let tables = size.div_ceil(65536 * 8192) * 65536;
        self.len = self.len.div_ceil(65536) * 65536 + tables;
        self.actual += tables;
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Drv {
    /// A `null-co` node of this size; whether `size` was given (it shows in the filename).
    Null(u64, bool),
    /// A `file` node on this path.
    File(String),
    Raw,
    /// A qcow2 node with the virtual size read when it opened.
    Qcow2(u64),
    /// The filter a mirror puts above its source.
    MirrorTop,
}

impl Drv {
    fn name(&self) -> &'static str {
        match self {
            Drv::Null(..) => "null-co",
            Drv::File(_) => "file",
            Drv::Raw => "raw",
            Drv::Qcow2(_) => "qcow2",
            Drv::MirrorTop => "mirror_top",
        }
    }
}

#[derive(Debug, Clone)]
struct Bitmap {
    name: String,
    granularity: u64,
    recording: bool,
    persistent: bool,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    drv: Drv,
    /// The `file` child (`raw`, `qcow2`) or the filtered node (`mirror_top`).
    child: Option<String>,
    /// The backing node (qcow2).
    backing: Option<String>,
    /// `backing: null` was given (it shows in the filename).
    no_backing: bool,
    /// Made by QEMU (an inline child or a job's filter): not the monitor's.
    implicit: bool,
    /// Newest last.
    bitmaps: Vec<Bitmap>,
}

impl Node {
    /// A node the monitor made, without children or bitmaps.
    fn new(name: impl Into<String>, drv: Drv) -> Node {
        Node {
            name: name.into(),
            drv,
            child: None,
            backing: None,
            no_backing: false,
            implicit: false,
            bitmaps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobType {
    Create,
    Mirror,
    Backup,
    Stream,
    Commit,
}

impl JobType {
    fn name(self) -> &'static str {
        match self {
            JobType::Create => "create",
            JobType::Mirror => "mirror",
            JobType::Backup => "backup",
            JobType::Stream => "stream",
            JobType::Commit => "commit",
        }
    }
}

/// What `blockdev-create` makes when its job runs.
#[derive(Debug, Clone)]
enum Create {
    /// A qcow2 image in the file of this node.
    Qcow2 { file: String, size: u64 },
    /// A raw file.
    File { path: String, size: u64 },
}

/// The next step of a job, due at a time.
#[derive(Debug, Clone)]
enum Step {
    /// Its work is done: a mirror is ready, the others finish.
    Work,
    /// A ready mirror was completed (`pivot`: switch to the target) or cancelled without
    /// force (no switch).
    Complete { pivot: bool },
    /// Cancelled.
    Cancel,
    /// Failed with this error.
    Fail(String),
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    kind: JobType,
    status: &'static str,
    auto_finalize: bool,
    auto_dismiss: bool,
    speed: u64,
    /// `len` (total progress) and `offset` (current progress).
    len: u64,
    offset: u64,
    /// Source and target nodes (mirror, backup), the file node (qcow2 create).
    source: Option<String>,
    target: Option<String>,
    filter: Option<String>,
    /// Whether its work ends in `ready` (a mirror, an active commit).
    readies: bool,
    /// A stream's new backing node, or the overlay whose backing a commit changes.
    base: Option<String>,
    overlay: Option<String>,
    create: Option<Create>,
    user_paused: bool,
    due: Option<(Instant, Step)>,
    /// Work left when the job was paused.
    left: Option<Duration>,
    /// `job-complete` while paused: done on resume.
    complete_on_resume: bool,
    /// Whether the mirror switches to its target when it finalizes.
    pivot: bool,
    cancelled: bool,
    error: Option<String>,
}

impl Job {
    fn is_block_job(&self) -> bool {
        self.kind != JobType::Create
    }

    /// Whether it still holds its nodes.
    fn active(&self) -> bool {
        !matches!(self.status, "concluded" | "null")
    }

    fn progress_data(&self) -> String {
        format!(
            r#""device": {}, "len": {}, "offset": {}, "speed": {}, "type": "{}""#,
            Value::String(self.id.clone()),
            self.len,
            self.offset,
            self.speed,
            self.kind.name()
        )
    }
}

/// QEMU's verbs of `job_apply_verb`, with the states that accept them.
fn verb_allowed(verb: &str, status: &str) -> bool {
    let states: &[&str] = match verb {
        "cancel" => &[
            "created", "running", "paused", "ready", "standby", "waiting", "pending",
        ],
        "pause" | "resume" | "set-speed" => &["created", "running", "paused", "ready", "standby"],
        "complete" => &["ready", "standby"],
        "finalize" => &["pending"],
        "dismiss" => &["concluded"],
        _ => &[],
    };
    states.contains(&status)
}

/// The block layer of the fake.
#[derive(Debug, Default, Clone)]
pub(crate) struct Block {
    images: BTreeMap<String, Image>,
    /// Oldest first (QEMU lists the newest first).
    nodes: Vec<Node>,
    /// Oldest first (QEMU lists the newest first).
    jobs: Vec<Job>,
    /// The counter of QEMU's generated node names (`#blockNNN`).
    generated: u64,
    /// How long a job's work takes in virtual time.
    pub(crate) job_duration: Duration,
}

fn err(desc: impl Into<String>) -> Outcome {
    Outcome::generic_error(desc)
}

fn not_found(name: &str) -> Outcome {
    err(format!(
        "Cannot find device='{name}' nor node-name='{name}'"
    ))
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

fn bool_arg(args: &Map<String, Value>, name: &str, default: bool) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(default)
}

/// Only these keys: anything else changes what QEMU does in ways the model does not know.
fn only_keys(args: &Map<String, Value>, keys: &[&str]) -> bool {
    args.keys().all(|k| keys.contains(&k.as_str()))
}

impl Block {
    /// Registers (or replaces) an in-memory file. False when the table is full.
    pub(crate) fn add_image(&mut self, path: &str, image: Image) -> bool {
        if self.images.len() >= MAX_IMAGES && !self.images.contains_key(path) {
            return false;
        }
        self.images.insert(path.to_owned(), image);
        true
    }

    /// The node names, oldest first (for the fake's `Debug`).
    pub(crate) fn node_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    fn job_index(&self, id: &str) -> Option<usize> {
        self.jobs.iter().position(|j| j.id == id)
    }

    fn generate_name(&mut self) -> String {
        let n = self.generated;
        self.generated += 1;
        // QEMU appends two random digits; these are fixed.
        format!("#block{n}{:02}", (n * 37 + 11) % 100)
    }

    fn parents(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.child.as_deref() == Some(name) || n.backing.as_deref() == Some(name))
            .count()
    }

    /// The node that has `name` as its backing node.
    fn overlay(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.backing.as_deref() == Some(name))
    }

    /// The backing chain below a node (its backing node, that one's, ...), bounded by the
    /// node count.
    fn chain(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = self.node(name).and_then(|n| n.backing.clone());
        while let Some(b) = at {
            if out.len() > self.nodes.len() {
                break;
            }
            at = self.node(&b).and_then(|n| n.backing.clone());
            out.push(b);
        }
        out
    }

    /// `backing_file_depth`: the length of the chain below (a filter's child counts).
    fn depth(&self, node: &Node) -> usize {
        match node.drv {
            Drv::MirrorTop => node.child.as_deref().map_or(0, |c| 1 + self.chain(c).len()),
            _ => self.chain(&node.name).len(),
        }
    }

    /// The backing file in the header of a qcow2 node's image.
    fn header_backing(&self, node: &Node) -> Option<String> {
        if !matches!(node.drv, Drv::Qcow2(_)) {
            return None;
        }
        let path = self.path_of(node)?;
        self.images.get(&path)?.backing.clone()
    }

    /// The job whose operation blocker is on the node (its source or target).
    fn blocking_job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| {
            j.active()
                && j.is_block_job()
                && (j.source.as_deref() == Some(name) || j.target.as_deref() == Some(name))
        })
    }

    /// QEMU's error for a node a job blocks.
    fn busy(&self, name: &str) -> Option<Outcome> {
        let job = self.blocking_job(name)?;
        Some(err(format!(
            "Node '{name}' is busy: block device is in use by block job: {}",
            job.kind.name()
        )))
    }

    /// Whether a job has a BlockBackend on the node (a target, a file being formatted).
    fn has_blk(&self, name: &str) -> bool {
        self.jobs.iter().any(|j| {
            j.active()
                && (j.target.as_deref() == Some(name)
                    || (j.kind == JobType::Create && j.source.as_deref() == Some(name)))
        })
    }

    fn virtual_size(&self, node: &Node) -> u64 {
        match &node.drv {
            Drv::Null(size, _) => *size,
            Drv::File(path) => self.images.get(path).map_or(0, |i| i.len),
            Drv::Qcow2(size) => *size,
            Drv::Raw | Drv::MirrorTop => node
                .child
                .as_deref()
                .and_then(|c| self.node(c))
                .map_or(0, |c| self.virtual_size(c)),
        }
    }

    fn filename(&self, node: &Node) -> String {
        match &node.drv {
            Drv::Null(size, true) => format!(r#"json:{{"driver": "null-co", "size": {size}}}"#),
            Drv::Null(_, false) => "null-co://".to_owned(),
            Drv::File(path) => path.clone(),
            Drv::Qcow2(_) if node.no_backing => {
                let file = node
                    .child
                    .as_deref()
                    .and_then(|c| self.node(c))
                    .map_or_else(String::new, |c| self.filename(c));
                format!(
                    r#"json:{{"backing": null, "driver": "qcow2", "file": {{"driver": "file", "filename": {}}}}}"#,
                    Value::String(file)
                )
            }
            _ => node
                .child
                .as_deref()
                .and_then(|c| self.node(c))
                .map_or_else(String::new, |c| self.filename(c)),
        }
    }

    fn path_of(&self, node: &Node) -> Option<String> {
        match &node.drv {
            Drv::File(path) => Some(path.clone()),
            Drv::Null(..) => None,
            _ => self.path_of(self.node(node.child.as_deref()?)?),
        }
    }

    fn actual_size(&self, node: &Node) -> u64 {
        self.path_of(node)
            .and_then(|p| self.images.get(&p))
            .map_or(0, |i| i.actual)
    }

    /// `ImageInfo` of a node (with `backing-image` unless `flat`).
    fn image_info(&self, node: &Node, flat: bool) -> Value {
        let mut image = json!({
            "virtual-size": self.virtual_size(node),
            "filename": self.filename(node),
            "format": node.drv.name(),
            "actual-size": self.actual_size(node),
        });
        let m = image.as_object_mut().expect("an object");
        match &node.drv {
            Drv::File(_) => {
                m.insert(
                    "format-specific".into(),
                    json!({"type": "file", "data": {}}),
                );
                m.insert("dirty-flag".into(), json!(false));
            }
            Drv::Raw => {
                m.insert("dirty-flag".into(), json!(false));
            }
            Drv::Qcow2(_) => {
                m.insert("cluster-size".into(), json!(65536));
                m.insert(
                    "format-specific".into(),
                    json!({"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib",
                        "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false,
                        "extended-l2": false}}),
                );
                m.insert("dirty-flag".into(), json!(false));
                if let Some(b) = self.header_backing(node) {
                    m.insert("backing-filename-format".into(), json!("qcow2"));
                    m.insert("full-backing-filename".into(), json!(b));
                    m.insert("backing-filename".into(), json!(b));
                }
                if let Some(b) = node.backing.as_deref().and_then(|b| self.node(b)) {
                    if !flat {
                        m.insert("backing-image".into(), self.image_info(b, flat));
                    }
                }
            }
            Drv::MirrorTop => {
                // The filter passes on its child's `dirty-flag` (null-co has none).
                if let Some(c) = node.child.as_deref().and_then(|c| self.node(c)) {
                    if !matches!(c.drv, Drv::Null(..)) {
                        m.insert("dirty-flag".into(), json!(false));
                    }
                    if matches!(c.drv, Drv::Qcow2(_)) {
                        m.insert("cluster-size".into(), json!(65536));
                    }
                    if !flat {
                        m.insert("backing-image".into(), self.image_info(c, flat));
                    }
                }
            }
            _ => {}
        }
        image
    }

    /// `BlockDeviceInfo` of a node.
    fn node_info(&self, node: &Node, flat: bool) -> Value {
        let mut info = json!({
            "iops_rd": 0, "detect_zeroes": "off", "active": true,
            "image": self.image_info(node, flat),
            "iops_wr": 0, "ro": self.read_only(node), "node-name": node.name,
            "backing_file_depth": if flat { 0 } else { self.depth(node) },
            "drv": node.drv.name(), "iops": 0, "bps_wr": 0, "write_threshold": 0,
            "encrypted": false, "bps": 0, "bps_rd": 0,
            "cache": {"no-flush": false, "direct": false, "writeback": true},
            "file": self.filename(node),
        });
        if node.backing.is_some() {
            if let Some(b) = self.header_backing(node) {
                info.as_object_mut()
                    .expect("an object")
                    .insert("backing_file".into(), json!(b));
            }
        }
        let bitmaps: Vec<Value> = if node.drv == Drv::MirrorTop {
            // The mirror's own bitmap, which has no name.
            vec![
                json!({"recording": false, "persistent": false, "busy": false,
                "granularity": DEFAULT_GRANULARITY, "count": 0}),
            ]
        } else {
            node.bitmaps
                .iter()
                .rev()
                .map(|b| {
                    json!({"name": b.name, "recording": b.recording,
                        "persistent": b.persistent, "busy": false,
                        "granularity": b.granularity, "count": 0})
                })
                .collect()
        };
        if !bitmaps.is_empty() {
            info.as_object_mut()
                .expect("an object")
                .insert("dirty-bitmaps".into(), Value::Array(bitmaps));
        }
        info
    }

    /// Runs a block command, or `None` if this module does not model the command or these
    /// arguments.
    pub(crate) fn command(
        &mut self,
        ctx: &mut Context<'_>,
        name: &str,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        Some(match name {
            "blockdev-add" => return self.blockdev_add(args),
            "blockdev-del" => {
                let outcome = self.blockdev_del(str_arg(args, "node-name")?);
                if outcome == Outcome::empty() {
                    self.drain(ctx);
                }
                outcome
            }
            "query-named-block-nodes" => Outcome::Return(Value::Array(
                self.nodes
                    .iter()
                    .rev()
                    .map(|n| self.node_info(n, bool_arg(args, "flat", false)))
                    .collect(),
            )),
            "block-dirty-bitmap-add"
            | "block-dirty-bitmap-remove"
            | "block-dirty-bitmap-clear"
            | "block-dirty-bitmap-enable"
            | "block-dirty-bitmap-disable"
            | "block-dirty-bitmap-merge" => match self.bitmap_action(name, args)? {
                Ok(()) => Outcome::empty(),
                Err(e) => e,
            },
            "transaction" => {
                // QEMU drains first, whatever the actions and their outcome.
                let outcome = self.transaction(args)?;
                self.drain(ctx);
                outcome
            }
            "blockdev-create" => return self.blockdev_create(ctx, args),
            "blockdev-mirror" => return self.blockdev_mirror(ctx, args),
            "blockdev-backup" => return self.blockdev_backup(ctx, args),
            "block-stream" => return self.block_stream(ctx, args),
            "block-commit" => return self.block_commit(ctx, args),
            "query-jobs" => Outcome::Return(Value::Array(
                self.jobs.iter().rev().map(Self::job_info).collect(),
            )),
            "query-block-jobs" => Outcome::Return(Value::Array(
                self.jobs
                    .iter()
                    .rev()
                    .filter(|j| j.is_block_job())
                    .map(Self::block_job_info)
                    .collect(),
            )),
            "job-pause" | "job-resume" | "job-cancel" | "job-complete" | "job-finalize"
            | "job-dismiss" => {
                let id = str_arg(args, "id")?;
                let Some(i) = self.job_index(id) else {
                    return Some(err("Job not found"));
                };
                self.job_verb(ctx, i, &name["job-".len()..])
            }
            "block-job-set-speed" => {
                let device = str_arg(args, "device")?;
                let speed = args.get("speed")?.as_u64()?;
                let Some(i) = self
                    .job_index(device)
                    .filter(|&i| self.jobs[i].is_block_job())
                else {
                    return Some(Outcome::Error {
                        class: "DeviceNotActive".into(),
                        desc: format!("Block job '{device}' not found"),
                    });
                };
                let job = &mut self.jobs[i];
                if !verb_allowed("set-speed", job.status) {
                    return Some(err(format!(
                        "Job '{}' in state '{}' cannot accept command verb 'set-speed'",
                        job.id, job.status
                    )));
                }
                job.speed = speed;
                Outcome::empty()
            }
            "block-job-pause" | "block-job-resume" | "block-job-cancel" | "block-job-complete"
            | "block-job-finalize" | "block-job-dismiss" => {
                let device = str_arg(args, "device").or_else(|| str_arg(args, "id"))?;
                let Some(i) = self
                    .job_index(device)
                    .filter(|&i| self.jobs[i].is_block_job())
                else {
                    return Some(Outcome::Error {
                        class: "DeviceNotActive".into(),
                        desc: format!("Block job '{device}' not found"),
                    });
                };
                let verb = &name["block-job-".len()..];
                let force = bool_arg(args, "force", false);
                if verb == "cancel" && !force && matches!(self.jobs[i].status, "ready" | "standby")
                {
                    // A ready mirror cancelled without force completes without switching.
                    return Some(self.complete(ctx, i, false));
                }
                self.job_verb(ctx, i, verb)
            }
            _ => return None,
        })
    }

    fn blockdev_add(&mut self, args: &Map<String, Value>) -> Option<Outcome> {
        let driver = str_arg(args, "driver")?;
        let keys: &[&str] = match driver {
            "null-co" => &["driver", "node-name", "size"],
            "file" => &["driver", "node-name", "filename"],
            "raw" => &["driver", "node-name", "file"],
            "qcow2" => &["driver", "node-name", "file", "backing"],
            _ => return None,
        };
        if !only_keys(args, keys) {
            return None;
        }
        let Some(name) = str_arg(args, "node-name") else {
            return Some(err("'node-name' must be specified for the root node"));
        };
        if !id_wellformed(name) {
            return Some(err(format!("Invalid node-name: '{name}'")));
        }
        if self.node(name).is_some() {
            return Some(err(format!("Duplicate nodes with node-name='{name}'")));
        }
        if self.nodes.len() >= MAX_NODES {
            return Some(err(format!(
                "The fake QEMU does not model more than {MAX_NODES} block nodes"
            )));
        }
        let node = match driver {
            "null-co" => {
                let size = args.get("size").and_then(Value::as_u64);
                Node::new(
                    name.to_owned(),
                    Drv::Null(size.unwrap_or(NULL_CO_DEFAULT_SIZE), size.is_some()),
                )
            }
            "file" => {
                let path = str_arg(args, "filename")?;
                if let Err(e) = self.check_file(path, 1) {
                    return Some(e);
                }
                Node::new(name.to_owned(), Drv::File(path.to_owned()))
            }
            _ => {
                // The child: a node's name, or an inline `file` node.
                let (child, inline) = match args.get("file")? {
                    Value::String(c) => match self.node(c) {
                        Some(_) => (c.clone(), None),
                        None => return Some(not_found(c)),
                    },
                    Value::Object(o)
                        if str_arg(o, "driver") == Some("file")
                            && only_keys(o, &["driver", "filename"]) =>
                    {
                        let path = str_arg(o, "filename")?;
                        if let Err(e) = self.check_file(path, 2) {
                            return Some(e);
                        }
                        let child = self.generate_name();
                        (child, Some(path.to_owned()))
                    }
                    _ => return None,
                };
                let path = match &inline {
                    Some(p) => Some(p.clone()),
                    None => self.node(&child).and_then(|c| self.path_of(c)),
                };
                let image = path.and_then(|p| self.images.get(&p)).cloned();
                let mut backing = None;
                let mut open_header = None;
                let drv = if driver == "raw" {
                    Drv::Raw
                } else {
                    let (size, header) = match image {
                        Some(Image {
                            qcow2: Some(size),
                            backing,
                            ..
                        }) => (size, backing),
                        Some(_) => return Some(err("Image is not in qcow2 format")),
                        // A qcow2 node on a null-co or a filter: not modelled.
                        None => return None,
                    };
                    // qcow2 does not share writing and resizing its file, nor its image's
                    // write lock.
                    let image_path = match &inline {
                        Some(p) => Some(p.clone()),
                        None => self.node(&child).and_then(|c| self.path_of(c)),
                    };
                    let except = inline.is_none().then_some(child.as_str());
                    if image_path.is_some_and(|p| self.write_locked(&p, except)) {
                        return Some(err("Failed to get \"write\" lock"));
                    }
                    if let Some(other) = self.nodes.iter().find(|n| {
                        matches!(n.drv, Drv::Qcow2(_)) && n.child.as_deref() == Some(child.as_str())
                    }) {
                        return Some(err(format!(
                            "Permission conflict on node '{child}': permissions 'write, resize' are both required by node '{}' (uses node '{child}' as 'file' child) and unshared by node '{name}' (uses node '{child}' as 'file' child).",
                            other.name
                        )));
                    }
                    match args.get("backing") {
                        Some(Value::String(b)) => match self.node(b) {
                            Some(_) => backing = Some(b.clone()),
                            None => {
                                return Some(err(format!(
                                    "Could not open backing file: Cannot find device='{b}' nor node-name='{b}'"
                                )))
                            }
                        },
                        Some(Value::Null) | None => {}
                        Some(_) => return None,
                    }
                    // Without `backing`, QEMU opens the header's backing file itself.
                    if args.get("backing").is_none() {
                        open_header = header;
                    }
                    Drv::Qcow2(size)
                };
                if let Some(path) = inline {
                    self.nodes.push(Node {
                        implicit: true,
                        ..Node::new(child.clone(), Drv::File(path))
                    });
                }
                let node = Node {
                    child: Some(child),
                    no_backing: args.get("backing") == Some(&Value::Null),
                    backing,
                    ..Node::new(name.to_owned(), drv)
                };
                if let Some(path) = open_header {
                    // The node first, then its backing chain (as QEMU names them).
                    let (nodes, generated) = (self.nodes.len(), self.generated);
                    self.nodes.push(node);
                    let chain = self.open_chain(&path, 0);
                    match chain {
                        Some(Ok(b)) => {
                            if let Some(n) = self.node_mut(name) {
                                n.backing = Some(b);
                            }
                            return Some(Outcome::empty());
                        }
                        failed => {
                            self.nodes.truncate(nodes);
                            self.generated = generated;
                            return failed
                                .map(|r| r.map(|_| Outcome::empty()).unwrap_or_else(|e| e));
                        }
                    }
                }
                node
            }
        };
        self.nodes.push(node);
        Some(Outcome::empty())
    }

    /// Opens the qcow2 image at `path` as a backing node, read-only, with its own backing
    /// chain: a generated `file` node, then a generated `qcow2` node over it, then what
    /// its header names. `None` when the model does not know what QEMU would do (a missing
    /// or raw backing file, or one already open).
    fn open_chain(&mut self, path: &str, depth: usize) -> Option<Result<String, Outcome>> {
        let image = self.images.get(path)?.clone();
        let size = image.qcow2?;
        if depth > MAX_NODES
            || self
                .nodes
                .iter()
                .any(|n| matches!(&n.drv, Drv::File(p) if p == path))
        {
            return None;
        }
        if self.nodes.len() + 2 > MAX_NODES {
            return Some(Err(err(format!(
                "The fake QEMU does not model more than {MAX_NODES} block nodes"
            ))));
        }
        let file = self.generate_name();
        self.nodes.push(Node {
            implicit: true,
            ..Node::new(file.clone(), Drv::File(path.to_owned()))
        });
        let name = self.generate_name();
        self.nodes.push(Node {
            child: Some(file),
            implicit: true,
            ..Node::new(name.clone(), Drv::Qcow2(size))
        });
        if let Some(b) = image.backing {
            match self.open_chain(&b, depth + 1)? {
                Ok(inner) => {
                    if let Some(n) = self.node_mut(&name) {
                        n.backing = Some(inner);
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(name))
    }

    /// Whether QEMU opened the node read-only: a backing node it opened itself, and the
    /// file under one.
    fn read_only(&self, node: &Node) -> bool {
        node.implicit
            && (self.overlay(&node.name).is_some()
                || self.nodes.iter().any(|p| {
                    p.child.as_deref() == Some(node.name.as_str())
                        && p.drv != Drv::MirrorTop
                        && self.read_only(p)
                }))
    }

    /// Whether a qcow2 node writes the image at `path` through a file node other than
    /// `except`: it holds the image's write lock, which it does not share.
    fn write_locked(&self, path: &str, except: Option<&str>) -> bool {
        self.nodes.iter().any(|n| {
            matches!(n.drv, Drv::Qcow2(_))
                && !self.read_only(n)
                && n.child.as_deref().is_some_and(|c| Some(c) != except)
                && n.child
                    .as_deref()
                    .and_then(|c| self.node(c))
                    .is_some_and(|c| matches!(&c.drv, Drv::File(p) if p == path))
        })
    }

    /// Whether a `file` node may open `path`, with room for `new` nodes.
    fn check_file(&self, path: &str, new: usize) -> Result<(), Outcome> {
        if !self.images.contains_key(path) {
            return Err(err(format!(
                "Could not open '{path}': No such file or directory"
            )));
        }
        if self.nodes.len() + new > MAX_NODES {
            return Err(err(format!(
                "The fake QEMU does not model more than {MAX_NODES} block nodes"
            )));
        }
        Ok(())
    }

    fn blockdev_del(&mut self, name: &str) -> Outcome {
        let Some(node) = self.node(name) else {
            return err(format!("Failed to find node with node-name='{name}'"));
        };
        if self.has_blk(name) {
            return err(format!("Node {name} is in use"));
        }
        if let Some(job) = self.blocking_job(name) {
            return err(format!(
                "Node '{name}' is busy: block device is in use by block job: {}",
                job.kind.name()
            ));
        }
        if let Some(overlay) = self.overlay(name) {
            return err(format!(
                "Node '{name}' is busy: node is used as backing hd of '{}'",
                overlay.name
            ));
        }
        if node.implicit {
            return err(format!("Node {name} is not owned by the monitor"));
        }
        if self.parents(name) > 0 {
            return err(format!("Block device {name} is in use"));
        }
        self.remove_node(name);
        Outcome::empty()
    }

    /// Removes the nodes QEMU made (but jobs' filters) that nothing uses any more, as the
    /// backing nodes a stream or a commit drops from a chain.
    fn collect(&mut self) {
        loop {
            let orphan = self.nodes.iter().find(|n| {
                n.implicit
                    && n.drv != Drv::MirrorTop
                    && self.parents(&n.name) == 0
                    && !self.jobs.iter().any(|j| {
                        j.active()
                            && (j.source.as_deref() == Some(n.name.as_str())
                                || j.target.as_deref() == Some(n.name.as_str()))
                    })
            });
            let Some(name) = orphan.map(|n| n.name.clone()) else {
                return;
            };
            self.remove_node(&name);
        }
    }

    /// Removes a node, and its implicit child once nothing else uses it.
    fn remove_node(&mut self, name: &str) {
        let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
            return;
        };
        let node = self.nodes.remove(i);
        for child in [node.child, node.backing].into_iter().flatten() {
            if self.node(&child).is_some_and(|c| c.implicit) && self.parents(&child) == 0 {
                self.remove_node(&child);
            }
        }
    }

    // Dirty bitmaps.

    /// A bitmap command (or transaction action) on this state; `None` if not modelled.
    fn bitmap_action(
        &mut self,
        name: &str,
        args: &Map<String, Value>,
    ) -> Option<Result<(), Outcome>> {
        let node = str_arg(args, "node")?;
        if name == "block-dirty-bitmap-add" {
            let bitmap = str_arg(args, "name")?;
            return Some(self.bitmap_add(node, bitmap, args));
        }
        let Some(n) = self.node(node) else {
            return Some(Err(err(format!("Node '{node}' not found"))));
        };
        let target = if name == "block-dirty-bitmap-merge" {
            str_arg(args, "target")?
        } else {
            str_arg(args, "name")?
        };
        let Some(b) = n.bitmaps.iter().position(|b| b.name == target) else {
            return Some(Err(err(format!("Dirty bitmap '{target}' not found"))));
        };
        let size = self.virtual_size(n);
        match name {
            "block-dirty-bitmap-remove" => {
                self.node_mut(node)?.bitmaps.remove(b);
            }
            "block-dirty-bitmap-enable" | "block-dirty-bitmap-disable" => {
                self.node_mut(node)?.bitmaps[b].recording = name == "block-dirty-bitmap-enable";
            }
            "block-dirty-bitmap-clear" => {}
            _ => {
                // Merge: every source must exist and be of the target's size.
                let sources = args.get("bitmaps")?.as_array()?;
                if sources.is_empty() {
                    // QEMU 10.0.2 aborts on an empty list.
                    return None;
                }
                for s in sources {
                    let (sn, sb) = match s {
                        Value::String(b) => (node, b.as_str()),
                        Value::Object(o) => (str_arg(o, "node")?, str_arg(o, "name")?),
                        _ => return None,
                    };
                    let Some(src) = self.node(sn) else {
                        return Some(Err(err(format!("Node '{sn}' not found"))));
                    };
                    if !src.bitmaps.iter().any(|b| b.name == sb) {
                        return Some(Err(err(format!("Dirty bitmap '{sb}' not found"))));
                    }
                    let ssize = self.virtual_size(src);
                    if ssize != size {
                        return Some(Err(err(format!(
                            "Bitmaps are of different sizes (destination size is {size}, source size is {ssize}) and can't be merged"
                        ))));
                    }
                }
            }
        }
        Some(Ok(()))
    }

    fn bitmap_add(
        &mut self,
        node: &str,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<(), Outcome> {
        if name.is_empty() {
            return Err(err("Bitmap name cannot be empty"));
        }
        let Some(n) = self.node(node) else {
            return Err(not_found(node));
        };
        let granularity = match args.get("granularity").and_then(Value::as_u64) {
            Some(g) if g < 512 || !g.is_power_of_two() => {
                return Err(err("Granularity must be power of 2 and at least 512"))
            }
            Some(g) => g,
            None => DEFAULT_GRANULARITY,
        };
        let persistent = bool_arg(args, "persistent", false);
        if persistent && !matches!(n.drv, Drv::Qcow2(_)) {
            return Err(err(format!(
                "Can't store persistent bitmaps to {node}: Operation not supported"
            )));
        }
        if n.bitmaps.iter().any(|b| b.name == name) {
            return Err(err(format!("Bitmap already exists: {name}")));
        }
        if name.len() > MAX_BITMAP_NAME {
            return Err(err(format!("Bitmap name too long: {name}")));
        }
        if n.bitmaps.len() >= MAX_BITMAPS {
            return Err(err(format!(
                "The fake QEMU does not model more than {MAX_BITMAPS} dirty bitmaps on a node"
            )));
        }
        let recording = !bool_arg(args, "disabled", false);
        if let Some(n) = self.node_mut(node) {
            n.bitmaps.push(Bitmap {
                name: name.to_owned(),
                granularity,
                recording,
                persistent,
            });
        }
        Ok(())
    }

    /// QEMU drains the whole graph (`bdrv_drain_all`): every job that is running or ready,
    /// and not paused, reaches its pause point and goes on (`paused` and `running`, or
    /// `standby` and `ready`), before the reply.
    fn drain(&mut self, ctx: &mut Context<'_>) {
        for job in &mut self.jobs {
            if job.user_paused {
                continue;
            }
            let (paused, back) = match job.status {
                "running" => ("paused", "running"),
                "ready" => ("standby", "ready"),
                _ => continue,
            };
            Self::status(ctx, job, paused);
            Self::status(ctx, job, back);
        }
    }

    /// `transaction` of bitmap actions: all or nothing, the first error wins.
    fn transaction(&mut self, args: &Map<String, Value>) -> Option<Outcome> {
        let actions = args.get("actions")?.as_array()?;
        if args.contains_key("properties") {
            return None;
        }
        let mut next = self.clone();
        for action in actions {
            let kind = str_arg(action.as_object()?, "type")?;
            let data = action.get("data")?.as_object()?;
            if !kind.starts_with("block-dirty-bitmap-") {
                return None;
            }
            if let Err(e) = next.bitmap_action(kind, data)? {
                return Some(e);
            }
        }
        *self = next;
        Some(Outcome::empty())
    }

    // Jobs.

    fn job_info(job: &Job) -> Value {
        let mut v = json!({
            "current-progress": job.offset, "status": job.status,
            "total-progress": job.len, "type": job.kind.name(), "id": job.id,
        });
        if let Some(e) = &job.error {
            v.as_object_mut()
                .expect("an object")
                .insert("error".into(), json!(e));
        }
        v
    }

    fn block_job_info(job: &Job) -> Value {
        let paused = job.user_paused || (job.status == "pending" && !job.auto_finalize);
        let mut v = json!({
            "auto-finalize": job.auto_finalize, "io-status": "ok", "device": job.id,
            "auto-dismiss": job.auto_dismiss, "busy": false, "len": job.len,
            "offset": job.offset, "status": job.status, "paused": paused,
            "speed": job.speed, "ready": matches!(job.status, "ready" | "standby"),
            "type": job.kind.name(),
        });
        if job.kind == JobType::Mirror {
            v.as_object_mut()
                .expect("an object")
                .insert("actively-synced".into(), json!(false));
        }
        v
    }

    /// The checks of `job_create`: a well-formed, unused id, and room for one more job.
    fn check_job_id(&self, id: &str) -> Result<(), Outcome> {
        if !id_wellformed(id) {
            return Err(err(format!("Invalid job ID '{id}'")));
        }
        if self.job_index(id).is_some() {
            return Err(err(format!("Job ID '{id}' already in use")));
        }
        if self.jobs.len() >= MAX_JOBS {
            return Err(err(format!(
                "The fake QEMU does not model more than {MAX_JOBS} jobs"
            )));
        }
        Ok(())
    }

    fn new_job(&self, id: &str, kind: JobType, args: &Map<String, Value>) -> Job {
        Job {
            id: id.to_owned(),
            kind,
            status: "created",
            auto_finalize: bool_arg(args, "auto-finalize", true),
            auto_dismiss: bool_arg(args, "auto-dismiss", kind != JobType::Create),
            speed: args.get("speed").and_then(Value::as_u64).unwrap_or(0),
            len: u64::from(kind == JobType::Create),
            offset: 0,
            source: None,
            target: None,
            filter: None,
            readies: kind == JobType::Mirror,
            base: None,
            overlay: None,
            create: None,
            user_paused: false,
            due: None,
            left: None,
            complete_on_resume: false,
            pivot: false,
            cancelled: false,
            error: None,
        }
    }

    fn status(ctx: &mut Context<'_>, job: &mut Job, status: &'static str) {
        job.status = status;
        ctx.emit_event_json(
            "JOB_STATUS_CHANGE",
            &format!(
                r#"{{"status": "{status}", "id": {}}}"#,
                Value::String(job.id.clone())
            ),
        );
    }

    /// Starts a job: `created`, `running`, and its work due after the job duration (or
    /// done at once when `sync`).
    fn start(&mut self, ctx: &mut Context<'_>, mut job: Job, sync: bool, step: Step) {
        Self::status(ctx, &mut job, "created");
        Self::status(ctx, &mut job, "running");
        let at = match step {
            Step::Work => ctx.now() + self.job_duration,
            _ => ctx.now(),
        };
        job.due = Some((at, step));
        self.jobs.push(job);
        let i = self.jobs.len() - 1;
        if sync {
            self.run_due(ctx, i);
        }
    }

    fn blockdev_create(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        let id = str_arg(args, "job-id")?;
        let options = args.get("options")?.as_object()?;
        let size = options.get("size")?.as_u64()?;
        let create = match str_arg(options, "driver")? {
            "qcow2" if only_keys(options, &["driver", "file", "size"]) => Create::Qcow2 {
                file: str_arg(options, "file")?.to_owned(),
                size,
            },
            "file" if only_keys(options, &["driver", "filename", "size"]) => Create::File {
                path: str_arg(options, "filename")?.to_owned(),
                size,
            },
            _ => return None,
        };
        if let Err(e) = self.check_job_id(id) {
            return Some(e);
        }
        let mut job = self.new_job(id, JobType::Create, args);
        // The error the job will end with, if any.
        let mut step = Step::Work;
        match &create {
            Create::Qcow2 { file, size } => match self.node(file) {
                None => {
                    step = Step::Fail(format!(
                        "Cannot find device='{file}' nor node-name='{file}'"
                    ))
                }
                Some(_) if size % 512 != 0 => {
                    step = Step::Fail("Image size must be a multiple of 512 bytes".into())
                }
                Some(n) if self.path_of(n).is_none() => return None,
                Some(_) => job.source = Some(file.clone()),
            },
            Create::File { path, .. } => {
                if self.images.len() >= MAX_IMAGES && !self.images.contains_key(path) {
                    return Some(err(format!(
                        "The fake QEMU does not model more than {MAX_IMAGES} images"
                    )));
                }
            }
        }
        job.create = Some(create);
        self.start(ctx, job, false, step);
        Some(Outcome::empty())
    }

    /// The common checks of `blockdev-mirror` and `blockdev-backup` (in QEMU's order).
    fn job_nodes(
        &self,
        args: &Map<String, Value>,
        kind: JobType,
    ) -> Option<Result<(String, String, String), Outcome>> {
        let device = str_arg(args, "device")?;
        let target = str_arg(args, "target")?;
        let id = str_arg(args, "job-id").unwrap_or("");
        for node in [device, target] {
            if self.node(node).is_none() {
                return Some(Err(not_found(node)));
            }
        }
        if kind == JobType::Backup {
            if let Some(e) = self.busy(device) {
                return Some(Err(e));
            }
        }
        if kind == JobType::Mirror && (self.parents(device) > 0 || self.has_blk(device)) {
            return Some(Err(err("Need a root block node")));
        }
        if let Some(e) = self.busy(target) {
            return Some(Err(e));
        }
        if device == target {
            return Some(Err(err(match kind {
                JobType::Backup => "Source and target cannot be the same",
                _ => "Can't mirror node into itself",
            })));
        }
        if kind == JobType::Backup
            && self.virtual_size(self.node(device)?) != self.virtual_size(self.node(target)?)
        {
            return Some(Err(err("Source and target image have different sizes")));
        }
        if let Err(e) = self.check_job_id(id) {
            return Some(Err(e));
        }
        Some(Ok((device.to_owned(), target.to_owned(), id.to_owned())))
    }

    /// Whether a job's IO completes without yielding (null-co on both ends, no duration):
    /// QEMU then runs it to its end before it replies.
    fn synchronous(&self, a: &str, b: &str) -> bool {
        self.job_duration.is_zero()
            && [a, b]
                .iter()
                .all(|n| self.node(n).is_some_and(|n| matches!(n.drv, Drv::Null(..))))
    }

    fn blockdev_mirror(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        let known = [
            "job-id",
            "device",
            "target",
            "sync",
            "speed",
            "auto-finalize",
            "auto-dismiss",
        ];
        if !only_keys(args, &known) {
            return None;
        }
        let (device, target, id) = match self.job_nodes(args, JobType::Mirror)? {
            Ok(t) => t,
            Err(e) => return Some(e),
        };
        if self.nodes.len() >= MAX_NODES {
            return Some(err(format!(
                "The fake QEMU does not model more than {MAX_NODES} block nodes"
            )));
        }
        let src_size = self.virtual_size(self.node(&device)?);
        let dst_size = self.virtual_size(self.node(&target)?);
        let sync = self.synchronous(&device, &target);
        let filter = self.generate_name();
        self.nodes.push(Node {
            child: Some(device.clone()),
            implicit: true,
            ..Node::new(filter.clone(), Drv::MirrorTop)
        });
        let mut job = self.new_job(&id, JobType::Mirror, args);
        job.source = Some(device);
        job.target = Some(target);
        job.filter = Some(filter);
        job.len = src_size;
        let step = if src_size == dst_size {
            Step::Work
        } else {
            job.len = 0;
            Step::Fail("Source and target image have different sizes".into())
        };
        self.start(ctx, job, sync && src_size == dst_size, step);
        Some(Outcome::empty())
    }

    fn block_stream(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        let known = [
            "job-id",
            "device",
            "base-node",
            "speed",
            "auto-finalize",
            "auto-dismiss",
        ];
        if !only_keys(args, &known) {
            return None;
        }
        let device = str_arg(args, "device")?;
        let Some(node) = self.node(device) else {
            return Some(not_found(device));
        };
        let chain = self.chain(device);
        let base = str_arg(args, "base-node");
        if let Some(b) = base {
            if !chain.iter().any(|c| c == b) {
                return Some(err(format!(
                    "Node '{b}' is not a backing image of '{device}'"
                )));
            }
        }
        if let Some(e) = self.busy(device) {
            return Some(e);
        }
        if self.has_blk(device) {
            return None;
        }
        let id = str_arg(args, "job-id").unwrap_or("");
        if let Err(e) = self.check_job_id(id) {
            return Some(e);
        }
        let size = self.virtual_size(node);
        let mut job = self.new_job(id, JobType::Stream, args);
        job.source = Some(device.to_owned());
        job.base = base.map(str::to_owned);
        // Nothing to copy without a backing node: the job ends before its reply.
        let sync = chain.is_empty() && self.job_duration.is_zero();
        job.len = if chain.is_empty() { 0 } else { size };
        self.start(ctx, job, sync, Step::Work);
        Some(Outcome::empty())
    }

    fn block_commit(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        let known = [
            "job-id",
            "device",
            "top-node",
            "base-node",
            "speed",
            "auto-finalize",
            "auto-dismiss",
        ];
        if !only_keys(args, &known) {
            return None;
        }
        let device = str_arg(args, "device")?;
        if self.node(device).is_none() {
            return Some(Outcome::Error {
                class: "DeviceNotFound".into(),
                desc: format!("Device '{device}' not found"),
            });
        }
        if self.parents(device) > 0 || self.has_blk(device) {
            return Some(err("Need a root block node"));
        }
        if self.blocking_job(device).is_some() {
            return None;
        }
        let top = str_arg(args, "top-node").unwrap_or(device);
        if top != device && !self.chain(device).iter().any(|c| c == top) {
            return None;
        }
        let below = self.chain(top);
        let base = match str_arg(args, "base-node") {
            Some(b) => b.to_owned(),
            None => below.last()?.clone(),
        };
        if base == top {
            return Some(err("cannot commit an image into itself"));
        }
        if !below.contains(&base) {
            return Some(err(format!("'{base}' is not in this backing file chain")));
        }
        let id = str_arg(args, "job-id").unwrap_or("");
        if let Err(e) = self.check_job_id(id) {
            return Some(e);
        }
        if self.nodes.len() >= MAX_NODES {
            return Some(err(format!(
                "The fake QEMU does not model more than {MAX_NODES} block nodes"
            )));
        }
        let mut job = self.new_job(id, JobType::Commit, args);
        job.source = Some(device.to_owned());
        job.target = Some(base);
        if top == device {
            // An active commit: a mirror of the top into the base, with nothing to copy
            // (the fake's images hold no data), ready after its reply.
            let filter = self.generate_name();
            self.nodes.push(Node {
                child: Some(device.to_owned()),
                implicit: true,
                ..Node::new(filter.clone(), Drv::MirrorTop)
            });
            job.filter = Some(filter);
            job.readies = true;
        } else {
            job.len = self.virtual_size(self.node(top)?);
            job.overlay = self.overlay(top).map(|n| n.name.clone());
        }
        self.start(ctx, job, false, Step::Work);
        Some(Outcome::empty())
    }

    fn blockdev_backup(
        &mut self,
        ctx: &mut Context<'_>,
        args: &Map<String, Value>,
    ) -> Option<Outcome> {
        let known = [
            "job-id",
            "device",
            "target",
            "sync",
            "speed",
            "auto-finalize",
            "auto-dismiss",
        ];
        if !only_keys(args, &known) || str_arg(args, "sync")? != "full" {
            return None;
        }
        let (device, target, id) = match self.job_nodes(args, JobType::Backup)? {
            Ok(t) => t,
            Err(e) => return Some(e),
        };
        let src_size = self.virtual_size(self.node(&device)?);
        let sync = self.synchronous(&device, &target);
        let mut job = self.new_job(&id, JobType::Backup, args);
        job.source = Some(device);
        job.target = Some(target);
        job.len = src_size;
        Self::status(ctx, &mut job, "created");
        Self::status(ctx, &mut job, "running");
        // Backup drains its source as it starts: the job pauses and resumes once.
        Self::status(ctx, &mut job, "paused");
        Self::status(ctx, &mut job, "running");
        job.due = Some((ctx.now() + self.job_duration, Step::Work));
        self.jobs.push(job);
        if sync {
            let i = self.jobs.len() - 1;
            self.run_due(ctx, i);
        }
        Some(Outcome::empty())
    }

    /// A verb on the job at `i` (`job-*`, and `block-job-*` but for a soft cancel of a
    /// ready mirror).
    fn job_verb(&mut self, ctx: &mut Context<'_>, i: usize, verb: &str) -> Outcome {
        let job = &self.jobs[i];
        if verb == "resume" && !job.user_paused {
            return err("Can't resume a job that was not paused");
        }
        if !verb_allowed(verb, job.status) {
            return err(format!(
                "Job '{}' in state '{}' cannot accept command verb '{verb}'",
                job.id, job.status
            ));
        }
        match verb {
            "pause" => {
                if job.user_paused {
                    return err("Job is already paused");
                }
                let now = ctx.now();
                let job = &mut self.jobs[i];
                job.user_paused = true;
                // The job reaches its pause point at once, before the reply.
                if let Some((at, Step::Work)) = &job.due {
                    job.left = Some(at.saturating_duration_since(now));
                    job.due = None;
                }
                let paused = if job.status == "ready" {
                    "standby"
                } else {
                    "paused"
                };
                Self::status(ctx, job, paused);
                Outcome::empty()
            }
            "resume" => {
                let now = ctx.now();
                let job = &mut self.jobs[i];
                job.user_paused = false;
                let back = if job.status == "standby" {
                    "ready"
                } else {
                    "running"
                };
                Self::status(ctx, job, back);
                if let Some(left) = job.left.take() {
                    job.due = Some((now + left, Step::Work));
                }
                if std::mem::take(&mut job.complete_on_resume) {
                    job.due = Some((now, Step::Complete { pivot: true }));
                }
                Outcome::empty()
            }
            "complete" => self.complete(ctx, i, true),
            "cancel" => {
                let job = &mut self.jobs[i];
                job.user_paused = false;
                job.left = None;
                job.due = Some((ctx.now(), Step::Cancel));
                if job.status == "pending" {
                    // A job waiting for `job-finalize` aborts at once, before the reply.
                    self.run_due(ctx, i);
                }
                Outcome::empty()
            }
            "finalize" => {
                self.finalize(ctx, i);
                Outcome::empty()
            }
            _ => {
                // Dismiss.
                let job = &mut self.jobs[i];
                Self::status(ctx, job, "null");
                self.jobs.remove(i);
                Outcome::empty()
            }
        }
    }

    /// Completes a ready mirror (after the reply), switching to its target if `pivot`.
    fn complete(&mut self, ctx: &mut Context<'_>, i: usize, pivot: bool) -> Outcome {
        let now = ctx.now();
        let job = &mut self.jobs[i];
        if job.status == "standby" {
            job.complete_on_resume = true;
        } else {
            job.due = Some((now, Step::Complete { pivot }));
        }
        Outcome::empty()
    }

    /// The next time a job has something to do.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.jobs
            .iter()
            .filter_map(|j| j.due.as_ref().map(|(at, _)| *at))
            .min()
    }

    /// Runs the steps that are due, oldest job first.
    pub(crate) fn on_timer(&mut self, ctx: &mut Context<'_>) {
        let now = ctx.now();
        loop {
            let Some(i) = self
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| j.due.as_ref().is_some_and(|(at, _)| *at <= now))
                .min_by_key(|(_, j)| j.due.as_ref().map(|(at, _)| *at))
                .map(|(i, _)| i)
            else {
                return;
            };
            self.run_due(ctx, i);
        }
    }

    fn run_due(&mut self, ctx: &mut Context<'_>, i: usize) {
        let Some((_, step)) = self.jobs[i].due.take() else {
            return;
        };
        match step {
            Step::Work => {
                let target = match self.jobs[i].kind {
                    JobType::Mirror | JobType::Backup => self.jobs[i].target.clone(),
                    _ => None,
                };
                if let Some(path) = target
                    .as_deref()
                    .and_then(|t| self.node(t))
                    .filter(|t| matches!(t.drv, Drv::Qcow2(_)))
                    .and_then(|t| self.path_of(t))
                {
                    if let Some(image) = self.images.get_mut(&path) {
                        image.write_zeroes();
                    }
                }
                let job = &mut self.jobs[i];
                job.offset = job.len;
                if job.readies {
                    Self::status(ctx, job, "ready");
                    ctx.emit_event_json("BLOCK_JOB_READY", &format!("{{{}}}", job.progress_data()));
                } else {
                    self.finish(ctx, i);
                }
            }
            Step::Complete { pivot } => {
                self.jobs[i].pivot = pivot;
                self.finish(ctx, i);
            }
            Step::Cancel => {
                self.jobs[i].cancelled = true;
                self.abort(ctx, i, None);
            }
            Step::Fail(e) => self.abort(ctx, i, Some(e)),
        }
    }

    /// The job's work ended well: `waiting`, `pending`, then finalized unless it waits for
    /// `job-finalize`.
    fn finish(&mut self, ctx: &mut Context<'_>, i: usize) {
        let job = &mut self.jobs[i];
        Self::status(ctx, job, "waiting");
        Self::status(ctx, job, "pending");
        if !job.auto_finalize {
            ctx.emit_event_json(
                "BLOCK_JOB_PENDING",
                &format!(
                    r#"{{"type": "{}", "id": {}}}"#,
                    job.kind.name(),
                    Value::String(job.id.clone())
                ),
            );
            return;
        }
        self.finalize(ctx, i);
    }

    /// Applies what the job did, reports it and concludes (a pending job, or one that
    /// finished with auto-finalize).
    fn finalize(&mut self, ctx: &mut Context<'_>, i: usize) {
        if self.jobs[i].cancelled {
            self.abort(ctx, i, None);
            return;
        }
        if let Some(create) = self.jobs[i].create.clone() {
            self.jobs[i].offset = 1;
            match create {
                Create::Qcow2 { file, size } => {
                    if let Some(path) = self.node(&file).and_then(|n| self.path_of(n)) {
                        self.images.insert(path, Image::qcow2(size));
                    }
                }
                Create::File { path, size } => {
                    self.add_image(
                        &path,
                        Image {
                            len: size,
                            actual: CREATED_RAW_ACTUAL_SIZE,
                            qcow2: None,
                            written: false,
                            backing: None,
                        },
                    );
                }
            }
        }
        let job = &self.jobs[i];
        let relink = match job.kind {
            // The streamed node's backing is the base now (the header says so too).
            JobType::Stream => job.source.clone().map(|s| (s, job.base.clone())),
            // The committed nodes leave the chain: the top's overlay backs onto the base.
            JobType::Commit => job.overlay.clone().map(|o| (o, job.target.clone())),
            _ => None,
        };
        if let Some((node, base)) = relink {
            let base_path = base
                .as_deref()
                .and_then(|b| self.node(b))
                .and_then(|b| self.path_of(b));
            let path = self.node(&node).and_then(|n| self.path_of(n));
            if let Some(n) = self.node_mut(&node) {
                n.backing = base;
            }
            if let Some(image) = path.and_then(|p| self.images.get_mut(&p)) {
                image.backing = base_path;
            }
            self.collect();
        }
        let job = &self.jobs[i];
        if job.is_block_job() {
            ctx.emit_event_json(
                "BLOCK_JOB_COMPLETED",
                &format!("{{{}}}", job.progress_data()),
            );
        }
        if job.pivot {
            // The target takes the source's place under the source's parents.
            if let (Some(src), Some(dst)) = (job.source.clone(), job.target.clone()) {
                for n in &mut self.nodes {
                    if n.child.as_deref() == Some(src.as_str()) && n.drv != Drv::MirrorTop {
                        n.child = Some(dst.clone());
                    }
                }
            }
        }
        self.conclude(ctx, i);
    }

    /// The job failed or was cancelled: `aborting`, its event, then it concludes.
    fn abort(&mut self, ctx: &mut Context<'_>, i: usize, error: Option<String>) {
        let job = &mut self.jobs[i];
        Self::status(ctx, job, "aborting");
        if job.kind == JobType::Create {
            job.offset = 1;
        }
        if job.is_block_job() {
            match &error {
                None => ctx.emit_event_json(
                    "BLOCK_JOB_CANCELLED",
                    &format!("{{{}}}", job.progress_data()),
                ),
                Some(e) => ctx.emit_event_json(
                    "BLOCK_JOB_COMPLETED",
                    &format!(
                        "{{{}, \"error\": {}}}",
                        job.progress_data(),
                        Value::String(e.clone())
                    ),
                ),
            }
        }
        job.error = error;
        self.conclude(ctx, i);
    }

    fn conclude(&mut self, ctx: &mut Context<'_>, i: usize) {
        let job = &mut self.jobs[i];
        Self::status(ctx, job, "concluded");
        let filter = job.filter.take();
        if job.auto_dismiss {
            Self::status(ctx, job, "null");
            self.jobs.remove(i);
        }
        if let Some(f) = filter {
            self.nodes.retain(|n| n.name != f);
        }
    }
}
