//! One thread's state: its latest subject, its reply-alls and its storm, and the alert built
//! from them. Kept small, since up to `limits.max_threads` of these live at once: the windows,
//! the storm and sender addresses live in one allocation ([`Activity`]) that only a thread with
//! a reply-all or a storm has, and sender addresses only when alerts list them.

use super::settings::Settings;
use super::window::{table_bytes, ReplyWindows};
use crate::alert::{Alert, AlertKind, RuleName, SenderList, Severity};
use crate::timefmt::Millis;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// The key of every thread whose key nothing shares yet (see [`Thread::shared_key`]): no thread
/// key is empty, so the empty string can mark one. One allocation for the process.
static UNSHARED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// The most bytes of sender addresses one alert lists (`alerts.include_senders`), about 2,500
/// typical addresses. A storm may have tens of thousands of senders in an hour, and an alert
/// must stay well under what the alerts topic takes (`message.max.bytes`, 1 MB by default):
/// one it refused would hold the input's offsets for good. Even escaped to six bytes a byte,
/// the list stays under 400 KB; the alert says how many senders it leaves out.
const MAX_LISTED_SENDER_BYTES: usize = 64 * 1024;

/// The most bytes of sender addresses one thread remembers for its alerts: four alerts' worth,
/// so that addresses of senders gone from the windows can be dropped for new ones without a
/// search on every reply-all. Why a bound: a storm may have hundreds of thousands of senders in
/// an hour, each address up to 998 bytes, and a storm's thread is never evicted: unbounded,
/// its addresses alone could fill `limits.max_thread_bytes`, which would then evict every
/// other thread.
const MAX_REMEMBERED_SENDER_BYTES: usize = 4 * MAX_LISTED_SENDER_BYTES;

/// What the tracked threads hold besides their map entries, as the engine bounds it (one
/// thread's, or the sums over all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Held {
    /// Bytes of text: subjects, shared keys and remembered sender addresses
    /// (`limits.max_thread_bytes`).
    pub text: usize,
    /// Bytes of reply-all windows, storms and sender tables, estimated from their allocations
    /// (`limits.max_window_bytes`).
    pub windows: usize,
    /// Threads that have windows and no active storm: those whose windows can be forgotten
    /// past `limits.max_window_bytes` (with none, active storms hold it all); also what sizes
    /// the forgetting order's queue.
    pub quiet_windows: usize,
}

impl Held {
    /// These sums with one thread's `before` replaced by its `after`.
    pub fn replaced(self, before: Self, after: Self) -> Self {
        debug_assert!(
            self.text >= before.text
                && self.windows >= before.windows
                && self.quiet_windows >= before.quiet_windows
        );
        let swap = |sum: usize, out: usize, into: usize| (sum + into).saturating_sub(out);
        Self {
            text: swap(self.text, before.text, after.text),
            windows: swap(self.windows, before.windows, after.windows),
            quiet_windows: swap(
                self.quiet_windows,
                before.quiet_windows,
                after.quiet_windows,
            ),
        }
    }

    /// These sums with a thread's `held` added.
    pub fn plus(self, held: Self) -> Self {
        self.replaced(Self::default(), held)
    }

    /// These sums with a thread's `held` taken out.
    pub fn minus(self, held: Self) -> Self {
        self.replaced(held, Self::default())
    }
}

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

/// One tracked thread. Everything but the key and the subject is in one box, absent for the
/// great majority of threads (those without a reply-all), which keeps the entry at 40 bytes
/// (its slab slot at 64, one cache line).
#[derive(Debug)]
pub(super) struct Thread {
    /// The thread key, shared with the message-id and subject maps that point here, once one
    /// of them does or the thread has a storm; [`UNSHARED`] until then. Why: every lookup that
    /// reaches a thread carries its key's text (an event's id, join or thread id, or a record's
    /// shared copy), so a thread needs its own copy only to share it, and most conversations
    /// are never joined by anything: their key cost an allocation (and 64 bytes) for nothing.
    key: Arc<str>,
    /// The latest non-empty subject, already cut to [`super::MAX_SUBJECT_CHARS`].
    pub subject: Option<Box<str>>,
    activity: Option<Box<Activity>>,
}

