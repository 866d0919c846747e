//! The introspection schema of qemu-system-x86_64 10.0.2 and the checks of QEMU's QAPI
//! input visitor (`qapi/qobject-input-visitor.c` with the generated `visit_type_*`
//! functions), so that the fake refuses bad arguments with QEMU's own words.
//!
//! The data files beside this one were recorded from the real binary with
//! `python3 tools/record_fake_qemu.py` (run it again to re-record them):
//! `qemu-schema.json` is the return value of `query-qmp-schema`, `qemu-queries.txt` holds
//! QEMU's answers to the `query-*` commands that need no argument (`NAME<TAB>REPLY`),
//! `qemu-ints.txt` the C types of integer members (see below), `qemu-devices.txt` the
//! device types (abstract or not), `qemu-machine.txt` the answers of `qom-list /machine`
//! and of `qom-get` of each of its properties (`qom-list /machine<TAB>REPLY`,
//! `qom-get /machine PROPERTY<TAB>REPLY`). They are parsed once, on
//! first use.
//!
//! What the visitor checks, in its order: each member of an object in schema order (a
//! mandatory one that is absent: `Parameter 'x' is missing`; a present one of the wrong
//! JSON type: `Invalid parameter type for 'x', expected: integer`, ...), an enum's value
//! (`Parameter 'x' does not accept value 'v'`), the branch of a flat union chosen by its
//! discriminator, and then the members nobody asked for (`Parameter 'x' is unexpected`,
//! the first in the order of the visitor's GLib hash table). Names are full paths
//! (`file.filename`, `caps[0].state`), except in enum and alternate errors, which name the
//! member alone (`null` for an array element), as QEMU does.
//!
//! The introspection schema shows every integer as `int`; the members of other C integer
//! types were found by asking QEMU (`qemu-ints.txt`) and get their checks
//! (`Parameter 'x' expects uint64`, `Parameter 'x' expects uint8_t`), in arrays too.
//! Integers in alternates are checked as `int64`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::json::{qdict_order, reverse_members, write_as_is, QValue};
use super::parse_ordered;

const SCHEMA_TEXT: &str = include_str!("qemu-schema.json");
const QUERIES_TEXT: &str = include_str!("qemu-queries.txt");
const INTS_TEXT: &str = include_str!("qemu-ints.txt");
const DEVICES_TEXT: &str = include_str!("qemu-devices.txt");
const MACHINE_TEXT: &str = include_str!("qemu-machine.txt");

/// Whether QEMU has a device type of this name: `Some(true)` for an abstract one,
/// `Some(false)` for one `device_add` can name, `None` for none (`qemu-devices.txt`).
pub(crate) fn device_type(name: &str) -> Option<bool> {
    DEVICES_TEXT.lines().find_map(|line| {
        let (n, kind) = line.split_once('\t')?;
        (n == name).then_some(kind == "abstract")
    })
}

/// The names QEMU's generated code gives its alternates in errors (the introspection
/// schema masks them), told apart by the JSON types of their branches.
const ALTERNATES: &[(&[&str], &str)] = &[
    (&["string", "object"], "BlockDirtyBitmapOrStr"),
    (&["string", "null"], "StrOrNull"),
    (&["object", "string"], "BlockdevRef"),
    (&["object", "string", "null"], "BlockdevRefOrNull"),
    (&["object", "string:enum"], "Qcow2OverlapChecks"),
    (
        &["int", "boolean", "array"],
        "BlockdevQcow2EncryptionFormat",
    ),
];

/// The recorded schema, indexed.
pub(crate) struct Schema {
    /// The return value of `query-qmp-schema`, in the order that makes QEMU's writer print
    /// it as QEMU printed it (see [`insertion_order`]).
    pub(crate) text: String,
    entities: Vec<Value>,
    by_name: HashMap<String, usize>,
    /// The commands, in schema order, with whether they allow OOB.
    pub(crate) commands: Vec<(String, bool)>,
    /// Recorded replies of argument-free queries: name, then `Ok(return JSON text)` or
    /// `Err((class, desc))`.
    queries: HashMap<String, Result<String, (String, String)>>,
    /// The integer members whose C type is not `int64`: (object type, member) to C type.
    ints: HashMap<(&'static str, &'static str), &'static str>,
}

