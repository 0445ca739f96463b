//! The detection thread: poll Kafka, decode, merge partitions in timestamp order, run the
//! engine, hand alerts to the durable producer and the sinks, send malformed records to the DLQ,
//! commit what is safe. One dedicated OS thread (not a tokio worker): the hot path never waits
//! on a sink, an HTTP request or an async runtime.

use super::producer::{DurableOutput, Output, Settled};
use super::ServiceHandles;
use crate::alert::Alert;
use crate::decode::{decode_json, DecodeOptions, Malformed, DEFAULT_MAX_RECORD_BYTES};
use crate::engine::{Engine, EngineStats};
use crate::event::Event;
use crate::latency::LatencyRecorder;
use crate::source::merge::{Merger, Pending};
use crate::source::offsets::OffsetTracker;
use crate::source::{AssignmentChange, SourceContext};
use crate::timefmt::{now_millis, Millis};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Most records taken from the consumer per loop turn.
const POLL_BATCH: usize = 10_000;
/// How long an idle poll blocks.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Records buffered per partition before it is paused.
const PAUSE_AT: usize = 20_000;
/// How often offsets are committed and metrics, the storm board and readiness refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for the producer to deliver what it holds.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// A record waiting in the merge.
pub(super) enum Item {
    /// A decoded event, with when it arrived.
    Event {
        event: Event<'static>,
        arrived: Instant,
    },
    /// A malformed record, kept whole for the DLQ.
    Malformed {
        reason: Malformed,
        payload: Vec<u8>,
        key: Option<Vec<u8>>,
    },
}

/// The detection thread's state.
pub(super) struct Pipeline {
    pub consumer: BaseConsumer<SourceContext>,
    pub output: DurableOutput,
    pub settled: Receiver<Settled>,
    pub engine: Engine,
    pub handles: ServiceHandles,
    pub topic: String,
    pub max_future_skew: Millis,
    pub merge_max_wait: Millis,
    pub holdback: Millis,
}

impl Pipeline {
    /// Runs until the shutdown flag is raised, then drains, flushes and commits. Gives the
    /// sinks back for their own (async) shutdown.
    pub fn run(self) -> crate::sink::Sinks {
        let Pipeline {
            consumer,
            output,
            settled,
            mut engine,
            handles,
            topic,
            max_future_skew,
            merge_max_wait,
            holdback,
        } = self;
        let mut merger: Merger<Item> = Merger::new(merge_max_wait, PAUSE_AT);
        let mut offsets = OffsetTracker::new(holdback);
        let mut state = LoopState {
            alerts: Vec::new(),
            ended: Vec::new(),
            previous_stats: EngineStats::default(),
            lag: handles.metrics.event_lag.recorder(),
            processing: handles.metrics.processing_latency.recorder(),
            ever_caught_up: false,
        };
        let mut decode = DecodeOptions {
            now: now_millis(),
            max_future_skew,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        };
        let mut last_housekeeping = Instant::now();
        while !handles.shutdown.load(Ordering::Relaxed) {
            decode.now = now_millis();
            let timeout = if merger.buffered() == 0 {
                IDLE_POLL
            } else {
                Duration::ZERO
            };
            poll_batch(&consumer, &mut merger, &decode, timeout, &handles);
            apply_assignment_changes(&consumer, &mut merger, &mut offsets, &handles);
            flow_control(&consumer, &topic, &mut merger);
            let now = now_millis();
            engine.set_arrival_time(now);
            while let Some((partition, pending)) = merger.next(now) {
                process(
                    partition,
                    pending,
                    &mut engine,
                    &output,
                    &mut offsets,
                    &handles,
                    &mut state,
                );
            }
            if merger.caught_up() {
                state.ever_caught_up = true;
                let seq = offsets.current_seq();
                engine.end_idle_storms(now_millis(), &mut state.alerts);
                emit_alerts(&mut state, seq, &output, &mut offsets, &handles);
            }
            drain_settled(&settled, &mut offsets, &handles);
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                last_housekeeping = Instant::now();
                housekeeping(
                    &consumer,
                    &topic,
                    &engine,
                    &merger,
                    &mut offsets,
                    &handles,
                    &mut state,
                    CommitMode::Async,
                );
            }
        }
        tracing::info!("shutting down: draining buffered records");
        while let Some((partition, pending)) = merger.next(Millis::MAX) {
            process(
                partition,
                pending,
                &mut engine,
                &output,
                &mut offsets,
                &handles,
                &mut state,
            );
        }
        if let Err(error) = output.flush(SHUTDOWN_FLUSH) {
            tracing::warn!(%error, in_flight = output.in_flight(), "not every record was delivered before shutdown");
        }
        drain_settled(&settled, &mut offsets, &handles);
        housekeeping(
            &consumer,
            &topic,
            &engine,
            &merger,
            &mut offsets,
            &handles,
            &mut state,
            CommitMode::Sync,
        );
        consumer.unsubscribe();
        tracing::info!("detection thread stopped");
        handles.sinks
    }
}

