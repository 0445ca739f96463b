//! Faults on the real components: a crash (`kill -9`) mid-storm, and the broker failing the
//! alerts producer's requests. Nothing may be lost and nothing announced twice.

mod common;

use common::kafka::{cluster, count, kinds, storm, Cluster};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts the real binary against the cluster, with a short group session so a killed
/// member's partitions are reassigned quickly.
fn spawn(c: &Cluster) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stormwatch"))
        .arg("run")
        .env("STORMWATCH_KAFKA__BROKERS", c.cluster.bootstrap_servers())
        .env("STORMWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .env("STORMWATCH_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .env("STORMWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stormwatch run starts")
}

#[test]
fn a_storm_survives_kill_9_and_is_announced_exactly_once() {
    let c = cluster(2);
    let mut first = spawn(&c);
    c.produce(&storm("crash", 0, 3, 0));
    c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    first.kill().expect("SIGKILL");
    let _ = first.wait();

    // While it is down the storm escalates and another one starts.
    let mut records = storm("crash", 3, 11, 0);
    records.extend(storm("while-dead", 0, 3, 11));
    c.produce(&records);
    let mut second = spawn(&c);
    c.wait_for_alerts("the escalation and the new storm", |a| {
        count(a, "storm_escalated") == 1 && count(a, "storm_started") == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let alerts = c.alerts();
    second.kill().expect("SIGKILL");
    let _ = second.wait();
    assert_eq!(
        kinds(&alerts),
        vec![
            "storm_started:crash",
            "storm_escalated:crash",
            "storm_started:while-dead"
        ]
    );
    assert_eq!(alerts[1]["storm_id"], alerts[0]["storm_id"]);
}

#[test]
fn failed_produce_requests_are_retried_and_the_alert_arrives_once() {
    let c = cluster(2);
    c.produce(&storm("retry", 0, 3, 0));
    // Every produce request now fails a few times before the broker accepts it again.
    c.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 6],
    );
    let service = c.start(&c.config);
    let alerts = c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.alerts().len(), alerts.len(), "no duplicate after retries");
    assert_eq!(kinds(&alerts), vec!["storm_started:retry"]);
    service.stop().expect("clean stop");
}
