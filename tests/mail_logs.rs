//! `stormwatch replay --format postfix|exchange-tracking` on real-shaped mail logs: a reply-all
//! storm on a 3,000-recipient list is found from the log lines alone.

mod common;

use serde_json::Value;

const POSTFIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/postfix/storm.log");
const EXCHANGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/exchange/storm.log");

fn replay(args: &[&str], stdin: &[u8]) -> (Vec<Value>, String) {
    let output = common::run(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (common::json_lines(&output.stdout), stderr)
}

/// The one alert both sample logs must give: the third reply-all (from a third sender) within
/// ten minutes starts a warning storm on the original's thread.
fn assert_one_early_storm(alerts: &[Value], deliveries: u64) {
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["kind"], "storm_started");
    assert_eq!(alert["thread_key"], "orig-1@x.org");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["rule"], "early");
    assert_eq!(alert["reply_alls"], 3);
    assert_eq!(alert["distinct_senders"], 3);
    assert_eq!(alert["deliveries"], deliveries);
    assert_eq!(alert["subject"], "AW: Quarterly results");
}

#[test]
fn a_postfix_log_shows_the_storm() {
    let (alerts, stderr) = replay(&["replay", "--format", "postfix", POSTFIX], b"");
    assert_one_early_storm(&alerts, 9003);
    assert_eq!(alerts[0]["at"], "2025-11-25T09:04:00.300Z");
    // Every reply-all counted: with headers, subject-only, encoded, and a late header line.
    assert!(stderr.contains("counted    5"), "{stderr}");
    assert!(stderr.contains("9 events assembled"), "{stderr}");
    assert!(stderr.contains("other_daemon 28"), "{stderr}");
    assert!(stderr.contains("not_postfix 1"), "{stderr}");
    assert!(stderr.contains("no_syslog_header (1)"), "{stderr}");
    assert!(stderr.contains("first at line 32"), "{stderr}");
    assert!(
        !stderr.contains("ann@x.org"),
        "no sender in the summary: {stderr}"
    );
}

#[test]
fn the_format_can_come_from_the_configuration() {
    let config = common::ConfigFile::new("[input]\nformat = \"postfix\"\n");
    let config = config.path();
    let (alerts, _) = replay(&["replay", "--config", config, POSTFIX], b"");
    assert_one_early_storm(&alerts, 9003);
    // The flag wins over the file: read as JSON, every line is malformed.
    let (alerts, stderr) = replay(
        &["replay", "--config", config, "--format", "json", POSTFIX],
        b"",
    );
    assert!(alerts.is_empty());
    assert!(stderr.contains("malformed  70"), "{stderr}");
}

#[test]
fn json_wrapped_postfix_lines_on_stdin() {
    let log = std::fs::read_to_string(POSTFIX).expect("sample log");
    let wrapped: String = log
        .lines()
        .map(|line| serde_json::json!({"message": line, "host": "shipper"}).to_string() + "\n")
        .collect();
    let (alerts, _) = replay(&["replay", "--format", "postfix"], wrapped.as_bytes());
    assert_one_early_storm(&alerts, 9003);
}

#[test]
fn an_exchange_tracking_log_shows_the_storm_after_list_expansion() {
    let (alerts, stderr) = replay(&["replay", "--format", "exchange-tracking", EXCHANGE], b"");
    // Each reply went to the list (expanded to 3,000) and the original sender.
    assert_one_early_storm(&alerts, 9003);
    assert!(stderr.contains("header_line 5"), "{stderr}");
    assert!(stderr.contains("6 events assembled"), "{stderr}");
    assert!(stderr.contains("malformed  0"), "{stderr}");
}

#[test]
fn exchange_rows_without_their_fields_line_are_malformed() {
    let log = std::fs::read_to_string(EXCHANGE).expect("sample log");
    let rows: String = log
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let (alerts, stderr) = replay(
        &["replay", "--format", "exchange-tracking"],
        rows.as_bytes(),
    );
    assert!(alerts.is_empty());
    assert!(stderr.contains("no_fields_header (26)"), "{stderr}");
    // With the field list configured, the same rows are read.
    let fields = log
        .lines()
        .find_map(|l| l.strip_prefix("#Fields: "))
        .expect("a #Fields: line");
    let output = common::binary()
        .args(["replay", "--format", "exchange-tracking"])
        .env("STORMWATCH_INPUT__EXCHANGE__FIELDS", fields)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(rows.as_bytes())?;
            }
            child.wait_with_output()
        })
        .expect("runs");
    assert_one_early_storm(&common::json_lines(&output.stdout), 9003);
}

