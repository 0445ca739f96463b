//! What happened to a mail-log line that did not become an event by itself: ignored (a mail log
//! is mostly lines about other things, which is normal, not malformed), absorbed into a
//! message being assembled, or part of a message that was dropped before it was complete.
//! Like [`super::Malformed`], each is a small `Copy` enum with a fixed label set, so counting
//! it costs nothing and it can be a metric label.

use std::fmt;

/// Why a well-formed line was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignored {
    /// A syslog line from a program that is not Postfix.
    NotPostfix,
    /// A Postfix line from a daemon other than cleanup and qmgr (smtpd, smtp, local, ...).
    OtherDaemon,
    /// A cleanup or qmgr line that says nothing stormwatch uses (`removed` after the event
    /// was emitted, warnings, `status=expired`, ...).
    OtherLine,
    /// A qmgr `from=` line or an Exchange EXPAND row for a message whose first lines were
    /// never seen (read from the middle of the log, or a deferred message retried later).
    Unmatched,
    /// An Exchange `#` header line (`#Software:`, `#Fields:`, ...).
    HeaderLine,
    /// An Exchange row of an event other than RECEIVE and EXPAND (DELIVER, SEND, ...).
    OtherEvent,
}

impl Ignored {
    /// A stable snake_case label.
    pub const fn label(self) -> &'static str {
        match self {
            Ignored::NotPostfix => "not_postfix",
            Ignored::OtherDaemon => "other_daemon",
            Ignored::OtherLine => "other_line",
            Ignored::Unmatched => "unmatched",
            Ignored::HeaderLine => "header_line",
            Ignored::OtherEvent => "other_event",
        }
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a correlator did with one parsed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// The line went into a message being assembled (or completed one).
    Absorbed,
    /// The line was not used.
    Ignored(Ignored),
}

/// Why a message being assembled was dropped without becoming an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dropped {
    /// Its bound passed before it was complete (no qmgr line within `input.postfix.qmgr_wait`,
    /// or its queue id `removed` before one).
    Expired,
    /// The map was full and it was the oldest (`max_pending`).
    Evicted,
    /// Its queue id started a new message (a second `message-id=`) before it was complete.
    Superseded,
    /// cleanup rejected or discarded it (header_checks, a milter).
    Rejected,
    /// An id, address or host name in it is longer than [`crate::event::MAX_ID_BYTES`] (as
    /// JSON events with one are malformed), so it was not kept while it waited.
    TooLong,
}

impl Dropped {
    /// Every reason, in label order.
    pub const ALL: [Dropped; 5] = [
        Dropped::Expired,
        Dropped::Evicted,
        Dropped::Superseded,
        Dropped::Rejected,
        Dropped::TooLong,
    ];

    /// A stable snake_case label.
    pub const fn label(self) -> &'static str {
        match self {
            Dropped::Expired => "expired",
            Dropped::Evicted => "evicted",
            Dropped::Superseded => "superseded",
            Dropped::Rejected => "rejected",
            Dropped::TooLong => "too_long",
        }
    }

    const fn index(self) -> usize {
        match self {
            Dropped::Expired => 0,
            Dropped::Evicted => 1,
            Dropped::Superseded => 2,
            Dropped::Rejected => 3,
            Dropped::TooLong => 4,
        }
    }
}

/// A correlator's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelationStats {
    /// Events emitted.
    pub emitted: u64,
    /// Entries evicted from a full map (`max_pending`, `max_pending_bytes`) that were complete
    /// enough to be emitted anyway (also in `emitted`; those not complete are counted under
    /// [`Dropped::Evicted`]).
    pub evicted_emitted: u64,
    dropped: [u64; Dropped::ALL.len()],
}

impl CorrelationStats {
    /// Counts one drop.
    pub fn note_dropped(&mut self, reason: Dropped) {
        if let Some(count) = self.dropped.get_mut(reason.index()) {
            *count += 1;
        }
    }

    /// Drops for one reason.
    pub fn dropped(&self, reason: Dropped) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let mut stats = CorrelationStats::default();
        stats.note_dropped(Dropped::Expired);
        stats.note_dropped(Dropped::Expired);
        stats.note_dropped(Dropped::Rejected);
        assert_eq!(stats.dropped(Dropped::Expired), 2);
        assert_eq!(stats.dropped(Dropped::Evicted), 0);
        assert_eq!(stats.dropped_total(), 3);
        let labels: Vec<_> = Dropped::ALL.iter().map(|d| d.label()).collect();
        assert_eq!(
            labels,
            ["expired", "evicted", "superseded", "rejected", "too_long"]
        );
    }
}