/// Per-loop scratch and running values.
struct LoopState {
    alerts: Vec<Alert>,
    ended: Vec<Alert>,
    previous_stats: EngineStats,
    lag: Result<LatencyRecorder, crate::latency::LatencyError>,
    processing: Result<LatencyRecorder, crate::latency::LatencyError>,
    ever_caught_up: bool,
}

fn poll_batch(
    consumer: &BaseConsumer<SourceContext>,
    merger: &mut Merger<Item>,
    decode: &DecodeOptions,
    first_timeout: Duration,
    handles: &ServiceHandles,
) {
    let mut timeout = first_timeout;
    for _ in 0..POLL_BATCH {
        let Some(result) = consumer.poll(timeout) else {
            break;
        };
        timeout = Duration::ZERO;
        match result {
            Ok(message) => {
                let arrived = Instant::now();
                handles
                    .metrics
                    .last_event_received_seconds
                    .set(decode.now as f64 / 1000.0);
                let payload = message.payload().unwrap_or_default();
                let pending = match decode_json(payload, decode) {
                    Ok(event) => Pending {
                        order: event.timestamp,
                        offset: message.offset(),
                        item: Item::Event {
                            event: event.into_owned(),
                            arrived,
                        },
                    },
                    Err(reason) => Pending {
                        order: Millis::MIN,
                        offset: message.offset(),
                        item: Item::Malformed {
                            reason,
                            payload: payload.to_vec(),
                            key: message.key().map(<[u8]>::to_vec),
                        },
                    },
                };
                merger.push(message.partition(), pending, decode.now);
            }
            Err(KafkaError::PartitionEOF(partition)) => merger.reached_end(partition),
            Err(error) => tracing::warn!(%error, "consumer error"),
        }
    }
}

fn apply_assignment_changes(
    consumer: &BaseConsumer<SourceContext>,
    merger: &mut Merger<Item>,
    offsets: &mut OffsetTracker,
    handles: &ServiceHandles,
) {
    for change in consumer.context().take_changes() {
        match change {
            AssignmentChange::Assigned(partitions) => merger.assign(partitions, now_millis()),
            AssignmentChange::Revoked(partitions) => {
                let dropped = merger.revoke(partitions.iter().copied());
                offsets.revoke(partitions);
                if dropped > 0 {
                    tracing::info!(
                        dropped,
                        "buffered records of revoked partitions dropped; they will be read again"
                    );
                }
            }
        }
    }
    handles.readiness_assigned(merger.assigned().next().is_some());
}

fn flow_control(consumer: &BaseConsumer<SourceContext>, topic: &str, merger: &mut Merger<Item>) {
    let advice = merger.flow_control();
    let list = |partitions: &[i32]| {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(topic, p);
        }
        tpl
    };
    if !advice.pause.is_empty() {
        if let Err(error) = consumer.pause(&list(&advice.pause)) {
            tracing::warn!(%error, "pausing partitions failed");
        }
    }
    if !advice.resume.is_empty() {
        if let Err(error) = consumer.resume(&list(&advice.resume)) {
            tracing::warn!(%error, "resuming partitions failed");
        }
    }
}

