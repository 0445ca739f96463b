//! The Prometheus metrics of the service: one registry, every metric a named field, created
//! once at start. Conventions: `stormwatch_` prefix, base units (seconds), counters end in
//! `_total`, and labels take bounded values only (a thread key appears only for active storms,
//! capped in number and length).
//!
//! The engine keeps cumulative counts ([`EngineStats`]) and never touches this registry (it is
//! pure); the service shell turns them into metrics here: [`Metrics::record_engine`] adds the
//! deltas between two snapshots of the stats, so the hot path pays one call per batch instead of
//! one counter update per event. Latencies are HDR histograms recorded lock-free on the hot
//! thread ([`crate::latency`]). Every label series with a known value set is created at zero on
//! start, so rates and alerts work before the first event of a kind.

use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::decode::Malformed;
use crate::engine::{EngineStats, StormSnapshot};
use crate::latency::LatencySeries;
use crate::timefmt::Millis;
use prometheus::core::Collector;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Most `stormwatch_storm_reply_alls{thread_key}` series at once: active storms only.
pub const MAX_STORM_SERIES: usize = 50;
/// Longest thread key used as a label value (longer keys are cut).
pub const MAX_THREAD_KEY_LABEL: usize = 128;

/// Every metric the service exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// `stormwatch_events_total{outcome}`: counted, ignored, malformed, late, duplicate.
    pub events_total: IntCounterVec,
    /// `stormwatch_malformed_events_total{reason}`: the decoder's reason labels.
    pub malformed_total: IntCounterVec,
    /// `stormwatch_reply_alls_total`: reply-alls counted in windows.
    pub reply_alls_total: IntCounter,
    /// `stormwatch_storms_started_total{severity,rule}`.
    pub storms_started_total: IntCounterVec,
    /// `stormwatch_storms_escalated_total{rule}`.
    pub storms_escalated_total: IntCounterVec,
    /// `stormwatch_storms_ended_total{severity}`.
    pub storms_ended_total: IntCounterVec,
    /// `stormwatch_storms_active{severity}`.
    pub storms_active: IntGaugeVec,
    /// `stormwatch_storm_reply_alls{thread_key}`: last-hour reply-alls of each active storm.
    pub storm_reply_alls: IntGaugeVec,
    /// `stormwatch_tracked_threads`.
    pub tracked_threads: IntGauge,
    /// `stormwatch_map_text_bytes{map}`: bytes of keys, subjects and sender addresses the
    /// threads and the message-id records hold.
    pub map_text_bytes: IntGaugeVec,
    /// `stormwatch_window_bytes`: what the threads' reply-all windows and storms have
    /// allocated, estimated.
    pub window_bytes: IntGauge,
    /// `stormwatch_evictions_total{map}`: threads, message_ids, subjects, reply_alls, windows.
    pub evictions_total: IntCounterVec,
    /// `stormwatch_kafka_consumer_lag{partition}`: messages behind the high watermark.
    pub kafka_consumer_lag: IntGaugeVec,
    /// `stormwatch_alerts_sent_total{sink,outcome}`: delivered, retried, dropped, failed.
    pub alerts_sent_total: IntCounterVec,
    /// `stormwatch_alert_queue_depth{sink}`: alerts waiting in a sink's queue.
    pub alert_queue_depth: IntGaugeVec,
    /// `stormwatch_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `stormwatch_event_lag_seconds` (histogram) and `_quantile` (gauges): wall-clock time of
    /// processing minus the event's timestamp.
    pub event_lag: LatencySeries,
    /// `stormwatch_processing_latency_seconds` (histogram) and `_quantile` (gauges): time from a
    /// record's arrival from Kafka to the engine having processed it.
    pub processing_latency: LatencySeries,
    /// `stormwatch_stream_time_seconds`: the engine's stream time `T`, Unix seconds.
    pub stream_time_seconds: Gauge,
    /// `stormwatch_last_event_received_timestamp_seconds`: wall clock, Unix seconds, when the
    /// last event was read (alert on `time() - this` for a silent input).
    pub last_event_received_seconds: Gauge,
    /// `stormwatch_caught_up`: 1 when every assigned partition is read to its end.
    pub caught_up: IntGauge,
    /// `stormwatch_log_lines_ignored_total{reason}`: mail-log lines (`input.format` postfix or
    /// exchange-tracking) that are well formed but say nothing stormwatch uses.
    pub log_lines_ignored_total: IntCounterVec,
    /// `stormwatch_log_messages_dropped_total{reason}`: messages being assembled from mail-log
    /// lines that were dropped before they were complete.
    pub log_messages_dropped_total: IntCounterVec,
    /// `stormwatch_log_messages_emitted_early_total`: messages complete enough to emit that
    /// the assembly map evicted before their wait was over.
    pub log_messages_emitted_early_total: IntCounter,
    /// `stormwatch_log_messages_pending`: messages being assembled from mail-log lines.
    pub log_messages_pending: IntGauge,
    /// `stormwatch_log_messages_pending_bytes`: what the messages being assembled hold.
    pub log_messages_pending_bytes: IntGauge,
    /// The `storm_reply_alls` label values currently set, so a refresh removes only the series
    /// of storms no longer shown (no scrape ever sees the gauge emptied and refilled).
    storm_series: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Every `events_total` outcome, created at zero on start.
