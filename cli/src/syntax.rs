//! The input syntax of `qmp shell` (and of the arguments of `qmp exec`).
//!
//! This module is pure: strings in, JSON requests (or errors) out. It reproduces the shorthand
//! of QEMU's Python `qmp-shell`, fixes its known faults, and says what it does wherever the
//! original is silent.
//!
//! # Lines
//!
//! A line is one of:
//!
//! - **empty**, only whitespace, or a **comment** (its first non-blank character is `#`):
//!   nothing is sent ([`Parsed::Nothing`]). A `#` later in a line is ordinary text
//!   (`file=/tmp/a#b` is a path).
//! - **raw JSON**: its first non-blank character is `{`. The line must be exactly one JSON
//!   object, which is sent as is (no Python literals here: it is the wire format).
//! - **a command**: `command-name key=value key=value ...`, sent as
//!   `{"execute": "command-name", "arguments": {...}}` (`arguments` is always present, as in
//!   `qmp-shell`).
//! - **a transaction** (see below).
//!
//! # Words
//!
//! Whitespace separates words. A `"..."` or `'...'` run inside a word may contain whitespace;
//! inside it a backslash escapes the next character (so `\"` does not end a `"` run). A quote
//! that is never closed is an error. Outside quotes a backslash is an ordinary character.
//! A word `key=value` is split at its first `=` that is not inside quotes.
//!
//! # Values
//!
//! The text after `=` is, in this order of checks:
//!
//! | text | value |
//! |---|---|
//! | an integer: optional `+`/`-`, ASCII digits (leading zeros allowed: `007` is 7) | a number; beyond the 64-bit range (`-2^63` to `2^64-1`) an error |
//! | `true` / `false`, in any letter case | a boolean |
//! | starting with `{` or `[` | JSON; failing that a Python literal (below); failing both an error naming the key |
//! | a decimal float: digits with a `.` and/or an exponent (`1.5`, `-.5`, `2.`, `1e3`) | a number; an overflow (`1e400`) is an error |
//! | wholly enclosed in matching quotes (`"a b"`, `'x'`) | the string inside, quotes removed; `\"` (or `\'`) and `\\` inside stand for the quote and the backslash, any other backslash is kept |
//! | anything else, including the empty text, `null`, `None`, `inf`, `nan`, `0x10`, `1_000`, `1.2.3` | the text as a string (quotes not wholly enclosing it are kept as typed) |
//!
//! Quoting is the way to force a string: `id="1"` sends `"1"`, `name='true'` sends `"true"`,
//! `x='{a}'` sends `"{a}"`.
//!
//! `null` outside JSON stays the string `"null"`, as in `qmp-shell`: `null` is a real
//! enumeration value (`chardev-add ... backend.type=null`). Write a JSON `null` inside a
//! compound value or on a raw JSON line.
//!
//! The Python literals accepted inside `{...}`/`[...]` are a subset of what `qmp-shell`
//! evaluates: dicts with string keys, lists, strings in single or double quotes with Python's
//! escapes (`\n`, `\t`, `\xhh`, `\uhhhh`, `\Uhhhhhhhh`, octal, ...; unknown escapes keep their
//! backslash), integers (decimal without leading zeros, `0x`, `0o`, `0b`; 64-bit), floats,
//! `True`/`False`/`None` and `true`/`false`/`null`, whitespace, and trailing commas
//! (`[1, 2,]`, `{'a': 1,}`) as Python allows them. Not accepted: tuples, sets, bytes, string
//! prefixes (`r'...'`, `u'...'`), `\N{...}` escapes, complex numbers, underscores in numbers,
//! implicit string concatenation, non-string keys, nesting deeper than 128. Inside JSON,
//! numbers follow the JSON reading (an integer beyond 64 bits becomes a float, as QEMU reads
//! it too).
//!
//! # Keys
//!
//! A dotted key builds nested objects: `a.b=1 a.c=2` gives `{"a": {"b": 1, "c": 2}}`. Errors:
//! a word without `=`, an empty key (`=1`), an empty name in a dotted key (`a..b=1`, `.a=1`,
//! `a.=1`), a key given twice, and a key used both as a leaf and as an object, in either order
//! (`a=1 a.b=2`, `a.b=2 a=1`). A value typed as JSON is a leaf: `a={"b":1} a.c=2` is an error
//! rather than a merge.
//!
//! # Transactions
//!
//! As in `qmp-shell`:
//!
//! ```text
//! (QEMU) transaction(
//! TRANS> block-dirty-bitmap-add node=drive0 name=bitmap1
//! TRANS> block-dirty-bitmap-clear node=drive0 name=bitmap0
//! TRANS> )
//! ```
//!
//! `transaction(` as the first word opens a transaction ([`Parser::in_transaction`] becomes
//! true); the rest of that line, and each following line, is an action
//! `action-type key=value ...`, recorded as `{"type": ..., "data": {...}}`. A line `)` closes it
//! and gives `{"execute": "transaction", "arguments": {"actions": [...]}}`. An action line whose
//! last word is `)` also closes it, so `transaction( abort )` is a one-line transaction, and
//! `transaction( )` an empty one. Inside a transaction a raw JSON line is one action object
//! (it must have a `"type"` member), optionally followed by `)`.
//!
//! Errors: anything after the closing `)` ("Unexpected input after close of Transaction
//! sub-shell"), `transaction(` inside a transaction (`qmp-shell` silently dropped the actions
//! typed so far), and `)` outside one (`qmp-shell` sent a command named `)`). The `(` and `)`
//! must be words of their own: `transaction(abort` is a command of that name and `x=1)` a value
//! `"1)"`, as in `qmp-shell`.
//!
//! **A line that gives an error changes nothing**: inside a transaction the bad action is not
//! recorded and the transaction stays open; a bad one-line `transaction( ... )` leaves no
//! transaction open (`qmp-shell` left the shell stuck in `TRANS>` mode, or lost the actions
//! when text followed `)`).
//!
//! # Example
//!
//! ```
//! use qmp_cli::syntax::{Parsed, Parser};
//! use serde_json::json;
//!
//! let mut parser = Parser::new();
//! let Parsed::Request(request) = parser.parse_line("device_add driver=e1000 id=net1")? else {
//!     panic!("a command line gives a request");
//! };
//! assert_eq!(
//!     serde_json::Value::Object(request),
//!     json!({"execute": "device_add", "arguments": {"driver": "e1000", "id": "net1"}}),
//! );
//!
//! assert_eq!(parser.parse_line("transaction(")?, Parsed::Nothing);
//! assert!(parser.in_transaction());
//! parser.parse_line("block-dirty-bitmap-add node=drive0 name=bitmap1")?;
//! let Parsed::Request(request) = parser.parse_line(")")? else { panic!("closed") };
//! assert_eq!(request["arguments"]["actions"][0]["data"]["name"], "bitmap1");
//!
//! let error = parser.parse_line("query-status verbose").unwrap_err();
//! assert_eq!(error.to_string(), "Expected a key=value pair, got 'verbose'");
//! # Ok::<(), qmp_cli::syntax::SyntaxError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// How deep `{...}`/`[...]` values may nest (the same limit as the JSON reader's).
const MAX_DEPTH: usize = 128;