/// The schema, parsed on first use (`None` if the recorded data does not parse, which the
/// tests rule out).
pub(crate) fn schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(load).as_ref()
}

fn load() -> Option<Schema> {
    let entities: Vec<Value> = serde_json::from_str(SCHEMA_TEXT).ok()?;
    let mut by_name = HashMap::new();
    let mut commands = Vec::new();
    for (i, e) in entities.iter().enumerate() {
        let name = e.get("name")?.as_str()?.to_owned();
        if e.get("meta-type").and_then(Value::as_str) == Some("command") {
            let oob = e.get("allow-oob").and_then(Value::as_bool).unwrap_or(false);
            commands.push((name.clone(), oob));
        }
        by_name.insert(name, i);
    }
    let mut queries = HashMap::new();
    for line in QUERIES_TEXT.lines().chain(MACHINE_TEXT.lines()) {
        let Some((name, reply)) = line.split_once('\t') else {
            continue;
        };
        let answer = if let Some(ret) = reply
            .strip_prefix("{\"return\": ")
            .and_then(|r| r.strip_suffix('}'))
        {
            Ok(insertion_order(ret))
        } else {
            let v: Value = serde_json::from_str(reply).ok()?;
            let class = v.pointer("/error/class")?.as_str()?.to_owned();
            let desc = v.pointer("/error/desc")?.as_str()?.to_owned();
            Err((class, desc))
        };
        queries.insert(name.to_owned(), answer);
    }
    let mut ints = HashMap::new();
    for line in INTS_TEXT.lines() {
        let mut fields = line.split('\t');
        if let (Some(owner), Some(member), Some(ctype)) =
            (fields.next(), fields.next(), fields.next())
        {
            ints.insert((owner, member), ctype);
        }
    }
    Some(Schema {
        text: insertion_order(SCHEMA_TEXT.trim_end()),
        ints,
        entities,
        by_name,
        commands,
        queries,
    })
}

/// JSON text as QEMU printed it, rewritten so that reading it back in order and printing it
/// the way QEMU does (members in hash-table order, the later of two members that share a
/// bucket first) gives QEMU's text again.
fn insertion_order(text: &str) -> String {
    match parse_ordered(text) {
        Ok(mut v) => {
            reverse_members(&mut v);
            let mut out = Vec::new();
            write_as_is(&mut out, &v);
            String::from_utf8_lossy(&out).into_owned()
        }
        Err(_) => text.to_owned(),
    }
}

/// One step of the path to a value: a member name or an array index.
#[derive(Clone)]
enum Seg<'a> {
    Member(&'a str),
    Index(usize),
}

