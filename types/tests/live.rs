//! The generated vocabulary against real QEMU 10.0.2 and 7.2: qemu-system-x86_64 (`-M none`,
//! `pc`, `q35`), qemu-storage-daemon and qemu-ga.
//!
//! - The vocabulary (`tests/vocabulary.json`, written by the generator from the model it
//!   writes the Rust types from) is compared with the live `query-qmp-schema`: every command
//!   and event present, every member with the same name, optionality and type shape (JSON
//!   type, enum values, array element, object members, union tag and cases, alternate
//!   branches), recursively. And with qemu-ga's `guest-info`: the same command list.
//! - Every command that takes no required arguments and is safe to run (`query-*`,
//!   `x-query-*`, `qom-list`, with a null drive or node; qemu-ga's `guest-info`, `guest-get-*`, ...) runs through its
//!   typed API and its reply decodes.
//! - Against QEMU 7.2 (the distribution's packages unpacked beside 10.0, see the test kit's
//!   `QemuVersion`): every command and event of 7.2 is in the vocabulary, and every safe
//!   command's reply decodes into the 10.0.2 types. Each 7.2 test prints what differs
//!   (`cargo test -p qmp-types --test live 7_2 -- --nocapture`); a command missing from the
//!   vocabulary or a reply that does not decode fails the test unless it is listed with
//!   its reason in [`ABSENT_SINCE_7_2`] or [`UNDECODABLE_ON_7_2`].
//!
//! A missing QEMU binary skips a test with the reason printed, unless `QMP_REQUIRE_QEMU=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use qmp_blocking::{Builder, Connection, Error};
use qmp_testkit::blocking::Peer;
use qmp_testkit::QemuVersion;
use serde_json::Value;

mod common;

const VOCABULARY: &str = include_str!("vocabulary.json");

/// The generated vocabulary of a namespace (`QMP` or `QGA`), by name.
fn mine(ns: &str) -> BTreeMap<String, Value> {
    let all: Vec<Value> = serde_json::from_str(VOCABULARY).unwrap();
    all.into_iter()
        .filter(|e| e["ns"] == ns)
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e))
        .collect()
}

const BUILTINS: &[(&str, &str)] = &[
    ("str", "string"),
    ("int", "int"),
    ("int8", "int"),
    ("int16", "int"),
    ("int32", "int"),
    ("int64", "int"),
    ("uint8", "int"),
    ("uint16", "int"),
    ("uint32", "int"),
    ("uint64", "int"),
    ("size", "int"),
    ("number", "number"),
    ("bool", "boolean"),
    ("null", "null"),
    ("any", "value"),
];

struct Compare<'a> {
    mine: &'a BTreeMap<String, Value>,
    live: BTreeMap<String, Value>,
    seen: BTreeSet<(String, String)>,
    diffs: Vec<String>,
}