fn process(
    partition: i32,
    pending: Pending<Item>,
    engine: &mut Engine,
    output: &DurableOutput,
    offsets: &mut OffsetTracker,
    handles: &ServiceHandles,
    state: &mut LoopState,
) {
    match pending.item {
        Item::Event { event, arrived } => {
            let seq = offsets.processed(partition, pending.offset, Some(event.timestamp));
            engine.ingest(&event, &mut state.alerts);
            if let Ok(recorder) = &mut state.processing {
                recorder.record(arrived.elapsed());
            }
            if let Ok(recorder) = &mut state.lag {
                recorder.record_millis_between(event.timestamp, now_millis());
            }
            emit_alerts(state, seq, output, offsets, handles);
        }
        Item::Malformed {
            reason,
            payload,
            key,
        } => {
            let seq = offsets.processed(partition, pending.offset, None);
            handles.metrics.record_malformed(reason);
            match output.send_dlq(
                &payload,
                key.as_deref(),
                reason,
                partition,
                pending.offset,
                seq,
            ) {
                Ok(()) => offsets.produced(seq),
                Err(error) => {
                    tracing::error!(%error, partition, offset = pending.offset, "a malformed record could not be sent to the DLQ")
                }
            }
        }
    }
}

fn emit_alerts(
    state: &mut LoopState,
    seq: u64,
    output: &DurableOutput,
    offsets: &mut OffsetTracker,
    handles: &ServiceHandles,
) {
    for alert in state.alerts.drain(..) {
        match output.send_alert(&alert, seq) {
            Ok(()) => offsets.produced(seq),
            Err(error) => {
                tracing::error!(%error, thread_key = %alert.thread_key, "an alert could not be produced")
            }
        }
        tracing::info!(
            kind = alert.kind.as_str(),
            thread_key = %alert.thread_key,
            severity = alert.severity.as_str(),
            rule = alert.rule.as_str(),
            reply_alls = alert.reply_alls,
            deliveries = alert.deliveries,
            "storm alert"
        );
        handles.metrics.record_alert(&alert);
        handles.sinks.offer(&alert);
        if let Some(printer) = &handles.alert_printer {
            printer(&alert);
        }
        if alert.kind == crate::alert::AlertKind::StormEnded {
            state.ended.push(alert);
        }
    }
}

fn drain_settled(
    settled: &Receiver<Settled>,
    offsets: &mut OffsetTracker,
    handles: &ServiceHandles,
) {
    while let Ok(report) = settled.try_recv() {
        offsets.settled(report.seq);
        let sink = match report.output {
            Output::Alerts => "kafka",
            Output::Dlq => "dlq",
        };
        let outcome = if report.delivered {
            "delivered"
        } else {
            "failed"
        };
        handles
            .metrics
            .alerts_sent_total
            .with_label_values(&[sink, outcome])
            .inc();
    }
}

#[allow(clippy::too_many_arguments)]
fn housekeeping(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    engine: &Engine,
    merger: &Merger<Item>,
    offsets: &mut OffsetTracker,
    handles: &ServiceHandles,
    state: &mut LoopState,
    mode: CommitMode,
) {
    let points = offsets.commit_points(engine.stream_time());
    if !points.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in &points {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::warn!(%error, "bad commit offset");
            }
        }
        if let Err(error) = consumer.commit(&tpl, mode) {
            tracing::warn!(%error, "offset commit failed; it is retried with the next one");
        }
    }
    let stats = engine.stats().clone();
    handles.metrics.record_engine(&state.previous_stats, &stats);
    state.previous_stats = stats;
    let active = engine.active_storms();
    handles.metrics.record_storms(&active);
    handles
        .metrics
        .tracked_threads
        .set(i64::try_from(engine.tracked_threads()).unwrap_or(i64::MAX));
    if let Some(t) = engine.stream_time() {
        handles.metrics.stream_time_seconds.set(t as f64 / 1000.0);
    }
    let caught_up = merger.caught_up();
    handles.metrics.caught_up.set(i64::from(caught_up));
    for recorder in [&mut state.lag, &mut state.processing]
        .into_iter()
        .flatten()
    {
        recorder.flush();
    }
    handles.board.update(active, state.ended.iter());
    state.ended.clear();
    handles.readiness_caught_up(state.ever_caught_up);
}