const OUTCOMES: [&str; 5] = ["counted", "ignored", "malformed", "late", "duplicate"];
/// Every `evictions_total` map, created at zero on start.
const EVICTION_MAPS: [&str; 5] = [
    "threads",
    "message_ids",
    "subjects",
    "reply_alls",
    "windows",
];
/// The contract's rules with their severities (section 3), created at zero on start.
const RULE_SEVERITIES: [(RuleName, Severity); 4] = [
    (RuleName::Exchange, Severity::Critical),
    (RuleName::Amplification, Severity::Critical),
    (RuleName::Early, Severity::Warning),
    (RuleName::Sustained, Severity::Warning),
];
/// Both severities.
const SEVERITIES: [Severity; 2] = [Severity::Warning, Severity::Critical];

/// The label value for a thread key: its first [`MAX_THREAD_KEY_LABEL`] Unicode code points.
pub fn thread_key_label(thread_key: &str) -> &str {
    match thread_key.char_indices().nth(MAX_THREAD_KEY_LABEL) {
        Some((end, _)) => &thread_key[..end],
        None => thread_key,
    }
}

/// `made`, registered: a metric that is not well formed or is registered twice is a bug in
/// this file, which every test that builds [`Metrics`] finds.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    made: prometheus::Result<M>,
) -> M {
    let metric = made.unwrap_or_else(|e| panic!("metric {name} is well-formed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registers once: {e}"));
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        name,
        IntGaugeVec::new(Opts::new(name, help), labels),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    registered(registry, name, Gauge::new(name, help))
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, name, IntCounter::new(name, help))
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, name, IntGauge::new(name, help))
}

