//! Writes the Rust code of one namespace (QMP or the guest agent).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use crate::model::{is_builtin, refs, Args, Entity, Kind, Member, TypeRef};

pub(crate) struct Ns<'a> {
    /// "QMP" or "QGA".
    pub(crate) ns: &'static str,
    pub(crate) ents: &'a [Entity],
    /// Rust path prefix for a named type from inside a generated module.
    pub(crate) prefix: &'static str,
    pub(crate) header: String,
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "extern", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static",
    "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn",
    "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized",
    "virtual", "yield", "try", "gen",
];

/// A member name as a Rust field: `node-name` -> `node_name`, `type` -> `r#type`.
pub(crate) fn snake(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if ["self", "super", "crate", "Self"].contains(&s.as_str()) {
        s.push('_');
    } else if KEYWORDS.contains(&s.as_str()) {
        s.insert_str(0, "r#");
    }
    s
}

/// A command, event or enum value as a Rust type or variant name.
pub(crate) fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        if out.ends_with(|c: char| c.is_ascii_digit())
            && part.starts_with(|c: char| c.is_ascii_digit())
        {
            out.push('_');
        }
        let all_upper = !part.chars().any(|c| c.is_ascii_lowercase());
        let mut cs = part.chars();
        if let Some(f) = cs.next() {
            out.push(f.to_ascii_uppercase());
            for c in cs {
                out.push(if all_upper { c.to_ascii_lowercase() } else { c });
            }
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

fn type_name(name: &str) -> String {
    name.replace(['-', '.'], "_")
}

/// The module name as a Rust module: `block-core` -> `block_core`.
pub(crate) fn module_ident(m: &str) -> String {
    let id = m.replace('-', "_");
    // `char` and the like would clash with the primitive types.
    if ["char", "str", "bool", "u8", "i8", "f64"].contains(&id.as_str()) {
        id + "_"
    } else {
        id
    }
}

fn uniq(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .map(|n| {
            let mut c = n.clone();
            let mut i = 2;
            while !seen.insert(c.clone()) {
                c = format!("{n}{i}");
                i += 1;
            }
            c
        })
        .collect()
}

fn uniq_fields(members: &[Member]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    members
        .iter()
        .map(|m| {
            let n = snake(&m.name);
            let mut c = n.clone();
            let mut i = 2;
            while !seen.insert(c.clone()) {
                c = format!("{}_{i}", n.trim_start_matches("r#"));
                i += 1;
            }
            c
        })
        .collect()
}

fn objtype(k: &Kind) -> &'static str {
    match k {
        Kind::Enum(_) => "enum",
        Kind::Struct { .. } | Kind::Union { .. } => "object",
        Kind::Alternate(_) => "alternate",
        Kind::Command { .. } => "command",
        Kind::Event(_) => "event",
    }
}

fn kind_word(k: &Kind) -> &'static str {
    match k {
        Kind::Enum(_) => "enum",
        Kind::Struct { .. } => "struct",
        Kind::Union { .. } => "union",
        Kind::Alternate(_) => "alternate",
        Kind::Command { .. } => "command",
        Kind::Event(_) => "event",
    }
}

pub(crate) struct Gen<'a> {
    ns: &'a Ns<'a>,
    /// QAPI type name -> Rust name, for types, commands and events alike.
    rust: HashMap<(u8, String), String>,
    types: BTreeMap<String, &'a Entity>,
    ser: BTreeSet<String>,
    de: BTreeSet<String>,
    /// (container, member type) pairs that must be boxed (recursive types).
    recursive: BTreeSet<String>,
    reach: HashMap<String, BTreeSet<String>>,
}

/// Keys of `Gen::rust`: 0 types, 1 commands, 2 events.
fn key(e: &Entity) -> (u8, String) {
    let k = match e.kind {
        Kind::Command { .. } => 1,
        Kind::Event(_) => 2,
        _ => 0,
    };
    (k, e.name.clone())
}

