//! The malformed-input corpus (`tests/data/malformed/`, described by its `MANIFEST`) through the
//! decoder, through `stormwatch replay` (the real binary) and through the service on the mock
//! cluster: no panic, every record counted under its reason, every service-mode record in the
//! DLQ with its original bytes and a reason header, and a storm among the garbage still
//! announced exactly once.

mod common;

use common::kafka::{cluster, event, http_get, sample, MIN, T0};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stormwatch::decode::{decode_json, DecodeOptions, DEFAULT_MAX_RECORD_BYTES};
use stormwatch::timefmt::now_millis;

/// The outcome label of a valid record.
const ACCEPTED: &str = "accepted";
/// The storm hidden among the garbage.
const STORM_THREAD: &str = "among-garbage";
/// Its reply-alls: `early` (warning) at the 3rd, `exchange` (critical) at the 10th.
const STORM_EVENTS: i64 = 12;
/// The most of a malformed record the service puts in the DLQ (`MAX_DLQ_PAYLOAD`).
const DLQ_HEAD: usize = 512 * 1024;

/// One kind of bad input: its records and the outcome of each.
struct Kind {
    name: String,
    records: Vec<Vec<u8>>,
    /// What each record should give.
    expected: Vec<String>,
    /// What each record gives today, when that differs (a known bug).
    today: Option<Vec<String>>,
}

impl Kind {
    /// The outcomes the pipeline tests expect now.
    fn current(&self) -> &[String] {
        self.today.as_deref().unwrap_or(&self.expected)
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed")
}

fn labels(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The committed kinds, as the manifest lists them, plus the generated ones.
fn corpus() -> Vec<Kind> {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).expect("MANIFEST");
    let mut kinds = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, outcomes) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad MANIFEST row: {line}"));
        let (expected, today) = match outcomes.split_once('|') {
            Some((expected, today)) => {
                let today = today
                    .trim()
                    .strip_prefix("today:")
                    .unwrap_or_else(|| panic!("bad MANIFEST row: {line}"));
                (labels(expected), Some(labels(today)))
            }
            None => (labels(outcomes), None),
        };
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut records: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        assert_eq!(
            records.pop().as_deref(),
            Some(&b""[..]),
            "{file} must end with a newline"
        );
        assert_eq!(
            records.len(),
            expected.len(),
            "{file}: the MANIFEST lists {} outcomes for {} records",
            expected.len(),
            records.len()
        );
        if let Some(today) = &today {
            assert_eq!(today.len(), records.len(), "{file}: today's outcomes");
        }
        kinds.push(Kind {
            name: file.to_owned(),
            records,
            expected,
            today,
        });
    }
    kinds.extend(generated());
    kinds
}

/// A valid event whose `subject` is padded so the record is exactly `len` bytes long.
fn event_of_length(len: usize, id: &str) -> Vec<u8> {
    let head = format!(
        r#"{{"timestamp": "2024-03-04T08:00:00.000Z", "message_id": "<{id}@x>", "sender": "big@x", "recipient_count": 1, "subject": ""#
    );
    let tail = "\"}";
    let pad = len.saturating_sub(head.len() + tail.len());
    let mut record = head.into_bytes();
    record.resize(record.len() + pad, b'x');
    record.extend_from_slice(tail.as_bytes());
    assert_eq!(record.len(), len);
    record
}

/// The kinds too big to commit.
fn generated() -> Vec<Kind> {
    let one = |name: &str, record: Vec<u8>, outcome: &str| Kind {
        name: name.to_owned(),
        records: vec![record],
        expected: vec![outcome.to_owned()],
        today: None,
    };
    vec![
        one(
            "ten_mb_value",
            event_of_length(10 * 1024 * 1024, "ten-mb"),
            "too_large",
        ),
        one(
            "over_limit",
            event_of_length(DEFAULT_MAX_RECORD_BYTES + 1, "over"),
            "too_large",
        ),
        one(
            "at_limit",
            event_of_length(DEFAULT_MAX_RECORD_BYTES, "at"),
            ACCEPTED,
        ),
    ]
}

fn decode_label(record: &[u8]) -> String {
    let options = DecodeOptions {
        now: now_millis(),
        max_future_skew: 5 * MIN,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    };
    match decode_json(record, &options) {
        Ok(_) => ACCEPTED.to_owned(),
        Err(reason) => reason.label().to_owned(),
    }
}

/// A record of the stream fed to replay or the service, and the outcome expected of it.
struct Fed {
    bytes: Vec<u8>,
    outcome: String,
}

