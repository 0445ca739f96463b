//! One thread's state: its latest subject, its reply-alls and its storm, and the alert built
//! from them. Kept small, since up to `limits.max_threads` of these live at once: the windows
//! are allocated only when the thread has a reply-all, and sender addresses only when alerts
//! list them.

use super::settings::Settings;
use super::window::ReplyWindows;
use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::timefmt::Millis;
use std::collections::HashMap;
use std::sync::Arc;

/// An active storm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Storm {
    pub started_at: Millis,
    pub severity: Severity,
    pub rule: RuleName,
    /// Distinguishes this storm from earlier ones on the thread, for the deadline heap.
    pub epoch: u64,
    /// Wall-clock time (as given by the caller) when its latest reply-all arrived, for the
    /// service's wall-clock ending; `None` in replay.
    pub last_arrival: Option<Millis>,
}

/// One tracked thread. Everything but the key and the subject is boxed and absent for the
/// great majority of threads (those without a reply-all), which keeps the entry at 56 bytes.
#[derive(Debug)]
pub(super) struct Thread {
    /// The thread key, shared with the message-id and subject maps that point here.
    pub key: Arc<str>,
    /// The latest non-empty subject, already cut to [`super::MAX_SUBJECT_CHARS`].
    pub subject: Option<Box<str>>,
    pub windows: Option<Box<ReplyWindows>>,
    pub storm: Option<Box<Storm>>,
    /// Sender hash -> address, only when `alerts.include_senders` is on. Boxed so the common
    /// case (off) costs one pointer per thread instead of an empty map's 48 bytes.
    #[allow(clippy::box_collection)]
    pub sender_names: Option<Box<HashMap<u64, Arc<str>>>>,
}

impl Thread {
    /// A thread with nothing recorded yet.
    pub fn new(key: Arc<str>) -> Self {
        Self {
            key,
            subject: None,
            windows: None,
            storm: None,
            sender_names: None,
        }
    }

    /// Makes `subject` the latest, without reallocating when it is unchanged.
    pub fn set_subject(&mut self, subject: &str) {
        if self.subject.as_deref() != Some(subject) {
            self.subject = Some(Box::from(subject));
        }
    }

    /// Remembers a sender's address for alerts that list senders.
    pub fn remember_sender(&mut self, hash: u64, address: &str) {
        self.sender_names
            .get_or_insert_with(Box::default)
            .entry(hash)
            .or_insert_with(|| Arc::from(address));
    }

    /// Drops addresses of senders no longer in any window, once they clearly outnumber them.
    pub fn forget_absent_senders(&mut self) {
        let (Some(names), Some(windows)) =
            (self.sender_names.as_deref_mut(), self.windows.as_deref())
        else {
            return;
        };
        if names.len() > 2 * windows.len() + 16 {
            let widest = windows.widest_index();
            let live: std::collections::HashSet<u64> =
                windows.senders(widest).into_iter().collect();
            names.retain(|hash, _| live.contains(hash));
        }
    }

    /// The alert of `kind` for this thread's storm at `at`, with the statistics of the 60
    /// minutes before `at` (from the running aggregates when `at` is the windows' time).
    pub fn alert(&self, kind: AlertKind, at: Millis, settings: &Settings) -> Alert {
        let (severity, rule, started_at) = match &self.storm {
            Some(storm) => (storm.severity, storm.rule, storm.started_at),
            None => (Severity::Warning, RuleName::Early, at),
        };
        let stats = self
            .windows
            .as_deref()
            .map(|w| w.stats_at(0, at))
            .unwrap_or_default();
        let senders = settings.include_senders.then(|| {
            let names = self.sender_names.as_deref();
            self.windows
                .as_deref()
                .map(|w| w.senders(0))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|hash| names.and_then(|n| n.get(&hash)).cloned())
                .collect()
        });
        Alert {
            kind,
            thread_key: self.key.clone(),
            severity,
            rule,
            at,
            started_at,
            reply_alls: stats.reply_alls,
            distinct_senders: stats.distinct_senders,
            deliveries: stats.deliveries,
            subject: self.subject.as_deref().map(Arc::from),
            block_until: started_at.saturating_add(settings.block_duration),
            senders,
        }
    }
}