/// Parses the shell's lines, one at a time; holds transaction state between lines.
///
/// Method kinds: [`parse_line`](Self::parse_line) consumes input; the getters
/// [`in_transaction`](Self::in_transaction), [`actions`](Self::actions) and
/// [`completion_context`](Self::completion_context) only look; and
/// [`cancel_transaction`](Self::cancel_transaction) drops the transaction being typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parser {
    /// The actions of the transaction being typed; `None` outside a transaction.
    actions: Option<Vec<Value>>,
}

/// What a line gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing to send: an empty line, or an action recorded inside a transaction.
    Nothing,
    /// A complete QMP request object, ready to send: `{"execute": name, "arguments": {...}}`
    /// (or the raw JSON object the user typed). The shell adds the id itself.
    Request(Map<String, Value>),
}

/// A clear, human-readable error; `Display` gives the message the shell prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    message: String,
}

impl SyntaxError {
    fn new(message: impl Into<String>) -> Self {
        SyntaxError {
            message: message.into(),
        }
    }

    /// The message, as `Display` prints it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// What the word under the cursor is, for tab completion.
///
/// Always `line[start..cursor] == prefix`: a completion candidate replaces the text from
/// `start` to the cursor. Only the text before the cursor counts (what follows it on the line
/// is ignored), as readline does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Completing a command name (first word); `start` is the byte offset where the word begins.
    Command {
        /// Byte offset where the word begins.
        start: usize,
        /// The part of the name already typed.
        prefix: String,
    },
    /// Completing the type of a transaction action: the first word of a line inside a
    /// transaction ([`Parser::completion_context`]), or the word after `transaction(`.
    ActionType {
        /// Byte offset where the word begins.
        start: usize,
        /// The part of the type already typed.
        prefix: String,
    },
    /// Completing an argument name: the command (or transaction action type), the already
    /// typed dotted path before the last dot (e.g. `["cache"]` for `cache.dir`), the prefix.
    Argument {
        /// Byte offset where `prefix` begins (after the last dot, if any).
        start: usize,
        /// The command, or the transaction action type.
        command: String,
        /// The dotted path typed before the last dot.
        path: Vec<String>,
        /// The part of the name after the last dot.
        prefix: String,
    },
    /// Completing the value of `key=`; `key` is the full dotted path split on dots.
    Value {
        /// Byte offset where the value begins (just after `=`).
        start: usize,
        /// The command, or the transaction action type.
        command: String,
        /// The key, split on dots.
        key: Vec<String>,
        /// The part of the value already typed.
        prefix: String,
    },
    /// Nothing sensible to complete (inside raw JSON, inside a quoted or JSON value, ...).
    None,
}

