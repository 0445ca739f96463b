//! The configuration sections and their defaults (contract section 6). Every key is documented
//! once, here; `--print-config` and the README's reference are generated from or checked
//! against these structs.

use super::{duration, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
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
    /// Remembered message ids (for duplicates and In-Reply-To/References joins).
    pub max_message_ids: usize,
    /// Remembered big-audience subjects (for subject-only replies).
    pub max_subjects: usize,
    /// Reply-alls kept per thread; past it the oldest are dropped and counts saturate.
    pub max_reply_alls_per_thread: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_threads: 1_000_000,
            max_message_ids: 4_000_000,
            max_subjects: 100_000,
            max_reply_alls_per_thread: 100_000,
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
        if self.rules.exchange.min_replies == 0 {
            return bad("rules.exchange.min_replies", "must be at least 1");
        }
        if self.rules.early.min_replies == 0 {
            return bad("rules.early.min_replies", "must be at least 1");
        }
        Ok(())
    }
}