impl<'a> Gen<'a> {
    pub(crate) fn new(ns: &'a Ns<'a>, ser: BTreeSet<String>, de: BTreeSet<String>) -> Self {
        let mut rust = HashMap::new();
        let mut taken = BTreeSet::new();
        let mut types = BTreeMap::new();
        for e in ns.ents {
            if !matches!(e.kind, Kind::Command { .. } | Kind::Event(_)) {
                let n = type_name(&e.name);
                taken.insert(n.clone());
                if let Kind::Union { .. } = e.kind {
                    taken.insert(format!("{n}Common"));
                    taken.insert(format!("{n}Branch"));
                }
                rust.insert(key(e), n);
                types.insert(e.name.clone(), e);
            }
        }
        for (k, suffix) in [(1u8, "Cmd"), (2u8, "Event")] {
            for e in ns.ents.iter().filter(|e| key(e).0 == k) {
                let mut n = camel(&e.name);
                if taken.contains(&n) {
                    n.push_str(suffix);
                }
                assert!(taken.insert(n.clone()), "name clash: {n}");
                rust.insert(key(e), n);
            }
        }
        // Inline containment (not through arrays), to box recursive members.
        let mut direct: HashMap<String, BTreeSet<String>> = HashMap::new();
        for e in types.values() {
            let set = direct.entry(e.name.clone()).or_default();
            let mut add = |t: &TypeRef| {
                if let TypeRef::Named(n) = t {
                    if !is_builtin(n) {
                        set.insert(n.clone());
                    }
                }
            };
            match &e.kind {
                Kind::Struct { members } => members.iter().for_each(|m| add(&m.ty)),
                Kind::Union { base, cases, .. } => {
                    base.iter().for_each(|m| add(&m.ty));
                    for c in cases.iter().filter_map(|c| c.1.clone()) {
                        add(&TypeRef::Named(c));
                    }
                }
                Kind::Alternate(b) => b.iter().for_each(|(_, t)| add(t)),
                _ => {}
            }
        }
        let mut reach = HashMap::new();
        for n in direct.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<String> = direct[n].iter().cloned().collect();
            while let Some(x) = stack.pop() {
                if seen.insert(x.clone()) {
                    if let Some(d) = direct.get(&x) {
                        stack.extend(d.iter().cloned());
                    }
                }
            }
            reach.insert(n.clone(), seen);
        }
        let recursive = reach
            .iter()
            .filter(|(n, r)| r.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        Gen {
            ns,
            rust,
            types,
            ser,
            de,
            recursive,
            reach,
        }
    }

    fn needs_box(&self, container: &str, t: &TypeRef) -> bool {
        match t {
            TypeRef::Named(n) => {
                self.recursive.contains(n)
                    && self.reach.get(n).is_some_and(|r| r.contains(container))
            }
            TypeRef::Array(_) => false,
        }
    }

    pub(crate) fn rust_name(&self, e: &Entity) -> &str {
        &self.rust[&key(e)]
    }

    fn named(&self, n: &str) -> String {
        match n {
            "str" => "::std::string::String".into(),
            "int" | "int64" => "i64".into(),
            "int8" => "i8".into(),
            "int16" => "i16".into(),
            "int32" => "i32".into(),
            "uint8" => "u8".into(),
            "uint16" => "u16".into(),
            "uint32" => "u32".into(),
            "uint64" | "size" => "u64".into(),
            "number" => "f64".into(),
            "bool" => "bool".into(),
            "null" => "()".into(),
            "any" => "::serde_json::Value".into(),
            _ => format!("{}{}", self.ns.prefix, self.rust[&(0, n.to_owned())]),
        }
    }

    fn ty(&self, t: &TypeRef) -> String {
        match t {
            TypeRef::Named(n) => self.named(n),
            TypeRef::Array(n) => format!("::std::vec::Vec<{}>", self.named(n)),
        }
    }

    fn member_ty(&self, container: &str, m: &Member) -> String {
        let mut t = self.ty(&m.ty);
        if self.needs_box(container, &m.ty) {
            t = format!("::std::boxed::Box<{t}>");
        }
        if m.optional {
            t = format!("::std::option::Option<{t}>");
        }
        t
    }

    fn link(&self, e: &Entity, shown: &str) -> String {
        let page = if self.ns.ns == "QMP" {
            "qemu-qmp-ref"
        } else {
            "qemu-ga-ref"
        };
        let id: String = format!(
            "{}-{}-{}.{}",
            objtype(&e.kind),
            self.ns.ns,
            e.module,
            e.name
        )
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
        format!("[{shown}](https://www.qemu.org/docs/master/interop/{page}.html#{id})")
    }

