//! The storm board behind `GET /api/v1/storms`: the active storms and the last
//! [`RECENTLY_ENDED`] ended ones, as the detection thread last published them.
//!
//! The detection thread owns the engine; HTTP handlers must never reach into it. So the thread
//! publishes, once per batch or per second, the engine's active storms and the alerts it just
//! emitted with [`StormBoard::update`]: one short write lock that moves a `Vec` in and clones a
//! few `Arc`s, with no formatting and no allocation per storm beyond that. Readers take the read
//! lock just long enough to copy the board, then turn it into JSON records
//! ([`StormsView`]) on the HTTP side, so a slow client or a big response never holds up the
//! detection thread.
//!
//! Records carry what the engine's [`StormSnapshot`] and [`Alert`] carry: thread key, severity,
//! rule, times, last-hour counts and subject; never a sender address.

use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::engine::{StormSnapshot, WindowStats};
use crate::timefmt::{format_millis, Millis};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, RwLock};

/// How many ended storms the board keeps, newest first.
pub const RECENTLY_ENDED: usize = 100;

/// A storm that ended, as its `storm_ended` alert described it.
#[derive(Debug, Clone)]
struct EndedStorm {
    thread_key: Arc<str>,
    severity: Severity,
    rule: RuleName,
    started_at: Millis,
    ended_at: Millis,
    /// From the storm's last published snapshot; unknown when it started and ended between
    /// two updates.
    last_reply_all: Option<Millis>,
    last_hour: WindowStats,
    subject: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct BoardState {
    active: Vec<StormSnapshot>,
    /// Newest first.
    ended: VecDeque<EndedStorm>,
}

/// The shared list of active and recently ended storms. See the module documentation.
#[derive(Debug, Default)]
pub struct StormBoard {
    state: RwLock<BoardState>,
}

/// Reply-alls, distinct senders and deliveries in the last 60 minutes of stream time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastHour {
    /// Reply-alls.
    pub reply_alls: u64,
    /// Their distinct senders (a count; addresses are never shown).
    pub distinct_senders: u64,
    /// The sum of their recipient counts.
    pub deliveries: u64,
}

impl From<WindowStats> for LastHour {
    fn from(stats: WindowStats) -> Self {
        Self {
            reply_alls: stats.reply_alls,
            distinct_senders: stats.distinct_senders,
            deliveries: stats.deliveries,
        }
    }
}

/// One storm as `/api/v1/storms` shows it. Times are RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StormRecord {
    /// The id its alerts carry (`Alert::storm_id`: thread key and start time).
    pub storm_id: String,
    /// The thread key (contract section 2).
    pub thread_key: String,
    /// `warning` or `critical` (the final one, for an ended storm).
    pub severity: Severity,
    /// The rule that decided the severity.
    pub rule: RuleName,
    /// When the storm started.
    pub started_at: String,
    /// The newest reply-all on the thread; `null` for an ended storm never published active.
    pub last_reply_all: Option<String>,
    /// For an active storm: at the latest stream time; for an ended one: when it ended.
    pub last_hour: LastHour,
    /// The latest subject on the thread, or `null`.
    pub subject: Option<String>,
    /// When the storm ended (ended storms only; absent on active ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// The body of `GET /api/v1/storms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StormsView {
    /// Active storms: critical first, then most reply-alls in the last hour, then thread key.
    pub active: Vec<StormRecord>,
    /// Up to [`RECENTLY_ENDED`] ended storms, most recently ended first.
    pub recently_ended: Vec<StormRecord>,
}

/// The storm id of a storm, computed by [`Alert::storm_id`] so the board and the alerts agree.
fn storm_id(thread_key: &Arc<str>, started_at: Millis) -> String {
    Alert {
        kind: AlertKind::StormStarted,
        thread_key: Arc::clone(thread_key),
        severity: Severity::Warning,
        rule: RuleName::Exchange,
        at: started_at,
        started_at,
        reply_alls: 0,
        distinct_senders: 0,
        deliveries: 0,
        subject: None,
        block_until: started_at,
        senders: None,
    }
    .storm_id()
}

impl StormBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes the engine's state: `active` replaces the active list (pass
    /// `engine.active_storms()`), and every `storm_ended` among `alerts` joins the recently
    /// ended list (pass all the alerts emitted since the last update; the other kinds are
    /// skipped, their storms are in `active`). Call from the detection thread once per batch
    /// or per second.
    pub fn update<'a>(
        &self,
        active: Vec<StormSnapshot>,
        alerts: impl IntoIterator<Item = &'a Alert>,
    ) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for alert in alerts {
            if alert.kind != AlertKind::StormEnded {
                continue;
            }
            let last_reply_all = state
                .active
                .iter()
                .find(|s| s.thread_key == alert.thread_key && s.started_at == alert.started_at)
                .map(|s| s.last_reply_all);
            if state.ended.len() == RECENTLY_ENDED {
                state.ended.pop_back();
            }
            state.ended.push_front(EndedStorm {
                thread_key: Arc::clone(&alert.thread_key),
                severity: alert.severity,
                rule: alert.rule,
                started_at: alert.started_at,
                ended_at: alert.at,
                last_reply_all,
                last_hour: WindowStats {
                    reply_alls: alert.reply_alls,
                    deliveries: alert.deliveries,
                    distinct_senders: alert.distinct_senders,
                },
                subject: alert.subject.clone(),
            });
        }
        state.active = active;
    }

    /// Active storms on the board.
    pub fn active_count(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .active
            .len()
    }

    /// The board as JSON-ready records.
    pub fn view(&self) -> StormsView {
        let (mut active, ended) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            (state.active.clone(), state.ended.clone())
        };
        active.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| b.last_hour.reply_alls.cmp(&a.last_hour.reply_alls))
                .then_with(|| a.thread_key.cmp(&b.thread_key))
        });
        StormsView {
            active: active.iter().map(active_record).collect(),
            recently_ended: ended.iter().map(ended_record).collect(),
        }
    }
}

