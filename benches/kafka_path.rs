//! End-to-end benchmarks of the Kafka path: the real service (`stormwatch::service::start`)
//! against librdkafka's in-process mock cluster, with a concurrent producer in the same process.
//! Nothing is bypassed: records go producer -> mock broker -> the service's consumer group ->
//! decode -> timestamp merge -> engine -> alerts topic, and the figures are read back from the
//! service's own metrics and from a separate consumer of the alerts topic.
//!
//! Two runs (`cargo bench --bench kafka_path -- throughput|latency`; both without an argument):
//!
//! - `throughput`: N generated `mixed` events (default 2,000,000), re-stamped into the last few
//!   minutes before timing (order and relative spacing kept), produced round-robin to a
//!   16-partition topic (`--partitions`; see `THROUGHPUT_PARTITIONS`) while the service
//!   consumes. Events/s from the first produce to the service's `stormwatch_events_total`
//!   (summed over outcomes) reaching N. The producer is
//!   paced, and the run is a sweep of offered rates that stops at the first one the service does
//!   not keep up with: the mock broker keeps only 5 MiB of batches per partition (hard-coded in
//!   librdkafka's `rdkafka_mock.c`) and deletes older ones, so an unpaced producer simply runs
//!   more than 5 MiB ahead of any consumer slower than itself and records are lost (the consumer
//!   resets to the new log start); a paced producer measures what the service sustains. The
//!   engine's counts reach the metrics once per second, so the completion time is known to
//!   within one housekeeping interval: the run prints both bounds and the steady-state rate
//!   between housekeeping updates.
//! - `latency`: a paced producer at 100,000 events/s for 20 s (generated traffic stamped with the
//!   wall clock at send time) with 3-reply storms injected on fresh mail threads. For each storm,
//!   the time from producing its deciding (3rd) reply-all to reading its `storm_started` alert on
//!   the alerts topic, in an HDR histogram (p50/p99/max), next to the service's own processing
//!   latency quantiles.
//!
//! Settings (arguments or environment): `--events N` / `KAFKA_PATH_EVENTS`,
//! `--throughput-rates R1,R2,..` / `KAFKA_PATH_THROUGHPUT_RATES` (0 = unpaced), `--rate N` /
//! `KAFKA_PATH_RATE` (latency run), `--seconds N` / `KAFKA_PATH_SECONDS`, `--storm-every-ms N` /
//! `KAFKA_PATH_STORM_EVERY_MS`, `--partitions N` / `KAFKA_PATH_PARTITIONS` (default 16 for throughput, 4 for latency),
//! `--linger-ms N` / `KAFKA_PATH_LINGER_MS` (the load producer's `linger.ms`, default 5, librdkafka's),
//! `--compression CODEC` / `KAFKA_PATH_COMPRESSION` (the load
//! producer's `compression.codec`, default `none`), `--fetch-wait-ms N|default` /
//! `KAFKA_PATH_FETCH_WAIT_MS` (the service consumer's `fetch.wait.max.ms`, set through
//! `kafka.properties`; default 10; `default` leaves the service's configuration untouched),
//! `--no-pretouch` / `KAFKA_PATH_NO_PRETOUCH` (the service's `limits.pretouch` off: the maps'
//! pages are then faulted in while the run fills them, as before session 7),
//! `--json` / `KAFKA_PATH_JSON` (also print one JSON line per run), `KAFKA_PATH_LOG=info` (the
//! service's logs on stderr), `KAFKA_PATH_DEBUG=1` (each metrics update of a throughput run).
//! Other `--flags` (such as `--bench`, passed by cargo) are ignored.
//!
//! Why `fetch.wait.max.ms` is lowered: the mock broker answers a fetch that finds no data only
//! after the consumer's `fetch.wait.max.ms` (500 ms by default), even if data arrives meanwhile
//! (`rdkafka_mock_handlers.c`: "This isn't strictly correct since we should cut the wait
//! short"); a real broker answers as soon as data arrives. Left at 500 ms, every idle moment
//! costs up to half a second that a real broker would not add, and at high rates the first
//! half-second of records is deleted (5 MiB per partition) before the consumer asks again. The
//! benchmark's own alerts reader uses 1 ms for the same reason.
//!
//! Why `--linger-ms`: the mock broker answers a fetch with at most one record batch per
//! partition (`rdkafka_mock_handlers.c`: "FIXME: Multiple messageSets ?"), where a real broker
//! fills the fetch up to `max.partition.fetch.bytes`. With the producer's 5 ms batches one fetch
//! brings the service at most 5 ms of records per partition, so the fetch round trip could set
//! the pace instead of the service. A longer `linger.ms` makes fewer, bigger batches, as a real
//! broker's fetch would bring. On the 2-core machine of BENCHMARKS.md it made no difference
//! (session 6; `examples/mock_ceiling.rs` shows the mock and a bare consumer keeping up with
//! 600K events/s either way), but the flag is how to check on another machine.
//!
//! The benchmark uses the binary's global allocator (mimalloc), as `stormwatch run` does.
//!
//! CPU per thread (from `/proc/self/task`, assuming 100 ticks/s) is printed for each run: on a
//! 2-core machine the producer, the mock broker and the service share the cores.

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stormwatch::config::Config;
use stormwatch::generate::{generate, GenerateOptions, Scenario};
use stormwatch::metrics::Metrics;
use stormwatch::service::{self, RunningService, StartOptions};
use stormwatch::timefmt::{format_millis, now_millis, parse_rfc3339_millis, Millis};

