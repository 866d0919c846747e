//! What the server sends: the greeting, replies and events.
//!
//! Routing decodes a borrowed [`Envelope`] whose members are raw JSON slices of the frame, so
//! no `serde_json::Value` tree is built for a reply; the payload is copied once into a
//! `Box<RawValue>` for the application, whose typed `Deserialize` then runs straight from
//! those bytes.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Deserialises a member as raw JSON, keeping `null` (which `Option` would turn into
/// `None`): `"id": null` is a real id, distinct from no id.
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The members of a server message that routing looks at, borrowed from the frame. Other
/// members are ignored (forward compatibility).
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "QMP", borrow, default, deserialize_with = "some_raw")]
    pub(crate) qmp: Option<&'a RawValue>,
    #[serde(rename = "return", borrow, default, deserialize_with = "some_raw")]
    pub(crate) ret: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) error: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) event: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) timestamp: Option<&'a RawValue>,
}

/// The body of an error reply.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) class: String,
    pub(crate) desc: String,
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Micro version.
    pub micro: u64,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The server's greeting:
/// `{"QMP": {"version": {"qemu": {"major", "minor", "micro"}, "package"}, "capabilities": [...]}}`.
///
/// Validated strictly: the version numbers must be non-negative integers, `package` a
/// string and `capabilities` an array of strings. Unknown capabilities and extra members are
/// accepted.
///
/// The `Default` greeting (version 0.0.0, empty package, no capabilities) stands for a peer
/// that sends none: the adapters report it for a guest agent session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Greeting {
    /// QEMU's version.
    pub version: QemuVersion,
    /// The package string (distribution build information; often empty).
    pub package: String,
    /// The capabilities offered, such as `"oob"`.
    pub capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: GreetingVersion,
    capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
    package: String,
}

impl Greeting {
    /// Parses the value of the `QMP` member.
    pub(crate) fn from_body(body: &RawValue) -> Result<Greeting, String> {
        let body: GreetingBody = serde_json::from_str(body.get()).map_err(|e| e.to_string())?;
        Ok(Greeting {
            version: body.version.qemu,
            package: body.version.package,
            capabilities: body.capabilities,
        })
    }

    /// Whether the server offers a capability.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }
}

/// The time at which QEMU emitted an event, from the host clock. Both members are `-1` when
/// QEMU could not read its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// An asynchronous QMP event: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// The event name, such as `STOP` or `JOB_STATUS_CHANGE`.
    pub name: String,
    /// The `data` member as raw JSON, if present. Decode it with
    /// [`data_as`](Self::data_as) or `serde_json::from_str(data.get())`.
    pub data: Option<Box<RawValue>>,
    /// The timestamp, or `None` if it was missing or malformed.
    pub timestamp: Option<Timestamp>,
}

impl QmpEvent {
    /// Decodes `data` into `T`; a missing `data` decodes as `{}`.
    pub fn data_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.as_deref().map_or("{}", RawValue::get))
    }
}

impl PartialEq for QmpEvent {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.data.as_deref().map(RawValue::get) == other.data.as_deref().map(RawValue::get)
            && self.timestamp == other.timestamp
    }
}
