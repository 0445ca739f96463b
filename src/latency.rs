//! Latency histograms for the hot path: HDR histograms recorded without locks, exported as
//! Prometheus histograms.
//!
//! The detection thread handles millions of events a second, so a latency sample must cost no
//! more than an array increment: no atomics, no lock, no allocation. The split that allows it:
//!
//! - a [`LatencyRecorder`] is owned by the hot thread and records into its own
//!   `hdrhistogram::Histogram<u64>` (a plain `record`); once per batch (or per second) the thread
//!   calls [`LatencyRecorder::flush`], which takes a mutex once, merges the local histogram into
//!   the shared one and resets the local one;
//! - a [`LatencySeries`] is the shared side, registered in the Prometheus registry as a
//!   [`prometheus::core::Collector`]. On scrape it builds, from the shared HDR histogram:
//!   - `<name>`, a real Prometheus histogram with cumulative buckets at fixed second boundaries
//!     ([`BUCKETS_SECONDS`]), `_sum` and `_count`, so `histogram_quantile()` and rates work as
//!     with any client library histogram;
//!   - `<name>_quantile{quantile="0.5"|"0.99"|"0.999"}`, gauges of the HDR quantiles in
//!     seconds (precise to 3 significant figures, which fixed buckets cannot give), `NaN`
//!     before the first sample, as Prometheus summaries do.
//!
//! Values are tracked in microseconds with 3 significant figures from 1 µs to 1 hour; a longer
//! value is clamped to 1 hour (counted, never dropped). The shared histogram is cumulative since
//! start and never reset: Prometheus computes rates from counters, and the quantile gauges are
//! lifetime quantiles. A bucket's count is exact up to HDR resolution (0.1 %): a sample in the
//! same HDR sub-bucket as a boundary counts as at or below it.

use hdrhistogram::Histogram;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Smallest tracked value, in microseconds (the HDR resolution floor).
pub const MIN_MICROS: u64 = 1;
/// Largest tracked value, in microseconds (1 hour); longer values are clamped to it.
pub const MAX_MICROS: u64 = 3_600_000_000;
/// Significant figures kept by the HDR histograms.
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Upper bounds, in seconds, of the exported Prometheus buckets (`+Inf` is added on encoding).
pub const BUCKETS_SECONDS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0,
];
/// How often [`LatencyRecorder::flush_if_due`] merges: often enough for any scrape interval,
/// rare enough that merging (a walk over ~24k counters) costs nothing measurable.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The quantiles exported in `<name>_quantile` and returned by [`LatencySeries::quantiles`].
pub const QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Why a latency series could not be created. Names are constants in this crate, so these are
/// programming errors, reported as values so callers decide.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The HDR histogram bounds are invalid.
    #[error("cannot create the latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The metric name or help text is invalid.
    #[error("invalid latency metric: {0}")]
    Metric(#[from] prometheus::Error),
}

/// A histogram with the bounds every latency series uses.
fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(MIN_MICROS, MAX_MICROS, SIGNIFICANT_FIGURES)
}

/// The samples merged so far: the histogram and the exact sum of the (clamped) values.
struct Shared {
    histogram: Histogram<u64>,
    sum_micros: u128,
}

/// What the recorders and the collector share.
struct Inner {
    name: String,
    help: String,
    quantile_name: String,
    quantile_help: String,
    descs: Vec<Desc>,
    shared: Mutex<Shared>,
}

