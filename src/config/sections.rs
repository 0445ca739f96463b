//! The configuration sections and their defaults (contract section 6). Every key is documented
//! once, here; `--print-config` and the README's reference are generated from or checked
//! against these structs.

use super::{duration, ConfigError};
use crate::decode::{parse_utc_offset, InputFormat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What the input records are and how mail-log lines are assembled into events.
    pub input: InputConfig,
    /// What counts as a reply-all, and the clocks of detection.
    pub detection: DetectionConfig,
    /// The storm rules.
    pub rules: RulesConfig,
    /// Caps that bound memory whatever the input.
    pub limits: LimitsConfig,
    /// What alerts carry.
    pub alerts: AlertsConfig,
    /// Kafka connection and topics (service mode).
    pub kafka: KafkaConfig,
    /// The HTTP endpoints (service mode).
    pub http: HttpConfig,
    /// Alert sinks besides the alerts topic (service mode).
    pub sinks: SinksConfig,
}

/// The input format, and the bounds of assembling one event from several log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// `json` (contract events), `postfix` (syslog lines) or `exchange-tracking` (message
    /// tracking CSV). `stormwatch replay --format` overrides it.
    pub format: InputFormat,
    /// Postfix syslog lines.
    pub postfix: PostfixInputConfig,
    /// Exchange message-tracking rows.
    pub exchange: ExchangeInputConfig,
}

/// The default `input.*.max_pending_bytes`: 256 MiB. A real message weighs about 430 bytes
/// by the map's count, so the default 100,000 of them (about 43 MB) are well inside it, and
/// only hostile lines meet it.
const DEFAULT_MAX_PENDING_BYTES: usize = 256 << 20;

/// The least of every byte bound (`input.*.max_pending_bytes`, `limits.max_thread_bytes`,
/// `limits.max_message_id_bytes`, `limits.max_window_bytes`): room for a few dozen of the
/// largest waiting messages, about 500 threads or 1,000 records of the largest, or a storm of
/// about 9,000 reply-alls.
const MIN_BYTE_BOUND: usize = 1 << 20;

/// Refuses a byte bound below [`MIN_BYTE_BOUND`].
fn check_byte_bound(key: &str, value: usize) -> Result<(), ConfigError> {
    if value < MIN_BYTE_BOUND {
        return Err(ConfigError::Key {
            key: key.into(),
            message: format!("must be at least {MIN_BYTE_BOUND} (1 MiB)"),
        });
    }
    Ok(())
}

/// Reading Postfix logs: a message's lines (cleanup, header INFO, qmgr) are joined by host and
/// queue id in a bounded map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostfixInputConfig {
    /// For records that are JSON objects (rsyslog, Vector, Fluent Bit): the field holding the
    /// log line. Without it, structured fields (`timestamp`, `host`, `programname`, `msg`, ...)
    /// are used.
    pub line_field: String,
    /// After a message's qmgr line, header lines that arrive within this much event time are
    /// still included; the event is emitted then, or at the queue id's `removed`.
    #[serde(with = "duration")]
    pub header_wait: Duration,
    /// How long a queue id's lines wait for its qmgr line (a backed-up incoming queue delays
    /// it); past this the entry is dropped and counted.
    #[serde(with = "duration")]
    pub qmgr_wait: Duration,
    /// Most messages assembled at once; past it the oldest is dropped and counted.
    pub max_pending: usize,
    /// Most bytes the messages being assembled hold; past it the oldest is dropped and
    /// counted. Real mail meets `max_pending` first (a few hundred bytes a message): this
    /// bounds hostile lines, whose messages may hold up to 12 KiB each.
    pub max_pending_bytes: usize,
    /// The UTC offset of syslog timestamps that carry none (RFC 3164), as `+hh:mm`. Fixed:
    /// daylight saving is not followed, so prefer a shipper that writes RFC 3339 timestamps.
    pub utc_offset: String,
}

impl Default for PostfixInputConfig {
    fn default() -> Self {
        Self {
            line_field: "message".into(),
            header_wait: Duration::from_secs(2),
            qmgr_wait: minutes(30),
            max_pending: 100_000,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            utc_offset: "+00:00".into(),
        }
    }
}

