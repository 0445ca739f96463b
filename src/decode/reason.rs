//! Why a record is malformed. A malformed record is normal execution (mail logs carry garbage),
//! so the reason is a small `Copy` enum, never a boxed error or an allocated message: counting it
//! costs nothing and its label set is bounded, which a Prometheus label must be.

use std::fmt;

/// The longest host name a mail-log line may carry: RFC 5424's HOSTNAME (255 characters).
pub const MAX_HOST_BYTES: usize = 255;

/// A field of the event schema, for naming the field a reason is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `timestamp`
    Timestamp,
    /// `message_id`
    MessageId,
    /// `sender`
    Sender,
    /// `recipient_count` (or `recipients` in its place)
    RecipientCount,
    /// `recipients`
    Recipients,
    /// `thread_id`
    ThreadId,
    /// `in_reply_to`
    InReplyTo,
    /// `references`
    References,
    /// `subject`
    Subject,
}

impl Field {
    /// Every field, in schema order.
    pub const ALL: [Field; 9] = [
        Field::Timestamp,
        Field::MessageId,
        Field::Sender,
        Field::RecipientCount,
        Field::Recipients,
        Field::ThreadId,
        Field::InReplyTo,
        Field::References,
        Field::Subject,
    ];

    /// The field's name in the JSON schema.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::MessageId => "message_id",
            Field::Sender => "sender",
            Field::RecipientCount => "recipient_count",
            Field::Recipients => "recipients",
            Field::ThreadId => "thread_id",
            Field::InReplyTo => "in_reply_to",
            Field::References => "references",
            Field::Subject => "subject",
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// The record is empty or only whitespace.
    Empty,
    /// The record is longer than the configured maximum; it was not parsed.
    TooLarge,
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// The bytes are not JSON (or JSON nested too deeply).
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field is absent (or `null`).
    MissingField(Field),
    /// A field has the wrong JSON type.
    WrongType(Field),
    /// An id or address longer than [`crate::event::MAX_ID_BYTES`]: no RFC 5322 header line
    /// can carry one, and the engine keeps these texts in maps of millions of entries.
    TooLong(Field),
    /// A mail-log line whose host name is longer than [`MAX_HOST_BYTES`] (RFC 5424's limit):
    /// the host is part of the key a message's lines are joined by, kept while it waits.
    HostTooLong,
    /// `recipient_count` is negative.
    NegativeCount,
    /// The timestamp cannot be parsed, has no offset, or is a negative epoch.
    BadTimestamp,
    /// The timestamp is further ahead of the wall clock than `max_future_skew`.
    FutureTimestamp,
    /// A mail-log line without a recognisable syslog header (timestamp, host, program).
    NoSyslogHeader,
    /// A JSON-wrapped log line whose configured line field is absent or not a string, and
    /// which has no structured syslog fields to fall back on.
    MissingLineField,
    /// A Postfix line of a kind stormwatch reads (`message-id=`, `from=... nrcpt=`, `header`)
    /// whose fields do not parse.
    BadPostfixLine,
    /// An Exchange message-tracking row before any `#Fields:` header line, with no
    /// `input.exchange.fields` configured: its columns cannot be named.
    NoFieldsHeader,
    /// An Exchange message-tracking row that is not valid CSV (an unclosed quote).
    BadCsv,
    /// An Exchange message-tracking row without a usable `date-time` or `event-id`, or with a
    /// `recipient-count` that is not a number.
    BadExchangeRow,
}