impl Inner {
    /// The shared histogram. A panic while holding the lock cannot leave it half-merged in a way
    /// that matters for metrics, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shared side of one latency metric: cumulative samples, a Prometheus collector, and the
/// factory of [`LatencyRecorder`]s. Cheap to clone (an `Arc`); register a clone in the registry.
#[derive(Clone)]
pub struct LatencySeries {
    inner: Arc<Inner>,
}

impl LatencySeries {
    /// A series exported as `name` (histogram) and `name_quantile` (gauges), with `help` as the
    /// histogram's help text.
    pub fn new(name: &str, help: &str) -> Result<Self, LatencyError> {
        let quantile_name = format!("{name}_quantile");
        let quantile_help = format!("{help} Quantiles since start (HDR, 3 significant figures).");
        let descs = vec![
            Desc::new(name.to_owned(), help.to_owned(), Vec::new(), HashMap::new())?,
            Desc::new(
                quantile_name.clone(),
                quantile_help.clone(),
                vec!["quantile".to_owned()],
                HashMap::new(),
            )?,
        ];
        let shared = Shared {
            histogram: new_histogram()?,
            sum_micros: 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                help: help.to_owned(),
                quantile_name,
                quantile_help,
                descs,
                shared: Mutex::new(shared),
            }),
        })
    }

    /// The histogram family's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A recorder for one hot thread. Each thread that records needs its own.
    pub fn recorder(&self) -> Result<LatencyRecorder, LatencyError> {
        Ok(LatencyRecorder {
            local: new_histogram()?,
            sum_micros: 0,
            last_flush: Instant::now(),
            series: Arc::clone(&self.inner),
        })
    }

    /// Samples merged so far (flushed ones only).
    pub fn count(&self) -> u64 {
        self.inner.lock().histogram.len()
    }

    /// The 0.5, 0.99 and 0.999 quantiles in seconds since start, for logs; `NaN` when empty.
    pub fn quantiles(&self) -> (f64, f64, f64) {
        let shared = self.inner.lock();
        let [p50, p99, p999] = QUANTILES.map(|q| quantile_seconds(&shared.histogram, q));
        (p50, p99, p999)
    }

    /// Builds both metric families from the shared histogram.
    fn families(&self) -> Vec<MetricFamily> {
        let shared = self.inner.lock();
        let histogram = &shared.histogram;

        let mut buckets: Vec<Bucket> = BUCKETS_SECONDS
            .iter()
            .map(|&bound| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(bound);
                bucket
            })
            .collect();
        for value in histogram.iter_recorded() {
            // Compare the lowest value of the HDR sub-bucket: a sample equal to a boundary counts
            // as at or below it (`le`), whatever the sub-bucket's width.
            let seconds =
                histogram.lowest_equivalent(value.value_iterated_to()) as f64 / MICROS_PER_SECOND;
            let count = value.count_at_value();
            for bucket in buckets.iter_mut().rev() {
                if seconds > bucket.upper_bound() {
                    break;
                }
                bucket.set_cumulative_count(bucket.cumulative_count() + count);
            }
        }
        let mut proto_histogram = prometheus::proto::Histogram::default();
        proto_histogram.set_sample_count(histogram.len());
        proto_histogram.set_sample_sum(shared.sum_micros as f64 / MICROS_PER_SECOND);
        proto_histogram.set_bucket(buckets);
        let mut metric = Metric::default();
        metric.set_histogram(proto_histogram);
        let mut histogram_family = MetricFamily::default();
        histogram_family.set_name(self.inner.name.clone());
        histogram_family.set_help(self.inner.help.clone());
        histogram_family.set_field_type(MetricType::HISTOGRAM);
        histogram_family.set_metric(vec![metric]);

        let quantile_metrics = QUANTILES
            .iter()
            .map(|&q| {
                let mut label = LabelPair::default();
                label.set_name("quantile".to_owned());
                label.set_value(q.to_string());
                let mut gauge = Gauge::default();
                gauge.set_value(quantile_seconds(histogram, q));
                let mut metric = Metric::from_label(vec![label]);
                metric.set_gauge(gauge);
                metric
            })
            .collect();
        let mut quantile_family = MetricFamily::default();
        quantile_family.set_name(self.inner.quantile_name.clone());
        quantile_family.set_help(self.inner.quantile_help.clone());
        quantile_family.set_field_type(MetricType::GAUGE);
        quantile_family.set_metric(quantile_metrics);

        vec![histogram_family, quantile_family]
    }
}

impl std::fmt::Debug for LatencySeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySeries")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// The value at quantile `q` in seconds, `NaN` for an empty histogram (no data is not zero).
fn quantile_seconds(histogram: &Histogram<u64>, q: f64) -> f64 {
    if histogram.is_empty() {
        f64::NAN
    } else {
        histogram.value_at_quantile(q) as f64 / MICROS_PER_SECOND
    }
}

impl Collector for LatencySeries {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families()
    }
}

/// The hot thread's side of a [`LatencySeries`]: records into a thread-local HDR histogram
/// (no atomics, no lock), merged into the series by [`flush`](Self::flush). Not `Clone`: one
/// per thread. Dropping it flushes what it still holds.
pub struct LatencyRecorder {
    local: Histogram<u64>,
    sum_micros: u64,
    last_flush: Instant,
    series: Arc<Inner>,
}