fn latency(registry: &Registry, name: &str, help: &str) -> LatencySeries {
    let series = LatencySeries::new(name, help)
        .unwrap_or_else(|e| panic!("metric {name} is well-formed: {e}"));
    registry
        .register(Box::new(series.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registers once: {e}"));
    series
}

/// Epoch milliseconds as Unix seconds, the base unit of Prometheus timestamps.
fn unix_seconds(at: Millis) -> f64 {
    at as f64 / 1000.0
}

impl Metrics {
    /// Creates and registers every metric. The names are constants, so failure here is a
    /// programming error caught by the first test, never an input-dependent panic.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let reply_alls_total = int_counter(
            &registry,
            "stormwatch_reply_alls_total",
            "Reply-alls counted in thread windows.",
        );
        let tracked_threads = int_gauge(
            &registry,
            "stormwatch_tracked_threads",
            "Threads the engine tracks (bounded by limits.max_threads).",
        );
        let metrics = Metrics {
            events_total: counter_vec(
                &registry,
                "stormwatch_events_total",
                "Events read, by outcome (counted, ignored, malformed, late, duplicate).",
                &["outcome"],
            ),
            malformed_total: counter_vec(
                &registry,
                "stormwatch_malformed_events_total",
                "Malformed records, by reason.",
                &["reason"],
            ),
            reply_alls_total,
            storms_started_total: counter_vec(
                &registry,
                "stormwatch_storms_started_total",
                "Storms started, by severity and deciding rule.",
                &["severity", "rule"],
            ),
            storms_escalated_total: counter_vec(
                &registry,
                "stormwatch_storms_escalated_total",
                "Storms escalated from warning to critical, by rule.",
                &["rule"],
            ),
            storms_ended_total: counter_vec(
                &registry,
                "stormwatch_storms_ended_total",
                "Storms ended, by final severity.",
                &["severity"],
            ),
            map_text_bytes: gauge_vec(
                &registry,
                "stormwatch_map_text_bytes",
                "Bytes of keys, subjects and sender addresses the engine's maps hold, by map (threads: bounded by limits.max_thread_bytes; message_ids: by limits.max_message_id_bytes).",
                &["map"],
            ),
            window_bytes: int_gauge(
                &registry,
                "stormwatch_window_bytes",
                "Bytes the tracked threads' reply-all windows and storms have allocated, estimated (bounded by limits.max_window_bytes).",
            ),
            storms_active: gauge_vec(
                &registry,
                "stormwatch_storms_active",
                "Active storms, by severity.",
                &["severity"],
            ),
            storm_reply_alls: gauge_vec(
                &registry,
                "stormwatch_storm_reply_alls",
                "Reply-alls in the last hour on each active storm's thread (at most 50 series).",
                &["thread_key"],
            ),
            tracked_threads,
            evictions_total: counter_vec(
                &registry,
                "stormwatch_evictions_total",
                "Entries evicted at their cap, by map (threads, message_ids, subjects; reply_alls: reply-alls not counted in their thread's windows; windows: threads whose reply-all windows were forgotten at limits.max_window_bytes).",
                &["map"],
            ),
            kafka_consumer_lag: gauge_vec(
                &registry,
                "stormwatch_kafka_consumer_lag",
                "Messages between the consumer position and the high watermark, by partition.",
                &["partition"],
            ),
            alerts_sent_total: counter_vec(
                &registry,
                "stormwatch_alerts_sent_total",
                "Alert deliveries, by sink and outcome (delivered, retried, dropped, failed).",
                &["sink", "outcome"],
            ),
            alert_queue_depth: gauge_vec(
                &registry,
                "stormwatch_alert_queue_depth",
                "Alerts waiting in a sink's queue.",
                &["sink"],
            ),
            build_info: gauge_vec(
                &registry,
                "stormwatch_build_info",
                "Build information; always 1.",
                &["version"],
            ),
            event_lag: latency(
                &registry,
                "stormwatch_event_lag_seconds",
                "Wall-clock time of processing minus the event's timestamp.",
            ),
            processing_latency: latency(
                &registry,
                "stormwatch_processing_latency_seconds",
                "Time from a record's arrival from Kafka to the engine having processed it.",
            ),
            stream_time_seconds: gauge(
                &registry,
                "stormwatch_stream_time_seconds",
                "The engine's stream time T (the largest accepted event timestamp), Unix seconds.",
            ),
            last_event_received_seconds: gauge(
                &registry,
                "stormwatch_last_event_received_timestamp_seconds",
                "Wall-clock time, Unix seconds, when the last event was read.",
            ),
            caught_up: int_gauge(
                &registry,
                "stormwatch_caught_up",
                "1 when every assigned partition is read to its end, else 0.",
            ),
            log_lines_ignored_total: counter_vec(
                &registry,
                "stormwatch_log_lines_ignored_total",
                "Mail-log lines that are well formed but say nothing stormwatch uses, by reason.",
                &["reason"],
            ),
            log_messages_dropped_total: counter_vec(
                &registry,
                "stormwatch_log_messages_dropped_total",
                "Messages assembled from mail-log lines that were dropped before they were complete, by reason.",
                &["reason"],
            ),
            log_messages_emitted_early_total: int_counter(
                &registry,
                "stormwatch_log_messages_emitted_early_total",
                "Messages assembled from mail-log lines that were emitted before their wait was over, evicted from a full map (input.*.max_pending, input.*.max_pending_bytes).",
            ),
            log_messages_pending: int_gauge(
                &registry,
                "stormwatch_log_messages_pending",
                "Messages being assembled from mail-log lines (bounded by input.*.max_pending).",
            ),
            log_messages_pending_bytes: int_gauge(
                &registry,
                "stormwatch_log_messages_pending_bytes",
                "Bytes the messages being assembled from mail-log lines hold (bounded by input.*.max_pending_bytes).",
            ),
            storm_series: Mutex::new(Vec::new()),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics.create_known_series();
        Arc::new(metrics)
    }

    /// Creates at zero every series whose label values are known in advance.
    fn create_known_series(&self) {
        for outcome in OUTCOMES {
            self.events_total.with_label_values(&[outcome]);
        }
        for map in EVICTION_MAPS {
            self.evictions_total.with_label_values(&[map]);
        }
        for (rule, severity) in RULE_SEVERITIES {
            self.storms_started_total
                .with_label_values(&[severity.as_str(), rule.as_str()]);
            if severity == Severity::Critical {
                self.storms_escalated_total
                    .with_label_values(&[rule.as_str()]);
            }
        }
        for severity in SEVERITIES {
            self.storms_ended_total
                .with_label_values(&[severity.as_str()]);
            self.storms_active.with_label_values(&[severity.as_str()]);
        }
    }

    /// Adds what the engine did between two snapshots of its cumulative stats: events by
    /// outcome, reply-alls and evictions. A counter that went down (a new engine) adds nothing.
    pub fn record_engine(&self, previous: &EngineStats, current: &EngineStats) {
        let delta = |before: u64, after: u64| after.saturating_sub(before);
        let counted = delta(previous.counted, current.counted);
        for (outcome, n) in [
            ("counted", counted),
            ("ignored", delta(previous.ignored, current.ignored)),
            ("late", delta(previous.late, current.late)),
            ("duplicate", delta(previous.duplicate, current.duplicate)),
        ] {
            if n > 0 {
                self.events_total.with_label_values(&[outcome]).inc_by(n);
            }
        }
        if counted > 0 {
            self.reply_alls_total.inc_by(counted);
        }
        let reply_alls = delta(
            previous
                .reply_alls_dropped
                .saturating_add(previous.untracked_reply_alls),
            current
                .reply_alls_dropped
                .saturating_add(current.untracked_reply_alls),
        );
        for (map, n) in [
            (
                "threads",
                delta(previous.thread_evictions, current.thread_evictions),
            ),
            (
                "message_ids",
                delta(previous.message_id_evictions, current.message_id_evictions),
            ),
            (
                "subjects",
                delta(previous.subject_evictions, current.subject_evictions),
            ),
            ("reply_alls", reply_alls),
            (
                "windows",
                delta(previous.windows_forgotten, current.windows_forgotten),
            ),
        ] {
            if n > 0 {
                self.evictions_total.with_label_values(&[map]).inc_by(n);
            }
        }
    }

    /// Sets `storms_active{severity}` and `storm_reply_alls{thread_key}` from the active storms:
    /// one series for each of the [`MAX_STORM_SERIES`] storms with the most reply-alls in the
    /// last hour, thread keys cut by [`thread_key_label`]; series of storms no longer shown are
    /// removed.
    pub fn record_storms(&self, active: &[StormSnapshot]) {
        for severity in SEVERITIES {
            let count = active.iter().filter(|s| s.severity == severity).count();
            self.storms_active
                .with_label_values(&[severity.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }

        let mut top: Vec<&StormSnapshot> = active.iter().collect();
        top.sort_unstable_by(|a, b| {
            b.last_hour
                .reply_alls
                .cmp(&a.last_hour.reply_alls)
                .then_with(|| a.thread_key.cmp(&b.thread_key))
        });
        top.truncate(MAX_STORM_SERIES);
        // Two keys cut to the same label share one series, showing the larger count.
        let mut shown: BTreeMap<&str, i64> = BTreeMap::new();
        for storm in top {
            let value = i64::try_from(storm.last_hour.reply_alls).unwrap_or(i64::MAX);
            let entry = shown
                .entry(thread_key_label(&storm.thread_key))
                .or_insert(0);
            *entry = (*entry).max(value);
        }

        let mut current = self
            .storm_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for label in current.iter() {
            if !shown.contains_key(label.as_str()) {
                // Absent only if someone else removed it; nothing to do then.
                let _ = self.storm_reply_alls.remove_label_values(&[label]);
            }
        }
        for (label, value) in &shown {
            self.storm_reply_alls
                .with_label_values(&[label])
                .set(*value);
        }
        *current = shown.into_keys().map(str::to_owned).collect();
    }

    /// Counts one alert: `storms_started_total{severity,rule}`, `storms_escalated_total{rule}`
    /// or `storms_ended_total{severity}` by its kind.
    pub fn record_alert(&self, alert: &Alert) {
        match alert.kind {
            AlertKind::StormStarted => self
                .storms_started_total
                .with_label_values(&[alert.severity.as_str(), alert.rule.as_str()])
                .inc(),
            AlertKind::StormEscalated => self
                .storms_escalated_total
                .with_label_values(&[alert.rule.as_str()])
                .inc(),
            AlertKind::StormEnded => self
                .storms_ended_total
                .with_label_values(&[alert.severity.as_str()])
                .inc(),
        }
    }

    /// Counts one malformed record: `events_total{outcome="malformed"}` and
    /// `malformed_events_total{reason}`.
    pub fn record_malformed(&self, reason: Malformed) {
        self.events_total.with_label_values(&["malformed"]).inc();
        self.malformed_total
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// Sets `stream_time_seconds` from the engine's stream time (unchanged while it has none).
    pub fn record_stream_time(&self, stream_time: Option<Millis>) {
        if let Some(at) = stream_time {
            self.stream_time_seconds.set(unix_seconds(at));
        }
    }

    /// Sets `last_event_received_timestamp_seconds` to the wall-clock time `at`.
    pub fn record_event_received(&self, at: Millis) {
        self.last_event_received_seconds.set(unix_seconds(at));
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_by_convention() {
        let metrics = Metrics::new();
        metrics.events_total.with_label_values(&["counted"]).inc();
        let text = metrics.encode();
        assert!(text.contains("stormwatch_build_info{version=\""), "{text}");
        assert!(
            text.contains("stormwatch_events_total{outcome=\"counted\"} 1"),
            "{text}"
        );
        for family in metrics.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("stormwatch_"), "{name}");
            if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }

    fn storm(key: &str, severity: Severity, reply_alls: u64) -> StormSnapshot {
        StormSnapshot {
            thread_key: Arc::from(key),
            severity,
            rule: RuleName::Early,
            started_at: 1_000,
            last_reply_all: 2_000,
            last_hour: crate::engine::WindowStats {
                reply_alls,
                deliveries: reply_alls * 3000,
                distinct_senders: reply_alls,
            },
            subject: None,
        }
    }

    fn alert(kind: AlertKind, severity: Severity, rule: RuleName) -> Alert {
        Alert {
            kind,
            thread_key: Arc::from("t"),
            severity,
            rule,
            at: 0,
            started_at: 0,
            reply_alls: 3,
            distinct_senders: 3,
            deliveries: 9000,
            subject: None,
            block_until: 0,
            senders: None,
        }
    }

    fn storm_series(metrics: &Metrics) -> Vec<(String, i64)> {
        metrics
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "stormwatch_storm_reply_alls")
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_gauge().get_value() as i64,
                )
            })
            .collect()
    }

    #[test]
    fn known_series_exist_at_zero_and_new_families_are_registered() {
        let text = Metrics::new().encode();
        for line in [
            "stormwatch_events_total{outcome=\"late\"} 0",
            "stormwatch_evictions_total{map=\"reply_alls\"} 0",
            "stormwatch_storms_started_total{rule=\"exchange\",severity=\"critical\"} 0",
            "stormwatch_storms_escalated_total{rule=\"amplification\"} 0",
            "stormwatch_storms_ended_total{severity=\"warning\"} 0",
            "stormwatch_storms_active{severity=\"critical\"} 0",
            "# TYPE stormwatch_event_lag_seconds histogram",
            "# TYPE stormwatch_processing_latency_seconds histogram",
            "# TYPE stormwatch_event_lag_seconds_quantile gauge",
            "stormwatch_stream_time_seconds 0",
            "stormwatch_last_event_received_timestamp_seconds 0",
            "stormwatch_caught_up 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn engine_deltas_are_added() {
        let metrics = Metrics::new();
        let before = EngineStats {
            counted: 5,
            ignored: 10,
            late: 1,
            thread_evictions: 2,
            reply_alls_dropped: 1,
            ..EngineStats::default()
        };
        let after = EngineStats {
            counted: 8,
            ignored: 30,
            late: 1,
            duplicate: 4,
            thread_evictions: 3,
            message_id_evictions: 7,
            subject_evictions: 1,
            reply_alls_dropped: 2,
            untracked_reply_alls: 2,
            windows_forgotten: 5,
            ..EngineStats::default()
        };
        metrics.record_engine(&before, &after);
        let events = |o: &str| metrics.events_total.with_label_values(&[o]).get();
        let evictions = |m: &str| metrics.evictions_total.with_label_values(&[m]).get();
        assert_eq!(events("counted"), 3);
        assert_eq!(events("ignored"), 20);
        assert_eq!(events("late"), 0);
        assert_eq!(events("duplicate"), 4);
        assert_eq!(metrics.reply_alls_total.get(), 3);
        assert_eq!(evictions("threads"), 1);
        assert_eq!(evictions("message_ids"), 7);
        assert_eq!(evictions("subjects"), 1);
        assert_eq!(evictions("reply_alls"), 3);
        assert_eq!(evictions("windows"), 5);
        // A counter going backwards (a new engine) adds nothing.
        metrics.record_engine(&after, &EngineStats::default());
        assert_eq!(events("ignored"), 20);
    }

    #[test]
    fn storms_are_capped_cut_and_removed_when_over() {
        let metrics = Metrics::new();
        let mut active: Vec<StormSnapshot> = (0..MAX_STORM_SERIES as u64 + 5)
            .map(|i| storm(&format!("thread-{i:03}"), Severity::Warning, 10 + i))
            .collect();
        let long_key = "é".repeat(MAX_THREAD_KEY_LABEL + 10);
        active.push(storm(&long_key, Severity::Critical, 1000));
        metrics.record_storms(&active);
        let active_by = |s: &str| metrics.storms_active.with_label_values(&[s]).get();
        assert_eq!(active_by("warning"), MAX_STORM_SERIES as i64 + 5);
        assert_eq!(active_by("critical"), 1);
        let series = storm_series(&metrics);
        assert_eq!(series.len(), MAX_STORM_SERIES);
        let cut: String = "é".repeat(MAX_THREAD_KEY_LABEL);
        assert!(
            series.contains(&(cut, 1000)),
            "the long key is cut to its label"
        );
        // The smallest storms are the ones left out.
        assert!(!series.iter().any(|(k, _)| k == "thread-000"));
        assert!(series.iter().any(|(k, v)| k == "thread-054" && *v == 64));

        metrics.record_storms(&[storm("thread-054", Severity::Critical, 70)]);
        assert_eq!(storm_series(&metrics), [("thread-054".to_owned(), 70)]);
        assert_eq!(active_by("warning"), 0);
        assert_eq!(active_by("critical"), 1);

        metrics.record_storms(&[]);
        assert!(storm_series(&metrics).is_empty());
        assert_eq!(active_by("critical"), 0);
    }

    #[test]
    fn alerts_are_counted_by_kind() {
        let metrics = Metrics::new();
        metrics.record_alert(&alert(
            AlertKind::StormStarted,
            Severity::Warning,
            RuleName::Early,
        ));
        metrics.record_alert(&alert(
            AlertKind::StormEscalated,
            Severity::Critical,
            RuleName::Exchange,
        ));
        metrics.record_alert(&alert(
            AlertKind::StormEnded,
            Severity::Critical,
            RuleName::Exchange,
        ));
        let started = metrics
            .storms_started_total
            .with_label_values(&["warning", "early"])
            .get();
        let escalated = metrics
            .storms_escalated_total
            .with_label_values(&["exchange"])
            .get();
        let ended = metrics
            .storms_ended_total
            .with_label_values(&["critical"])
            .get();
        assert_eq!((started, escalated, ended), (1, 1, 1));
        let warning_ended = metrics
            .storms_ended_total
            .with_label_values(&["warning"])
            .get();
        assert_eq!(warning_ended, 0);
    }

    #[test]
    fn malformed_records_count_twice() {
        let metrics = Metrics::new();
        metrics.record_malformed(Malformed::NotJson);
        metrics.record_malformed(Malformed::NotJson);
        metrics.record_malformed(Malformed::FutureTimestamp);
        let events = metrics.events_total.with_label_values(&["malformed"]).get();
        assert_eq!(events, 3);
        let text = metrics.encode();
        assert!(
            text.contains("stormwatch_malformed_events_total{reason=\"not_json\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("stormwatch_malformed_events_total{reason=\"future_timestamp\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn times_are_unix_seconds() {
        let metrics = Metrics::new();
        metrics.record_stream_time(None);
        assert_eq!(metrics.stream_time_seconds.get(), 0.0);
        metrics.record_stream_time(Some(1_479_112_140_500));
        assert_eq!(metrics.stream_time_seconds.get(), 1_479_112_140.5);
        metrics.record_event_received(1_479_112_141_000);
        assert_eq!(metrics.last_event_received_seconds.get(), 1_479_112_141.0);
    }

    #[test]
    fn thread_key_labels_cut_on_code_points() {
        assert_eq!(thread_key_label("short"), "short");
        let long = "ß".repeat(MAX_THREAD_KEY_LABEL * 2);
        assert_eq!(
            thread_key_label(&long).chars().count(),
            MAX_THREAD_KEY_LABEL
        );
    }
}
