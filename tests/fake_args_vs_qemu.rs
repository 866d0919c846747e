//! Wrong arguments, answered by the fake QEMU as qemu-system-x86_64 10.0.2 answers them:
//! each request of a table goes to real `qemu-system-x86_64 -S` and to `Server<FakeQemu>`,
//! and the error class and description must be the same. Plus: every command of QEMU's
//! schema answers (never `CommandNotFound`), and `query-qmp-schema` / `query-commands` agree
//! with what the fake answers.
//!
//! The comparison needs qemu-system-x86_64; without it the test prints why and passes,
//! unless `QMP_REQUIRE_QEMU=1` (set by CI), which makes a missing QEMU a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// A real process and socket: this test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::negotiated;
use common::qemu::{system_pc, Peer};
use qmp_proto::server::FakeQemu;

/// Wrong requests: command and arguments (JSON text). None of them may succeed on QEMU, and
/// none may make it do anything harmful (no negative null-co size: QEMU aborts).
const CASES: &[(&str, &str)] = &[
    // Commands without arguments.
    ("query-status", r#"{"bogus": 1}"#),
    ("query-version", r#"{"x": null}"#),
    ("query-name", r#"{"name": "vm"}"#),
    ("query-commands", r#"{"a": 1}"#),
    ("query-qmp-schema", r#"{"a": 1}"#),
    ("query-block", r#"{"flat": 1}"#),
    ("query-block", r#"{"flat": true, "x": 1}"#),
    ("query-named-block-nodes", r#"{"flat": "yes"}"#),
    ("query-kvm", r#"{"a": 1}"#),
    ("query-target", r#"{"arch": "x86_64"}"#),
    ("query-uuid", r#"{"a": []}"#),
    ("query-cpus-fast", r#"{"a": {}}"#),
    ("query-machines", r#"{"compat-props": "x"}"#),
    ("query-machines", r#"{"compat-props": true, "y": 1}"#),
    ("query-migrate", r#"{"a": 1}"#),
    ("query-hotpluggable-cpus", r#"{"a": 1}"#),
    ("query-yank", r#"{"a": 1}"#),
    ("query-jobs", r#"{"a": 1}"#),
    ("query-fdsets", r#"{"a": 1}"#),
    ("query-pci", r#"{"bus": 0}"#),
    ("stop", r#"{"extra": 1}"#),
    ("cont", r#"{"now": true}"#),
    ("system_reset", r#"{"hard": true}"#),
    ("system_powerdown", r#"{"x": 1}"#),
    ("quit", r#"{"force": true}"#),
    ("inject-nmi", r#"{"cpu": 0}"#),
    ("x-exit-preconfig", r#"{"a": 1}"#),
    // Several unexpected members: which one QEMU names.
    ("query-status", r#"{"a": 1, "b": 2}"#),
    ("query-status", r#"{"b": 1, "a": 2, "c": 3}"#),
    (
        "query-status",
        r#"{"zz": 1, "id": 2, "node-name": 3, "x": 4}"#,
    ),
    (
        "stop",
        r#"{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}"#,
    ),
    (
        "stop",
        r#"{"k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9}"#,
    ),
    (
        "cont",
        r#"{"alpha": 1, "beta": 2, "gamma": 3, "delta": 4, "epsilon": 5, "zeta": 6, "eta": 7, "theta": 8, "iota": 9, "kappa": 10, "lambda": 11, "mu": 12, "nu": 13, "xi": 14, "omicron": 15, "pi": 16, "rho": 17}"#,
    ),
    // human-monitor-command.
    ("human-monitor-command", "{}"),
    ("human-monitor-command", r#"{"command-line": 1}"#),
    ("human-monitor-command", r#"{"command-line": null}"#),
    ("human-monitor-command", r#"{"command-line": ["info"]}"#),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu-index": "0"}"#,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu-index": 1.5}"#,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu-index": 18446744073709551615}"#,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu": 0}"#,
    ),
    ("human-monitor-command", r#"{"cpu-index": "x"}"#),
    ("human-monitor-command", r#"{"cmd": "info status"}"#),
    // qom-get / qom-set / qom-list.
    ("qom-get", "{}"),
    ("qom-get", r#"{"path": "/machine"}"#),
    ("qom-get", r#"{"property": "type"}"#),
    ("qom-get", r#"{"path": 1, "property": "type"}"#),
    ("qom-get", r#"{"path": "/machine", "property": false}"#),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "type", "x": 1}"#,
    ),
    ("qom-set", r#"{"path": "/machine", "property": "x"}"#),
    ("qom-set", r#"{"path": "/machine", "value": 1}"#),
    ("qom-set", r#"{"path": [], "property": "x", "value": 1}"#),
    ("qom-list", "{}"),
    ("qom-list", r#"{"path": {}}"#),
    ("qom-list-properties", r#"{"typename": 1}"#),
    ("qom-list-types", r#"{"implements": 1}"#),
    ("qom-list-types", r#"{"abstract": "no"}"#),
    // blockdev-add.
    ("blockdev-add", "{}"),
    ("blockdev-add", r#"{"node-name": "n0"}"#),
    ("blockdev-add", r#"{"driver": "nope", "node-name": "n0"}"#),
    ("blockdev-add", r#"{"driver": 1, "node-name": "n0"}"#),
    ("blockdev-add", r#"{"driver": null, "node-name": "n0"}"#),
    ("blockdev-add", r#"{"driver": "null-co", "node-name": 5}"#),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "size": "1M"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "size": 1.5}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "read-zeroes": "yes"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "bogus": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "filename": "x"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "read-only": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "discard": "maybe"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "discard": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "detect-zeroes": "sometimes"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "cache": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "cache": {"direct": "x"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "cache": {"bogus": true}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n0", "cache": {"direct": false, "no-flush": 0}}"#,
    ),
    ("blockdev-add", r#"{"driver": "file", "node-name": "f0"}"#),
    (
        "blockdev-add",
        r#"{"driver": "file", "node-name": "f0", "filename": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "file", "node-name": "f0", "filename": "/nonexistent", "aio": "fast"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "file", "node-name": "f0", "filename": "/nonexistent", "locking": "perhaps"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "file", "node-name": "f0", "filename": "/nonexistent", "size": 1}"#,
    ),
    ("blockdev-add", r#"{"driver": "qcow2", "node-name": "q0"}"#),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": null}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": []}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": {}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": {"driver": "file"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": {"driver": "file", "filename": 3}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": {"driver": "nope"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": {"driver": "file", "filename": "/x", "bogus": 1}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "backing": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "backing": true}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "overlap-check": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "overlap-check": "some"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "overlap-check": {"template": "x"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "encrypt": {"format": "x"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "encrypt": {}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "qcow2", "node-name": "q0", "file": "f0", "lazy-refcounts": "on"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "raw", "node-name": "r0", "file": "f0", "offset": "0"}"#,
    ),
    ("blockdev-add", r#"{"driver": "raw", "node-name": "r0"}"#),
    (
        "blockdev-add",
        r#"{"driver": "quorum", "node-name": "qu", "children": "x", "vote-threshold": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "quorum", "node-name": "qu", "children": [1], "vote-threshold": 1}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "quorum", "node-name": "qu", "children": []}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "nbd", "node-name": "nb", "server": {"type": "nope"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "nbd", "node-name": "nb", "server": {"type": "unix"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "nbd", "node-name": "nb", "server": {"type": "inet", "host": "h"}}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "nbd", "node-name": "nb", "server": {"type": "inet", "host": "h", "port": 1}}"#,
    ),
    ("blockdev-add", r#"{"driver": "nbd", "node-name": "nb"}"#),
    (
        "blockdev-add",
        r#"{"driver": "throttle", "node-name": "t0", "file": "f0"}"#,
    ),
    ("blockdev-add", r#"{"driver": "null-co"}"#),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "1bad"}"#,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "a b"}"#,
    ),
    ("blockdev-add", r#"{"driver": "null-co", "node-name": ""}"#),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "_x"}"#,
    ),
    ("blockdev-del", "{}"),
    ("blockdev-del", r#"{"node-name": 1}"#),
    ("blockdev-del", r#"{"node-name": "n", "force": true}"#),
    ("blockdev-backup", "{}"),
    ("blockdev-backup", r#"{"device": "a", "target": "b"}"#),
    (
        "blockdev-backup",
        r#"{"device": "a", "target": "b", "sync": "most"}"#,
    ),
    (
        "blockdev-backup",
        r#"{"device": "a", "target": "b", "sync": "full", "speed": "fast"}"#,
    ),
    (
        "blockdev-backup",
        r#"{"device": "a", "target": "b", "sync": "full", "on-source-error": "panic"}"#,
    ),
    (
        "blockdev-create",
        r#"{"job-id": "j", "options": {"driver": "nope"}}"#,
    ),
    (
        "blockdev-create",
        r#"{"job-id": "j", "options": {"driver": "qcow2"}}"#,
    ),
    (
        "blockdev-create",
        r#"{"job-id": "j", "options": {"driver": "qcow2", "file": "f", "size": "1G"}}"#,
    ),
    ("block_resize", r#"{"node-name": "n"}"#),
    ("block_resize", r#"{"node-name": "n", "size": "1G"}"#),
    ("block-commit", r#"{"device": "d", "speed": "x"}"#),
    ("block-commit", r#"{"device": "d", "on-error": "explode"}"#),
    ("drive-mirror", r#"{"device": "d", "target": "t"}"#),
    (
        "drive-mirror",
        r#"{"device": "d", "target": "t", "sync": "full", "mode": "x"}"#,
    ),
    (
        "drive-mirror",
        r#"{"device": "d", "target": "t", "sync": "full", "buf-size": "x"}"#,
    ),
    ("blockdev-snapshot-sync", r#"{"device": "d"}"#),
    (
        "blockdev-snapshot-sync",
        r#"{"device": "d", "snapshot-file": "/x", "mode": "y"}"#,
    ),
    (
        "block-dirty-bitmap-merge",
        r#"{"node": "n", "target": "t", "bitmaps": 1}"#,
    ),
    (
        "block-dirty-bitmap-merge",
        r#"{"node": "n", "target": "t", "bitmaps": [1]}"#,
    ),
    (
        "block-dirty-bitmap-merge",
        r#"{"node": "n", "target": "t", "bitmaps": [{"node": "n"}]}"#,
    ),
    (
        "block-dirty-bitmap-merge",
        r#"{"node": "n", "target": "t", "bitmaps": ["b", {"node": 1, "name": "b"}]}"#,
    ),
    (
        "block-dirty-bitmap-merge",
        r#"{"node": "n", "target": "t"}"#,
    ),
    // device_add, device_del.
    ("device_add", "{}"),
    ("device_add", r#"{"driver": 1}"#),
    ("device_add", r#"{"id": "d0"}"#),
    ("device_del", "{}"),
    ("device_del", r#"{"id": 1}"#),
    // migrate-*.
    ("migrate-set-capabilities", "{}"),
    ("migrate-set-capabilities", r#"{"capabilities": 1}"#),
    ("migrate-set-capabilities", r#"{"capabilities": {}}"#),
    ("migrate-set-capabilities", r#"{"capabilities": [1]}"#),
    ("migrate-set-capabilities", r#"{"capabilities": [{}]}"#),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "xbzrle"}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"state": true}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "nope", "state": true}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "xbzrle", "state": "on"}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "xbzrle", "state": true, "x": 1}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "xbzrle", "state": true}, {"capability": 7, "state": true}]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "xbzrle", "state": true}, 5]}"#,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [], "extra": 1}"#,
    ),
    ("migrate-set-parameters", r#"{"announce-rounds": "x"}"#),
    ("migrate-set-parameters", r#"{"tls-creds": 1}"#),
    ("migrate-set-parameters", r#"{"tls-hostname": []}"#),
    (
        "migrate-set-parameters",
        r#"{"multifd-compression": "lzma"}"#,
    ),
    (
        "migrate-set-parameters",
        r#"{"block-bitmap-mapping": [{"node-name": "n"}]}"#,
    ),
    ("migrate-set-parameters", r#"{"mode": "fast"}"#),
    ("migrate-set-parameters", r#"{"cpu-throttle-tailslow": 1}"#),
    ("migrate-set-parameters", r#"{"bogus-param": 1}"#),
    ("migrate-set-parameters", r#"{"cpu-throttle-initial": 300}"#),
    ("migrate-set-parameters", r#"{"cpu-throttle-initial": -1}"#),
    ("migrate-set-parameters", r#"{"cpu-throttle-initial": 1.5}"#),
    (
        "migrate-set-parameters",
        r#"{"cpu-throttle-initial": 18446744073709551615}"#,
    ),
    (
        "migrate-set-parameters",
        r#"{"announce-rounds": -5, "zzz": 1}"#,
    ),
    (
        "migrate-set-parameters",
        r#"{"announce-rounds": 18446744073709551615, "zzz": 1}"#,
    ),
    ("migrate-set-parameters", r#"{"announce-rounds": 1e30}"#),
    ("migrate-set-parameters", r#"{"multifd-channels": 256}"#),
    ("migrate-set-parameters", r#"{"downtime-limit": true}"#),
    ("migrate-set-parameters", r#"{"max-bandwidth": "1G"}"#),
    ("memsave", r#"{"val": 1.5, "size": 1, "filename": "x"}"#),
    (
        "memsave",
        r#"{"val": 18446744073709551615, "size": 1, "filename": "x", "zzz": 1}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1.5}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "host-nodes": [70000]}"#,
    ),
    ("set-numa-node", r#"{"type": "node", "nodeid": 70000}"#),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "host-nodes": [1, "x"]}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "host-nodes": 1}"#,
    ),
    (
        "set-numa-node",
        r#"{"type": "dist", "src": 1, "dst": 1, "val": 300}"#,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu-index": 9223372036854775808}"#,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info status", "cpu-index": -9223372036854775808, "x": 1}"#,
    ),
    (
        "screendump",
        r#"{"filename": "/nonexistent/x", "head": 1.0}"#,
    ),
    ("migrate", r#"{"uri": 1}"#),
    ("migrate", r#"{"channels": [{"channel-type": "main"}]}"#),
    (
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "warp"}}]}"#,
    ),
    (
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "socket", "type": "unix"}}]}"#,
    ),
    ("migrate", r#"{"uri": "x", "detach": "yes"}"#),
    ("migrate-incoming", r#"{"uri": 1}"#),
    ("migrate-pause", r#"{"x": 1}"#),
    ("migrate_cancel", r#"{"x": 1}"#),
    ("calc-dirty-rate", "{}"),
    ("calc-dirty-rate", r#"{"calc-time": "1"}"#),
    ("calc-dirty-rate", r#"{"calc-time": 1, "mode": "fast"}"#),
    (
        "calc-dirty-rate",
        r#"{"calc-time": 1, "calc-time-unit": "hour"}"#,
    ),
    // object-add / object-del.
    ("object-add", "{}"),
    ("object-add", r#"{"id": "o0"}"#),
    ("object-add", r#"{"qom-type": "nope", "id": "o0"}"#),
    ("object-add", r#"{"qom-type": "memory-backend-ram"}"#),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0"}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": "1M"}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "bogus": 1}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "policy": "random"}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576, "host-nodes": 1}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-file", "id": "m0", "size": 1048576}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s0", "data": 1}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s0", "data": "x", "format": "hex"}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "throttle-group", "id": "t0", "limits": {"iops-total": "x"}}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "throttle-group", "id": "t0", "limits": 1}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "iothread", "id": "io0", "poll-max-ns": "x"}"#,
    ),
    ("object-add", r#"{"qom-type": "iothread", "id": 1}"#),
    (
        "object-add",
        r#"{"qom-type": "rng-random", "id": "r0", "filename": 1}"#,
    ),
    ("object-del", "{}"),
    ("object-del", r#"{"id": false}"#),
    // chardev-add / chardev-remove.
    ("chardev-add", "{}"),
    ("chardev-add", r#"{"id": "c0"}"#),
    ("chardev-add", r#"{"id": "c0", "backend": 1}"#),
    ("chardev-add", r#"{"id": "c0", "backend": {}}"#),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "nope"}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "null"}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "null", "data": 1}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "null", "data": {"x": 1}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "file", "data": {}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "file", "data": {"out": 1}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "socket", "data": {"addr": {"type": "unix"}}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": 1}}}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "ringbuf", "data": {"size": "x"}}}"#,
    ),
    (
        "chardev-add",
        r#"{"id": "c0", "backend": {"type": "null"}, "extra": 1}"#,
    ),
    ("chardev-remove", r#"{"id": 1}"#),
    // netdev_add / netdev_del.
    ("netdev_add", "{}"),
    ("netdev_add", r#"{"id": "n0"}"#),
    ("netdev_add", r#"{"id": "n0", "type": "warp"}"#),
    ("netdev_add", r#"{"type": "user"}"#),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "user", "ipv6": "yes"}"#,
    ),
    ("netdev_add", r#"{"id": "n0", "type": "user", "bogus": 1}"#),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "user", "hostfwd": "tcp::2222-:22"}"#,
    ),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "user", "hostfwd": [{"bogus": "x"}]}"#,
    ),
    ("netdev_add", r#"{"id": "n0", "type": "socket", "fd": 1}"#),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "tap", "vhost": "on"}"#,
    ),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "stream", "addr": {"type": "unix"}}"#,
    ),
    (
        "netdev_add",
        r#"{"id": "n0", "type": "stream", "server": true}"#,
    ),
    ("netdev_del", "{}"),
    ("netdev_del", r#"{"id": []}"#),
    // Assorted.
    ("transaction", "{}"),
    ("transaction", r#"{"actions": 1}"#),
    ("transaction", r#"{"actions": [{}]}"#),
    ("transaction", r#"{"actions": [{"type": "nope"}]}"#),
    ("transaction", r#"{"actions": [{"type": "abort"}]}"#),
    (
        "transaction",
        r#"{"actions": [{"type": "abort", "data": 1}]}"#,
    ),
    (
        "transaction",
        r#"{"actions": [{"type": "block-dirty-bitmap-add", "data": {"node": "n"}}]}"#,
    ),
    (
        "transaction",
        r#"{"actions": [], "properties": {"completion-mode": "sometimes"}}"#,
    ),
    ("screendump", "{}"),
    (
        "screendump",
        r#"{"filename": "/nonexistent/x", "format": "gif"}"#,
    ),
    (
        "screendump",
        r#"{"filename": "/nonexistent/x", "head": "0"}"#,
    ),
    ("send-key", "{}"),
    (
        "send-key",
        r#"{"keys": [{"type": "qcode", "data": "nokey"}]}"#,
    ),
    ("send-key", r#"{"keys": [{"type": "number", "data": "x"}]}"#),
    ("send-key", r#"{"keys": [{"type": "bogus", "data": 1}]}"#),
    (
        "send-key",
        r#"{"keys": [{"type": "qcode", "data": "a"}], "hold-time": "x"}"#,
    ),
    ("input-send-event", r#"{"events": [{"type": "key"}]}"#),
    (
        "input-send-event",
        r#"{"events": [{"type": "rel", "data": {"axis": "z", "value": 1}}]}"#,
    ),
    ("balloon", "{}"),
    ("balloon", r#"{"value": "1G"}"#),
    ("memsave", r#"{"val": 0, "size": 1}"#),
    (
        "memsave",
        r#"{"val": "0", "size": 1, "filename": "/nonexistent/x"}"#,
    ),
    (
        "dump-guest-memory",
        r#"{"paging": "no", "protocol": "file:/nonexistent/x"}"#,
    ),
    ("dump-guest-memory", r#"{"paging": false}"#),
    (
        "dump-guest-memory",
        r#"{"paging": false, "protocol": "file:/nonexistent/x", "format": "pdf"}"#,
    ),
    ("set_password", r#"{"password": "x"}"#),
    ("set_password", r#"{"protocol": "rdp", "password": "x"}"#),
    ("set_password", r#"{"protocol": "vnc"}"#),
    ("expire_password", r#"{"protocol": "vnc"}"#),
    ("display-reload", r#"{"type": "sdl"}"#),
    ("display-reload", r#"{"type": "vnc", "tls-certs": "yes"}"#),
    ("trace-event-set-state", r#"{"name": "x"}"#),
    (
        "trace-event-set-state",
        r#"{"name": "x", "enable": "true"}"#,
    ),
    ("trace-event-get-state", r#"{"name": 1}"#),
    ("set-action", r#"{"reboot": "explode"}"#),
    ("set-action", r#"{"panic": 1}"#),
    ("set-numa-node", r#"{"type": "galaxy"}"#),
    ("set-numa-node", r#"{"type": "node", "nodeid": "x"}"#),
    ("query-cpu-model-expansion", r#"{"type": "static"}"#),
    (
        "query-cpu-model-expansion",
        r#"{"type": "huge", "model": {"name": "max"}}"#,
    ),
    (
        "query-cpu-model-expansion",
        r#"{"type": "static", "model": {}}"#,
    ),
    ("query-stats", "{}"),
    (
        "query-stats",
        r#"{"target": "vm", "providers": [{"provider": "nope"}]}"#,
    ),
    ("query-stats", r#"{"target": "vcpu", "vcpus": "x"}"#),
    ("query-rocker", "{}"),
    ("query-rx-filter", r#"{"name": 1}"#),
    ("getfd", "{}"),
    ("getfd", r#"{"fdname": 1}"#),
    ("closefd", r#"{"fdname": []}"#),
    ("add-fd", r#"{"fdset-id": "x"}"#),
    ("add-fd", r#"{"opaque": 1}"#),
    ("remove-fd", "{}"),
    ("remove-fd", r#"{"fdset-id": 0, "fd": "x"}"#),
    ("yank", r#"{"instances": [{"type": "nope"}]}"#),
    ("yank", r#"{"instances": [{"type": "chardev"}]}"#),
    ("yank", "{}"),
    ("job-cancel", "{}"),
    ("job-dismiss", r#"{"id": 1}"#),
    ("block-job-cancel", r#"{"device": "d", "force": "yes"}"#),
    ("block-job-set-speed", r#"{"device": "d", "speed": "1M"}"#),
    ("nbd-server-start", r#"{"addr": {"type": "inet"}}"#),
    ("nbd-server-add", r#"{"device": "d", "writable": 1}"#),
    ("block-export-add", r#"{"type": "nbd"}"#),
    (
        "block-export-add",
        r#"{"type": "nope", "id": "e", "node-name": "n"}"#,
    ),
    ("system_wakeup", r#"{"a": 1}"#),
    ("cpu-add", r#"{"id": 1}"#),
    ("qmp_capabilities", r#"{"enable": ["oob"]}"#),
];

/// qemu-system-x86_64 `-M pc -S` and its monitor.
fn qemu(tag: &str) -> Option<(Peer, UnixStream)> {
    system_pc(tag, Duration::from_secs(10))
}

/// Reads one line that is not an event.
fn reply(s: &mut UnixStream, buf: &mut Vec<u8>) -> Value {
    serde_json::from_slice(&raw_reply(s, buf)).unwrap()
}

/// Reads one line that is not an event, as QEMU wrote it (with its line end).
fn raw_reply(s: &mut UnixStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..at + 2).collect();
            let v: Value = serde_json::from_slice(&line[..at]).unwrap();
            if v.get("event").is_none() {
                return line;
            }
            continue;
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF from QEMU");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The class and description of an answer, or `return`.
fn summary(v: &Value) -> String {
    match v.get("error") {
        Some(e) => format!(
            "{}: {}",
            e["class"].as_str().unwrap(),
            e["desc"].as_str().unwrap()
        ),
        None => "return".into(),
    }
}

fn request(id: usize, command: &str, args: &str) -> Vec<u8> {
    format!(r#"{{"execute": "{command}", "arguments": {args}, "id": {id}}}"#).into_bytes()
}

/// The fake's answers to the same requests, on one connection.
fn fake_answers(requests: &[Vec<u8>]) -> Vec<Value> {
    let now = Instant::now();
    let fake = FakeQemu::new().prelaunch();
    let mut server = negotiated(fake, now);
    let mut out = Vec::new();
    for r in requests {
        server.handle_input(now, r);
        let bytes = server.take_output();
        let mut answer = None;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            if v.get("event").is_none() {
                answer = Some(v);
            }
        }
        out.push(answer.expect("the fake answered"));
    }
    out
}

#[test]
fn wrong_arguments_are_refused_as_qemu_refuses_them() {
    assert!(CASES.len() >= 150, "{} cases", CASES.len());
    let requests: Vec<Vec<u8>> = CASES
        .iter()
        .enumerate()
        .map(|(i, (c, a))| request(i, c, a))
        .collect();
    let ours = fake_answers(&requests);
    let Some((_peer, mut s)) = qemu("wrong") else {
        return;
    };
    let mut buf = Vec::new();
    let greeting = reply(&mut s, &mut buf);
    assert!(greeting.get("QMP").is_some());
    s.write_all(br#"{"execute": "qmp_capabilities"}"#).unwrap();
    assert_eq!(summary(&reply(&mut s, &mut buf)), "return");
    let mut failures = Vec::new();
    let mut succeeded = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        s.write_all(r).unwrap();
        let real = reply(&mut s, &mut buf);
        assert_eq!(real["id"], json!(i), "answers in order");
        let (real, fake) = (summary(&real), summary(&ours[i]));
        if real == "return" {
            succeeded.push(format!("{} {}", CASES[i].0, CASES[i].1));
        }
        if real != fake {
            failures.push(format!(
                "{} {}\n  QEMU: {real}\n  fake: {fake}",
                CASES[i].0, CASES[i].1
            ));
        }
    }
    eprintln!(
        "{} requests compared, {} differ",
        CASES.len(),
        failures.len()
    );
    assert!(
        succeeded.is_empty(),
        "valid on QEMU, not a wrong request:\n{}",
        succeeded.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs requests on a negotiated fake and returns its answers (events left out).
fn on_fake(fake: FakeQemu, requests: &[Vec<u8>]) -> Vec<Value> {
    let now = Instant::now();
    let mut server = negotiated(fake, now);
    let mut out = Vec::new();
    for r in requests {
        server.handle_input(now, r);
        let bytes = server.take_output();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            if v.get("event").is_none() {
                out.push(v);
            }
        }
    }
    out
}

/// Every command of the schema the fake tells answers something other than
/// `CommandNotFound`; `query-commands` lists the same commands; an added command joins both.
#[test]
fn every_command_of_the_schema_answers() {
    let mut fake = FakeQemu::new();
    fake.add_command("x-custom", true, |_, _| qmp_proto::server::Outcome::empty());
    let answers = on_fake(
        fake,
        &[
            request(0, "query-qmp-schema", "{}"),
            request(1, "query-commands", "{}"),
        ],
    );
    let schema = answers[0]["return"].as_array().unwrap();
    let mut in_schema: Vec<&str> = schema
        .iter()
        .filter(|e| e["meta-type"] == "command")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut listed: Vec<&str> = answers[1]["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    in_schema.sort_unstable();
    listed.sort_unstable();
    assert_eq!(in_schema, listed);
    assert!(in_schema.len() > 200, "{}", in_schema.len());
    assert!(in_schema.contains(&"x-custom"));
    let custom = schema.iter().find(|e| e["name"] == "x-custom").unwrap();
    assert_eq!(custom["allow-oob"], json!(true));
    // Each command, without arguments (commands that end the session or change the run
    // state are left to their own tests; a second `qmp_capabilities` is CommandNotFound on
    // QEMU too).
    let skip = ["quit", "x-custom", "qmp_capabilities"];
    let requests: Vec<Vec<u8>> = in_schema
        .iter()
        .filter(|c| !skip.contains(c))
        .enumerate()
        .map(|(i, c)| request(i, c, "{}"))
        .collect();
    let answers = on_fake(FakeQemu::new().prelaunch(), &requests);
    assert_eq!(answers.len(), requests.len());
    for a in &answers {
        assert_ne!(a["error"]["class"], "CommandNotFound", "{a}");
    }
    // An argument-free query QEMU's reply was recorded for; a command the fake does not model.
    let answers = on_fake(
        FakeQemu::new(),
        &[
            request(0, "query-target", "{}"),
            request(1, "query-balloon", "{}"),
            request(2, "x-exit-preconfig", "{}"),
            request(3, "nope", "{}"),
        ],
    );
    assert_eq!(answers[0]["return"], json!({"arch": "x86_64"}));
    assert_eq!(answers[1]["error"]["class"], "DeviceNotActive");
    assert_eq!(
        answers[2]["error"]["desc"],
        "The fake QEMU does not model 'x-exit-preconfig'"
    );
    assert_eq!(answers[3]["error"]["class"], "CommandNotFound");
}

/// Hostile arguments never make the checks panic: deep nesting, odd numbers, many members.
#[test]
fn hostile_arguments_are_answered() {
    let deep = format!(
        r#"{{"driver": "qcow2", "file": {}1{}}}"#,
        r#"{"driver": "qcow2", "file": "#.repeat(300),
        "}".repeat(300)
    );
    let many: Vec<String> = (0..2000).map(|i| format!(r#""k{i}": {i}"#)).collect();
    let many = format!("{{{}}}", many.join(", "));
    let requests = vec![
        request(0, "blockdev-add", &deep),
        request(1, "query-status", &many),
        request(
            2,
            "migrate-set-parameters",
            r#"{"cpu-throttle-initial": -1e308}"#,
        ),
        request(
            3,
            "transaction",
            &format!(
                r#"{{"actions": [{}]}}"#,
                r#"{"type": "abort"}, "#.repeat(500) + "1"
            ),
        ),
    ];
    let answers = on_fake(FakeQemu::new(), &requests);
    assert_eq!(answers.len(), 4);
    for a in &answers {
        assert!(a["error"]["class"] == "GenericError", "{a}");
    }
}

/// QEMU's schema and recorded replies come out of the fake byte for byte as out of QEMU.
#[test]
fn recorded_replies_are_byte_for_byte_qemus() {
    let names = [
        "query-qmp-schema",
        "query-commands",
        "query-machines",
        "query-pci",
        "query-target",
        "query-migrate-parameters",
        "query-cpu-definitions",
        "query-balloon",
    ];
    let requests: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, c)| format!(r#"{{"execute": "{c}", "id": {i}}}"#).into_bytes())
        .collect();
    let now = Instant::now();
    let fake = FakeQemu::new().prelaunch();
    let mut server = negotiated(fake, now);
    let ours: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| {
            server.handle_input(now, r);
            server.take_output()
        })
        .collect();
    let Some((_peer, mut s)) = qemu("replies") else {
        return;
    };
    let mut buf = Vec::new();
    reply(&mut s, &mut buf);
    s.write_all(br#"{"execute": "qmp_capabilities"}"#).unwrap();
    reply(&mut s, &mut buf);
    for (i, r) in requests.iter().enumerate() {
        s.write_all(r).unwrap();
        let real = raw_reply(&mut s, &mut buf);
        assert!(
            real == ours[i],
            "{}: the fake's reply differs from QEMU's",
            names[i]
        );
    }
}

/// Odd paths, ids and long sequences of objects and devices never make the QOM model
/// panic, and every request is answered.
#[test]
fn hostile_qom_requests_are_answered() {
    let long = "/".repeat(10_000) + &"x/".repeat(5_000);
    let mut requests: Vec<(&str, String)> = vec![
        ("qom-list", format!(r#"{{"path": "{long}"}}"#)),
        (
            "qom-get",
            format!(r#"{{"path": "{long}", "property": "type"}}"#),
        ),
        (
            "qom-set",
            r#"{"path": "", "property": "", "value": null}"#.into(),
        ),
        ("qom-list", r#"{"path": "/objects/\u0000"}"#.into()),
        ("device_del", r#"{"id": ""}"#.into()),
        ("device_del", r#"{"id": "/"}"#.into()),
        (
            "device_del",
            r#"{"id": "/machine/peripheral-anon/"}"#.into(),
        ),
        ("device_add", r#"{"driver": ""}"#.into()),
        (
            "device_add",
            r#"{"driver": "usb-kbd", "id": "\u00e9"}"#.into(),
        ),
        (
            "device_add",
            r#"{"driver": "pci-testdev", "id": "", "a": 1, "b": 2}"#.into(),
        ),
        (
            "object-add",
            r#"{"qom-type": "memory-backend-ram", "id": "m", "size": 18446744073709551615}"#.into(),
        ),
        ("object-del", r#"{"id": "\ud83d\ude00"}"#.into()),
    ];
    for i in 0..300 {
        requests.push((
            "object-add",
            format!(r#"{{"qom-type": "secret", "id": "s{i}", "data": "x"}}"#),
        ));
        requests.push(("device_add", r#"{"driver": "pci-testdev"}"#.into()));
        if i % 2 == 0 {
            requests.push(("object-del", format!(r#"{{"id": "s{}"}}"#, i / 2)));
            requests.push((
                "device_del",
                format!(r#"{{"id": "/machine/peripheral-anon/device[{}]"}}"#, i / 3),
            ));
        }
    }
    requests.push(("qom-list", r#"{"path": "/objects"}"#.into()));
    requests.push(("qom-list", r#"{"path": "/machine/peripheral-anon"}"#.into()));
    let bytes: Vec<Vec<u8>> = requests
        .iter()
        .enumerate()
        .map(|(i, (c, a))| request(i, c, a))
        .collect();
    let answers = on_fake(FakeQemu::new(), &bytes);
    assert_eq!(answers.len(), bytes.len());
    let objects = answers[answers.len() - 2]["return"].as_array().unwrap();
    // pc.ram, and the 150 secrets not deleted.
    assert_eq!(objects.len(), 1 + 1 + 150);
    let anon = answers[answers.len() - 1]["return"].as_array().unwrap();
    // The PCI devices beyond the 29 slots the model fills are not modelled.
    assert_eq!(anon.len(), 1 + 29);
}

/// Without QEMU: a USB device leaves at once, its DEVICE_DELETED comes after the reply
/// (once the server's timer runs); a PCI device's unplug stays pending.
#[test]
fn device_del_events_come_after_the_reply() {
    let mut now = Instant::now();
    let fake = FakeQemu::new().prelaunch();
    let mut server = negotiated(fake, now);
    let mut run = |r: Vec<u8>| {
        server.handle_input(now, &r);
        let reply = String::from_utf8(server.take_output()).unwrap();
        // Nothing before QEMU's RCU thread would finalize the device, 50 ms on.
        server.handle_timeout(now + Duration::from_millis(49));
        assert_eq!(server.take_output(), b"");
        now += Duration::from_millis(50);
        server.handle_timeout(now);
        let after = String::from_utf8(server.take_output()).unwrap();
        (reply, after)
    };
    run(request(
        1,
        "device_add",
        r#"{"driver": "piix3-usb-uhci", "id": "usb0"}"#,
    ));
    run(request(
        2,
        "device_add",
        r#"{"driver": "usb-tablet", "id": "t0"}"#,
    ));
    run(request(3, "device_add", r#"{"driver": "usb-kbd"}"#));
    let (reply, after) = run(request(4, "device_del", r#"{"id": "t0"}"#));
    assert_eq!(reply, "{\"return\": {}, \"id\": 4}\r\n");
    assert!(
        after.contains(
            r#""event": "DEVICE_DELETED", "data": {"device": "t0", "path": "/machine/peripheral/t0"}"#
        ),
        "{after}"
    );
    let (_, after) = run(request(
        5,
        "device_del",
        r#"{"id": "/machine/peripheral-anon/device[0]"}"#,
    ));
    assert!(
        after.contains(r#""data": {"path": "/machine/peripheral-anon/device[0]"}"#),
        "{after}"
    );
    let (reply, after) = run(request(6, "device_del", r#"{"id": "usb0"}"#));
    assert_eq!(reply, "{\"return\": {}, \"id\": 6}\r\n");
    assert_eq!(after, "");
    let (reply, _) = run(request(7, "device_del", r#"{"id": "usb0"}"#));
    assert!(
        reply.contains("Device usb0 is already in the process of unplug"),
        "{reply}"
    );
    let (reply, _) = run(request(8, "qom-list", r#"{"path": "/machine/peripheral"}"#));
    assert_eq!(
        reply,
        "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}, {\"name\": \"usb0\", \"type\": \"child<piix3-usb-uhci>\"}], \"id\": 8}\r\n"
    );
}
