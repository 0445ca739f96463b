//! The alert stormwatch emits (contract section 4): one JSON object per line on stdout in replay,
//! the message value on the alerts topic in service mode. Times are epoch milliseconds inside and
//! RFC 3339 UTC with milliseconds on the wire.

use crate::timefmt::{format_millis, Millis};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::sync::Arc;

/// The fields every alert carries (contract section 4); others may be added.
pub const REQUIRED_FIELDS: [&str; 11] = [
    "kind",
    "thread_key",
    "severity",
    "rule",
    "at",
    "started_at",
    "reply_alls",
    "distinct_senders",
    "deliveries",
    "subject",
    "block_until",
];

/// What happened to the storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A rule came to hold on a thread with no active storm.
    StormStarted,
    /// A critical rule came to hold on an active warning storm.
    StormEscalated,
    /// The quiet period passed with no reply-all on the thread.
    StormEnded,
}

impl AlertKind {
    /// The wire name (`storm_started`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::StormStarted => "storm_started",
            AlertKind::StormEscalated => "storm_escalated",
            AlertKind::StormEnded => "storm_ended",
        }
    }
}

/// How bad a storm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look now.
    Warning,
    /// Page someone; consider blocking the thread.
    Critical,
}

impl Severity {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity a wire name names (for alerts read back from the alerts topic).
    pub fn from_wire(name: &str) -> Option<Self> {
        [Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// The rules of contract section 3, in the order that breaks ties within a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    /// Exchange Online's: 10 reply-alls in 60 minutes.
    Exchange,
    /// 1,000,000 deliveries in 10 minutes from 2+ senders.
    Amplification,
    /// 3 reply-alls from 3 senders in 10 minutes.
    Early,
    /// 250,000 deliveries in 60 minutes from 2+ senders.
    Sustained,
}

impl RuleName {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleName::Exchange => "exchange",
            RuleName::Amplification => "amplification",
            RuleName::Early => "early",
            RuleName::Sustained => "sustained",
        }
    }

    /// The rule a wire name names (for alerts read back from the alerts topic).
    pub fn from_wire(name: &str) -> Option<Self> {
        [
            RuleName::Exchange,
            RuleName::Amplification,
            RuleName::Early,
            RuleName::Sustained,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// The thread (contract section 2).
    pub thread_key: Arc<str>,
    /// The storm's severity after this alert.
    pub severity: Severity,
    /// The rule that decided the severity.
    pub rule: RuleName,
    /// Stream time (or, for a storm ended by the wall clock, wall-clock time) of the decision.
    pub at: Millis,
    /// When the storm started.
    pub started_at: Millis,
    /// Reply-alls on the thread with timestamp in `(at - 60 min, at]`.
    pub reply_alls: u64,
    /// Their distinct senders.
    pub distinct_senders: u64,
    /// The sum of their recipient counts.
    pub deliveries: u64,
    /// The latest non-empty subject on the thread, at most 256 code points.
    pub subject: Option<Arc<str>>,
    /// Storm start plus `block_duration`.
    pub block_until: Millis,
    /// The distinct senders, only when `alerts.include_senders` is on.
    pub senders: Option<SenderList>,
}

/// The senders an alert names (`alerts.include_senders`): `senders` and `senders_omitted` on
/// the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderList {
    /// Distinct senders of the hour before the alert, as many as fit in 64 KiB.
    pub listed: Vec<Arc<str>>,
    /// Those left out: past the 64 KiB, or whose address is no longer known.
    pub omitted: u64,
}

impl Alert {
    /// A stable id for the storm this alert belongs to (thread key and start time), so sinks and
    /// readers of the alerts topic can group and deduplicate alerts without parsing keys.
    pub fn storm_id(&self) -> String {
        // FNV-1a: stable across processes and versions, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self
            .thread_key
            .as_bytes()
            .iter()
            .chain(&[0u8])
            .chain(&self.started_at.to_be_bytes())
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    /// The alert as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", &self.kind)?;
        map.serialize_entry("thread_key", &*self.thread_key)?;
        map.serialize_entry("severity", &self.severity)?;
        map.serialize_entry("rule", &self.rule)?;
        map.serialize_entry("at", &format_millis(self.at))?;
        map.serialize_entry("started_at", &format_millis(self.started_at))?;
        map.serialize_entry("reply_alls", &self.reply_alls)?;
        map.serialize_entry("distinct_senders", &self.distinct_senders)?;
        map.serialize_entry("deliveries", &self.deliveries)?;
        map.serialize_entry("subject", &self.subject.as_deref())?;
        map.serialize_entry("block_until", &format_millis(self.block_until))?;
        map.serialize_entry("storm_id", &self.storm_id())?;
        if let Some(senders) = &self.senders {
            let listed: Vec<&str> = senders.listed.iter().map(|s| &**s).collect();
            map.serialize_entry("senders", &listed)?;
            if senders.omitted > 0 {
                map.serialize_entry("senders_omitted", &senders.omitted)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        Alert {
            kind: AlertKind::StormStarted,
            thread_key: Arc::from("t"),
            severity: Severity::Warning,
            rule: RuleName::Early,
            at: 1_709_543_280_000,
            started_at: 1_709_543_280_000,
            reply_alls: 3,
            distinct_senders: 3,
            deliveries: 9000,
            subject: Some(Arc::from("Re: x")),
            block_until: 1_709_564_880_000,
            senders: None,
        }
    }

    #[test]
    fn json_has_every_contract_field() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for field in REQUIRED_FIELDS {
            assert!(value.get(field).is_some(), "{field}");
        }
        assert_eq!(value["kind"], "storm_started");
        assert_eq!(value["thread_key"], "t");
        assert_eq!(value["severity"], "warning");
        assert_eq!(value["rule"], "early");
        assert_eq!(value["at"], "2024-03-04T09:08:00.000Z");
        assert_eq!(value["started_at"], "2024-03-04T09:08:00.000Z");
        assert_eq!(value["reply_alls"], 3);
        assert_eq!(value["distinct_senders"], 3);
        assert_eq!(value["deliveries"], 9000);
        assert_eq!(value["subject"], "Re: x");
        assert_eq!(value["block_until"], "2024-03-04T15:08:00.000Z");
        assert!(value.get("senders").is_none());
    }

    #[test]
    fn null_subject_and_senders_when_enabled() {
        let mut alert = sample();
        alert.subject = None;
        alert.senders = Some(SenderList {
            listed: vec![Arc::from("a@x")],
            omitted: 0,
        });
        let value: serde_json::Value = serde_json::from_str(&alert.to_json()).unwrap();
        assert!(value["subject"].is_null());
        assert_eq!(value["senders"][0], "a@x");
    }

    #[test]
    fn storm_id_is_stable_and_per_storm() {
        let a = sample();
        let mut ended = a.clone();
        ended.kind = AlertKind::StormEnded;
        ended.at += 1;
        assert_eq!(a.storm_id(), ended.storm_id());
        assert_eq!(a.storm_id().len(), 16);
        assert!(a.storm_id().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut other = a.clone();
        other.started_at += 1;
        assert_ne!(a.storm_id(), other.storm_id());
    }
}