    fn item_doc(&self, out: &mut String, e: &Entity) {
        let since = e
            .doc
            .since
            .as_deref()
            .map(|s| format!(", since QEMU {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "/// `{}`: the QAPI {} (module `{}`{since}).\n///\n/// See {}.",
            e.name,
            kind_word(&e.kind),
            e.module,
            self.link(e, "its entry in QEMU's reference")
        );
        features_doc(out, &e.features, "");
    }

    /// Whether a struct of `name` always has Serialize (`Some("")`), only with the feature
    /// `serialize-all` (`Some(cfg)`).
    fn ser_when(&self, name: &str, always: bool) -> Option<&'static str> {
        Some(if always || self.ser.contains(name) {
            ""
        } else {
            "#[cfg(feature = \"serialize-all\")]\n"
        })
    }
    fn de_when(&self, name: &str, always: bool) -> Option<&'static str> {
        Some(if always || self.de.contains(name) {
            ""
        } else {
            "#[cfg(feature = \"deserialize-all\")]\n"
        })
    }
    /// The cfg attribute of a union's or alternate's Serialize: none when the type is sent,
    /// or unused (it then gets both directions).
    fn ser_attr(&self, name: &str) -> &'static str {
        self.ser_when(name, self.unused(name)).unwrap_or_default()
    }
    /// The same for Deserialize.
    fn de_attr(&self, name: &str) -> &'static str {
        self.de_when(name, self.unused(name)).unwrap_or_default()
    }
    /// Unused types get both directions.
    fn unused(&self, name: &str) -> bool {
        !self.ser.contains(name) && !self.de.contains(name)
    }

    /// A struct's fields, its Serialize (`ser`) and Deserialize (`de`) when it has them
    /// (each `Some(the cfg attribute or "")`), with a constructor and setters when the type
    /// is sent (`builder`).
    #[allow(clippy::too_many_arguments)]
    fn struct_body(
        &self,
        out: &mut String,
        container: &str,
        rname: &str,
        members: &[Member],
        builder: bool,
        ser: Option<&str>,
        de: Option<&str>,
    ) {
        self.struct_body_with(out, container, rname, members, builder, ser, de, false);
    }

    /// [`struct_body`](Self::struct_body), with `properties` for the members beyond the
    /// schema's when `free_form` (a command's arguments that QEMU takes more members for:
    /// `'gen': false`, `device_add`'s device properties).
    #[allow(clippy::too_many_arguments)]
    fn struct_body_with(
        &self,
        out: &mut String,
        container: &str,
        rname: &str,
        members: &[Member],
        builder: bool,
        ser: Option<&str>,
        de: Option<&str>,
        free_form: bool,
    ) {
        // Backward compatibility: a type that is only received takes a member added after
        // the type itself as optional, since an older QEMU does not send it.
        let relaxed: Vec<Member>;
        let members = if builder {
            members
        } else {
            relaxed = members
                .iter()
                .cloned()
                .map(|mut m| {
                    m.optional |= m.later;
                    m
                })
                .collect();
            &relaxed
        };
        let fields = uniq_fields(members);
        let _ = writeln!(out, "pub struct {rname} {{");
        for (m, f) in members.iter().zip(&fields) {
            member_doc(out, m, "    ");
            let _ = writeln!(out, "    pub {f}: {},", self.member_ty(container, m));
        }
        let mut shown = fields.clone();
        if free_form {
            out.push_str("    /// The members QEMU takes beyond the schema's (a device's properties, say).\n    pub properties: ::serde_json::Map<::std::string::String, ::serde_json::Value>,\n");
            shown.push("properties".to_owned());
        }
        out.push_str("}\n");
        let _ = writeln!(
            out,
            "crate::support::debug_struct!({rname} {{ {} }});",
            shown.join(", ")
        );
        let mut_ = if members.is_empty() && !free_form {
            ""
        } else {
            "mut "
        };
        if let Some(cfg) = ser {
            let _ = writeln!(
                out,
                "{cfg}impl ::serde::Serialize for {rname} {{\n    fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {{\n        let {mut_}m = crate::support::ser_map(s)?;"
            );
            for (m, f) in members.iter().zip(&fields) {
                let call = if m.optional { "opt_entry" } else { "entry" };
                let _ = writeln!(
                    out,
                    "        crate::support::{call}(&mut m, \"{}\", &self.{f})?;",
                    m.name
                );
            }
            if free_form {
                out.push_str("        crate::support::extra_entries(&mut m, &self.properties)?;\n");
            }
            out.push_str("        crate::support::end(m)\n    }\n}\n");
        }
        if let Some(cfg) = de {
            let _ = writeln!(
                out,
                "{cfg}impl<'de> ::serde::Deserialize<'de> for {rname} {{\n    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {{\n        crate::support::de_struct(d)\n    }}\n}}"
            );
            let _ = writeln!(
                out,
                "{cfg}impl<'de> crate::support::FromMap<'de> for {rname} {{\n    const NAME: &'static str = \"{rname}\";\n    fn from_map<A: ::serde::de::MapAccess<'de>>({mut_}map: A) -> ::std::result::Result<Self, A::Error> {{"
            );
            if members.is_empty() {
                out.push_str("        crate::support::skip_all(map)?;\n        ::std::result::Result::Ok(Self {})\n    }\n}\n");
                return self.builder(out, container, rname, members, &fields, builder, free_form);
            }
            for i in 0..members.len() {
                let _ = writeln!(out, "        let mut v{i} = ::std::option::Option::None;");
            }
            let _ = writeln!(
                out,
                "        while let ::std::option::Option::Some(k) = crate::support::key(&mut map)? {{\n            match k.as_str() {{"
            );
            for (i, m) in members.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "                \"{0}\" => crate::support::set(&mut map, &mut v{i}, \"{0}\"),",
                    m.name
                );
            }
            out.push_str("                _ => crate::support::skip(&mut map),\n            }?;\n        }\n");
            let req: Vec<usize> = (0..members.len())
                .filter(|&i| !members[i].optional)
                .collect();
            let vs = |p: &str| -> String {
                let v: Vec<String> = req
                    .iter()
                    .map(|i| format!("{p}v{i}{}", if p.is_empty() { "" } else { ")" }))
                    .collect();
                if v.len() == 1 {
                    format!("({},)", v[0])
                } else {
                    format!("({})", v.join(", "))
                }
            };
            let mut value = String::from("Self {\n");
            for (i, (m, f)) in members.iter().zip(&fields).enumerate() {
                if m.optional {
                    let _ = writeln!(value, "                {f}: v{i}.flatten(),");
                } else {
                    let _ = writeln!(value, "                {f}: v{i},");
                }
            }
            value.push_str("            }");
            if req.is_empty() {
                let _ = writeln!(out, "        ::std::result::Result::Ok({value})");
            } else {
                let missing: Vec<String> = req
                    .iter()
                    .map(|&i| format!("(v{i}.is_none(), \"{}\")", members[i].name))
                    .collect();
                let _ = writeln!(
                    out,
                    "        match {} {{\n            {} => ::std::result::Result::Ok({value}),\n            {} => ::std::result::Result::Err(crate::support::missing(&[{}])),\n        }}",
                    vs(""),
                    vs("::std::option::Option::Some("),
                    vs(""),
                    missing.join(", ")
                );
            }
            out.push_str("    }\n}\n");
        }
        self.builder(out, container, rname, members, &fields, builder, free_form);
    }

    /// The constructor and setters of a struct that commands send (and `with_property` for
    /// a free-form one).
    #[allow(clippy::too_many_arguments)]
    fn builder(
        &self,
        out: &mut String,
        container: &str,
        rname: &str,
        members: &[Member],
        fields: &[String],
        builder: bool,
        free_form: bool,
    ) {
        if builder {
            let _ = writeln!(out, "impl {rname} {{");
            let req: Vec<(&Member, &String)> = members
                .iter()
                .zip(fields)
                .filter(|(m, _)| !m.optional)
                .collect();
            let params: Vec<String> = req
                .iter()
                .map(|(m, f)| format!("{f}: {}", self.member_ty(container, m)))
                .collect();
            let _ = writeln!(
                out,
                "    /// A value with the required members{}.\n    #[inline]\n    pub fn new({}) -> Self {{\n        Self {{",
                if req.is_empty() { " (there are none)" } else { "" },
                params.join(", ")
            );
            for (m, f) in members.iter().zip(fields) {
                if m.optional {
                    let _ = writeln!(out, "            {f}: ::std::option::Option::None,");
                } else {
                    let _ = writeln!(out, "            {f},");
                }
            }
            if free_form {
                out.push_str("            properties: ::serde_json::Map::new(),\n");
            }
            out.push_str("        }\n    }\n");
            for (m, f) in members.iter().zip(fields).filter(|(m, _)| m.optional) {
                let mut inner = self.ty(&m.ty);
                if self.needs_box(container, &m.ty) {
                    inner = format!("::std::boxed::Box<{inner}>");
                }
                let bare = f.trim_start_matches("r#");
                if m.features.iter().any(|x| x == "deprecated") {
                    out.push_str(
                        "    #[deprecated(note = \"deprecated in QEMU's QAPI schema\")]\n",
                    );
                }
                let _ = writeln!(
                    out,
                    "    /// Sets `{}`.\n    #[inline]\n    pub fn with_{bare}(mut self, value: {inner}) -> Self {{\n        self.{f} = ::std::option::Option::Some(value);\n        self\n    }}",
                    m.name
                );
            }
            if free_form {
                out.push_str("    /// Sets another member (a device property such as `drive` or `serial`).\n    #[inline]\n    pub fn with_property(mut self, name: impl ::std::convert::Into<::std::string::String>, value: impl ::std::convert::Into<::serde_json::Value>) -> Self {\n        self.properties.insert(name.into(), value.into());\n        self\n    }\n");
            }
            out.push_str("}\n");
        }
    }

    fn emit_struct(&self, out: &mut String, e: &Entity, members: &[Member]) {
        let rname = self.rust_name(e);
        self.item_doc(out, e);
        deprecated_attr(out, &e.features, "");
        out.push_str("#[derive(Clone)]\n");
        let unused = self.unused(&e.name);
        out.push_str("#[non_exhaustive]\n");
        let builder = unused || self.ser.contains(&e.name);
        let (ser, de) = (
            self.ser_when(&e.name, unused),
            self.de_when(&e.name, unused),
        );
        self.struct_body(out, &e.name, rname, members, builder, ser, de);
    }

    fn emit_enum(&self, out: &mut String, e: &Entity, values: &[crate::model::EnumValue]) {
        let rname = self.rust_name(e);
        self.item_doc(out, e);
        deprecated_attr(out, &e.features, "");
        out.push_str("#[derive(Debug, Clone, PartialEq, Eq, Hash)]\n#[non_exhaustive]\n");
        let _ = writeln!(out, "pub enum {rname} {{");
        let vars = uniq(values.iter().map(|v| {
            let c = camel(&v.name);
            if c == "Other" {
                "OtherValue".to_owned()
            } else {
                c
            }
        }));
        for (v, var) in values.iter().zip(&vars) {
            let _ = writeln!(out, "    /// `{}`", v.name);
            features_doc(out, &v.features, "    ");
            deprecated_attr(out, &v.features, "    ");
            let _ = writeln!(out, "    {var},");
        }
        out.push_str("    /// A value this version of the crate does not know, as received.\n    Other(::std::string::String),\n}\n");
        let _ = writeln!(out, "crate::support::qapi_enum!({rname} {{");
        for (v, var) in values.iter().zip(&vars) {
            let _ = writeln!(out, "    {var} = \"{}\",", v.name);
        }
        out.push_str("});\n");
    }

    fn emit_union(
        &self,
        out: &mut String,
        e: &Entity,
        base: &[Member],
        disc: &str,
        cases: &[(String, Option<String>)],
    ) {
        let rname = self.rust_name(e);
        let unused = self.unused(&e.name);
        self.item_doc(out, e);
        let _ = writeln!(
            out,
            "///\n/// A union: the members of [`{rname}Common`], the discriminator `{disc}`, and the members of the case it names ([`{rname}Branch`])."
        );
        deprecated_attr(out, &e.features, "");
        out.push_str("#[derive(Debug, Clone)]\n#[non_exhaustive]\n");
        let _ = writeln!(
            out,
            "pub struct {rname} {{\n    /// The members every case has, the discriminator aside.\n    pub base: {rname}Common,\n    /// The case (the discriminator `{disc}`) and its members.\n    pub branch: {rname}Branch,\n}}"
        );
        let _ = writeln!(
            out,
            "impl {rname} {{\n    /// A value from its common members and its case.\n    #[inline]\n    pub fn new(base: {rname}Common, branch: {rname}Branch) -> Self {{\n        Self {{ base, branch }}\n    }}\n}}"
        );
        // Common members.
        let common: Vec<Member> = base.iter().filter(|m| m.name != disc).cloned().collect();
        let _ = writeln!(
            out,
            "/// The members of [`{rname}`] that every case has, the discriminator `{disc}` aside."
        );
        out.push_str("#[derive(Clone)]\n#[non_exhaustive]\n");
        let builder = unused || self.ser.contains(&e.name);
        let (ser, de) = (
            self.ser_when(&e.name, unused),
            self.de_when(&e.name, unused),
        );
        let common_name = format!("{rname}Common");
        self.struct_body(out, &e.name, &common_name, &common, builder, ser, de);
        // Branch enum.
        let vars = uniq(cases.iter().map(|(c, _)| {
            let v = camel(c);
            if v == "Other" {
                "OtherValue".to_owned()
            } else {
                v
            }
        }));
        let _ = writeln!(
            out,
            "/// The cases of [`{rname}`], by its discriminator `{disc}`."
        );
        out.push_str("#[derive(Debug, Clone)]\n#[non_exhaustive]\n");
        let _ = writeln!(out, "pub enum {rname}Branch {{");
        for ((c, b), v) in cases.iter().zip(&vars) {
            let _ = writeln!(
                out,
                "    /// `{disc}` is `{c}`{}.",
                if b.is_some() {
                    ""
                } else {
                    " (no more members)"
                }
            );
            match b {
                Some(t) => {
                    let mut ty = self.named(t);
                    if self.needs_box(&e.name, &TypeRef::Named(t.clone())) {
                        ty = format!("::std::boxed::Box<{ty}>");
                    }
                    let _ = writeln!(out, "    {v}({ty}),");
                }
                None => {
                    let _ = writeln!(out, "    {v},");
                }
            }
        }
        let _ = writeln!(
            out,
            "    /// A discriminator value this version of the crate does not know, or none (an older\n    /// QEMU, whose type was not a union yet).\n    Other {{\n        /// The discriminator's value (empty when there was none).\n        tag: ::std::string::String,\n        /// The whole object as received.\n        data: ::serde_json::Value,\n    }},\n}}"
        );
        let _ = writeln!(out, "impl {rname}Branch {{\n    /// The discriminator's value.\n    #[inline]\n    pub fn tag(&self) -> &str {{\n        match self {{");
        for ((c, b), v) in cases.iter().zip(&vars) {
            let pat = if b.is_some() {
                format!("{v}(_)")
            } else {
                v.clone()
            };
            let _ = writeln!(out, "            Self::{pat} => \"{c}\",");
        }
        out.push_str("            Self::Other { tag, .. } => tag,\n        }\n    }\n}\n");
        // Serialize.
        out.push_str(self.ser_attr(&e.name));
        let _ = writeln!(
            out,
            "impl ::serde::Serialize for {rname} {{\n    fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {{\n        let branch = match &self.branch {{"
        );
        for ((_, b), v) in cases.iter().zip(&vars) {
            if b.is_some() {
                let _ = writeln!(
                    out,
                    "            {rname}Branch::{v}(b) => crate::support::to_value(b),"
                );
            }
        }
        let _ = writeln!(
            out,
            "            {rname}Branch::Other {{ data, .. }} => ::std::result::Result::Ok(data.clone()),\n            #[allow(unreachable_patterns)]\n            _ => ::std::result::Result::Ok(::serde_json::Value::Null),\n        }};\n        crate::support::ser_union(s, crate::support::to_value(&self.base), \"{disc}\", self.branch.tag(), branch)\n    }}\n}}"
        );
        // Deserialize.
        out.push_str(self.de_attr(&e.name));
        let _ = writeln!(
            out,
            "impl<'de> ::serde::Deserialize<'de> for {rname} {{\n    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {{\n        let v = <::serde_json::Value as ::serde::Deserialize>::deserialize(d)?;\n        Self::from_json(&v).map_err(<D::Error as ::serde::de::Error>::custom)\n    }}\n}}"
        );
        out.push_str(self.de_attr(&e.name));
        let _ = writeln!(
            out,
            "impl {rname} {{\n    #[inline]\n    fn from_json(v: &::serde_json::Value) -> ::std::result::Result<Self, ::serde_json::Error> {{\n        let base = <{rname}Common as ::serde::Deserialize>::deserialize(v)?;\n        let tag = crate::support::tag(v, \"{disc}\")?;\n        let branch = match tag {{"
        );
        for ((c, b), v) in cases.iter().zip(&vars) {
            if b.is_some() {
                let _ = writeln!(out, "            \"{c}\" => {rname}Branch::{v}(::serde::Deserialize::deserialize(v)?),");
            } else {
                let _ = writeln!(out, "            \"{c}\" => {rname}Branch::{v},");
            }
        }
        let _ = writeln!(
            out,
            "            _ => {rname}Branch::Other {{\n                tag: tag.to_owned(),\n                data: v.clone(),\n            }},\n        }};\n        ::std::result::Result::Ok(Self {{ base, branch }})\n    }}\n}}"
        );
    }

    fn json_kind(&self, t: &TypeRef) -> &'static str {
        match t {
            TypeRef::Array(_) => "Array",
            TypeRef::Named(n) => match n.as_str() {
                "str" => "String",
                "number" | "int" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16"
                | "uint32" | "uint64" | "size" => "Number",
                "bool" => "Bool",
                "null" => "Null",
                "any" => panic!("any in an alternate"),
                other => match self.types.get(other).map(|e| &e.kind) {
                    Some(Kind::Enum(_)) => "String",
                    Some(Kind::Struct { .. } | Kind::Union { .. }) => "Object",
                    k => panic!("alternate branch {other}: {k:?}"),
                },
            },
        }
    }

    fn emit_alternate(&self, out: &mut String, e: &Entity, branches: &[(String, TypeRef)]) {
        let rname = self.rust_name(e);
        self.item_doc(out, e);
        deprecated_attr(out, &e.features, "");
        out.push_str("#[derive(Debug, Clone)]\n#[non_exhaustive]\n");
        let _ = writeln!(out, "pub enum {rname} {{");
        let vars = uniq(branches.iter().map(|(n, _)| {
            let v = camel(n);
            if v == "Other" {
                "OtherValue".to_owned()
            } else {
                v
            }
        }));
        for ((n, t), v) in branches.iter().zip(&vars) {
            let mut ty = self.ty(t);
            if self.needs_box(&e.name, t) {
                ty = format!("::std::boxed::Box<{ty}>");
            }
            let _ = writeln!(out, "    /// The `{n}` branch.\n    {v}({ty}),");
        }
        out.push_str("    /// A JSON value of a type no branch has, as received.\n    Other(::serde_json::Value),\n}\n");
        out.push_str(self.ser_attr(&e.name));
        let _ = writeln!(
            out,
            "impl ::serde::Serialize for {rname} {{\n    fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {{\n        match self {{"
        );
        for v in &vars {
            let _ = writeln!(
                out,
                "            Self::{v}(x) => ::serde::Serialize::serialize(x, s),"
            );
        }
        out.push_str("            Self::Other(x) => ::serde::Serialize::serialize(x, s),\n        }\n    }\n}\n");
        out.push_str(self.de_attr(&e.name));
        let _ = writeln!(
            out,
            "impl<'de> ::serde::Deserialize<'de> for {rname} {{\n    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {{\n        let v = <::serde_json::Value as ::serde::Deserialize>::deserialize(d)?;\n        Self::from_json(v).map_err(<D::Error as ::serde::de::Error>::custom)\n    }}\n}}"
        );
        out.push_str(self.de_attr(&e.name));
        let _ = writeln!(
            out,
            "impl {rname} {{\n    #[inline]\n    fn from_json(v: ::serde_json::Value) -> ::std::result::Result<Self, ::serde_json::Error> {{\n        ::std::result::Result::Ok(match &v {{"
        );
        for ((_, t), var) in branches.iter().zip(&vars) {
            let kind = self.json_kind(t);
            // `Value::Null` is a unit variant, the others hold the value.
            let fields = if kind == "Null" { "" } else { "(..)" };
            let _ = writeln!(
                out,
                "            ::serde_json::Value::{kind}{fields} => Self::{var}(::serde::Deserialize::deserialize(v)?),"
            );
        }
        out.push_str("            #[allow(unreachable_patterns)]\n            _ => Self::Other(v),\n        })\n    }\n}\n");
    }

    fn emit_command(
        &self,
        out: &mut String,
        e: &Entity,
        args: &Args,
        returns: Option<&TypeRef>,
        (allow_oob, success, free_form): (bool, bool, bool),
    ) {
        let rname = self.rust_name(e).to_owned();
        match args {
            Args::None => {
                self.item_doc(out, e);
                out.push_str("///\n/// It takes no arguments.\n");
                deprecated_attr(out, &e.features, "");
                let _ = writeln!(
                    out,
                    "#[derive(Debug, Clone, Default)]\n#[non_exhaustive]\npub struct {rname} {{}}\nimpl {rname} {{\n    /// The command (it has no arguments).\n    #[inline]\n    pub fn new() -> Self {{\n        Self {{}}\n    }}\n}}\ncrate::support::no_arguments!({rname});"
                );
            }
            Args::Inline(m) => {
                self.item_doc(out, e);
                out.push_str("///\n/// Its fields are the command's arguments.\n");
                deprecated_attr(out, &e.features, "");
                out.push_str("#[derive(Clone)]\n#[non_exhaustive]\n");
                self.struct_body_with(out, &e.name, &rname, m, true, Some(""), None, free_form);
            }
            Args::Named(t) => {
                self.item_doc(out, e);
                let ty = self.named(t);
                let _ = writeln!(
                    out,
                    "///\n/// Its arguments are a [`{}`]({ty}).",
                    ty.trim_start_matches(self.ns.prefix)
                );
                deprecated_attr(out, &e.features, "");
                let _ = writeln!(
                    out,
                    "#[derive(Debug, Clone)]\n#[non_exhaustive]\npub struct {rname} {{\n    /// The arguments.\n    pub args: {ty},\n}}\nimpl {rname} {{\n    /// The command with these arguments.\n    #[inline]\n    pub fn new(args: {ty}) -> Self {{\n        Self {{ args }}\n    }}\n}}\nimpl ::std::convert::From<{ty}> for {rname} {{\n    #[inline]\n    fn from(args: {ty}) -> Self {{\n        Self {{ args }}\n    }}\n}}\ncrate::support::boxed_arguments!({rname});"
                );
            }
        }
        let ret = match returns {
            Some(t) => self.ty(t),
            None => "::qmp_proto::commands::Empty".into(),
        };
        if !success {
            let _ = writeln!(out, "// `{}` sends no reply when it succeeds.", e.name);
        }
        let oob = if allow_oob {
            "\n    const ALLOW_OOB: bool = true;"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "impl ::qmp_proto::Command for {rname} {{\n    const NAME: &'static str = \"{}\";{oob}\n    type Returns = {ret};\n}}",
            e.name
        );
    }

    fn emit_event(&self, out: &mut String, e: &Entity, args: &Args) {
        let rname = self.rust_name(e).to_owned();
        self.item_doc(out, e);
        deprecated_attr(out, &e.features, "");
        match args {
            Args::None => {
                out.push_str("///\n/// It has no data.\n");
                let _ = writeln!(out, "#[derive(Debug, Clone)]\n#[non_exhaustive]\npub struct {rname} {{}}\ncrate::support::no_data!({rname});");
            }
            Args::Inline(m) => {
                out.push_str("///\n/// Its fields are the event's data.\n");
                out.push_str("#[derive(Clone)]\n#[non_exhaustive]\n");
                let ser = self.ser_when("", false);
                self.struct_body(out, &e.name, &rname, m, false, ser, Some(""));
            }
            Args::Named(t) => {
                let ty = self.named(t);
                let _ = writeln!(
                    out,
                    "#[derive(Debug, Clone)]\n#[non_exhaustive]\npub struct {rname} {{\n    /// The event's data.\n    pub data: {ty},\n}}\ncrate::support::boxed_data!({rname});"
                );
            }
        }
        let _ = writeln!(out, "impl ::qmp_proto::events::TypedEvent for {rname} {{\n    const NAME: &'static str = \"{}\";\n}}", e.name);
    }

    pub(crate) fn emit_entity(&self, out: &mut String, e: &Entity) {
        match &e.kind {
            Kind::Enum(v) => self.emit_enum(out, e, v),
            Kind::Struct { members } => self.emit_struct(out, e, members),
            Kind::Union {
                base,
                discriminator,
                cases,
            } => self.emit_union(out, e, base, discriminator, cases),
            Kind::Alternate(b) => self.emit_alternate(out, e, b),
            Kind::Command {
                args,
                returns,
                allow_oob,
                success_response,
                free_form,
            } => self.emit_command(
                out,
                e,
                args,
                returns.as_ref(),
                (*allow_oob, *success_response, *free_form),
            ),
            Kind::Event(a) => self.emit_event(out, e, a),
        }
        out.push('\n');
    }

    /// Match arms calling every command that takes no required arguments through its
    /// typed API, by name (for the live tests).
    pub(crate) fn call_arms(&self) -> String {
        let mut out = String::new();
        for e in self.ns.ents {
            let Kind::Command { args, .. } = &e.kind else {
                continue;
            };
            let ok = match args {
                Args::None => true,
                Args::Inline(m) => m.iter().all(|m| m.optional),
                Args::Named(_) => false,
            };
            if ok {
                let _ = writeln!(
                    out,
                    "        \"{}\" => c.call({}::new()).map(drop),",
                    e.name,
                    self.rust_name(e)
                );
            }
        }
        out
    }

    /// The modules whose types `module`'s items use.
    pub(crate) fn module_deps(&self, module: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in self.ns.ents.iter().filter(|e| e.module == module) {
            for r in refs(e) {
                if let Some(t) = self.types.get(&r) {
                    if t.module != module {
                        out.insert(t.module.clone());
                    }
                }
            }
        }
        out
    }
}