/// Every corpus record, with the storm's reply-alls spread evenly among them.
fn stream_with_storm() -> Vec<Fed> {
    let garbage: Vec<Fed> = corpus()
        .into_iter()
        .flat_map(|kind| {
            let outcomes = kind.current().to_vec();
            kind.records
                .into_iter()
                .zip(outcomes)
                .map(|(bytes, outcome)| Fed { bytes, outcome })
        })
        .collect();
    let every = garbage.len() / STORM_EVENTS as usize + 1;
    let mut stream = Vec::new();
    let mut storm = (0..STORM_EVENTS).map(|i| Fed {
        bytes: event(
            T0 + i * MIN,
            &format!("<g{i}@x>"),
            &format!("g{i}@x"),
            3000,
            STORM_THREAD,
        )
        .into_bytes(),
        outcome: ACCEPTED.to_owned(),
    });
    for (i, fed) in garbage.into_iter().enumerate() {
        if i % every == 0 {
            stream.extend(storm.next());
        }
        stream.push(fed);
    }
    stream.extend(storm);
    stream
}

/// Malformed reasons -> how many records of the stream should carry each.
fn expected_reasons(stream: &[Fed]) -> BTreeMap<String, u64> {
    let mut reasons = BTreeMap::new();
    for fed in stream.iter().filter(|f| f.outcome != ACCEPTED) {
        *reasons.entry(fed.outcome.clone()).or_insert(0) += 1;
    }
    reasons
}