#[test]
fn an_unknown_format_is_refused() {
    let output = common::run(&["replay", "--format", "exim", POSTFIX], b"");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exim"), "{stderr}");
}

/// Hostile lines: 2,000 messages that never get their qmgr line, each holding a 4 KiB subject
/// and a 990-byte id, an hour before the storm.
fn hostile_postfix_lines() -> Vec<u8> {
    let subject = "s".repeat(4096);
    let id = "i".repeat(990);
    let mut lines = String::new();
    for n in 0..2_000 {
        let at = "2025-11-25T08:00:00.000000+00:00 mx9";
        lines += &format!("{at} postfix/cleanup[1]: {n:010X}: message-id=<{n}{id}>\n");
        lines += &format!(
            "{at} postfix/cleanup[1]: {n:010X}: info: header Subject: {subject} from pc[10.0.0.9];\n"
        );
    }
    lines.into_bytes()
}

/// The number after `label` in the replay summary.
fn summary_count(stderr: &str, label: &str) -> u64 {
    stderr
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {stderr}"))
}

#[test]
fn max_pending_bytes_bounds_what_hostile_lines_hold_and_the_storm_is_still_found() {
    let mut input = hostile_postfix_lines();
    input.extend(std::fs::read(POSTFIX).expect("sample log"));
    let config = common::ConfigFile::new(
        "[input.postfix]\nmax_pending = 100000\nmax_pending_bytes = 1048576\n",
    );
    let config = config.path();
    let (alerts, stderr) = replay(
        &["replay", "--config", config, "--format", "postfix", "-"],
        &input,
    );
    assert_one_early_storm(&alerts, 9003);
    // About 200 of them fit in 1 MiB: the rest were evicted as the next arrived, and those
    // left expired when the storm's lines moved the clock on past qmgr_wait.
    let evicted = summary_count(&stderr, "evicted ");
    assert!((1_700..1_900).contains(&evicted), "{stderr}");
    assert_eq!(
        evicted + summary_count(&stderr, "expired "),
        2_000,
        "{stderr}"
    );
    // At the default bound (256 MiB) all 2,000 fit.
    let (alerts, stderr) = replay(&["replay", "--format", "postfix", "-"], &input);
    assert_one_early_storm(&alerts, 9003);
    assert!(!stderr.contains("evicted"), "{stderr}");
}

#[test]
fn exchange_messages_evicted_by_max_pending_bytes_are_emitted_early_and_counted() {
    let sample = std::fs::read_to_string(EXCHANGE).expect("sample log");
    let fields = sample
        .lines()
        .find(|l| l.starts_with("#Fields:"))
        .expect("a #Fields: line")
        .to_string();
    assert!(fields.starts_with("#Fields: date-time,"), "{fields}");
    // 2,000 messages with 4 KiB subjects, all waiting for their EXPAND rows at once, an hour
    // before the sample's storm.
    let mut input = format!("{fields}\n");
    let subject = "s".repeat(4096);
    for n in 0..2_000 {
        let mut row: Vec<String> = fields
            .trim_start_matches("#Fields: ")
            .split(',')
            .map(|_| String::new())
            .collect();
        let set = |row: &mut Vec<String>, name: &str, value: String| {
            let index = fields
                .trim_start_matches("#Fields: ")
                .split(',')
                .position(|f| f == name)
                .unwrap_or_else(|| panic!("no {name} column"));
            row[index] = value;
        };
        set(&mut row, "date-time", "2025-11-25T08:00:00.000Z".into());
        set(&mut row, "event-id", "RECEIVE".into());
        set(&mut row, "internal-message-id", format!("{n}"));
        set(&mut row, "message-id", format!("<h{n}@x.org>"));
        set(&mut row, "recipient-count", "1".into());
        set(&mut row, "message-subject", subject.clone());
        set(&mut row, "sender-address", "h@x.org".into());
        input += &row.join(",");
        input.push('\n');
    }
    input += &sample;
    let config = common::ConfigFile::new("[input.exchange]\nmax_pending_bytes = 1048576\n");
    let config = config.path();
    let (alerts, stderr) = replay(
        &[
            "replay",
            "--config",
            config,
            "--format",
            "exchange-tracking",
            "-",
        ],
        input.as_bytes(),
    );
    assert_one_early_storm(&alerts, 9003);
    // About 230 fit in 1 MiB; the rest were emitted as the next arrived.
    let early = summary_count(&stderr, "events assembled (");
    assert!((1_700..1_900).contains(&early), "{stderr}");
    assert!(
        stderr.contains("early, evicted from a full map"),
        "{stderr}"
    );
}