/// Reading Exchange message-tracking logs: a message's RECEIVE and EXPAND rows are joined by
/// message id in a bounded map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeInputConfig {
    /// The column names (comma-separated, as on a `#Fields:` line) used until a `#Fields:`
    /// line is read. Empty: rows before one are malformed, since a guessed column order would
    /// silently misread another Exchange version's rows.
    pub fields: String,
    /// How long after a message's RECEIVE row its EXPAND rows (distribution-list expansion)
    /// are awaited before the event is emitted with the expanded recipient count.
    #[serde(with = "duration")]
    pub expand_wait: Duration,
    /// Most messages assembled at once; past it the oldest is emitted early and counted.
    pub max_pending: usize,
    /// Most bytes the messages being assembled hold; past it the oldest is emitted early and
    /// counted. Real mail meets `max_pending` first: this bounds hostile rows, whose messages
    /// may hold up to 24 KiB each.
    pub max_pending_bytes: usize,
}

impl Default for ExchangeInputConfig {
    fn default() -> Self {
        Self {
            fields: String::new(),
            expand_wait: Duration::from_secs(30),
            max_pending: 100_000,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
        }
    }
}

/// Detection clocks and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// A reply with at least this many recipients (after list expansion) is a reply-all.
    pub min_recipients: u64,
    /// Events older than stream time minus this are late: counted, not accepted.
    #[serde(with = "duration")]
    pub allowed_lateness: Duration,
    /// A message counts as a reply-all at most once within this time.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    /// A storm ends when no reply-all for it is newer than this.
    #[serde(with = "duration")]
    pub quiet_period: Duration,
    /// `block_until` is the storm's start plus this: advice to mail systems.
    #[serde(with = "duration")]
    pub block_duration: Duration,
    /// Events more than this ahead of the wall clock are malformed.
    #[serde(with = "duration")]
    pub max_future_skew: Duration,
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            min_recipients: 2500,
            allowed_lateness: Duration::from_secs(60),
            dedup_window: minutes(60),
            quiet_period: minutes(30),
            block_duration: minutes(6 * 60),
            max_future_skew: minutes(5),
        }
    }
}

/// The four rules of contract section 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Exchange Online's rule: many reply-alls in an hour (critical).
    pub exchange: CountRuleConfig,
    /// Huge lists: deliveries within minutes (critical).
    pub amplification: VolumeRuleConfig,
    /// A fast start on any big list (warning).
    pub early: SendersRuleConfig,
    /// A slow drip on a large list (warning).
    pub sustained: VolumeRuleConfig,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            exchange: CountRuleConfig {
                enabled: true,
                min_replies: 10,
                window: minutes(60),
            },
            amplification: VolumeRuleConfig {
                enabled: true,
                deliveries: 1_000_000,
                min_senders: 2,
                window: minutes(10),
            },
            early: SendersRuleConfig {
                enabled: true,
                min_replies: 3,
                min_senders: 3,
                window: minutes(10),
            },
            sustained: VolumeRuleConfig {
                enabled: true,
                deliveries: 250_000,
                min_senders: 2,
                window: minutes(60),
            },
        }
    }
}

/// A rule on the number of reply-alls alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRuleConfig {
    /// Whether the rule is evaluated.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Reply-alls needed in the window.
    pub min_replies: u64,
    /// The window, `(T - window, T]`.
    #[serde(with = "duration")]
    pub window: Duration,
}

/// A rule on the number of reply-alls and of distinct senders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendersRuleConfig {
    /// Whether the rule is evaluated.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Reply-alls needed in the window.
    pub min_replies: u64,
    /// Distinct senders needed among them.
    pub min_senders: u64,
    /// The window, `(T - window, T]`.
    #[serde(with = "duration")]
    pub window: Duration,
}

/// A rule on deliveries (the sum of recipient counts) and distinct senders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRuleConfig {
    /// Whether the rule is evaluated.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Deliveries needed in the window.
    pub deliveries: u64,
    /// Distinct senders needed among the reply-alls.
    pub min_senders: u64,
    /// The window, `(T - window, T]`.
    #[serde(with = "duration")]
    pub window: Duration,
}

fn enabled() -> bool {
    true
}

