//! The schema as the generator sees it: definitions with their conditions evaluated.

use std::collections::{BTreeMap, BTreeSet};

use crate::parse::{Doc, Expr, J};

/// The configuration symbols taken as true: qemu-system-x86_64 (and qemu-storage-daemon,
/// qemu-ga) built for and running on x86_64 Linux, with the features Debian's build enables.
/// Every other symbol is false: CONFIG_WIN32, other targets (TARGET_S390X, TARGET_ARM, ...),
/// macOS and BSD backends (CONFIG_COCOA, CONFIG_VMNET, CONFIG_FREEBSD, ...), and what
/// Debian's 10.0.2 build (bookworm-backports) leaves out: CONFIG_BLKIO, CONFIG_AF_XDP,
/// CONFIG_AUDIO_SNDIO, CONFIG_QATZIP, CONFIG_QPL, CONFIG_UADK. The live tests check this
/// list against the introspection of the installed binaries.
pub(crate) const TRUE_SYMBOLS: &[&str] = &[
    "TARGET_I386",
    "CONFIG_LINUX",
    "CONFIG_POSIX",
    "CONFIG_KVM",
    "CONFIG_TCG",
    "CONFIG_SPICE",
    "CONFIG_SPICE_PROTOCOL",
    "CONFIG_VNC",
    "CONFIG_TPM",
    "CONFIG_REPLICATION",
    "CONFIG_DBUS_DISPLAY",
    "CONFIG_SECRET_KEYRING",
    "CONFIG_FUSE",
    "CONFIG_ZSTD",
    "CONFIG_VHOST_USER_BLK_SERVER",
    "CONFIG_VDUSE_BLK_EXPORT",
    "CONFIG_VHOST_CRYPTO",
    "CONFIG_SDL",
    "CONFIG_OPENGL",
    "CONFIG_GTK",
    "CONFIG_CURSES",
    "CONFIG_BRLAPI",
    "CONFIG_AUDIO_ALSA",
    "CONFIG_AUDIO_PA",
    "CONFIG_AUDIO_PIPEWIRE",
    "CONFIG_AUDIO_OSS",
    "CONFIG_AUDIO_JACK",
    "CONFIG_AUDIO_SDL",
    "CONFIG_EBPF",
    "CONFIG_LINUX_IO_URING",
    "CONFIG_LIBPMEM",
    "CONFIG_FDT",
    "CONFIG_PIXMAN",
    "HAVE_HOST_BLOCK_DEVICE",
    "HAVE_CHARDEV_SERIAL",
    "HAVE_CHARDEV_PARALLEL",
    "HAVE_IPPROTO_MPTCP",
    "HAVE_GETIFADDRS",
    "HAVE_UTMPX",
    "CONFIG_FSFREEZE",
    "CONFIG_FSTRIM",
    "CONFIG_LIBUDEV",
    "CONFIG_GETLOADAVG",
];