impl LatencyRecorder {
    /// Records one sample. Values below 1 µs count as 0, above 1 hour as 1 hour.
    #[inline]
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    /// Records one sample given in microseconds, clamped to 1 hour.
    #[inline]
    pub fn record_micros(&mut self, micros: u64) {
        let micros = micros.min(MAX_MICROS);
        // Within bounds after the clamp, so this is the plain `record` (never an error).
        self.local.saturating_record(micros);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Records `later - earlier` given as epoch milliseconds (an event's lag: processing wall
    /// clock minus its timestamp). A negative difference, an event stamped ahead of the wall
    /// clock within the allowed skew, counts as 0.
    #[inline]
    pub fn record_millis_between(&mut self, earlier: i64, later: i64) {
        let millis = later.saturating_sub(earlier).max(0).unsigned_abs();
        self.record_micros(millis.saturating_mul(1000));
    }

    /// Samples recorded since the last flush.
    pub fn pending(&self) -> u64 {
        self.local.len()
    }

    /// Flushes when [`FLUSH_INTERVAL`] has passed since the last flush; returns whether it did.
    /// Call after every batch with the batch's `Instant::now()`.
    pub fn flush_if_due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_flush) < FLUSH_INTERVAL {
            return false;
        }
        self.flush();
        true
    }

    /// Merges the local samples into the shared series and resets the local histogram. It takes
    /// one (uncontended) lock and walks the ~24k counters, so call it once per second or per
    /// batch of thousands of samples ([`flush_if_due`](Self::flush_if_due) does the timing).
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.local.is_empty() {
            return;
        }
        let mut shared = self.series.lock();
        if let Err(error) = shared.histogram.add(&self.local) {
            // Same bounds on both sides, so this cannot happen; if it did, the samples are lost
            // for this series only, and the hot thread goes on.
            tracing::warn!(metric = %self.series.name, %error, "latency samples not merged");
        } else {
            shared.sum_micros += u128::from(self.sum_micros);
        }
        drop(shared);
        self.local.reset();
        self.sum_micros = 0;
    }
}

