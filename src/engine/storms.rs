//! Storms once started: the active ones as the storms API and summaries see them, storms
//! carried over a restart, and their ends (by stream time after the quiet period, or by the wall
//! clock when traffic stops). Starting and escalating a storm is the rules' decision and stays
//! with the event that causes it (`Engine::apply_to_thread`).

use super::keys::KeyHash;
use super::thread::{Held, Storm, Thread};
use super::window::{ReplyWindows, WindowStats};
use super::window_order::WindowOrder;
use super::{change_thread, thread_entry, Engine, ThreadOf};
use crate::alert::{Alert, AlertKind, RuleName, Severity};
use crate::timefmt::Millis;
use std::cmp::Reverse;
use std::sync::Arc;

/// An active storm, for summaries and the storms API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormSnapshot {
    /// Its thread.
    pub thread_key: Arc<str>,
    /// Current severity.
    pub severity: Severity,
    /// The rule that decided it.
    pub rule: RuleName,
    /// When it started.
    pub started_at: Millis,
    /// The newest reply-all on it.
    pub last_reply_all: Millis,
    /// Reply-alls, senders and deliveries in the last 60 minutes of stream time.
    pub last_hour: WindowStats,
    /// Latest subject.
    pub subject: Option<Arc<str>>,
}

/// A storm announced before a restart that the rebuilt window did not re-derive (the backlog
/// was skipped, the alerts topic holds more history than the input, or the rules changed): the
/// engine carries it on so it ends (and is announced as ended) like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedStorm {
    /// Its thread.
    pub thread_key: Arc<str>,
    /// Its severity and rule as last announced.
    pub severity: Severity,
    /// The rule that decided the severity.
    pub rule: RuleName,
    /// The announced start.
    pub started_at: Millis,
    /// The latest time the alerts topic shows it active (its newest alert's `at`): the quiet
    /// period is counted from here unless a newer reply-all arrives.
    pub last_active: Millis,
    /// The announced subject.
    pub subject: Option<Arc<str>>,
}

/// A pending storm end: (deadline, thread, storm epoch). Entries whose epoch no longer matches
/// the thread's storm are stale and skipped.
pub(super) type Deadline = Reverse<(Millis, Arc<str>, u64)>;

impl Engine {
    /// Active storms, ordered by thread key.
    pub fn active_storms(&self) -> Vec<StormSnapshot> {
        self.active
            .iter()
            .filter_map(|key| {
                let thread = self.threads.get(&self.hasher.hash(key))?;
                let storm = thread.storm()?;
                let windows = thread.windows();
                Some(StormSnapshot {
                    thread_key: key.clone(),
                    severity: storm.severity,
                    rule: storm.rule,
                    started_at: storm.started_at,
                    last_reply_all: windows.map_or(storm.started_at, ReplyWindows::latest),
                    last_hour: windows.map_or_else(WindowStats::default, |w| w.stats(0)),
                    subject: thread.subject.as_deref().map(Arc::from),
                })
            })
            .collect()
    }

    /// Tells the engine the wall-clock time at which the events about to be ingested arrived.
    /// The engine reads no clock; the service calls this per batch so that
    /// [`Engine::end_idle_storms`] can end storms by wall-clock time when traffic stops.
    pub fn set_arrival_time(&mut self, wall_clock: Millis) {
        self.arrival = Some(wall_clock);
    }

    /// Makes the active storm on `thread_key` that started at `derived_started_at` (as the
    /// engine derived it) carry `started_at` (and the `block_until` that follows) and
    /// `severity` with `rule` unless its own severity is higher: after a restart, the service
    /// adopts what the alerts topic already announced for a storm the engine re-derived, so that
    /// storm's later alerts match the earlier ones, and a storm announced critical is not
    /// escalated again from the rebuild's warning. A storm with another start is left alone:
    /// by the time an alert of a storm is checked, its thread may already have a newer storm
    /// (one event can end a storm and start the next). Returns whether it was adopted.
    pub fn adopt_announced_storm(
        &mut self,
        thread_key: &str,
        derived_started_at: Millis,
        started_at: Millis,
        severity: Severity,
        rule: RuleName,
    ) -> bool {
        let Some(storm) = self
            .threads
            .get_mut(&self.hasher.hash(thread_key))
            .and_then(Thread::storm_mut)
            .filter(|storm| storm.started_at == derived_started_at)
        else {
            return false;
        };
        storm.started_at = started_at;
        if severity >= storm.severity {
            storm.severity = severity;
            storm.rule = rule;
        }
        true
    }

    /// Ends, without an alert, the active storm on `thread_key` that started at `started_at`:
    /// after a restart, a storm whose `storm_ended` is already on the alerts topic but that the
    /// rebuild re-derived without its end (it ended by the wall clock when traffic stopped, and
    /// nothing in the input ends it again). Left active, it would sit on the board, end a second
    /// time a quiet period after the restart, and take a new storm's reply-alls on its thread
    /// as its own. Its reply-alls stay in the windows, as after any end. Returns whether there
    /// was such a storm.
    pub fn settle_ended_storm(&mut self, thread_key: &str, started_at: Millis) -> bool {
        let hash = self.hasher.hash(thread_key);
        let Some(thread) = self.threads.get_mut(&hash) else {
            return false;
        };
        if thread
            .storm()
            .is_none_or(|storm| storm.started_at != started_at)
        {
            return false;
        }
        end_thread_storm(thread, hash, &mut self.held, &mut self.window_order);
        self.active.remove(thread_key);
        true
    }

