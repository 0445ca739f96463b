//! Which offsets may be committed: the at-least-once rule and the state-rebuild rule.
//!
//! Two things hold a partition's commit back:
//! 1. **Durability of effects.** Every record processed gets a sequence number; every alert or
//!    DLQ record it caused is "in flight" until the producer acknowledges it. No offset is
//!    committed at or past a record whose effects are still in flight, so a crash never loses
//!    an alert or a malformed record: the record is read again and its effect re-made.
//! 2. **Rebuilding state.** The engine's state is one window of events. A restart reads from the
//!    committed offset, so nothing newer than `stream time - holdback` is committed (holdback =
//!    the longest window plus the allowed lateness): after a restart the engine re-reads the
//!    window and its state is what it was. librdkafka's mock cluster cannot answer
//!    ListOffsets-by-timestamp, so a rebuild that seeks by time could not be tested; this one can.
//!
//! Per partition, the tracker keeps sparse checkpoints (at most one per second of event time or
//! per 1,000 records) of (sequence, event time, offset), so its memory is bounded by the
//! holdback, not by the traffic.

use crate::timefmt::Millis;
use std::collections::{BTreeMap, VecDeque};

/// A checkpoint every this many milliseconds of event time...
const CHECKPOINT_EVERY_MS: Millis = 1_000;
/// ...or every this many records.
const CHECKPOINT_EVERY_RECORDS: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    seq: u64,
    at: Millis,
    offset: i64,
}

#[derive(Debug, Default)]
struct PartitionOffsets {
    checkpoints: VecDeque<Checkpoint>,
    /// The last processed record: (sequence, offset).
    last: Option<(u64, i64)>,
    since_checkpoint: u64,
    committed: Option<i64>,
}

/// Tracks processed records and in-flight effects, and says which offsets are safe to commit.
#[derive(Debug)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionOffsets>,
    holdback: Millis,
    next_seq: u64,
    /// Sequence -> (effects still in flight, stream time when the first was produced).
    in_flight: BTreeMap<u64, (u32, Option<Millis>)>,
}

impl OffsetTracker {
    /// A tracker keeping `holdback` milliseconds of event time re-readable.
    pub fn new(holdback: Millis) -> Self {
        Self {
            partitions: BTreeMap::new(),
            holdback,
            next_seq: 0,
            in_flight: BTreeMap::new(),
        }
    }

    /// A record of `partition` at `offset` (event time `at`, none for malformed records) was
    /// processed. Returns its sequence number, to tag the effects it causes.
    pub fn processed(&mut self, partition: i32, offset: i64, at: Option<Millis>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let p = self.partitions.entry(partition).or_default();
        p.last = Some((seq, offset));
        p.since_checkpoint += 1;
        if let Some(at) = at {
            let previous = p.checkpoints.back().copied();
            let due = previous.is_none_or(|c| {
                at >= c.at.saturating_add(CHECKPOINT_EVERY_MS)
                    || p.since_checkpoint >= CHECKPOINT_EVERY_RECORDS
            });
            if due {
                // Event time within a partition can step back a little; checkpoints keep it
                // monotone so the search below stays simple.
                let at = previous.map_or(at, |c| at.max(c.at));
                p.checkpoints.push_back(Checkpoint { seq, at, offset });
                p.since_checkpoint = 0;
            }
        }
        seq
    }

    /// The sequence number effects not caused by a record (storms ended by the wall clock)
    /// are tagged with: nothing after it may be committed until they are acknowledged.
    pub fn current_seq(&self) -> u64 {
        self.next_seq
    }

    /// An effect (alert, DLQ record) of record `seq` was handed to the producer, at stream time
    /// `stream_time`. While it is in flight, the holdback is measured from that stream time, so
    /// however long the producer takes, a restart still re-reads the window that caused it.
    pub fn produced(&mut self, seq: u64, stream_time: Option<Millis>) {
        self.in_flight.entry(seq).or_insert((0, stream_time)).0 += 1;
    }