impl Drop for LatencyRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyRecorder")
            .field("name", &self.series.name)
            .field("pending", &self.local.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Registry;

    fn series() -> LatencySeries {
        LatencySeries::new("test_latency_seconds", "Test latency.").unwrap()
    }

    fn bucket_counts(series: &LatencySeries) -> Vec<(f64, u64)> {
        let families = series.collect();
        let histogram = families[0].get_metric()[0].get_histogram();
        histogram
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect()
    }

    fn count_at(buckets: &[(f64, u64)], bound: f64) -> u64 {
        buckets.iter().find(|(b, _)| *b == bound).unwrap().1
    }

    #[test]
    fn samples_land_in_cumulative_buckets() {
        let series = series();
        let mut recorder = series.recorder().unwrap();
        recorder.record(Duration::from_micros(500)); // <= 0.001
        recorder.record(Duration::from_millis(1)); // == 0.001: le is inclusive
        recorder.record(Duration::from_millis(7)); // <= 0.01
        recorder.record(Duration::from_millis(300)); // <= 0.5
        recorder.record(Duration::from_secs(2)); // <= 2.5
        recorder.record(Duration::from_secs(400)); // <= 900
        assert_eq!(series.count(), 0, "nothing is shared before a flush");
        recorder.flush();
        assert_eq!(recorder.pending(), 0);
        assert_eq!(series.count(), 6);

        let buckets = bucket_counts(&series);
        assert_eq!(buckets.len(), BUCKETS_SECONDS.len());
        assert_eq!(count_at(&buckets, 0.001), 2);
        assert_eq!(count_at(&buckets, 0.005), 2);
        assert_eq!(count_at(&buckets, 0.01), 3);
        assert_eq!(count_at(&buckets, 0.25), 3);
        assert_eq!(count_at(&buckets, 0.5), 4);
        assert_eq!(count_at(&buckets, 2.5), 5);
        assert_eq!(count_at(&buckets, 300.0), 5);
        assert_eq!(count_at(&buckets, 900.0), 6);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");

        let families = series.collect();
        let histogram = families[0].get_metric()[0].get_histogram();
        assert_eq!(histogram.get_sample_count(), 6);
        let expected_sum = 0.0005 + 0.001 + 0.007 + 0.3 + 2.0 + 400.0;
        assert!((histogram.get_sample_sum() - expected_sum).abs() < 1e-9);
    }

    #[test]
    fn quantiles_come_from_the_hdr_histogram() {
        let series = series();
        assert!(series.quantiles().0.is_nan(), "no data is not zero");
        let mut recorder = series.recorder().unwrap();
        for ms in 1..=1000u64 {
            recorder.record(Duration::from_millis(ms));
        }
        recorder.flush();
        let (p50, p99, p999) = series.quantiles();
        assert!((p50 - 0.5).abs() < 0.001, "{p50}");
        assert!((p99 - 0.99).abs() < 0.001, "{p99}");
        assert!((p999 - 0.999).abs() < 0.001, "{p999}");

        let families = series.collect();
        let gauges: Vec<(String, f64)> = families[1]
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_gauge().get_value(),
                )
            })
            .collect();
        assert_eq!(gauges.len(), 3);
        assert_eq!(gauges[0].0, "0.5");
        assert_eq!(gauges[1].0, "0.99");
        assert_eq!(gauges[2].0, "0.999");
        assert_eq!(gauges[2].1, p999);
    }

    #[test]
    fn families_have_the_right_names_and_types() {
        let series = series();
        let registry = Registry::new();
        registry.register(Box::new(series.clone())).unwrap();
        let mut recorder = series.recorder().unwrap();
        recorder.record(Duration::from_millis(20));
        recorder.flush();
        let families = registry.gather();
        let names: Vec<(&str, MetricType)> = families
            .iter()
            .map(|f| (f.name(), f.get_field_type()))
            .collect();
        assert_eq!(
            names,
            [
                ("test_latency_seconds", MetricType::HISTOGRAM),
                ("test_latency_seconds_quantile", MetricType::GAUGE),
            ]
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap();
        assert!(
            text.contains("# TYPE test_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("test_latency_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("test_latency_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("test_latency_seconds_count 1"), "{text}");
        assert!(
            text.contains("test_latency_seconds_quantile{quantile=\"0.99\"} 0.020"),
            "{text}"
        );
        assert!(!text.contains("le=\"inf\""), "{text}");
    }

    #[test]
    fn values_above_range_are_clamped_not_dropped() {
        let series = series();
        let mut recorder = series.recorder().unwrap();
        recorder.record(Duration::from_secs(2 * 3600));
        recorder.record(Duration::MAX);
        recorder.record_millis_between(10_000, 5_000); // negative lag: zero
        recorder.flush();
        assert_eq!(series.count(), 3);
        let (_, _, p999) = series.quantiles();
        assert!((p999 - 3600.0).abs() / 3600.0 < 0.001, "{p999}");
        let buckets = bucket_counts(&series);
        assert_eq!(count_at(&buckets, 0.001), 1, "the zero lag");
        assert_eq!(count_at(&buckets, 1800.0), 1, "clamped values only in +Inf");
        let families = series.collect();
        let histogram = families[0].get_metric()[0].get_histogram();
        assert_eq!(histogram.get_sample_count(), 3);
        assert!((histogram.get_sample_sum() - 7200.0).abs() < 1e-6);
    }

    #[test]
    fn flushes_accumulate_and_drop_flushes() {
        let series = series();
        let mut recorder = series.recorder().unwrap();
        recorder.record(Duration::from_millis(3));
        recorder.flush();
        recorder.flush(); // nothing pending: no change
        recorder.record(Duration::from_millis(4));
        recorder.flush();
        assert_eq!(series.count(), 2, "the shared histogram is cumulative");
        let mut other = series.recorder().unwrap();
        other.record(Duration::from_millis(5));
        drop(other);
        assert_eq!(series.count(), 3);
    }

    #[test]
    fn flush_if_due_waits_for_the_interval() {
        let series = series();
        let mut recorder = series.recorder().unwrap();
        let start = Instant::now();
        recorder.flush();
        recorder.record(Duration::from_millis(1));
        assert!(!recorder.flush_if_due(start));
        assert_eq!(series.count(), 0);
        assert!(recorder.flush_if_due(start + FLUSH_INTERVAL * 2));
        assert_eq!(series.count(), 1);
    }
}