/// What a thread holds once it has a reply-all or a storm.
#[derive(Debug, Default)]
struct Activity {
    windows: Option<ReplyWindows>,
    storm: Option<Box<Storm>>,
    /// Sender hash -> address, only when `alerts.include_senders` is on. Boxed so the common
    /// case (off) costs one pointer instead of an empty map's 48 bytes.
    #[allow(clippy::box_collection)]
    sender_names: Option<Box<HashMap<u64, Arc<str>>>>,
    /// The bytes of the addresses in `sender_names`.
    sender_bytes: usize,
    /// Senders not remembered since the last pruning of `sender_names`, for want of room.
    senders_skipped: usize,
    /// The stamp of its latest entry in the engine's `WindowOrder`.
    window_stamp: u64,
}

impl Activity {
    /// Its allocations' bytes, estimated: the box (windows included), the storm's box, the
    /// windows' own allocations and the sender-name table (the names are text).
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .storm
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Storm>())
            + self.windows.as_ref().map_or(0, ReplyWindows::heap_bytes)
            + self.sender_names.as_deref().map_or(0, |names| {
                std::mem::size_of::<HashMap<u64, Arc<str>>>()
                    + table_bytes(names.len(), std::mem::size_of::<(u64, Arc<str>)>())
            })
    }
}

impl Thread {
    /// A thread with nothing recorded yet, with a shared copy of its key if the caller has one.
    pub fn new(key: Option<&Arc<str>>) -> Self {
        Self {
            key: key.unwrap_or(&UNSHARED).clone(),
            subject: None,
            activity: None,
        }
    }

    /// What it holds besides its map entry, as the engine bounds it.
    pub fn held(&self) -> Held {
        let activity = self.activity.as_deref();
        Held {
            text: self.text_bytes(),
            windows: activity.map_or(0, Activity::heap_bytes),
            quiet_windows: usize::from(
                activity.is_some_and(|a| a.windows.is_some() && a.storm.is_none()),
            ),
        }
    }

    /// The bytes of text it holds: its subject, its key's shared copy if it has one, and the
    /// sender addresses it remembers for alerts. (A key shared with message-id records is
    /// counted by them too: an over-count, never an under-count.)
    fn text_bytes(&self) -> usize {
        self.subject.as_deref().map_or(0, str::len)
            + self.key.len()
            + self.activity.as_deref().map_or(0, |a| a.sender_bytes)
    }

    /// [`Self::held`] with the text counted again from what it holds. (The windows' part is
    /// an estimate made afresh each time, not a running count: compared with the engine's
    /// sums, it catches a change made without them, not an estimate that is off.)
    #[cfg(test)]
    pub fn recounted_held(&self) -> Held {
        let names = self
            .activity
            .as_deref()
            .and_then(|a| a.sender_names.as_deref());
        Held {
            text: self.subject.as_deref().map_or(0, str::len)
                + self.key.len()
                + names.map_or(0, |names| names.values().map(|name| name.len()).sum()),
            ..self.held()
        }
    }

    /// Its key's shared copy, if it has one yet.
    pub fn shared_key(&self) -> Option<&Arc<str>> {
        (!self.key.is_empty()).then_some(&self.key)
    }

    /// Its key's shared copy, taking `make`'s when it has none yet.
    pub fn share_key(&mut self, make: impl FnOnce() -> Arc<str>) -> &Arc<str> {
        if self.key.is_empty() {
            self.key = make();
        }
        &self.key
    }

    /// Its reply-alls, once it has had one.
    pub fn windows(&self) -> Option<&ReplyWindows> {
        self.activity.as_deref()?.windows.as_ref()
    }