    /// Carries on a storm announced before a restart that the engine did not re-derive, so it
    /// ends by the usual rules: when stream time passes `last_active + quiet_period` (at once,
    /// if it already has), or by the wall clock once caught up, unless new reply-alls keep it
    /// going (they escalate it as usual). Returns whether it was taken on: not when the thread
    /// already has an active storm, nor when every tracked thread has one and the cap is
    /// reached.
    pub fn resume_storm(&mut self, resumed: ResumedStorm, alerts: &mut Vec<Alert>) -> bool {
        let ThreadOf { hash, found, .. } = self.intern(&resumed.thread_key);
        let Some(thread) = thread_entry(
            &mut self.threads,
            hash,
            found,
            Some(&resumed.thread_key),
            self.settings.max_threads,
            &mut self.stats,
            &mut self.held,
        ) else {
            return false;
        };
        if thread.storm().is_some() {
            return false;
        }
        let key = change_thread(thread, &mut self.held, |thread| {
            if thread.subject.is_none() {
                thread.subject = resumed.subject.as_deref().map(Box::from);
            }
            thread.share_key(|| resumed.thread_key.clone()).clone()
        });
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let storm = Storm {
            started_at: resumed.started_at,
            severity: resumed.severity,
            rule: resumed.rule,
            epoch,
            last_arrival: self.arrival,
        };
        change_thread(thread, &mut self.held, |thread| thread.start_storm(storm));
        let latest = thread
            .windows()
            .map_or(resumed.last_active, |w| w.latest().max(resumed.last_active));
        let deadline = latest.saturating_add(self.settings.quiet_period);
        self.deadlines.push(Reverse((deadline, key.clone(), epoch)));
        self.active.insert(key);
        if let Some(now) = self.now {
            self.end_quiet_storms(now, alerts);
        }
        self.evict_over_byte_bounds(hash);
        true
    }

    /// Ends every active storm for which no reply-all has arrived for `quiet_period` of wall-clock
    /// time, as of `wall_clock` (contract section 3, service mode). The caller calls this only
    /// while every assigned partition is caught up, never while a backlog is read; `at` of the
    /// `storm_ended` alert is `wall_clock`.
    pub fn end_idle_storms(&mut self, wall_clock: Millis, alerts: &mut Vec<Alert>) {
        let quiet = self.settings.quiet_period;
        let idle: Vec<Arc<str>> = self
            .active
            .iter()
            .filter(|key| {
                self.threads
                    .get(&self.hasher.hash(key))
                    .and_then(Thread::storm)
                    .and_then(|s| s.last_arrival)
                    .is_some_and(|arrived| wall_clock >= arrived.saturating_add(quiet))
            })
            .cloned()
            .collect();
        for key in idle {
            self.end_storm(&key, wall_clock, alerts);
        }
    }

    /// Ends the active storm on `key` at `at`: the `storm_ended` alert, then the state.
    pub(super) fn end_storm(&mut self, key: &Arc<str>, at: Millis, alerts: &mut Vec<Alert>) {
        let hash = self.hasher.hash(key);
        let Some(thread) = self.threads.get_mut(&hash) else {
            return;
        };
        if thread.storm().is_none() {
            return;
        }
        // Windows follow stream time only: a wall-clock end (which may be ahead of it) reads the
        // statistics at `at` without moving them.
        let now = self.now;
        change_thread(thread, &mut self.held, |thread| {
            if let (Some(windows), Some(now)) = (thread.windows_mut(), now) {
                windows.advance(at.min(now));
            }
        });
        alerts.push(thread.alert(AlertKind::StormEnded, at, &self.settings));
        end_thread_storm(thread, hash, &mut self.held, &mut self.window_order);
        self.active.remove(key);
        self.stats.storms_ended += 1;
    }

    /// Ends every active storm whose last reply-all is at least `quiet_period` before `now`.
    /// Called at every step of the clock, nearly always with nothing due (no storm active): that
    /// answer is inlined, without a call (which was 1.5% of the engine's instructions).
    #[inline]
    pub(super) fn end_quiet_storms(&mut self, now: Millis, alerts: &mut Vec<Alert>) {
        if self
            .deadlines
            .peek()
            .is_some_and(|Reverse((deadline, _, _))| *deadline <= now)
        {
            self.end_due_storms(now, alerts);
        }
    }

    /// [`Self::end_quiet_storms`] once a deadline is due.
    #[inline(never)]
    fn end_due_storms(&mut self, now: Millis, alerts: &mut Vec<Alert>) {
        while let Some(Reverse((deadline, _, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((_, key, epoch))) = self.deadlines.pop() else {
                break;
            };
            let Some(thread) = self.threads.get_mut(&self.hasher.hash(&key)) else {
                continue;
            };
            if thread.storm().is_none_or(|storm| storm.epoch != epoch) {
                continue;
            }
            let latest = thread.windows().map_or(Millis::MIN, ReplyWindows::latest);
            let actual = latest.saturating_add(self.settings.quiet_period);
            if actual > now {
                // A newer reply-all moved the deadline since this entry was pushed.
                self.deadlines.push(Reverse((actual, key, epoch)));
                continue;
            }
            self.end_storm(&key, now, alerts);
        }
    }
}

/// Ends the storm on `thread` (key hash `hash`), keeping `held` right, and queues the windows
/// it leaves to be forgotten in their turn: while the storm lasted they could not be. The one
/// way a tracked thread's storm ends, so that no end forgets the queue.
fn end_thread_storm(thread: &mut Thread, hash: KeyHash, held: &mut Held, order: &mut WindowOrder) {
    change_thread(thread, held, Thread::end_storm);
    if thread.windows().is_some() {
        thread.set_window_stamp(order.stamp(hash));
    }
}
