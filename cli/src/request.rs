//! What a typed request becomes on the wire: the command name, its arguments, and whether
//! it runs out of band. The engine owns the wire ids, so an `id` typed by the user is not
//! sent (replies are matched for them).

use serde_json::{Map, Value};

/// A request ready for the adapters' `execute` calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name.
    pub name: String,
    /// Its arguments; `None` when there are none (no `arguments` member is sent).
    pub arguments: Option<Map<String, Value>>,
    /// `exec-oob` instead of `execute`.
    pub oob: bool,
}

impl Request {
    /// Checks a request object (from [`crate::syntax`], or typed as raw JSON): exactly one of
    /// `execute` and `exec-oob`, naming the command with a string; `arguments`, if present,
    /// an object; `id` allowed and ignored; nothing else.
    ///
    /// ```
    /// use qmp_cli::request::Request;
    /// use serde_json::json;
    ///
    /// let r = Request::from_object(json!({"exec-oob": "query-yank", "id": 7}).as_object().unwrap().clone()).unwrap();
    /// assert_eq!((r.name.as_str(), r.oob, r.arguments), ("query-yank", true, None));
    /// let e = Request::from_object(json!({"execute": "stop", "bogus": 1}).as_object().unwrap().clone());
    /// assert_eq!(e.unwrap_err(), "unexpected member 'bogus' (a request has execute or exec-oob, arguments and id)");
    /// ```
    pub fn from_object(mut object: Map<String, Value>) -> Result<Request, String> {
        let execute = object.remove("execute");
        let exec_oob = object.remove("exec-oob");
        let arguments = object.remove("arguments");
        object.remove("id");
        if let Some(key) = object.keys().next() {
            return Err(format!(
                "unexpected member '{key}' (a request has execute or exec-oob, arguments and id)"
            ));
        }
        let (name, oob) = match (execute, exec_oob) {
            (Some(Value::String(n)), None) => (n, false),
            (None, Some(Value::String(n))) => (n, true),
            (Some(_), Some(_)) => return Err("'execute' and 'exec-oob' exclude each other".into()),
            (None, None) => return Err("a request needs 'execute' or 'exec-oob'".into()),
            _ => return Err("the command name must be a string".into()),
        };
        let arguments = match arguments {
            None => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err("'arguments' must be an object".into()),
        };
        Ok(Request {
            name,
            arguments,
            oob,
        })
    }

    /// The arguments as the adapters take them: an object, or `null` for none (no
    /// `arguments` member is sent).
    pub fn arguments_value(&self) -> Value {
        self.arguments.clone().map_or(Value::Null, Value::Object)
    }
}