pub(crate) fn cond(c: Option<&J>, true_syms: &BTreeSet<String>) -> bool {
    match c {
        None => true,
        Some(J::Str(s)) => true_syms.contains(s),
        Some(J::Dict(d)) => d.iter().all(|(k, v)| match (k.as_str(), v) {
            ("all", J::List(l)) => l.iter().all(|x| cond(Some(x), true_syms)),
            ("any", J::List(l)) => l.iter().any(|x| cond(Some(x), true_syms)),
            ("not", x) => !cond(Some(x), true_syms),
            _ => panic!("bad condition {k}"),
        }),
        Some(other) => panic!("bad condition {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeRef {
    Named(String),
    Array(String),
}

impl TypeRef {
    pub(crate) fn name(&self) -> &str {
        match self {
            TypeRef::Named(n) | TypeRef::Array(n) => n,
        }
    }
    fn parse(j: &J) -> TypeRef {
        match j {
            J::Str(s) => TypeRef::Named(s.clone()),
            J::List(l) => TypeRef::Array(l[0].str().expect("array of name").to_owned()),
            _ => panic!("bad type {j:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) optional: bool,
    pub(crate) ty: TypeRef,
    pub(crate) features: Vec<String>,
    pub(crate) since: Option<String>,
    /// A required member added after the type itself: older QEMUs do not send it.
    pub(crate) later: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct EnumValue {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Args {
    None,
    Inline(Vec<Member>),
    Named(String),
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Enum(Vec<EnumValue>),
    Struct {
        /// Every member, the base's first.
        members: Vec<Member>,
    },
    Union {
        /// The base's members, the discriminator among them.
        base: Vec<Member>,
        discriminator: String,
        /// The discriminator enum's values, each with its branch type if it has one.
        cases: Vec<(String, Option<String>)>,
    },
    Alternate(Vec<(String, TypeRef)>),
    Command {
        args: Args,
        returns: Option<TypeRef>,
        allow_oob: bool,
        success_response: bool,
        /// `'gen': false`: QEMU takes members beyond the schema's (`device_add`'s device
        /// properties).
        free_form: bool,
    },
    Event(Args),
}

#[derive(Debug, Clone)]
pub(crate) struct Entity {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) module: String,
    pub(crate) doc: Doc,
    pub(crate) features: Vec<String>,
}

pub(crate) const BUILTINS: &[&str] = &[
    "str", "int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size",
    "number", "bool", "null", "any",
];

pub(crate) fn is_builtin(n: &str) -> bool {
    BUILTINS.contains(&n)
}

/// The JSON type introspection gives a builtin.
pub(crate) fn json_type(n: &str) -> &'static str {
    match n {
        "str" => "string",
        "number" => "number",
        "bool" => "boolean",
        "null" => "null",
        "any" => "value",
        _ => "int",
    }
}

fn features(j: Option<&J>, t: &BTreeSet<String>) -> Vec<String> {
    let Some(J::List(l)) = j else {
        return Vec::new();
    };
    l.iter()
        .filter_map(|f| match f {
            J::Str(s) => Some(s.clone()),
            J::Dict(_) => cond(f.get("if"), t).then(|| f.get_str("name").expect("name").to_owned()),
            _ => None,
        })
        .collect()
}

/// The oldest QEMU whose replies and events the generated types decode: a required member
/// added to a received type after the type itself, and after this version, is optional.
pub(crate) const OLDEST_QEMU: &str = "7.2";

/// Whether version `a` (such as `10.0`) is later than `b`; `false` when either is unknown.
pub(crate) fn newer(a: Option<&str>, b: Option<&str>) -> bool {
    fn parts(v: &str) -> Option<Vec<u32>> {
        v.trim().split('.').map(|p| p.parse().ok()).collect()
    }
    match (a.and_then(parts), b.and_then(parts)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

fn members(j: &J, doc: &Doc, t: &BTreeSet<String>) -> Vec<Member> {
    let J::Dict(d) = j else {
        panic!("members must be a dict: {j:?}")
    };
    d.iter()
        .filter_map(|(k, v)| {
            let (name, optional) = match k.strip_prefix('*') {
                Some(n) => (n.to_owned(), true),
                None => (k.clone(), false),
            };
            let (ty, feats) = match v {
                J::Dict(_) => {
                    if !cond(v.get("if"), t) {
                        return None;
                    }
                    (
                        TypeRef::parse(v.get("type").expect("type")),
                        features(v.get("features"), t),
                    )
                }
                _ => (TypeRef::parse(v), Vec::new()),
            };
            let since = doc.member_since.get(&name).cloned();
            Some(Member {
                later: !optional
                    && newer(since.as_deref(), doc.since.as_deref())
                    && newer(since.as_deref(), Some(OLDEST_QEMU)),
                since,
                name,
                optional,
                ty,
                features: feats,
            })
        })
        .collect()
}

/// The entities of a schema whose condition holds, in schema order.
pub(crate) fn build(exprs: &[Expr], t: &BTreeSet<String>) -> Vec<Entity> {
    let live: Vec<&Expr> = exprs
        .iter()
        .filter(|e| e.value.get("pragma").is_none() && cond(e.value.get("if"), t))
        .collect();
    fn find<'e>(live: &[&'e Expr], name: &str) -> &'e Expr {
        live.iter()
            .find(|e| {
                ["struct", "enum", "union", "alternate"]
                    .iter()
                    .any(|k| e.value.get_str(k) == Some(name))
            })
            .unwrap_or_else(|| panic!("type {name} not found"))
    }
    // Every member of a struct, its bases' first.
    fn struct_members(e: &Expr, t: &BTreeSet<String>, live: &[&Expr]) -> Vec<Member> {
        let mut out = match e.value.get_str("base") {
            Some(b) => struct_members(find(live, b), t, live),
            None => Vec::new(),
        };
        if let Some(data) = e.value.get("data") {
            out.extend(members(data, &e.doc, t));
        }
        out
    }
    let mut out = Vec::new();
    for e in &live {
        let v = &e.value;
        let feats = features(v.get("features"), t);
        let (name, kind) = if let Some(n) = v.get_str("enum") {
            let J::List(vals) = v.get("data").expect("enum data") else {
                panic!("enum data")
            };
            let vals = vals
                .iter()
                .filter_map(|x| match x {
                    J::Str(s) => Some(EnumValue {
                        name: s.clone(),
                        features: Vec::new(),
                    }),
                    J::Dict(_) => cond(x.get("if"), t).then(|| EnumValue {
                        name: x.get_str("name").expect("name").to_owned(),
                        features: features(x.get("features"), t),
                    }),
                    _ => panic!("enum value"),
                })
                .collect();
            (n, Kind::Enum(vals))
        } else if let Some(n) = v.get_str("struct") {
            (
                n,
                Kind::Struct {
                    members: struct_members(e, t, &live),
                },
            )
        } else if let Some(n) = v.get_str("union") {
            let base = match v.get("base").expect("union base") {
                J::Str(b) => struct_members(find(&live, b), t, &live),
                inline => members(inline, &e.doc, t),
            };
            let discriminator = v
                .get_str("discriminator")
                .expect("discriminator")
                .to_owned();
            let dm = base
                .iter()
                .find(|m| m.name == discriminator)
                .expect("discriminator member");
            let Kind::Enum(values) = build_enum_values(find(&live, dm.ty.name()), t) else {
                unreachable!()
            };
            let J::Dict(branches) = v.get("data").expect("union data") else {
                panic!("union data")
            };
            let branch = |case: &str| -> Option<String> {
                branches
                    .iter()
                    .find(|(k, _)| k == case)
                    .and_then(|(_, b)| match b {
                        J::Str(s) => Some(s.clone()),
                        J::Dict(_) => cond(b.get("if"), t)
                            .then(|| b.get_str("type").expect("type").to_owned()),
                        _ => None,
                    })
            };
            let cases = values.into_iter().map(|ev| {
                let b = branch(&ev.name);
                (ev.name, b)
            });
            (
                n,
                Kind::Union {
                    base,
                    discriminator,
                    cases: cases.collect(),
                },
            )
        } else if let Some(n) = v.get_str("alternate") {
            let J::Dict(d) = v.get("data").expect("alternate data") else {
                panic!("alternate data")
            };
            let branches = d
                .iter()
                .filter_map(|(k, b)| match b {
                    J::Dict(_) => cond(b.get("if"), t)
                        .then(|| (k.clone(), TypeRef::parse(b.get("type").expect("type")))),
                    _ => Some((k.clone(), TypeRef::parse(b))),
                })
                .collect();
            (n, Kind::Alternate(branches))
        } else if let Some(n) = v.get_str("command") {
            (
                n,
                Kind::Command {
                    args: args(v.get("data"), &e.doc, t),
                    returns: v.get("returns").map(TypeRef::parse),
                    allow_oob: v.get_bool("allow-oob"),
                    success_response: !matches!(v.get("success-response"), Some(J::Bool(false))),
                    free_form: matches!(v.get("gen"), Some(J::Bool(false))),
                },
            )
        } else if let Some(n) = v.get_str("event") {
            (n, Kind::Event(args(v.get("data"), &e.doc, t)))
        } else {
            panic!("unknown expression {v:?}")
        };
        out.push(Entity {
            name: name.to_owned(),
            kind,
            module: e.module.clone(),
            doc: e.doc.clone(),
            features: feats,
        });
    }
    out
}

fn build_enum_values(e: &Expr, t: &BTreeSet<String>) -> Kind {
    let ents = build(std::slice::from_ref(e), t);
    ents.into_iter().next().expect("enum").kind
}

fn args(j: Option<&J>, doc: &Doc, t: &BTreeSet<String>) -> Args {
    match j {
        None => Args::None,
        Some(J::Str(s)) => Args::Named(s.clone()),
        Some(d) => {
            let m = members(d, doc, t);
            if m.is_empty() {
                Args::None
            } else {
                Args::Inline(m)
            }
        }
    }
}

/// Names of the named types an entity refers to directly.
pub(crate) fn refs(e: &Entity) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |n: &str| {
        if !is_builtin(n) {
            out.push(n.to_owned());
        }
    };
    let add_args = |a: &Args, add: &mut dyn FnMut(&str)| match a {
        Args::None => {}
        Args::Inline(m) => m.iter().for_each(|m| add(m.ty.name())),
        Args::Named(n) => add(n),
    };
    match &e.kind {
        Kind::Enum(_) => {}
        Kind::Struct { members } => members.iter().for_each(|m| add(m.ty.name())),
        Kind::Union { base, cases, .. } => {
            base.iter().for_each(|m| add(m.ty.name()));
            cases
                .iter()
                .filter_map(|c| c.1.as_deref())
                .for_each(&mut add);
        }
        Kind::Alternate(b) => b.iter().for_each(|(_, t)| add(t.name())),
        Kind::Command { args, returns, .. } => {
            add_args(args, &mut add);
            if let Some(r) = returns {
                add(r.name());
            }
        }
        Kind::Event(a) => add_args(a, &mut add),
    }
    out
}

/// Which types need Serialize (reachable from command arguments) and Deserialize
/// (reachable from command returns and events).
pub(crate) fn directions(ents: &[Entity]) -> (BTreeSet<String>, BTreeSet<String>) {
    let by_name: BTreeMap<&str, &Entity> = ents
        .iter()
        .filter(|e| !matches!(e.kind, Kind::Command { .. } | Kind::Event(_)))
        .map(|e| (e.name.as_str(), e))
        .collect();
    let close = |roots: Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = roots;
        while let Some(n) = stack.pop() {
            if is_builtin(&n) || !seen.insert(n.clone()) {
                continue;
            }
            if let Some(e) = by_name.get(n.as_str()) {
                stack.extend(refs(e));
            }
        }
        seen
    };
    let mut ser_roots = Vec::new();
    let mut de_roots = Vec::new();
    for e in ents {
        match &e.kind {
            Kind::Command { args, returns, .. } => {
                match args {
                    Args::Inline(m) => ser_roots.extend(m.iter().map(|m| m.ty.name().to_owned())),
                    Args::Named(n) => ser_roots.push(n.clone()),
                    Args::None => {}
                }
                if let Some(r) = returns {
                    de_roots.push(r.name().to_owned());
                }
            }
            Kind::Event(a) => match a {
                Args::Inline(m) => de_roots.extend(m.iter().map(|m| m.ty.name().to_owned())),
                Args::Named(n) => de_roots.push(n.clone()),
                Args::None => {}
            },
            _ => {}
        }
    }
    let (mut ser, mut de) = (close(ser_roots), close(de_roots));
    // Types no command or event uses (bases, ...) get both directions, and so does all
    // they use.
    let unused: Vec<String> = by_name
        .keys()
        .filter(|n| !ser.contains(**n) && !de.contains(**n))
        .map(|n| (*n).to_owned())
        .collect();
    let both = close(unused);
    ser.extend(both.iter().cloned());
    de.extend(both);
    (ser, de)
}
