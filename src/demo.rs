//! `stormwatch demo`: the whole service on an embedded Kafka (librdkafka's mock cluster, in
//! process) fed with a generated storm, so a newcomer sees what stormwatch does with no setup.
//!
//! The `mixed` scenario (an NHS-2016-style storm, an all-staff storm, busy benign traffic and a
//! few malformed records) is replayed onto the events topic on a compressed clock: event time
//! runs `speed` times faster than the wall clock and ends at "now", so the rules, the windows and
//! the 30-minute quiet period all work in event time exactly as in production, and the storm's
//! 75 minutes play in about a minute and a quarter at the default speed.

use crate::alert::{Alert, AlertKind};
use crate::config::Config;
use crate::decode::{decode_json, DecodeOptions};
use crate::generate::{generate, GenerateOptions, Scenario};
use crate::service::{self, StartOptions};
use crate::timefmt::{format_millis, now_millis, Millis};
use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Event time runs this many times faster than the wall clock.
    pub speed: u32,
    /// Background events in the generated stream.
    pub background_events: u64,
    /// Seed of the generated stream.
    pub seed: u64,
    /// Partitions of the events topic.
    pub partitions: i32,
    /// Stop by itself once the whole stream is produced and every storm has ended (tests);
    /// otherwise run until Ctrl-C.
    pub exit_when_done: bool,
    /// Where HTTP listens (the default port, or any free one when it is taken).
    pub http_listen: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            speed: 60,
            background_events: 30_000,
            seed: 2016,
            partitions: 4,
            exit_when_done: false,
            http_listen: "127.0.0.1:9464".into(),
        }
    }
}

/// A generated event, re-timed for the compressed clock.
struct Scheduled {
    /// When to produce it, relative to the start (wall clock).
    due: Duration,
    key: Option<String>,
    payload: Vec<u8>,
}

/// Runs the demo until Ctrl-C (or, with `exit_when_done`, until the storms are over).
pub fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka cluster")?;
    let mut config = Config::default();
    config.kafka.brokers = cluster.bootstrap_servers();
    config.kafka.group_id = "stormwatch-demo".into();
    for (topic, partitions) in [
        (config.kafka.topic.as_str(), options.partitions),
        (config.kafka.alerts_topic.as_str(), 1),
        (config.kafka.dlq_topic.as_str(), 1),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    config.http.listen = options.http_listen.clone();
    if std::net::TcpListener::bind(&config.http.listen).is_err() {
        config.http.listen = "127.0.0.1:0".into();
    }
    let schedule = schedule(options)?;
    let total = schedule.len();
    let started_alerts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ended_alerts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let printer = {
        let started = Arc::clone(&started_alerts);
        let ended = Arc::clone(&ended_alerts);
        Box::new(move |alert: &Alert| {
            match alert.kind {
                AlertKind::StormStarted => started.fetch_add(1, Ordering::Relaxed),
                AlertKind::StormEnded => ended.fetch_add(1, Ordering::Relaxed),
                AlertKind::StormEscalated => 0,
            };
            println!("{}", describe(alert));
        })
    };
    let service = service::start(
        &config,
        StartOptions {
            alert_printer: Some(printer),
        },
    )?;
    let http = service.http_address();
    println!(
        "stormwatch demo: an embedded Kafka cluster at {}",
        config.kafka.brokers
    );
    println!(
        "  replaying a generated day of mail ({total} records: an NHS-2016-style storm, an all-staff storm, busy benign traffic, a few malformed records)"
    );
    println!(
        "  onto topic {} ({} partitions), event time at {}x speed.",
        config.kafka.topic, options.partitions, options.speed
    );
    println!(
        "  alerts go to topic {} and appear below as they fire.",
        config.kafka.alerts_topic
    );
    println!(
        "  look at: http://{http}/api/v1/storms   http://{http}/metrics   http://{http}/readyz"
    );
    if !options.exit_when_done {
        println!("  Ctrl-C stops it.");
    }
    println!();

    let stop = Arc::new(AtomicBool::new(false));
    let producer_done = Arc::new(AtomicBool::new(false));
    let feeder = {
        let brokers = config.kafka.brokers.clone();
        let topic = config.kafka.topic.clone();
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&producer_done);
        std::thread::Builder::new()
            .name("demo-producer".into())
            .spawn(move || {
                let result = feed(&brokers, &topic, schedule, &stop);
                done.store(true, Ordering::Relaxed);
                result
            })
            .context("cannot start the demo producer")?
    };
    wait(options, &producer_done, &started_alerts, &ended_alerts);
    stop.store(true, Ordering::Relaxed);
    match feeder.join() {
        Ok(Ok(produced)) => tracing::info!(produced, "demo producer finished"),
        Ok(Err(error)) => tracing::warn!(%error, "demo producer failed"),
        Err(_) => tracing::warn!("demo producer panicked"),
    }
    let storms = service.board().view();
    println!();
    println!(
        "stormwatch demo: {} storms started, {} ended; {} still active.",
        started_alerts.load(Ordering::Relaxed),
        ended_alerts.load(Ordering::Relaxed),
        storms.active.len()
    );
    service.stop()?;
    drop(cluster);
    Ok(())
}