impl Parser {
    /// A parser outside any transaction.
    pub fn new() -> Self {
        Parser { actions: None }
    }

    /// One line typed by the user.
    ///
    /// On error nothing changes: a transaction being typed keeps its actions and stays open,
    /// and a line that would have opened one leaves none open.
    pub fn parse_line(&mut self, line: &str) -> Result<Parsed, SyntaxError> {
        let mut actions = self.actions.clone();
        let parsed = parse_into(&mut actions, line)?;
        self.actions = actions;
        Ok(parsed)
    }

    /// True between `transaction(` and `)`: the shell shows the `TRANS> ` prompt.
    pub fn in_transaction(&self) -> bool {
        self.actions.is_some()
    }

    /// The actions recorded so far in the transaction being typed (empty outside one).
    pub fn actions(&self) -> &[Value] {
        self.actions.as_deref().unwrap_or(&[])
    }

    /// Abandons a transaction being typed (Ctrl-C), returning how many actions were dropped.
    pub fn cancel_transaction(&mut self) -> usize {
        self.actions.take().map_or(0, |actions| actions.len())
    }

    /// Like [`completion_context`], knowing whether a transaction is open: inside one, the
    /// first word of a line is an action type ([`Completion::ActionType`]).
    pub fn completion_context(&self, line: &str, cursor: usize) -> Completion {
        context(line, cursor, self.in_transaction())
    }
}

/// One line against a transaction state (`Some` inside a transaction), which it updates.
fn parse_into(actions: &mut Option<Vec<Value>>, line: &str) -> Result<Parsed, SyntaxError> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Parsed::Nothing);
    }
    if trimmed.starts_with('{') {
        return match actions {
            Some(_) => transaction_line(actions, trimmed),
            None => {
                let (object, rest) = json_object(trimmed)?;
                if rest.is_empty() {
                    Ok(Parsed::Request(object))
                } else {
                    Err(SyntaxError::new(format!(
                        "Unexpected input after the JSON object: {rest}"
                    )))
                }
            }
        };
    }
    let words = words(line)?;
    let Some(first) = words.first() else {
        return Ok(Parsed::Nothing);
    };
    if first.text == "transaction(" {
        if actions.is_some() {
            return Err(SyntaxError::new(
                "Already in a transaction: close it with ')' before starting another",
            ));
        }
        *actions = Some(Vec::new());
        let rest = line.get(first.end..).unwrap_or("");
        return transaction_line(actions, rest);
    }
    if actions.is_some() {
        return transaction_line(actions, line);
    }
    if first.text == ")" {
        return Err(SyntaxError::new(
            "')' closes a transaction, but no transaction is open",
        ));
    }
    let args: Vec<&str> = words[1..].iter().map(|word| word.text).collect();
    build_request(first.text, &args).map(Parsed::Request)
}

