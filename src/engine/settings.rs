//! The engine's view of the configuration: every duration in milliseconds, the rules compiled
//! into a [`RuleSet`], computed once so the hot path does no conversions.

use super::rules::RuleSet;
use crate::config::Config;
use crate::timefmt::Millis;
use std::time::Duration;

/// Detection settings in engine units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Reply-all threshold on recipients.
    pub min_recipients: u64,
    /// Events older than `T - allowed_lateness` are late.
    pub allowed_lateness: Millis,
    /// A counted reply-all's message id makes duplicates for this long.
    pub dedup_window: Millis,
    /// A storm ends at `L + quiet_period`.
    pub quiet_period: Millis,
    /// `block_until = started_at + block_duration`.
    pub block_duration: Millis,
    /// Thread cap.
    pub max_threads: usize,
    /// Message-id map cap.
    pub max_message_ids: usize,
    /// Subject map cap.
    pub max_subjects: usize,
    /// Reply-alls kept per thread.
    pub max_reply_alls_per_thread: usize,
    /// Bytes of keys, subjects and listed sender addresses the tracked threads hold
    /// ([`super::Engine::thread_bytes`]).
    pub max_thread_bytes: usize,
    /// Bytes of thread keys the message-id records hold
    /// ([`super::Engine::message_id_bytes`]).
    pub max_message_id_bytes: usize,
    /// Bytes the tracked threads' windows and storms have allocated
    /// ([`super::Engine::window_bytes`]).
    pub max_window_bytes: usize,
    /// Whether alerts list senders.
    pub include_senders: bool,
    /// The enabled rules.
    pub rules: RuleSet,
}

/// A duration in milliseconds, saturating (configuration validation keeps them sane).
pub fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

impl Settings {
    /// Compiles the configuration's `detection`, `rules`, `limits` and `alerts` sections.
    pub fn from_config(config: &Config) -> Self {
        let d = &config.detection;
        let l = &config.limits;
        Self {
            min_recipients: d.min_recipients,
            allowed_lateness: millis(d.allowed_lateness),
            dedup_window: millis(d.dedup_window),
            quiet_period: millis(d.quiet_period),
            block_duration: millis(d.block_duration),
            max_threads: l.max_threads,
            max_message_ids: l.max_message_ids,
            max_subjects: l.max_subjects,
            max_reply_alls_per_thread: l.max_reply_alls_per_thread,
            max_thread_bytes: l.max_thread_bytes,
            max_message_id_bytes: l.max_message_id_bytes,
            max_window_bytes: l.max_window_bytes,
            include_senders: config.alerts.include_senders,
            rules: RuleSet::from_config(&config.rules),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}
