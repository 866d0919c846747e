//! Introspection: what the connected QEMU offers, from `query-qmp-schema` and
//! `query-commands`.
//!
//! QEMU versions differ in their commands, arguments, enum values and events; a machine built
//! without some feature lacks its commands. [`Schema`] holds the return value of
//! `query-qmp-schema` (QEMU's `SchemaInfo` list) and answers the questions a client asks
//! before it relies on something: does this QEMU have a command, an event, an argument (at any
//! depth of the argument object), and which values does an argument take. [`Commands`] holds
//! the return value of `query-commands`, which answers only the first question but is much
//! smaller (a few KB against 100-250 KB).
//!
//! Pure data: nothing here does IO. Fetch the reply with any client (the adapters have
//! helpers) and parse it here.
//!
//! ```
//! use qmp_proto::schema::Schema;
//!
//! // A tiny schema in the shape QEMU sends (type names are opaque numbers on the wire).
//! let schema = Schema::from_json(r#"[
//!     {"name": "blockdev-add", "meta-type": "command", "arg-type": "1", "ret-type": "0"},
//!     {"name": "0", "meta-type": "object", "members": []},
//!     {"name": "1", "meta-type": "object", "tag": "driver",
//!      "members": [{"name": "driver", "type": "2"}, {"name": "node-name", "type": "str", "default": null},
//!                  {"name": "cache", "type": "3", "default": null}],
//!      "variants": [{"case": "qcow2", "type": "4"}, {"case": "file", "type": "5"}]},
//!     {"name": "2", "meta-type": "enum", "values": ["file", "qcow2"]},
//!     {"name": "3", "meta-type": "object", "members": [{"name": "direct", "type": "bool", "default": null}]},
//!     {"name": "4", "meta-type": "object", "members": [{"name": "file", "type": "str"}]},
//!     {"name": "5", "meta-type": "object", "members": [{"name": "filename", "type": "str"}]},
//!     {"name": "str", "meta-type": "builtin", "json-type": "string"},
//!     {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
//!     {"name": "STOP", "meta-type": "event", "arg-type": "0"},
//!     {"name": "x", "meta-type": "some-future-meta-type"}
//! ]"#)?;
//! assert!(schema.has_command("blockdev-add"));
//! assert!(schema.has_event("STOP"));
//! // Flat unions: every variant's members, unless the tag's value is known.
//! assert_eq!(schema.argument_names("blockdev-add", &[]),
//!            ["cache", "driver", "file", "filename", "node-name"]);
//! assert_eq!(schema.argument_names_given("blockdev-add", &[], &[("driver", "qcow2")]),
//!            ["cache", "driver", "file", "node-name"]);
//! assert_eq!(schema.argument_names("blockdev-add", &["cache"]), ["direct"]);
//! assert!(schema.has_argument("blockdev-add", &["cache", "direct"]));
//! assert_eq!(schema.argument_values("blockdev-add", &["driver"]), ["file", "qcow2"]);
//! assert_eq!(schema.argument_values("blockdev-add", &["cache", "direct"]), ["true", "false"]);
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! # Tolerance
//!
//! Parsing accepts what later QEMU versions may send: unknown meta-types become
//! [`SchemaKind::Other`], unknown members are ignored, and members QEMU may drop (such as an
//! enum's deprecated `values`, superseded by `members`) have fallbacks. Only a reply that is
//! not a list of objects with a string `name` and `meta-type` fails to parse. Lookups never
//! fail: a name the schema does not have gives `false`, `None` or an empty list, and a
//! schema with cycles or dangling type names is walked safely.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Deserializer};

/// How deep [`Schema`] follows alternates and arrays to find an object's members. Real
/// schemas nest a handful of levels; this only guards against a cyclic schema.
const MAX_INDIRECTION: usize = 16;

/// The return value of `query-qmp-schema`: every type, command and event the connected QEMU
/// knows, indexed by name. See the [module documentation](self).
///
/// Type names are opaque on the wire (QEMU numbers them: `"0"`, `"58"`, ...), except the
/// builtins (`str`, `int`, `bool`, `number`, `null`, `any`) and arrays (`[str]`, `[58]`);
/// commands and events have their real names.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    entries: Vec<SchemaInfo>,
    index: HashMap<String, usize>,
}

/// One entry of the schema: a type, a command or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaInfo {
    /// The entry's name: a command or event name, or an (opaque) type name.
    pub name: String,
    /// Its special features, such as `deprecated` or `unstable`.
    pub features: Vec<String>,
    /// What the entry is.
    pub kind: SchemaKind,
}