/// A line (or the rest of the `transaction(` line) inside an open transaction.
fn transaction_line(actions: &mut Option<Vec<Value>>, text: &str) -> Result<Parsed, SyntaxError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let (object, rest) = json_object(trimmed)?;
        if !matches!(object.get("type"), Some(Value::String(_))) {
            return Err(SyntaxError::new(
                "A JSON line inside a transaction is one action: it needs a \"type\" member",
            ));
        }
        return match rest {
            "" => {
                push_action(actions, Value::Object(object));
                Ok(Parsed::Nothing)
            }
            ")" => {
                push_action(actions, Value::Object(object));
                Ok(close(actions))
            }
            _ => Err(SyntaxError::new(format!(
                "Unexpected input after the JSON object: {rest}"
            ))),
        };
    }
    let words = words(text)?;
    let Some(first) = words.first() else {
        return Ok(Parsed::Nothing);
    };
    if first.text == ")" {
        if words.len() > 1 {
            return Err(SyntaxError::new(
                "Unexpected input after close of Transaction sub-shell",
            ));
        }
        return Ok(close(actions));
    }
    if first.text == "transaction(" {
        return Err(SyntaxError::new(
            "Already in a transaction: close it with ')' before starting another",
        ));
    }
    let mut args: Vec<&str> = words[1..].iter().map(|word| word.text).collect();
    let finalize = args.last() == Some(&")");
    if finalize {
        args.pop();
    }
    let data = build_arguments(&args)?;
    let mut action = Map::new();
    action.insert("type".to_owned(), Value::String(first.text.to_owned()));
    action.insert("data".to_owned(), Value::Object(data));
    push_action(actions, Value::Object(action));
    Ok(if finalize {
        close(actions)
    } else {
        Parsed::Nothing
    })
}

fn push_action(actions: &mut Option<Vec<Value>>, action: Value) {
    actions.get_or_insert_with(Vec::new).push(action);
}

/// Ends the transaction: the `transaction` request with the actions recorded.
fn close(actions: &mut Option<Vec<Value>>) -> Parsed {
    let list = actions.take().unwrap_or_default();
    let mut arguments = Map::new();
    arguments.insert("actions".to_owned(), Value::Array(list));
    Parsed::Request(request("transaction", arguments))
}

fn request(command: &str, arguments: Map<String, Value>) -> Map<String, Value> {
    let mut request = Map::new();
    request.insert("execute".to_owned(), Value::String(command.to_owned()));
    request.insert("arguments".to_owned(), Value::Object(arguments));
    request
}

/// One JSON object at the start of `text`, and the rest of `text` after it, trimmed.
fn json_object(text: &str) -> Result<(Map<String, Value>, &str), SyntaxError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Map<String, Value>>();
    match stream.next() {
        Some(Ok(object)) => {
            let rest = text.get(stream.byte_offset()..).unwrap_or("").trim();
            Ok((object, rest))
        }
        Some(Err(error)) => Err(SyntaxError::new(format!("Invalid JSON object: {error}"))),
        None => Err(SyntaxError::new("Invalid JSON object: no input")),
    }
}

/// `qmp exec SOCKET COMMAND key=value ...`: the same rules applied to already-split argv words.
///
/// Each word is `key=value` with the value syntax of [`parse_value`] (a word from a shell's
/// argv has already lost the shell's own quoting, so `'name=a b'` is one word).
///
/// ```
/// use qmp_cli::syntax::build_request;
/// use serde_json::json;
///
/// let request = build_request("blockdev-add", &["driver=null-co", "node-name=n0", "size=1048576"])?;
/// assert_eq!(
///     serde_json::Value::Object(request),
///     json!({"execute": "blockdev-add",
///            "arguments": {"driver": "null-co", "node-name": "n0", "size": 1048576}}),
/// );
/// # Ok::<(), qmp_cli::syntax::SyntaxError>(())
/// ```
pub fn build_request(command: &str, args: &[&str]) -> Result<Map<String, Value>, SyntaxError> {
    if command.trim().is_empty() {
        return Err(SyntaxError::new("Missing command name"));
    }
    Ok(request(command, build_arguments(args)?))
}

/// HMP mode: the request that runs `line` through `human-monitor-command`.
///
/// The line is sent as typed; QEMU picks the monitor's current CPU (see [`hmp_request_on_cpu`]).
///
/// ```
/// use serde_json::json;
///
/// let request = qmp_cli::syntax::hmp_request("info block");
/// assert_eq!(
///     serde_json::Value::Object(request),
///     json!({"execute": "human-monitor-command", "arguments": {"command-line": "info block"}}),
/// );
/// ```
pub fn hmp_request(line: &str) -> Map<String, Value> {
    let mut arguments = Map::new();
    arguments.insert("command-line".to_owned(), Value::String(line.to_owned()));
    request("human-monitor-command", arguments)
}

/// HMP mode with a CPU chosen (the shell's `cpu N`): `human-monitor-command` with `cpu-index`.
pub fn hmp_request_on_cpu(line: &str, cpu_index: i64) -> Map<String, Value> {
    let mut request = hmp_request(line);
    if let Some(Value::Object(arguments)) = request.get_mut("arguments") {
        arguments.insert("cpu-index".to_owned(), Value::from(cpu_index));
    }
    request
}