/// The allocator of the `stormwatch` binary (src/main.rs), so the service runs here as it does
/// under `stormwatch run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Partitions of the events topic in the throughput run unless `--partitions` says otherwise.
/// Not the 4 of the first runs: the mock broker keeps 5 MiB per partition, about 19K records, so
/// at 400K events/s on 4 partitions any pause of 0.2 s loses records and the bench measures the
/// mock, not the service. 16 gives 0.75 s of slack at that rate; a real topic for such a stream
/// has as many.
const THROUGHPUT_PARTITIONS: i32 = 16;
/// Partitions in the latency run: at 100K events/s 4 leave seconds of slack, and the mock
/// broker's own CPU grows with the partitions (11% of a core with 4, 31% to 43% with 16, on a
/// machine the bench shares with the service).
const LATENCY_PARTITIONS: i32 = 4;
/// Every `stormwatch_events_total` outcome.
const OUTCOMES: [&str; 5] = ["counted", "ignored", "malformed", "late", "duplicate"];
/// Thread ids of the injected storms start with this.
const STORM_PREFIX: &str = "kafka-path-storm-";
/// Recipients of an injected reply-all (a reply-all needs 2,500 by default).
const STORM_RECIPIENTS: u64 = 5_000;
/// Gap between the replies of one injected storm.
const STORM_REPLY_GAP: Duration = Duration::from_millis(20);
/// Background traffic before the first storm and without storms at the end.
const STORM_MARGIN: Duration = Duration::from_secs(2);
/// How long the latency run waits for the last alerts after producing stops.
const ALERT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Throughput,
    Latency,
}

#[derive(Debug, Clone)]
struct Settings {
    modes: Vec<Mode>,
    events: u64,
    rate: u64,
    seconds: u64,
    storm_every_ms: u64,
    fetch_wait_ms: Option<u64>,
    throughput_rates: Vec<u64>,
    compression: String,
    json: bool,
    /// `--partitions`; each run has its own default.
    partitions: Option<i32>,
    /// The load producer's `linger.ms`: how long it gathers records into one batch per
    /// partition. The mock broker answers a fetch with at most one such batch per partition,
    /// so this sets how much one fetch can bring the service (see the module documentation).
    linger_ms: u64,
    /// `limits.pretouch` of the service (on unless `--no-pretouch`).
    pretouch: bool,
}

/// Offered rates of the throughput sweep (events/s; 0 = as fast as the producer can).
/// The sweep stops at the first rate the service does not keep up with.
const DEFAULT_RATES: &str = "100000,150000,200000,250000,300000,400000,500000,750000,1000000";

/// The service consumer's `fetch.wait.max.ms` on the mock cluster (`default`: not set).
const DEFAULT_FETCH_WAIT_MS: &str = "10";