/// `full_name()` of the visitor: `a.b[2].c`.
fn full_name(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Member(m) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(m);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The name a visitor error uses for the value itself: its member name, or `null` for an
/// array element.
fn own_name(path: &[Seg<'_>]) -> String {
    match path.last() {
        Some(Seg::Member(m)) => (*m).to_owned(),
        _ => "null".to_owned(),
    }
}

fn type_error(path: &[Seg<'_>], expected: &str) -> String {
    format!(
        "Invalid parameter type for '{}', expected: {expected}",
        full_name(path)
    )
}

/// `visit_type_uint64` / `visit_type_size` and the sized integer visitors
/// (`visit_type_uintN` / `visit_type_intN` check the range after the 64-bit visit and name
/// the member alone).
fn check_int(ctype: &str, value: &Value, path: &[Seg<'_>]) -> Result<(), String> {
    let range_error = || format!("Parameter '{}' expects {ctype}", own_name(path));
    if let Some(bits) = ctype
        .strip_prefix("uint")
        .and_then(|t| t.strip_suffix("_t"))
    {
        // Negative values are taken (and wrap around) for backward compatibility.
        let Some(v) = value.as_u64().or_else(|| value.as_i64().map(|v| v as u64)) else {
            return Err(format!("Parameter '{}' expects uint64", full_name(path)));
        };
        let max = match bits {
            "8" => u64::from(u8::MAX),
            "16" => u64::from(u16::MAX),
            _ => u64::from(u32::MAX),
        };
        return if v > max { Err(range_error()) } else { Ok(()) };
    }
    if ctype == "uint64" {
        return match value.as_u64().or_else(|| value.as_i64().map(|v| v as u64)) {
            Some(_) => Ok(()),
            None => Err(format!("Parameter '{}' expects uint64", full_name(path))),
        };
    }
    let Some(v) = value.as_i64() else {
        return Err(type_error(path, "integer"));
    };
    let (min, max) = match ctype {
        "int8_t" => (i64::from(i8::MIN), i64::from(i8::MAX)),
        "int16_t" => (i64::from(i16::MIN), i64::from(i16::MAX)),
        "int32_t" => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    if v < min || v > max {
        Err(range_error())
    } else {
        Ok(())
    }
}

/// An array of integers of the C type `ctype`.
fn check_int_array<'a>(
    ctype: &str,
    value: &'a Value,
    path: &mut Vec<Seg<'a>>,
) -> Result<(), String> {
    let Value::Array(items) = value else {
        return Err(type_error(path, "array"));
    };
    for (i, item) in items.iter().enumerate() {
        path.push(Seg::Index(i));
        let r = check_int(ctype, item, path);
        path.pop();
        r?;
    }
    Ok(())
}

/// Deeper than this, a value is not looked into (QEMU's parser allows 1024 levels; the
/// schema's types are far shallower).
const MAX_DEPTH: usize = 64;

impl Schema {
    fn entity(&self, name: &str) -> Option<&Value> {
        self.by_name.get(name).and_then(|&i| self.entities.get(i))
    }

    /// Whether QEMU has the command `name`.
    pub(crate) fn has_command(&self, name: &str) -> bool {
        self.entity(name)
            .is_some_and(|e| e.get("meta-type").and_then(Value::as_str) == Some("command"))
    }

    /// QEMU's recorded answer to the argument-free query `name`, or to `qom-list /machine`
    /// or `qom-get /machine PROPERTY`.
    pub(crate) fn query_reply(&self, name: &str) -> Option<&Result<String, (String, String)>> {
        self.queries.get(name)
    }

    /// Checks the arguments of the command `name` as QEMU's generated marshaller does;
    /// `Err` holds the description of QEMU's `GenericError`.
    pub(crate) fn check_arguments(
        &self,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<(), String> {
        let Some(cmd) = self.entity(name) else {
            return Ok(());
        };
        if name == "device_add" {
            // Declared without generated marshaller ('gen': false): qdev checks the
            // driver itself and takes the other members as properties.
            return match args.get("driver") {
                Some(Value::String(_)) => Ok(()),
                _ => Err("Parameter 'driver' is missing".into()),
            };
        }
        let Some(arg_type) = cmd.get("arg-type").and_then(Value::as_str) else {
            return Ok(());
        };
        let mut path = Vec::new();
        self.visit_struct_members(arg_type, args, &mut path, 0)
    }

    /// `visit_start_struct` (done by the caller), the members, `visit_check_struct`.
    fn visit_struct_members<'a>(
        &self,
        type_name: &str,
        dict: &'a Map<String, Value>,
        path: &mut Vec<Seg<'a>>,
        depth: usize,
    ) -> Result<(), String> {
        let mut unvisited = KeySet::new(dict);
        self.visit_members(type_name, dict, path, depth, &mut unvisited)?;
        if let Some(key) = unvisited.first() {
            path.push(Seg::Member(key));
            let desc = format!("Parameter '{}' is unexpected", full_name(path));
            path.pop();
            return Err(desc);
        }
        Ok(())
    }

    /// The members of an object type and, for a flat union, of the branch its
    /// discriminator chooses.
    fn visit_members<'a>(
        &self,
        type_name: &str,
        dict: &'a Map<String, Value>,
        path: &mut Vec<Seg<'a>>,
        depth: usize,
        unvisited: &mut KeySet<'a>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let Some(ty) = self.entity(type_name) else {
            return Ok(());
        };
        let members = ty.get("members").and_then(Value::as_array);
        for m in members.into_iter().flatten() {
            let Some(name) = m.get("name").and_then(Value::as_str) else {
                continue;
            };
            let optional = m.get("default").is_some();
            let mtype = m.get("type").and_then(Value::as_str).unwrap_or("any");
            let Some((key, value)) = dict.get_key_value(name) else {
                if optional {
                    continue;
                }
                let parent = full_name(path);
                let full = if parent.is_empty() {
                    name.to_owned()
                } else {
                    format!("{parent}.{name}")
                };
                return Err(format!("Parameter '{full}' is missing"));
            };
            unvisited.remove(name);
            path.push(Seg::Member(key));
            let r = match self.ints.get(&(type_name, name)) {
                Some(ctype) => match ctype.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
                    Some(elem) => check_int_array(elem, value, path),
                    None => check_int(ctype, value, path),
                },
                None => self.visit(mtype, value, path, depth + 1),
            };
            path.pop();
            r?;
        }
        let tag = ty.get("tag").and_then(Value::as_str);
        let variants = ty.get("variants").and_then(Value::as_array);
        if let (Some(tag), Some(variants)) = (tag, variants) {
            let chosen = dict.get(tag).and_then(Value::as_str);
            let branch = variants.iter().find(|v| {
                v.get("case").and_then(Value::as_str).is_some()
                    && v.get("case").and_then(Value::as_str) == chosen
            });
            if let Some(branch_type) = branch.and_then(|b| b.get("type")).and_then(Value::as_str) {
                self.visit_members(branch_type, dict, path, depth + 1, unvisited)?;
            }
        }
        Ok(())
    }

    /// `visit_type_*` of one present value.
    fn visit<'a>(
        &self,
        type_name: &str,
        value: &'a Value,
        path: &mut Vec<Seg<'a>>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let Some(ty) = self.entity(type_name) else {
            return Ok(());
        };
        match ty.get("meta-type").and_then(Value::as_str).unwrap_or("") {
            "builtin" => {
                let json_type = ty.get("json-type").and_then(Value::as_str).unwrap_or("");
                let ok = match json_type {
                    "string" => value.is_string(),
                    "int" => value.as_i64().is_some(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    _ => true,
                };
                if ok {
                    return Ok(());
                }
                let expected = match json_type {
                    "int" => "integer",
                    other => other,
                };
                Err(type_error(path, expected))
            }
            "enum" => {
                let Value::String(s) = value else {
                    return Err(type_error(path, "string"));
                };
                let values = ty.get("values").and_then(Value::as_array);
                if values.into_iter().flatten().any(|v| v.as_str() == Some(s)) {
                    Ok(())
                } else {
                    Err(format!(
                        "Parameter '{}' does not accept value '{s}'",
                        own_name(path)
                    ))
                }
            }
            "array" => {
                let Value::Array(items) = value else {
                    return Err(type_error(path, "array"));
                };
                let elem = ty
                    .get("element-type")
                    .and_then(Value::as_str)
                    .unwrap_or("any");
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    let r = self.visit(elem, item, path, depth + 1);
                    path.pop();
                    r?;
                }
                Ok(())
            }
            "object" => {
                let Value::Object(dict) = value else {
                    return Err(type_error(path, "object"));
                };
                self.visit_struct_members(type_name, dict, path, depth + 1)
            }
            "alternate" => {
                let members: Vec<&str> = ty
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.get("type").and_then(Value::as_str))
                    .collect();
                let kinds: Vec<String> = members.iter().map(|m| self.json_kind(m)).collect();
                let want = match value {
                    Value::Null => "null",
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                };
                let chosen = kinds.iter().position(|k| {
                    let k = k.split(':').next().unwrap_or("");
                    k == want || (want == "number" && k == "int")
                });
                match chosen.and_then(|i| members.get(i)) {
                    Some(m) => self.visit(m, value, path, depth + 1),
                    None => {
                        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
                        let alt = ALTERNATES
                            .iter()
                            .find(|(k, _)| *k == kinds.as_slice())
                            .map_or(type_name, |(_, n)| n);
                        Err(format!(
                            "Invalid parameter type for '{}', expected: {alt}",
                            own_name(path)
                        ))
                    }
                }
            }
            _ => Ok(()),
        }
    }

    /// The JSON type of a branch of an alternate (`string:enum` for an enum).
    fn json_kind(&self, type_name: &str) -> String {
        let Some(ty) = self.entity(type_name) else {
            return String::new();
        };
        match ty.get("meta-type").and_then(Value::as_str).unwrap_or("") {
            "builtin" => ty
                .get("json-type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            "enum" => "string:enum".to_owned(),
            other => other.to_owned(),
        }
    }
}