#[test]
fn the_corpus_has_at_least_20_kinds_and_decodes_as_its_manifest_says() {
    let kinds = corpus();
    assert!(kinds.len() >= 20, "only {} kinds", kinds.len());
    let mut listed: Vec<String> = kinds
        .iter()
        .map(|k| k.name.clone())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    files.sort();
    assert_eq!(listed, files, "every corpus file is in the MANIFEST, once");
    let mut wrong = Vec::new();
    for kind in &kinds {
        for (i, (record, want)) in kind.records.iter().zip(kind.current()).enumerate() {
            let got = decode_label(record);
            if &got != want {
                wrong.push(format!(
                    "{} record {}: {got}, want {want}",
                    kind.name,
                    i + 1
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The counts of the replay summary's "events by outcome" and "malformed records" sections.
fn summary_counts(summary: &str) -> (BTreeMap<String, u64>, BTreeMap<String, (u64, String)>) {
    let mut outcomes = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    for line in summary.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name, count]
                if ["counted", "ignored", "malformed", "late", "duplicate"].contains(name)
                    && count.parse::<u64>().is_ok() =>
            {
                outcomes.insert((*name).to_owned(), count.parse().unwrap_or(u64::MAX));
            }
            [label, count, ..] if count.starts_with('(') && count.ends_with("):") => {
                let n = count
                    .trim_start_matches('(')
                    .trim_end_matches("):")
                    .parse()
                    .unwrap_or(u64::MAX);
                let lines = line.rsplit_once(" line").map_or("", |(_, l)| l);
                let lines = lines.trim_start_matches('s').trim().to_owned();
                reasons.insert((*label).to_owned(), (n, lines));
            }
            _ => {}
        }
    }
    (outcomes, reasons)
}

#[test]
fn replay_counts_every_record_under_its_reason_and_finds_the_storm_among_them() {
    let stream = stream_with_storm();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("garbage.jsonl");
    let mut bytes = Vec::new();
    for fed in &stream {
        bytes.extend_from_slice(&fed.bytes);
        bytes.push(b'\n');
    }
    std::fs::write(&input, &bytes).expect("write input");
    let output = common::binary()
        .arg("replay")
        .arg(&input)
        .output()
        .expect("stormwatch runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (outcomes, reasons) = summary_counts(&stderr);
    let expected = expected_reasons(&stream);
    let malformed: u64 = expected.values().sum();
    let accepted = stream.len() as u64 - malformed;
    assert!(
        stderr.contains(&format!("{} records", stream.len())),
        "{stderr}"
    );
    assert_eq!(outcomes.get("malformed"), Some(&malformed), "{stderr}");
    let applied: u64 = ["counted", "ignored", "late", "duplicate"]
        .iter()
        .map(|o| outcomes.get(*o).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        applied, accepted,
        "every valid record has an outcome: {stderr}"
    );
    // Each reason with its count and the line numbers of its first five records.
    for (reason, count) in &expected {
        let first: Vec<String> = stream
            .iter()
            .enumerate()
            .filter(|(_, f)| &f.outcome == reason)
            .take(5)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        assert_eq!(
            reasons.get(reason),
            Some(&(*count, first.join(", "))),
            "{reason}: {stderr}"
        );
    }
    assert_eq!(reasons.len(), expected.len(), "no other reason: {stderr}");

    let alerts = common::json_lines(&output.stdout);
    let storm: Vec<&str> = alerts
        .iter()
        .filter(|a| a["thread_key"] == STORM_THREAD)
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(storm, ["storm_started", "storm_escalated"], "{alerts:#?}");
    for alert in &alerts {
        let deliveries = &alert["deliveries"];
        assert!(deliveries.is_u64(), "deliveries stay a count: {alert}");
    }
}

/// The stream with the 10 MiB record cut to 2 MiB for Kafka: librdkafka's mock broker never
/// hands a 10 MiB record to a consumer (a plain `BaseConsumer` with `fetch.max.bytes` and
/// `max.partition.fetch.bytes` raised waits on it forever too), and a real broker refuses it
/// unless `message.max.bytes` was raised. 2 MiB is still over the 1 MiB record limit and over
/// what the DLQ takes whole.
fn service_sized(stream: Vec<Fed>) -> Vec<Fed> {
    stream
        .into_iter()
        .map(|fed| {
            if fed.bytes.len() > 2 * 1024 * 1024 {
                Fed {
                    bytes: event_of_length(2 * 1024 * 1024, "two-mb"),
                    outcome: fed.outcome,
                }
            } else {
                fed
            }
        })
        .collect()
}

/// A producer that takes records over librdkafka's default 1 MB.
fn big_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", (16 * 1024 * 1024).to_string())
        .create()
        .expect("producer")
}

#[test]
fn the_service_dead_letters_every_bad_record_with_its_bytes_and_still_announces_the_storm_once() {
    let c = cluster(2);
    let stream = service_sized(stream_with_storm());
    let producer = big_producer(&c.cluster.bootstrap_servers());
    for (i, fed) in stream.iter().enumerate() {
        producer
            .send(
                BaseRecord::<(), [u8]>::to(&c.config.kafka.topic)
                    .partition((i % 2) as i32)
                    .payload(&fed.bytes[..]),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let service = c.start(&c.config);

    let expected = expected_reasons(&stream);
    let malformed: usize = expected.values().sum::<u64>() as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let dlq = loop {
        let dlq = c.read_all(&c.config.kafka.dlq_topic);
        if dlq.len() >= malformed || Instant::now() > deadline {
            break dlq;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // Each bad record once, with its bytes and its reason; a record larger than the DLQ takes
    // goes as its head, with its original length in a header.
    let mut want: Vec<(Vec<u8>, String, String)> = stream
        .iter()
        .filter(|f| f.outcome != ACCEPTED)
        .map(|f| {
            let head = f.bytes.get(..DLQ_HEAD).unwrap_or(&f.bytes).to_vec();
            let cut = if f.bytes.len() > DLQ_HEAD {
                f.bytes.len().to_string()
            } else {
                String::new()
            };
            (head, f.outcome.clone(), cut)
        })
        .collect();
    let mut got: Vec<(Vec<u8>, String, String)> = dlq
        .iter()
        .map(|(payload, headers)| {
            let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
            assert!(
                headers.contains_key("stormwatch.error")
                    && headers.contains_key("stormwatch.source_offset"),
                "{headers:?}"
            );
            (
                payload.clone(),
                header("stormwatch.reason"),
                header("stormwatch.truncated_from_bytes"),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "DLQ records");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g == w,
            "DLQ record differs: got {} bytes ({}, cut from {:?}), want {} bytes ({}, cut from {:?})",
            g.0.len(),
            g.1,
            g.2,
            w.0.len(),
            w.1,
            w.2
        );
    }

    let alerts = c.wait_for_alerts("the storm among the garbage", |a| {
        a.iter()
            .any(|a| a["thread_key"] == STORM_THREAD && a["kind"] == "storm_escalated")
    });
    std::thread::sleep(Duration::from_secs(1));
    let alerts = if c.alerts().len() == alerts.len() {
        alerts
    } else {
        c.alerts()
    };
    let storm: Vec<&str> = alerts
        .iter()
        .filter(|a| a["thread_key"] == STORM_THREAD)
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(storm, ["storm_started", "storm_escalated"], "{alerts:#?}");

    // The metrics count every record under its outcome and reason.
    let url = format!("http://{}/metrics", service.http_address());
    let total = format!(r#"stormwatch_events_total{{outcome="malformed"}} {malformed}"#);
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = http_get(&url);
        if text.contains(&total) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(text.contains(&total), "missing {total} in\n{text}");
    for (reason, count) in &expected {
        let line = format!(r#"stormwatch_malformed_events_total{{reason="{reason}"}} {count}"#);
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    let applied: u64 = ["counted", "ignored", "late", "duplicate"]
        .iter()
        .map(|o| {
            sample(
                &text,
                &format!(r#"stormwatch_events_total{{outcome="{o}"}}"#),
            )
        })
        .sum();
    assert_eq!(applied as usize, stream.len() - malformed, "valid records");
    service.stop().expect("clean stop");
}
