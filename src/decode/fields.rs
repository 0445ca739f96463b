//! serde visitors for the event's fields. Each accepts every JSON type and says which kind it
//! saw, instead of failing: a wrong type is a reason to report ("wrong type of `sender`"), and
//! the rest of the object must still be consumed so the parser stays in step. Strings are
//! borrowed from the input unless they contain escapes.

use super::reason::Field;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Drains a sequence or map the visitor does not want, so deserialization can continue.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods for the JSON types a field does not accept: each returns
/// `$wrong` (after consuming the value), and `null` returns the field's default (absent).
macro_rules! refuse {
    ($wrong:expr; $($kind:ident),*) => {
        $(refuse!(@ $kind, $wrong);)*
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
    };
    (@ bool, $w:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($w) }
    };
    (@ i64, $w:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($w) }
    };
    (@ u64, $w:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($w) }
    };
    (@ f64, $w:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($w) }
    };
    (@ str, $w:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($w) }
    };
    (@ seq, $w:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($w)
        }
    };
    (@ map, $w:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok($w)
        }
    };
}

/// A string field: absent/null, a string, or the wrong type.
#[derive(Debug, Default, PartialEq)]
pub enum StrField<'de> {
    /// Absent or `null`.
    #[default]
    Absent,
    /// A string.
    Str(Cow<'de, str>),
    /// Any other JSON type.
    Wrong,
}

impl<'de> Deserialize<'de> for StrField<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrField::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrField::Str(Cow::Owned(v.to_string())))
            }
            refuse!(StrField::Wrong; bool, i64, u64, f64, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// The timestamp: absent/null, epoch milliseconds, a string, or the wrong type.
#[derive(Debug, Default, PartialEq)]
pub enum TimestampField<'de> {
    /// Absent or `null`.
    #[default]
    Absent,
    /// An integer (epoch milliseconds), possibly negative.
    Millis(i128),
    /// A string, to be parsed as RFC 3339.
    Str(Cow<'de, str>),
    /// Any other JSON type (a float, a bool, ...).
    Wrong,
}

impl<'de> Deserialize<'de> for TimestampField<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimestampField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TimestampField::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TimestampField::Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TimestampField::Millis(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TimestampField::Millis(i128::from(v)))
            }
            refuse!(TimestampField::Wrong; bool, f64, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// `recipient_count`: absent/null, a count, negative, or the wrong type.
#[derive(Debug, Default, PartialEq)]
pub enum CountField {
    /// Absent or `null`.
    #[default]
    Absent,
    /// A non-negative integer.
    Count(u64),
    /// A negative integer.
    Negative,
    /// Any other JSON type (floats included: a count is whole).
    Wrong,
}

impl<'de> Deserialize<'de> for CountField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(CountField::Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(CountField::Negative, CountField::Count))
            }
            /// A float is the wrong type (`3000.0`, `1e3`: a count is written whole), but for
            /// negative zero: `-0` is an integer by JSON's grammar, which serde reads as -0.0.
            /// Every number that reads as -0.0 goes with it (`-0.0`, `-0e5`, a negative too
            /// small for a float): serde cannot tell them apart, and each is zero.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(if v == 0.0 && v.is_sign_negative() {
                    CountField::Count(0)
                } else {
                    CountField::Wrong
                })
            }
            refuse!(CountField::Wrong; bool, str, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// `recipients`: absent/null, an array of strings (only its length is kept), or the wrong type
/// (not an array, or an element that is not a string).
#[derive(Debug, Default, PartialEq)]
pub enum RecipientsField {
    /// Absent or `null`.
    #[default]
    Absent,
    /// The number of entries.
    Len(u64),
    /// Not an array of strings.
    Wrong,
}

/// Accepts any JSON value and tells whether it was a string, without keeping it.
#[derive(Default)]
struct IsString(bool);

impl<'de> Deserialize<'de> for IsString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IsString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(IsString(true))
            }
            refuse!(IsString(false); bool, i64, u64, f64, seq, map);
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RecipientsField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RecipientsField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut len = 0u64;
                let mut all_strings = true;
                while let Some(IsString(is_string)) = seq.next_element()? {
                    all_strings &= is_string;
                    len += 1;
                }
                Ok(if all_strings {
                    RecipientsField::Len(len)
                } else {
                    RecipientsField::Wrong
                })
            }
            refuse!(RecipientsField::Wrong; bool, i64, u64, f64, str, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// `references`: absent/null, its entries (an array of strings or one whitespace-separated
/// string; only the first non-empty normalized entry, the root, is kept), or the wrong type.
#[derive(Debug, Default, PartialEq)]
pub enum ReferencesField<'de> {
    /// Absent or `null`.
    #[default]
    Absent,
    /// The raw root entry (not yet normalized), if any entry was non-empty.
    Root(Option<Cow<'de, str>>),
    /// Not a string or array of strings.
    Wrong,
}

/// The first whitespace-separated token of a References string whose normalized form is not
/// empty.
pub(super) fn first_reference(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find(|token| !crate::event::normalize_message_id(token).is_empty())
}

impl<'de> Deserialize<'de> for ReferencesField<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ReferencesField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ReferencesField::Root(first_reference(v).map(Cow::Borrowed)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ReferencesField::Root(
                    first_reference(v).map(|s| Cow::Owned(s.to_string())),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut root = None;
                let mut all_strings = true;
                while let Some(entry) = seq.next_element::<StrField<'de>>()? {
                    match entry {
                        StrField::Str(s) => {
                            if root.is_none() && !crate::event::normalize_message_id(&s).is_empty()
                            {
                                root = Some(s);
                            }
                        }
                        StrField::Absent | StrField::Wrong => all_strings = false,
                    }
                }
                Ok(if all_strings {
                    ReferencesField::Root(root)
                } else {
                    ReferencesField::Wrong
                })
            }
            refuse!(ReferencesField::Wrong; bool, i64, u64, f64, map);
        }
        deserializer.deserialize_any(V)
    }
}

/// A key of the event object: one of the schema's fields, or `None` for anything else (ignored,
/// as the contract says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(pub Option<Field>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                // A match on the literal names: this runs for every key of every event.
                Ok(Key(match v {
                    "timestamp" => Some(Field::Timestamp),
                    "message_id" => Some(Field::MessageId),
                    "sender" => Some(Field::Sender),
                    "recipient_count" => Some(Field::RecipientCount),
                    "recipients" => Some(Field::Recipients),
                    "thread_id" => Some(Field::ThreadId),
                    "in_reply_to" => Some(Field::InReplyTo),
                    "references" => Some(Field::References),
                    "subject" => Some(Field::Subject),
                    _ => None,
                }))
            }
        }
        deserializer.deserialize_str(V)
    }
}