/// The visitor's table of the members not yet visited: a GLib `GHashTable` keyed with
/// `g_str_hash`, filled in the dict's iteration order. Only its iteration order matters
/// (it decides which unexpected member is named), so it is reproduced: open addressing
/// with quadratic probing, tombstones, and GLib's resizing.
struct KeySet<'a> {
    /// Per bucket: 0 unused, 1 tombstone, else the key's hash and index in `keys`.
    hashes: Vec<u32>,
    slots: Vec<Option<&'a str>>,
    nnodes: usize,
    noccupied: usize,
    shift: u32,
}

const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];
const MIN_SHIFT: u32 = 3;

fn g_str_hash(s: &str) -> u32 {
    let mut h: u32 = 5381;
    for &b in s.as_bytes() {
        // GLib reads the string as signed chars.
        h = (h << 5)
            .wrapping_add(h)
            .wrapping_add(i32::from(b as i8) as u32);
    }
    if h < 2 {
        2
    } else {
        h
    }
}

/// The iteration order of a GLib `GHashTable` keyed with `g_str_hash` (as QOM keeps an
/// object's properties) after these insertions (`true`) and removals (`false`), in order.
pub(crate) fn ghash_order(ops: &[(bool, String)]) -> Vec<&str> {
    let mut set = KeySet::empty();
    for (insert, key) in ops {
        if *insert {
            set.insert(key);
        } else {
            set.remove(key);
        }
    }
    set.hashes
        .iter()
        .zip(&set.slots)
        .filter(|(h, _)| **h > 1)
        .filter_map(|(_, k)| *k)
        .collect()
}

