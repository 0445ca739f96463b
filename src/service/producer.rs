//! The durable outputs: alerts to `kafka.alerts_topic` (keyed by thread key) and malformed
//! records to `kafka.dlq_topic` (the original bytes, with headers naming the reason, source
//! topic, partition and offset).
//!
//! One idempotent producer with `acks=all`; every record carries the sequence number of the
//! input record that caused it, and the delivery callback (on librdkafka's thread) sends that
//! number back over a channel, so the detection thread knows which offsets are safe to commit.
//! librdkafka retries transient errors itself (`message.timeout.ms = 0`: forever). A record it
//! refuses or gives up on (a permanent error: authorization, a record too large, a fatal
//! idempotence error) is logged and counted as failed, and the detection thread keeps that
//! record's effect in flight for good: offsets stop at it, so the record is read and its alert
//! made again after a restart, and `/readyz` says why. Sinks keep working meanwhile.

use crate::alert::Alert;
use crate::config::KafkaConfig;
use crate::decode::Malformed;
use crate::metrics::Metrics;
use crate::source::{apply_defaults_and_fixed, client_config};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// What a delivery report says about an effect of input record `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The input record's sequence number.
    pub seq: u64,
    /// Whether the broker has it.
    pub delivered: bool,
    /// Which output.
    pub output: Output,
}

/// The producer's two outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The alerts topic.
    Alerts,
    /// The dead-letter topic.
    Dlq,
}

/// The delivery opaque: which output and which input record.
type Tag = Box<(Output, u64)>;

/// Delivery callbacks to the detection thread.
pub struct DeliveryContext {
    settled: Sender<Settled>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Tag;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Tag) {
        let (output, seq) = *tag;
        let delivered = match result {
            Ok(_) => true,
            Err((error, _)) => {
                tracing::error!(%error, ?output, "the producer gave up on a record");
                false
            }
        };
        // The receiver is gone only during shutdown, after the last flush.
        let _ = self.settled.send(Settled {
            seq,
            delivered,
            output,
        });
    }
}

/// The alerts and DLQ producer.
pub struct DurableOutput {
    producer: ThreadedProducer<DeliveryContext>,
    alerts_topic: String,
    dlq_topic: String,
    source_topic: String,
    metrics: Arc<Metrics>,
    /// Raised at shutdown: a send waiting on a full queue gives up then (the record is not
    /// committed, so the next start makes it again).
    shutdown: Arc<AtomicBool>,
}

/// A malformed record bound for the DLQ.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Its bytes (or their head, for a record larger than [`MAX_DLQ_PAYLOAD`]).
    pub payload: &'a [u8],
    /// Its length as read.
    pub original_len: usize,
    /// Its Kafka key.
    pub key: Option<&'a [u8]>,
    /// Why it is malformed.
    pub reason: Malformed,
    /// Where it was read.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// The most of a malformed record's bytes sent to the DLQ (below librdkafka's default
/// `message.max.bytes` of 1,000,000 with room for headers).
pub const MAX_DLQ_PAYLOAD: usize = 512 * 1024;

/// How long a full producer queue is waited on per attempt before trying again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// What makes the alerts topic a durable sink; `kafka.properties` cannot change these.
const FIXED_PRODUCER_PROPERTIES: [(&str, &str); 2] =
    [("enable.idempotence", "true"), ("acks", "all")];

/// librdkafka settings the producer changes from librdkafka's defaults; `kafka.properties` may
/// set them otherwise.
///
/// - `message.timeout.ms = 0`: retry transient errors forever; an alert is never given up on
///   while the broker may come back.
/// - `linger.ms = 0`: send at once. librdkafka's 5 ms holds a lone record (a storm's first
///   alert usually is one) for the full 5 ms waiting for company; in the Kafka bench the
///   produce -> alert p50 fell by about 5 ms (BENCHMARKS.md, session 7). Under a flood of
///   dead letters, records still gather into batches while earlier requests are in flight.
const DEFAULT_PRODUCER_PROPERTIES: [(&str, &str); 2] =
    [("message.timeout.ms", "0"), ("linger.ms", "0")];