impl Malformed {
    /// A stable snake_case label for metrics, DLQ headers and summaries.
    pub const fn label(self) -> &'static str {
        match self {
            Malformed::Empty => "empty",
            Malformed::TooLarge => "too_large",
            Malformed::InvalidUtf8 => "invalid_utf8",
            Malformed::NotJson => "not_json",
            Malformed::NotObject => "not_object",
            Malformed::MissingField(f) => match f {
                Field::Timestamp => "missing_timestamp",
                Field::MessageId => "missing_message_id",
                Field::Sender => "missing_sender",
                Field::RecipientCount | Field::Recipients => "missing_recipient_count",
                Field::ThreadId => "missing_thread_id",
                Field::InReplyTo => "missing_in_reply_to",
                Field::References => "missing_references",
                Field::Subject => "missing_subject",
            },
            Malformed::WrongType(f) => match f {
                Field::Timestamp => "wrong_type_timestamp",
                Field::MessageId => "wrong_type_message_id",
                Field::Sender => "wrong_type_sender",
                Field::RecipientCount => "wrong_type_recipient_count",
                Field::Recipients => "wrong_type_recipients",
                Field::ThreadId => "wrong_type_thread_id",
                Field::InReplyTo => "wrong_type_in_reply_to",
                Field::References => "wrong_type_references",
                Field::Subject => "wrong_type_subject",
            },
            Malformed::TooLong(f) => match f {
                Field::MessageId => "too_long_message_id",
                Field::Sender => "too_long_sender",
                Field::ThreadId => "too_long_thread_id",
                Field::InReplyTo => "too_long_in_reply_to",
                Field::References => "too_long_references",
                // Only the fields above are length-checked; one label covers any other.
                Field::Timestamp | Field::RecipientCount | Field::Recipients | Field::Subject => {
                    "too_long_field"
                }
            },
            Malformed::HostTooLong => "too_long_host",
            Malformed::NegativeCount => "negative_count",
            Malformed::BadTimestamp => "bad_timestamp",
            Malformed::FutureTimestamp => "future_timestamp",
            Malformed::NoSyslogHeader => "no_syslog_header",
            Malformed::MissingLineField => "missing_line_field",
            Malformed::BadPostfixLine => "bad_postfix_line",
            Malformed::NoFieldsHeader => "no_fields_header",
            Malformed::BadCsv => "bad_csv",
            Malformed::BadExchangeRow => "bad_exchange_row",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Empty => f.write_str("empty record"),
            Malformed::TooLarge => f.write_str("record larger than the maximum size"),
            Malformed::InvalidUtf8 => f.write_str("not valid UTF-8"),
            Malformed::NotJson => f.write_str("not JSON"),
            Malformed::NotObject => f.write_str("JSON but not an object"),
            Malformed::MissingField(Field::RecipientCount) => {
                f.write_str("missing field `recipient_count` (and no `recipients`)")
            }
            Malformed::MissingField(field) => write!(f, "missing field `{}`", field.name()),
            Malformed::WrongType(field) => write!(f, "wrong type of field `{}`", field.name()),
            Malformed::TooLong(field) => write!(
                f,
                "field `{}` longer than {} bytes",
                field.name(),
                crate::event::MAX_ID_BYTES
            ),
            Malformed::HostTooLong => {
                write!(f, "host name longer than {MAX_HOST_BYTES} bytes")
            }
            Malformed::NegativeCount => f.write_str("negative `recipient_count`"),
            Malformed::BadTimestamp => f.write_str("unparseable `timestamp`"),
            Malformed::FutureTimestamp => f.write_str("`timestamp` too far in the future"),
            Malformed::NoSyslogHeader => f.write_str("no syslog header (timestamp, host, program)"),
            Malformed::MissingLineField => {
                f.write_str("JSON without the configured line field (`input.postfix.line_field`)")
            }
            Malformed::BadPostfixLine => {
                f.write_str("a Postfix cleanup/qmgr line that does not parse")
            }
            Malformed::NoFieldsHeader => f.write_str(
                "Exchange tracking row before any `#Fields:` line (set `input.exchange.fields`)",
            ),
            Malformed::BadCsv => f.write_str("not valid CSV (unclosed quote)"),
            Malformed::BadExchangeRow => {
                f.write_str("Exchange tracking row without a valid date-time, event-id or count")
            }
        }
    }
}

impl std::error::Error for Malformed {}
