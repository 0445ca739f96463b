//! Security properties through the real binary and the service: sender addresses appear in no
//! output (alerts, stdout sink, logs at debug level, `/metrics`, `/api/v1/storms`, replay's
//! summary) unless `alerts.include_senders` is on, and then only in alerts; thread keys in
//! metric labels are capped in number and length; oversized HTTP requests are refused.

mod common;

use common::kafka::{cluster, event, http_get, Cluster, MIN, T0};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stormwatch::metrics::{MAX_STORM_SERIES, MAX_THREAD_KEY_LABEL};

/// Every sender of the test storms carries this, so one substring finds any leak.
const MARK: &str = "leak-canary";

/// A storm of five reply-alls on `thread` from senders that carry [`MARK`], and one malformed
/// record that names a sender too (its bytes belong in the DLQ, not in a log).
fn canary_storm(thread: &str) -> Vec<String> {
    let mut records: Vec<String> = (0..5)
        .map(|i| {
            event(
                T0 + i * MIN,
                &format!("<{thread}{i}@x>"),
                &format!("Person {i} <{MARK}-{i}@secret.example>"),
                3000,
                thread,
            )
        })
        .collect();
    records.push(format!(
        r#"{{"timestamp": "2024-03-04T09:00:30Z", "message_id": "<bad@x>", "sender": "{MARK}-bad@secret.example"}}"#
    ));
    records
}

fn replay(include_senders: bool) -> (String, String) {
    let input = canary_storm("replayed").join("\n");
    let output = common::binary()
        .arg("replay")
        .env("STORMWATCH_LOG", "debug")
        .env(
            "STORMWATCH_ALERTS__INCLUDE_SENDERS",
            include_senders.to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        })
        .expect("stormwatch replay runs");
    assert!(output.status.success());
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn replay_names_no_sender_unless_alerts_include_them() {
    let (alerts, summary) = replay(false);
    assert!(alerts.contains("storm_started"), "{alerts}");
    assert!(summary.contains("malformed"), "{summary}");
    assert!(!alerts.contains(MARK), "alerts: {alerts}");
    assert!(!summary.contains(MARK), "summary: {summary}");

    let (alerts, summary) = replay(true);
    assert!(
        alerts.contains(&format!("{MARK}-0@secret.example")),
        "{alerts}"
    );
    assert!(!summary.contains(MARK), "summary: {summary}");
}

/// A free port on 127.0.0.1 for the spawned service.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// Everything the spawned service said and showed while it ran one canary storm.
struct Outputs {
    alerts_topic: String,
    stdout: String,
    stderr: String,
    metrics: String,
    storms: String,
}

fn run_service(c: &Cluster, include_senders: bool) -> Outputs {
    // Produced before the service starts: records produced while it runs can reach its two
    // partitions in separate fetches, and a partition read to its end does not hold the merge
    // back, so the storm's first reply-all (minutes older than the rest) could be counted late.
    let records: Vec<(i32, String)> = canary_storm("service")
        .into_iter()
        .enumerate()
        .map(|(i, r)| ((i % 2) as i32, r))
        .collect();
    c.produce(&records);
    let address = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormwatch"))
        .arg("run")
        .env("STORMWATCH_KAFKA__BROKERS", c.cluster.bootstrap_servers())
        .env("STORMWATCH_HTTP__LISTEN", address.to_string())
        .env("STORMWATCH_SINKS__STDOUT__ENABLED", "true")
        .env(
            "STORMWATCH_ALERTS__INCLUDE_SENDERS",
            include_senders.to_string(),
        )
        .env("STORMWATCH_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stormwatch run starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    c.wait_for_alerts("the canary storm", |a| {
        a.iter().any(|a| a["kind"] == "storm_started")
    });
    // Give the housekeeping a turn to publish the storm to /metrics and the API.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = http_get(&format!("http://{address}/metrics"));
        if text.contains("stormwatch_storm_reply_alls{") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let storms = http_get(&format!("http://{address}/api/v1/storms"));
    let alerts_topic = c
        .read_all(&c.config.kafka.alerts_topic)
        .into_iter()
        .map(|(payload, _)| String::from_utf8_lossy(&payload).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let status = child.wait().expect("service exits");
    assert!(status.success(), "{status:?}");
    Outputs {
        alerts_topic,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        metrics,
        storms,
    }
}

