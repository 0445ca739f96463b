//! `stormwatch mock-broker`, the hidden test broker of tests/e2e/postfix: it announces its
//! address, holds the topics asked for, carries records both ways, stops cleanly on SIGTERM.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the broker if a test fails before it does.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_its_topics_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address_file = dir.path().join("address");
    let mut broker = Broker(
        Command::new(env!("CARGO_BIN_EXE_stormwatch"))
            .args(["mock-broker", "--topic", "mail-log:2", "--topic", "alerts"])
            .arg("--address-file")
            .arg(&address_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("stormwatch mock-broker starts"),
    );
    let stdout = broker.0.stdout.take().expect("stdout is piped");
    let mut printed = String::new();
    BufReader::new(stdout)
        .read_line(&mut printed)
        .expect("reads the address line");
    let address = printed.trim().to_string();
    assert!(address.starts_with("127.0.0.1:"), "{printed:?}");
    let written = std::fs::read_to_string(&address_file).expect("address file");
    assert_eq!(written.trim(), address);

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<(), _>::to("mail-log")
                .partition(1)
                .payload("Nov 25 18:39:18 mx1 postfix/qmgr[7]: 32B949C003B: removed"),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("delivered");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("group.id", "mock-broker-test")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut partitions: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    partitions.sort();
    assert_eq!(
        partitions,
        vec![("alerts".to_string(), 1), ("mail-log".to_string(), 2)]
    );
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("mail-log", 1, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    let payload = loop {
        assert!(Instant::now() < deadline, "the record did not come back");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            break message.payload().map(|p| p.to_vec());
        }
    };
    assert_eq!(
        payload.as_deref(),
        Some(&b"Nov 25 18:39:18 mx1 postfix/qmgr[7]: 32B949C003B: removed"[..])
    );

    // The clients go first: closing them against a broker already gone waits for timeouts.
    drop(consumer);
    drop(producer);
    let status = Command::new("kill")
        .args(["-TERM", &broker.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = broker.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_topic_is_refused_before_starting() {
    let output = Command::new(env!("CARGO_BIN_EXE_stormwatch"))
        .args(["mock-broker", "--topic", "mail-log:0"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("partitions must be 1 to 1024"), "{stderr}");
}
