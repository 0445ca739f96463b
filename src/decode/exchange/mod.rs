//! Exchange Server message-tracking logs (`MSGTRK*.LOG`): CSV rows under `#` header lines, the
//! `#Fields:` line naming the columns. Exchange versions log different field lists (2010 has no
//! `network-message-id`; later 2013 updates added `transport-traffic-type`, `log-id`,
//! `schema-version`), so columns are found by name from the `#Fields:` line, never by position.
//!
//! [`ExchangeParser`] keeps the current column layout (the only state of the parse phase; a
//! stream of one log's lines keeps one parser) and turns a RECEIVE or EXPAND row into an
//! [`ExchangeRow`]. [`ExchangeCorrelator`] joins the RECEIVE row of a message with its EXPAND
//! rows, so the recipient count is the one after distribution-list expansion.

mod correlate;
mod csv;

pub use correlate::{ExchangeCorrelator, ExchangeSettings};

use super::outcome::Ignored;
use super::{DecodeOptions, Field, Malformed};
use crate::event::{normalize_message_id, MAX_ID_BYTES};
use crate::timefmt::{parse_rfc3339_millis, Millis};
use std::borrow::Cow;

/// Where the columns stormwatch reads are in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    date_time: usize,
    event_id: usize,
    internal_message_id: Option<usize>,
    message_id: Option<usize>,
    recipient_address: Option<usize>,
    recipient_count: Option<usize>,
    related_recipient_address: Option<usize>,
    reference: Option<usize>,
    message_subject: Option<usize>,
    sender_address: Option<usize>,
}

impl Layout {
    /// Reads a field list (`date-time,client-ip,...`, the text after `#Fields:`); `None`
    /// without the `date-time` and `event-id` columns.
    pub fn from_fields(list: &str) -> Option<Layout> {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        let find = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        Some(Layout {
            date_time: find("date-time")?,
            event_id: find("event-id")?,
            internal_message_id: find("internal-message-id"),
            message_id: find("message-id"),
            recipient_address: find("recipient-address"),
            recipient_count: find("recipient-count"),
            related_recipient_address: find("related-recipient-address"),
            reference: find("reference"),
            message_subject: find("message-subject"),
            sender_address: find("sender-address"),
        })
    }
}

/// The event of a row stormwatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// RECEIVE: the message entered transport, its recipients as addressed (a list is one).
    Receive,
    /// EXPAND: a distribution group among the recipients was expanded.
    Expand,
}

/// One RECEIVE or EXPAND row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRow<'a> {
    /// `date-time`, epoch milliseconds.
    pub timestamp: Millis,
    /// `event-id`.
    pub kind: RowKind,
    /// `internal-message-id` (per server).
    pub internal_message_id: Cow<'a, str>,
    /// `message-id`.
    pub message_id: Cow<'a, str>,
    /// `sender-address`.
    pub sender: Cow<'a, str>,
    /// `message-subject`.
    pub subject: Cow<'a, str>,
    /// `reference` (`;`-separated values).
    pub reference: Cow<'a, str>,
    /// `related-recipient-address`: on EXPAND, the group that was expanded.
    pub related_recipient: Cow<'a, str>,
    /// `recipient-count`, or the number of `recipient-address` values when it is empty.
    pub recipient_count: u64,
}

impl ExchangeRow<'_> {
    /// A copy owning its strings.
    pub fn into_owned(self) -> ExchangeRow<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        ExchangeRow {
            timestamp: self.timestamp,
            kind: self.kind,
            internal_message_id: own(self.internal_message_id),
            message_id: own(self.message_id),
            sender: own(self.sender),
            subject: own(self.subject),
            reference: own(self.reference),
            related_recipient: own(self.related_recipient),
            recipient_count: self.recipient_count,
        }
    }
}

/// A parsed record: a row to correlate, or why it is ignored.
pub type ExchangeRecord<'a> = Result<ExchangeRow<'a>, Ignored>;

/// Parses message-tracking records, keeping the layout of the last `#Fields:` line.
#[derive(Debug, Clone, Default)]
pub struct ExchangeParser {
    layout: Option<Layout>,
}

