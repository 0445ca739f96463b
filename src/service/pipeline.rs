//! The detection thread: take parsed records from the intake thread ([`super::intake`]), merge
//! partitions in timestamp order, assemble mail-log lines into events, run the engine, hand
//! alerts to the durable producer and the sinks, send malformed records to the DLQ, commit what
//! is safe. One dedicated OS thread (not a tokio worker): the hot path never waits on a sink, an
//! HTTP request or an async runtime.

use super::announced::{Announced, AnnouncedAs, Verdict};
use super::intake::{Intake, Polled, BATCHES_IN_FLIGHT};
use super::producer::{DeadLetter, DurableOutput, Output, Settled};
use super::ServiceHandles;
use crate::alert::{Alert, AlertKind};
use crate::config::InputConfig;
use crate::decode::{
    CorrelationStats, Correlator, DecodeOptions, Dropped, LineOutcome, Malformed, Parsed,
    RecordParser, DEFAULT_MAX_RECORD_BYTES,
};
use crate::engine::{Engine, EngineStats, PrefetchedBatch};
use crate::event::Event;
use crate::latency::{LatencyError, LatencyRecorder};
use crate::sink::Sinks;
use crate::source::merge::{BufferBound, Merger, Pending};
use crate::source::offsets::OffsetTracker;
use crate::source::{AssignmentChange, SourceContext};
use crate::timefmt::{now_millis, Millis};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the detection thread waits for records when its merge holds none.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How long it waits for more when the merge holds records back for a partition with nothing
/// buffered: the merge's own deadline (`kafka.merge_max_wait`) is checked that often.
const HELD_WAIT: Duration = Duration::from_millis(1);

/// Records, and bytes of records as read, buffered per partition before it is paused: 20,000
/// records is about 5 MB of typical events; the byte bound stops a partition of large records
/// (up to 1 MiB each) from holding gigabytes.
const PAUSE_AT: BufferBound = BufferBound {
    records: 20_000,
    bytes: 16 << 20,
};
/// Records between two reads of the clock for the latency samples: a read costs about 35 ns, a
/// few percent of a record's processing, and 64 records take well under a millisecond.
const CLOCK_EVERY: u32 = 64;
/// Records taken from the merge at a time: the engine starts the map lookups of the batch's
/// events together, so that their cache misses overlap (`Engine::prefetch_batch`). As in
/// replay; a batch is only what the merge releases now, so nothing waits to fill one.
const INGEST_BATCH: usize = 32;
/// How often offsets are committed and metrics, the storm board and readiness refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for the producer to deliver what it holds.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// A record waiting in the merge.
pub(super) enum Item {
    /// A parsed record (a contract event, a mail-log line, an ignored line), with when it
    /// arrived.
    Record {
        parsed: Parsed<'static>,
        arrived: Instant,
    },
    /// A malformed record, kept for the DLQ (its head, when it is larger than the DLQ takes).
    Malformed {
        reason: Malformed,
        payload: Vec<u8>,
        original_len: usize,
        key: Option<Vec<u8>>,
    },
}

impl Item {
    /// The contract event this record carries, if it is one.
    fn event(&self) -> Option<&Event<'static>> {
        match self {
            Item::Record {
                parsed: Parsed::Event(event),
                ..
            } => Some(event),
            _ => None,
        }
    }
}

/// What the service hands the detection thread.
pub(super) struct Pipeline {
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub output: DurableOutput,
    pub settled: Receiver<Settled>,
    pub engine: Engine,
    pub announced: Announced,
    pub handles: ServiceHandles,
    pub topic: String,
    pub max_future_skew: Millis,
    pub merge_max_wait: Millis,
    pub holdback: Millis,
    pub input: InputConfig,
}

