//! What librdkafka's mock cluster and a bare consumer sustain on this machine, without
//! stormwatch (BENCHMARKS.md, "Kafka path"): the ceiling under the `kafka_path` throughput bench.
//!
//! The same setup as the bench: one mock broker, a 16-partition topic, a producer paced at each
//! offered rate in 1 ms ticks with 278-byte records (the generated events' mean size), and a
//! consumer in a group with the service's fetch settings (`fetch.wait.max.ms` 10,
//! `fetch.queue.backoff.ms` 20). The consumer only polls and counts: no decode, no engine, no
//! hand-over between threads. A rate it cannot keep up with is out of reach for the service on
//! this mock, whatever the service does.
//!
//! `cargo run --release --example mock_ceiling -- [RATE,RATE,..] [EVENTS] [LINGER_MS]`
//! (defaults 300000,400000,500000,600000; 2000000; 5).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 16;
const RECORD_BYTES: usize = 278;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rates: Vec<u64> = args
        .first()
        .map_or("300000,400000,500000,600000", String::as_str)
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let events: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    let linger = args.get(2).map_or("5", String::as_str);
    for rate in rates {
        let (consumed, elapsed, produced_in) = run(rate, events, linger);
        let kept_up = consumed == events && elapsed < produced_in + Duration::from_secs(1);
        println!(
            "rate {rate}/s, linger.ms {linger}: consumed {consumed} of {events} in {:.2} s \
             (produced in {:.2} s): {:.0} events/s, kept up: {}",
            elapsed.as_secs_f64(),
            produced_in.as_secs_f64(),
            consumed as f64 / elapsed.as_secs_f64(),
            if kept_up { "yes" } else { "NO" }
        );
    }
}

/// Records consumed, the time to consume them, and the time the producer took to send all.
fn run(rate: u64, events: usize, linger: &str) -> (usize, Duration, Duration) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("ceiling", PARTITIONS, 1)
        .expect("topic");
    let brokers = cluster.bootstrap_servers();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "ceiling")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "20")
        .create()
        .expect("consumer");
    consumer.subscribe(&["ceiling"]).expect("subscribe");
    // Join the group before producing, as the bench's service is ready before it starts.
    let joined = Instant::now();
    while consumer.assignment().map_or(0, |a| a.count()) == 0 && joined.elapsed().as_secs() < 30 {
        consumer.poll(Duration::from_millis(50));
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", linger)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let start = Instant::now();
    let producing = std::thread::spawn(move || {
        let payload = vec![b'x'; RECORD_BYTES];
        let mut sent = 0usize;
        while sent < events {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(events);
            while sent < due {
                let record = BaseRecord::<(), [u8]>::to("ceiling")
                    .partition(sent as i32 % PARTITIONS)
                    .payload(&payload);
                match producer.send(record) {
                    Ok(()) => sent += 1,
                    Err(_) => {
                        producer.poll(Duration::from_millis(1));
                    }
                }
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
        let produced_in = start.elapsed();
        producer
            .flush(Duration::from_secs(60))
            .expect("every record delivered");
        produced_in
    });
    let mut consumed = 0usize;
    let mut last = Instant::now();
    // Until all arrived, or nothing came for 3 s (records the mock deleted never come).
    while consumed < events && last.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if message.payload_len() > 0 {
                consumed += 1;
                last = Instant::now();
            }
        }
    }
    let elapsed = last.duration_since(start);
    let produced_in = producing.join().expect("producer thread");
    (consumed, elapsed, produced_in)
}