fn active_record(storm: &StormSnapshot) -> StormRecord {
    StormRecord {
        storm_id: storm_id(&storm.thread_key, storm.started_at),
        thread_key: storm.thread_key.to_string(),
        severity: storm.severity,
        rule: storm.rule,
        started_at: format_millis(storm.started_at),
        last_reply_all: Some(format_millis(storm.last_reply_all)),
        last_hour: storm.last_hour.into(),
        subject: storm.subject.as_deref().map(str::to_owned),
        ended_at: None,
    }
}

fn ended_record(storm: &EndedStorm) -> StormRecord {
    StormRecord {
        storm_id: storm_id(&storm.thread_key, storm.started_at),
        thread_key: storm.thread_key.to_string(),
        severity: storm.severity,
        rule: storm.rule,
        started_at: format_millis(storm.started_at),
        last_reply_all: storm.last_reply_all.map(format_millis),
        last_hour: storm.last_hour.into(),
        subject: storm.subject.as_deref().map(str::to_owned),
        ended_at: Some(format_millis(storm.ended_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_479_111_740_000; // 2016-11-14T08:22:20Z

    fn snapshot(key: &str, severity: Severity, reply_alls: u64) -> StormSnapshot {
        StormSnapshot {
            thread_key: Arc::from(key),
            severity,
            rule: if severity == Severity::Critical {
                RuleName::Exchange
            } else {
                RuleName::Early
            },
            started_at: T0,
            last_reply_all: T0 + 60_000,
            last_hour: WindowStats {
                reply_alls,
                deliveries: reply_alls * 850_000,
                distinct_senders: reply_alls,
            },
            subject: Some(Arc::from("Re: test")),
        }
    }

    fn ended(key: &str, at: Millis) -> Alert {
        Alert {
            kind: AlertKind::StormEnded,
            thread_key: Arc::from(key),
            severity: Severity::Critical,
            rule: RuleName::Exchange,
            at,
            started_at: T0,
            reply_alls: 12,
            distinct_senders: 11,
            deliveries: 10_200_000,
            subject: None,
            block_until: T0 + 6 * 3_600_000,
            senders: None,
        }
    }

    #[test]
    fn active_storms_are_sorted_and_formatted() {
        let board = StormBoard::new();
        board.update(
            vec![
                snapshot("a", Severity::Warning, 3),
                snapshot("b", Severity::Critical, 10),
                snapshot("c", Severity::Critical, 40),
            ],
            [],
        );
        let view = board.view();
        let keys: Vec<&str> = view.active.iter().map(|r| r.thread_key.as_str()).collect();
        assert_eq!(keys, ["c", "b", "a"]);
        let c = &view.active[0];
        assert_eq!(c.started_at, "2016-11-14T08:22:20.000Z");
        assert_eq!(
            c.last_reply_all.as_deref(),
            Some("2016-11-14T08:23:20.000Z")
        );
        assert_eq!(c.last_hour.deliveries, 34_000_000);
        assert_eq!(c.ended_at, None);
        assert_eq!(
            c.storm_id,
            ended("c", T0).storm_id(),
            "the alerts' storm id"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert!(json["active"][0].get("ended_at").is_none());
        assert_eq!(json["active"][0]["severity"], "critical");
        assert_eq!(json["active"][2]["rule"], "early");
        assert!(json["recently_ended"].as_array().unwrap().is_empty());
    }

    #[test]
    fn ended_storms_keep_their_last_snapshot_newest_first_and_bounded() {
        let board = StormBoard::new();
        board.update(vec![snapshot("x", Severity::Critical, 12)], []);
        let started = Alert {
            kind: AlertKind::StormStarted,
            ..ended("y", T0)
        };
        board.update(Vec::new(), [&ended("x", T0 + 1_860_000), &started]);
        let view = board.view();
        assert!(view.active.is_empty());
        assert_eq!(
            view.recently_ended.len(),
            1,
            "only storm_ended joins the list"
        );
        let x = &view.recently_ended[0];
        assert_eq!(x.thread_key, "x");
        assert_eq!(x.ended_at.as_deref(), Some("2016-11-14T08:53:20.000Z"));
        assert_eq!(
            x.last_reply_all.as_deref(),
            Some("2016-11-14T08:23:20.000Z")
        );
        assert_eq!(x.last_hour.reply_alls, 12);

        let alerts: Vec<Alert> = (0..RECENTLY_ENDED + 5)
            .map(|i| ended(&format!("t{i}"), T0 + i as Millis))
            .collect();
        board.update(Vec::new(), &alerts);
        let view = board.view();
        assert_eq!(view.recently_ended.len(), RECENTLY_ENDED);
        assert_eq!(
            view.recently_ended[0].thread_key,
            format!("t{}", RECENTLY_ENDED + 4)
        );
        assert_eq!(
            view.recently_ended[0].last_reply_all, None,
            "never seen active"
        );
        assert!(!view.recently_ended.iter().any(|r| r.thread_key == "x"));
    }
}
