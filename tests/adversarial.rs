//! Adversarial load, scaled down to run in seconds in a debug build: `generate --scenario
//! adversarial --events 200000` (200,000 distinct thread keys, 20,000 senders and reply-alls on
//! one thread, giant subjects and References lists, a real storm) replayed under small caps.
//! The maps stay within their caps, evictions are counted, and the real storm is still found.
//! The full-size run (10 million keys) and its memory are in README "Reliability".

mod common;

use stormwatch::config::Config;
use stormwatch::engine::Engine;
use stormwatch::generate::adversarial::{HOT_THREAD, REAL_STORM_THREAD};
use stormwatch::replay::{replay, ReplayOptions};

const EVENTS: u64 = 200_000;

fn capped() -> Config {
    let mut config = Config::default();
    config.limits.max_threads = 10_000;
    config.limits.max_message_ids = 20_000;
    config.limits.max_subjects = 1_000;
    config.limits.max_reply_alls_per_thread = 5_000;
    config
}

#[test]
fn caps_hold_evictions_are_counted_and_the_real_storm_is_found() {
    let input = common::generate("adversarial", 1, Some(EVENTS));
    let config = capped();
    let mut engine = Engine::from_config(&config);
    let mut out = Vec::new();
    let summary = replay(
        &input[..],
        &mut engine,
        &mut out,
        &ReplayOptions::default(),
        |_| {},
    )
    .expect("replay");
    assert_eq!(summary.malformed_total(), 0, "every line is a valid event");
    assert!(summary.records > EVENTS, "{}", summary.records);

    // Within the caps...
    let limits = &config.limits;
    assert!(engine.tracked_threads() <= limits.max_threads);
    assert!(engine.remembered_message_ids() <= limits.max_message_ids);
    assert!(engine.remembered_subjects() <= limits.max_subjects);
    assert!(engine.window_bytes() <= limits.max_window_bytes);
    // ...because they evicted, and said so.
    let stats = engine.stats();
    assert!(
        stats.thread_evictions >= EVENTS - limits.max_threads as u64,
        "{stats:?}"
    );
    assert!(stats.message_id_evictions > 0, "{stats:?}");
    assert!(stats.subject_evictions > 0, "{stats:?}");
    assert!(
        stats.reply_alls_dropped >= EVENTS / 10 - limits.max_reply_alls_per_thread as u64,
        "the hot thread's window is capped: {stats:?}"
    );
    assert_eq!(stats.late, 0);

    // Detection: the real storm (critical at its second reply-all, 1.7 million deliveries) and
    // the hot thread (a storm too), each started once; no flood thread storms.
    let alerts = common::json_lines(&out);
    let started: Vec<(&str, &str)> = alerts
        .iter()
        .filter(|a| a["kind"] == "storm_started")
        .map(|a| {
            (
                a["thread_key"].as_str().unwrap_or(""),
                a["severity"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        started,
        [(HOT_THREAD, "warning"), (REAL_STORM_THREAD, "critical")],
        "{alerts:#?}"
    );
    let real = alerts
        .iter()
        .find(|a| a["thread_key"] == REAL_STORM_THREAD)
        .expect("real storm alert");
    assert_eq!(real["rule"], "amplification");
    assert_eq!(real["reply_alls"], 2);
    // The hot thread's counts saturate at the per-thread cap instead of growing.
    let active = engine.active_storms();
    let hot = active
        .iter()
        .find(|s| &*s.thread_key == HOT_THREAD)
        .expect("hot storm active at the end");
    assert!(hot.last_hour.reply_alls as usize <= limits.max_reply_alls_per_thread);
}

#[test]
fn the_binary_replays_the_attack_and_reports_the_limits_reached() {
    let input = common::generate("adversarial", 1, Some(EVENTS));
    let config = common::ConfigFile::new(
        "[limits]\nmax_threads = 10000\nmax_message_ids = 20000\nmax_subjects = 1000\nmax_reply_alls_per_thread = 5000\n",
    );
    let output = common::run(&["replay", "--config", config.path()], &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("limits reached:"), "{stderr}");
    let alerts = common::json_lines(&output.stdout);
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "storm_started" && a["thread_key"] == REAL_STORM_THREAD),
        "{stderr}"
    );
}

/// Replays `flood` then a real storm on `all@x` (three reply-alls a minute apart, 30 s after
/// the flood's start) under the `[limits]` of `limits`, and checks that the summary's "limits
/// reached" line gives a count in `expected` for `what` ("threads evicted", ...), and that
/// the storm is found all the same. At the default bounds no limit is reached: only the bytes
/// made room.
fn flood_then_storm(
    flood: impl Iterator<Item = serde_json::Value>,
    limits: &str,
    what: &str,
    expected: std::ops::Range<u64>,
) {
    let storm = (0..3).map(|i| {
        serde_json::json!({
            "timestamp": 1_700_000_030_000i64 + i * 60_000, "message_id": format!("<s{i}@x>"),
            "sender": format!("s{i}@x"), "recipient_count": 5_000, "references": "<all@x>",
            "subject": "Re: all staff",
        })
    });
    let input: String = flood
        .chain(storm)
        .map(|event| format!("{event}\n"))
        .collect();
    let config = common::ConfigFile::new(&format!("[limits]\n{limits}"));
    let output = common::run(&["replay", "--config", config.path()], input.as_bytes());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let count: u64 = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("limits reached: "))
        .and_then(|counts| counts.split(", ").find_map(|part| part.strip_suffix(what)))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of {what}: {stderr}"));
    assert!(expected.contains(&count), "{stderr}");
    let alerts = common::json_lines(&output.stdout);
    assert_eq!(alerts.len(), 1, "{stderr}");
    assert_eq!(alerts[0]["kind"], "storm_started");
    assert_eq!(alerts[0]["thread_key"], "all@x");
    let output = common::run(&["replay"], input.as_bytes());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("limits reached"), "{stderr}");
}

