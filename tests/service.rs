//! The service against librdkafka's mock cluster: the real Kafka protocol, in process, no fakes.
//! Each test starts its own cluster and service.

mod common;

use common::kafka::{
    cluster, count, event, events, http_get, kinds, sample, storm, wait_for_metrics, wait_ready,
    Intruder, MIN, T0,
};
use common::receiver::Recorder;
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
    let config = c.quick_rejoin_config();
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

/// Three reply-alls on `thread` in the few seconds before `now`, from senders `{tag}0@x`..: a
/// storm whose events are as recent as the wall clock, so it can end by the wall clock.
fn recent_storm(tag: &str, thread: &str, now: i64) -> Vec<(i32, String)> {
    (0..3)
        .map(|i| {
            (
                i % 2,
                event(
                    now - 3000 + i as i64 * 100,
                    &format!("<{tag}{i}@x>"),
                    &format!("{tag}{i}@x"),
                    3000,
                    thread,
                ),
            )
        })
        .collect()
}

#[test]
fn a_storm_ends_by_wall_clock_when_traffic_stops() {
    let c = cluster(2);
    let mut config = c.config.clone();
    config.detection.quiet_period = Duration::from_secs(2);
    let service = c.start(&config);
    let now = now_millis();
    c.produce(&recent_storm("w", "wall", now));
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

#[test]
fn a_storm_ended_by_wall_clock_stays_ended_after_a_restart() {
    let c = cluster(2);
    let alertmanager = Recorder::start();
    let mut config = c.quick_rejoin_config();
    config.detection.quiet_period = Duration::from_secs(2);
    config.sinks.alertmanager.url = Some(alertmanager.url.clone());
    let service = c.start(&config);
    let now = now_millis();
    c.produce(&recent_storm("q", "quiet", now));
    c.wait_for_alerts("storm_ended", |a| count(a, "storm_ended") == 1);
    service.stop().expect("clean stop");
    let before = alertmanager.bodies().len();

    // The restart re-derives the start (already announced) but nothing in the input ends it:
    // the topic's end stands, and no second one comes a quiet period later; nor does
    // Alertmanager hear of it firing again.
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4));
    let active = service.board().view().active.len();
    service.stop().expect("clean stop");
    let after = alertmanager.bodies().split_off(before);
    assert!(
        !after.iter().any(|body| fires(body, "quiet")),
        "fired again after the restart: {after:#?}"
    );
    assert_eq!(
        kinds(&c.alerts()),
        vec!["storm_started:quiet", "storm_ended:quiet"]
    );
    assert_eq!(active, 0, "not active on the board after the restart");
}

fn replay(input: &str) -> Vec<serde_json::Value> {
    let output = common::run(&["replay"], input.as_bytes());
    common::json_lines(&output.stdout)
}

