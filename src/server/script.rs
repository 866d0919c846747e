//! Script mode: replay a recorded transcript of real QEMU.

use std::fmt;

use serde_json::{Map, Value};

use super::{parse_ordered, Call, CommandInfo, Context, Handler, Outcome};
use crate::server::json::{self, QValue};

/// One step of a script: a request the client must send, and what QEMU answered.
#[derive(Debug, Clone)]
struct Step {
    /// Line number in the transcript, for messages.
    line: usize,
    /// `execute` or `exec-oob` name.
    name: String,
    oob: bool,
    arguments: Value,
    /// Events (raw `data` text or none) and then the reply, in order.
    answers: Vec<Answer>,
}

#[derive(Debug, Clone)]
enum Answer {
    Event { name: String, data: Option<String> },
    Reply(Outcome),
    Close,
}

/// A client request that the script did not expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The transcript line of the expected request (`None` past the end of the script).
    pub line: Option<usize>,
    /// What the script expected.
    pub expected: String,
    /// What the client sent (command and arguments).
    pub got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "script line {line}: expected {}\n                got      {}",
                self.expected, self.got
            ),
            None => write!(f, "script ended; got {}", self.got),
        }
    }
}

/// A [`Handler`] that replays a transcript recorded from real QEMU.
///
/// The transcript uses QMP spec notation: `-> ` lines are the requests the client must send
/// (compared by command name, `execute` or `exec-oob`, and arguments; ids are ignored and
/// the client's own id is put in the reply), `<- ` lines are what QEMU answered: events
/// (emitted with fresh timestamps) and then the reply; `<- EOF` closes the connection after
/// the reply (as QEMU does after `quit`). Events recorded after a reply (a
/// `DEVICE_DELETED`, a job's) come after that reply in replay too, before the next reply.
/// Blank lines and `#` comments are skipped; a greeting line, the `qmp_capabilities`
/// exchange and events before the first request are ignored (the
/// [`Server`](super::Server) sends its own greeting).
///
/// A request other than the next expected one is answered with a `GenericError` that shows
/// both, and recorded: check [`mismatches`](Self::mismatches) and
/// [`remaining`](Self::remaining) at the end of a test.
///
/// ```
/// use std::time::Instant;
/// use qmp_proto::server::{Script, Server, ServerConfig};
///
/// let script = Script::parse(r#"
/// -> {"execute": "query-status", "id": 1}
/// <- {"return": {"status": "running", "running": true}, "id": 1}
/// "#)?;
/// let now = Instant::now();
/// let mut server = Server::new(ServerConfig::default(), script);
/// server.accept(now);
/// server.handle_input(now, br#"{"execute": "qmp_capabilities"}{"execute": "query-status", "id": "x"}"#);
/// let out = String::from_utf8(server.take_output())?;
/// assert!(out.ends_with("{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"x\"}\r\n"));
/// assert!(server.handler().mismatches().is_empty());
/// assert_eq!(server.handler().remaining(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Script {
    steps: Vec<Step>,
    next: usize,
    mismatches: Vec<Mismatch>,
    /// What was recorded after the last reply (events, the end of the connection), sent
    /// after that reply: on the next timer, or before the next command runs.
    after_reply: Vec<Answer>,
}

/// A transcript that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transcript line {line}: {message}")]
pub struct ScriptError {
    /// The line.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn describe(name: &str, oob: bool, args: &Value) -> String {
    let key = if oob { "exec-oob" } else { "execute" };
    match args {
        Value::Object(m) if m.is_empty() => format!("{{\"{key}\": \"{name}\"}}"),
        other => format!(
            "{{\"{key}\": \"{name}\", \"arguments\": {}}}",
            compact(other)
        ),
    }
}

