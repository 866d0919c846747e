//! What the generated code shares: the serde impls of enums, argument-less commands,
//! boxed arguments and data, and the union helpers. Small and not generic over the types,
//! so that the generated code stays quick to compile.

use serde::Serialize;
use serde_json::{Map, Value};

/// Serialize and Deserialize for a QAPI enum: a string, unknown values kept in `Other`.
macro_rules! qapi_enum {
    ($name:ident { $($var:ident = $s:literal,)* }) => {
        impl $name {
            /// The value as QEMU spells it.
            #[inline]
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$var => $s,)*
                    Self::Other(s) => s,
                }
            }
            /// The value QEMU spells `s` (`Other` when this crate does not know it).
            #[inline]
            pub fn from_name(s: &str) -> Self {
                match s {
                    $($s => Self::$var,)*
                    _ => Self::Other(s.into()),
                }
            }
        }
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                ::std::result::Result::Ok(Self::from_name(&s))
            }
        }
        impl ::std::fmt::Display for $name {
            #[inline]
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use qapi_enum;

/// Debug for a struct, `#[inline]` so that it is compiled only where it is used.
macro_rules! debug_struct {
    ($name:ident { $($f:ident),* }) => {
        impl ::std::fmt::Debug for $name {
            #[inline]
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($f), &self.$f))*
                    .finish()
            }
        }
    };
}
pub(crate) use debug_struct;

/// Serialize for a command without arguments: unit, so no `arguments` member is sent.
macro_rules! no_arguments {
    ($name:ident) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_unit()
            }
        }
    };
}
pub(crate) use no_arguments;

/// Serialize for a command whose arguments are a named type (its `args`).
macro_rules! boxed_arguments {
    ($name:ident) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&self.args, s)
            }
        }
    };
}
pub(crate) use boxed_arguments;

/// Deserialize for an event whose data is a named type (its `data`).
macro_rules! boxed_data {
    ($name:ident) => {
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                ::serde::Deserialize::deserialize(d).map(|data| Self { data })
            }
        }
    };
}
pub(crate) use boxed_data;

/// A value as JSON.
pub(crate) fn to_value<T: Serialize>(t: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(t)
}

/// The discriminator's value in a union's object.
pub(crate) fn tag<'v>(v: &'v Value, name: &str) -> Result<&'v str, serde_json::Error> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom(format_args!(
            "missing or non-string discriminator `{name}`"
        ))
    })
}

/// Serialises a union: its common members, the discriminator, the case's members.
pub(crate) fn ser_union<S: serde::Serializer>(
    s: S,
    base: Result<Value, serde_json::Error>,
    discriminator: &str,
    tag: &str,
    branch: Result<Value, serde_json::Error>,
) -> Result<S::Ok, S::Error> {
    let merged = merge(base, discriminator, tag, branch).map_err(serde::ser::Error::custom)?;
    merged.serialize(s)
}

fn merge(
    base: Result<Value, serde_json::Error>,
    discriminator: &str,
    tag: &str,
    branch: Result<Value, serde_json::Error>,
) -> Result<Map<String, Value>, serde_json::Error> {
    let mut out = match base? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Value::Object(m) = branch? {
        out.extend(m);
    }
    out.insert(discriminator.to_owned(), Value::String(tag.to_owned()));
    Ok(out)
}