impl<'a> KeySet<'a> {
    fn empty() -> Self {
        KeySet {
            hashes: vec![0; 1 << MIN_SHIFT],
            slots: vec![None; 1 << MIN_SHIFT],
            nnodes: 0,
            noccupied: 0,
            shift: MIN_SHIFT,
        }
    }

    fn new(dict: &'a Map<String, Value>) -> Self {
        let mut set = KeySet::empty();
        // The dict's own iteration order (QEMU's qdict hash order).
        let members: Vec<(String, QValue)> =
            dict.keys().map(|k| (k.clone(), QValue::Null)).collect();
        let order: Vec<String> = qdict_order(&members)
            .into_iter()
            .map(|(k, _)| k.clone())
            .collect();
        for key in order {
            if let Some((k, _)) = dict.get_key_value(&key) {
                set.insert(k);
            }
        }
        set
    }

    fn size(&self) -> usize {
        1 << self.shift
    }

    fn index(&self, hash: u32) -> usize {
        let m = PRIME_MOD[self.shift as usize % PRIME_MOD.len()];
        (hash.wrapping_mul(11) % m) as usize
    }

    /// `g_hash_table_lookup_node`: the key's bucket, or where it would go.
    fn lookup(&self, key: &str) -> (usize, u32) {
        let hash = g_str_hash(key);
        let mask = self.size() - 1;
        let mut i = self.index(hash);
        let mut step = 0;
        let mut tombstone = None;
        let mut probes = 0;
        while self.hashes[i] != 0 && probes <= self.size() {
            if self.hashes[i] == hash && self.slots[i] == Some(key) {
                return (i, hash);
            }
            if self.hashes[i] == 1 && tombstone.is_none() {
                tombstone = Some(i);
            }
            step += 1;
            i = (i + step) & mask;
            probes += 1;
        }
        (tombstone.unwrap_or(i), hash)
    }

