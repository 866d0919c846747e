//! `qmp qom list|get|set|tree`: the QEMU Object Model, as QEMU's `scripts/qmp/qom-*` show it.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use qmp_blocking::{Connection, Error};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::target::Target;
use crate::{format, EXIT_FAILURE, EXIT_QMP_ERROR, EXIT_USAGE};

/// How long each command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What `qmp qom` was asked.
#[derive(Debug, Clone)]
pub enum QomCommand {
    /// The properties of one object.
    List {
        /// The object's QOM path.
        path: String,
    },
    /// One property's value.
    Get {
        /// `PATH.PROPERTY`.
        path_property: String,
    },
    /// Sets one property.
    Set {
        /// `PATH.PROPERTY`.
        path_property: String,
        /// JSON when it parses as JSON, else a string.
        value: String,
    },
    /// The tree below an object.
    Tree {
        /// The root's QOM path.
        path: String,
        /// How deep below the root to go.
        max_depth: usize,
        /// How many objects to show at most.
        max_objects: usize,
    },
}

/// Why a `qmp qom` command failed.
#[derive(Debug)]
enum Failure {
    /// QEMU answered with an error: exit status 1.
    Qmp { class: String, desc: String },
    /// Something else: exit status 3.
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Qmp(e) => Failure::Qmp {
                class: e.class.to_string(),
                desc: e.desc,
            },
            e => Failure::Other(e.to_string()),
        }
    }
}

/// Splits `PATH.PROPERTY` at its last `.`, as QEMU's scripts do.
///
/// ```
/// use qmp_cli::qom::split_path_property;
///
/// assert_eq!(split_path_property("/machine.type"), Ok(("/machine", "type")));
/// assert_eq!(split_path_property("/objects/m0.size"), Ok(("/objects/m0", "size")));
/// assert!(split_path_property("/machine").is_err());
/// assert!(split_path_property("/machine.").is_err());
/// ```
pub fn split_path_property(text: &str) -> Result<(&str, &str), String> {
    match text.rsplit_once('.') {
        Some((path, prop)) if !path.is_empty() && !prop.is_empty() => Ok((path, prop)),
        _ => Err(format!(
            "invalid <path>.<property>: '{text}' (expected e.g. /machine.type)"
        )),
    }
}

/// The value `qmp qom set` sends: the text as JSON when it parses as JSON, else as a string.
///
/// ```
/// use qmp_cli::qom::set_value;
/// use serde_json::json;
///
/// assert_eq!(set_value("1048576"), json!(1048576));
/// assert_eq!(set_value("true"), json!(true));
/// assert_eq!(set_value("\"x\""), json!("x"));
/// assert_eq!(set_value("on"), json!("on"));
/// ```
pub fn set_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A property value as the tools print it: a string as it is, anything else as the JSON
/// QEMU sent (its member order and spacing kept).
///
/// ```
/// use qmp_cli::qom::show_value;
/// use serde_json::value::RawValue;
///
/// let raw = |t: &str| RawValue::from_string(t.to_owned()).unwrap();
/// assert_eq!(show_value(&raw(r#""pc-i440fx-10.0""#)), "pc-i440fx-10.0");
/// assert_eq!(show_value(&raw(r#""a\"b""#)), "a\"b");
/// assert_eq!(show_value(&raw("1048576")), "1048576");
/// assert_eq!(show_value(&raw(r#"{"size": 0, "max-size": 0}"#)), r#"{"size": 0, "max-size": 0}"#);
/// ```
pub fn show_value(value: &RawValue) -> String {
    let text = value.get();
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return s;
        }
    }
    format::json(text, false)
}

/// One line of `qom-list`: the name and the type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Property {
    name: String,
    kind: String,
}

impl Property {
    fn is_child(&self) -> bool {
        self.kind.starts_with("child<")
    }

    fn is_link(&self) -> bool {
        self.kind.starts_with("link<")
    }

    /// As `qom-list` prints it: `name/` for a child, `@name/` for a link, else `name`.
    fn listed(&self) -> String {
        if self.is_child() {
            format!("{}/", self.name)
        } else if self.is_link() {
            format!("@{}/", self.name)
        } else {
            self.name.clone()
        }
    }
}

fn qom_list(conn: &mut Connection, path: &str) -> Result<Vec<Property>, Failure> {
    let reply: Value = conn.execute("qom-list", &json!({ "path": path }))?;
    let malformed = || Failure::Other(format!("malformed qom-list reply for {path}"));
    let items = reply.as_array().ok_or_else(malformed)?;
    items
        .iter()
        .map(|item| {
            let name = item.get("name").and_then(Value::as_str);
            let kind = item.get("type").and_then(Value::as_str);
            match (name, kind) {
                (Some(name), Some(kind)) => Ok(Property {
                    name: name.to_owned(),
                    kind: kind.to_owned(),
                }),
                _ => Err(malformed()),
            }
        })
        .collect()
}

fn qom_get(conn: &mut Connection, path: &str, property: &str) -> Result<Box<RawValue>, Failure> {
    Ok(conn.execute("qom-get", &json!({ "path": path, "property": property }))?)
}