/// Splits a line into words as the shell does (see the [module docs](self)).
///
/// Quotes are kept in the words: their meaning depends on where they are (see
/// [`parse_value`]).
///
/// ```
/// assert_eq!(
///     qmp_cli::syntax::split_words(r#"  cmd name="a b" x={'k': 1}"#)?,
///     ["cmd", r#"name="a b""#, "x={'k':", "1}"],
/// );
/// # Ok::<(), qmp_cli::syntax::SyntaxError>(())
/// ```
pub fn split_words(line: &str) -> Result<Vec<&str>, SyntaxError> {
    Ok(words(line)?.into_iter().map(|word| word.text).collect())
}

/// A word of a line, with its byte range.
#[derive(Debug, Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

/// A line scanned into words; `open` is the quote character of a run still open at the end
/// (the last word then runs to the end of the line).
struct Scan<'a> {
    words: Vec<Word<'a>>,
    open: Option<char>,
}

fn scan(line: &str) -> Scan<'_> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_whitespace() {
            if let Some(begin) = start.take() {
                words.push(Word {
                    text: &line[begin..index],
                    start: begin,
                    end: index,
                });
            }
            continue;
        }
        if start.is_none() {
            start = Some(index);
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
        }
    }
    if let Some(begin) = start {
        words.push(Word {
            text: &line[begin..],
            start: begin,
            end: line.len(),
        });
    }
    Scan { words, open: quote }
}

fn words(line: &str) -> Result<Vec<Word<'_>>, SyntaxError> {
    let Scan { words, open } = scan(line);
    match (open, words.last()) {
        (Some(q), Some(last)) => Err(SyntaxError::new(format!(
            "Missing closing {q} quote in: {}",
            last.text
        ))),
        _ => Ok(words),
    }
}

/// The byte index of the first `=` of `word` outside quotes.
fn find_equals(word: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in word.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '=' => return Some(index),
            None => {}
        }
    }
    None
}

/// A node of the arguments being built: a value typed by the user, or an object made by
/// dotted keys.
enum Node {
    Leaf(Value),
    Branch(BTreeMap<String, Node>),
}

fn into_map(branch: BTreeMap<String, Node>) -> Map<String, Value> {
    branch
        .into_iter()
        .map(|(key, node)| {
            let value = match node {
                Node::Leaf(value) => value,
                Node::Branch(children) => Value::Object(into_map(children)),
            };
            (key, value)
        })
        .collect()
}

fn build_arguments(args: &[&str]) -> Result<Map<String, Value>, SyntaxError> {
    let mut root = BTreeMap::new();
    for arg in args {
        let Some(equals) = find_equals(arg) else {
            return Err(SyntaxError::new(format!(
                "Expected a key=value pair, got '{arg}'"
            )));
        };
        let (key, text) = (&arg[..equals], &arg[equals + 1..]);
        if key.is_empty() {
            return Err(SyntaxError::new(format!(
                "Missing key before '=' in '{arg}'"
            )));
        }
        let path: Vec<&str> = key.split('.').collect();
        if path.iter().any(|name| name.is_empty()) {
            return Err(SyntaxError::new(format!(
                "Empty name in dotted key '{key}'"
            )));
        }
        let value = value(text)
            .map_err(|detail| SyntaxError::new(format!("Invalid value for \"{key}\": {detail}")))?;
        insert(&mut root, key, &path, value)?;
    }
    Ok(into_map(root))
}

fn insert(
    root: &mut BTreeMap<String, Node>,
    key: &str,
    path: &[&str],
    value: Value,
) -> Result<(), SyntaxError> {
    let both = |name: &str| {
        SyntaxError::new(format!(
            "Cannot use \"{name}\" as both leaf and non-leaf key"
        ))
    };
    let Some((last, parents)) = path.split_last() else {
        return Err(SyntaxError::new(format!("Missing key in '{key}'")));
    };
    let mut map = root;
    for (depth, name) in parents.iter().enumerate() {
        let node = map
            .entry((*name).to_owned())
            .or_insert_with(|| Node::Branch(BTreeMap::new()));
        map = match node {
            Node::Branch(children) => children,
            Node::Leaf(_) => return Err(both(&path[..=depth].join("."))),
        };
    }
    match map.get(*last) {
        None => {
            map.insert((*last).to_owned(), Node::Leaf(value));
            Ok(())
        }
        Some(Node::Branch(_)) => Err(both(key)),
        Some(Node::Leaf(_)) => Err(SyntaxError::new(format!(
            "Cannot set \"{key}\" multiple times"
        ))),
    }
}