    /// Its reply-alls, mutably.
    pub fn windows_mut(&mut self) -> Option<&mut ReplyWindows> {
        self.activity.as_deref_mut()?.windows.as_mut()
    }

    /// Its reply-alls, made with `new` if it has none yet.
    pub fn windows_or_insert_with(
        &mut self,
        new: impl FnOnce() -> ReplyWindows,
    ) -> &mut ReplyWindows {
        self.activity().windows.get_or_insert_with(new)
    }

    /// Records `stamp` as its latest place in the order windows are forgotten in.
    pub fn set_window_stamp(&mut self, stamp: u64) {
        if let Some(activity) = self.activity.as_deref_mut() {
            activity.window_stamp = stamp;
        }
    }

    /// The stamp of its latest place in the order windows are forgotten in, while it has
    /// windows and no active storm (those can be forgotten).
    pub fn quiet_window_stamp(&self) -> Option<u64> {
        let activity = self.activity.as_deref()?;
        (activity.windows.is_some() && activity.storm.is_none()).then_some(activity.window_stamp)
    }

    /// Forgets its reply-alls (past `limits.max_window_bytes`; never with an active storm),
    /// and the sender addresses kept for their alerts.
    pub fn forget_windows(&mut self) {
        debug_assert!(self.storm().is_none());
        if self.storm().is_none() {
            self.activity = None;
        }
    }

    /// Its active storm.
    pub fn storm(&self) -> Option<&Storm> {
        self.activity.as_deref()?.storm.as_deref()
    }

    /// Its active storm, mutably.
    pub fn storm_mut(&mut self) -> Option<&mut Storm> {
        self.activity.as_deref_mut()?.storm.as_deref_mut()
    }

    /// Makes `storm` its active storm.
    pub fn start_storm(&mut self, storm: Storm) {
        self.activity().storm = Some(Box::new(storm));
    }

    /// Drops its storm, and its windows if they hold nothing; the whole box when nothing is
    /// left in it.
    pub fn end_storm(&mut self) {
        let Some(activity) = self.activity.as_deref_mut() else {
            return;
        };
        activity.storm = None;
        if activity
            .windows
            .as_ref()
            .is_some_and(ReplyWindows::is_empty)
        {
            activity.windows = None;
        }
        if activity.windows.is_none() && activity.sender_names.is_none() {
            self.activity = None;
        }
    }

    fn activity(&mut self) -> &mut Activity {
        self.activity.get_or_insert_with(Box::default)
    }

    /// Makes `subject` the latest, without reallocating when it is unchanged.
    pub fn set_subject(&mut self, subject: &str) {
        if self.subject.as_deref() != Some(subject) {
            self.subject = Some(Box::from(subject));
        }
    }

    /// Remembers a sender's address for alerts that list senders.
    /// Up to [`MAX_REMEMBERED_SENDER_BYTES`]: past it a sender is left out of alerts (and
    /// counted in `senders_omitted`) until older ones leave the windows.
    pub fn remember_sender(&mut self, hash: u64, address: &str) {
        let activity = self.activity();
        let names = activity.sender_names.get_or_insert_with(Box::default);
        if names.contains_key(&hash) {
            return;
        }
        if activity.sender_bytes + address.len() > MAX_REMEMBERED_SENDER_BYTES {
            activity.senders_skipped += 1;
            return;
        }
        names.insert(hash, Arc::from(address));
        activity.sender_bytes += address.len();
    }