/// Waits for Ctrl-C, or (with `exit_when_done`) for the stream to be produced and the storms
/// it started to end.
fn wait(
    options: &DemoOptions,
    producer_done: &AtomicBool,
    started: &std::sync::atomic::AtomicU64,
    ended: &std::sync::atomic::AtomicU64,
) {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        // A second handler thread: the service's own signal handling is for `run`.
        let _ = std::thread::Builder::new()
            .name("demo-signal".into())
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(async {
                        let _ = tokio::signal::ctrl_c().await;
                    });
                    interrupted.store(true, Ordering::Relaxed);
                }
            });
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if interrupted.load(Ordering::Relaxed) {
            println!("\nCtrl-C: stopping.");
            return;
        }
        let done = producer_done.load(Ordering::Relaxed);
        let all_ended = started.load(Ordering::Relaxed) > 0
            && started.load(Ordering::Relaxed) == ended.load(Ordering::Relaxed);
        if options.exit_when_done && done && all_ended {
            return;
        }
    }
}

/// Generates the stream and re-times it for the compressed clock: event time keeps the
/// stream's own spacing and ends at the wall-clock time of the start (so every timestamp is in
/// the past, as the future-skew check requires); each record is due `offset / speed` after the
/// start. Malformed records go out right after their neighbour.
fn schedule(options: &DemoOptions) -> anyhow::Result<Vec<Scheduled>> {
    let mut raw = Vec::new();
    generate(
        &GenerateOptions {
            scenario: Scenario::Mixed,
            seed: options.seed,
            events: Some(options.background_events),
        },
        &mut raw,
    )
    .context("cannot generate the demo stream")?;
    let decode = DecodeOptions {
        now: Millis::MAX / 2,
        max_future_skew: 0,
        max_record_bytes: usize::MAX,
    };
    let lines: Vec<&[u8]> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let times: Vec<Option<Millis>> = lines
        .iter()
        .map(|l| decode_json(l, &decode).ok().map(|e| e.timestamp))
        .collect();
    let first = times.iter().flatten().min().copied().unwrap_or(0);
    let last = times.iter().flatten().max().copied().unwrap_or(first);
    let speed = i64::from(options.speed.max(1));
    let event_start = now_millis() - (last - first);
    let mut scheduled = Vec::with_capacity(lines.len());
    let mut previous_due = Duration::ZERO;
    for (line, at) in lines.iter().zip(times) {
        let mut value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                // Malformed on purpose: produced as is, right after its neighbour.
                scheduled.push(Scheduled {
                    due: previous_due,
                    key: None,
                    payload: line.to_vec(),
                });
                continue;
            }
        };
        let (due, key) = match at {
            Some(at) => {
                let offset = at - first;
                let new_at = event_start + offset;
                if let Some(object) = value.as_object_mut() {
                    object.insert(
                        "timestamp".into(),
                        serde_json::Value::String(format_millis(new_at)),
                    );
                }
                let wall_offset = offset / speed;
                (
                    Duration::from_millis(u64::try_from(wall_offset.max(0)).unwrap_or(0)),
                    value
                        .get("message_id")
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                )
            }
            None => (previous_due, None),
        };
        previous_due = due;
        let payload = serde_json::to_vec(&value).context("cannot re-encode a demo event")?;
        scheduled.push(Scheduled { due, key, payload });
    }
    Ok(scheduled)
}

/// Produces the schedule in real time; returns how many records were produced.
fn feed(
    brokers: &str,
    topic: &str,
    schedule: Vec<Scheduled>,
    stop: &AtomicBool,
) -> anyhow::Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    let start = Instant::now();
    let mut produced = 0;
    for item in &schedule {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = item.due.saturating_sub(start.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let mut record = BaseRecord::to(topic).payload(&item.payload);
        if let Some(key) = &item.key {
            record = record.key(key.as_str());
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        produced += 1;
    }
    producer
        .flush(Duration::from_secs(10))
        .context("cannot flush the demo producer")?;
    Ok(produced)
}

/// One alert as a line a person reads.
pub fn describe(alert: &Alert) -> String {
    let what = match alert.kind {
        AlertKind::StormStarted => "STORM STARTED  ",
        AlertKind::StormEscalated => "STORM ESCALATED",
        AlertKind::StormEnded => "storm ended    ",
    };
    let subject = alert
        .subject
        .as_deref()
        .map_or_else(String::new, |s| format!(" subject {s:?}"));
    format!(
        "{} {what} {:<8} rule={:<13} thread={} reply-alls/h={} senders={} deliveries/h={}{subject} block until {}",
        format_millis(alert.at),
        alert.severity.as_str(),
        alert.rule.as_str(),
        alert.thread_key,
        alert.reply_alls,
        alert.distinct_senders,
        alert.deliveries,
        format_millis(alert.block_until)
    )
}
