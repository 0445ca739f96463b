//! Timestamp-ordered merge of several partitions' records into one stream for the engine
//! (contract section 3; Kafka Streams' KIP-353 and KIP-695).
//!
//! One mail thread's events arrive on many partitions. If a partition lags (after a restart, a
//! rebalance, a slow broker) and its records were processed as they arrive, the others would push
//! stream time ahead and the lagging partition's events would all look late. So records wait in
//! per-partition buffers and the engine always gets the earliest head. A partition with nothing
//! buffered holds the merge back only while it still has unread records on the broker (it has not
//! reported end-of-partition), and for at most `max_wait` at a time. An end-of-partition goes
//! stale: when a partition that was at its end gets records again (after a quiet spell, a broker
//! outage), every other partition whose end was reported more than `max_wait` ago may have new
//! records too that are not fetched yet, so the merge waits up to `max_wait` for it as well
//! (records or a fresh end-of-partition end the wait). Without that, after an outage longer than
//! the allowed lateness, the partition fetched second would find all its records late. Partitions that run ahead
//! fill their buffers and are paused (the caller pauses them on the consumer), so memory stays
//! bounded by `partitions x pause_at` records, and by `partitions x pause_at_bytes` bytes of
//! records as read: a record may be up to the 1 MiB record size, so a count alone would let a
//! partition of large (often malformed, kept for the DLQ) records buffer gigabytes.
//!
//! Pure: the caller supplies the clock, and decides what to do with pause/resume advice.

use crate::timefmt::Millis;
use std::collections::{BTreeMap, VecDeque};

/// A record waiting in a partition buffer, with the key it is ordered by.
#[derive(Debug)]
pub struct Pending<T> {
    /// Ordering key: the event's timestamp; `Millis::MIN` for records that have none (malformed
    /// ones), so they leave as soon as they reach the head and never hold anything back.
    pub order: Millis,
    /// The partition offset.
    pub offset: i64,
    /// The record's size as read, what it weighs in the buffer's byte bound.
    pub bytes: usize,
    /// The payload (a decoded event or a malformed record).
    pub item: T,
}

#[derive(Debug)]
struct PartitionBuffer<T> {
    queue: VecDeque<Pending<T>>,
    /// The sum of the queued records' [`Pending::bytes`].
    bytes: usize,
    /// The partition reported end-of-partition and nothing arrived since.
    at_end: bool,
    /// Since when (caller's clock) the buffer has been empty while not at the end.
    empty_since: Option<Millis>,
    /// When the end was last reported (caller's clock).
    end_at: Millis,
    /// Since when an old end is in doubt because another partition woke up.
    doubt_since: Option<Millis>,
    paused: bool,
}

impl<T> PartitionBuffer<T> {
    fn new(now: Millis) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            at_end: false,
            empty_since: Some(now),
            end_at: now,
            doubt_since: None,
            paused: false,
        }
    }
}

/// Pause/resume advice for the consumer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlowControl {
    /// Partitions whose buffers are full: pause fetching them.
    pub pause: Vec<i32>,
    /// Paused partitions drained enough: resume them.
    pub resume: Vec<i32>,
}

/// The merge of the assigned partitions' buffers.
#[derive(Debug)]
pub struct Merger<T> {
    partitions: BTreeMap<i32, PartitionBuffer<T>>,
    max_wait: Millis,
    pause_at: BufferBound,
    resume_at: BufferBound,
}

/// A partition buffer's size, in records and in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BufferBound {
    /// Records.
    pub records: usize,
    /// Bytes of records as read.
    pub bytes: usize,
}

impl<T> Merger<T> {
    /// A merge waiting at most `max_wait` for an empty partition, pausing a partition when its
    /// buffer reaches either bound of `pause_at` and resuming it once it is down to a quarter
    /// of both.
    pub fn new(max_wait: Millis, pause_at: BufferBound) -> Self {
        Self {
            partitions: BTreeMap::new(),
            max_wait,
            pause_at: BufferBound {
                records: pause_at.records.max(1),
                bytes: pause_at.bytes.max(1),
            },
            resume_at: BufferBound {
                records: (pause_at.records / 4).max(1),
                bytes: (pause_at.bytes / 4).max(1),
            },
        }
    }

