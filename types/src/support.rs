//! What the generated code shares: the serde impls of enums, argument-less commands,
//! boxed arguments and data, the visitor and helpers of the structs' generated serde impls,
//! and the union helpers. Small, and generic only where serde needs it, so that the generated code
//! stays quick to compile.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
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

/// Deserialize for an event without data: an object, whatever its members.
macro_rules! no_data {
    ($name:ident) => {
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                crate::support::de_struct::<D, crate::support::NoMembers>(d).map(|_| Self {})
            }
        }
    };
}
pub(crate) use no_data;

/// A value as JSON.
pub(crate) fn to_value<T: Serialize>(t: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(t)
}

/// The discriminator's value in a union's object: empty when it is missing (an older QEMU,
/// whose type was not a union yet, sends none: the union's `Other` case then holds the
/// object); an error when it is not a string.
pub(crate) fn tag<'v>(v: &'v Value, name: &str) -> Result<&'v str, serde_json::Error> {
    match v.get(name) {
        None => Ok(""),
        Some(tag) => tag.as_str().ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom(format_args!(
                "non-string discriminator `{name}`"
            ))
        }),
    }
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

/// Deserialize for a struct, written by the generator as one `from_map`: each member found
/// by a `match` on its name, members this crate does not know skipped, a member given twice
/// or a required one missing an error. Shared here: the visitor, the key, the helpers.
pub(crate) trait FromMap<'de>: Sized {
    /// The type's name, for error messages.
    const NAME: &'static str;
    /// The value from a JSON object's members.
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

struct StructVisitor<T>(PhantomData<T>);

impl<'de, T: FromMap<'de>> Visitor<'de> for StructVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "struct {}", T::NAME)
    }
    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

/// `Deserialize::deserialize` of a struct: an object, read by `T::from_map`.
#[inline]
pub(crate) fn de_struct<'de, D: Deserializer<'de>, T: FromMap<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(StructVisitor(PhantomData))
}

/// A member's name: borrowed from the input when it can be.
pub(crate) struct Key<'de>(Cow<'de, str>);

impl Key<'_> {
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }
    #[inline]
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    #[inline]
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
    #[inline]
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

/// The next member's name, `None` at the end of the object.
#[inline]
pub(crate) fn key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Key<'de>>, A::Error> {
    map.next_key()
}

/// Reads the member `name`'s value into `slot` (an error if it was already given).
#[inline]
pub(crate) fn set<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Skips the value of a member this crate does not know.
#[inline]
pub(crate) fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

/// A required member's value, or the error that it is missing.
#[inline]
pub(crate) fn req<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    match slot {
        Some(v) => Ok(v),
        None => Err(E::missing_field(name)),
    }
}

/// Serialize for a struct, written by the generator as a map: `ser_map`, an `entry` per
/// required member, an `opt_entry` per optional one (left out when unset), `end`.
#[inline]
pub(crate) fn ser_map<S: Serializer>(s: S) -> Result<S::SerializeMap, S::Error> {
    s.serialize_map(None)
}

/// A required member.
#[inline]
pub(crate) fn entry<M: SerializeMap, T: Serialize + ?Sized>(
    m: &mut M,
    name: &'static str,
    value: &T,
) -> Result<(), M::Error> {
    m.serialize_entry(name, value)
}

/// An optional member: nothing when it is unset.
#[inline]
pub(crate) fn opt_entry<M: SerializeMap, T: Serialize>(
    m: &mut M,
    name: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => m.serialize_entry(name, v),
        None => Ok(()),
    }
}

/// The members of a free-form command's arguments beyond its schema's.
#[inline]
pub(crate) fn extra_entries<M: SerializeMap>(
    m: &mut M,
    properties: &serde_json::Map<String, Value>,
) -> Result<(), M::Error> {
    for (name, value) in properties {
        m.serialize_entry(name, value)?;
    }
    Ok(())
}

/// Ends a serialised map.
#[inline]
pub(crate) fn end<M: SerializeMap>(m: M) -> Result<M::Ok, M::Error> {
    m.end()
}

/// Skips every member of an object.
#[inline]
pub(crate) fn skip_all<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An object whose members are all ignored (the data of an event that has none).
pub(crate) struct NoMembers;

impl<'de> FromMap<'de> for NoMembers {
    const NAME: &'static str = "with no members";
    #[inline]
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        skip_all(map).map(|()| NoMembers)
    }
}

/// The error for the first required member that is missing (`(missing, name)` pairs).
#[inline]
pub(crate) fn missing<E: de::Error>(members: &[(bool, &'static str)]) -> E {
    let name = members.iter().find(|m| m.0).map_or("", |m| m.1);
    E::missing_field(name)
}
