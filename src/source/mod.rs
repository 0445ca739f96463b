//! The Kafka side of the service's input: the consumer's configuration and callbacks, the
//! timestamp-ordered merge of partitions ([`merge`]) and the commit rules ([`offsets`]).
//!
//! The consumer is librdkafka's, through `rdkafka`'s `BaseConsumer`, polled on the service's
//! intake thread: librdkafka fetches in batches on its own threads, and a poll is a queue pop,
//! so the hot path makes no syscall per message.

pub mod merge;
pub mod offsets;

use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// librdkafka settings stormwatch needs for its guarantees; `kafka.properties` cannot turn them
/// off, since offsets are committed by hand only when safe.
const FIXED_CONSUMER_PROPERTIES: [(&str, &str); 3] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
];

/// The base client configuration: brokers and the operator's pass-through properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// librdkafka settings stormwatch changes from librdkafka's defaults; `kafka.properties` may
/// set them otherwise.
///
/// - `auto.offset.reset`: a new consumer group starts from the oldest record kept, so a first
///   start does not skip a storm already under way.
/// - `statistics.interval.ms`: the statistics feed the consumer-lag metric.
/// - `fetch.queue.backoff.ms`: librdkafka stops fetching when its local queue holds
///   `queued.min.messages` records (100,000 by default; for a consumer in a group, counted over
///   all its partitions), and only looks again after this backoff, 1 s by default. At 300,000
///   events/s that threshold is a third of a second of records: a short pause of the detection
///   thread filled it, the consumer then idled for the rest of the second, and throughput fell
///   to about 100,000 events a second, far below what the service keeps up with (BENCHMARKS.md,
///   session 6). Looking again after 20 ms costs only a timer (no fetch is sent while the
///   queue is full) and keeps records flowing.
const DEFAULT_CONSUMER_PROPERTIES: [(&str, &str); 3] = [
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "5000"),
    ("fetch.queue.backoff.ms", "20"),
];

/// The consumer's configuration.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    config.set("group.id", &kafka.group_id);
    apply_defaults_and_fixed(
        &mut config,
        kafka,
        &DEFAULT_CONSUMER_PROPERTIES,
        &FIXED_CONSUMER_PROPERTIES,
    );
    config
}

/// Sets each of `defaults` that `kafka.properties` does not set, then every one of `fixed`,
/// which the operator cannot change: how the consumer and the producer layer stormwatch's
/// settings over the operator's.
pub(crate) fn apply_defaults_and_fixed(
    config: &mut ClientConfig,
    kafka: &KafkaConfig,
    defaults: &[(&str, &str)],
    fixed: &[(&str, &str)],
) {
    for &(key, value) in defaults {
        if !kafka.properties.contains_key(key) {
            config.set(key, value);
        }
    }
    for &(key, value) in fixed {
        config.set(key, value);
    }
}

/// True for the end-of-partition notice, which librdkafka also reports as an error event.
fn is_partition_eof(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

/// Callbacks for helper consumers (reading the alerts topic back): errors are logged, except
/// end-of-partition, which is how the reader knows it is done.
pub struct QuietEofContext;

impl ClientContext for QuietEofContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !is_partition_eof(&error) {
            tracing::error!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for QuietEofContext {}

/// An assignment change, queued by the rebalance callback for the thread that polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    /// Partitions assigned to this instance.
    Assigned(Vec<i32>),
    /// Partitions taken away.
    Revoked(Vec<i32>),
}

/// Consumer callbacks: assignment changes are queued for the thread that polls (librdkafka
/// calls them from inside `poll`, on that same thread), and statistics feed the lag metric.
pub struct SourceContext {
    topic: String,
    metrics: Arc<Metrics>,
    changes: Mutex<Vec<AssignmentChange>>,
    /// Set when `changes` has something: checked after every poll, so it must cost no lock.
    changed: AtomicBool,
}

impl SourceContext {
    /// A context for consuming `topic`.
    pub fn new(topic: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            topic: topic.to_string(),
            metrics,
            changes: Mutex::new(Vec::new()),
            changed: AtomicBool::new(false),
        }
    }

    /// Takes the queued assignment changes (no lock when there are none).
    pub fn take_changes(&self) -> Vec<AssignmentChange> {
        if !self.changed.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        match self.changes.lock() {
            Ok(mut changes) => std::mem::take(&mut *changes),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn push(&self, change: AssignmentChange) {
        match self.changes.lock() {
            Ok(mut changes) => changes.push(change),
            Err(poisoned) => poisoned.into_inner().push(change),
        }
        self.changed.store(true, Ordering::Release);
    }

    fn partitions_of(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for SourceContext {
    /// End-of-partition is how the merge learns a partition is caught up, not an error; it also
    /// arrives through `poll`, where it is used. Everything else is logged.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !is_partition_eof(&error) {
            tracing::error!(%error, reason, "Kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (id, partition) in &topic.partitions {
                // librdkafka's own `consumer_lag` is measured from the committed offset, which
                // stormwatch keeps one window behind on purpose; the lag that matters is from
                // what the application has read (`app_offset`, the next offset it will get) to
                // the end of the log. -1 means unknown; partition -1 is librdkafka's internal one.
                if *id >= 0 && partition.ls_offset >= 0 && partition.app_offset >= 0 {
                    self.metrics
                        .kafka_consumer_lag
                        .with_label_values(&[&id.to_string()])
                        .set((partition.ls_offset - partition.app_offset).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions_of(tpl);
                tracing::info!(?partitions, "partitions assigned");
                self.push(AssignmentChange::Assigned(partitions));
            }
            Rebalance::Revoke(tpl) => {
                let partitions = self.partitions_of(tpl);
                tracing::info!(?partitions, "partitions revoked");
                self.push(AssignmentChange::Revoked(partitions));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_with(properties: &[(&str, &str)]) -> KafkaConfig {
        let mut kafka = KafkaConfig::default();
        for (key, value) in properties {
            kafka.properties.insert((*key).into(), (*value).into());
        }
        kafka
    }

    #[test]
    fn the_consumer_gets_stormwatch_defaults_unless_the_operator_sets_them() {
        let config = consumer_config(&kafka_with(&[]));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("20"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("statistics.interval.ms"), Some("5000"));

        let config = consumer_config(&kafka_with(&[
            ("fetch.queue.backoff.ms", "250"),
            ("auto.offset.reset", "latest"),
        ]));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("250"));
        assert_eq!(config.get("auto.offset.reset"), Some("latest"));
        assert_eq!(config.get("statistics.interval.ms"), Some("5000"));
    }

    #[test]
    fn the_commit_settings_cannot_be_overridden() {
        let config = consumer_config(&kafka_with(&[("enable.auto.commit", "true")]));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
    }
}