    /// Partitions were assigned.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = i32>, now: Millis) {
        for partition in partitions {
            self.partitions
                .entry(partition)
                .or_insert_with(|| PartitionBuffer::new(now));
        }
    }

    /// Partitions were revoked: their buffered records are dropped (uncommitted, they will be
    /// read again by whoever gets the partition). Returns how many were dropped.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = i32>) -> usize {
        partitions
            .into_iter()
            .filter_map(|p| self.partitions.remove(&p))
            .map(|buffer| buffer.queue.len())
            .sum()
    }

    /// Assigned partitions.
    pub fn assigned(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }

    /// A record arrived from `partition` (offset order within a partition is kept).
    pub fn push(&mut self, partition: i32, pending: Pending<T>, now: Millis) {
        let buffer = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionBuffer::new(now));
        let woke = buffer.at_end;
        buffer.bytes = buffer.bytes.saturating_add(pending.bytes);
        buffer.queue.push_back(pending);
        buffer.at_end = false;
        buffer.empty_since = None;
        buffer.doubt_since = None;
        if woke {
            // Checked once per wake-up, not per record: O(partitions) then.
            let max_wait = self.max_wait;
            for (&other, b) in &mut self.partitions {
                let stale =
                    b.at_end && b.queue.is_empty() && now.saturating_sub(b.end_at) >= max_wait;
                if other != partition && stale && b.doubt_since.is_none() {
                    b.doubt_since = Some(now);
                }
            }
        }
    }

    /// The partition reported, at `now`, that it is read to its end.
    pub fn reached_end(&mut self, partition: i32, now: Millis) {
        if let Some(buffer) = self.partitions.get_mut(&partition) {
            buffer.at_end = true;
            buffer.end_at = now;
            buffer.doubt_since = None;
        }
    }

    /// Whether every assigned partition is read to its end and nothing is buffered: the state
    /// in which storms may end by wall clock.
    pub fn caught_up(&self) -> bool {
        !self.partitions.is_empty()
            && self
                .partitions
                .values()
                .all(|b| b.at_end && b.queue.is_empty())
    }

    /// Records buffered in all partitions.
    pub fn buffered(&self) -> usize {
        self.partitions.values().map(|b| b.queue.len()).sum()
    }

    /// The next record in timestamp order, or `None` when nothing is buffered or an empty
    /// partition may still deliver an earlier record (it has unread records and its wait has
    /// not run out).
    pub fn next(&mut self, now: Millis) -> Option<(i32, Pending<T>)> {
        let mut earliest: Option<(Millis, i32)> = None;
        for (&partition, buffer) in &self.partitions {
            match buffer.queue.front() {
                Some(head) => {
                    if earliest.is_none_or(|(order, _)| head.order < order) {
                        earliest = Some((head.order, partition));
                    }
                }
                None => {
                    let within = |since: Millis| now.saturating_sub(since) < self.max_wait;
                    let waiting = if buffer.at_end {
                        buffer.doubt_since.is_some_and(within)
                    } else {
                        buffer.empty_since.is_some_and(within)
                    };
                    if waiting {
                        return None;
                    }
                }
            }
        }
        let (_, partition) = earliest?;
        let buffer = self.partitions.get_mut(&partition)?;
        let pending = buffer.queue.pop_front()?;
        buffer.bytes = buffer.bytes.saturating_sub(pending.bytes);
        if buffer.queue.is_empty() {
            buffer.empty_since = Some(now);
        }
        Some((partition, pending))
    }

    /// Which partitions to pause or resume now; the merge records that the advice is followed.
    pub fn flow_control(&mut self) -> FlowControl {
        let mut advice = FlowControl::default();
        for (&partition, buffer) in &mut self.partitions {
            let (records, bytes) = (buffer.queue.len(), buffer.bytes);
            let full = records >= self.pause_at.records || bytes >= self.pause_at.bytes;
            let drained = records <= self.resume_at.records && bytes <= self.resume_at.bytes;
            if !buffer.paused && full {
                buffer.paused = true;
                advice.pause.push(partition);
            } else if buffer.paused && drained {
                buffer.paused = false;
                advice.resume.push(partition);
            }
        }
        advice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(order: Millis, offset: i64) -> Pending<&'static str> {
        Pending {
            order,
            offset,
            bytes: 1,
            item: "x",
        }
    }

    /// A bound of `records` records and no byte bound to speak of.
    fn records(records: usize) -> BufferBound {
        BufferBound {
            records,
            bytes: usize::MAX,
        }
    }

    fn drain(merger: &mut Merger<&'static str>, now: Millis) -> Vec<(i32, Millis)> {
        std::iter::from_fn(|| merger.next(now))
            .map(|(p, r)| (p, r.order))
            .collect()
    }

    /// Pushes and pops interleaved at random, against a model that reads every queue's head
    /// afresh.
    #[test]
    fn releases_the_earliest_head_under_interleaved_pushes_and_pops() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let mut merger: Merger<&'static str> = Merger::new(0, records(usize::MAX));
        let mut model: BTreeMap<i32, VecDeque<(Millis, i64)>> = BTreeMap::new();
        for step in 0..20_000i64 {
            if rng.gen_ratio(1, 3) {
                let expected = model
                    .iter()
                    .filter_map(|(&p, q)| q.front().map(|&(order, _)| (order, p)))
                    .min()
                    .map(|(_, p)| p);
                let got = merger.next(0).map(|(p, r)| (p, r.order, r.offset));
                let expected = expected.and_then(|p| {
                    let (order, offset) = model.get_mut(&p)?.pop_front()?;
                    Some((p, order, offset))
                });
                assert_eq!(got, expected, "step {step}");
            } else {
                let partition = rng.gen_range(0..5);
                let order: Millis = rng.gen_range(0..50);
                merger.push(partition, rec(order, step), 0);
                model.entry(partition).or_default().push_back((order, step));
            }
        }
    }

    #[test]
    fn merges_heads_in_timestamp_order() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        for (p, t) in [(0, 10), (0, 30), (1, 20), (1, 40)] {
            m.push(p, rec(t, t), 0);
        }
        m.reached_end(0, 0);
        m.reached_end(1, 0);
        assert_eq!(drain(&mut m, 0), vec![(0, 10), (1, 20), (0, 30), (1, 40)]);
        assert!(m.caught_up());
    }

    #[test]
    fn an_empty_partition_with_unread_records_holds_the_merge_for_max_wait() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.push(0, rec(10, 0), 0);
        // Partition 1 is empty but not at its end: wait.
        assert!(m.next(100).is_none());
        assert!(m.next(499).is_none());
        // Its wait ran out: go on without it.
        assert_eq!(m.next(500).map(|(p, r)| (p, r.order)), Some((0, 10)));
    }

    #[test]
    fn an_empty_partition_at_its_end_does_not_hold_anything() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.reached_end(1, 0);
        m.push(0, rec(10, 0), 0);
        assert_eq!(m.next(1).map(|(p, _)| p), Some(0));
    }

    #[test]
    fn a_lagging_partition_is_merged_not_made_late() {
        // Partition 1 is minutes behind partition 0 (the state after a restart).
        let mut m = Merger::new(500, records(1000));
        m.assign([0, 1], 0);
        for i in 0..5 {
            m.push(0, rec(600_000 + i, i), 0);
            m.push(1, rec(i * 1000, i), 0);
        }
        m.reached_end(0, 0);
        m.reached_end(1, 0);
        let order: Vec<Millis> = drain(&mut m, 0).into_iter().map(|(_, t)| t).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted);
    }

    #[test]
    fn malformed_records_leave_at_once() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.push(0, rec(50, 0), 0);
        m.push(1, rec(Millis::MIN, 0), 0);
        m.push(1, rec(60, 1), 0);
        m.reached_end(0, 0);
        m.reached_end(1, 0);
        assert_eq!(drain(&mut m, 0), vec![(1, Millis::MIN), (0, 50), (1, 60)]);
    }

    #[test]
    fn full_buffers_are_paused_and_resumed_when_drained() {
        let mut m = Merger::new(500, records(8));
        m.assign([0], 0);
        for i in 0..8 {
            m.push(0, rec(i, i), 0);
        }
        assert_eq!(
            m.flow_control(),
            FlowControl {
                pause: vec![0],
                resume: vec![]
            }
        );
        assert_eq!(m.flow_control(), FlowControl::default());
        m.reached_end(0, 0);
        for _ in 0..6 {
            assert!(m.next(0).is_some());
        }
        assert_eq!(
            m.flow_control(),
            FlowControl {
                pause: vec![],
                resume: vec![0]
            }
        );
    }

    #[test]
    fn a_few_large_records_pause_a_partition_by_bytes() {
        let mut m = Merger::new(
            500,
            BufferBound {
                records: 1_000,
                bytes: 4 << 20,
            },
        );
        m.assign([0], 0);
        let large = |order: Millis| Pending {
            bytes: 1 << 20,
            ..rec(order, order)
        };
        for t in 0..3 {
            m.push(0, large(t), 0);
        }
        assert_eq!(m.flow_control(), FlowControl::default(), "3 MiB of 4");
        m.push(0, large(3), 0);
        assert_eq!(m.flow_control().pause, vec![0], "4 records, 4 MiB");
        // Resumed once down to a quarter of the bytes (1 MiB).
        for _ in 0..2 {
            assert!(m.next(0).is_some());
        }
        assert_eq!(m.flow_control(), FlowControl::default(), "2 MiB left");
        assert!(m.next(0).is_some());
        assert_eq!(m.flow_control().resume, vec![0]);
    }

    #[test]
    fn revoked_partitions_drop_their_buffers() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.push(1, rec(1, 0), 0);
        assert_eq!(m.revoke([1]), 1);
        assert_eq!(m.assigned().collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn an_old_end_of_partition_is_doubted_when_another_partition_wakes_up() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.reached_end(0, 0);
        m.reached_end(1, 0);
        // A broker outage: nothing for 30 s, then partition 1's backlog arrives first.
        m.push(1, rec(50, 0), 30_000);
        assert!(m.next(30_000).is_none(), "partition 0 may have records too");
        assert!(m.next(30_499).is_none());
        // Partition 0's backlog, earlier in event time, arrives within the wait: merged in order.
        m.push(0, rec(10, 0), 30_200);
        assert_eq!(drain(&mut m, 30_200), vec![(0, 10)]);
        m.reached_end(0, 30_250);
        assert_eq!(drain(&mut m, 30_250), vec![(1, 50)]);
    }

    #[test]
    fn the_doubt_ends_with_the_wait_or_a_fresh_end() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1, 2], 0);
        for p in 0..3 {
            m.reached_end(p, 0);
        }
        m.push(1, rec(50, 0), 10_000);
        // Partition 2 reports its end again: no longer in doubt; partition 0 still is.
        m.reached_end(2, 10_100);
        assert!(m.next(10_100).is_none());
        // Partition 0's wait runs out: go on without it.
        assert_eq!(drain(&mut m, 10_500), vec![(1, 50)]);
    }

    #[test]
    fn a_recent_end_of_partition_is_trusted() {
        let mut m = Merger::new(500, records(100));
        m.assign([0, 1], 0);
        m.reached_end(0, 9_800);
        m.reached_end(1, 9_000);
        // Partition 0 reported its end 200 ms ago: steady traffic, no waiting for it.
        m.push(1, rec(50, 0), 10_000);
        assert_eq!(drain(&mut m, 10_000), vec![(1, 50)]);
    }
}