/// `default` (or anything not a number): leave the service's configuration alone.
fn parse_fetch_wait(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn parse_rates(text: &str) -> Vec<u64> {
    let rates: Vec<u64> = text
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    if rates.is_empty() {
        eprintln!("kafka_path: no usable rate in {text:?}");
        std::process::exit(2);
    }
    rates
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn parse_settings() -> Settings {
    let mut settings = Settings {
        modes: Vec::new(),
        events: env_u64("KAFKA_PATH_EVENTS").unwrap_or(2_000_000),
        rate: env_u64("KAFKA_PATH_RATE").unwrap_or(100_000),
        seconds: env_u64("KAFKA_PATH_SECONDS").unwrap_or(20),
        storm_every_ms: env_u64("KAFKA_PATH_STORM_EVERY_MS").unwrap_or(100),
        fetch_wait_ms: parse_fetch_wait(
            &std::env::var("KAFKA_PATH_FETCH_WAIT_MS")
                .unwrap_or_else(|_| DEFAULT_FETCH_WAIT_MS.into()),
        ),
        throughput_rates: parse_rates(
            &std::env::var("KAFKA_PATH_THROUGHPUT_RATES").unwrap_or_else(|_| DEFAULT_RATES.into()),
        ),
        compression: std::env::var("KAFKA_PATH_COMPRESSION").unwrap_or_else(|_| "none".into()),
        json: std::env::var_os("KAFKA_PATH_JSON").is_some(),
        partitions: std::env::var("KAFKA_PATH_PARTITIONS")
            .ok()
            .and_then(|v| v.parse().ok()),
        linger_ms: env_u64("KAFKA_PATH_LINGER_MS").unwrap_or(5),
        pretouch: std::env::var_os("KAFKA_PATH_NO_PRETOUCH").is_none(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let numeric = matches!(
            flag,
            "--events"
                | "--rate"
                | "--seconds"
                | "--storm-every-ms"
                | "--partitions"
                | "--linger-ms"
        );
        if numeric {
            let value = inline.or_else(|| {
                i += 1;
                args.get(i).cloned()
            });
            let Some(value) = value.and_then(|v| v.parse::<u64>().ok()) else {
                eprintln!("kafka_path: {flag} needs a number");
                std::process::exit(2);
            };
            match flag {
                "--events" => settings.events = value,
                "--rate" => settings.rate = value,
                "--seconds" => settings.seconds = value,
                "--partitions" => settings.partitions = i32::try_from(value).ok(),
                "--linger-ms" => settings.linger_ms = value,
                _ => settings.storm_every_ms = value,
            }
        } else if matches!(
            flag,
            "--throughput-rates" | "--compression" | "--fetch-wait-ms"
        ) {
            let value = inline.or_else(|| {
                i += 1;
                args.get(i).cloned()
            });
            let Some(value) = value else {
                eprintln!("kafka_path: {flag} needs a value");
                std::process::exit(2);
            };
            match flag {
                "--compression" => settings.compression = value,
                "--fetch-wait-ms" => settings.fetch_wait_ms = parse_fetch_wait(&value),
                _ => settings.throughput_rates = parse_rates(&value),
            }
        } else if flag == "--json" {
            settings.json = true;
        } else if flag == "--no-pretouch" {
            settings.pretouch = false;
        } else if flag == "throughput" {
            settings.modes.push(Mode::Throughput);
        } else if flag == "latency" {
            settings.modes.push(Mode::Latency);
        } else if !flag.starts_with('-') {
            eprintln!("kafka_path: ignoring argument {arg:?} (runs: throughput, latency)");
        }
        i += 1;
    }
    if settings.modes.is_empty() {
        settings.modes = vec![Mode::Throughput, Mode::Latency];
    }
    settings.rate = settings.rate.max(1);
    settings.partitions = settings.partitions.map(|p| p.max(1));
    settings.storm_every_ms = settings.storm_every_ms.max(1);
    settings
}

// ---------------------------------------------------------------------------------------------
// Generated traffic, re-stamped.

/// A generated line split around its timestamp value: `{"timestamp":<ts>,<rest>`.
struct Template {
    /// The line after the timestamp value and its comma (`"message_id":...}`).
    rest: Vec<u8>,
    /// Whether the timestamp is written as epoch milliseconds (else RFC 3339).
    epoch: bool,
    /// The original timestamp.
    at: Millis,
}

/// Generates the `mixed` scenario and splits every well-formed line around its timestamp.
/// Lines that are not JSON or have no usable timestamp are skipped.
fn templates(events: u64) -> (Vec<Template>, u64) {
    let mut out = Vec::new();
    let options = GenerateOptions {
        scenario: Scenario::Mixed,
        seed: 42,
        events: Some(events),
    };
    generate(&options, &mut out).expect("generate into memory");
    let mut templates = Vec::new();
    let mut skipped = 0;
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match template(line) {
            Some(t) => templates.push(t),
            None => skipped += 1,
        }
    }
    (templates, skipped)
}

fn template(line: &[u8]) -> Option<Template> {
    let mut value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object_mut()?;
    let (at, epoch) = match object.get("timestamp")? {
        serde_json::Value::String(s) => (parse_rfc3339_millis(s)?, false),
        serde_json::Value::Number(n) => (n.as_i64()?, true),
        _ => return None,
    };
    // The generator writes the timestamp first; keep the rest of the line byte for byte. Any
    // other layout is re-encoded without the timestamp.
    const HEAD: &[u8] = b"{\"timestamp\":";
    let rest = if line.starts_with(HEAD) {
        let comma = line[HEAD.len()..].iter().position(|&b| b == b',')?;
        line[HEAD.len() + comma + 1..].to_vec()
    } else {
        object.remove("timestamp");
        let encoded = serde_json::to_vec(&value).ok()?;
        if encoded.len() <= 2 {
            return None;
        }
        encoded[1..].to_vec()
    };
    Some(Template { rest, epoch, at })
}

/// Writes `template` with timestamp `at` into `out`.
fn render(template: &Template, at: Millis, rfc3339: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"timestamp\":");
    if template.epoch {
        out.extend_from_slice(at.to_string().as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(rfc3339.as_bytes());
        out.push(b'"');
    }
    out.push(b',');
    out.extend_from_slice(&template.rest);
}

/// Every template re-stamped into the last few minutes, keeping the generated order and the
/// relative spacing (scaled): one buffer and the line ranges in it.
fn restamped(templates: &[Template]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let first = templates.iter().map(|t| t.at).min().unwrap_or(0);
    let last = templates.iter().map(|t| t.at).max().unwrap_or(0);
    let span = (last - first).max(1) as f64;
    // From 4 minutes ago to 30 s ago: in the past (the decoder refuses more than 5 minutes in
    // the future) and close to now.
    let to = now_millis() - 30_000;
    let from = to - 210_000;
    let scale = (to - from) as f64 / span;
    let mut buffer = Vec::with_capacity(templates.iter().map(|t| t.rest.len() + 40).sum());
    let mut ranges = Vec::with_capacity(templates.len());
    let mut line = Vec::new();
    for t in templates {
        let at = from + ((t.at - first) as f64 * scale) as Millis;
        render(t, at, &format_millis(at), &mut line);
        let start = buffer.len();
        buffer.extend_from_slice(&line);
        ranges.push((start, buffer.len()));
    }
    (buffer, ranges)
}

// ---------------------------------------------------------------------------------------------
// Cluster, service, helpers.

struct Bench {
    cluster: MockCluster<'static, DefaultProducerContext>,
    config: Config,
}

fn bench_cluster(settings: &Settings, partitions: i32) -> Bench {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut config = Config::default();
    config.limits.pretouch = settings.pretouch;
    config.kafka.brokers = cluster.bootstrap_servers();
    config.http.listen = "127.0.0.1:0".into();
    if let Some(ms) = settings.fetch_wait_ms {
        config
            .kafka
            .properties
            .insert("fetch.wait.max.ms".into(), ms.to_string());
    }
    cluster
        .create_topic(&config.kafka.topic, partitions, 1)
        .expect("events topic");
    cluster
        .create_topic(&config.kafka.alerts_topic, 1, 1)
        .expect("alerts topic");
    cluster
        .create_topic(&config.kafka.dlq_topic, 1, 1)
        .expect("dlq topic");
    Bench { cluster, config }
}

/// Where a load producer sends: the events topic, round-robin over its partitions.
struct Target {
    topic: String,
    partitions: i32,
}

/// The load generator's producer: librdkafka defaults (`linger.ms` 5, or `--linger-ms`) with a
/// deep queue, and the chosen compression.
fn load_producer(brokers: &str, settings: &Settings) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", settings.linger_ms.to_string())
        .set("compression.codec", &settings.compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("load producer")
}

/// Sends one record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, topic: &str, partition: i32, payload: &[u8]) {
    let mut record = BaseRecord::<(), [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => panic!("produce failed: {error}"),
        }
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Some((status, body))
}

/// Starts the service and waits until `/readyz` says it has its partitions and is caught up.
fn start_ready(config: &Config) -> RunningService {
    let service = service::start(config, StartOptions::default()).expect("service starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = http_get(service.http_address(), "/readyz") {
            return service;
        }
        assert!(Instant::now() < deadline, "the service never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events_total(metrics: &Metrics) -> u64 {
    OUTCOMES
        .iter()
        .map(|o| metrics.events_total.with_label_values(&[o]).get())
        .sum()
}

fn outcomes(metrics: &Metrics) -> BTreeMap<&'static str, u64> {
    OUTCOMES
        .iter()
        .map(|o| (*o, metrics.events_total.with_label_values(&[o]).get()))
        .collect()
}

/// `(p50, p99)` in milliseconds of a service latency series.
fn service_quantiles(series: &stormwatch::latency::LatencySeries) -> (f64, f64, f64) {
    let (p50, p99, p999) = series.quantiles();
    (p50 * 1e3, p99 * 1e3, p999 * 1e3)
}

/// `stormwatch_processing_latency_seconds_quantile` lines as scraped from `/metrics`.
fn scraped_processing_quantiles(address: SocketAddr) -> Vec<String> {
    http_get(address, "/metrics")
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with("stormwatch_processing_latency_seconds_quantile"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time (user + system) per thread name of this process, in seconds. Threads are grouped
/// by name with digits removed (`rdk:broker1` and `rdk:broker2` together). Assumes the usual
/// 100 ticks per second.
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Some((name, seconds)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
        {
            *out.entry(name).or_insert(0.0) += seconds;
        }
    }
    out
}

/// CPU seconds of the calling thread (for threads that end before the run is summed up).
fn own_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0.0, |(_, seconds)| seconds)
}