/// The value syntax of `key=value`, exposed for tests and for `qmp exec`.
///
/// See the table in the [module docs](self).
///
/// ```
/// use qmp_cli::syntax::parse_value;
/// use serde_json::json;
///
/// assert_eq!(parse_value("42")?, json!(42));
/// assert_eq!(parse_value("1.5")?, json!(1.5));
/// assert_eq!(parse_value("TRUE")?, json!(true));
/// assert_eq!(parse_value("'a b'")?, json!("a b"));
/// assert_eq!(parse_value("{'a': [1, None,]}")?, json!({"a": [1, null]}));
/// assert_eq!(parse_value("null")?, json!("null"));
/// assert_eq!(
///     parse_value("{a}").unwrap_err().to_string(),
///     "Invalid value: {a} is neither JSON nor a Python literal: expected a string key at column 2",
/// );
/// # Ok::<(), qmp_cli::syntax::SyntaxError>(())
/// ```
pub fn parse_value(text: &str) -> Result<Value, SyntaxError> {
    value(text).map_err(|detail| SyntaxError::new(format!("Invalid value: {detail}")))
}

/// [`parse_value`], with the error's detail only (the caller says which value it was).
fn value(text: &str) -> Result<Value, String> {
    if let Some(result) = integer(text) {
        return result;
    }
    if text.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    if text.starts_with('{') || text.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            return Ok(value);
        }
        return python_literal(text).map_err(|(message, position)| {
            let at = match text.get(..position) {
                Some(before) if position < text.len() => {
                    format!("at column {}", before.chars().count() + 1)
                }
                _ => "at the end".to_owned(),
            };
            format!("{text} is neither JSON nor a Python literal: {message} {at}")
        });
    }
    if decimal_float_len(text) == Some(text.len()) {
        return float(text).map_err(|message| format!("{text} {message}"));
    }
    if let Some(inner) = unquote(text) {
        return Ok(Value::String(inner));
    }
    Ok(Value::String(text.to_owned()))
}

/// `Some` when `text` is an integer: optional sign, ASCII digits.
fn integer(text: &str) -> Option<Result<Value, String>> {
    let negative = text.starts_with('-');
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(integer_value(negative, digits, 10).map_err(|message| format!("{text} {message}")))
}

/// An integer from its sign and digits, in the 64-bit range QMP integers have.
fn integer_value(negative: bool, digits: &str, radix: u32) -> Result<Value, String> {
    let out_of_range = || "does not fit in 64 bits".to_owned();
    let magnitude = u64::from_str_radix(digits, radix).map_err(|_| out_of_range())?;
    if !negative {
        return Ok(Value::from(magnitude));
    }
    if magnitude == 1 << 63 {
        return Ok(Value::from(i64::MIN));
    }
    i64::try_from(magnitude)
        .map(|m| Value::from(-m))
        .map_err(|_| out_of_range())
}

fn float(text: &str) -> Result<Value, String> {
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| "is out of range for a number".to_owned())
}

/// The length of the decimal float at the start of `text` (optional sign, digits with a `.`
/// and/or an exponent), if there is one.
fn decimal_float_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let begin = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - begin
    };
    let mut mantissa = digits(&mut i);
    let mut float = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
        float = true;
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) > 0 {
            i = j;
            float = true;
        }
    }
    float.then_some(i)
}

/// The string inside `text` when matching quotes wholly enclose it.
fn unquote(text: &str) -> Option<String> {
    let q = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &text[1..];
    let mut escaped = false;
    for (index, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return (index + 1 == inner.len()).then(|| unescape(&inner[..index], q));
        }
    }
    None
}

