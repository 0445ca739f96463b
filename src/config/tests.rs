use super::*;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let c = Config::default();
    assert_eq!(c.detection.min_recipients, 2500);
    assert_eq!(c.detection.allowed_lateness, Duration::from_secs(60));
    assert_eq!(c.detection.dedup_window, Duration::from_secs(3600));
    assert_eq!(c.detection.quiet_period, Duration::from_secs(1800));
    assert_eq!(c.detection.block_duration, Duration::from_secs(6 * 3600));
    assert_eq!(c.detection.max_future_skew, Duration::from_secs(300));
    assert_eq!(c.rules.exchange.min_replies, 10);
    assert_eq!(c.rules.exchange.window, Duration::from_secs(3600));
    assert_eq!(c.rules.amplification.deliveries, 1_000_000);
    assert_eq!(c.rules.amplification.min_senders, 2);
    assert_eq!(c.rules.amplification.window, Duration::from_secs(600));
    assert_eq!(
        (c.rules.early.min_replies, c.rules.early.min_senders),
        (3, 3)
    );
    assert_eq!(c.rules.early.window, Duration::from_secs(600));
    assert_eq!(c.rules.sustained.deliveries, 250_000);
    assert_eq!(c.rules.sustained.window, Duration::from_secs(3600));
    assert_eq!(c.limits.max_threads, 1_000_000);
    assert_eq!(c.limits.max_message_ids, 4_000_000);
    assert_eq!(c.limits.max_subjects, 100_000);
    assert_eq!(c.limits.max_reply_alls_per_thread, 100_000);
    assert!(!c.alerts.include_senders);
    assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(c.kafka.group_id, "stormwatch");
    assert_eq!(c.kafka.topic, "mail-events");
    assert_eq!(c.kafka.alerts_topic, "mail-storms");
    assert_eq!(c.kafka.dlq_topic, "mail-events-dlq");
    assert_eq!(c.kafka.merge_max_wait, Duration::from_millis(500));
    assert_eq!(c.http.listen, "127.0.0.1:9464");
    assert_eq!(c.http.bearer_token, None);
    assert_eq!(c.sinks.alertmanager.url, None);
    assert_eq!(c.sinks.webhook.url, None);
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
}