/// The path of a child of `parent`.
fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// `/objects/` is `/objects`; `/` stays.
fn trim_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// Writes the tree below `root`, depth first, children in QEMU's order: each object's path,
/// then `  name: value (type)` for each property but its children (`<EXCEPTION: desc>` for a
/// value QEMU refuses to give), a blank line, then the children. At most `max_objects`
/// objects, and none deeper than `max_depth` below the root; returns a note on what was
/// left out, if anything was.
fn tree(
    conn: &mut Connection,
    out: &mut impl Write,
    root: &str,
    max_depth: usize,
    max_objects: usize,
) -> Result<Option<String>, Failure> {
    let io = |e: std::io::Error| Failure::Other(format!("writing the output: {e}"));
    // An explicit stack: a deep tree cannot overflow the thread's.
    let mut stack = vec![(root.to_owned(), 0usize)];
    let mut shown = 0usize;
    let mut too_deep = 0usize;
    while let Some((path, depth)) = stack.pop() {
        if shown == max_objects {
            return Ok(Some(format!(
                "stopped after {max_objects} objects (--max-objects); at least {} more not shown",
                stack.len() + 1
            )));
        }
        shown += 1;
        let listed = qom_list(conn, &path);
        // The root must exist; an object gone since its parent was listed is shown so.
        if depth == 0 {
            if let Err(e) = listed {
                return Err(e);
            }
        }
        writeln!(out, "{path}").map_err(io)?;
        let items = match listed {
            Ok(items) => items,
            Err(Failure::Qmp { desc, .. }) => {
                writeln!(out, "  <EXCEPTION: {desc}>\n").map_err(io)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        for item in items.iter().filter(|i| !i.is_child()) {
            let value = match qom_get(conn, &path, &item.name) {
                Ok(v) => show_value(&v),
                Err(Failure::Qmp { desc, .. }) => format!("<EXCEPTION: {desc}>"),
                Err(e) => return Err(e),
            };
            writeln!(out, "  {}: {value} ({})", item.name, item.kind).map_err(io)?;
        }
        writeln!(out).map_err(io)?;
        let children: Vec<&Property> = items.iter().filter(|i| i.is_child()).collect();
        if depth >= max_depth {
            too_deep += children.len();
            continue;
        }
        for child in children.into_iter().rev() {
            stack.push((child_path(&path, &child.name), depth + 1));
        }
    }
    Ok((too_deep > 0).then(|| {
        format!(
            "stopped at {max_depth} levels below {root} (--max-depth); deeper objects not shown: {too_deep}"
        )
    }))
}

fn execute(conn: &mut Connection, command: &QomCommand) -> Result<Option<String>, Failure> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| Failure::Other(format!("writing the output: {e}"));
    let note = match command {
        QomCommand::List { path } => {
            for item in qom_list(conn, path)? {
                writeln!(out, "{}", item.listed()).map_err(io)?;
            }
            None
        }
        QomCommand::Get { path_property } => {
            let (path, property) = split_path_property(path_property).map_err(Failure::Other)?;
            let value = qom_get(conn, path, property)?;
            writeln!(out, "{}", show_value(&value)).map_err(io)?;
            None
        }
        QomCommand::Set {
            path_property,
            value,
        } => {
            let (path, property) = split_path_property(path_property).map_err(Failure::Other)?;
            let args = json!({ "path": path, "property": property, "value": set_value(value) });
            conn.execute::<qmp_blocking::IgnoredAny>("qom-set", &args)?;
            None
        }
        QomCommand::Tree {
            path,
            max_depth,
            max_objects,
        } => tree(conn, &mut out, trim_path(path), *max_depth, *max_objects)?,
    };
    out.flush().map_err(io)?;
    Ok(note)
}

/// Runs `qmp qom ...`: exit status 0 on success; 1 with the QMP error's class and
/// description on stderr; 2 for a bad `PATH.PROPERTY`; 3 when the command could not run
/// (no connection, a timeout, the session ended) or a tree was cut short by its limits.
pub fn run(target: &Target, command: &QomCommand) -> ExitCode {
    let name = match command {
        QomCommand::List { .. } => "list",
        QomCommand::Get { .. } => "get",
        QomCommand::Set { .. } => "set",
        QomCommand::Tree { .. } => "tree",
    };
    if let QomCommand::Get { path_property } | QomCommand::Set { path_property, .. } = command {
        if let Err(e) = split_path_property(path_property) {
            crate::fail(&format!("qmp qom {name}: {e}"));
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let mut conn = match crate::exec::connect(target, false, Some(TIMEOUT)) {
        Ok(c) => c,
        Err(e) => {
            crate::fail(&format!("qmp qom {name}: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = match execute(&mut conn, command) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(note)) => {
            crate::fail(&format!("qmp qom {name}: {note}"));
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Qmp { class, desc }) => {
            crate::fail(&format!("{class}: {desc}"));
            ExitCode::from(EXIT_QMP_ERROR)
        }
        Err(Failure::Other(e)) => {
            crate::fail(&format!("qmp qom {name}: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
    };
    conn.close();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(child_path("/", "machine"), "/machine");
        assert_eq!(child_path("/machine", "unattached"), "/machine/unattached");
        assert_eq!(trim_path("/"), "/");
        assert_eq!(trim_path("//"), "/");
        assert_eq!(trim_path("/objects/"), "/objects");
        assert_eq!(trim_path("/objects"), "/objects");
    }

    #[test]
    fn listed_names() {
        let p = |name: &str, kind: &str| Property {
            name: name.into(),
            kind: kind.into(),
        };
        assert_eq!(
            p("machine", "child<pc-i440fx-10.0-machine>").listed(),
            "machine/"
        );
        assert_eq!(p("bus", "link<PCIBus>").listed(), "@bus/");
        assert_eq!(p("type", "string").listed(), "type");
    }
}
