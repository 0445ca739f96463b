//! The service against librdkafka's mock cluster: the real Kafka protocol, in process, no fakes.
//! Each test starts its own cluster and service.

mod common;

use common::kafka::{cluster, count, event, http_get, kinds, storm, MIN, T0};
use std::time::{Duration, Instant};
use stormwatch::timefmt::{format_millis, now_millis};

#[test]
fn a_storm_is_announced_once_and_malformed_records_reach_the_dlq() {
    let c = cluster(3);
    let service = c.start(&c.config);
    let mut records: Vec<(i32, String)> = (0..5)
        .map(|i| {
            (
                i % 3,
                event(
                    T0 + i as i64 * MIN,
                    &format!("<m{i}@x>"),
                    &format!("s{i}@x"),
                    3000,
                    "storm",
                ),
            )
        })
        .collect();
    records.push((0, "{oops".into()));
    records.push((
        1,
        r#"{"timestamp": "soon", "message_id": "x", "sender": "y", "recipient_count": 1}"#.into(),
    ));
    records.push((2, event(T0 + 6 * MIN, "<quiet@x>", "q@x", 1, "other")));
    c.produce(&records);
    let alerts = c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    let started = &alerts[0];
    for field in stormwatch::alert::REQUIRED_FIELDS {
        assert!(started.get(field).is_some(), "missing {field}: {started}");
    }
    assert_eq!(started["thread_key"], "storm");
    assert_eq!(started["rule"], "early");
    assert_eq!(started["reply_alls"], 3);

    let deadline = Instant::now() + Duration::from_secs(20);
    let dlq = loop {
        let dlq = c.read_all(&c.config.kafka.dlq_topic);
        if dlq.len() >= 2 || Instant::now() > deadline {
            break dlq;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let reasons: Vec<&str> = dlq
        .iter()
        .map(|(_, h)| h.get("stormwatch.reason").map_or("", String::as_str))
        .collect();
    assert!(
        reasons.contains(&"not_json") && reasons.contains(&"bad_timestamp"),
        "{reasons:?}"
    );
    let oops = dlq
        .iter()
        .find(|(p, _)| p == b"{oops")
        .expect("original bytes kept");
    assert_eq!(
        oops.1.get("stormwatch.source_topic"),
        Some(&c.config.kafka.topic)
    );
    assert_eq!(
        oops.1
            .get("stormwatch.source_partition")
            .map(String::as_str),
        Some("0")
    );
    assert!(oops.1.contains_key("stormwatch.source_offset"));

    // The metrics agree with what was produced.
    let url = format!("http://{}/metrics", service.http_address());
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = http_get(&url);
        if text.contains(r#"stormwatch_events_total{outcome="counted"} 5"#)
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for expected in [
        r#"stormwatch_events_total{outcome="counted"} 5"#,
        r#"stormwatch_events_total{outcome="ignored"} 1"#,
        r#"stormwatch_events_total{outcome="malformed"} 2"#,
        r#"stormwatch_malformed_events_total{reason="not_json"} 1"#,
        r#"stormwatch_storms_started_total{rule="early",severity="warning"} 1"#,
        r#"stormwatch_storms_active{severity="warning"} 1"#,
        r#"stormwatch_alerts_sent_total{outcome="delivered",sink="kafka"} 1"#,
        r#"stormwatch_alerts_sent_total{outcome="delivered",sink="dlq"} 2"#,
        "stormwatch_storm_reply_alls{thread_key=\"storm\"} 5",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(
        !text.contains("s1@x"),
        "a sender address leaked into the metrics"
    );
    // Consumer lag (from librdkafka's statistics, every 5 s) is from what was read to the end of
    // each partition: 0 once caught up, although commits stay a window behind on purpose. Three
    // hours later on every partition: the first records get committed, the new ones do not.
    c.produce(
        &(0..3)
            .map(|p| {
                (
                    p,
                    event(T0 + 180 * MIN, &format!("<later{p}@x>"), "l@x", 1, "later"),
                )
            })
            .collect::<Vec<_>>(),
    );
    let lag_zero = |text: &str| {
        (0..3).all(|p| {
            text.contains(&format!(
                "stormwatch_kafka_consumer_lag{{partition=\"{p}\"}} 0\n"
            ))
        })
    };
    // Wait for a statistics report after the commit of the first records.
    std::thread::sleep(Duration::from_secs(7));
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = http_get(&url);
        if lag_zero(&text) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        lag_zero(&text),
        "consumer lag not 0 when caught up:\n{text}"
    );
    let storms = http_get(&format!("http://{}/api/v1/storms", service.http_address()));
    assert!(storms.contains("\"storm\""), "{storms}");
    service.stop().expect("clean stop");
}

#[test]
fn a_lagging_partition_is_merged_as_if_one_partition() {
    let c = cluster(2);
    // Partition 1 holds the storm's first minutes; partition 0 is twenty minutes ahead, as after
    // a restart where one partition was read further than the other.
    let mut records = Vec::new();
    for i in 0..20 {
        records.push((
            0,
            event(
                T0 + 20 * MIN + i * 30_000,
                &format!("<b{i}@x>"),
                "bg@x",
                1,
                &format!("bg{i}"),
            ),
        ));
    }
    for i in 0..3 {
        records.push((
            1,
            event(
                T0 + i * MIN,
                &format!("<s{i}@x>"),
                &format!("s{i}@x"),
                3000,
                "lagging",
            ),
        ));
    }
    for i in 3..12 {
        records.push((
            1,
            event(
                T0 + 20 * MIN + i * 30_000,
                &format!("<s{i}@x>"),
                &format!("s{i}@x"),
                3000,
                "lagging",
            ),
        ));
    }
    c.produce(&records);
    let service = c.start(&c.config);
    let alerts = c.wait_for_alerts("the storm", |a| count(a, "storm_escalated") == 1);
    service.stop().expect("clean stop");
    // The same events through replay, in timestamp order, give the same alerts.
    let mut ordered: Vec<&(i32, String)> = records.iter().collect();
    ordered.sort_by_key(|(_, e)| {
        serde_json::from_str::<serde_json::Value>(e)
            .ok()
            .and_then(|v| v["timestamp"].as_str().map(str::to_string))
    });
    let input: String = ordered.iter().map(|(_, e)| format!("{e}\n")).collect();
    let replayed = replay(&input);
    let strip = |a: &serde_json::Value| {
        let mut a = a.clone();
        a.as_object_mut().map(|o| o.remove("storm_id"));
        a
    };
    let expected: Vec<serde_json::Value> = replayed.iter().map(strip).collect();
    let got: Vec<serde_json::Value> = alerts.iter().map(strip).collect();
    assert_eq!(got, expected);
    assert!(expected.iter().any(|a| a["kind"] == "storm_started" && a["started_at"] == format_millis(T0 + 2 * MIN)), "{expected:#?}");
}

#[test]
fn a_restart_mid_storm_does_not_announce_it_twice_and_announces_what_started_while_down() {
    let c = cluster(2);
    // The mock cluster holds a departed member's partitions until its session times out; a
    // short session keeps the restart quick.
    let mut config = c.config.clone();
    config
        .kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    config
        .kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    let service = c.start(&config);
    c.produce(&storm("restart", 0, 3, 0));
    c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    service.stop().expect("clean stop");

    // While stormwatch is down: the storm goes on (escalates) and another begins.
    let mut records: Vec<(i32, String)> = (3..11)
        .map(|i| {
            (
                i % 2,
                event(
                    T0 + i as i64 * MIN,
                    &format!("<a{i}@x>"),
                    &format!("a{i}@x"),
                    3000,
                    "restart",
                ),
            )
        })
        .collect();
    records.extend((0..3).map(|i| {
        (
            i % 2,
            event(
                T0 + 11 * MIN + i as i64 * 1000,
                &format!("<n{i}@x>"),
                &format!("n{i}@x"),
                3000,
                "new-while-down",
            ),
        )
    }));
    c.produce(&records);
    let service = c.start(&config);
    let alerts = c.wait_for_alerts("the escalation and the new storm", |a| {
        count(a, "storm_escalated") == 1 && a.iter().any(|x| x["thread_key"] == "new-while-down")
    });
    // Give a duplicate, if any, time to appear.
    std::thread::sleep(Duration::from_secs(2));
    let alerts = {
        let again = c.alerts();
        assert_eq!(again.len(), alerts.len(), "{:?}", kinds(&again));
        again
    };
    service.stop().expect("clean stop");
    assert_eq!(
        kinds(&alerts),
        vec![
            "storm_started:restart",
            "storm_escalated:restart",
            "storm_started:new-while-down"
        ]
    );
    // The escalation carries the start announced before the restart.
    assert_eq!(alerts[1]["started_at"], alerts[0]["started_at"]);
    assert_eq!(alerts[1]["storm_id"], alerts[0]["storm_id"]);
}

#[test]
fn a_storm_ends_by_wall_clock_when_traffic_stops() {
    let c = cluster(2);
    let mut config = c.config.clone();
    config.detection.quiet_period = Duration::from_secs(2);
    let service = c.start(&config);
    let now = now_millis();
    c.produce(
        &(0..3)
            .map(|i| {
                (
                    i % 2,
                    event(
                        now - 3000 + i as i64 * 100,
                        &format!("<w{i}@x>"),
                        &format!("w{i}@x"),
                        3000,
                        "wall",
                    ),
                )
            })
            .collect::<Vec<_>>(),
    );
    let alerts = c.wait_for_alerts("storm_ended", |a| count(a, "storm_ended") == 1);
    service.stop().expect("clean stop");
    assert_eq!(
        kinds(&alerts),
        vec!["storm_started:wall", "storm_ended:wall"]
    );
    let ended_at =
        stormwatch::timefmt::parse_rfc3339_millis(alerts[1]["at"].as_str().unwrap_or(""))
            .expect("at");
    // Ended by the wall clock: at least the quiet period after the last arrival, after the
    // (older) event times.
    assert!(
        ended_at >= now + 1_500,
        "ended at {ended_at}, produced at {now}"
    );
}

fn replay(input: &str) -> Vec<serde_json::Value> {
    let output = common::run(&["replay"], input.as_bytes());
    common::json_lines(&output.stdout)
}

#[test]
fn the_binary_shuts_down_cleanly_on_sigterm() {
    let c = cluster(2);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stormwatch"))
        .arg("run")
        .env("STORMWATCH_KAFKA__BROKERS", c.cluster.bootstrap_servers())
        .env("STORMWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .env("STORMWATCH_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stormwatch run starts");
    c.produce(&storm("term", 0, 3, 0));
    c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "stormwatch did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut logs = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut logs);
    }
    assert!(exit.success(), "exit {exit:?}\n{logs}");
    assert!(logs.contains("stormwatch stopped"), "{logs}");
}