/// `stormwatch run` against `brokers`, HTTP on a free port, info logs (JSON) on a piped
/// stderr, with `env` on top.
fn spawn_run(brokers: &str, env: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_stormwatch"))
        .arg("run")
        .env("STORMWATCH_KAFKA__BROKERS", brokers)
        .env("STORMWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .env("STORMWATCH_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stormwatch run starts")
}

#[test]
fn the_binary_shuts_down_cleanly_on_sigterm() {
    let c = cluster(2);
    let mut child = spawn_run(&c.cluster.bootstrap_servers(), &[]);
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

/// Starts `stormwatch run` against `brokers` with `env`, waits for its "stormwatch running" log
/// line, and returns its resident set (kB) at that moment and the JSON log lines before it. The
/// process is killed before returning.
#[cfg(target_os = "linux")]
fn started_service_memory(brokers: &str, env: &[(&str, &str)]) -> (u64, Vec<serde_json::Value>) {
    use std::io::BufRead;
    let mut child = spawn_run(brokers, env);
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = received.recv_timeout(wait) else {
            let _ = child.kill();
            panic!("no \"stormwatch running\" within 30 s: {logs:?}");
        };
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let running = entry["message"] == "stormwatch running";
        logs.push(entry);
        if running {
            break;
        }
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let _ = child.kill();
    let _ = child.wait();
    (rss_kb, logs)
}

#[cfg(target_os = "linux")]
#[test]
fn the_binary_backs_the_maps_memory_at_start_unless_pretouch_is_off() {
    let c = cluster(1);
    let brokers = c.cluster.bootstrap_servers();
    let is_pretouch = |entry: &serde_json::Value| {
        entry["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.pretouch"))
    };

    let (rss_on_kb, logs_on) = started_service_memory(&brokers, &[]);
    let pretouch = logs_on
        .iter()
        .find(|entry| is_pretouch(entry))
        .unwrap_or_else(|| panic!("no pretouch log line: {logs_on:?}"));
    // At the default caps: 4M message ids of more than 40 bytes each, besides the threads.
    let bytes = pretouch["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 4_000_000 * 40, "{pretouch}");

    let (rss_off_kb, logs_off) =
        started_service_memory(&brokers, &[("STORMWATCH_LIMITS__PRETOUCH", "false")]);
    assert!(!logs_off.iter().any(is_pretouch), "{logs_off:?}");
    assert!(
        rss_on_kb.saturating_sub(rss_off_kb) * 1024 >= bytes / 4 * 3,
        "resident {rss_on_kb} kB with pretouch, {rss_off_kb} kB without; {bytes} bytes pretouched"
    );
}

#[test]
fn a_rebalance_mid_storm_loses_nothing_and_announces_nothing_twice() {
    let c = cluster(2);
    let config = c.quick_rejoin_config();
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    // Live traffic: event times a second apart, near the wall clock, so that a partition handed
    // back after a rebalance of a few seconds is within the allowed lateness, as in production.
    let base = now_millis() - 20_000;
    let reply = |i: i64| {
        (
            (i % 2) as i32,
            event(
                base + i * 1000,
                &format!("<rb{i}@x>"),
                &format!("rb{i}@x"),
                3000,
                "rebalanced",
            ),
        )
    };
    c.produce(&(0..2).map(reply).collect::<Vec<_>>());

    // Another member joins the group: the partitions are split, then it leaves and stormwatch
    // has them all again.
    let intruder = Intruder::join(&c, &config);
    intruder.wait_assigned(Duration::from_secs(40));
    // The storm goes on while the group is split: on both partitions.
    c.produce(&(2..12).map(reply).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_secs(2));
    let assigned = intruder.leave();
    assert_eq!(assigned, 1, "the intruder held one of the two partitions");

    let alerts = c.wait_for_alerts("the storm's start and escalation", |a| {
        count(a, "storm_escalated") == 1
    });
    let metrics_url = format!("http://{}/metrics", service.http_address());
    // Every reply-all counted once: the handed-back partition's records (and the re-read ones
    // of the other, which was revoked and re-assigned too) are neither lost nor counted twice.
    let metrics = wait_for_metrics(&metrics_url, "the reply-alls counted", |t| {
        events(t, "counted") >= 12
    });
    std::thread::sleep(Duration::from_secs(2));
    let again = c.alerts();
    let metrics_after = http_get(&metrics_url);
    service.stop().expect("clean stop");
    assert_eq!(again.len(), alerts.len(), "{:?}", kinds(&again));
    assert_eq!(
        kinds(&again),
        vec!["storm_started:rebalanced", "storm_escalated:rebalanced"]
    );
    assert_eq!(
        events(&metrics, "counted"),
        12,
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("stormwatch_events_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(events(&metrics_after, "counted"), 12);
    assert_eq!(
        events(&metrics_after, "late"),
        0,
        "nothing handed back was late"
    );
    // The storm's thread holds its key and subject; the counted reply-alls' records its key.
    for map in ["threads", "message_ids"] {
        let series = format!("stormwatch_map_text_bytes{{map=\"{map}\"}} ");
        assert!(
            sample(&metrics_after, &series) > 0,
            "{map}: {metrics_after}"
        );
    }
    // And the storm's windows.
    assert!(
        sample(&metrics_after, "stormwatch_window_bytes ") > 0,
        "{metrics_after}"
    );
}

#[test]
fn a_storm_left_open_on_the_alerts_topic_is_ended_once_after_a_restart() {
    let c = cluster(2);
    let config = c.quick_rejoin_config();
    let service = c.start(&config);
    c.produce(&storm("open", 0, 3, 0));
    let first = c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    service.stop().expect("clean stop");

    // The operator skips the backlog (a new group reading from the end): the storm's events are
    // never re-read, so nothing re-derives it; the alerts topic still shows it open.
    let mut skipped = config.clone();
    skipped.kafka.group_id = "stormwatch-after-reset".into();
    skipped
        .kafka
        .properties
        .insert("auto.offset.reset".into(), "latest".into());
    let service = c.start(&skipped);
    wait_ready(&service, Duration::from_secs(30));
    assert_eq!(
        service.board().view().active.len(),
        1,
        "carried on as active until it ends"
    );
    // Traffic resumes two hours later: well past the storm's quiet period.
    c.produce(&[(
        0,
        event(T0 + 120 * MIN, "<later@x>", "later@x", 1, "elsewhere"),
    )]);
    let alerts = c.wait_for_alerts("storm_ended", |a| count(a, "storm_ended") == 1);
    std::thread::sleep(Duration::from_secs(1));
    service.stop().expect("clean stop");
    let alerts_now = c.alerts();
    assert_eq!(alerts_now.len(), alerts.len());
    assert_eq!(
        kinds(&alerts_now),
        vec!["storm_started:open", "storm_ended:open"]
    );
    let (started, ended) = (&first[0], &alerts_now[1]);
    assert_eq!(ended["started_at"], started["started_at"]);
    assert_eq!(ended["storm_id"], started["storm_id"]);
    assert_eq!(ended["severity"], started["severity"]);
    assert_eq!(ended["at"], format_millis(T0 + 120 * MIN));
}

/// The postable alerts for thread `key` in an Alertmanager request body.
fn alertmanager_entries<'a>(
    body: &'a serde_json::Value,
    key: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    body.as_array()
        .into_iter()
        .flatten()
        .filter(move |alert| alert["labels"]["thread_key"] == key)
}

/// Whether an Alertmanager request body has thread `key` firing (an alert without `endsAt`).
fn fires(body: &serde_json::Value, key: &str) -> bool {
    alertmanager_entries(body, key).any(|alert| alert.get("endsAt").is_none())
}

#[test]
fn a_storm_that_ended_before_a_restart_does_not_fire_again_in_alertmanager() {
    let c = cluster(2);
    let alertmanager = Recorder::start();
    let mut config = c.quick_rejoin_config();
    config.sinks.alertmanager.url = Some(alertmanager.url.clone());
    let service = c.start(&config);
    let mut records = storm("over", 0, 3, 0);
    // An hour on, past the quiet period in stream time: the storm ends.
    records.push((
        0,
        event(T0 + 60 * MIN, "<later@x>", "later@x", 1, "elsewhere"),
    ));
    c.produce(&records);
    c.wait_for_alerts("storm_ended", |a| count(a, "storm_ended") == 1);
    service.stop().expect("clean stop");
    let before = alertmanager.bodies();
    assert!(before.iter().any(|body| fires(body, "over")), "fired once");
    assert!(
        !fires(before.last().expect("posts"), "over"),
        "resolved before the restart"
    );

    // The restart re-reads the storm's window: it re-derives the start and the end, both
    // already announced, and must not tell Alertmanager the storm is firing again.
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    service.stop().expect("clean stop");
    let after = alertmanager.bodies().split_off(before.len());
    assert!(
        !after.iter().any(|body| fires(body, "over")),
        "fired again after the restart: {after:#?}"
    );
}

#[test]
fn an_alert_the_broker_refuses_for_good_holds_offsets_until_a_restart_writes_it() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let c = cluster(2);
    let config = c.quick_rejoin_config();
    c.produce(&storm("refused", 0, 3, 0));
    // From now on the broker refuses produce requests with a non-retriable error.
    c.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50],
    );
    let service = c.start(&config);
    let ready_url = format!("http://{}/readyz", service.http_address());
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let answer = http_get(&ready_url);
        if answer.contains("offsets held") {
            break answer;
        }
        assert!(Instant::now() < deadline, "readiness: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(reason.contains("alerts or DLQ topic"), "{reason}");
    let metrics = http_get(&format!("http://{}/metrics", service.http_address()));
    assert!(
        metrics.contains("stormwatch_alerts_sent_total{outcome=\"failed\",sink=\"kafka\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("alerts_sent"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    service.stop().expect("clean stop");
    assert!(c.alerts().is_empty(), "nothing reached the topic");

    // Fixed (the errors are used up) and restarted: the record that caused the alert was not
    // committed, so the alert is made again, once.
    c.cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let service = c.start(&config);
    let alerts = c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    std::thread::sleep(Duration::from_secs(1));
    service.stop().expect("clean stop");
    assert_eq!(kinds(&c.alerts()), vec!["storm_started:refused"]);
    assert_eq!(alerts[0]["reply_alls"], 3);
}

/// A mail log produced line by line to the input topic (round-robin over `partitions`, or all
/// on partition 0), read by the service with `format`: the storm comes out as from replay.
fn mail_log_through_the_service(
    format: stormwatch::decode::InputFormat,
    log: &str,
    partitions: i32,
) -> (Vec<serde_json::Value>, String) {
    let c = cluster(2);
    let mut config = c.config.clone();
    config.input.format = format;
    let service = c.start(&config);
    let text = std::fs::read_to_string(log).expect("sample log");
    let records: Vec<(i32, String)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| ((i as i32) % partitions, line.to_string()))
        .collect();
    c.produce(&records);
    let alerts = c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    std::thread::sleep(Duration::from_secs(1));
    let metrics = http_get(&format!("http://{}/metrics", service.http_address()));
    service.stop().expect("clean stop");
    assert_eq!(c.alerts().len(), alerts.len(), "{:?}", kinds(&c.alerts()));
    (alerts, metrics)
}

fn assert_the_sample_storm(alert: &serde_json::Value) {
    assert_eq!(alert["kind"], "storm_started");
    assert_eq!(alert["thread_key"], "orig-1@x.org");
    assert_eq!(alert["rule"], "early");
    assert_eq!(alert["reply_alls"], 3);
    assert_eq!(alert["distinct_senders"], 3);
    assert_eq!(alert["deliveries"], 9003);
}

#[test]
fn postfix_log_lines_on_kafka_are_assembled_into_events() {
    let (alerts, metrics) = mail_log_through_the_service(
        stormwatch::decode::InputFormat::Postfix,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/postfix/storm.log"),
        2,
    );
    assert_the_sample_storm(&alerts[0]);
    // Lines of other daemons are counted as ignored, the garbage line as malformed.
    assert!(
        metrics.contains("stormwatch_log_lines_ignored_total{reason=\"other_daemon\"} 28"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stormwatch_malformed_events_total{reason=\"no_syslog_header\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stormwatch_events_total{outcome=\"counted\"} 5"),
        "{metrics}"
    );
}

#[test]
fn exchange_tracking_rows_on_kafka_are_assembled_into_events() {
    // One partition: a stream's `#Fields:` line sets the columns of the rows after it.
    let (alerts, _) = mail_log_through_the_service(
        stormwatch::decode::InputFormat::ExchangeTracking,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/exchange/storm.log"),
        1,
    );
    assert_the_sample_storm(&alerts[0]);
}

/// The `#Fields:` line of the Exchange rows the service tests produce, on partition 0.
const EXCHANGE_FIELDS: &str = "#Fields: date-time,event-id,internal-message-id,message-id,recipient-address,recipient-count,related-recipient-address,reference,message-subject,sender-address";

/// Messages evicted from a full assembly map but complete enough to emit (every Exchange
/// message: its RECEIVE row is there) are emitted early and counted, not lost.
#[test]
fn exchange_messages_evicted_from_a_full_map_are_emitted_early_and_counted() {
    let c = cluster(1);
    let mut config = c.config.clone();
    config.input.format = stormwatch::decode::InputFormat::ExchangeTracking;
    config.input.exchange.max_pending = 2;
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    let base = now_millis() - 10_000;
    let mut rows = vec![(0, EXCHANGE_FIELDS.to_string())];
    rows.extend((0..10i64).map(|i| {
        let at = format_millis(base + i * 100);
        (
            0,
            format!("{at},RECEIVE,{i},<ee{i}@x>,all@x,1,,,hello,s{i}@x"),
        )
    }));
    c.produce(&rows);
    let metrics_url = format!("http://{}/metrics", service.http_address());
    // Each RECEIVE past the second evicts the oldest waiting message.
    let text = wait_for_metrics(&metrics_url, "eight messages emitted early", |t| {
        sample(t, "stormwatch_log_messages_emitted_early_total ") == 8
    });
    service.stop().expect("clean stop");
    assert!(
        sample(&text, "stormwatch_log_messages_pending ") <= 2,
        "{text}"
    );
}

#[test]
fn exchange_rows_read_again_after_a_rebalance_are_assembled_once() {
    // Three reply-alls to a list, each a RECEIVE row (the list is one recipient) and an EXPAND
    // row (its 3,000 members), held by the correlator for `expand_wait`. A rebalance in that
    // wait revokes the partition; nothing of it was committed, so all rows are read again. The
    // messages being assembled must start afresh: kept, each would add its EXPAND row's members
    // again at every rebalance (the intruder's join and its leaving: 27,000 deliveries). (Two partitions, so that the intruder
    // gets one; all rows are on partition 0, which stormwatch reads again whoever held it.)
    let c = cluster(2);
    let mut config = c.quick_rejoin_config();
    config.input.format = stormwatch::decode::InputFormat::ExchangeTracking;
    config.input.exchange.expand_wait = Duration::from_secs(45);
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    let base = now_millis() - 10_000;
    let mut rows = vec![(0, EXCHANGE_FIELDS.to_string())];
    for i in 0..3i64 {
        let at = |ms: i64| format_millis(base + i * 1000 + ms);
        rows.push((
            0,
            format!(
                "{},RECEIVE,{i},<ex{i}@x>,all@x,1,,,RE: results,s{i}@x",
                at(0)
            ),
        ));
        rows.push((
            0,
            format!(
                "{},EXPAND,{i},<ex{i}@x>,,3000,all@x,,RE: results,s{i}@x",
                at(500)
            ),
        ));
    }
    c.produce(&rows);
    let metrics_url = format!("http://{}/metrics", service.http_address());
    let text = wait_for_metrics(&metrics_url, "three messages being assembled", |t| {
        t.lines().any(|l| l == "stormwatch_log_messages_pending 3")
    });
    // What they hold: a few hundred bytes each.
    let held = sample(&text, "stormwatch_log_messages_pending_bytes ");
    assert!((600..3_000).contains(&held), "{held}");

    let intruder = Intruder::join(&c, &config);
    intruder.wait_assigned(Duration::from_secs(40));
    intruder.leave();

    let alerts = c.wait_for_alerts("the storm of the assembled messages", |a| {
        count(a, "storm_started") == 1
    });
    let started = &alerts[0];
    assert_eq!(started["reply_alls"], 3, "{started}");
    assert_eq!(started["deliveries"], 9000, "{started}");
    std::thread::sleep(Duration::from_secs(2));
    let metrics = http_get(&metrics_url);
    service.stop().expect("clean stop");
    assert_eq!(events(&metrics, "counted"), 3, "{metrics}");
    assert_eq!(c.alerts().len(), alerts.len(), "{:?}", kinds(&c.alerts()));
}

/// A stop waits for the sinks to deliver what they hold (up to 5 s): meanwhile `/readyz` must
/// already say the instance is going, so a rollout or load balancer moves on at once.
#[test]
fn readyz_says_shutting_down_while_the_stop_drains() {
    // A webhook receiver that takes connections and never answers: the alert stays pending.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let webhook = format!("http://{}", hanging.local_addr().expect("its address"));
    std::thread::spawn(move || {
        let held: Vec<_> = hanging.incoming().flatten().collect();
        drop(held);
    });
    let c = cluster(2);
    let mut config = c.quick_rejoin_config();
    config.sinks.webhook.url = Some(webhook);
    let service = c.start(&config);
    wait_ready(&service, Duration::from_secs(30));
    c.produce(&storm("drain", 0, 3, 0));
    c.wait_for_alerts("storm_started", |a| count(a, "storm_started") == 1);
    let readyz = format!("http://{}/readyz", service.http_address());
    let stopping = std::thread::spawn(move || service.stop());
    let mut answers = Vec::new();
    while !stopping.is_finished() {
        let answer = std::panic::catch_unwind(|| http_get(&readyz));
        match answer {
            Ok(text) if answers.last() != Some(&text) => answers.push(text),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stopping
        .join()
        .expect("stop does not panic")
        .expect("clean stop");
    let not_ready: Vec<&String> = answers.iter().filter(|a| a.trim() != "ready").collect();
    assert_eq!(
        not_ready.first().map(|a| a.trim()),
        Some("shutting down"),
        "answers during the stop: {answers:?}"
    );
}