impl Compare<'_> {
    fn diff(&mut self, at: &str, what: String) {
        self.diffs.push(format!("{at}: {what}"));
    }

    /// Compares a generated type (QAPI name, `[T]`, or none for "no arguments/returns")
    /// with a live one (introspection name).
    fn ty(&mut self, at: &str, mine: Option<&str>, live: &str) {
        if !self
            .seen
            .insert((mine.unwrap_or("").to_owned(), live.to_owned()))
        {
            return;
        }
        let l = self.live.get(live).cloned().unwrap_or(Value::Null);
        let meta = l["meta-type"].as_str().unwrap_or("?");
        let Some(mine) = mine else {
            if meta != "object" || l["members"].as_array().is_some_and(|m| !m.is_empty()) {
                self.diff(at, format!("none here, live {l}"));
            }
            return;
        };
        if let Some(inner) = mine.strip_prefix('[').and_then(|m| m.strip_suffix(']')) {
            if meta != "array" {
                self.diff(at, format!("array here, live {meta}"));
                return;
            }
            let el = l["element-type"].as_str().unwrap().to_owned();
            self.ty(&format!("{at}[]"), Some(inner), &el);
            return;
        }
        if let Some((_, json)) = BUILTINS.iter().find(|(b, _)| *b == mine) {
            if meta != "builtin" || l["json-type"] != *json {
                self.diff(at, format!("{mine} ({json}) here, live {l}"));
            }
            return;
        }
        let Some(m) = self.mine.get(mine).cloned() else {
            self.diff(at, format!("type {mine} missing here"));
            return;
        };
        let my_meta = m["meta-type"].as_str().unwrap();
        if my_meta != meta {
            self.diff(at, format!("{mine} is {my_meta} here, live {meta}"));
            return;
        }
        let at = format!("{at} ({mine})");
        match meta {
            "enum" => {
                if m["values"] != l["values"] {
                    self.diff(
                        &at,
                        format!("values {} here, live {}", m["values"], l["values"]),
                    );
                }
            }
            "alternate" => {
                let mm = m["members"].as_array().unwrap();
                let lm = l["members"].as_array().unwrap();
                if mm.len() != lm.len() {
                    self.diff(
                        &at,
                        format!("{} branches here, live {}", mm.len(), lm.len()),
                    );
                    return;
                }
                for (i, (a, b)) in mm.iter().zip(lm).enumerate() {
                    let (a, b) = (a["type"].as_str().unwrap(), b["type"].as_str().unwrap());
                    self.ty(&format!("{at}|{i}"), Some(a), b);
                }
            }
            "object" => self.object(&at, &m, &l),
            other => self.diff(&at, format!("unexpected meta-type {other}")),
        }
    }

    fn object(&mut self, at: &str, m: &Value, l: &Value) {
        let mm: BTreeMap<&str, &Value> = m["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].as_str().unwrap(), x))
            .collect();
        let lm: BTreeMap<&str, &Value> = l["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["name"].as_str().unwrap(), x))
            .collect();
        let mut todo = Vec::new();
        for (name, x) in &mm {
            let Some(y) = lm.get(name) else {
                let required = if x["optional"] == false {
                    " (required here)"
                } else {
                    ""
                };
                self.diff(at, format!("member {name} only here{required}"));
                continue;
            };
            let live_optional = y.get("default").is_some();
            if x["optional"] != live_optional {
                self.diff(
                    at,
                    format!(
                        "member {name}: optional {} here, live {live_optional}",
                        x["optional"]
                    ),
                );
            }
            todo.push((
                format!("{at}.{name}"),
                x["type"].as_str().unwrap().to_owned(),
                y["type"].as_str().unwrap().to_owned(),
            ));
        }
        for name in lm.keys().filter(|n| !mm.contains_key(*n)) {
            self.diff(at, format!("member {name} only live"));
        }
        if m.get("tag") != l.get("tag") {
            self.diff(
                at,
                format!("tag {:?} here, live {:?}", m.get("tag"), l.get("tag")),
            );
        }
        let cases = |v: &Value| -> BTreeMap<String, String> {
            v["variants"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            (
                                x["case"].as_str().unwrap().to_owned(),
                                x["type"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (mc, lc) = (cases(m), cases(l));
        for (case, lt) in &lc {
            match mc.get(case) {
                Some(mt) => todo.push((format!("{at}<{case}>"), mt.clone(), lt.clone())),
                None => {
                    // A case without members here: live must be empty too.
                    let empty = self.live[lt]["members"]
                        .as_array()
                        .is_some_and(Vec::is_empty);
                    if !empty {
                        self.diff(at, format!("case {case} has no members here, live {lt}"));
                    }
                }
            }
        }
        for case in mc.keys().filter(|c| !lc.contains_key(*c)) {
            self.diff(at, format!("case {case} only here"));
        }
        for (at, a, b) in todo {
            self.ty(&at, Some(&a), &b);
        }
    }
}

/// Compares the live schema with the generated vocabulary: every live command and event
/// must be here with the same shape; with `both_ways`, every generated one must be live.
fn compare(qmp: &mut Connection, both_ways: bool) -> (usize, usize, Vec<String>) {
    let schema: Vec<Value> = qmp.execute("query-qmp-schema", &()).unwrap();
    let mine = mine("QMP");
    let live: BTreeMap<String, Value> = schema
        .into_iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e))
        .collect();
    let mut c = Compare {
        mine: &mine,
        live,
        seen: BTreeSet::new(),
        diffs: Vec::new(),
    };
    let (mut commands, mut events) = (0, 0);
    let entries: Vec<Value> = c.live.values().cloned().collect();
    for l in &entries {
        let name = l["name"].as_str().unwrap();
        let meta = l["meta-type"].as_str().unwrap();
        if meta != "command" && meta != "event" {
            continue;
        }
        let Some(m) = mine.get(name).filter(|m| m["meta-type"] == meta) else {
            c.diff(name, format!("{meta} missing here"));
            continue;
        };
        let at = format!("{meta} {name}");
        c.ty(
            &format!("{at} arguments"),
            m["arg-type"].as_str(),
            l["arg-type"].as_str().unwrap(),
        );
        if meta == "command" {
            commands += 1;
            c.ty(
                &format!("{at} returns"),
                m["ret-type"].as_str(),
                l["ret-type"].as_str().unwrap(),
            );
            let live_oob = l.get("allow-oob") == Some(&Value::Bool(true));
            if m["allow-oob"] != live_oob {
                c.diff(
                    &at,
                    format!("allow-oob {} here, live {live_oob}", m["allow-oob"]),
                );
            }
        } else {
            events += 1;
        }
    }
    if both_ways {
        for (name, m) in &mine {
            let meta = m["meta-type"].as_str().unwrap();
            if (meta == "command" || meta == "event") && !c.live.contains_key(name) {
                c.diffs
                    .push(format!("{meta} {name}: generated but not live"));
            }
        }
    }
    (commands, events, c.diffs)
}

/// Commands and events of QEMU 7.2 that the generated (10.0.2) vocabulary does not have,
/// with the reason: each was removed from QEMU after 7.2. The 7.2 tests fail on any other.
const ABSENT_SINCE_7_2: &[(&str, &str)] = &[
    (
        "MEM_UNPLUG_ERROR",
        "removed in QEMU 9.1, replaced by DEVICE_UNPLUG_GUEST_ERROR",
    ),
    (
        "RDMA_GID_STATUS_CHANGED",
        "removed in QEMU 9.1 with pvrdma and the RDMA subsystem",
    ),
    (
        "x-query-rdma",
        "removed in QEMU 9.1 with pvrdma and the RDMA subsystem",
    ),
    (
        "x-query-profile",
        "removed after 7.2 with TCG's profiler (CONFIG_PROFILER)",
    ),
    (
        "guest-get-devices",
        "Windows only: `'if': 'CONFIG_WIN32'` in 10.0.2's schema, listed (disabled) by 7.2's \
         qemu-ga on Linux",
    ),
];

/// 7.2 replies that do not decode, with the reason: none. Members that QEMU added to a type
/// after the type itself (`active`, `acpi`, `calc-time-unit`, `zone_append_*`, ...) are
/// optional in the types that are only received, and a union whose discriminator is missing
/// (`SevInfo`, a struct in 7.2) decodes to its `Other` case, so every reply of 7.2 decodes.
const UNDECODABLE_ON_7_2: &[(&str, &str)] = &[];

/// The reason a 7.2 command or event is absent from the vocabulary, if it is explained.
fn explained<'a>(list: &'a [(&str, &'a str)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_matches_live_qemu_system() {
    let Some(mut vm) = Peer::system_of(QemuVersion::V10_0, &["-M", "none", "-S"]) else {
        return;
    };
    let mut qmp = vm.connect();
    let (commands, events, diffs) = compare(&mut qmp, true);
    eprintln!(
        "qemu-system-x86_64: {commands} commands, {events} events compared, {} differences",
        diffs.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(
        commands > 200 && events > 50,
        "{commands} commands, {events} events"
    );
    vm.quit(&mut qmp);
}

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_matches_live_storage_daemon() {
    let Some(mut qsd) = Peer::storage_daemon_of(QemuVersion::V10_0) else {
        return;
    };
    let mut qmp = qsd.connect();
    let (commands, events, diffs) = compare(&mut qmp, false);
    eprintln!(
        "qemu-storage-daemon: {commands} commands, {events} events compared, {} differences",
        diffs.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(commands > 50, "{commands} commands");
}

/// QEMU 7.2's schema against the 10.0.2 vocabulary: every command and event of 7.2 must be
/// in the vocabulary (or be explained in [`ABSENT_SINCE_7_2`]). The shapes differ where
/// QEMU changed them since 7.2: those differences are printed, and the members that 10.0.2
/// requires in a reply or an event but 7.2 does not send (which would fail to decode) are
/// listed apart.
#[allow(clippy::print_stderr)]
fn vocabulary_covers_7_2(what: &str, qmp: &mut Connection) -> usize {
    let (commands, events, diffs) = compare(qmp, false);
    let (absent, shapes): (Vec<&String>, Vec<&String>) = diffs.iter().partition(|d| is_absent(d));
    eprintln!(
        "{what} 7.2: {commands} commands, {events} events; {} absent from the 10.0.2 vocabulary, {} shape differences",
        absent.len(),
        shapes.len()
    );
    let mut unexplained = Vec::new();
    for d in &absent {
        let name = d.split(':').next().unwrap_or_default();
        match explained(ABSENT_SINCE_7_2, name) {
            Some(why) => eprintln!("  absent: {d} ({why})"),
            None => {
                eprintln!("  absent: {d} (unexplained)");
                unexplained.push((*d).clone());
            }
        }
    }
    // A member that 10.0.2 requires in a reply or an event, and 7.2 does not have: that
    // reply or event of 7.2 does not decode.
    let risks: Vec<&&String> = shapes
        .iter()
        .filter(|d| d.contains(" returns") || d.starts_with("event "))
        .filter(|d| d.ends_with("only here (required here)"))
        .collect();
    eprintln!(
        "  {} members required by 10.0.2 in replies and events that 7.2 lacks:",
        risks.len()
    );
    for d in &risks {
        eprintln!("  decode risk: {d}");
    }
    for d in &shapes {
        eprintln!("  shape: {d}");
    }
    assert!(
        unexplained.is_empty(),
        "{what} 7.2: commands or events absent from the vocabulary without a reason:\n{}",
        unexplained.join("\n")
    );
    commands
}

/// Whether a difference of [`compare`] says a live command or event is not generated.
fn is_absent(d: &str) -> bool {
    d.split_once(": ")
        .is_some_and(|(name, what)| !name.contains(' ') && what.ends_with(" missing here"))
}

#[test]
fn vocabulary_covers_live_qemu_system_7_2() {
    let Some(mut vm) = Peer::system_of(QemuVersion::V7_2, &["-M", "none", "-S"]) else {
        return;
    };
    let mut qmp = vm.connect();
    assert_eq!(qmp.greeting().version.major, 7);
    let commands = vocabulary_covers_7_2("qemu-system-x86_64", &mut qmp);
    assert!(commands > 180, "{commands} commands");
    vm.quit(&mut qmp);
}

#[test]
fn vocabulary_covers_live_storage_daemon_7_2() {
    let Some(mut qsd) = Peer::storage_daemon_of(QemuVersion::V7_2) else {
        return;
    };
    let mut qmp = qsd.connect();
    assert_eq!(qmp.greeting().version.major, 7);
    let commands = vocabulary_covers_7_2("qemu-storage-daemon", &mut qmp);
    assert!(commands > 50, "{commands} commands");
}

fn agent(peer: &mut Peer) -> Connection {
    peer.connect_with(
        &Builder::new()
            .guest_agent()
            .connect_timeout(Duration::from_secs(10)),
    )
}

/// qemu-ga's commands (its `guest-info`) and the generated ones.
fn guest_agent_commands(ga: &mut Peer) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut qga = agent(ga);
    let info: Value = qga.execute("guest-info", &()).unwrap();
    let live: BTreeSet<String> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    let here: BTreeSet<String> = mine("QGA")
        .values()
        .filter(|m| m["meta-type"] == "command")
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    (live, here)
}

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_matches_live_guest_agent() {
    let Some(mut ga) = Peer::guest_agent_of(QemuVersion::V10_0) else {
        return;
    };
    let (live, here) = guest_agent_commands(&mut ga);
    let only_live: Vec<_> = live.difference(&here).collect();
    let only_here: Vec<_> = here.difference(&live).collect();
    eprintln!("qemu-ga: {} commands compared", live.len());
    assert!(
        only_live.is_empty() && only_here.is_empty(),
        "only live: {only_live:?}; only generated: {only_here:?}"
    );
}

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_covers_live_guest_agent_7_2() {
    let Some(mut ga) = Peer::guest_agent_of(QemuVersion::V7_2) else {
        return;
    };
    let (live, here) = guest_agent_commands(&mut ga);
    let only_live: Vec<_> = live.difference(&here).collect();
    let only_here: Vec<_> = here.difference(&live).collect();
    eprintln!(
        "qemu-ga 7.2: {} commands; absent from the 10.0.2 vocabulary: {only_live:?}; new since 7.2: {only_here:?}",
        live.len()
    );
    let unexplained: Vec<_> = only_live
        .iter()
        .filter(|n| explained(ABSENT_SINCE_7_2, n).is_none())
        .collect();
    assert!(unexplained.is_empty(), "unexplained: {unexplained:?}");
    assert!(live.len() > 30, "{live:?}");
}

/// The outcome of calling every safe command through the typed API.
#[derive(Default, Debug)]
struct Outcome {
    decoded: Vec<String>,
    /// QEMU's own error replies (a command the machine does not support, ...).
    refused: Vec<String>,
    /// Commands of this QEMU that the vocabulary does not have (7.2 only).
    absent: Vec<String>,
    /// Replies that did not decode into the generated types, with the error.
    undecodable: Vec<String>,
    /// Other failures: the test fails on any.
    failed: Vec<String>,
}

/// The commands of a namespace that take required arguments.
fn needs_arguments(ns: &str) -> BTreeSet<String> {
    let mine = mine(ns);
    mine.values()
        .filter(|m| m["meta-type"] == "command")
        .filter(|m| match m["arg-type"].as_str() {
            None => false,
            Some(t) => match mine[t]["members"].as_array() {
                Some(members) => members.iter().any(|x| x["optional"] == false),
                None => true,
            },
        })
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

fn run_all(
    c: &mut Connection,
    ns: &str,
    names: &[String],
    call: fn(&mut Connection, &str) -> Option<Result<(), Error>>,
) -> Outcome {
    let mut out = Outcome::default();
    let needs = needs_arguments(ns);
    let known = mine(ns);
    for name in names.iter().filter(|n| !needs.contains(*n)) {
        if !known.contains_key(name.as_str()) {
            out.absent.push(name.clone());
            continue;
        }
        match call(c, name) {
            None => out.failed.push(format!("{name}: no typed call generated")),
            Some(Ok(())) => out.decoded.push(name.clone()),
            Some(Err(Error::Qmp(e))) => out.refused.push(format!("{name}: {e}")),
            Some(Err(Error::TypedDecode(e))) => {
                out.undecodable
                    .push(format!("{name}: {e}; reply {}", e.raw().get()));
            }
            Some(Err(e)) => out.failed.push(format!("{name}: {e}")),
        }
    }
    out
}

fn safe_qmp(name: &str) -> bool {
    name.starts_with("query-") || name.starts_with("x-query-")
}

/// Prints the outcome, and fails on any failure; on 10.0, on any reply that does not
/// decode or command that is not generated; on 7.2, on those that are not explained
/// ([`UNDECODABLE_ON_7_2`], [`ABSENT_SINCE_7_2`]).
#[allow(clippy::print_stderr)]
fn report(what: &str, version: QemuVersion, o: &Outcome) {
    eprintln!(
        "{what} {version}: {} replies decoded, {} refused by QEMU, {} not decoded, {} absent from the vocabulary, {} failed",
        o.decoded.len(),
        o.refused.len(),
        o.undecodable.len(),
        o.absent.len(),
        o.failed.len()
    );
    eprintln!("  decoded: {}", o.decoded.join(", "));
    for r in &o.refused {
        eprintln!("  refused: {r}");
    }
    let mut unexplained = o.failed.clone();
    for (kind, list, known) in [
        ("not decoded", &o.undecodable, UNDECODABLE_ON_7_2),
        ("absent", &o.absent, ABSENT_SINCE_7_2),
    ] {
        for item in list {
            let name = item.split(':').next().unwrap_or_default();
            let why = explained(known, name).filter(|_| version == QemuVersion::V7_2);
            eprintln!("  {kind}: {item} ({})", why.unwrap_or("unexplained"));
            if why.is_none() {
                unexplained.push(format!("{kind}: {item}"));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "{what} {version}: {} failures:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}

fn commands_of(c: &mut Connection) -> Vec<String> {
    let list: Vec<Value> = c.execute("query-commands", &()).unwrap();
    let mut names: Vec<String> = list
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn system_calls(version: QemuVersion, machine: &str) {
    // A drive, so that query-block and query-blockstats have something to say.
    let drive = "if=none,id=drive0,driver=null-co,read-zeroes=on";
    let args = ["-M", machine, "-S", "-accel", "tcg", "-drive", drive];
    let Some(mut vm) = Peer::system_of(version, &args) else {
        return;
    };
    let mut qmp = vm.connect();
    assert_eq!(qmp.greeting().version.major, version.major());
    let names: Vec<String> = commands_of(&mut qmp)
        .into_iter()
        .filter(|n| safe_qmp(n))
        .collect();
    let mut o = run_all(&mut qmp, "QMP", &names, common::calls::call_qmp);
    // qom-list takes a path: the root.
    match qmp.call(qmp_types::qmp::QomList::new("/".into())) {
        Ok(props) => {
            assert!(props.iter().any(|p| p.name == "machine"), "{props:?}");
            o.decoded.push("qom-list /".into());
        }
        Err(Error::TypedDecode(e)) => o.undecodable.push(format!("qom-list: {e}")),
        Err(e) => o.failed.push(format!("qom-list: {e}")),
    }
    report(&format!("qemu-system-x86_64 -M {machine}"), version, &o);
    assert!(o.decoded.len() > 40, "{:?}", o.decoded);
    vm.quit(&mut qmp);
}

#[test]
fn every_query_decodes_on_qemu_system_none() {
    system_calls(QemuVersion::V10_0, "none");
}

#[test]
fn every_query_decodes_on_qemu_system_pc() {
    system_calls(QemuVersion::V10_0, "pc");
}

#[test]
fn every_query_decodes_on_qemu_system_q35() {
    system_calls(QemuVersion::V10_0, "q35");
}

#[test]
fn every_query_decodes_on_qemu_system_none_7_2() {
    system_calls(QemuVersion::V7_2, "none");
}

#[test]
fn every_query_decodes_on_qemu_system_pc_7_2() {
    system_calls(QemuVersion::V7_2, "pc");
}

#[test]
fn every_query_decodes_on_qemu_system_q35_7_2() {
    system_calls(QemuVersion::V7_2, "q35");
}

fn storage_daemon_calls(version: QemuVersion) {
    // A node, so that query-named-block-nodes has something to say.
    let node = || ["--blockdev", "null-co,node-name=node0,read-zeroes=on"].map(str::to_owned);
    let Some(mut qsd) = Peer::storage_daemon_of_with(version, |_| node().into()) else {
        return;
    };
    let mut qmp = qsd.connect();
    assert_eq!(qmp.greeting().version.major, version.major());
    let names: Vec<String> = commands_of(&mut qmp)
        .into_iter()
        .filter(|n| safe_qmp(n))
        .collect();
    let o = run_all(&mut qmp, "QMP", &names, common::calls::call_qmp);
    report("qemu-storage-daemon", version, &o);
    assert!(o.decoded.len() >= 10, "{:?}", o.decoded);
}

#[test]
fn every_query_decodes_on_storage_daemon() {
    storage_daemon_calls(QemuVersion::V10_0);
}

#[test]
fn every_query_decodes_on_storage_daemon_7_2() {
    storage_daemon_calls(QemuVersion::V7_2);
}

fn guest_agent_calls(version: QemuVersion) {
    let Some(mut ga) = Peer::guest_agent_of(version) else {
        return;
    };
    let mut qga = agent(&mut ga);
    let info = qga.call(qmp_types::qga::GuestInfo::new()).unwrap();
    assert!(version.matches(&info.version), "{}", info.version);
    let names: Vec<String> = info
        .supported_commands
        .iter()
        .filter(|c| c.enabled)
        .map(|c| c.name.clone())
        .filter(|n| {
            n.starts_with("guest-get-")
                || n.starts_with("guest-network-get-")
                || ["guest-info", "guest-ping", "guest-fsfreeze-status"].contains(&n.as_str())
        })
        .collect();
    let o = run_all(&mut qga, "QGA", &names, common::calls::call_qga);
    report("qemu-ga", version, &o);
    assert!(o.decoded.len() > 5, "{:?}", o.decoded);
}

#[test]
fn every_guest_get_decodes_on_guest_agent() {
    guest_agent_calls(QemuVersion::V10_0);
}

#[test]
fn every_guest_get_decodes_on_guest_agent_7_2() {
    guest_agent_calls(QemuVersion::V7_2);
}