/// Caps on remembered state. Each is a hard bound whatever the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tracked threads; only threads without an active storm are evicted, least recently
    /// active first.
    pub max_threads: usize,
    /// Remembered message ids (for duplicates and In-Reply-To/References joins). A message that
    /// starts its own conversation (and did not count as a reply-all) gets no record: it is
    /// found again without one. The room goes to ids that belong to a thread named otherwise.
    pub max_message_ids: usize,
    /// Remembered big-audience subjects (for subject-only replies).
    pub max_subjects: usize,
    /// Reply-alls kept per thread; past it the oldest are dropped and counts saturate.
    pub max_reply_alls_per_thread: usize,
    /// Bytes of text the tracked threads hold (their keys, latest subjects, and with
    /// `alerts.include_senders` the sender addresses they list, up to 256 KiB a thread); past
    /// it threads without an active storm are evicted as past `max_threads`. Real mail meets
    /// `max_threads` first (a thread holds 30 to 150 bytes of text); this bounds hostile mail,
    /// whose ids and subjects can make a thread hold 2 KB.
    pub max_thread_bytes: usize,
    /// Bytes of thread keys the message-id records hold; past it the oldest records are
    /// evicted as past `max_message_ids`. Real mail meets `max_message_ids` first; this bounds
    /// hostile mail, whose References ids can make each record keep a 1 KB key alive.
    pub max_message_id_bytes: usize,
    /// Bytes the tracked threads' reply-all windows and storms have allocated (about 300 for a
    /// thread with one reply-all, up to 100 more a reply-all); past it the windows of threads
    /// without an active storm are forgotten, least recently given a reply-all (or ended as a
    /// storm) first (the threads stay), and should storms alone hold it, their windows stop growing (each new
    /// reply-all pushes out the thread's oldest, as past `max_reply_alls_per_thread`) and no
    /// other thread starts one. Real mail holds a few megabytes; this bounds hostile mail that
    /// gives hundreds of thousands of threads reply-alls, which `max_threads` times
    /// `max_reply_alls_per_thread` does not.
    pub max_window_bytes: usize,
    /// Have the kernel back the maps' room for the caps at start (`run` only): the memory the
    /// caps allow is in use from the start, so a memory limit too small for them fails at once
    /// rather than mid-storm, and the maps never wait on page faults while they fill.
    pub pretouch: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_threads: 1_000_000,
            max_message_ids: 4_000_000,
            max_subjects: 100_000,
            max_reply_alls_per_thread: 100_000,
            max_thread_bytes: 256 << 20,
            max_message_id_bytes: 512 << 20,
            max_window_bytes: 128 << 20,
            pretouch: true,
        }
    }
}

/// What alerts carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// List the distinct senders of the last hour in alerts. Off by default: addresses are
    /// personal data, and an alert is read by many.
    pub include_senders: bool,
}

/// Kafka connection and topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// The mail-log events topic.
    pub topic: String,
    /// Where alerts are produced (keyed by thread key).
    pub alerts_topic: String,
    /// Where malformed records go, with their original bytes.
    pub dlq_topic: String,
    /// How long a partition with nothing buffered may hold back the timestamp-ordered merge.
    #[serde(with = "duration")]
    pub merge_max_wait: Duration,
    /// librdkafka properties passed through (TLS, SASL, ...).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "stormwatch".into(),
            topic: "mail-events".into(),
            alerts_topic: "mail-storms".into(),
            dlq_topic: "mail-events-dlq".into(),
            merge_max_wait: Duration::from_millis(500),
            properties: BTreeMap::new(),
        }
    }
}

/// The HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to bind; loopback by default so nothing is exposed by accident.
    pub listen: String,
    /// When set, the API requires `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            bearer_token: None,
        }
    }
}

/// Alert sinks besides the alerts topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Alertmanager (v2 API).
    pub alertmanager: UrlSinkConfig,
    /// A generic webhook receiving each alert as JSON.
    pub webhook: UrlSinkConfig,
    /// Each alert as a JSON line on standard output.
    pub stdout: StdoutSinkConfig,
}

/// The stdout sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutSinkConfig {
    /// Write each alert as a JSON line to standard output.
    pub enabled: bool,
}

