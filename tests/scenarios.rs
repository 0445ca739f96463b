//! Behaviour through the binary: `generate | replay` on each scenario.

mod common;

use stormwatch::decode::{decode_json, DecodeOptions};
use stormwatch::event::Event;
use stormwatch::subject::{first_prefix, PrefixKind};

fn replay(events: &[u8]) -> (Vec<serde_json::Value>, String) {
    let output = common::run(&["replay"], events);
    assert!(output.status.success(), "replay failed");
    (
        common::json_lines(&output.stdout),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn is_reply_all(event: &Event<'_>) -> bool {
    let reply = event.in_reply_to.is_some()
        || event.references_root.is_some()
        || event.subject.as_deref().and_then(first_prefix) == Some(PrefixKind::Reply);
    reply && event.recipient_count >= 2500
}

/// Timestamps (ms) of the storm's distinct reply-alls, in stream order, read from the
/// generated events by their label.
fn storm_reply_all_times(events: &[u8], label: &str) -> Vec<i64> {
    let options = DecodeOptions {
        now: i64::MAX / 2,
        max_future_skew: 0,
        max_record_bytes: usize::MAX,
    };
    let mut seen = std::collections::HashSet::new();
    let mut times = Vec::new();
    for line in events.split(|&b| b == b'\n') {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if value["label"] != label {
            continue;
        }
        let Ok(event) = decode_json(line, &options) else {
            continue;
        };
        if is_reply_all(&event) && seen.insert(event.message_id.to_string()) {
            times.push(event.timestamp);
        }
    }
    times
}

fn millis(rfc3339: &serde_json::Value) -> i64 {
    stormwatch::timefmt::parse_rfc3339_millis(rfc3339.as_str().expect("a time string"))
        .expect("an RFC 3339 time")
}

#[test]
fn nhs_2016_raises_exactly_one_storm_by_the_third_reply_all() {
    let events = common::generate("nhs-2016", 7, Some(30_000));
    let (alerts, _) = replay(&events);
    let started: Vec<_> = alerts
        .iter()
        .filter(|a| a["kind"] == "storm_started")
        .collect();
    assert_eq!(started.len(), 1, "alerts: {alerts:#?}");
    let storm = started[0];
    for field in common::REQUIRED_FIELDS {
        assert!(storm.get(field).is_some(), "missing {field}: {storm}");
    }
    assert!(["warning", "critical"].contains(&storm["severity"].as_str().unwrap_or("")));
    // The storm's thread is the original message's id: headers and subjects all joined it.
    let original = events
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .find(|v| v["label"] == "nhs-2016")
        .expect("the original message");
    let original_id = original["message_id"].as_str().unwrap_or("");
    assert_eq!(
        storm["thread_key"].as_str(),
        Some(stormwatch::event::normalize_message_id(original_id))
    );
    let times = storm_reply_all_times(&events, "nhs-2016");
    assert!(times.len() >= 70, "{} reply-alls", times.len());
    assert!(
        millis(&storm["at"]) <= times[2],
        "raised after the third reply-all"
    );
    // Every alert is about that one storm.
    assert!(alerts
        .iter()
        .all(|a| a["thread_key"] == storm["thread_key"]));
    assert_eq!(storm["block_until"].as_str().map(|_| ()), Some(()));
    assert_eq!(
        millis(&storm["block_until"]) - millis(&storm["started_at"]),
        6 * 3600 * 1000
    );
}

#[test]
fn benign_busy_raises_no_storm() {
    for seed in [1, 2, 3] {
        let events = common::generate("benign-busy", seed, Some(100_000));
        let (alerts, summary) = replay(&events);
        assert!(alerts.is_empty(), "seed {seed}: {alerts:#?}");
        assert!(summary.contains("0 started"), "{summary}");
    }
}

#[test]
fn mixed_reports_its_malformed_lines_and_both_storms() {
    let generated = common::run(
        &[
            "generate",
            "--scenario",
            "mixed",
            "--seed",
            "3",
            "--events",
            "50000",
        ],
        b"",
    );
    let events = generated.stdout;
    // The generator says how many malformed lines it wrote.
    let generate_summary = String::from_utf8_lossy(&generated.stderr);
    let malformed_written: u64 = generate_summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" malformed lines"))
        .and_then(|n| n.trim().parse().ok())
        .expect("generate reports its malformed lines");
    assert!(malformed_written >= 5, "{generate_summary}");
    let (alerts, summary) = replay(&events);
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("malformed "))
        .expect("a malformed count line");
    assert_eq!(
        line.split_whitespace().last(),
        Some(malformed_written.to_string().as_str()),
        "{summary}"
    );
    assert!(summary.contains("first at line"), "{summary}");
    let storms: std::collections::BTreeSet<_> = alerts
        .iter()
        .filter(|a| a["kind"] == "storm_started")
        .map(|a| a["thread_key"].to_string())
        .collect();
    assert_eq!(storms.len(), 2, "{alerts:#?}");
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    assert_eq!(
        common::generate("mixed", 11, Some(5_000)),
        common::generate("mixed", 11, Some(5_000))
    );
    assert_ne!(
        common::generate("mixed", 11, Some(5_000)),
        common::generate("mixed", 12, Some(5_000))
    );
}
