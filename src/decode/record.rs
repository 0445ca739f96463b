//! One front for every input format, in the two phases the service needs.
//!
//! 1. [`RecordParser::parse`]: bytes to a [`Parsed`] record (an event, a mail-log line to
//!    correlate, or an ignored line) or a [`Malformed`] reason. Cheap, borrowing, and
//!    stateless except for the Exchange column layout, which a stream's header lines set (keep
//!    one parser per stream, such as per partition).
//! 2. [`Correlator::accept`]: parsed records in event-time order (the service merges
//!    partitions by [`Parsed::timestamp`] in between) to owned contract events, emitted when a
//!    message is complete; [`Correlator::expire`] completes or drops what is past its bound.
//!    Every record absorbed into a message still being assembled is remembered by the caller's
//!    token, so [`Correlator::oldest_pending_token`] says how far offsets may be committed.

use super::exchange::{ExchangeCorrelator, ExchangeParser, ExchangeRow, ExchangeSettings};
use super::outcome::{CorrelationStats, Ignored, LineOutcome};
use super::postfix::{
    parse_postfix, PostfixCorrelator, PostfixLine, PostfixOptions, PostfixSettings,
};
use super::syslog::parse_utc_offset;
use super::{decode_json, DecodeOptions, InputFormat, Malformed};
use crate::config::InputConfig;
use crate::event::Event;
use crate::timefmt::Millis;

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A contract event (the `json` format): complete by itself.
    Event(Event<'a>),
    /// A Postfix line to correlate.
    Postfix(PostfixLine<'a>),
    /// An Exchange RECEIVE or EXPAND row to correlate.
    Exchange(ExchangeRow<'a>),
    /// A well-formed line stormwatch does not use.
    Ignored(Ignored),
}

impl Parsed<'_> {
    /// The record's event time, for merging partitions; `None` for ignored lines, which
    /// carry no time worth waiting for.
    pub fn timestamp(&self) -> Option<Millis> {
        match self {
            Parsed::Event(e) => Some(e.timestamp),
            Parsed::Postfix(l) => Some(l.timestamp),
            Parsed::Exchange(r) => Some(r.timestamp),
            Parsed::Ignored(_) => None,
        }
    }

    /// A copy owning its strings, to buffer it beyond the input's life.
    pub fn into_owned(self) -> Parsed<'static> {
        match self {
            Parsed::Event(e) => Parsed::Event(e.into_owned()),
            Parsed::Postfix(l) => Parsed::Postfix(l.into_owned()),
            Parsed::Exchange(r) => Parsed::Exchange(r.into_owned()),
            Parsed::Ignored(i) => Parsed::Ignored(i),
        }
    }
}

/// Phase one: parses records of one format.
#[derive(Debug, Clone)]
pub struct RecordParser {
    format: InputFormat,
    postfix: PostfixOptions,
    exchange: ExchangeParser,
}

impl RecordParser {
    /// A parser for `format`, with the `input` section's settings.
    pub fn new(format: InputFormat, input: &InputConfig) -> Self {
        Self {
            format,
            postfix: PostfixOptions {
                line_field: input.postfix.line_field.clone(),
                // Validated with the configuration; UTC if it was bypassed.
                utc_offset: parse_utc_offset(&input.postfix.utc_offset).unwrap_or(0),
            },
            exchange: ExchangeParser::new(&input.exchange.fields),
        }
    }

    /// The format parsed.
    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// Parses one record. `options.now` is the wall clock: the future-timestamp check and
    /// the year of RFC 3164 syslog timestamps are read against it.
    pub fn parse<'a>(
        &mut self,
        bytes: &'a [u8],
        options: &DecodeOptions,
    ) -> Result<Parsed<'a>, Malformed> {
        match self.format {
            InputFormat::Json => decode_json(bytes, options).map(Parsed::Event),
            InputFormat::Postfix => Ok(match parse_postfix(bytes, &self.postfix, options)? {
                Ok(line) => Parsed::Postfix(line),
                Err(ignored) => Parsed::Ignored(ignored),
            }),
            InputFormat::ExchangeTracking => Ok(match self.exchange.parse(bytes, options)? {
                Ok(row) => Parsed::Exchange(row),
                Err(ignored) => Parsed::Ignored(ignored),
            }),
        }
    }
}

