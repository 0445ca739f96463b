//! Scenario `benign-busy`: heavy normal traffic that must raise no storm
//! under the contract's default rules.
//!
//! Busy small-list reply-all threads (5-2,000 recipients, below
//! `min_recipients`), big announcements (5,000-100,000 recipients) each
//! followed by direct one-recipient replies, newsletters (10,000-50,000, not
//! replies, distinct subjects), a rare mistaken reply-all to an
//! announcement (at most two per announcement, ten minutes apart, from
//! different senders: at most 2 reply-alls and 200,000 deliveries on any
//! thread, below every rule), lines repeated per hop and mild disorder.

use super::background::{BackgroundConfig, Mix};
use super::event::{sub_seed, START_MS};

/// Default number of events.
pub(crate) const DEFAULT_EVENTS: u64 = 300_000;

/// The traffic mix, shared with `mixed`.
pub(crate) const MIX: Mix = Mix {
    ordinary_new: 330_000,
    ordinary_reply: 300_000,
    small_list: 220_000,
    announcement_reply: 140_000,
    announcement: 300,
    newsletter: 500,
    mistaken_reply_all: 200,
};

/// The scenario's traffic: `events` arrivals over at least three hours.
pub(crate) fn background(seed: u64, events: u64) -> BackgroundConfig {
    BackgroundConfig {
        seed: sub_seed(seed, 20),
        start_ms: START_MS,
        span_ms: super::span_ms(events, 180),
        events,
        mix: MIX,
        domain: "northwind.example",
        duplicate: 0.01,
    }
}