/// Ids and subjects as long as stormwatch keeps them: 3,000 replies, each opening a
/// conversation keyed by a 990-byte References id with a 1 KiB subject (about 2 KB a thread),
/// then a real storm. Under a 1 MiB `limits.max_thread_bytes` the threads are evicted by bytes
/// long before `max_threads`: some 500 fit, so about 2,500 of 3,003 went.
#[test]
fn long_ids_and_subjects_are_evicted_by_bytes_and_the_real_storm_is_found() {
    let flood = (0..3_000).map(|i| {
        serde_json::json!({
            "timestamp": 1_700_000_000_000i64 + i, "message_id": format!("<m{i}@x>"),
            "sender": "a@x", "recipient_count": 3,
            "references": format!("<{i}{}@x>", "r".repeat(980)),
            "subject": format!("Re: {}", "𝕊".repeat(300)),
        })
    });
    flood_then_storm(
        flood,
        "max_thread_bytes = 1048576\nmax_message_id_bytes = 1048576\n",
        "threads evicted",
        2_300..2_700,
    );
}

/// One reply-all on each of 20,000 conversations, then a real storm. Every such thread holds
/// reply-all windows (about 300 bytes by the engine's estimate): under a 1 MiB
/// `limits.max_window_bytes` the oldest threads' windows are forgotten: some 3,400 fit, so
/// about 16,600 of 20,001 went.
#[test]
fn reply_alls_on_many_threads_are_evicted_by_window_bytes_and_the_real_storm_is_found() {
    let flood = (0..20_000).map(|i| {
        serde_json::json!({
            "timestamp": 1_700_000_000_000i64 + i, "message_id": format!("<m{i}@x>"),
            "sender": format!("a{i}@x"), "recipient_count": 2_500,
            "in_reply_to": format!("<root{i}@x>"),
        })
    });
    flood_then_storm(
        flood,
        "max_window_bytes = 1048576\n",
        "threads' reply-all windows forgotten",
        15_500..17_500,
    );
}
