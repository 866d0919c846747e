//! The checks of `qmp_dispatch`, in QEMU's order, with QEMU's messages: the envelope of a
//! request (`qmp_dispatch_check_obj`), negotiation, the command's existence, OOB, and the
//! arguments of `qmp_capabilities`. The first check that fails answers the request.

use serde_json::{Map, Value};

use super::json::{self, QValue};
use super::CommandInfo;

/// What the checks let through.
pub(super) enum Checked {
    /// `qmp_capabilities` with valid arguments.
    Negotiate {
        /// Whether the client enables OOB.
        enable_oob: bool,
    },
    /// Any other command the handler has.
    Run(Request),
}

/// A request that passed [`check_envelope`].
pub(super) struct Request {
    pub(super) name: String,
    pub(super) arguments: Map<String, Value>,
    /// Whether it came with `exec-oob`.
    pub(super) oob: bool,
}

/// Why a request is refused: the error class and description of its answer.
pub(super) struct Rejection {
    pub(super) class: &'static str,
    pub(super) desc: String,
}

impl Rejection {
    /// A `GenericError`.
    pub(super) fn generic(desc: impl Into<String>) -> Rejection {
        Rejection {
            class: "GenericError",
            desc: desc.into(),
        }
    }
}

/// `qmp_dispatch_check_obj`: an object whose members, in QEMU's member order, are
/// `execute` (or `exec-oob`, when OOB is enabled) with a string, `arguments` with an
/// object, and `id`.
pub(super) fn check_envelope(req: &QValue, oob_enabled: bool) -> Result<Request, Rejection> {
    let QValue::Dict(members) = req else {
        return Err(Rejection::generic("QMP input must be a JSON object"));
    };
    let mut exec_key: Option<&str> = None;
    for (key, value) in json::qdict_order(members) {
        check_member(key, value, oob_enabled, &mut exec_key)?;
    }
    let Some(exec_key) = exec_key else {
        return Err(Rejection::generic("QMP input lacks member 'execute'"));
    };
    let name = req
        .get(exec_key)
        .and_then(QValue::as_str)
        .unwrap_or_default()
        .to_owned();
    let arguments = match req.get("arguments").map(QValue::to_json) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Request {
        name,
        arguments,
        oob: exec_key == "exec-oob",
    })
}

/// One member of a request; `exec_key` remembers the `execute` or `exec-oob` seen so far.
fn check_member<'a>(
    key: &'a str,
    value: &QValue,
    oob_enabled: bool,
    exec_key: &mut Option<&'a str>,
) -> Result<(), Rejection> {
    if key == "execute" || (key == "exec-oob" && oob_enabled) {
        if !matches!(value, QValue::Str(_)) {
            return Err(Rejection::generic(format!(
                "QMP input member '{key}' must be a string"
            )));
        }
        if let Some(other) = exec_key {
            return Err(Rejection::generic(format!(
                "QMP input member '{key}' clashes with '{other}'"
            )));
        }
        *exec_key = Some(key);
    } else if key == "arguments" {
        if !matches!(value, QValue::Dict(_)) {
            return Err(Rejection::generic(
                "QMP input member 'arguments' must be an object",
            ));
        }
    } else if key != "id" {
        return Err(Rejection::generic(format!(
            "QMP input member '{key}' is unexpected"
        )));
    }
    Ok(())
}

/// An out-of-band request for a command that does not allow it.
pub(super) fn check_oob(request: &Request, info: CommandInfo) -> Result<(), Rejection> {
    if request.oob && !info.allow_oob {
        return Err(Rejection::generic(format!(
            "The command {} does not support OOB",
            request.name
        )));
    }
    Ok(())
}

/// The arguments of `qmp_capabilities`: whether they enable OOB, or why they are refused.
pub(super) fn check_enable(offered: &[String], args: &Map<String, Value>) -> Result<bool, String> {
    for key in args.keys() {
        if key != "enable" {
            return Err(format!("Parameter '{key}' is unexpected"));
        }
    }
    let mut oob = false;
    if let Some(enable) = args.get("enable") {
        let Value::Array(list) = enable else {
            return Err("Invalid parameter type for 'enable', expected: array".into());
        };
        for (i, cap) in list.iter().enumerate() {
            let Value::String(cap) = cap else {
                return Err(format!(
                    "Invalid parameter type for 'enable[{i}]', expected: string"
                ));
            };
            if cap != "oob" {
                // QEMU's visitor names list elements "null" here.
                return Err(format!("Parameter 'null' does not accept value '{cap}'"));
            }
            if !offered.iter().any(|o| o == cap) {
                return Err(format!("Capability {cap} not available"));
            }
            oob = true;
        }
    }
    Ok(oob)
}
