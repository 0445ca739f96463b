//! What the alerts topic already says, so a restart does not announce a storm twice.
//!
//! After a restart the engine re-reads one window of events (see `source::offsets`) and so
//! re-derives the storms of that window. Before consuming, the service reads the alerts topic
//! back and remembers, per thread, the latest storm announced on it. An alert the engine
//! re-derives for a storm already announced is not sent again, and the engine adopts the
//! announced start time so later alerts of that storm carry the same `started_at` and
//! `storm_id`. A storm that started while stormwatch was down is not on the topic and is
//! announced as usual.

use crate::alert::{Alert, AlertKind};
use crate::config::KafkaConfig;
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

/// The latest storm announced on a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnnouncedStorm {
    started_at: Millis,
    escalated: bool,
    ended_at: Option<Millis>,
}

/// What to do with an alert the engine produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not announced yet: send it.
    Publish,
    /// Already on the alerts topic: do not send it again. `adopt_started_at` is the announced
    /// start, for the engine to take over.
    AlreadyAnnounced {
        /// The start time the alerts topic has for this storm.
        adopt_started_at: Millis,
    },
}

/// The storms announced on the alerts topic, by thread key.
#[derive(Debug, Default)]
pub struct Announced {
    storms: HashMap<Arc<str>, AnnouncedStorm>,
}

impl Announced {
    /// Storms known.
    pub fn len(&self) -> usize {
        self.storms.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.storms.is_empty()
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
        let mut announced = Announced::default();
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
        let (Some(kind), Some(key), Some(started_at), Some(at)) = (
            text("kind"),
            text("thread_key"),
            text("started_at").and_then(parse_rfc3339_millis),
            text("at").and_then(parse_rfc3339_millis),
        ) else {
            return;
        };
        let kind = match kind {
            "storm_started" => AlertKind::StormStarted,
            "storm_escalated" => AlertKind::StormEscalated,
            "storm_ended" => AlertKind::StormEnded,
            _ => return,
        };
        self.record(Arc::from(key), kind, started_at, at);
    }

    fn record(&mut self, key: Arc<str>, kind: AlertKind, started_at: Millis, at: Millis) {
        let entry = self.storms.entry(key).or_insert(AnnouncedStorm {
            started_at,
            escalated: false,
            ended_at: None,
        });
        if started_at > entry.started_at {
            *entry = AnnouncedStorm {
                started_at,
                escalated: false,
                ended_at: None,
            };
        } else if started_at < entry.started_at {
            // An older storm's alert, read after a newer one's: nothing to learn.
            return;
        }
        match kind {
            AlertKind::StormStarted => {}
            AlertKind::StormEscalated => entry.escalated = true,
            AlertKind::StormEnded => entry.ended_at = Some(at),
        }
    }

    /// Decides about an alert the engine produced, and remembers it when it is to be sent.
    /// `engine_started_at` is the start the engine has for the storm.
    pub fn check(&mut self, alert: &Alert) -> Verdict {
        if let Some(known) = self.storms.get(&alert.thread_key) {
            // The same storm: the announced one had not ended when this one (re)started.
            let same_storm = match alert.kind {
                AlertKind::StormStarted => {
                    known.ended_at.is_none_or(|ended| ended > alert.started_at)
                }
                _ => known.started_at == alert.started_at,
            };
            if same_storm {
                let already = match alert.kind {
                    AlertKind::StormStarted => true,
                    AlertKind::StormEscalated => known.escalated || known.ended_at.is_some(),
                    AlertKind::StormEnded => known.ended_at.is_some(),
                };
                if already {
                    return Verdict::AlreadyAnnounced {
                        adopt_started_at: known.started_at,
                    };
                }
            }
        }
        self.record(
            alert.thread_key.clone(),
            alert.kind,
            alert.started_at,
            alert.at,
        );
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

    fn from_topic(alerts: &[Alert]) -> Announced {
        let mut announced = Announced::default();
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
        assert_eq!(
            announced.check(&again),
            Verdict::AlreadyAnnounced {
                adopt_started_at: 1000
            }
        );
        // Its end (with the adopted start) is new: published.
        assert_eq!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 9000)),
            Verdict::Publish
        );
        // And not twice.
        assert_eq!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 9000)),
            Verdict::AlreadyAnnounced {
                adopt_started_at: 1000
            }
        );
    }

    #[test]
    fn an_ended_storm_re_derived_stays_quiet_but_a_new_one_is_announced() {
        let mut announced = from_topic(&[
            alert(AlertKind::StormStarted, "t", 1000, 1000),
            alert(AlertKind::StormEscalated, "t", 1000, 2000),
            alert(AlertKind::StormEnded, "t", 1000, 5000),
        ]);
        assert!(matches!(
            announced.check(&alert(AlertKind::StormStarted, "t", 1100, 1100)),
            Verdict::AlreadyAnnounced { .. }
        ));
        assert!(matches!(
            announced.check(&alert(AlertKind::StormEscalated, "t", 1000, 2100)),
            Verdict::AlreadyAnnounced { .. }
        ));
        assert!(matches!(
            announced.check(&alert(AlertKind::StormEnded, "t", 1000, 5100)),
            Verdict::AlreadyAnnounced { .. }
        ));
        // A storm starting at or after the announced end is a new storm.
        assert_eq!(
            announced.check(&alert(AlertKind::StormStarted, "t", 5000, 5000)),
            Verdict::Publish
        );
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
    fn garbage_on_the_topic_is_skipped() {
        let mut announced = Announced::default();
        announced.record_json(b"not json");
        announced.record_json(br#"{"kind": "storm_started"}"#);
        assert!(announced.is_empty());
    }
}