    /// Drops addresses of senders no longer in any window, once they clearly outnumber them,
    /// or once as many senders were left out for want of room as are remembered (so a search
    /// of the windows is paid for by that many reply-alls).
    pub fn forget_absent_senders(&mut self) {
        let Some(Activity {
            windows: Some(windows),
            sender_names: Some(names),
            sender_bytes,
            senders_skipped,
            ..
        }) = self.activity.as_deref_mut()
        else {
            return;
        };
        if names.len() > 2 * windows.len() + 16 || *senders_skipped > names.len() {
            let widest = windows.widest_index();
            let live: std::collections::HashSet<u64> =
                windows.senders(widest).into_iter().collect();
            names.retain(|hash, _| live.contains(hash));
            // The table's room is counted by its length (`table_bytes`): keep them close.
            if names.capacity() > 4 * names.len() + 64 {
                names.shrink_to_fit();
            }
            *sender_bytes = names.values().map(|name| name.len()).sum();
            *senders_skipped = 0;
        }
    }

    /// The alert of `kind` for this thread's storm at `at`, with the statistics of the 60
    /// minutes before `at` (from the running aggregates when `at` is the windows' time).
    pub fn alert(&self, kind: AlertKind, at: Millis, settings: &Settings) -> Alert {
        let (severity, rule, started_at) = match self.storm() {
            Some(storm) => (storm.severity, storm.rule, storm.started_at),
            None => (Severity::Warning, RuleName::Early, at),
        };
        let stats = self
            .windows()
            .map(|w| w.stats_at(0, at))
            .unwrap_or_default();
        let senders = settings.include_senders.then(|| {
            let names = self
                .activity
                .as_deref()
                .and_then(|a| a.sender_names.as_deref());
            let everyone = self.windows().map(|w| w.senders(0)).unwrap_or_default();
            let mut room = MAX_LISTED_SENDER_BYTES;
            let listed: Vec<Arc<str>> = everyone
                .iter()
                .filter_map(|hash| names.and_then(|n| n.get(hash)).cloned())
                // Each costs its bytes, two quotes and a comma.
                .take_while(|name| match room.checked_sub(name.len() + 3) {
                    Some(left) => {
                        room = left;
                        true
                    }
                    None => false,
                })
                .collect();
            SenderList {
                omitted: everyone.len().saturating_sub(listed.len()) as u64,
                listed,
            }
        });
        debug_assert!(!self.key.is_empty(), "a thread with a storm shares its key");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Up to `limits.max_threads` threads live at once, and the memory target (256 bytes per
    /// tracked thread, BENCHMARKS.md) leaves no room for a field more per thread.
    #[test]
    fn an_idle_thread_is_five_words() {
        assert_eq!(std::mem::size_of::<Thread>(), 40);
        assert_eq!(std::mem::size_of::<Option<Thread>>(), 40);
    }

    #[test]
    fn a_key_is_shared_once_and_kept() {
        let mut thread = Thread::new(None);
        assert_eq!(thread.shared_key(), None);
        let first: Arc<str> = Arc::from("<a@x>");
        assert!(Arc::ptr_eq(thread.share_key(|| first.clone()), &first));
        // Shared already: another copy offered later is not taken.
        assert!(Arc::ptr_eq(thread.share_key(|| Arc::from("<a@x>")), &first));
        assert_eq!(thread.shared_key().map(|k| &**k), Some("<a@x>"));
        assert_eq!(Thread::new(Some(&first)).shared_key(), Some(&first));
    }

    #[test]
    fn ending_a_storm_drops_what_the_thread_no_longer_needs() {
        let storm = Storm {
            started_at: 0,
            severity: Severity::Warning,
            rule: RuleName::Early,
            epoch: 0,
            last_arrival: None,
        };
        let key = Arc::from("t");
        let mut resumed = Thread::new(Some(&key));
        resumed.start_storm(storm.clone());
        assert_eq!(resumed.storm(), Some(&storm));
        resumed.end_storm();
        assert!(resumed.activity.is_none(), "nothing left: the box goes");

        let mut named = Thread::new(Some(&key));
        named.remember_sender(7, "a@example.org");
        named.start_storm(storm);
        named.end_storm();
        assert!(named.storm().is_none() && named.windows().is_none());
        assert!(named.activity.is_some(), "the sender names stay");
    }
}