    /// The producer delivered an effect of record `seq` (one that failed for good is never
    /// settled: it holds the commits back until a restart).
    pub fn settled(&mut self, seq: u64) {
        if let Some((count, _)) = self.in_flight.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&seq);
            }
        }
    }

    /// Effects in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.values().map(|&(c, _)| c as usize).sum()
    }

    /// Forgets revoked partitions.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for p in partitions {
            self.partitions.remove(&p);
        }
    }

    /// The offsets that may now be committed (only those that moved forward), given stream
    /// time and `floor`, the sequence number of the oldest record the caller still needs
    /// (a mail-log line in a message being assembled), which is held back like an in-flight
    /// effect.
    pub fn commit_points(
        &mut self,
        stream_time: Option<Millis>,
        floor: Option<u64>,
    ) -> Vec<(i32, i64)> {
        let Some(now) = stream_time else {
            return Vec::new();
        };
        let oldest = self.in_flight.iter().next();
        let oldest_in_flight = match (oldest.map(|(&seq, _)| seq), floor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let reference = oldest
            .and_then(|(_, &(_, produced_at))| produced_at)
            .map_or(now, |produced_at| produced_at.min(now));
        let horizon = reference.saturating_sub(self.holdback);
        let mut out = Vec::new();
        for (&partition, p) in &mut self.partitions {
            let Some((last_seq, last_offset)) = p.last else {
                continue;
            };
            let newest_at = p.checkpoints.back().map_or(Millis::MIN, |c| c.at);
            let everything_old = newest_at.saturating_add(CHECKPOINT_EVERY_MS) <= horizon;
            let all_settled = oldest_in_flight.is_none_or(|s| last_seq < s);
            let candidate = if everything_old && all_settled {
                Some(last_offset + 1)
            } else {
                // The last checkpoint that is both old enough and not after an in-flight effect.
                p.checkpoints
                    .iter()
                    .rev()
                    .find(|c| c.at <= horizon && oldest_in_flight.is_none_or(|s| c.seq <= s))
                    .map(|c| c.offset)
            };
            let Some(candidate) = candidate else {
                continue;
            };
            if p.committed.is_some_and(|c| candidate <= c) {
                continue;
            }
            p.committed = Some(candidate);
            while p.checkpoints.len() > 1
                && p.checkpoints.front().is_some_and(|c| c.offset < candidate)
            {
                p.checkpoints.pop_front();
            }
            out.push((partition, candidate));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Millis = 1_000;
    const HOLD: Millis = 60 * S;

    #[test]
    fn nothing_newer_than_the_holdback_is_committed() {
        let mut t = OffsetTracker::new(HOLD);
        for i in 0..200 {
            t.processed(0, i, Some(i * S));
        }
        // Stream time 199 s: records at or before 139 s are outside the holdback.
        assert_eq!(t.commit_points(Some(199 * S), None), vec![(0, 139)]);
        // Nothing moved: nothing new to commit.
        assert_eq!(t.commit_points(Some(199 * S), None), vec![]);
        assert_eq!(t.commit_points(Some(250 * S), None), vec![(0, 190)]);
    }

    #[test]
    fn a_quiet_partition_commits_everything_once_old() {
        let mut t = OffsetTracker::new(HOLD);
        t.processed(0, 0, Some(0));
        t.processed(0, 1, None);
        t.processed(0, 2, Some(10));
        assert_eq!(t.commit_points(Some(120 * S), None), vec![(0, 3)]);
    }

    #[test]
    fn an_in_flight_alert_holds_its_record_and_everything_after() {
        let mut t = OffsetTracker::new(0);
        let mut seqs = Vec::new();
        for i in 0..10 {
            seqs.push(t.processed(0, i, Some(i * 2 * S)));
        }
        t.produced(seqs[4], Some(100 * S));
        assert_eq!(t.commit_points(Some(100 * S), None), vec![(0, 4)]);
        assert_eq!(t.in_flight(), 1);
        t.settled(seqs[4]);
        assert_eq!(t.commit_points(Some(100 * S), None), vec![(0, 10)]);
    }

    #[test]
    fn in_flight_effects_hold_other_partitions_too() {
        let mut t = OffsetTracker::new(0);
        let a = t.processed(0, 0, Some(0));
        t.processed(1, 0, Some(2 * S));
        t.produced(a, Some(100 * S));
        t.processed(1, 1, Some(4 * S));
        // Partition 1's records came after the in-flight effect's record.
        assert_eq!(t.commit_points(Some(100 * S), None), vec![(0, 0)]);
        t.settled(a);
        assert_eq!(t.commit_points(Some(100 * S), None), vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn a_long_in_flight_effect_keeps_its_window_re_readable() {
        let mut t = OffsetTracker::new(HOLD);
        let mut seqs = Vec::new();
        for i in 0..10 {
            seqs.push(t.processed(0, i, Some(i * 60 * S)));
        }
        // The alert of the record at 9 minutes is produced at stream time 9 minutes and stays
        // unacknowledged while stream time runs on to 90 minutes.
        t.produced(seqs[9], Some(9 * 60 * S));
        for i in 10..90 {
            t.processed(0, i, Some(i * 60 * S));
        }
        // Measured from the stream time of the in-flight alert (9 minutes, minus the one-minute
        // holdback here), the commit stops at 8 minutes: the alert's record and its window are
        // read again after a crash, however far stream time has run.
        assert_eq!(t.commit_points(Some(90 * 60 * S), None), vec![(0, 8)]);
        t.settled(seqs[9]);
        assert_eq!(t.commit_points(Some(90 * 60 * S), None), vec![(0, 89)]);
    }

    #[test]
    fn checkpoints_are_sparse() {
        let mut t = OffsetTracker::new(HOLD);
        for i in 0..100_000 {
            t.processed(0, i, Some(i / 100));
        }
        let p = &t.partitions[&0];
        assert!(p.checkpoints.len() <= 101, "{}", p.checkpoints.len());
    }

    #[test]
    fn a_floor_holds_back_like_an_in_flight_effect() {
        let mut t = OffsetTracker::new(0);
        let seqs: Vec<u64> = (0..10)
            .map(|i| t.processed(0, i, Some(i * 2 * S)))
            .collect();
        assert_eq!(t.commit_points(Some(100 * S), Some(seqs[3])), vec![(0, 3)]);
        assert_eq!(t.commit_points(Some(100 * S), None), vec![(0, 10)]);
    }
}