/// A sink that is off until it has a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UrlSinkConfig {
    /// The endpoint; none disables the sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Config {
    /// Checks what the types cannot: positive windows and caps, thresholds that can be met.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| {
            Err(ConfigError::Key {
                key: key.into(),
                message: message.into(),
            })
        };
        let positive = [
            ("detection.quiet_period", self.detection.quiet_period),
            ("detection.dedup_window", self.detection.dedup_window),
            ("rules.exchange.window", self.rules.exchange.window),
            (
                "rules.amplification.window",
                self.rules.amplification.window,
            ),
            ("rules.early.window", self.rules.early.window),
            ("rules.sustained.window", self.rules.sustained.window),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return bad(key, "must be greater than zero");
            }
            if value > Duration::from_secs(366 * 24 * 3600) {
                return bad(key, "must be at most a year");
            }
        }
        let caps = [
            ("limits.max_threads", self.limits.max_threads),
            ("limits.max_message_ids", self.limits.max_message_ids),
            ("limits.max_subjects", self.limits.max_subjects),
            (
                "limits.max_reply_alls_per_thread",
                self.limits.max_reply_alls_per_thread,
            ),
        ];
        for (key, value) in caps {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        let byte_caps = [
            ("limits.max_thread_bytes", self.limits.max_thread_bytes),
            (
                "limits.max_message_id_bytes",
                self.limits.max_message_id_bytes,
            ),
            ("limits.max_window_bytes", self.limits.max_window_bytes),
        ];
        for (key, value) in byte_caps {
            check_byte_bound(key, value)?;
        }
        self.validate_input()?;
        if self.rules.exchange.min_replies == 0 {
            return bad("rules.exchange.min_replies", "must be at least 1");
        }
        if self.rules.early.min_replies == 0 {
            return bad("rules.early.min_replies", "must be at least 1");
        }
        Ok(())
    }
}

impl Config {
    /// The input bounds: an assembled event is emitted up to the wait after its first line's
    /// time, so a wait at or past the allowed lateness would make every such event late.
    fn validate_input(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Key {
                key: key.into(),
                message,
            })
        };
        let lateness = self.detection.allowed_lateness;
        for (key, wait) in [
            ("input.postfix.header_wait", self.input.postfix.header_wait),
            (
                "input.exchange.expand_wait",
                self.input.exchange.expand_wait,
            ),
        ] {
            if wait >= lateness {
                return bad(
                    key,
                    format!(
                        "must be less than detection.allowed_lateness ({}), or the events it delays are late",
                        humantime::format_duration(lateness)
                    ),
                );
            }
        }
        if self.input.postfix.qmgr_wait.is_zero() {
            return bad(
                "input.postfix.qmgr_wait",
                "must be greater than zero".into(),
            );
        }
        // The service re-reads at least the alert window (60 minutes) after a restart; a message
        // whose first line is older than that could not be assembled again, and its alert, if
        // not yet acknowledged, would be lost.
        let rebuild =
            Duration::from_millis(u64::try_from(crate::engine::ALERT_WINDOW).unwrap_or(u64::MAX));
        if self.input.postfix.qmgr_wait >= rebuild {
            return bad(
                "input.postfix.qmgr_wait",
                format!(
                    "must be less than {} (what a restart re-reads at least), or a message's first lines may not be read again",
                    humantime::format_duration(rebuild)
                ),
            );
        }
        for (key, cap) in [
            ("input.postfix.max_pending", self.input.postfix.max_pending),
            (
                "input.exchange.max_pending",
                self.input.exchange.max_pending,
            ),
        ] {
            if cap == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        for (key, bytes) in [
            (
                "input.postfix.max_pending_bytes",
                self.input.postfix.max_pending_bytes,
            ),
            (
                "input.exchange.max_pending_bytes",
                self.input.exchange.max_pending_bytes,
            ),
        ] {
            check_byte_bound(key, bytes)?;
        }
        if parse_utc_offset(&self.input.postfix.utc_offset).is_none() {
            return bad(
                "input.postfix.utc_offset",
                format!(
                    "{:?} is not an offset like \"+00:00\" or \"-05:30\"",
                    self.input.postfix.utc_offset
                ),
            );
        }
        if self.input.postfix.line_field.trim().is_empty() {
            return bad("input.postfix.line_field", "must not be empty".into());
        }
        Ok(())
    }
}