    fn insert(&mut self, key: &'a str) {
        let (i, hash) = self.lookup(key);
        if self.slots[i] == Some(key) {
            return;
        }
        let was_unused = self.hashes[i] == 0;
        self.hashes[i] = hash;
        self.slots[i] = Some(key);
        self.nnodes += 1;
        if was_unused {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, key: &str) {
        let (i, _) = self.lookup(key);
        if self.slots[i] == Some(key) && self.hashes[i] > 1 {
            self.hashes[i] = 1;
            self.slots[i] = None;
            self.nnodes -= 1;
            self.maybe_resize();
        }
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT)
            || size <= self.noccupied + self.noccupied / 16
        {
            self.resize();
        }
    }

    /// `g_hash_table_resize`: rehash in place, buckets already moved marked in a bitmap.
    fn resize(&mut self) {
        let old_size = self.size();
        let want = (self.nnodes as f64 * 1.333) as usize;
        let mut shift = 0;
        let mut n = want;
        while n != 0 {
            n >>= 1;
            shift += 1;
        }
        self.shift = shift.clamp(MIN_SHIFT, 30);
        let new_size = self.size();
        if new_size > old_size {
            self.hashes.resize(new_size, 0);
            self.slots.resize(new_size, None);
        }
        let mut moved = vec![false; new_size.max(old_size)];
        let mask = new_size - 1;
        for i in 0..old_size {
            let node_hash = self.hashes[i];
            if node_hash <= 1 {
                self.hashes[i] = 0;
                self.slots[i] = None;
                continue;
            }
            if moved[i] {
                continue;
            }
            self.hashes[i] = 0;
            let mut key = self.slots[i].take();
            let mut node_hash = node_hash;
            let mut guard = 0;
            loop {
                let mut h = self.index(node_hash);
                let mut step = 0;
                while moved[h] && guard < 4 * new_size {
                    step += 1;
                    h = (h + step) & mask;
                    guard += 1;
                }
                moved[h] = true;
                let replaced = self.hashes[h];
                self.hashes[h] = node_hash;
                let replaced_key = std::mem::replace(&mut self.slots[h], key);
                if replaced <= 1 || guard >= 4 * new_size {
                    break;
                }
                node_hash = replaced;
                key = replaced_key;
            }
        }
        if new_size < old_size {
            self.hashes.truncate(new_size);
            self.slots.truncate(new_size);
        }
        self.noccupied = self.nnodes;
    }

    /// The first key left, in bucket order.
    fn first(&self) -> Option<&'a str> {
        self.hashes
            .iter()
            .zip(&self.slots)
            .find(|(h, _)| **h > 1)
            .and_then(|(_, k)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_data_parses() {
        let s = schema().expect("schema");
        assert!(s.has_command("blockdev-add"));
        assert!(s.commands.len() > 200);
        assert!(s.query_reply("query-target").is_some());
    }

    /// Orders qemu-system-x86_64 10.0.2 showed (`qom-list` reverses them).
    #[test]
    fn ghash_order_follows_glib() {
        let ops = |names: &[&str]| -> Vec<(bool, String)> {
            names.iter().map(|n| (true, (*n).to_owned())).collect()
        };
        assert_eq!(
            ghash_order(&ops(&["pc.ram", "m0", "s0"])),
            ["pc.ram", "m0", "s0"]
        );
        assert_eq!(
            ghash_order(&ops(&["d0", "rng0", "1bad"])),
            ["d0", "rng0", "1bad"]
        );
        let mut o = ops(&["d0", "d 0", ""]);
        assert_eq!(ghash_order(&o), ["d0", "d 0", ""]);
        o.push((false, "d 0".to_owned()));
        assert_eq!(ghash_order(&o), ["d0", ""]);
    }

    #[test]
    fn many_keys_do_not_panic() {
        let mut m = Map::new();
        for i in 0..300 {
            m.insert(format!("k{i}"), Value::Null);
        }
        let s = schema().expect("schema");
        assert!(s.check_arguments("query-status", &m).is_err());
        let mut set = KeySet::new(&m);
        for i in 0..299 {
            set.remove(&format!("k{i}"));
        }
        assert_eq!(set.first(), Some("k299"));
    }
}