/// A thread's name (digits removed) and CPU seconds from its `stat` line.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name: String = stat[open + 1..close]
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Some((name, ticks as f64 / 100.0))
}

/// CPU per thread over the run, also per event processed: per-event CPU is what decides how
/// far the two shared cores go, and it varies less from run to run than wall-clock rates do on
/// a shared machine.
fn print_cpu(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    wall: Duration,
    producer_cpu: f64,
    events: u64,
) {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(name, t)| (name.clone(), t - before.get(name).copied().unwrap_or(0.0)))
        .chain(std::iter::once((
            "bench-producer".to_string(),
            producer_cpu,
        )))
        .filter(|(_, d)| *d >= 0.05)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let per_event = |seconds: f64| 1e6 * seconds / (events.max(1) as f64);
    println!(
        "  cpu: {total:.1} s over {:.1} s wall ({:.0}% of one core; {:.2} us per event processed) by thread:",
        wall.as_secs_f64(),
        100.0 * total / wall.as_secs_f64().max(1e-9),
        per_event(total)
    );
    for (name, seconds) in rows.iter().take(8) {
        println!(
            "    {name:<20} {seconds:6.2} s ({:.0}% of one core, {:.2} us per event)",
            100.0 * seconds / wall.as_secs_f64().max(1e-9),
            per_event(*seconds)
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// What the throughput producer did.
struct Produced {
    sent_all: Duration,
    delivered_all: Duration,
    cpu: f64,
}

/// How a throughput attempt ended.
struct Attempt {
    json: serde_json::Value,
    sustained: bool,
}

/// Produces every line, paced at `rate` events/s in 1 ms ticks (0: as fast as possible),
/// round-robin over the partitions; `progress` counts the records handed to the producer.
fn throughput_producer(
    producer: BaseProducer,
    target: Target,
    buffer: Arc<Vec<u8>>,
    ranges: Vec<(usize, usize)>,
    rate: u64,
    start: Instant,
    progress: Arc<AtomicU64>,
) -> Produced {
    let mut sent = 0usize;
    while sent < ranges.len() {
        let due = if rate == 0 {
            ranges.len()
        } else {
            ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(ranges.len())
        };
        // Unpaced: publish progress every 1,024 records.
        let due = if rate == 0 {
            (sent + 1024).min(due)
        } else {
            due
        };
        while sent < due {
            let (from, to) = ranges[sent];
            send(
                &producer,
                &target.topic,
                sent as i32 % target.partitions,
                &buffer[from..to],
            );
            sent += 1;
        }
        progress.store(sent as u64, Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if rate != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let sent_all = start.elapsed();
    producer
        .flush(Duration::from_secs(120))
        .expect("every record delivered");
    Produced {
        sent_all,
        delivered_all: start.elapsed(),
        cpu: own_cpu(),
    }
}

fn throughput(settings: &Settings, templates: &[Template], rate: u64) -> Attempt {
    let partitions = settings.partitions.unwrap_or(THROUGHPUT_PARTITIONS);
    let paced = if rate == 0 {
        "as fast as the producer can".to_string()
    } else {
        format!("paced at {rate} events/s")
    };
    println!(
        "== throughput: {} generated mixed events (requested {}), {paced}, {partitions} partitions, producer compression {}, linger.ms {}, limits.pretouch {}",
        templates.len(),
        settings.events,
        settings.compression,
        settings.linger_ms,
        settings.pretouch
    );
    let (buffer, ranges) = restamped(templates);
    let total = ranges.len() as u64;
    let bench = bench_cluster(settings, partitions);
    let service = start_ready(&bench.config);
    let metrics = Arc::clone(service.metrics());
    let producer = load_producer(&bench.cluster.bootstrap_servers(), settings);
    let topic = bench.config.kafka.topic.clone();
    let buffer = Arc::new(buffer);
    let progress = Arc::new(AtomicU64::new(0));
    let target = Target { topic, partitions };
    println!("  load average before: {}", load_average());
    let cpu_before = thread_cpu();

    let start = Instant::now();
    let producing = {
        let progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                throughput_producer(producer, target, buffer, ranges, rate, start, progress)
            })
            .expect("producer thread")
    };

    // The engine's counts reach the metrics once per second (housekeeping): note each change,
    // with how many records had been produced by then.
    let mut changes: Vec<(Duration, u64, u64)> = Vec::new();
    // Malformed records are counted as they are read; the other outcomes at housekeeping, so
    // only a change in those marks an update.
    let engine_total =
        |m: &Metrics| events_total(m) - m.events_total.with_label_values(&["malformed"]).get();
    let mut last = events_total(&metrics);
    let mut last_engine = engine_total(&metrics);
    let mut last_change = start.elapsed();
    let deadline = Duration::from_secs(60 + total / 20_000);
    let mut stalled = false;
    while last < total {
        std::thread::sleep(Duration::from_millis(2));
        let sent = progress.load(Ordering::Relaxed);
        let engine_now = engine_total(&metrics);
        let now = events_total(&metrics);
        let elapsed = start.elapsed();
        if engine_now != last_engine {
            changes.push((elapsed, now, sent));
            last_engine = engine_now;
            last_change = elapsed;
        }
        last = now;
        if sent < total {
            last_change = last_change.max(elapsed);
        }
        // Everything produced and nothing new processed for 3 s (three housekeeping turns):
        // records were lost (the mock broker keeps 5 MiB per partition and deletes older
        // batches, so a consumer that falls further behind loses them).
        if (sent >= total && elapsed > last_change + Duration::from_secs(3)) || elapsed > deadline {
            stalled = true;
            break;
        }
    }
    let done = start.elapsed();
    let cpu_after = thread_cpu();
    let produced = producing.join().expect("producer thread");
    if std::env::var_os("KAFKA_PATH_DEBUG").is_some() {
        for (t, n, sent) in &changes {
            eprintln!(
                "  update at {:.3} s: processed {n}, sent {sent}",
                t.as_secs_f64()
            );
        }
    }
    let outcome_counts = outcomes(&metrics);
    let storms: u64 = [
        ("warning", "early"),
        ("warning", "sustained"),
        ("critical", "exchange"),
        ("critical", "amplification"),
    ]
    .iter()
    .map(|(severity, rule)| {
        metrics
            .storms_started_total
            .with_label_values(&[severity, rule])
            .get()
    })
    .sum();
    let (p50, p99, p999) = service_quantiles(&metrics.processing_latency);
    let scraped = scraped_processing_quantiles(service.http_address());

    println!(
        "  producer: all sent after {:.2} s ({:.0} events/s), all delivered after {:.2} s ({:.0} events/s)",
        produced.sent_all.as_secs_f64(),
        total as f64 / produced.sent_all.as_secs_f64(),
        produced.delivered_all.as_secs_f64(),
        total as f64 / produced.delivered_all.as_secs_f64()
    );
    let max_lag = changes
        .iter()
        .map(|&(_, processed, sent)| sent.saturating_sub(processed))
        .max()
        .unwrap_or(0);
    // Steady state: between the first and the last housekeeping updates before the end.
    let updates: Vec<&(Duration, u64, u64)> =
        changes.iter().filter(|(_, n, _)| *n < total).collect();
    let steady = match (updates.first(), updates.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64()),
        _ => None,
    };
    let (rate_seen, rate_bound, sustained) = if stalled {
        println!(
            "  service: STALLED at {last} of {total} events ({:.2} s after the first produce): records were lost, since the service fell more than the mock broker's 5 MiB per partition behind (KAFKA_PATH_LOG=warn shows librdkafka's offset resets)",
            done.as_secs_f64()
        );
        (None, None, false)
    } else {
        // Processing finished after the last update that showed fewer than `total` events.
        let before_done = updates.last().map_or(Duration::ZERO, |c| c.0);
        let rate_seen = total as f64 / done.as_secs_f64();
        let rate_bound = total as f64 / before_done.as_secs_f64().max(1e-9);
        println!(
            "  service: all {total} events processed, seen in the metrics {:.2} s after the first produce ({:.2} s after the last send); the update before showed {} at {:.2} s",
            done.as_secs_f64(),
            done.saturating_sub(produced.sent_all).as_secs_f64(),
            updates.last().map_or(0, |c| c.1),
            before_done.as_secs_f64()
        );
        println!(
            "  THROUGHPUT end to end: {rate_seen:.0} events/s (first produce -> all processed as seen in the metrics; at most {rate_bound:.0} events/s given the 1 s metrics sync)"
        );
        // Kept up: done within two housekeeping intervals of the last send and, for a paced
        // run, processing at 95 % of the offered rate or more between housekeeping updates (a
        // lower rate means a backlog that grows until the mock broker deletes records).
        let sustained = done <= produced.sent_all + Duration::from_secs(2)
            && (rate == 0 || steady.is_none_or(|s| s >= 0.95 * rate as f64));
        (Some(rate_seen), Some(rate_bound), sustained)
    };
    if let Some(steady) = steady {
        println!("  steady state (between housekeeping updates): {steady:.0} events/s processed");
    }
    println!(
        "  largest backlog seen at a metrics update: {max_lag} events ({:.2} s of production at the offered rate)",
        max_lag as f64 / (total as f64 / produced.sent_all.as_secs_f64().max(1e-9))
    );
    println!(
        "  kept up with the offered rate: {}",
        if sustained { "yes" } else { "NO" }
    );
    println!("  outcomes: {outcome_counts:?}; storms started: {storms}");
    println!(
        "  service processing latency (Kafka arrival -> engine): p50 {p50:.3} ms, p99 {p99:.3} ms, p999 {p999:.3} ms"
    );
    for line in &scraped {
        println!("    {line}");
    }
    print_cpu(
        &cpu_before,
        &cpu_after,
        done,
        produced.cpu,
        events_total(&metrics),
    );
    println!("  load average after: {}", load_average());
    service.stop().expect("service stops");
    drop(bench);
    Attempt {
        sustained,
        json: serde_json::json!({
            "run": "throughput",
            "offered_rate": rate,
            "compression": settings.compression,
            "events": total,
            "processed": last,
            "stalled": stalled,
            "seconds_to_processed": done.as_secs_f64(),
            "producer_sent_seconds": produced.sent_all.as_secs_f64(),
            "events_per_second": rate_seen,
            "events_per_second_upper_bound": rate_bound,
            "steady_events_per_second": steady,
            "max_backlog_events": max_lag,
            "sustained": sustained,
            "processing_latency_ms": {"p50": p50, "p99": p99, "p999": p999},
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Latency.

/// One scheduled reply-all of an injected storm.
struct StormReply {
    due: Duration,
    storm: usize,
    reply: usize,
}

fn storm_event(storm: usize, reply: usize, at: Millis) -> String {
    serde_json::json!({
        "timestamp": format_millis(at),
        "message_id": format!("<kp-{storm}-{reply}@bench.example>"),
        "sender": format!("sender{reply}@bench.example"),
        "recipient_count": STORM_RECIPIENTS,
        "thread_id": format!("{STORM_PREFIX}{storm}"),
        "subject": format!("Re: all staff {storm}"),
    })
    .to_string()
}

/// Reads the alerts topic from the beginning until `stop`; notes when each injected storm's
/// `storm_started` arrives. Returns those times and the number of alerts read.
fn read_alerts(
    brokers: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> (HashMap<usize, Instant>, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "kafka-path-bench-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("alerts reader");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&list).expect("assign");
    let mut seen = HashMap::new();
    let mut alerts = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(5)) else {
            continue;
        };
        let arrived = Instant::now();
        alerts += 1;
        let Some(payload) = message.payload() else {
            continue;
        };
        let Ok(alert) = serde_json::from_slice::<serde_json::Value>(payload) else {
            continue;
        };
        if alert["kind"] != "storm_started" {
            continue;
        }
        let storm = alert["thread_key"]
            .as_str()
            .and_then(|k| k.strip_prefix(STORM_PREFIX))
            .and_then(|k| k.parse::<usize>().ok());
        if let Some(storm) = storm {
            seen.entry(storm).or_insert(arrived);
        }
    }
    (seen, alerts)
}

struct Paced {
    sent: u64,
    elapsed: Duration,
    /// When each storm's deciding (3rd) reply-all was handed to the producer.
    deciding: HashMap<usize, Instant>,
    storms: usize,
    cpu: f64,
}

fn paced_producer(
    producer: BaseProducer,
    target: Target,
    templates: Arc<Vec<Template>>,
    rate: u64,
    duration: Duration,
    schedule: Vec<StormReply>,
) -> Paced {
    let storms = schedule.iter().map(|s| s.storm + 1).max().unwrap_or(0);
    let mut deciding = HashMap::new();
    let mut line = Vec::with_capacity(1024);
    let mut sent: u64 = 0;
    let mut next_storm = 0;
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let now = now_millis();
        let rfc3339 = format_millis(now);
        while let Some(reply) = schedule.get(next_storm).filter(|s| s.due <= elapsed) {
            let payload = storm_event(reply.storm, reply.reply, now);
            let partition = ((reply.storm + reply.reply) % target.partitions as usize) as i32;
            if reply.reply == 2 {
                deciding.insert(reply.storm, Instant::now());
            }
            send(&producer, &target.topic, partition, payload.as_bytes());
            next_storm += 1;
        }
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let template = &templates[(sent % templates.len() as u64) as usize];
            render(template, now, &rfc3339, &mut line);
            let partition = (sent % target.partitions as u64) as i32;
            send(&producer, &target.topic, partition, &line);
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    producer
        .flush(Duration::from_secs(60))
        .expect("every record delivered");
    Paced {
        sent,
        elapsed,
        deciding,
        storms,
        cpu: own_cpu(),
    }
}

fn latency(settings: &Settings, templates: Arc<Vec<Template>>) -> serde_json::Value {
    let partitions = settings.partitions.unwrap_or(LATENCY_PARTITIONS);
    let duration = Duration::from_secs(settings.seconds.max(1));
    let every = Duration::from_millis(settings.storm_every_ms);
    println!(
        "== latency: {} events/s for {} s on {partitions} partitions, a 3-reply storm on a fresh thread every {} ms, producer linger.ms {}, limits.pretouch {}",
        settings.rate,
        duration.as_secs(),
        every.as_millis(),
        settings.linger_ms,
        settings.pretouch
    );
    let bench = bench_cluster(settings, partitions);
    let service = start_ready(&bench.config);
    let metrics = Arc::clone(service.metrics());

    let mut schedule = Vec::new();
    let mut at = STORM_MARGIN.min(duration / 4);
    let last = duration.saturating_sub(STORM_MARGIN.min(duration / 4));
    let mut storm = 0;
    while at + STORM_REPLY_GAP * 2 < last {
        for reply in 0..3 {
            schedule.push(StormReply {
                due: at + STORM_REPLY_GAP * reply as u32,
                storm,
                reply,
            });
        }
        storm += 1;
        at += every;
    }
    schedule.sort_by_key(|s| s.due);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let brokers = bench.cluster.bootstrap_servers();
        let topic = bench.config.kafka.alerts_topic.clone();
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("bench-alerts".into())
            .spawn(move || read_alerts(brokers, topic, stop))
            .expect("reader thread")
    };
    println!("  load average before: {}", load_average());
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let producing = {
        let producer = load_producer(&bench.cluster.bootstrap_servers(), settings);
        let target = Target {
            topic: bench.config.kafka.topic.clone(),
            partitions,
        };
        let rate = settings.rate;
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || paced_producer(producer, target, templates, rate, duration, schedule))
            .expect("producer thread")
    };
    let paced = producing.join().expect("producer thread");
    let produced_total = paced.sent + 3 * paced.storms as u64;
    // Wait for the service to catch up (metrics sync once per second) and the last alerts.
    let deadline = Instant::now() + ALERT_GRACE;
    while events_total(&metrics) < produced_total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = start.elapsed();
    let cpu_after = thread_cpu();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (seen, alerts_read) = reader.join().expect("reader thread");

    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    let mut missing = 0;
    for storm in 0..paced.storms {
        match (paced.deciding.get(&storm), seen.get(&storm)) {
            (Some(sent), Some(read)) => {
                let micros = read.saturating_duration_since(*sent).as_micros() as u64;
                histogram.saturating_record(micros.max(1));
            }
            _ => missing += 1,
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    let (p50, p99, max) = (ms(0.5), ms(0.99), histogram.max() as f64 / 1e3);
    let (sp50, sp99, sp999) = service_quantiles(&metrics.processing_latency);
    let (lag50, lag99, _) = service_quantiles(&metrics.event_lag);
    let scraped = scraped_processing_quantiles(service.http_address());
    let processed = events_total(&metrics);
    println!(
        "  producer: {} events in {:.2} s ({:.0} events/s) + {} storms x 3 reply-alls",
        paced.sent,
        paced.elapsed.as_secs_f64(),
        paced.sent as f64 / paced.elapsed.as_secs_f64(),
        paced.storms
    );
    println!(
        "  service: {processed} of {produced_total} events processed (as of {:.1} s after the first produce); {alerts_read} alerts read from the alerts topic",
        caught_up.as_secs_f64()
    );
    println!(
        "  LATENCY produce (deciding reply-all) -> storm_started read from the alerts topic: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, count {} (missing {missing})",
        histogram.len()
    );
    let met = missing == 0 && !histogram.is_empty() && p99 <= 50.0;
    println!(
        "  target p99 <= 50 ms: {}",
        if met { "met" } else { "MISSED" }
    );
    println!(
        "  service processing latency (Kafka arrival -> engine): p50 {sp50:.3} ms, p99 {sp99:.3} ms, p999 {sp999:.3} ms"
    );
    for line in &scraped {
        println!("    {line}");
    }
    println!(
        "  service event lag (event timestamp -> processed): p50 {lag50:.1} ms, p99 {lag99:.1} ms"
    );
    print_cpu(
        &cpu_before,
        &cpu_after,
        caught_up,
        paced.cpu,
        events_total(&metrics),
    );
    println!("  load average after: {}", load_average());
    service.stop().expect("service stops");
    drop(bench);
    serde_json::json!({
        "run": "latency",
        "rate": settings.rate,
        "seconds": duration.as_secs(),
        "produced": produced_total,
        "processed": processed,
        "storms": paced.storms,
        "count": histogram.len(),
        "missing": missing,
        "produce_to_alert_ms": {"p50": p50, "p99": p99, "max": max},
        "target_met": met,
        "processing_latency_ms": {"p50": sp50, "p99": sp99, "p999": sp999},
    })
}

fn main() {
    stormwatch::allocator::keep_freed_memory();
    if let Ok(filter) = std::env::var("KAFKA_PATH_LOG") {
        // The service's own logs, for diagnosis (e.g. `KAFKA_PATH_LOG=info`).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let settings = parse_settings();
    println!(
        "kafka_path: runs {:?}, load average {}, service consumer fetch.wait.max.ms {}",
        settings.modes,
        load_average(),
        settings
            .fetch_wait_ms
            .map_or("default".to_string(), |ms| ms.to_string())
    );
    let pool_events = if settings.modes.contains(&Mode::Throughput) {
        settings.events
    } else {
        settings.rate * settings.seconds
    };
    let generating = Instant::now();
    let (templates, skipped) = templates(pool_events.max(1));
    println!(
        "generated {} usable lines ({skipped} malformed skipped) in {:.1} s",
        templates.len(),
        generating.elapsed().as_secs_f64()
    );
    let templates = Arc::new(templates);
    let mut results = Vec::new();
    for mode in &settings.modes {
        match mode {
            Mode::Throughput => {
                let mut best: Option<(u64, serde_json::Value)> = None;
                for &rate in &settings.throughput_rates {
                    let attempt = throughput(&settings, &templates, rate);
                    results.push(attempt.json.clone());
                    if !attempt.sustained {
                        break;
                    }
                    best = Some((rate, attempt.json));
                }
                match best {
                    Some((rate, json)) => {
                        let offered = if rate == 0 {
                            "unpaced".to_string()
                        } else {
                            format!("{rate} events/s")
                        };
                        let end_to_end = json["events_per_second"].as_f64().unwrap_or(0.0);
                        let steady = json["steady_events_per_second"]
                            .as_f64()
                            .map_or("n/a".to_string(), |s| format!("{s:.0} events/s"));
                        // Paced: kept up with the offered rate. Unpaced: the measured rate.
                        let met = if rate == 0 {
                            end_to_end >= 500_000.0
                        } else {
                            rate >= 500_000
                        };
                        println!(
                            "THROUGHPUT SUMMARY: highest offered rate kept up with: {offered}; end to end {end_to_end:.0} events/s, steady state {steady}; target >= 500000 events/s: {}",
                            if met { "met" } else { "MISSED" }
                        );
                    }
                    None => println!(
                        "THROUGHPUT SUMMARY: the service kept up with none of the offered rates; target >= 500000 events/s: MISSED"
                    ),
                }
            }
            Mode::Latency => results.push(latency(&settings, Arc::clone(&templates))),
        }
    }
    if settings.json {
        for result in results {
            println!("json: {result}");
        }
    }
}
