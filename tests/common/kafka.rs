//! A mock Kafka cluster for behaviour tests: librdkafka's own, in process, real protocol.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use stormwatch::config::Config;
use stormwatch::service::{self, RunningService, StartOptions};
use stormwatch::timefmt::{format_millis, Millis};

pub const MIN: Millis = 60_000;

pub struct Cluster {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub config: Config,
}

pub fn cluster(partitions: i32) -> Cluster {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut config = Config::default();
    config.kafka.brokers = cluster.bootstrap_servers();
    config.http.listen = "127.0.0.1:0".into();
    cluster
        .create_topic(&config.kafka.topic, partitions, 1)
        .expect("topic");
    cluster
        .create_topic(&config.kafka.alerts_topic, 1, 1)
        .expect("alerts topic");
    cluster
        .create_topic(&config.kafka.dlq_topic, 1, 1)
        .expect("dlq topic");
    Cluster { cluster, config }
}

impl Cluster {
    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("linger.ms", "0")
            .create()
            .expect("producer")
    }

    /// Produces `(partition, payload)` records and waits for them to be delivered.
    ///
    /// Records reach the broker in the order given: each one is delivered before the next one
    /// on another partition is sent. Otherwise a running service could fetch a later record on
    /// one partition while an earlier one on another is still in flight, and with that other
    /// partition read to its end the merge rightly goes on without it: the earlier record,
    /// minutes older in these tests, would be counted late (seen once in CI).
    pub fn produce(&self, records: &[(i32, String)]) {
        let producer = self.producer();
        let mut previous = None;
        for (partition, payload) in records {
            if previous.is_some_and(|p| p != *partition) {
                producer.flush(Duration::from_secs(10)).expect("flush");
            }
            previous = Some(*partition);
            producer
                .send(
                    BaseRecord::<(), _>::to(&self.config.kafka.topic)
                        .partition(*partition)
                        .payload(payload),
                )
                .map_err(|(e, _)| e)
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    pub fn start(&self, config: &Config) -> RunningService {
        service::start(config, StartOptions::default()).expect("service starts")
    }

    /// The cluster's config with a short consumer-group session, so that a member that leaves
    /// or is killed gives its partitions up quickly (the mock cluster holds them until then).
    pub fn quick_rejoin_config(&self) -> Config {
        let mut config = self.config.clone();
        for (key, value) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ] {
            config.kafka.properties.insert(key.into(), value.into());
        }
        config
    }

    /// Every record on `topic`, read from the beginning to the end.
    pub fn read_all(&self, topic: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("group.id", "test-reader")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&list).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let mut headers = HashMap::new();
                    if let Some(h) = m.headers() {
                        for header in h.iter() {
                            headers.insert(
                                header.key.to_string(),
                                String::from_utf8_lossy(header.value.unwrap_or_default())
                                    .into_owned(),
                            );
                        }
                    }
                    out.push((m.payload().unwrap_or_default().to_vec(), headers));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                _ => {}
            }
        }
        out
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.read_all(&self.config.kafka.alerts_topic)
            .into_iter()
            .map(|(payload, _)| serde_json::from_slice(&payload).expect("alert JSON"))
            .collect()
    }

    /// Waits until the alerts topic satisfies `done`.
    pub fn wait_for_alerts(
        &self,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let alerts = self.alerts();
            if done(&alerts) {
                return alerts;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; alerts: {alerts:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn event(at: Millis, id: &str, sender: &str, recipients: u64, thread: &str) -> String {
    serde_json::json!({
        "timestamp": format_millis(at), "message_id": id, "sender": sender,
        "recipient_count": recipients, "thread_id": thread, "subject": format!("Re: {thread}"),
    })
    .to_string()
}

pub fn kinds(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["kind"].as_str().unwrap_or(""),
                a["thread_key"].as_str().unwrap_or("")
            )
        })
        .collect()
}

pub fn count(alerts: &[serde_json::Value], kind: &str) -> usize {
    alerts.iter().filter(|a| a["kind"] == kind).count()
}

/// 2024-03-04T09:00:00Z
pub const T0: Millis = 1_709_542_800_000;

/// Waits until `/readyz` answers `ready`, or panics with its last answer after `within`.
pub fn wait_ready(service: &RunningService, within: Duration) {
    let url = format!("http://{}/readyz", service.http_address());
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(&url);
        if answer.trim() == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `stormwatch_events_total{outcome}` from the metrics text (0 when absent).
pub fn events(text: &str, outcome: &str) -> u64 {
    sample(
        text,
        &format!("stormwatch_events_total{{outcome=\"{outcome}\"}}"),
    )
}

/// The value of one sample in the exposition text (0 when absent).
pub fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the service's metrics satisfy `done`.
pub fn wait_for_metrics(url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http_get(url);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// GET a URL and return its body.
pub fn http_get(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        reqwest::get(url)
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    })
}

/// Reply-alls `from..to` of a storm on `thread`, one a minute from `minute0` after [`T0`],
/// alternating between partitions 0 and 1, each from its own sender.
pub fn storm(thread: &str, from: i64, to: i64, minute0: i64) -> Vec<(i32, String)> {
    (from..to)
        .map(|i| {
            (
                (i % 2) as i32,
                event(
                    T0 + (minute0 + i) * MIN,
                    &format!("<{thread}{i}@x>"),
                    &format!("{thread}{i}@x"),
                    3000,
                    thread,
                ),
            )
        })
        .collect()
}

/// Another member of stormwatch's consumer group (an operator's tool, a second instance started
/// by mistake): joining splits the partitions, leaving hands them back, each a rebalance that
/// revokes all of stormwatch's partitions. It reads what it is given and commits nothing.
pub struct Intruder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    joined: std::sync::mpsc::Receiver<usize>,
    thread: std::thread::JoinHandle<usize>,
}

impl Intruder {
    /// Joins the group of `config` on `cluster`.
    pub fn join(cluster: &Cluster, config: &Config) -> Intruder {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (joined, has_joined) = std::sync::mpsc::channel();
        let thread = {
            let stop = std::sync::Arc::clone(&stop);
            let brokers = cluster.cluster.bootstrap_servers();
            let topic = config.kafka.topic.clone();
            let group = config.kafka.group_id.clone();
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .set("group.id", group)
                    .set("session.timeout.ms", "6000")
                    .set("enable.auto.commit", "false")
                    .create()
                    .expect("intruder");
                consumer.subscribe(&[&topic]).expect("subscribe");
                let mut assigned = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                    let now = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                    if now > 0 && assigned == 0 {
                        let _ = joined.send(now);
                    }
                    assigned = assigned.max(now);
                }
                consumer.unsubscribe();
                assigned
            })
        };
        Intruder {
            stop,
            joined: has_joined,
            thread,
        }
    }

    /// Waits until the group has rebalanced and the intruder holds a partition.
    pub fn wait_assigned(&self, within: Duration) {
        self.joined
            .recv_timeout(within)
            .expect("the intruder was assigned a partition");
    }

    /// Leaves the group; returns the most partitions it held at once.
    pub fn leave(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("intruder thread")
    }
}
