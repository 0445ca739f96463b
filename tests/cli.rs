//! The command line's contract: exit codes, stdin, clear one-line errors.

mod common;

#[test]
fn replay_reads_stdin_and_a_dash() {
    let line = br#"{"timestamp": "2024-03-04T09:00:00Z", "message_id": "a", "sender": "b", "recipient_count": 1}"#;
    for args in [&["replay"][..], &["replay", "-"][..]] {
        let output = common::run(args, line);
        assert!(output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("1 records"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn replay_exits_zero_on_garbage_input() {
    let output = common::run(&["replay"], b"\xff\xfe garbage\n{}\n[1,2]\n\0\0\0\n");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("malformed  4"), "{stderr}");
    assert!(stderr.contains("invalid_utf8"), "{stderr}");
}

#[test]
fn replay_fails_clearly_when_the_input_cannot_be_opened() {
    let output = common::run(&["replay", "/nonexistent/events.jsonl"], b"");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/events.jsonl"), "{stderr}");
}

#[test]
fn a_bad_config_key_is_named() {
    let config = common::ConfigFile::new("[detection]\nmin_recipent = 10\n");
    let output = common::run(&["replay", "--config", config.path()], b"");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("min_recipent"), "{stderr}");
}

#[test]
fn config_and_environment_change_detection() {
    // Two reply-alls from two senders: no storm by default, a storm with early lowered to 2.
    let events = [
        r#"{"timestamp": "2024-03-04T09:00:00Z", "message_id": "m1", "sender": "a@x", "recipient_count": 100, "thread_id": "t", "subject": "Re: t"}"#,
        r#"{"timestamp": "2024-03-04T09:01:00Z", "message_id": "m2", "sender": "b@x", "recipient_count": 100, "thread_id": "t", "subject": "Re: t"}"#,
    ]
    .join("\n");
    let output = common::run(&["replay"], events.as_bytes());
    assert!(output.stdout.is_empty());
    let config = common::ConfigFile::new(
        "[detection]\nmin_recipients = 100\n[rules.early]\nmin_replies = 2\nmin_senders = 2\nwindow = \"10m\"\n",
    );
    let output = common::run(&["replay", "--config", config.path()], events.as_bytes());
    assert_eq!(common::json_lines(&output.stdout).len(), 1);
    let output = {
        let mut child = common::binary()
            .args(["replay", "--config", config.path()])
            .env("STORMWATCH_RULES__EARLY__ENABLED", "false")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawns");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(events.as_bytes())
            .expect("write");
        child.wait_with_output().expect("runs")
    };
    assert!(
        output.stdout.is_empty(),
        "the environment disabled the rule"
    );
}

#[test]
fn help_lists_every_command() {
    let output = common::run(&["--help"], b"");
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["replay", "generate", "run", "demo"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn print_config_shows_the_effective_configuration() {
    let file = common::ConfigFile::new(
        "[detection]\nmin_recipients = 1000\n[sinks.stdout]\nenabled = true\n",
    );
    let output = common::binary()
        .args(["run", "--config", file.path(), "--print-config"])
        .env("STORMWATCH_RULES__EARLY__ENABLED", "false")
        .env(
            "STORMWATCH_KAFKA__PROPERTIES__SASL_MECHANISM",
            "SCRAM-SHA-512",
        )
        .output()
        .expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let printed: toml::Table = text.parse().expect("the printed configuration is TOML");
    let config = stormwatch::config::Config::from_toml_str(&text).expect("and reads back");
    assert_eq!(config.detection.min_recipients, 1000);
    assert!(!config.rules.early.enabled);
    assert!(config.sinks.stdout.enabled);
    assert_eq!(
        config
            .kafka
            .properties
            .get("sasl.mechanism")
            .map(String::as_str),
        Some("SCRAM-SHA-512")
    );
    assert!(printed.contains_key("limits"));
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let started = std::time::Instant::now();
    let output = common::binary()
        .args(["run"])
        .env("STORMWATCH_KAFKA__BROKERS", "127.0.0.1:1")
        .env("STORMWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stormwatch: cannot reach Kafka at kafka.brokers = 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