/// The producer's configuration.
fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    apply_defaults_and_fixed(
        &mut config,
        kafka,
        &DEFAULT_PRODUCER_PROPERTIES,
        &FIXED_PRODUCER_PROPERTIES,
    );
    config
}

impl DurableOutput {
    /// Creates the producer; delivery reports arrive on the returned channel.
    pub fn new(
        kafka: &KafkaConfig,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<(Self, Receiver<Settled>), KafkaError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let producer =
            producer_config(kafka).create_with_context(DeliveryContext { settled: sender })?;
        Ok((
            Self {
                producer,
                alerts_topic: kafka.alerts_topic.clone(),
                dlq_topic: kafka.dlq_topic.clone(),
                source_topic: kafka.topic.clone(),
                metrics,
                shutdown,
            },
            receiver,
        ))
    }

    /// Sends an alert, keyed by its thread, tagged with input record `seq`. Waits (briefly,
    /// repeatedly) while the producer's queue is full: the alerts topic is the durable sink, and
    /// an alert is never dropped. Gives up only at shutdown.
    pub fn send_alert(&self, alert: &Alert, seq: u64) -> Result<(), KafkaError> {
        let value = alert.to_json();
        let key: &str = &alert.thread_key;
        self.send(
            BaseRecord::with_opaque_to(&self.alerts_topic, Box::new((Output::Alerts, seq)))
                .key(key)
                .payload(value.as_bytes()),
        )
    }

    /// Sends a malformed record to the DLQ with its original bytes and where it came from.
    pub fn send_dlq(&self, letter: &DeadLetter<'_>, seq: u64) -> Result<(), KafkaError> {
        let DeadLetter {
            payload,
            original_len,
            key,
            reason,
            partition,
            offset,
        } = *letter;
        // A record near the input's size limit would exceed the producer's message size: keep the
        // head, and say so, rather than lose the record from the DLQ.
        let truncated = original_len > payload.len() || payload.len() > MAX_DLQ_PAYLOAD;
        let original_length = original_len.max(payload.len()).to_string();
        let payload = payload.get(..MAX_DLQ_PAYLOAD).unwrap_or(payload);
        let partition_text = partition.to_string();
        let offset_text = offset.to_string();
        let detail = reason.to_string();
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "stormwatch.reason",
                value: Some(reason.label()),
            })
            .insert(Header {
                key: "stormwatch.error",
                value: Some(detail.as_str()),
            })
            .insert(Header {
                key: "stormwatch.source_topic",
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: "stormwatch.source_partition",
                value: Some(partition_text.as_str()),
            })
            .insert(Header {
                key: "stormwatch.source_offset",
                value: Some(offset_text.as_str()),
            });
        let headers = if truncated {
            headers.insert(Header {
                key: "stormwatch.truncated_from_bytes",
                value: Some(original_length.as_str()),
            })
        } else {
            headers
        };
        let mut record = BaseRecord::with_opaque_to(&self.dlq_topic, Box::new((Output::Dlq, seq)))
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.send(record)
    }

    fn send<K, P>(&self, mut record: BaseRecord<'_, K, P, Tag>) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    returned,
                )) => {
                    if self.shutdown.load(Ordering::Relaxed) {
                        return Err(error);
                    }
                    record = returned;
                    self.metrics
                        .alerts_sent_total
                        .with_label_values(&["kafka", "retried"])
                        .inc();
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits up to `timeout` for every record to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Records the producer has not settled yet.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_sends_at_once_and_retries_forever_unless_configured_otherwise() {
        let mut kafka = KafkaConfig::default();
        let config = producer_config(&kafka);
        assert_eq!(config.get("linger.ms"), Some("0"));
        assert_eq!(config.get("message.timeout.ms"), Some("0"));
        kafka.properties.extend([
            ("linger.ms".to_string(), "20".to_string()),
            ("message.timeout.ms".to_string(), "60000".to_string()),
        ]);
        let config = producer_config(&kafka);
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("message.timeout.ms"), Some("60000"));
    }

    #[test]
    fn durability_settings_cannot_be_overridden() {
        let mut kafka = KafkaConfig::default();
        kafka.properties.extend([
            ("acks".to_string(), "1".to_string()),
            ("enable.idempotence".to_string(), "false".to_string()),
        ]);
        let config = producer_config(&kafka);
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}
