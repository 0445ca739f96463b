//! What the alerts topic already says, so a restart does not announce a storm twice.
//!
//! After a restart the engine re-reads one window of events (see `source::offsets`) and so
//! re-derives the storms of that window. Before consuming, the service reads the alerts topic
//! back and remembers, per thread, the latest storm announced on it. An alert the engine
//! re-derives for a storm already announced is not sent again, and the engine adopts the
//! announced start time so later alerts of that storm carry the same `started_at` and
//! `storm_id`. A storm that started while stormwatch was down is not on the topic and is
//! announced as usual.

use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::config::KafkaConfig;
use crate::engine::ResumedStorm;
use crate::source::{client_config, QuietEofContext};
use crate::timefmt::{parse_rfc3339_millis, Millis};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many alerts are read back per partition (the newest).
const READ_BACK_PER_PARTITION: i64 = 100_000;

/// Storms remembered per thread (the newest); a window rarely holds more than one or two.
const STORMS_PER_THREAD: usize = 8;

/// A storm announced on a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnnouncedStorm {
    started_at: Millis,
    escalated: bool,
    ended_at: Option<Millis>,
    /// As its newest alert on the topic has them, for carrying it on when it is not re-derived.
    severity: Severity,
    rule: RuleName,
    last_active: Millis,
    subject: Option<Arc<str>>,
}

/// How the alerts topic has a storm, for the engine (and a re-offered alert) to take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncedAs {
    /// The announced start.
    pub started_at: Millis,
    /// The severity and rule of its newest alert on the topic.
    pub severity: Severity,
    /// See `severity`.
    pub rule: RuleName,
    /// Whether the topic shows it ended.
    pub ended: bool,
}

/// What to do with an alert the engine produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not announced yet: send it.
    Publish,
    /// Already on the alerts topic: do not send it again.
    AlreadyAnnounced(AnnouncedAs),
    /// A re-derived start that is critical for a storm the topic has open only as a warning
    /// (the rebuilt window lost the storm's first reply-alls, so a critical rule held from the
    /// start): the topic lacks the escalation, and nothing else would send it, since a critical
    /// storm does not escalate. Send the alert as that `storm_escalated`.
    PublishAsEscalation(AnnouncedAs),
}

/// What the alerts topic says once the rebuild is over ([`Announced::finish_rebuild`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// The storms whose newest announcement on each thread is not followed by a
    /// `storm_ended`, for the caller to carry on those the rebuild did not re-derive (so each
    /// announced storm is announced as ended, once).
    pub open: Vec<ResumedStorm>,
    /// The storms the topic shows ended, as (thread key, start), for the caller to end,
    /// without an alert, those the rebuild re-derived without their end (a storm ended by the
    /// wall clock when traffic stopped leaves nothing in the input that ends it again).
    pub ended: Vec<(Arc<str>, Millis)>,
}

/// The storms announced on the alerts topic, by thread key, consulted only while the engine
/// rebuilds its window after a start: once the input is caught up, every alert is new.
#[derive(Debug, Default)]
pub struct Announced {
    storms: HashMap<Arc<str>, Vec<AnnouncedStorm>>,
    rebuilding: bool,
}

impl Announced {
    /// Storms known.
    pub fn len(&self) -> usize {
        self.storms.values().map(Vec::len).sum()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.storms.is_empty()
    }

