//! The generated vocabulary against real QEMU 10.0.2: qemu-system-x86_64 (`-M none`, `pc`,
//! `q35`), qemu-storage-daemon and qemu-ga.
//!
//! - The vocabulary (`tests/vocabulary.json`, written by the generator from the model it
//!   writes the Rust types from) is compared with the live `query-qmp-schema`: every command
//!   and event present, every member with the same name, optionality and type shape (JSON
//!   type, enum values, array element, object members, union tag and cases, alternate
//!   branches), recursively. And with qemu-ga's `guest-info`: the same command list.
//! - Every command that takes no required arguments and is safe to run (`query-*`,
//!   `x-query-*`, `qom-list`; qemu-ga's `guest-info`, `guest-get-*`, ...) runs through its
//!   typed API and its reply decodes.
//!
//! A missing QEMU binary skips a test with the reason printed, unless `QMP_REQUIRE_QEMU=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use qmp_blocking::{Builder, Connection, Error};
use qmp_testkit::blocking::Peer;
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
                self.diff(at, format!("member {name} only here"));
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

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_matches_live_qemu_system() {
    let Some(mut vm) = Peer::system(&["-M", "none", "-S"]) else {
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
    let Some(mut qsd) = Peer::storage_daemon() else {
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

fn agent(peer: &mut Peer) -> Connection {
    peer.connect_with(
        &Builder::new()
            .guest_agent()
            .connect_timeout(Duration::from_secs(10)),
    )
}

#[test]
#[allow(clippy::print_stderr)]
fn vocabulary_matches_live_guest_agent() {
    let Some(mut ga) = Peer::guest_agent() else {
        return;
    };
    let mut qga = agent(&mut ga);
    let info: Value = qga.execute("guest-info", &()).unwrap();
    let live: BTreeSet<&str> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mine = mine("QGA");
    let here: BTreeSet<&str> = mine
        .values()
        .filter(|m| m["meta-type"] == "command")
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let only_live: Vec<_> = live.difference(&here).collect();
    let only_here: Vec<_> = here.difference(&live).collect();
    eprintln!("qemu-ga: {} commands compared", live.len());
    assert!(
        only_live.is_empty() && only_here.is_empty(),
        "only live: {only_live:?}; only generated: {only_here:?}"
    );
}

/// The outcome of calling every safe command through the typed API.
#[derive(Default, Debug)]
struct Outcome {
    decoded: Vec<String>,
    /// QEMU's own error replies (a command the machine does not support, ...).
    refused: Vec<String>,
    /// Replies that did not decode, and other failures: the test fails on any.
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
    for name in names.iter().filter(|n| !needs.contains(*n)) {
        match call(c, name) {
            None => out.failed.push(format!("{name}: no typed call generated")),
            Some(Ok(())) => out.decoded.push(name.clone()),
            Some(Err(Error::Qmp(e))) => out.refused.push(format!("{name}: {e}")),
            Some(Err(e)) => out.failed.push(format!("{name}: {e}")),
        }
    }
    out
}

fn safe_qmp(name: &str) -> bool {
    name.starts_with("query-") || name.starts_with("x-query-")
}

#[allow(clippy::print_stderr)]
fn report(what: &str, o: &Outcome) {
    eprintln!(
        "{what}: {} replies decoded, {} refused by QEMU, {} failed",
        o.decoded.len(),
        o.refused.len(),
        o.failed.len()
    );
    for r in &o.refused {
        eprintln!("  refused: {r}");
    }
    assert!(
        o.failed.is_empty(),
        "{what}: {} failures:\n{}",
        o.failed.len(),
        o.failed.join("\n")
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

fn system_calls(machine: &str) {
    let Some(mut vm) = Peer::system(&["-M", machine, "-S", "-accel", "tcg"]) else {
        return;
    };
    let mut qmp = vm.connect();
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
        Err(e) => o.failed.push(format!("qom-list: {e}")),
    }
    report(&format!("qemu-system-x86_64 -M {machine}"), &o);
    assert!(o.decoded.len() > 40, "{:?}", o.decoded);
    vm.quit(&mut qmp);
}

#[test]
fn every_query_decodes_on_qemu_system_none() {
    system_calls("none");
}

#[test]
fn every_query_decodes_on_qemu_system_pc() {
    system_calls("pc");
}

#[test]
fn every_query_decodes_on_qemu_system_q35() {
    system_calls("q35");
}

#[test]
fn every_query_decodes_on_storage_daemon() {
    let Some(mut qsd) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = qsd.connect();
    let names: Vec<String> = commands_of(&mut qmp)
        .into_iter()
        .filter(|n| safe_qmp(n))
        .collect();
    let o = run_all(&mut qmp, "QMP", &names, common::calls::call_qmp);
    report("qemu-storage-daemon", &o);
    assert!(o.decoded.len() > 10, "{:?}", o.decoded);
}

#[test]
fn every_guest_get_decodes_on_guest_agent() {
    let Some(mut ga) = Peer::guest_agent() else {
        return;
    };
    let mut qga = agent(&mut ga);
    let info = qga.call(qmp_types::qga::GuestInfo::new()).unwrap();
    assert_eq!(info.version, "10.0.2");
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
    report("qemu-ga", &o);
    assert!(o.decoded.len() > 5, "{:?}", o.decoded);
}
