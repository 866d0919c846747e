//! Typed events: the [`TypedEvent`] trait, and the [`EventSet`]s that typed waits take.
//!
//! The event types themselves are generated from QEMU's QAPI schema in the `qmp-types`
//! crate (every event of QEMU 10.0.2, forward-compatible); any type of your own that
//! implements [`TypedEvent`] works the same. Decode one event with [`QmpEvent::decode`]:
//!
//! ```
//! use qmp_proto::events::TypedEvent;
//! # use qmp_proto::QmpEvent;
//!
//! #[derive(serde::Deserialize)]
//! struct DeviceDeleted {
//!     device: Option<String>,
//!     path: String,
//! }
//!
//! impl TypedEvent for DeviceDeleted {
//!     const NAME: &'static str = "DEVICE_DELETED";
//! }
//!
//! # fn handle(event: &QmpEvent) {
//! match event.decode::<DeviceDeleted>() {
//!     Some(Ok(deleted)) => println!("{} gone", deleted.path),
//!     // Another event's data, or one this type cannot decode: only this event is affected,
//!     // the raw JSON is in the error.
//!     Some(Err(e)) => println!("{e}: {}", e.raw()),
//!     None => {}
//! }
//! # }
//! ```
//!
//! A typed wait takes an [`EventSet`]: one [`TypedEvent`], or one of several
//! ([`OneOf`]), such as a block job's end, `OneOf<BlockJobCompleted, BlockJobError>`.

use serde::de::DeserializeOwned;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::DecodeTarget;
use crate::{DecodeError, QmpEvent};

/// The `data` of a QMP event as a Rust type.
pub trait TypedEvent: DeserializeOwned {
    /// The event name, such as `SHUTDOWN`.
    const NAME: &'static str;
}

impl QmpEvent {
    /// Decodes this event as `E`: `None` when it is another event, else `E` or the
    /// [`DecodeError`] (which carries the whole event). A missing `data` decodes as `{}`.
    pub fn decode<E: TypedEvent>(&self) -> Option<Result<E, DecodeError>> {
        (self.name == E::NAME).then(|| self.decode_data())
    }

    fn decode_data<E: DeserializeOwned>(&self) -> Result<E, DecodeError> {
        serde_json::from_str(self.data.as_deref().map_or("{}", RawValue::get)).map_err(|e| {
            let raw = self.to_raw();
            DecodeError::new(DecodeTarget::Event, &self.name, &raw, e)
        })
    }

    /// The event as JSON: `{"event": ..., "data": ..., "timestamp": ...}` (members that
    /// were missing are left out).
    fn to_raw(&self) -> Box<RawValue> {
        #[derive(Serialize)]
        struct Wire<'a> {
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            timestamp: Option<Stamp>,
        }
        #[derive(Serialize)]
        struct Stamp {
            seconds: i64,
            microseconds: i64,
        }
        let wire = Wire {
            event: &self.name,
            data: self.data.as_deref(),
            timestamp: self.timestamp.map(|t| Stamp {
                seconds: t.seconds,
                microseconds: t.microseconds,
            }),
        };
        // Serialising strings, integers and valid raw JSON cannot fail; keep `null` rather
        // than panic if it ever did.
        serde_json::value::to_raw_value(&wire).unwrap_or_default()
    }
}

/// The events a typed wait accepts, decoded: one [`TypedEvent`] (every one is an
/// `EventSet` of itself), or one of several with [`OneOf`] (nest it for more:
/// `OneOf<A, OneOf<B, C>>`).
pub trait EventSet: Sized {
    /// Whether an event of this name belongs to the set.
    fn has(name: &str) -> bool;
    /// Decodes `event`: `None` when it does not belong to the set, else the value or the
    /// [`DecodeError`] (which carries the whole event).
    fn decode_event(event: &QmpEvent) -> Option<Result<Self, DecodeError>>;
}

impl<E: TypedEvent> EventSet for E {
    fn has(name: &str) -> bool {
        name == E::NAME
    }

    fn decode_event(event: &QmpEvent) -> Option<Result<Self, DecodeError>> {
        event.decode::<E>()
    }
}

/// One of two kinds of event, for a wait that ends on either: a block job's
/// `OneOf<BlockJobCompleted, BlockJobError>`, say. Nest it for more kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOf<A, B> {
    /// The first kind.
    First(A),
    /// The second kind.
    Second(B),
}

impl<A: EventSet, B: EventSet> EventSet for OneOf<A, B> {
    fn has(name: &str) -> bool {
        A::has(name) || B::has(name)
    }

    fn decode_event(event: &QmpEvent) -> Option<Result<Self, DecodeError>> {
        if let Some(a) = A::decode_event(event) {
            return Some(a.map(OneOf::First));
        }
        B::decode_event(event).map(|b| b.map(OneOf::Second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Completed {
        device: String,
    }
    impl TypedEvent for Completed {
        const NAME: &'static str = "BLOCK_JOB_COMPLETED";
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Failed {
        action: String,
    }
    impl TypedEvent for Failed {
        const NAME: &'static str = "BLOCK_JOB_ERROR";
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Stop {}
    impl TypedEvent for Stop {
        const NAME: &'static str = "STOP";
    }

    fn event(name: &str, data: &str) -> QmpEvent {
        QmpEvent {
            name: name.to_owned(),
            data: Some(RawValue::from_string(data.to_owned()).expect("json")),
            timestamp: None,
        }
    }

    #[test]
    fn one_of_several_kinds() {
        type End = OneOf<Completed, OneOf<Failed, Stop>>;
        assert!(End::has("BLOCK_JOB_ERROR") && End::has("STOP") && !End::has("RESUME"));
        let done = End::decode_event(&event("BLOCK_JOB_COMPLETED", r#"{"device": "j"}"#));
        assert_eq!(
            done.map(Result::ok),
            Some(Some(OneOf::First(Completed { device: "j".into() })))
        );
        let failed = End::decode_event(&event("BLOCK_JOB_ERROR", r#"{"action": "stop"}"#));
        assert_eq!(
            failed.map(Result::ok),
            Some(Some(OneOf::Second(OneOf::First(Failed {
                action: "stop".into()
            }))))
        );
        assert!(End::decode_event(&event("RESUME", "{}")).is_none());
        // A member of the set whose data does not decode is an error for that event.
        let bad = End::decode_event(&event("BLOCK_JOB_ERROR", r#"{"action": 5}"#));
        assert!(matches!(bad, Some(Err(e)) if e.raw().get().contains("BLOCK_JOB_ERROR")));
    }
}