    /// Whether alerts are still checked against the topic.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding
    }

    /// The rebuild is over (the input was read to its end once): from now on every alert is
    /// new, and the read-back is forgotten. Returns what the caller still has to square with
    /// the engine (see `Rebuilt`).
    pub fn finish_rebuild(&mut self) -> Rebuilt {
        self.rebuilding = false;
        let storms = std::mem::take(&mut self.storms);
        let mut rebuilt = Rebuilt::default();
        for (key, storms) in storms {
            if let Some(storm) = storms.last().filter(|s| s.ended_at.is_none()) {
                rebuilt.open.push(ResumedStorm {
                    thread_key: key.clone(),
                    severity: storm.severity,
                    rule: storm.rule,
                    started_at: storm.started_at,
                    last_active: storm.last_active,
                    subject: storm.subject.clone(),
                });
            }
            rebuilt.ended.extend(
                storms
                    .iter()
                    .filter(|storm| storm.ended_at.is_some())
                    .map(|storm| (key.clone(), storm.started_at)),
            );
        }
        rebuilt
    }

    /// Reads the alerts topic (its newest records) within `timeout`.
    pub fn read_back(kafka: &KafkaConfig, timeout: Duration) -> Result<Announced, KafkaError> {
        let mut config = client_config(kafka);
        config
            .set("group.id", format!("{}-readback", kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let consumer: BaseConsumer<QuietEofContext> =
            config.create_with_context(QuietEofContext)?;
        let metadata = consumer.fetch_metadata(Some(&kafka.alerts_topic), timeout)?;
        let mut assignment = TopicPartitionList::new();
        let mut pending: HashSet<i32> = HashSet::new();
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                let id = partition.id();
                let (low, high) = consumer.fetch_watermarks(&kafka.alerts_topic, id, timeout)?;
                if high > low {
                    let start = low.max(high - READ_BACK_PER_PARTITION);
                    assignment.add_partition_offset(
                        &kafka.alerts_topic,
                        id,
                        Offset::Offset(start),
                    )?;
                    pending.insert(id);
                }
            }
        }
        let mut announced = Announced {
            rebuilding: true,
            ..Announced::default()
        };
        if pending.is_empty() {
            return Ok(announced);
        }
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    if let Some(payload) = message.payload() {
                        announced.record_json(payload);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    pending.remove(&partition);
                }
                Some(Err(error)) => tracing::warn!(%error, "reading back the alerts topic"),
                None => {}
            }
        }
        if !pending.is_empty() {
            tracing::warn!(
                partitions = ?pending,
                "the alerts topic was not read to its end in time; storms may be announced twice"
            );
        }
        Ok(announced)
    }

    /// Records one alert as read from the topic; anything unreadable is skipped.
    fn record_json(&mut self, payload: &[u8]) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let text = |field: &str| value.get(field).and_then(serde_json::Value::as_str);
        let (Some(kind), Some(key), Some(started_at), Some(at), Some(severity), Some(rule)) = (
            text("kind"),
            text("thread_key"),
            text("started_at").and_then(parse_rfc3339_millis),
            text("at").and_then(parse_rfc3339_millis),
            text("severity").and_then(Severity::from_wire),
            text("rule").and_then(RuleName::from_wire),
        ) else {
            return;
        };
        let subject = text("subject").map(Arc::from);
        let kind = match kind {
            "storm_started" => AlertKind::StormStarted,
            "storm_escalated" => AlertKind::StormEscalated,
            "storm_ended" => AlertKind::StormEnded,
            _ => return,
        };
        let storms = self.storms.entry(Arc::from(key)).or_default();
        let index = match storms.iter().position(|s| s.started_at == started_at) {
            Some(index) => index,
            None => {
                storms.push(AnnouncedStorm {
                    started_at,
                    escalated: false,
                    ended_at: None,
                    severity,
                    rule,
                    last_active: at,
                    subject: None,
                });
                storms.sort_by_key(|s| s.started_at);
                if storms.len() > STORMS_PER_THREAD {
                    storms.remove(0);
                }
                match storms.iter().position(|s| s.started_at == started_at) {
                    Some(index) => index,
                    None => return,
                }
            }
        };
        let Some(storm) = storms.get_mut(index) else {
            return;
        };
        // Alerts are read per partition in order; one thread's are on one partition.
        if at >= storm.last_active {
            storm.last_active = at;
            storm.severity = severity;
            storm.rule = rule;
            storm.subject = subject.or(storm.subject.take());
        }
        match kind {
            AlertKind::StormStarted => {}
            AlertKind::StormEscalated => storm.escalated = true,
            AlertKind::StormEnded => storm.ended_at = Some(at),
        }
    }

    /// Decides about an alert the engine produced. While rebuilding, an alert of a storm the
    /// topic already has is not sent again: a re-derived start matches the earliest announced
    /// storm on its thread that had not ended by then; an escalation or end matches by start
    /// time (the engine adopted the announced one).
    pub fn check(&mut self, alert: &Alert) -> Verdict {
        if !self.rebuilding {
            return Verdict::Publish;
        }
        let Some(storms) = self.storms.get_mut(&alert.thread_key) else {
            return Verdict::Publish;
        };
        let matched = match alert.kind {
            AlertKind::StormStarted => storms
                .iter_mut()
                .find(|s| s.ended_at.is_none_or(|ended| ended > alert.started_at)),
            _ => storms.iter_mut().find(|s| s.started_at == alert.started_at),
        };
        let Some(storm) = matched else {
            return Verdict::Publish;
        };
        let announced_as = AnnouncedAs {
            started_at: storm.started_at,
            severity: storm.severity,
            rule: storm.rule,
            ended: storm.ended_at.is_some(),
        };
        let open_warning = storm.severity == Severity::Warning && storm.ended_at.is_none();
        if alert.kind == AlertKind::StormStarted
            && alert.severity == Severity::Critical
            && open_warning
        {
            storm.escalated = true;
            storm.severity = alert.severity;
            storm.rule = alert.rule;
            return Verdict::PublishAsEscalation(announced_as);
        }
        let already = match alert.kind {
            AlertKind::StormStarted => true,
            // Escalation goes from warning to critical only: a storm the topic has as critical
            // (from its start, or escalated) has announced it, whatever the rebuild re-derives.
            AlertKind::StormEscalated => !open_warning || storm.escalated,
            AlertKind::StormEnded => storm.ended_at.is_some(),
        };
        if already {
            return Verdict::AlreadyAnnounced(announced_as);
        }
        // New for this storm (it escalated or ended after the restart): remember it is sent.
        match alert.kind {
            AlertKind::StormStarted => {}
            AlertKind::StormEscalated => {
                storm.escalated = true;
                storm.severity = alert.severity;
                storm.rule = alert.rule;
            }
            AlertKind::StormEnded => storm.ended_at = Some(alert.at),
        }
        Verdict::Publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{RuleName, Severity};

    fn alert(kind: AlertKind, key: &str, started_at: Millis, at: Millis) -> Alert {
        Alert {
            kind,
            thread_key: Arc::from(key),
            severity: Severity::Warning,
            rule: RuleName::Early,
            at,
            started_at,
            reply_alls: 3,
            distinct_senders: 3,
            deliveries: 9000,
            subject: None,
            block_until: started_at + 1,
            senders: None,
        }
    }

    /// The announced start, when the verdict is "already announced".
    fn already(verdict: Verdict) -> Option<Millis> {
        match verdict {
            Verdict::AlreadyAnnounced(announced) => Some(announced.started_at),
            _ => None,
        }
    }

    /// The announced start, when the verdict is "publish as its escalation".
    fn escalation(verdict: Verdict) -> Option<Millis> {
        match verdict {
            Verdict::PublishAsEscalation(announced) => Some(announced.started_at),
            _ => None,
        }
    }

    fn from_topic(alerts: &[Alert]) -> Announced {
        let mut announced = Announced {
            rebuilding: true,
            ..Announced::default()
        };
        for a in alerts {
            announced.record_json(a.to_json().as_bytes());
        }
        announced
    }

    #[test]
    fn a_re_derived_active_storm_is_not_announced_again() {
        let mut announced = from_topic(&[alert(AlertKind::StormStarted, "t", 1000, 1000)]);
        // After the restart the engine re-derives the start, a little differently.
        let again = alert(AlertKind::StormStarted, "t", 1200, 1200);
        assert_eq!(already(announced.check(&again)), Some(1000));
        assert!(matches!(
            announced.check(&again),
            Verdict::AlreadyAnnounced(AnnouncedAs { ended: false, .. })
        ));
        // Its end (with the adopted start) is new: published.
        assert_eq!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 9000)),
            Verdict::Publish
        );
        // And not twice.
        assert_eq!(
            already(announced.check(&alert(AlertKind::StormEnded, "t", 1000, 9000))),
            Some(1000)
        );
    }

    #[test]
    fn an_ended_storm_re_derived_stays_quiet_but_a_new_one_is_announced() {
        let mut announced = from_topic(&[
            alert(AlertKind::StormStarted, "t", 1000, 1000),
            alert(AlertKind::StormEscalated, "t", 1000, 2000),
            alert(AlertKind::StormEnded, "t", 1000, 5000),
        ]);
        // Ended on the topic: said so, so that the service does not make it fire again.
        assert!(matches!(
            announced.check(&alert(AlertKind::StormStarted, "t", 1100, 1100)),
            Verdict::AlreadyAnnounced(AnnouncedAs { ended: true, .. })
        ));
        assert!(matches!(
            announced.check(&alert(AlertKind::StormEscalated, "t", 1000, 2100)),
            Verdict::AlreadyAnnounced(_)
        ));
        assert!(matches!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 5100)),
            Verdict::AlreadyAnnounced(_)
        ));
        // A storm starting at or after the announced end is a new storm.
        assert_eq!(
            announced.check(&alert(AlertKind::StormStarted, "t", 5000, 5000)),
            Verdict::Publish
        );
    }

    fn critical(mut alert: Alert) -> Alert {
        alert.severity = Severity::Critical;
        alert.rule = RuleName::Amplification;
        alert
    }

    #[test]
    fn a_storm_re_derived_as_critical_gets_the_escalation_the_topic_lacks() {
        let mut announced = from_topic(&[alert(AlertKind::StormStarted, "t", 1000, 1000)]);
        let again = critical(alert(AlertKind::StormStarted, "t", 1200, 1200));
        assert_eq!(escalation(announced.check(&again)), Some(1000));
        // Once.
        assert_eq!(already(announced.check(&again)), Some(1000));
        // A storm the topic shows ended stays quiet, however it is re-derived.
        let mut ended = from_topic(&[
            alert(AlertKind::StormStarted, "t", 1000, 1000),
            alert(AlertKind::StormEnded, "t", 1000, 5000),
        ]);
        assert!(matches!(ended.check(&again), Verdict::AlreadyAnnounced(_)));
    }

    #[test]
    fn an_escalation_sent_during_the_rebuild_is_what_later_alerts_adopt() {
        let mut announced = from_topic(&[alert(AlertKind::StormStarted, "t", 1000, 1000)]);
        let escalated = critical(alert(AlertKind::StormEscalated, "t", 1000, 2000));
        assert_eq!(announced.check(&escalated), Verdict::Publish);
        assert!(matches!(
            announced.check(&escalated),
            Verdict::AlreadyAnnounced(AnnouncedAs {
                severity: Severity::Critical,
                rule: RuleName::Amplification,
                ..
            })
        ));
    }

    #[test]
    fn a_storm_announced_critical_is_not_escalated_by_its_re_derivation() {
        let mut announced =
            from_topic(&[critical(alert(AlertKind::StormStarted, "t", 1000, 1000))]);
        // The rebuilt window re-derives it as a warning first, then escalates it.
        assert!(matches!(
            announced.check(&alert(AlertKind::StormStarted, "t", 1100, 1100)),
            Verdict::AlreadyAnnounced(_)
        ));
        assert!(matches!(
            announced.check(&critical(alert(AlertKind::StormEscalated, "t", 1000, 2000))),
            Verdict::AlreadyAnnounced(_)
        ));
    }

    #[test]
    fn storms_not_on_the_topic_are_announced() {
        let mut announced = from_topic(&[alert(AlertKind::StormStarted, "other", 1000, 1000)]);
        assert_eq!(
            announced.check(&alert(AlertKind::StormStarted, "t", 1000, 1000)),
            Verdict::Publish
        );
    }

    #[test]
    fn two_storms_in_the_re_read_window_each_match_their_own() {
        let mut announced = from_topic(&[
            alert(AlertKind::StormStarted, "t", 1000, 1000),
            alert(AlertKind::StormEnded, "t", 1000, 5000),
            alert(AlertKind::StormStarted, "t", 6000, 6000),
        ]);
        assert_eq!(
            already(announced.check(&alert(AlertKind::StormStarted, "t", 1100, 1100))),
            Some(1000)
        );
        assert!(matches!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 5000)),
            Verdict::AlreadyAnnounced(_)
        ));
        assert_eq!(
            already(announced.check(&alert(AlertKind::StormStarted, "t", 6100, 6100))),
            Some(6000)
        );
        assert_eq!(
            announced.check(&alert(AlertKind::StormEnded, "t", 6000, 9000)),
            Verdict::Publish
        );
    }

    #[test]
    fn after_the_rebuild_every_alert_is_new() {
        let mut announced = from_topic(&[alert(AlertKind::StormStarted, "t", 1000, 1000)]);
        let open = announced.finish_rebuild().open;
        assert_eq!(open.len(), 1);
        assert_eq!(&*open[0].thread_key, "t");
        assert!(!announced.is_rebuilding());
        // A new storm on the thread, even though the old one never ended on the topic.
        assert_eq!(
            announced.check(&alert(AlertKind::StormStarted, "t", 90_000, 90_000)),
            Verdict::Publish
        );
    }

    #[test]
    fn garbage_on_the_topic_is_skipped() {
        let mut announced = Announced::default();
        announced.record_json(b"not json");
        announced.record_json(br#"{"kind": "storm_started"}"#);
        assert!(announced.is_empty());
    }

    #[test]
    fn open_storms_are_handed_over_as_last_announced() {
        let mut escalated = alert(AlertKind::StormEscalated, "t", 1000, 4000);
        escalated.severity = Severity::Critical;
        escalated.rule = RuleName::Exchange;
        escalated.subject = Some(Arc::from("Re: everyone"));
        let mut announced = from_topic(&[
            alert(AlertKind::StormStarted, "t", 1000, 1000),
            escalated,
            alert(AlertKind::StormStarted, "done", 1000, 1000),
            alert(AlertKind::StormEnded, "done", 1000, 9000),
        ]);
        let rebuilt = announced.finish_rebuild();
        assert_eq!(rebuilt.ended, vec![(Arc::from("done"), 1000)]);
        assert_eq!(
            rebuilt.open,
            vec![ResumedStorm {
                thread_key: Arc::from("t"),
                severity: Severity::Critical,
                rule: RuleName::Exchange,
                started_at: 1000,
                last_active: 4000,
                subject: Some(Arc::from("Re: everyone")),
            }]
        );
    }
}
