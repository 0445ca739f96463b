//! The intake thread: polls the Kafka consumer and parses each record (`input.format`), and
//! hands the detection thread batches of parsed records, end-of-partition notices and
//! assignment changes, in the order the consumer produced them.
//!
//! Why a thread of its own: taking a record from librdkafka (a queue pop and a message
//! allocation) and parsing it cost as much as detecting on it. On one thread those costs add
//! up; here they run beside the merge and the engine on the second core, and the detection
//! thread only sees records that are ready to merge.
//!
//! Order is what keeps the merge and the commits right: librdkafka runs the rebalance callback
//! inside `poll`, on this thread, so an assignment change is queued right after the records
//! polled before it and before any polled after it. The detection thread applies it at that
//! point of the stream, as it did when it polled itself. The channel is bounded: a detection
//! thread that falls behind stops this one, librdkafka's own queue fills, and fetching pauses.

use super::pipeline::Item;
use super::producer::MAX_DLQ_PAYLOAD;
use crate::decode::{DecodeOptions, RecordParser};
use crate::metrics::Metrics;
use crate::source::merge::Pending;
use crate::source::{AssignmentChange, SourceContext};
use crate::timefmt::{now_millis, Millis};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most records in one batch: big enough that the hand-over costs little per record, small
/// enough that the detection thread gets work while the intake parses more. A batch goes as
/// soon as the consumer has nothing more at hand, so at steady rates batches are small.
pub(super) const BATCH: usize = 1_024;
/// Most bytes of records (as read) in one batch: a batch also goes once it holds this much, so
/// that the channel holds at most `BATCHES_IN_FLIGHT` times this, whatever the records' size
/// (1,024 records of up to 1 MiB each would be a gigabyte).
const BATCH_BYTES: usize = 4 << 20;
/// Batches in flight between the threads (the bound on what the channel holds).
pub(super) const BATCHES_IN_FLIGHT: usize = 8;
/// How long a poll blocks when the consumer has nothing: also how often the shutdown flag is
/// looked at.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// One thing the consumer produced, for the detection thread.
pub(super) enum Polled {
    /// A parsed (or malformed) record of `partition`.
    Record {
        partition: i32,
        pending: Pending<Item>,
    },
    /// `partition` was read to its end (the detection thread stamps it with its own clock, the
    /// one it stamps records with, so the merge compares like with like).
    End { partition: i32 },
    /// The rebalance callback ran.
    Assignment(AssignmentChange),
}

/// The intake thread's state.
pub(super) struct Intake {
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub decode: DecodeOptions,
    /// A parser for each partition as it first appears: an Exchange stream's `#Fields:` lines
    /// set the column layout of their partition only.
    pub new_parser: RecordParser,
    pub batches: SyncSender<Vec<Polled>>,
    /// Emptied batches coming back, so the hand-over allocates nothing once warm.
    pub spare: Receiver<Vec<Polled>>,
}

