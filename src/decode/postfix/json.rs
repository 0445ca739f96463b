//! Log lines wrapped in a shipper's JSON. Vector's file source and Fluent Bit put the whole line
//! in one field (`message`, `log`); rsyslog's JSON templates and Vector's syslog source split
//! it into structured fields (`timestamp`, `host`, `syslogtag` or `appname`, `msg`). The
//! configured `line_field` is tried first as a whole syslog line; if it is not one, the
//! structured fields are used with it (or `msg`/`message`) as the message text.

use super::super::fields::StrField;
use super::super::Malformed;
use crate::timefmt::parse_rfc3339_millis;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Keys read for the structured form, each list in order of preference. The program comes
/// from the full tag (`postfix/qmgr[123]:`) where the shipper has one: rsyslog's
/// `programname` stops at the `/` by default, and then the daemon cannot be told.
const TIMESTAMP_KEYS: [&str; 4] = ["timestamp", "@timestamp", "timereported", "time"];
const HOST_KEYS: [&str; 3] = ["host", "hostname", "source_host"];
const PROGRAM_KEYS: [&str; 7] = [
    "syslogtag",
    "appname",
    "app_name",
    "SYSLOG_IDENTIFIER",
    "ident",
    "program",
    "programname",
];
const MESSAGE_KEYS: [&str; 3] = ["msg", "message", "MESSAGE"];

/// What a wrapper object holds, the strings owned (a record is small; escapes need copies).
#[derive(Debug, Default)]
pub struct Wrapped {
    /// The configured line field.
    pub line: Option<String>,
    /// The structured timestamp, epoch milliseconds, when it parses.
    pub timestamp: Option<i64>,
    /// The structured host.
    pub host: Option<String>,
    /// The structured program (tag), without `[pid]` and `:`.
    pub program: Option<String>,
    /// The structured message text, when the line field is absent.
    pub message: Option<String>,
}

/// Reads a wrapper object, keeping the configured field and the structured ones.
pub fn read_wrapper(text: &str, line_field: &str) -> Result<Wrapped, Malformed> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let wrapped = deserializer
        .deserialize_map(WrapperVisitor { line_field })
        .map_err(|_| Malformed::NotJson)?;
    deserializer.end().map_err(|_| Malformed::NotJson)?;
    Ok(wrapped)
}

struct WrapperVisitor<'f> {
    line_field: &'f str,
}

/// Keeps the value of the most preferred key seen so far.
fn keep(slot: &mut Option<(usize, String)>, rank: usize, value: StrField<'_>) {
    if let StrField::Str(s) = value {
        if slot.as_ref().is_none_or(|(r, _)| rank < *r) {
            *slot = Some((rank, s.into_owned()));
        }
    }
}

impl<'de> Visitor<'de> for WrapperVisitor<'_> {
    type Value = Wrapped;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wrapped, A::Error> {
        let mut line = None;
        let (mut timestamp, mut host, mut program, mut message) = (None, None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let key = key.as_ref();
            if key == self.line_field {
                if let StrField::Str(s) = map.next_value::<StrField<'de>>()? {
                    line = Some(s.into_owned());
                }
            } else if let Some(rank) = TIMESTAMP_KEYS.iter().position(|k| *k == key) {
                keep(&mut timestamp, rank, map.next_value()?);
            } else if let Some(rank) = HOST_KEYS.iter().position(|k| *k == key) {
                keep(&mut host, rank, map.next_value()?);
            } else if let Some(rank) = PROGRAM_KEYS.iter().position(|k| *k == key) {
                keep(&mut program, rank, map.next_value()?);
            } else if let Some(rank) = MESSAGE_KEYS.iter().position(|k| *k == key) {
                keep(&mut message, rank, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Wrapped {
            line,
            timestamp: timestamp.and_then(|(_, t)| parse_rfc3339_millis(&t)),
            host: host.map(|(_, h)| h),
            program: program.map(|(_, p)| tag_program(&p).to_string()),
            message: message.map(|(_, m)| m),
        })
    }
}

/// `postfix/qmgr[123]:` -> `postfix/qmgr`.
fn tag_program(tag: &str) -> &str {
    let tag = tag.trim().trim_end_matches(':');
    match tag.find('[') {
        Some(at) => tag.get(..at).unwrap_or(tag),
        None => tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_line_field_and_structured_fields() {
        let w = read_wrapper(
            r#"{"message": "Nov 25 10:00:00 m postfix/qmgr[1]: x", "host": {"name": "m"}, "extra": [1, {"a": 2}]}"#,
            "message",
        )
        .unwrap();
        assert_eq!(
            w.line.as_deref(),
            Some("Nov 25 10:00:00 m postfix/qmgr[1]: x")
        );
        assert_eq!(w.host, None);
        let w = read_wrapper(
            r#"{"timestamp": "2026-11-25T10:00:00Z", "hostname": "m", "programname": "postfix", "syslogtag": "postfix/qmgr[12]:", "msg": "4F: removed"}"#,
            "msg",
        )
        .unwrap();
        assert_eq!(w.line.as_deref(), Some("4F: removed"));
        assert_eq!(w.program.as_deref(), Some("postfix/qmgr"));
        assert_eq!(w.host.as_deref(), Some("m"));
        assert_eq!(w.timestamp, Some(1_795_600_800_000));
    }

    #[test]
    fn refuses_non_objects_and_broken_json() {
        for text in ["[1]", "\"x\"", "{\"message\": ", "{} trailing"] {
            assert_eq!(
                read_wrapper(text, "message").err(),
                Some(Malformed::NotJson),
                "{text}"
            );
        }
    }
}