/// The detection thread's state while it runs.
struct Detector {
    /// Shared with the intake thread, which polls it; this thread commits, pauses and resumes.
    consumer: Arc<BaseConsumer<SourceContext>>,
    batches: Receiver<Vec<Polled>>,
    spare: SyncSender<Vec<Polled>>,
    intake: Option<JoinHandle<()>>,
    output: DurableOutput,
    settled: Receiver<Settled>,
    engine: Engine,
    announced: Announced,
    handles: ServiceHandles,
    topic: String,
    merger: Merger<Item>,
    /// Records the merge released, being processed (reused).
    ready: Vec<(i32, Pending<Item>)>,
    /// The key hashes of the events in `ready`, whose lookups the engine started.
    prefetched: PrefetchedBatch,
    offsets: OffsetTracker,
    /// Joins mail-log lines into events (passes JSON events through untouched).
    correlator: Correlator<u64>,
    /// The `input` section, to start the correlator afresh after a revocation.
    input: InputConfig,
    /// Events the correlator completed, waiting for the engine.
    assembled: Vec<Event<'static>>,
    /// The newest mail-log line time and the wall clock when it was processed: while caught
    /// up, the correlator's clock runs on from there, so a message whose header lines never
    /// come is still emitted when traffic stops.
    log_clock: Option<(Millis, Millis)>,
    previous_correlation: CorrelationStats,
    alerts: Vec<Alert>,
    /// Alerts since the last board update (the board keeps the ended ones).
    published: Vec<Alert>,
    previous_stats: EngineStats,
    lag: Result<LatencyRecorder, LatencyError>,
    processing: Result<LatencyRecorder, LatencyError>,
    clock: SampleClock,
    ever_caught_up: bool,
}

/// The clock the latency samples read: refreshed every [`CLOCK_EVERY`] records processed, and
/// at every loop turn, so a sample is at most a fraction of a millisecond stale.
struct SampleClock {
    instant: Instant,
    millis: Millis,
    uses: u32,
}

impl SampleClock {
    fn new() -> Self {
        Self {
            instant: Instant::now(),
            millis: now_millis(),
            uses: 0,
        }
    }

    fn refresh(&mut self) {
        *self = Self::new();
    }

    /// Counts a processed record (any kind: a long run of malformed records or unfinished
    /// mail-log lines must move the clock on too).
    fn tick(&mut self) {
        self.uses += 1;
        if self.uses >= CLOCK_EVERY {
            self.refresh();
        }
    }
}

impl Pipeline {
    /// Starts the intake thread, then runs detection until the shutdown flag is raised, then
    /// drains, flushes and commits. Gives the sinks back for their own (async) shutdown.
    pub fn run(self) -> Sinks {
        let (batches_in, batches) = sync_channel(BATCHES_IN_FLIGHT);
        let (spare, spare_out) = sync_channel(BATCHES_IN_FLIGHT);
        let intake = Intake {
            consumer: Arc::clone(&self.consumer),
            metrics: Arc::clone(&self.handles.metrics),
            shutdown: Arc::clone(&self.handles.shutdown),
            decode: DecodeOptions {
                now: now_millis(),
                max_future_skew: self.max_future_skew,
                max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            },
            new_parser: RecordParser::new(self.input.format, &self.input),
            batches: batches_in,
            spare: spare_out,
        };
        let intake = std::thread::Builder::new()
            .name("stormwatch-intake".into())
            .spawn(move || intake.run());
        let intake = match intake {
            Ok(handle) => Some(handle),
            Err(error) => {
                // Without it nothing arrives: the loop below sees the hang-up and stops.
                tracing::error!(%error, "cannot start the intake thread");
                None
            }
        };
        let mut detector = Detector {
            lag: self.handles.metrics.event_lag.recorder(),
            processing: self.handles.metrics.processing_latency.recorder(),
            consumer: self.consumer,
            batches,
            spare,
            intake,
            output: self.output,
            settled: self.settled,
            engine: self.engine,
            announced: self.announced,
            handles: self.handles,
            topic: self.topic,
            merger: Merger::new(self.merge_max_wait, PAUSE_AT),
            ready: Vec::with_capacity(INGEST_BATCH),
            prefetched: PrefetchedBatch::default(),
            offsets: OffsetTracker::new(self.holdback),
            correlator: Correlator::new(self.input.format, &self.input),
            input: self.input.clone(),
            assembled: Vec::new(),
            log_clock: None,
            previous_correlation: CorrelationStats::default(),
            alerts: Vec::new(),
            published: Vec::new(),
            previous_stats: EngineStats::default(),
            clock: SampleClock::new(),
            ever_caught_up: false,
        };
        detector.run();
        detector.handles.sinks
    }
}