impl Intake {
    /// Polls until shutdown or until the detection thread hangs up.
    pub fn run(mut self) {
        let mut parsers: HashMap<i32, RecordParser> = HashMap::new();
        let mut batch = self.fresh_batch();
        while !self.shutdown.load(Ordering::Relaxed) {
            self.decode.now = now_millis();
            let mut timeout = if batch.is_empty() {
                IDLE_POLL
            } else {
                Duration::ZERO
            };
            let mut received = false;
            let mut arrived = Instant::now();
            let mut records: u32 = 0;
            let mut batch_bytes: usize = 0;
            while batch.len() < BATCH && batch_bytes < BATCH_BYTES {
                let polled = self.consumer.poll(timeout);
                timeout = Duration::ZERO;
                // A rebalance callback runs inside a poll (which then returns no record): its
                // change goes after the records polled before it and before any polled after.
                // (Parsers outlive a revocation: an Exchange partition read again from its
                // committed offset may not see its `#Fields:` line again.)
                for change in self.consumer.context().take_changes() {
                    batch.push(Polled::Assignment(change));
                }
                let Some(result) = polled else {
                    break;
                };
                match result {
                    Ok(message) => {
                        received = true;
                        let partition = message.partition();
                        let parser = parsers
                            .entry(partition)
                            .or_insert_with(|| self.new_parser.clone());
                        // The arrival stamp is read once per 64 records (a clock read costs
                        // about as much as a fifth of a parse), always after the poll that
                        // may have waited; it is never later than the truth.
                        if records.is_multiple_of(64) {
                            arrived = Instant::now();
                        }
                        records += 1;
                        let pending = parse(parser, &message, &self.decode, arrived);
                        batch_bytes = batch_bytes.saturating_add(pending.bytes);
                        batch.push(Polled::Record { partition, pending });
                    }
                    Err(KafkaError::PartitionEOF(partition)) => {
                        batch.push(Polled::End { partition })
                    }
                    Err(error) => tracing::warn!(%error, "consumer error"),
                }
            }
            if received {
                self.metrics
                    .last_event_received_seconds
                    .set(self.decode.now as f64 / 1000.0);
            }
            if batch.is_empty() {
                continue;
            }
            match self.batches.try_send(batch) {
                Ok(()) => batch = self.fresh_batch(),
                Err(TrySendError::Full(full)) => {
                    // The detection thread is behind: wait for it (librdkafka keeps fetching
                    // into its own bounded queue meanwhile).
                    if self.batches.send(full).is_err() {
                        return;
                    }
                    batch = self.fresh_batch();
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn fresh_batch(&self) -> Vec<Polled> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH))
    }
}

/// Parses one record into what waits in the merge: ordered by its event time (records without
/// one, ignored lines and malformed records, go first: they hold nothing back).
fn parse(
    parser: &mut RecordParser,
    message: &impl Message,
    decode: &DecodeOptions,
    arrived: Instant,
) -> Pending<Item> {
    let payload = message.payload().unwrap_or_default();
    let (order, item) = match parser.parse(payload, decode) {
        Ok(parsed) => (
            parsed.timestamp().unwrap_or(Millis::MIN),
            Item::Record {
                parsed: parsed.into_owned(),
                arrived,
            },
        ),
        Err(reason) => (
            Millis::MIN,
            Item::Malformed {
                reason,
                payload: payload.get(..MAX_DLQ_PAYLOAD).unwrap_or(payload).to_vec(),
                original_len: payload.len(),
                key: message.key().map(<[u8]>::to_vec),
            },
        ),
    };
    Pending {
        order,
        offset: message.offset(),
        bytes: payload.len() + message.key().map_or(0, <[u8]>::len),
        item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InputConfig, KafkaConfig};
    use crate::decode::{InputFormat, DEFAULT_MAX_RECORD_BYTES};
    use crate::source::consumer_config;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;
    use std::sync::mpsc::sync_channel;

    /// Records of 64 KiB on three partitions, fetched at once (about 15 MB at hand): a batch
    /// goes once it holds `BATCH_BYTES`, long before `BATCH` records, so the channel holds a
    /// bounded amount whatever the records' size. (Unbounded, all of them came in one batch.)
    #[test]
    fn batches_are_bounded_by_bytes() {
        const RECORDS: usize = 79;
        const RECORD_BYTES: usize = 64 << 10;
        const PARTITIONS: i32 = 3;
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("t", PARTITIONS, 1).expect("topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        let payload = vec![b'x'; RECORD_BYTES];
        for partition in 0..PARTITIONS {
            for _ in 0..RECORDS {
                producer
                    .send(
                        BaseRecord::<(), _>::to("t")
                            .partition(partition)
                            .payload(&payload),
                    )
                    .map_err(|(error, _)| error)
                    .expect("queued");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flushed");

        let mut kafka = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            topic: "t".into(),
            ..KafkaConfig::default()
        };
        // One fetch brings every record, so the polls find them all at hand.
        for key in ["fetch.max.bytes", "max.partition.fetch.bytes"] {
            kafka.properties.insert(key.into(), "50000000".into());
        }
        let metrics = Metrics::new();
        let consumer: BaseConsumer<SourceContext> = consumer_config(&kafka)
            .create_with_context(SourceContext::new("t", Arc::clone(&metrics)))
            .expect("consumer");
        consumer.subscribe(&["t"]).expect("subscribed");
        // librdkafka's mock broker keeps about 5 MiB a partition: all of these.
        for partition in 0..PARTITIONS {
            assert_eq!(
                consumer
                    .fetch_watermarks("t", partition, Duration::from_secs(10))
                    .ok(),
                Some((0, RECORDS as i64))
            );
        }
        let (batches_in, batches) = sync_channel(BATCHES_IN_FLIGHT);
        let (_spare_in, spare) = sync_channel(BATCHES_IN_FLIGHT);
        let shutdown = Arc::new(AtomicBool::new(false));
        let intake = Intake {
            consumer: Arc::new(consumer),
            metrics,
            shutdown: Arc::clone(&shutdown),
            decode: DecodeOptions {
                now: now_millis(),
                max_future_skew: 0,
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            },
            new_parser: RecordParser::new(InputFormat::Json, &InputConfig::default()),
            batches: batches_in,
            spare,
        };
        let thread = std::thread::spawn(move || intake.run());

        let mut sizes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let total = PARTITIONS as usize * RECORDS * RECORD_BYTES;
        while sizes.iter().sum::<usize>() < total {
            let batch = batches
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("all records within a minute; got {sizes:?}"));
            let bytes = batch
                .iter()
                .map(|polled| match polled {
                    Polled::Record { pending, .. } => pending.bytes,
                    _ => 0,
                })
                .sum::<usize>();
            if bytes > 0 {
                sizes.push(bytes);
            }
        }
        shutdown.store(true, Ordering::Relaxed);
        drop(batches);
        thread.join().expect("intake stops");
        // Each batch stops at the record that reaches the bound.
        assert!(
            sizes
                .iter()
                .all(|&bytes| bytes < BATCH_BYTES + RECORD_BYTES),
            "{sizes:?}"
        );
        // And the bound is what ended them: a batch reached it.
        assert!(sizes.iter().any(|&bytes| bytes >= BATCH_BYTES), "{sizes:?}");
    }
}
