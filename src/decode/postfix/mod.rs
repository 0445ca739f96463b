//! Postfix mail logs: the stateless parse of one record into a [`PostfixLine`] (or why it is
//! ignored or malformed), and the [`PostfixCorrelator`] that joins a message's lines by host
//! and queue id into one contract event.
//!
//! A message's facts are spread over several lines: cleanup logs its `message-id=` and, with
//! the header_checks INFO rules of `deploy/postfix/`, its Subject, In-Reply-To and References;
//! qmgr logs the envelope sender and `nrcpt`, the recipient count after virtual alias
//! expansion. Everything else a mail log holds (smtpd, smtp, local, other programs) is ignored
//! and counted as such: it is most of the log, and not a fault.

mod correlate;
mod json;
mod line;

pub use correlate::{PostfixCorrelator, PostfixSettings};
pub use line::HeaderName;

use super::outcome::Ignored;
use super::syslog::{parse_syslog, SyslogClock, SyslogLine};
use super::{DecodeOptions, Malformed, MAX_HOST_BYTES};
use crate::timefmt::Millis;
use line::{cleanup_line, daemon_of, qmgr_line, split_queue_id, LineKind};
use std::borrow::Cow;

/// How Postfix records are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixOptions {
    /// For records that are JSON objects: the field holding the log line.
    pub line_field: String,
    /// The offset of syslog timestamps that carry none, milliseconds east of UTC.
    pub utc_offset: Millis,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        Self {
            line_field: "message".into(),
            utc_offset: 0,
        }
    }
}

/// One Postfix line stormwatch reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixLine<'a> {
    /// When it was logged, epoch milliseconds.
    pub timestamp: Millis,
    /// The logging host (empty when the framing has none).
    pub host: Cow<'a, str>,
    /// The queue id.
    pub queue_id: Cow<'a, str>,
    /// What it says.
    pub kind: PostfixKind<'a>,
}

/// What a Postfix line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostfixKind<'a> {
    /// cleanup `message-id=<id>` (the value as logged).
    MessageId(Cow<'a, str>),
    /// A header_checks line: the header and its value as logged (cut at 200 bytes by Postfix).
    Header(HeaderName, Cow<'a, str>),
    /// qmgr `from=<sender>, size=..., nrcpt=N (queue active)`.
    Queued {
        /// The envelope sender.
        sender: Cow<'a, str>,
        /// Recipients after virtual alias expansion.
        nrcpt: u64,
    },
    /// qmgr `removed`.
    Removed,
    /// cleanup `reject:`/`discard:`/`milter-reject:`.
    Rejected,
}

impl PostfixLine<'_> {
    /// A copy owning its strings, for buffering beyond the input's life.
    pub fn into_owned(self) -> PostfixLine<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        PostfixLine {
            timestamp: self.timestamp,
            host: own(self.host),
            queue_id: own(self.queue_id),
            kind: match self.kind {
                PostfixKind::MessageId(id) => PostfixKind::MessageId(own(id)),
                PostfixKind::Header(name, value) => PostfixKind::Header(name, own(value)),
                PostfixKind::Queued { sender, nrcpt } => PostfixKind::Queued {
                    sender: own(sender),
                    nrcpt,
                },
                PostfixKind::Removed => PostfixKind::Removed,
                PostfixKind::Rejected => PostfixKind::Rejected,
            },
        }
    }
}

/// A parsed record: a line to correlate, or why it is ignored.
pub type PostfixRecord<'a> = Result<PostfixLine<'a>, Ignored>;

/// Parses one Postfix record: a raw syslog line in any framing of [`super::syslog`], or a
/// shipper's JSON object around one. Never panics; a line without a syslog header is
/// malformed, a well-formed line stormwatch does not use is `Ok(Err(Ignored))`.
pub fn parse_postfix<'a>(
    bytes: &'a [u8],
    postfix: &PostfixOptions,
    options: &DecodeOptions,
) -> Result<PostfixRecord<'a>, Malformed> {
    if bytes.len() > options.max_record_bytes {
        return Err(Malformed::TooLarge);
    }
    let text = crate::decode::utf8_text(bytes)?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err(Malformed::Empty);
    }
    let clock = SyslogClock {
        reference: options.now,
        utc_offset: postfix.utc_offset,
    };
    let record = if text.trim_start().starts_with('{') {
        parse_wrapped(text, postfix, &clock)?
    } else {
        classify(parse_syslog(text, &clock)?)?
    };
    if let Ok(line) = &record {
        if line.timestamp.saturating_sub(options.now) > options.max_future_skew {
            return Err(Malformed::FutureTimestamp);
        }
    }
    Ok(record)
}

/// The JSON-wrapped forms; the result owns its strings.
fn parse_wrapped(
    text: &str,
    postfix: &PostfixOptions,
    clock: &SyslogClock,
) -> Result<PostfixRecord<'static>, Malformed> {
    let wrapped = json::read_wrapper(text, &postfix.line_field)?;
    if let Some(line) = &wrapped.line {
        if let Ok(syslog) = parse_syslog(line, clock) {
            return classify(syslog).map(|r| r.map(PostfixLine::into_owned));
        }
    }
    let message = wrapped.line.as_deref().or(wrapped.message.as_deref());
    match (wrapped.timestamp, wrapped.program.as_deref(), message) {
        (Some(timestamp), Some(program), Some(message)) => classify(SyslogLine {
            timestamp,
            host: wrapped.host.as_deref().unwrap_or_default(),
            program,
            // rsyslog's `msg` keeps the space after the tag.
            message: message.trim_start(),
        })
        .map(|r| r.map(PostfixLine::into_owned)),
        (_, _, Some(_)) => Err(Malformed::NoSyslogHeader),
        (_, _, None) => Err(Malformed::MissingLineField),
    }
}

/// Which Postfix line a syslog line is.
fn classify(syslog: SyslogLine<'_>) -> Result<PostfixRecord<'_>, Malformed> {
    let daemon = match daemon_of(syslog.program) {
        Ok(daemon) => daemon,
        Err(ignored) => return Ok(Err(ignored)),
    };
    let parse = match daemon {
        "cleanup" => cleanup_line,
        "qmgr" => qmgr_line,
        _ => return Ok(Err(Ignored::OtherDaemon)),
    };
    let Some((queue_id, rest)) = split_queue_id(syslog.message) else {
        return Ok(Err(Ignored::OtherLine));
    };
    let kind = match parse(rest) {
        Ok(kind) => kind,
        Err(error) => return error.into_result(),
    };
    // Only a line that is used is keyed by its host.
    if syslog.host.len() > MAX_HOST_BYTES {
        return Err(Malformed::HostTooLong);
    }
    Ok(Ok(PostfixLine {
        timestamp: syslog.timestamp,
        host: Cow::Borrowed(syslog.host),
        queue_id: Cow::Borrowed(queue_id),
        kind: match kind {
            LineKind::MessageId(id) => PostfixKind::MessageId(Cow::Borrowed(id)),
            LineKind::Header(name, value) => PostfixKind::Header(name, Cow::Borrowed(value)),
            LineKind::Queued { sender, nrcpt } => PostfixKind::Queued {
                sender: Cow::Borrowed(sender),
                nrcpt,
            },
            LineKind::Removed => PostfixKind::Removed,
            LineKind::Rejected => PostfixKind::Rejected,
        },
    }))
}

#[cfg(test)]
mod tests;