impl ExchangeParser {
    /// A parser that uses `fields` (the configured `input.exchange.fields`, empty for none)
    /// until a `#Fields:` line says otherwise.
    pub fn new(fields: &str) -> Self {
        Self {
            layout: Layout::from_fields(fields),
        }
    }

    /// The layout in use, if any.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// Parses one record. Header lines update the layout and are ignored; rows of events
    /// other than RECEIVE and EXPAND are ignored.
    pub fn parse<'a>(
        &mut self,
        bytes: &'a [u8],
        options: &DecodeOptions,
    ) -> Result<ExchangeRecord<'a>, Malformed> {
        if bytes.len() > options.max_record_bytes {
            return Err(Malformed::TooLarge);
        }
        let text = crate::decode::utf8_text(bytes)?;
        // A log file starts with a byte-order mark; a shipper may pass it on.
        let text = text
            .trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return Err(Malformed::Empty);
        }
        if let Some(header) = text.strip_prefix('#') {
            if let Some(list) = header.strip_prefix("Fields:") {
                self.layout = Some(Layout::from_fields(list).ok_or(Malformed::BadExchangeRow)?);
            }
            return Ok(Err(Ignored::HeaderLine));
        }
        let layout = self.layout.ok_or(Malformed::NoFieldsHeader)?;
        let mut fields = Vec::with_capacity(32);
        csv::split_row(text, &mut fields).map_err(|_| Malformed::BadCsv)?;
        row(&layout, &mut fields, options)
    }
}

/// Takes the field at `index` out of the row (empty when absent).
fn take<'a>(fields: &mut [Cow<'a, str>], index: Option<usize>) -> Cow<'a, str> {
    index
        .and_then(|i| fields.get_mut(i))
        .map(std::mem::take)
        .unwrap_or_default()
}

fn row<'a>(
    layout: &Layout,
    fields: &mut [Cow<'a, str>],
    options: &DecodeOptions,
) -> Result<ExchangeRecord<'a>, Malformed> {
    let event_id = fields
        .get(layout.event_id)
        .ok_or(Malformed::BadExchangeRow)?;
    let kind = match event_id.trim() {
        "RECEIVE" => RowKind::Receive,
        "EXPAND" => RowKind::Expand,
        "" => return Err(Malformed::BadExchangeRow),
        _ => return Ok(Err(Ignored::OtherEvent)),
    };
    let date_time = fields
        .get(layout.date_time)
        .ok_or(Malformed::BadExchangeRow)?;
    let timestamp = parse_rfc3339_millis(date_time).ok_or(Malformed::BadTimestamp)?;
    if timestamp.saturating_sub(options.now) > options.max_future_skew {
        return Err(Malformed::FutureTimestamp);
    }
    let count_text = take(fields, layout.recipient_count);
    let recipients = take(fields, layout.recipient_address);
    let recipient_count = match count_text.trim() {
        "" => recipients
            .split(';')
            .filter(|r| !r.trim().is_empty())
            .count() as u64,
        n => n.parse::<u64>().map_err(|_| Malformed::BadExchangeRow)?,
    };
    // The two ids are the key a message's rows are joined by, kept while it waits: as in a
    // JSON event, an id past the limit makes the row malformed.
    let internal_message_id = take(fields, layout.internal_message_id);
    let message_id = take(fields, layout.message_id);
    if internal_message_id.trim().len() > MAX_ID_BYTES
        || normalize_message_id(&message_id).len() > MAX_ID_BYTES
    {
        return Err(Malformed::TooLong(Field::MessageId));
    }
    Ok(Ok(ExchangeRow {
        timestamp,
        kind,
        internal_message_id,
        message_id,
        sender: take(fields, layout.sender_address),
        subject: take(fields, layout.message_subject),
        reference: take(fields, layout.reference),
        related_recipient: take(fields, layout.related_recipient_address),
        recipient_count,
    }))
}

#[cfg(test)]
mod tests;