impl Detector {
    fn run(&mut self) {
        let mut last_housekeeping = Instant::now();
        while !self.handles.shutdown.load(Ordering::Relaxed) {
            self.receive();
            self.flow_control();
            self.clock.refresh();
            let now = self.clock.millis;
            self.engine.set_arrival_time(now);
            self.process_released(now);
            if self.merger.caught_up() {
                if !self.ever_caught_up {
                    self.finish_rebuild();
                }
                self.ever_caught_up = true;
                let seq = self.offsets.current_seq();
                self.expire_idle_log_messages(seq);
                self.engine.end_idle_storms(now_millis(), &mut self.alerts);
                self.emit_alerts(seq);
            }
            self.drain_settled();
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                last_housekeeping = Instant::now();
                self.housekeeping(CommitMode::Async);
            }
        }
        // Records still buffered are not processed: they are not committed either, so the next
        // start reads them again, in order (processing them now, without the merge's waiting
        // rule, could end storms early).
        tracing::info!(buffered = self.merger.buffered(), "shutting down");
        self.stop_intake();
        if let Err(error) = self.output.flush(SHUTDOWN_FLUSH) {
            tracing::warn!(%error, in_flight = self.output.in_flight(), "not every record was delivered before shutdown");
        }
        self.drain_settled();
        self.housekeeping(CommitMode::Sync);
        self.consumer.unsubscribe();
        tracing::info!("detection thread stopped");
    }

    /// The first time the input is read to its end after a start: the engine's window is
    /// rebuilt, so alerts are no longer checked against the alerts topic. Storms the topic shows
    /// ended that the rebuild re-derived without their end are ended without a second alert.
    /// Storms the topic shows open that the rebuild did not re-derive are carried on by the
    /// engine, so they end (and their `storm_ended` is sent) by the usual rules: at once when
    /// stream time is already past their quiet period.
    fn finish_rebuild(&mut self) {
        let seq = self.offsets.current_seq();
        let rebuilt = self.announced.finish_rebuild();
        let mut settled = 0;
        for (thread_key, started_at) in rebuilt.ended {
            if self.engine.settle_ended_storm(&thread_key, started_at) {
                settled += 1;
                tracing::info!(%thread_key, "a storm the alerts topic shows ended was re-derived without its end; ended here too, without a second alert");
            }
        }
        let mut resumed = 0;
        for storm in rebuilt.open {
            let thread_key = storm.thread_key.clone();
            if self.engine.resume_storm(storm, &mut self.alerts) {
                resumed += 1;
                tracing::info!(%thread_key, "a storm announced before the restart was not re-derived; carried on until it ends");
            }
        }
        self.emit_alerts(seq);
        tracing::info!(
            active = self.engine.active_storms().len(),
            resumed,
            settled,
            "state rebuilt; caught up"
        );
    }

    /// Takes the next batch from the intake thread into the partition buffers, waiting for one
    /// only as long as nothing else is due.
    fn receive(&mut self) {
        let wait = if self.merger.buffered() == 0 {
            IDLE_WAIT
        } else {
            HELD_WAIT
        };
        let mut batch = match self.batches.recv_timeout(wait) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                if !self.handles.shutdown.load(Ordering::Relaxed) {
                    tracing::error!("the intake thread stopped: no records can arrive; stopping");
                    self.handles.readiness.set_shutting_down();
                    self.handles.shutdown.store(true, Ordering::Relaxed);
                }
                return;
            }
        };
        let now = now_millis();
        for polled in batch.drain(..) {
            match polled {
                Polled::Record { partition, pending } => self.merger.push(partition, pending, now),
                Polled::End { partition } => self.merger.reached_end(partition, now),
                Polled::Assignment(change) => self.apply_assignment_change(change),
            }
        }
        // Back for reuse; if the intake thread has spares enough, it is simply dropped.
        let _ = self.spare.try_send(batch);
    }

    /// Stops the intake thread: hanging up makes a blocked hand-over return, and the shutdown
    /// flag ends its loop within one idle poll.
    fn stop_intake(&mut self) {
        let (_, hung_up) = sync_channel(0);
        drop(std::mem::replace(&mut self.batches, hung_up));
        if let Some(intake) = self.intake.take() {
            if intake.join().is_err() {
                tracing::error!("the intake thread panicked");
            }
        }
    }

    /// Applies an assignment change at its place in the stream of polled records.
    fn apply_assignment_change(&mut self, change: AssignmentChange) {
        match change {
            AssignmentChange::Assigned(partitions) => {
                // librdkafka keeps a pause across a revocation, and this thread may have paused
                // a partition the intake thread had already seen revoked and assigned again; the
                // merge starts every assigned partition unpaused, so the consumer must too.
                self.set_paused(&partitions, false);
                self.merger.assign(partitions, now_millis())
            }
            AssignmentChange::Revoked(partitions) => {
                let dropped = self.merger.revoke(partitions.iter().copied());
                self.offsets.revoke(partitions);
                // Everything revoked (the default, eager rebalance): the lines of messages
                // being assembled had their offsets held back, so all are read again. Start
                // assembling afresh, or a re-read line would count twice (an Exchange
                // EXPAND row's members, say). After an incremental revocation the kept
                // partitions are not re-read, so their lines stay.
                if self.merger.assigned().next().is_none() {
                    if self.correlator.pending() > 0 {
                        tracing::info!(
                            pending = self.correlator.pending(),
                            "messages being assembled are dropped; their lines will be read again"
                        );
                    }
                    self.correlator = Correlator::new(self.input.format, &self.input);
                    self.previous_correlation = CorrelationStats::default();
                }
                if dropped > 0 {
                    tracing::info!(
                        dropped,
                        "buffered records of revoked partitions dropped; they will be read again"
                    );
                }
            }
        }
        self.handles
            .readiness
            .set_assigned(self.merger.assigned().next().is_some());
    }

    /// Pauses partitions whose buffers are full and resumes drained ones.
    fn flow_control(&mut self) {
        let advice = self.merger.flow_control();
        self.set_paused(&advice.pause, true);
        self.set_paused(&advice.resume, false);
    }

    fn set_paused(&self, partitions: &[i32], pause: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition(&self.topic, p);
        }
        let result = if pause {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(error) = result {
            tracing::warn!(%error, pause, "pausing or resuming partitions failed");
        }
    }

    /// Processes what the merge releases at `now`, in batches of up to [`INGEST_BATCH`] records
    /// whose events' lookups are started together. Each record is still processed in merge
    /// order, one at a time, with its effects (alerts, DLQ records) sent before the next.
    fn process_released(&mut self, now: Millis) {
        let mut ready = std::mem::take(&mut self.ready);
        loop {
            let merger = &mut self.merger;
            ready.extend(std::iter::from_fn(|| merger.next(now)).take(INGEST_BATCH));
            if ready.is_empty() {
                break;
            }
            self.engine.prefetch_batch(
                ready.iter().filter_map(|(_, pending)| pending.item.event()),
                &mut self.prefetched,
            );
            for (partition, pending) in ready.drain(..) {
                self.process(partition, pending);
            }
        }
        self.ready = ready;
    }

    fn process(&mut self, partition: i32, pending: Pending<Item>) {
        self.clock.tick();
        match pending.item {
            Item::Record { parsed, arrived } => {
                let seq = self
                    .offsets
                    .processed(partition, pending.offset, parsed.timestamp());
                if let Parsed::Event(event) = &parsed {
                    self.engine
                        .ingest_prefetched(event, &mut self.prefetched, &mut self.alerts);
                    self.ingested(event, arrived, seq);
                    return;
                }
                let outcome = self.correlator.accept(&parsed, seq, &mut self.assembled);
                if let LineOutcome::Ignored(reason) = outcome {
                    self.handles
                        .metrics
                        .log_lines_ignored_total
                        .with_label_values(&[reason.label()])
                        .inc();
                }
                if let Some(at) = parsed.timestamp() {
                    let newest = self.log_clock.map_or(at, |(newest, _)| newest.max(at));
                    self.log_clock = Some((newest, now_millis()));
                    self.correlator.expire(newest, &mut self.assembled);
                }
                self.ingest_assembled(arrived, seq);
            }
            Item::Malformed {
                reason,
                payload,
                original_len,
                key,
            } => {
                let seq = self.offsets.processed(partition, pending.offset, None);
                self.handles.metrics.record_malformed(reason);
                let letter = DeadLetter {
                    payload: &payload,
                    original_len,
                    key: key.as_deref(),
                    reason,
                    partition,
                    offset: pending.offset,
                };
                let sent = self.output.send_dlq(&letter, seq);
                self.offsets.produced(seq, self.engine.stream_time());
                if let Err(error) = sent {
                    tracing::error!(%error, partition, offset = pending.offset, "a malformed record could not be sent to the DLQ");
                    self.output_failed("dlq");
                }
            }
        }
    }

    /// Records the latency of an event the engine has just ingested and sends what it caused,
    /// tagged with record `seq`.
    fn ingested(&mut self, event: &Event<'_>, arrived: Instant, seq: u64) {
        if let Ok(recorder) = &mut self.processing {
            recorder.record(self.clock.instant.saturating_duration_since(arrived));
        }
        if let Ok(recorder) = &mut self.lag {
            recorder.record_millis_between(event.timestamp, self.clock.millis);
        }
        self.emit_alerts(seq);
    }

    /// Runs the events the correlator completed through the engine.
    fn ingest_assembled(&mut self, arrived: Instant, seq: u64) {
        if self.assembled.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.assembled);
        for event in &events {
            self.engine.ingest(event, &mut self.alerts);
            self.ingested(event, arrived, seq);
        }
        self.assembled = events;
        self.assembled.clear();
    }

    /// While caught up, moves the correlator's clock on by the wall-clock time since the newest
    /// mail-log line (not to the wall clock itself: log timestamps may be skewed), so messages
    /// waiting for header lines that never come are emitted when traffic stops.
    fn expire_idle_log_messages(&mut self, seq: u64) {
        let Some((newest, processed_at)) = self.log_clock else {
            return;
        };
        let at = newest.saturating_add(now_millis().saturating_sub(processed_at).max(0));
        self.correlator.expire(at, &mut self.assembled);
        self.ingest_assembled(Instant::now(), seq);
    }

    /// Makes a re-derived storm, in the engine and in its `alert`, carry what the alerts topic
    /// has for it: its start (so later alerts carry the same `started_at` and `storm_id`) and,
    /// unless the rebuild made it more severe, its severity and rule (so the rebuild's warning
    /// does not escalate it a second time, and a re-offered alert keeps Alertmanager's labels).
    fn adopt_announced(&mut self, alert: &mut Alert, announced: &AnnouncedAs) {
        self.engine.adopt_announced_storm(
            &alert.thread_key,
            alert.started_at,
            announced.started_at,
            announced.severity,
            announced.rule,
        );
        if alert.started_at != announced.started_at {
            alert.block_until += announced.started_at - alert.started_at;
            alert.started_at = announced.started_at;
        }
        if announced.severity >= alert.severity {
            alert.severity = announced.severity;
            alert.rule = announced.rule;
        }
    }

    /// Sends the engine's new alerts (tagged with input record `seq`) to the alerts topic and
    /// the sinks, unless the alerts topic already has them (after a restart).
    fn emit_alerts(&mut self, seq: u64) {
        let alerts = std::mem::take(&mut self.alerts);
        for mut alert in alerts {
            match self.announced.check(&alert) {
                Verdict::Publish => {}
                Verdict::PublishAsEscalation(announced) => {
                    self.adopt_announced(&mut alert, &announced);
                    // Alertmanager learns the announced warning first, so that the escalation
                    // resolves it, as it would have without the restart.
                    let mut warning = alert.clone();
                    warning.kind = AlertKind::StormStarted;
                    warning.severity = announced.severity;
                    warning.rule = announced.rule;
                    self.handles.sinks.refresh(&warning);
                    alert.kind = AlertKind::StormEscalated;
                    tracing::info!(thread_key = %alert.thread_key, "re-derived as critical, announced before the restart as a warning: sent as its escalation");
                }
                Verdict::AlreadyAnnounced(announced) => {
                    self.adopt_announced(&mut alert, &announced);
                    tracing::info!(kind = alert.kind.as_str(), thread_key = %alert.thread_key, "already announced before the restart; not sent again");
                    // Alertmanager forgets an alert it is not told about again: an open storm's
                    // is re-offered to keep it firing. One the topic shows ended is not: that
                    // would fire it again, until its re-derived end (if the input has one).
                    if !announced.ended {
                        self.handles.sinks.refresh(&alert);
                    }
                    continue;
                }
            }
            let sent = self.output.send_alert(&alert, seq);
            self.offsets.produced(seq, self.engine.stream_time());
            if let Err(error) = sent {
                tracing::error!(%error, thread_key = %alert.thread_key, "an alert could not be produced");
                self.output_failed("kafka");
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
            self.handles.metrics.record_alert(&alert);
            self.handles.sinks.offer(&alert);
            if let Some(printer) = &self.handles.alert_printer {
                printer(&alert);
            }
            if alert.kind == AlertKind::StormEnded {
                self.published.push(alert);
            }
        }
    }

    /// Applies the producer's delivery reports. A failed record's effect stays in flight for
    /// good, so no offset passes it (see `producer`).
    fn drain_settled(&mut self) {
        while let Ok(report) = self.settled.try_recv() {
            let sink = match report.output {
                Output::Alerts => "kafka",
                Output::Dlq => "dlq",
            };
            if report.delivered {
                self.offsets.settled(report.seq);
                self.handles
                    .metrics
                    .alerts_sent_total
                    .with_label_values(&[sink, "delivered"])
                    .inc();
            } else {
                self.output_failed(sink);
            }
        }
    }

    /// A durable record was refused for good: counted, and the instance is not ready; its
    /// effect stays in flight, holding offsets back until a restart makes it again.
    fn output_failed(&self, sink: &str) {
        self.handles
            .metrics
            .alerts_sent_total
            .with_label_values(&[sink, "failed"])
            .inc();
        self.handles.readiness.set_output_failed();
    }

    /// Commits what is safe; refreshes metrics, the storm board and readiness.
    fn housekeeping(&mut self, mode: CommitMode) {
        // Records absorbed into messages still being assembled are not committed either.
        let points = self.offsets.commit_points(
            self.engine.stream_time(),
            self.correlator.oldest_pending_token(),
        );
        if !points.is_empty() {
            // Only partitions the consumer holds now: the intake thread may have seen a
            // revocation that this thread has not applied yet, and a commit for a partition
            // another member now owns would overwrite its progress.
            let held: Vec<i32> = match self.consumer.assignment() {
                Ok(assignment) => assignment
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the assignment; no commit this time");
                    Vec::new()
                }
            };
            let mut list = TopicPartitionList::new();
            for (partition, offset) in points.iter().filter(|(p, _)| held.contains(p)) {
                if let Err(error) =
                    list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                {
                    tracing::warn!(%error, "bad commit offset");
                }
            }
            if list.count() > 0 {
                if let Err(error) = self.consumer.commit(&list, mode) {
                    tracing::warn!(%error, "offset commit failed; the next one retries it");
                }
            }
        }
        let metrics = &self.handles.metrics;
        let stats = self.engine.stats().clone();
        metrics.record_engine(&self.previous_stats, &stats);
        self.previous_stats = stats;
        let active = self.engine.active_storms();
        metrics.record_storms(&active);
        metrics
            .tracked_threads
            .set(i64::try_from(self.engine.tracked_threads()).unwrap_or(i64::MAX));
        for (map, bytes) in [
            ("threads", self.engine.thread_bytes()),
            ("message_ids", self.engine.message_id_bytes()),
        ] {
            metrics
                .map_text_bytes
                .with_label_values(&[map])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        metrics
            .window_bytes
            .set(i64::try_from(self.engine.window_bytes()).unwrap_or(i64::MAX));
        metrics.record_stream_time(self.engine.stream_time());
        metrics.caught_up.set(i64::from(self.merger.caught_up()));
        let correlation = self.correlator.stats();
        for reason in Dropped::ALL {
            let new = correlation
                .dropped(reason)
                .saturating_sub(self.previous_correlation.dropped(reason));
            if new > 0 {
                metrics
                    .log_messages_dropped_total
                    .with_label_values(&[reason.label()])
                    .inc_by(new);
            }
        }
        metrics.log_messages_emitted_early_total.inc_by(
            correlation
                .evicted_emitted
                .saturating_sub(self.previous_correlation.evicted_emitted),
        );
        self.previous_correlation = correlation;
        metrics
            .log_messages_pending
            .set(i64::try_from(self.correlator.pending()).unwrap_or(i64::MAX));
        metrics
            .log_messages_pending_bytes
            .set(i64::try_from(self.correlator.pending_bytes()).unwrap_or(i64::MAX));
        for recorder in [&mut self.lag, &mut self.processing].into_iter().flatten() {
            recorder.flush();
        }
        self.handles.board.update(active, self.published.iter());
        self.published.clear();
        self.handles.readiness.set_caught_up(self.ever_caught_up);
    }
}