/// What a schema entry is, by its `meta-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaKind {
    /// `builtin`: a JSON type such as `str` or `int`.
    Builtin {
        /// The JSON type: `string`, `number`, `int`, `boolean`, `null`, `object`, `array` or
        /// `value`.
        json_type: String,
    },
    /// `enum`: a string with a fixed set of values.
    Enum {
        /// The values, in schema order.
        values: Vec<String>,
    },
    /// `array`: a list of one element type.
    Array {
        /// The element type's name.
        element_type: String,
    },
    /// `object`: a struct, possibly a flat union.
    Object(ObjectInfo),
    /// `alternate`: a value of one of several types, told apart by its JSON type.
    Alternate {
        /// The names of the alternative types.
        types: Vec<String>,
    },
    /// `command`.
    Command(CommandInfo),
    /// `event`.
    Event(EventInfo),
    /// A meta-type this crate does not know (from a later QEMU).
    Other {
        /// The `meta-type` member as sent.
        meta_type: String,
    },
}

/// An object type: its members and, for a flat union, its tag and variants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The members common to every variant (for a flat union, including the tag).
    pub members: Vec<MemberInfo>,
    /// For a flat union, the name of the member whose value selects the variant.
    pub tag: Option<String>,
    /// For a flat union, the variants: a tag value and the object type of that variant's
    /// additional members.
    pub variants: Vec<VariantInfo>,
}

/// One member of an object type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The member name, as it is on the wire.
    pub name: String,
    /// The member's type name.
    pub type_name: String,
    /// Whether the member is optional (QEMU marks those with a `default` member).
    pub optional: bool,
    /// Its special features, such as `deprecated` or `unstable`.
    pub features: Vec<String>,
}