#[test]
fn file_values_and_durations_are_read() {
    let c = Config::from_toml_str(
        "[detection]\nmin_recipients = 1000\nquiet_period = \"90s\"\n\
         [rules.early]\nenabled = false\nmin_replies = 4\nmin_senders = 4\nwindow = \"5m\"\n",
    )
    .unwrap();
    assert_eq!(c.detection.min_recipients, 1000);
    assert_eq!(c.detection.quiet_period, Duration::from_secs(90));
    assert!(!c.rules.early.enabled);
    assert_eq!(c.rules.early.window, Duration::from_secs(300));
    assert_eq!(c.rules.exchange, Config::default().rules.exchange);
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml_str("[detection]\nmin_recipent = 5\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("detection"), "{text}");
    assert!(text.contains("min_recipent"), "{text}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let err = Config::from_toml_str("[limits]\nmax_threads = \"many\"\n").unwrap_err();
    assert!(
        err.to_string().contains("limits.max_threads"),
        "{}",
        err.to_string()
    );
    let err = Config::from_toml_str("[detection]\nquiet_period = \"soon\"\n").unwrap_err();
    assert!(err.to_string().contains("detection.quiet_period"), "{err}");
}

#[test]
fn invalid_values_are_refused() {
    let err = Config::from_toml_str("[limits]\nmax_threads = 0\n").unwrap_err();
    assert!(err.to_string().contains("limits.max_threads"), "{err}");
    let err =
        Config::from_toml_str("[rules.exchange]\nmin_replies = 10\nwindow = \"0s\"\n").unwrap_err();
    assert!(err.to_string().contains("rules.exchange.window"), "{err}");
}

#[test]
fn environment_overrides_the_file_with_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[detection]\nmin_recipients = 1000\n").unwrap();
    let c = Config::load_with_env(
        Some(&path),
        env(&[
            ("STORMWATCH_DETECTION__MIN_RECIPIENTS", "1200"),
            ("STORMWATCH_RULES__EARLY__ENABLED", "false"),
            ("STORMWATCH_KAFKA__GROUP_ID", "123"),
            ("STORMWATCH_KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
            ("STORMWATCH_DETECTION__QUIET_PERIOD", "10m"),
            ("STORMWATCH_SINKS__WEBHOOK__URL", "http://127.0.0.1:1/hook"),
            ("STORMWATCH_LOG", "debug"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.detection.min_recipients, 1200);
    assert!(!c.rules.early.enabled);
    assert_eq!(c.kafka.group_id, "123");
    assert_eq!(
        c.kafka.properties.get("sasl.password").map(String::as_str),
        Some("s3cret")
    );
    assert_eq!(c.detection.quiet_period, Duration::from_secs(600));
    assert_eq!(
        c.sinks.webhook.url.as_deref(),
        Some("http://127.0.0.1:1/hook")
    );
}

#[test]
fn bad_environment_value_names_the_variable() {
    let err = Config::load_with_env(
        None,
        env(&[("STORMWATCH_DETECTION__MIN_RECIPIENTS", "lots")]),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("STORMWATCH_DETECTION__MIN_RECIPIENTS"),
        "{err}"
    );
    let err = Config::load_with_env(None, env(&[("STORMWATCH_DETECTION__NOPE", "1")])).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn missing_file_and_bad_syntax_are_clear() {
    let err = Config::load_with_env(Some(std::path::Path::new("/nonexistent/x.toml")), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[detection\nx = 1\n").unwrap();
    let err = Config::load_with_env(Some(&path), env(&[])).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn printed_config_reads_back_identically() {
    let mut c = Config::default();
    c.detection.quiet_period = Duration::from_secs(90);
    c.kafka
        .properties
        .insert("security.protocol".into(), "SASL_SSL".into());
    c.http.bearer_token = Some("t".into());
    let text = c.to_toml();
    assert_eq!(Config::from_toml_str(&text).unwrap(), c);
    assert!(text.contains("[rules.amplification]"), "{text}");
}

#[test]
fn input_defaults_and_overrides() {
    use crate::decode::InputFormat;
    let c = Config::default();
    assert_eq!(c.input.format, InputFormat::Json);
    assert_eq!(c.input.postfix.line_field, "message");
    assert_eq!(c.input.postfix.header_wait, Duration::from_secs(2));
    assert_eq!(c.input.postfix.qmgr_wait, Duration::from_secs(30 * 60));
    assert_eq!(c.input.postfix.max_pending, 100_000);
    assert_eq!(c.input.postfix.max_pending_bytes, 256 << 20);
    assert_eq!(c.limits.max_thread_bytes, 256 << 20);
    assert_eq!(c.limits.max_message_id_bytes, 512 << 20);
    assert_eq!(c.limits.max_window_bytes, 128 << 20);
    assert_eq!(c.input.exchange.max_pending_bytes, 256 << 20);
    assert_eq!(c.input.postfix.utc_offset, "+00:00");
    assert_eq!(c.input.exchange.fields, "");
    assert_eq!(c.input.exchange.expand_wait, Duration::from_secs(30));
    let c = Config::from_toml_str(
        "[input]\nformat = \"exchange-tracking\"\n[input.postfix]\nline_field = \"msg\"\n",
    )
    .unwrap();
    assert_eq!(c.input.format, InputFormat::ExchangeTracking);
    assert_eq!(c.input.postfix.line_field, "msg");
    assert_eq!(c.input.postfix.header_wait, Duration::from_secs(2));
    let c = Config::load_with_env(
        None,
        env(&[
            ("STORMWATCH_INPUT__FORMAT", "postfix"),
            ("STORMWATCH_INPUT__POSTFIX__MAX_PENDING", "10"),
            ("STORMWATCH_INPUT__POSTFIX__UTC_OFFSET", "-05:00"),
        ]),
    )
    .unwrap();
    assert_eq!(c.input.format, InputFormat::Postfix);
    assert_eq!(c.input.postfix.max_pending, 10);
    assert_eq!(c.input.postfix.utc_offset, "-05:00");
}

#[test]
fn bad_input_settings_name_their_key() {
    for (text, key) in [
        ("[input]\nformat = \"exim\"\n", "input.format"),
        (
            "[input.postfix]\nheader_wait = \"60s\"\n",
            "input.postfix.header_wait",
        ),
        (
            "[input.exchange]\nexpand_wait = \"2m\"\n",
            "input.exchange.expand_wait",
        ),
        (
            "[input.postfix]\nutc_offset = \"CET\"\n",
            "input.postfix.utc_offset",
        ),
        (
            "[input.postfix]\nmax_pending = 0\n",
            "input.postfix.max_pending",
        ),
        (
            "[input.postfix]\nmax_pending_bytes = 1048575\n",
            "input.postfix.max_pending_bytes",
        ),
        (
            "[input.exchange]\nmax_pending_bytes = 0\n",
            "input.exchange.max_pending_bytes",
        ),
        (
            "[limits]\nmax_thread_bytes = 1000\n",
            "limits.max_thread_bytes",
        ),
        (
            "[limits]\nmax_message_id_bytes = 1048575\n",
            "limits.max_message_id_bytes",
        ),
        (
            "[limits]\nmax_window_bytes = 65536\n",
            "limits.max_window_bytes",
        ),
        (
            "[input.postfix]\nline_field = \" \"\n",
            "input.postfix.line_field",
        ),
        ("[input.postfix]\nlinefield = \"msg\"\n", "linefield"),
        (
            "[input.postfix]\nqmgr_wait = \"60m\"\n",
            "input.postfix.qmgr_wait",
        ),
    ] {
        let error = Config::from_toml_str(text).unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
    // A longer allowed lateness makes room for a longer wait.
    assert!(Config::from_toml_str(
        "[detection]\nallowed_lateness = \"5m\"\n[input.exchange]\nexpand_wait = \"2m\"\n"
    )
    .is_ok());
}