fn member_doc(out: &mut String, m: &Member, indent: &str) {
    let mut notes = Vec::new();
    match (&m.since, m.optional && m.later) {
        (Some(s), true) => notes.push(format!(
            "since QEMU {s}; always sent since, `None` from an older QEMU"
        )),
        (Some(s), false) => {
            if m.optional {
                notes.push("optional".to_owned());
            }
            notes.push(format!("since QEMU {s}"));
        }
        (None, _) => {
            if m.optional {
                notes.push("optional".to_owned());
            }
        }
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let _ = writeln!(out, "{indent}/// `{}`{notes}.", m.name);
    features_doc(out, &m.features, indent);
    deprecated_attr(out, &m.features, indent);
}

fn features_doc(out: &mut String, features: &[String], indent: &str) {
    if features.iter().any(|f| f == "deprecated") {
        let _ = writeln!(out, "{indent}///\n{indent}/// Deprecated in QEMU's schema.");
    }
    if features.iter().any(|f| f == "unstable") {
        let _ = writeln!(out, "{indent}///\n{indent}/// Unstable in QEMU's schema: it may change or go away without notice.");
    }
}

fn deprecated_attr(out: &mut String, features: &[String], indent: &str) {
    if features.iter().any(|f| f == "deprecated") {
        let _ = writeln!(
            out,
            "{indent}#[deprecated(note = \"deprecated in QEMU's QAPI schema\")]"
        );
    }
}