/// One variant of a flat union.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VariantInfo {
    /// The tag value that selects this variant.
    pub case: String,
    /// The object type holding this variant's members.
    pub type_name: String,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandInfo {
    /// The type of its `arguments` (an object type; the empty object when it takes none).
    pub arg_type: String,
    /// The type of its `return` value.
    pub ret_type: String,
    /// Whether it may run out of band (`exec-oob`).
    pub allow_oob: bool,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventInfo {
    /// The type of its `data` (an object type).
    pub arg_type: String,
}

// ----- parsing -----

/// One entry as sent, every member optional but the two that identify it.
#[derive(Deserialize)]
struct RawEntry {
    name: String,
    #[serde(rename = "meta-type")]
    meta_type: String,
    #[serde(default)]
    features: Vec<String>,
    #[serde(rename = "json-type", default)]
    json_type: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    members: Option<Vec<RawMember>>,
    #[serde(rename = "element-type", default)]
    element_type: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    variants: Vec<RawVariant>,
    #[serde(rename = "arg-type", default)]
    arg_type: Option<String>,
    #[serde(rename = "ret-type", default)]
    ret_type: Option<String>,
    #[serde(rename = "allow-oob", default)]
    allow_oob: bool,
}

/// A member of an object (`name`, `type`, `default`), of an enum (`name`) or of an
/// alternate (`type`).
#[derive(Deserialize)]
struct RawMember {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    type_name: Option<String>,
    /// Present (even as `null`) when the member is optional.
    #[serde(default, deserialize_with = "present")]
    default: bool,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct RawVariant {
    case: String,
    #[serde(rename = "type")]
    type_name: String,
}

/// `true` when the member is there, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

impl From<RawEntry> for SchemaInfo {
    fn from(raw: RawEntry) -> Self {
        let members = raw.members.unwrap_or_default();
        let kind = match raw.meta_type.as_str() {
            "builtin" => SchemaKind::Builtin {
                json_type: raw.json_type.unwrap_or_default(),
            },
            "enum" => SchemaKind::Enum {
                // `members` (QEMU 6.2 on) supersedes the deprecated `values`.
                values: if members.is_empty() {
                    raw.values.unwrap_or_default()
                } else {
                    members.into_iter().filter_map(|m| m.name).collect()
                },
            },
            "array" => SchemaKind::Array {
                element_type: raw.element_type.unwrap_or_default(),
            },
            "object" => SchemaKind::Object(ObjectInfo {
                members: members
                    .into_iter()
                    .filter_map(|m| {
                        Some(MemberInfo {
                            name: m.name?,
                            type_name: m.type_name?,
                            optional: m.default,
                            features: m.features,
                        })
                    })
                    .collect(),
                tag: raw.tag,
                variants: raw
                    .variants
                    .into_iter()
                    .map(|v| VariantInfo {
                        case: v.case,
                        type_name: v.type_name,
                    })
                    .collect(),
            }),
            "alternate" => SchemaKind::Alternate {
                types: members.into_iter().filter_map(|m| m.type_name).collect(),
            },
            "command" => SchemaKind::Command(CommandInfo {
                arg_type: raw.arg_type.unwrap_or_default(),
                ret_type: raw.ret_type.unwrap_or_default(),
                allow_oob: raw.allow_oob,
            }),
            "event" => SchemaKind::Event(EventInfo {
                arg_type: raw.arg_type.unwrap_or_default(),
            }),
            _ => SchemaKind::Other {
                meta_type: raw.meta_type,
            },
        };
        SchemaInfo {
            name: raw.name,
            features: raw.features,
            kind,
        }
    }
}

impl<'de> Deserialize<'de> for Schema {
    /// Deserialises the return value of `query-qmp-schema` (a JSON array).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<RawEntry>::deserialize(d)?;
        Ok(Schema::from_entries(raw.into_iter().map(SchemaInfo::from)))
    }
}

impl FromIterator<SchemaInfo> for Schema {
    fn from_iter<I: IntoIterator<Item = SchemaInfo>>(iter: I) -> Self {
        Schema::from_entries(iter)
    }
}

impl Schema {
    /// Parses the return value of `query-qmp-schema`: the JSON text of the `return` member
    /// (an array), not the whole reply.
    pub fn from_json(json: &str) -> Result<Schema, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn from_entries(entries: impl IntoIterator<Item = SchemaInfo>) -> Schema {
        let entries: Vec<SchemaInfo> = entries.into_iter().collect();
        let mut index = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            // The first of duplicate names wins (QEMU sends none).
            index.entry(entry.name.clone()).or_insert(i);
        }
        Schema { entries, index }
    }

    /// Every entry, in the order QEMU sent them.
    pub fn entries(&self) -> &[SchemaInfo] {
        &self.entries
    }

    /// The entry named `name` (a command, an event or a type).
    pub fn get(&self, name: &str) -> Option<&SchemaInfo> {
        self.index.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The names of all commands, sorted.
    pub fn command_names(&self) -> Vec<&str> {
        self.names_where(|k| matches!(k, SchemaKind::Command(_)))
    }

    /// The names of all events, sorted.
    pub fn event_names(&self) -> Vec<&str> {
        self.names_where(|k| matches!(k, SchemaKind::Event(_)))
    }

    fn names_where(&self, keep: impl Fn(&SchemaKind) -> bool) -> Vec<&str> {
        let names: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|e| keep(&e.kind))
            .map(|e| e.name.as_str())
            .collect();
        names.into_iter().collect()
    }

    /// Whether the connected QEMU has the command `name`.
    pub fn has_command(&self, name: &str) -> bool {
        self.command(name).is_some()
    }

    /// Whether the connected QEMU can send the event `name`.
    pub fn has_event(&self, name: &str) -> bool {
        self.event(name).is_some()
    }

    /// The command `name`: its argument and return types and whether it allows OOB.
    pub fn command(&self, name: &str) -> Option<&CommandInfo> {
        match &self.get(name)?.kind {
            SchemaKind::Command(c) => Some(c),
            _ => None,
        }
    }

    /// The event `name`: the type of its data.
    pub fn event(&self, name: &str) -> Option<&EventInfo> {
        match &self.get(name)?.kind {
            SchemaKind::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The names of the arguments of `command` at `path` (empty for the top level), sorted
    /// and without duplicates. `path` names nested members: `&["cache"]` gives the members
    /// of `blockdev-add`'s `cache` object.
    ///
    /// Flat unions contribute the members common to all variants and those of **every**
    /// variant (use [`argument_names_given`](Self::argument_names_given) to narrow them to
    /// the variant selected by a known tag value). Alternates contribute the members of
    /// their object branches, arrays those of their element type. An unknown command or a
    /// path that leads nowhere gives an empty list.
    pub fn argument_names(&self, command: &str, path: &[&str]) -> Vec<String> {
        self.argument_names_given(command, path, &[])
    }

    /// [`argument_names`](Self::argument_names), knowing the values of some arguments.
    ///
    /// `given` holds pairs of a dotted argument path (relative to the command's arguments,
    /// such as `"driver"` or `"file.driver"`) and its value. Where a flat union's tag has a
    /// given value, only the variant it selects contributes members (none if no variant
    /// matches); other unions contribute every variant. This is what a command line with
    /// `driver=qcow2 file.driver=file` knows.
    pub fn argument_names_given(
        &self,
        command: &str,
        path: &[&str],
        given: &[(&str, &str)],
    ) -> Vec<String> {
        let names: BTreeSet<String> = self
            .members_at(
                self.command(command).map(|c| c.arg_type.as_str()),
                path,
                given,
            )
            .into_iter()
            .map(|m| m.name.clone())
            .collect();
        names.into_iter().collect()
    }

    /// Whether `command` has the argument at `path` (such as `&["cache", "direct"]`), in any
    /// variant of the unions on the way. An empty path asks whether the command exists.
    pub fn has_argument(&self, command: &str, path: &[&str]) -> bool {
        match path.split_last() {
            None => self.has_command(command),
            Some((last, parent)) => self
                .members_at(
                    self.command(command).map(|c| c.arg_type.as_str()),
                    parent,
                    &[],
                )
                .iter()
                .any(|m| m.name == *last),
        }
    }

    /// The values the argument of `command` at `path` takes, when they are a closed set: the
    /// values of an enum, `true` and `false` for a boolean (alternates: those of each
    /// branch). In schema order, without duplicates; empty for other types, an unknown
    /// command or a path that leads nowhere.
    pub fn argument_values(&self, command: &str, path: &[&str]) -> Vec<String> {
        self.values_at(self.command(command).map(|c| c.arg_type.as_str()), path)
    }

    /// The names of the members of `event`'s data at `path` (empty for the top level),
    /// sorted and without duplicates, following unions, alternates and arrays as
    /// [`argument_names`](Self::argument_names) does.
    pub fn event_data_names(&self, event: &str, path: &[&str]) -> Vec<String> {
        let names: BTreeSet<String> = self
            .members_at(self.event(event).map(|e| e.arg_type.as_str()), path, &[])
            .into_iter()
            .map(|m| m.name.clone())
            .collect();
        names.into_iter().collect()
    }

    /// The closed set of values of the member of `event`'s data at `path`, as
    /// [`argument_values`](Self::argument_values) gives them for arguments.
    pub fn event_data_values(&self, event: &str, path: &[&str]) -> Vec<String> {
        self.values_at(self.event(event).map(|e| e.arg_type.as_str()), path)
    }

    // ----- walking -----

    /// The values of the member at `path` below `root`.
    fn values_at(&self, root: Option<&str>, path: &[&str]) -> Vec<String> {
        let Some((last, parent)) = path.split_last() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for member in self.members_at(root, parent, &[]) {
            if member.name == *last {
                self.values_of(&member.type_name, 0, &mut seen, &mut out);
            }
        }
        out
    }

    fn values_of<'s>(
        &'s self,
        ty: &'s str,
        depth: usize,
        seen: &mut BTreeSet<&'s str>,
        out: &mut Vec<String>,
    ) {
        // Each type once: a hostile schema cannot make this walk explode.
        if depth > MAX_INDIRECTION || !seen.insert(ty) {
            return;
        }
        let mut push = |v: &str| {
            if !out.iter().any(|o| o == v) {
                out.push(v.to_owned());
            }
        };
        match self.get(ty).map(|e| &e.kind) {
            Some(SchemaKind::Enum { values }) => values.iter().for_each(|v| push(v)),
            Some(SchemaKind::Builtin { json_type }) if json_type == "boolean" => {
                push("true");
                push("false");
            }
            Some(SchemaKind::Alternate { types }) => {
                for t in types {
                    self.values_of(t, depth + 1, seen, out);
                }
            }
            _ => {}
        }
    }

    /// The members of the objects reached by following `path` from the type `root`.
    fn members_at<'s>(
        &'s self,
        root: Option<&str>,
        path: &[&str],
        given: &[(&str, &str)],
    ) -> Vec<&'s MemberInfo> {
        // The schema's own copy of the name, so the walk borrows only the schema.
        let Some(root) = root.and_then(|r| self.get(r)).map(|e| e.name.as_str()) else {
            return Vec::new();
        };
        let mut types: Vec<&'s str> = vec![root];
        let mut prefix = String::new();
        for (i, segment) in path.iter().enumerate() {
            let mut next: Vec<&'s str> = Vec::new();
            for ty in &types {
                let mut members = Vec::new();
                self.members_of(ty, &prefix, given, 0, &mut BTreeSet::new(), &mut members);
                for m in members {
                    if m.name == *segment && !next.contains(&m.type_name.as_str()) {
                        next.push(&m.type_name);
                    }
                }
            }
            if next.is_empty() {
                return Vec::new();
            }
            types = next;
            if i > 0 {
                prefix.push('.');
            }
            prefix.push_str(segment);
        }
        let mut members = Vec::new();
        let mut seen = BTreeSet::new();
        for ty in &types {
            self.members_of(ty, &prefix, given, 0, &mut seen, &mut members);
        }
        members
    }

    /// Collects the members of the object type `ty` (whose dotted path is `prefix`): its own,
    /// its variants' (narrowed by `given`), and through alternates and arrays.
    fn members_of<'s>(
        &'s self,
        ty: &'s str,
        prefix: &str,
        given: &[(&str, &str)],
        depth: usize,
        seen: &mut BTreeSet<&'s str>,
        out: &mut Vec<&'s MemberInfo>,
    ) {
        // Each type once per walk: a hostile schema (unions whose variants are themselves)
        // cannot make this explode.
        if depth > MAX_INDIRECTION || !seen.insert(ty) {
            return;
        }
        match self.get(ty).map(|e| &e.kind) {
            Some(SchemaKind::Object(object)) => {
                out.extend(object.members.iter());
                let chosen = object.tag.as_deref().and_then(|tag| {
                    given
                        .iter()
                        .find_map(|(key, value)| is_member_path(key, prefix, tag).then_some(*value))
                });
                for variant in &object.variants {
                    if chosen.map_or(true, |c| c == variant.case) {
                        // A variant's members are at the union's own path.
                        self.members_of(&variant.type_name, prefix, given, depth + 1, seen, out);
                    }
                }
            }
            Some(SchemaKind::Alternate { types }) => {
                for t in types {
                    self.members_of(t, prefix, given, depth + 1, seen, out);
                }
            }
            Some(SchemaKind::Array { element_type }) => {
                self.members_of(element_type, prefix, given, depth + 1, seen, out);
            }
            _ => {}
        }
    }
}