/// Inside quotes `q`: `\q` and `\\` stand for `q` and `\`; other backslashes are kept.
fn unescape(inner: &str, q: char) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if next == '\\' || next == q {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The Python literal subset; on error a message and the byte position it refers to.
fn python_literal(text: &str) -> Result<Value, (String, usize)> {
    let mut parser = Literal { text, pos: 0 };
    parser.blank();
    let value = parser.value(0)?;
    parser.blank();
    if parser.pos < text.len() {
        return Err(parser.error("unexpected input after the value"));
    }
    Ok(value)
}

/// A recursive-descent reader of Python literals (see the [module docs](self)).
struct Literal<'a> {
    text: &'a str,
    pos: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> (String, usize) {
        (message.into(), self.pos)
    }

    /// Python's blanks between tokens.
    fn blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r' | '\x0c')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, (String, usize)> {
        match self.peek() {
            Some('{') => self.dict(depth + 1),
            Some('[') => self.list(depth + 1),
            Some(q @ ('"' | '\'')) => self.string(q).map(Value::String),
            Some(c) if c.is_ascii_digit() || matches!(c, '.' | '+' | '-') => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => self.name(),
            Some(c) => Err(self.error(format!("unexpected character '{c}'"))),
            None => Err(self.error("missing value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), (String, usize)> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn dict(&mut self, depth: usize) -> Result<Value, (String, usize)> {
        self.enter(depth)?;
        self.bump();
        let mut map = Map::new();
        self.blank();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Object(map));
        }
        loop {
            let key = match self.peek() {
                Some(q @ ('"' | '\'')) => self.string(q)?,
                _ => return Err(self.error("expected a string key")),
            };
            self.blank();
            if self.peek() != Some(':') {
                return Err(self.error("expected ':' after a key"));
            }
            self.bump();
            self.blank();
            let value = self.value(depth)?;
            map.insert(key, value);
            if self.item_end('}')? {
                return Ok(Value::Object(map));
            }
        }
    }

    /// After an item of a dict or list closed by `close`: a `,` (which a trailing `close`
    /// may follow, as Python allows), or `close`. True once the container is closed.
    fn item_end(&mut self, close: char) -> Result<bool, (String, usize)> {
        self.blank();
        match self.peek() {
            Some(',') => {
                self.bump();
                self.blank();
                if self.peek() == Some(close) {
                    self.bump();
                    return Ok(true);
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.bump();
                Ok(true)
            }
            _ => Err(self.error(format!("expected ',' or '{close}'"))),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value, (String, usize)> {
        self.enter(depth)?;
        self.bump();
        let mut items = Vec::new();
        self.blank();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            if self.item_end(']')? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn name(&mut self) -> Result<Value, (String, usize)> {
        let begin = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        match &self.text[begin..self.pos] {
            "true" | "True" => Ok(Value::Bool(true)),
            "false" | "False" => Ok(Value::Bool(false)),
            "null" | "None" => Ok(Value::Null),
            name => Err((
                format!("unknown name '{name}' (strings need quotes)"),
                begin,
            )),
        }
    }

    fn number(&mut self) -> Result<Value, (String, usize)> {
        let begin = self.pos;
        let rest = &self.text[begin..];
        let negative = rest.starts_with('-');
        let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let sign = rest.len() - unsigned.len();
        let radix = match unsigned.get(..2) {
            Some("0x" | "0X") => Some(16),
            Some("0o" | "0O") => Some(8),
            Some("0b" | "0B") => Some(2),
            _ => None,
        };
        if let Some(radix) = radix {
            let digits_at = sign + 2;
            let digits: &str = {
                let tail = &rest[digits_at..];
                let len = tail
                    .find(|c: char| !c.is_digit(radix))
                    .unwrap_or(tail.len());
                &tail[..len]
            };
            if digits.is_empty() {
                self.pos = begin + digits_at;
                return Err(self.error("missing digits after the base prefix"));
            }
            self.pos = begin + digits_at + digits.len();
            return integer_value(negative, digits, radix)
                .map_err(|message| (format!("{} {message}", &self.text[begin..self.pos]), begin));
        }
        if let Some(len) = decimal_float_len(rest) {
            self.pos = begin + len;
            let text = &self.text[begin..self.pos];
            return float(text).map_err(|message| (format!("{text} {message}"), begin));
        }
        let digits_len = unsigned
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(unsigned.len());
        let digits = &unsigned[..digits_len];
        if digits.is_empty() {
            self.pos = begin + sign;
            return Err(self.error("expected a number"));
        }
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().any(|b| b != b'0') {
            return Err((
                "leading zeros are not allowed in a Python integer".to_owned(),
                begin,
            ));
        }
        self.pos = begin + sign + digits_len;
        integer_value(negative, digits, 10)
            .map_err(|message| (format!("{} {message}", &self.text[begin..self.pos]), begin))
    }

    fn hex(&mut self, count: usize) -> Result<u32, (String, usize)> {
        let begin = self.pos;
        let mut code = 0u32;
        for _ in 0..count {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(digit) => {
                    code = code * 16 + digit;
                    self.pos += 1;
                }
                None => {
                    return Err((format!("expected {count} hexadecimal digits"), begin));
                }
            }
        }
        Ok(code)
    }

    fn string(&mut self, q: char) -> Result<String, (String, usize)> {
        let begin = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(("unterminated string".to_owned(), begin));
            };
            match c {
                c if c == q => return Ok(out),
                '\n' | '\r' => return Err(("unterminated string".to_owned(), begin)),
                '\\' => self.escape(&mut out)?,
                c => out.push(c),
            }
        }
    }

    /// One escape sequence, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), (String, usize)> {
        let at = self.pos - 1;
        let Some(c) = self.bump() else {
            return Err(("unterminated string".to_owned(), at));
        };
        let simple = match c {
            '\n' => return Ok(()),
            '\\' | '\'' | '"' => Some(c),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(simple) = simple {
            out.push(simple);
            return Ok(());
        }
        let code = match c {
            '0'..='7' => {
                let mut code = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(digit) => {
                            code = code * 8 + digit;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                code
            }
            'x' => self.hex(2)?,
            'u' => {
                let code = self.hex(4)?;
                let pair = self
                    .text
                    .get(self.pos..)
                    .is_some_and(|t| t.starts_with("\\u"));
                if (0xD800..0xDC00).contains(&code) && pair {
                    let resume = self.pos;
                    self.pos += 2;
                    let low = self.hex(4)?;
                    if (0xDC00..0xE000).contains(&low) {
                        0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        self.pos = resume;
                        code
                    }
                } else {
                    code
                }
            }
            'U' => self.hex(8)?,
            'N' => return Err(("\\N{...} escapes are not supported".to_owned(), at)),
            other => {
                out.push('\\');
                out.push(other);
                return Ok(());
            }
        };
        match char::from_u32(code) {
            Some(c) => {
                out.push(c);
                Ok(())
            }
            None => Err((
                format!("escape for U+{code:04X} is not a character (a lone surrogate?)"),
                at,
            )),
        }
    }
}

/// What the word under the cursor is, for tab completion (pure string analysis; the shell
/// looks the names up in `query-commands` / `query-qmp-schema` itself).
///
/// This free function does not know whether a transaction is open: the first word of a line is
/// a command name. [`Parser::completion_context`] knows.
///
/// ```
/// use qmp_cli::syntax::{completion_context, Completion};
///
/// let line = "blockdev-add driver=qcow2 cache.di";
/// assert_eq!(
///     completion_context(line, line.len()),
///     Completion::Argument {
///         start: 32,
///         command: "blockdev-add".to_owned(),
///         path: vec!["cache".to_owned()],
///         prefix: "di".to_owned(),
///     },
/// );
/// ```
pub fn completion_context(line: &str, cursor: usize) -> Completion {
    context(line, cursor, false)
}

fn context(line: &str, cursor: usize, in_transaction: bool) -> Completion {
    let Some(before) = line.get(..cursor) else {
        return Completion::None;
    };
    let trimmed = before.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('#') {
        return Completion::None;
    }
    let Scan { words, open } = scan(before);
    if open.is_some() {
        return Completion::None;
    }
    let (mut done, start, current) = match words.split_last() {
        Some((last, rest)) if last.end == before.len() => (rest, last.start, last.text),
        _ => (&words[..], cursor, ""),
    };
    let mut actions = in_transaction;
    if done.first().is_some_and(|word| word.text == "transaction(") {
        if in_transaction {
            return Completion::None;
        }
        actions = true;
        done = &done[1..];
    }
    if current.contains(['"', '\''])
        || current.starts_with(['{', '['])
        || (actions && done.iter().any(|word| word.text == ")"))
    {
        return Completion::None;
    }
    let Some(command) = done.first() else {
        if actions {
            if current.starts_with(')') {
                return Completion::None;
            }
            return Completion::ActionType {
                start,
                prefix: current.to_owned(),
            };
        }
        return Completion::Command {
            start,
            prefix: current.to_owned(),
        };
    };
    let command = command.text.to_owned();
    if let Some(equals) = current.find('=') {
        let value = &current[equals + 1..];
        if value.starts_with(['{', '[']) {
            return Completion::None;
        }
        return Completion::Value {
            start: start + equals + 1,
            command,
            key: current[..equals].split('.').map(str::to_owned).collect(),
            prefix: value.to_owned(),
        };
    }
    match current.rfind('.') {
        Some(dot) => Completion::Argument {
            start: start + dot + 1,
            command,
            path: current[..dot].split('.').map(str::to_owned).collect(),
            prefix: current[dot + 1..].to_owned(),
        },
        None => Completion::Argument {
            start,
            command,
            path: Vec::new(),
            prefix: current.to_owned(),
        },
    }
}