#[test]
fn the_service_names_no_sender_in_any_output_by_default() {
    let c = cluster(2);
    let out = run_service(&c, false);
    assert!(out.stdout.contains("storm_started"), "stdout sink works");
    assert!(
        out.stderr.contains("DEBUG") || out.stderr.contains("\"level\":\"DEBUG\""),
        "logs at debug level: {}",
        out.stderr
    );
    assert!(out.storms.contains("\"service\""), "{}", out.storms);
    for (name, text) in [
        ("alerts topic", &out.alerts_topic),
        ("stdout sink", &out.stdout),
        ("logs", &out.stderr),
        ("/metrics", &out.metrics),
        ("/api/v1/storms", &out.storms),
    ] {
        assert!(!text.is_empty(), "{name} is empty");
        assert!(
            !text.contains(MARK),
            "a sender address in the {name}:\n{text}"
        );
    }
}

#[test]
fn with_include_senders_only_the_alerts_name_senders() {
    let c = cluster(2);
    let out = run_service(&c, true);
    let address = format!("{MARK}-0@secret.example");
    assert!(out.alerts_topic.contains(&address), "{}", out.alerts_topic);
    assert!(out.stdout.contains(&address), "{}", out.stdout);
    for (name, text) in [
        ("logs", &out.stderr),
        ("/metrics", &out.metrics),
        ("/api/v1/storms", &out.storms),
    ] {
        assert!(
            !text.contains(MARK),
            "a sender address in the {name}:\n{text}"
        );
    }
}

#[test]
fn thread_keys_in_metric_labels_are_capped_in_number_and_length() {
    let c = cluster(2);
    let service = c.start(&c.config);
    // 60 storms, on threads with keys as long as an event may carry (998 bytes), distinct in
    // their first characters.
    let storms = MAX_STORM_SERIES + 10;
    let mut records = Vec::new();
    for i in 0..3i64 {
        for s in 0..storms {
            let thread = format!("{s:03}-{}", "k".repeat(stormwatch::event::MAX_ID_BYTES - 4));
            records.push((
                (s % 2) as i32,
                event(
                    T0 + i * MIN + s as i64,
                    &format!("<{s}-{i}@x>"),
                    &format!("{s}-{i}@x"),
                    3000,
                    &thread,
                ),
            ));
        }
    }
    c.produce(&records);
    let url = format!("http://{}/metrics", service.http_address());
    let active = format!("stormwatch_storms_active{{severity=\"warning\"}} {storms}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = http_get(&url);
        if text.contains(&active) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(text.contains(&active), "{storms} storms active:\n{text}");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("stormwatch_storm_reply_alls{"))
        .collect();
    assert_eq!(series.len(), MAX_STORM_SERIES);
    for line in series {
        let label = line
            .split_once("thread_key=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("", |(value, _)| value);
        assert_eq!(label.chars().count(), MAX_THREAD_KEY_LABEL, "{line}");
    }
    // The whole exposition stays small although the keys are 998 bytes.
    assert!(text.len() < 60_000, "{} bytes of metrics", text.len());
    service.stop().expect("clean stop");
}

/// Sends raw bytes and returns the status line (empty when the server closed the connection).
fn raw_request(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn oversized_http_requests_are_refused_and_the_server_carries_on() {
    let c = cluster(1);
    let service = c.start(&c.config);
    let address = service.http_address();
    // A declared 100 MB body: refused before anything is read.
    let declared = raw_request(
        address,
        b"POST /api/v1/storms HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n",
    );
    assert!(declared.contains(" 413 "), "{declared}");
    // A chunked body of 1 MiB on a route that takes none: refused, never buffered.
    let mut chunked =
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..16 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(b'a', 0x10000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let status = raw_request(address, &chunked);
    assert!(
        status.contains(" 405 ") || status.contains(" 413 "),
        "{status}"
    );
    // A 1 MiB header: hyper refuses it (431) or drops the connection.
    let mut huge_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'h', 1 << 20));
    huge_header.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let status = raw_request(address, &huge_header);
    assert!(
        status.is_empty() || status.contains(" 431 ") || status.contains(" 400 "),
        "{status}"
    );
    // And the endpoints still answer.
    assert_eq!(
        http_get(&format!("http://{address}/healthz")),
        "ok",
        "the server carries on"
    );
    service.stop().expect("clean stop");
}