/// Whether the dotted `key` names the member `name` of the object at the dotted `prefix`.
fn is_member_path(key: &str, prefix: &str, name: &str) -> bool {
    if prefix.is_empty() {
        return key == name;
    }
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| rest == name)
}

/// The return value of `query-commands`: the names of the commands the connected QEMU has.
///
/// Much smaller than [`Schema`], for when only command names matter.
///
/// ```
/// use qmp_proto::schema::Commands;
///
/// let commands = Commands::from_json(r#"[{"name": "query-status"}, {"name": "stop"}]"#)?;
/// assert!(commands.has("stop"));
/// assert!(!commands.has("migrate-pause"));
/// assert_eq!(commands.names().collect::<Vec<_>>(), ["query-status", "stop"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    names: BTreeSet<String>,
}

#[derive(Deserialize)]
struct RawCommandInfo {
    name: String,
}

impl<'de> Deserialize<'de> for Commands {
    /// Deserialises the return value of `query-commands` (`[{"name": ...}, ...]`; other
    /// members are ignored).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<RawCommandInfo>::deserialize(d)?;
        Ok(raw.into_iter().map(|c| c.name).collect())
    }
}

impl<S: Into<String>> FromIterator<S> for Commands {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Commands {
            names: iter.into_iter().map(Into::into).collect(),
        }
    }
}

impl Commands {
    /// Parses the return value of `query-commands`: the JSON text of the `return` member.
    pub fn from_json(json: &str) -> Result<Commands, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Whether the connected QEMU has the command `name`.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The command names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// How many commands there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none (an unnegotiated or strange peer).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `query-qmp-schema`, whose reply decodes into a [`Schema`] (100-250 KB on the wire): the
/// command the adapters' `schema()` sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QueryQmpSchema {}

/// `query-commands`, whose reply decodes into a [`Commands`] set: the command the
/// adapters' `commands()` sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QueryCommands {}

impl serde::Serialize for QueryQmpSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl serde::Serialize for QueryCommands {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl crate::Command for QueryQmpSchema {
    const NAME: &'static str = "query-qmp-schema";
    type Returns = Schema;
}

impl crate::Command for QueryCommands {
    const NAME: &'static str = "query-commands";
    type Returns = Commands;
}