impl Script {
    /// Reads a transcript.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut steps: Vec<Step> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let err = |message: String| ScriptError { line, message };
            let (dir, body) = if let Some(b) = l.strip_prefix("->") {
                ("->", b.trim())
            } else if let Some(b) = l.strip_prefix("<-") {
                ("<-", b.trim())
            } else {
                return Err(err("expected a line starting with -> or <-".into()));
            };
            if dir == "<-" && body == "EOF" {
                if let Some(step) = steps.last_mut() {
                    step.answers.push(Answer::Close);
                }
                continue;
            }
            let v: Value = serde_json::from_str(body).map_err(|e| err(e.to_string()))?;
            if dir == "->" {
                let (name, oob) = match (v.get("execute"), v.get("exec-oob")) {
                    (Some(Value::String(n)), _) => (n.clone(), false),
                    (_, Some(Value::String(n))) => (n.clone(), true),
                    _ => return Err(err("a request needs \"execute\" or \"exec-oob\"".into())),
                };
                if name == "qmp_capabilities" {
                    continue;
                }
                steps.push(Step {
                    line,
                    name,
                    oob,
                    arguments: v
                        .get("arguments")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new())),
                    answers: Vec::new(),
                });
                continue;
            }
            if v.get("QMP").is_some() {
                continue;
            }
            let Some(step) = steps.last_mut() else {
                // Answers before any request: the reply to qmp_capabilities, or events.
                continue;
            };
            if let Some(Value::String(name)) = v.get("event") {
                // Keep the data's member order: it is re-read with QEMU's parser.
                let data = v.get("data").map(|_| extract_member(body, "data"));
                step.answers.push(Answer::Event {
                    name: name.clone(),
                    data: data.flatten(),
                });
            } else if v.get("return").is_some() {
                let ret = extract_member(body, "return").unwrap_or_else(|| "{}".into());
                step.answers.push(Answer::Reply(Outcome::Json(ret)));
            } else if let Some(e) = v.get("error") {
                step.answers.push(Answer::Reply(Outcome::Error {
                    class: e["class"].as_str().unwrap_or("GenericError").to_owned(),
                    desc: e["desc"].as_str().unwrap_or_default().to_owned(),
                }));
            } else {
                return Err(err("expected an event, a return or an error".into()));
            }
        }
        Ok(Script {
            steps,
            next: 0,
            mismatches: Vec::new(),
            after_reply: Vec::new(),
        })
    }

    /// Requests that did not match the script, in order.
    pub fn mismatches(&self) -> &[Mismatch] {
        &self.mismatches
    }

    /// How many expected requests have not been sent yet.
    pub fn remaining(&self) -> usize {
        self.steps.len() - self.next
    }
}

/// Member `key` of the recorded message `text`, as JSON text for [`Outcome::Json`] whose
/// members are in the order that makes the server print them exactly as recorded.
fn extract_member(text: &str, key: &str) -> Option<String> {
    let v = parse_ordered(text).ok()?;
    let mut member: QValue = v.get(key)?.clone();
    json::reverse_members(&mut member);
    let mut out = Vec::new();
    json::write_as_is(&mut out, &member);
    String::from_utf8(out).ok()
}

impl Handler for Script {
    fn command(&self, _name: &str) -> Option<CommandInfo> {
        Some(CommandInfo { allow_oob: true })
    }

    fn execute(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome {
        // What came after the previous reply comes before this command's answers.
        Self::send(ctx, std::mem::take(&mut self.after_reply));
        let args = Value::Object(call.arguments);
        let got = describe(&call.name, call.oob, &args);
        let Some(step) = self.steps.get(self.next) else {
            let m = Mismatch {
                line: None,
                expected: "nothing".into(),
                got,
            };
            let desc = m.to_string();
            self.mismatches.push(m);
            return Outcome::generic_error(desc);
        };
        if step.name != call.name || step.oob != call.oob || step.arguments != args {
            let m = Mismatch {
                line: Some(step.line),
                expected: describe(&step.name, step.oob, &step.arguments),
                got,
            };
            let desc = m.to_string();
            self.mismatches.push(m);
            return Outcome::generic_error(desc);
        }
        self.next += 1;
        let mut answers = step.answers.clone();
        let Some(at) = answers.iter().position(|a| matches!(a, Answer::Reply(_))) else {
            Self::send(ctx, answers);
            return Outcome::NoResponse;
        };
        let later = answers.split_off(at + 1);
        let Some(Answer::Reply(reply)) = answers.pop() else {
            return Outcome::NoResponse;
        };
        Self::send(ctx, answers);
        if later.iter().all(|a| matches!(a, Answer::Close)) {
            // Nothing to send after the reply: the connection closes once it is written.
            Self::send(ctx, later);
        } else {
            self.after_reply = later;
            ctx.wake_at(ctx.now());
        }
        reply
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        Self::send(ctx, std::mem::take(&mut self.after_reply));
    }
}

impl Script {
    /// Sends recorded events, and closes where the recording ended.
    fn send(ctx: &mut Context<'_>, answers: Vec<Answer>) {
        for answer in answers {
            match answer {
                Answer::Event { name, data } => match data {
                    Some(d) => ctx.emit_event_json(&name, &d),
                    None => ctx.emit_event(&name, None),
                },
                Answer::Reply(_) => {}
                Answer::Close => ctx.close(),
            }
        }
    }
}