/// Phase two: assembles events from parsed records in event-time order.
pub enum Correlator<T> {
    /// JSON events pass straight through.
    Json,
    /// Postfix lines joined by host and queue id.
    Postfix(PostfixCorrelator<T>),
    /// Exchange rows joined by message.
    Exchange(ExchangeCorrelator<T>),
}

impl<T: Copy + Ord> Correlator<T> {
    /// A correlator for `format`, bounded by the `input` section.
    pub fn new(format: InputFormat, input: &InputConfig) -> Self {
        match format {
            InputFormat::Json => Correlator::Json,
            InputFormat::Postfix => Correlator::Postfix(PostfixCorrelator::new(
                PostfixSettings::from_config(&input.postfix),
            )),
            InputFormat::ExchangeTracking => Correlator::Exchange(ExchangeCorrelator::new(
                ExchangeSettings::from_config(&input.exchange),
            )),
        }
    }

    /// Takes one parsed record with the caller's token; completed events go to `out`. A
    /// record of another format than the correlator's is ignored (as `other_line`).
    pub fn accept(
        &mut self,
        record: &Parsed<'_>,
        token: T,
        out: &mut Vec<Event<'static>>,
    ) -> LineOutcome {
        match (self, record) {
            (_, Parsed::Ignored(ignored)) => LineOutcome::Ignored(*ignored),
            (Correlator::Json, Parsed::Event(event)) => {
                out.push(event.clone().into_owned());
                LineOutcome::Absorbed
            }
            (Correlator::Postfix(c), Parsed::Postfix(line)) => c.accept(line, token, out),
            (Correlator::Exchange(c), Parsed::Exchange(row)) => c.accept(row, token, out),
            _ => LineOutcome::Ignored(Ignored::OtherLine),
        }
    }

    /// Completes or drops, at event time `now`, what is past its bound.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Event<'static>>) {
        match self {
            Correlator::Json => {}
            Correlator::Postfix(c) => c.expire(now, out),
            Correlator::Exchange(c) => c.expire(now, out),
        }
    }

    /// At the end of input: emits what is complete enough, drops the rest.
    pub fn flush(&mut self, out: &mut Vec<Event<'static>>) {
        match self {
            Correlator::Json => {}
            Correlator::Postfix(c) => c.flush(out),
            Correlator::Exchange(c) => c.flush(out),
        }
    }

    /// The smallest token of a record absorbed into a message not yet emitted or dropped:
    /// offsets from it on must not be committed.
    pub fn oldest_pending_token(&self) -> Option<T> {
        match self {
            Correlator::Json => None,
            Correlator::Postfix(c) => c.oldest_pending_token(),
            Correlator::Exchange(c) => c.oldest_pending_token(),
        }
    }

    /// Messages being assembled.
    pub fn pending(&self) -> usize {
        match self {
            Correlator::Json => 0,
            Correlator::Postfix(c) => c.pending(),
            Correlator::Exchange(c) => c.pending(),
        }
    }

    /// The bytes the messages being assembled hold.
    pub fn pending_bytes(&self) -> usize {
        match self {
            Correlator::Json => 0,
            Correlator::Postfix(c) => c.pending_bytes(),
            Correlator::Exchange(c) => c.pending_bytes(),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> CorrelationStats {
        match self {
            Correlator::Json => CorrelationStats::default(),
            Correlator::Postfix(c) => c.stats(),
            Correlator::Exchange(c) => c.stats(),
        }
    }
}
