//! The human summary `stormwatch replay` prints on stderr: events by outcome, malformed reasons
//! with the line numbers of their first occurrences (so the operator can look at them), storms
//! started/escalated/ended and still active, and speed. It never names senders.

use crate::decode::{CorrelationStats, Dropped, Ignored, InputFormat, Malformed};
use crate::engine::{Engine, StormSnapshot};
use crate::timefmt::format_millis;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How many line numbers are kept per malformed reason.
const SAMPLE_LINES: usize = 5;

/// Occurrences of one malformed reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MalformedSample {
    /// How many records had this reason.
    pub count: u64,
    /// The line numbers of the first few.
    pub first_lines: Vec<u64>,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records read (lines, including malformed ones).
    pub records: u64,
    /// Reply-alls counted.
    pub counted: u64,
    /// Accepted events that are not counted reply-alls.
    pub ignored: u64,
    /// Late events.
    pub late: u64,
    /// Line numbers of the first late events.
    pub first_late_lines: Vec<u64>,
    /// Duplicates.
    pub duplicate: u64,
    malformed: BTreeMap<Malformed, MalformedSample>,
    /// Storms started.
    pub storms_started: u64,
    /// Storms escalated.
    pub storms_escalated: u64,
    /// Storms ended.
    pub storms_ended: u64,
    /// Storms still active at the end of input (no end is invented for them).
    pub active: Vec<StormSnapshot>,
    /// Threads evicted at the caps (`limits.max_threads`, `limits.max_thread_bytes`).
    pub thread_evictions: u64,
    /// Reply-alls dropped at the per-thread cap or untracked.
    pub reply_alls_dropped: u64,
    /// Threads whose reply-all windows were forgotten at `limits.max_window_bytes`.
    pub windows_forgotten: u64,
    /// Wall time of the replay.
    pub elapsed: Duration,
    /// With [`super::ReplayOptions::time_engine`], for JSON input: the time spent in the
    /// engine (and writing the alerts it caused), apart from reading and decoding.
    pub engine_time: Option<Duration>,
    /// The input format.
    pub format: InputFormat,
    /// Well-formed mail-log lines not used, by reason (other daemons, other programs, ...).
    lines_ignored: BTreeMap<Ignored, u64>,
    /// For the mail-log formats: what assembling events from lines did.
    pub correlation: Option<CorrelationStats>,
}

impl Summary {
    pub(super) fn note_malformed(&mut self, reason: Malformed, line: u64) {
        let sample = self.malformed.entry(reason).or_default();
        sample.count += 1;
        if sample.first_lines.len() < SAMPLE_LINES {
            sample.first_lines.push(line);
        }
    }

    pub(super) fn note_ignored(&mut self, reason: Ignored) {
        *self.lines_ignored.entry(reason).or_default() += 1;
    }

    /// Well-formed lines not used, for one reason.
    pub fn lines_ignored(&self, reason: Ignored) -> u64 {
        self.lines_ignored.get(&reason).copied().unwrap_or(0)
    }

    /// Well-formed lines not used, in all.
    pub fn lines_ignored_total(&self) -> u64 {
        self.lines_ignored.values().sum()
    }

    pub(super) fn note_late(&mut self, line: u64) {
        if self.first_late_lines.len() < SAMPLE_LINES {
            self.first_late_lines.push(line);
        }
    }

    pub(super) fn finish(&mut self, engine: &Engine, records: u64, elapsed: Duration) {
        let stats = engine.stats();
        self.records = records;
        self.counted = stats.counted;
        self.ignored = stats.ignored;
        self.late = stats.late;
        self.duplicate = stats.duplicate;
        self.storms_started = stats.storms_started;
        self.storms_escalated = stats.storms_escalated;
        self.storms_ended = stats.storms_ended;
        self.thread_evictions = stats.thread_evictions;
        self.reply_alls_dropped = stats.reply_alls_dropped + stats.untracked_reply_alls;
        self.windows_forgotten = stats.windows_forgotten;
        self.active = engine.active_storms();
        self.elapsed = elapsed;
    }

    /// All malformed records.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().map(|s| s.count).sum()
    }

    /// The occurrences of one reason, if any.
    pub fn malformed_samples(&self, reason: Malformed) -> Option<&MalformedSample> {
        self.malformed.get(&reason)
    }

    /// Every reason seen, in a stable order.
    pub fn malformed_reasons(&self) -> impl Iterator<Item = (&Malformed, &MalformedSample)> {
        self.malformed.iter()
    }

    /// Events per second over the whole replay.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        }
    }

    /// The summary as text for stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "stormwatch replay: {} records in {:.2} s ({:.0} events/s)",
            self.records,
            self.elapsed.as_secs_f64(),
            self.events_per_second()
        );
        let _ = writeln!(s, "  events by outcome:");
        for (name, count) in [
            ("counted", self.counted),
            ("ignored", self.ignored + self.lines_ignored_total()),
            ("malformed", self.malformed_total()),
            ("late", self.late),
            ("duplicate", self.duplicate),
        ] {
            let _ = writeln!(s, "    {name:<10} {count}");
        }
        if let Some(stats) = &self.correlation {
            let _ = writeln!(
                s,
                "  {} lines: {} events assembled{}, {} lines ignored{}, {} messages dropped{}",
                self.format,
                stats.emitted,
                if stats.evicted_emitted > 0 {
                    format!(
                        " ({} early, evicted from a full map)",
                        stats.evicted_emitted
                    )
                } else {
                    String::new()
                },
                self.lines_ignored_total(),
                breakdown(self.lines_ignored.iter().map(|(r, n)| (r.label(), *n))),
                stats.dropped_total(),
                breakdown(Dropped::ALL.iter().map(|d| (d.label(), stats.dropped(*d)))),
            );
        }
        if !self.malformed.is_empty() {
            let _ = writeln!(s, "  malformed records:");
            for (reason, sample) in &self.malformed {
                let _ = writeln!(
                    s,
                    "    {} ({}): {}, first at line{} {}",
                    reason.label(),
                    sample.count,
                    reason,
                    if sample.first_lines.len() > 1 {
                        "s"
                    } else {
                        ""
                    },
                    join(&sample.first_lines)
                );
            }
        }
        if !self.first_late_lines.is_empty() {
            let _ = writeln!(
                s,
                "  late records, first at lines {}",
                join(&self.first_late_lines)
            );
        }
        let _ = writeln!(
            s,
            "  storms: {} started, {} escalated, {} ended, {} still active",
            self.storms_started,
            self.storms_escalated,
            self.storms_ended,
            self.active.len()
        );
        for storm in &self.active {
            let _ = writeln!(
                s,
                "    still active: {} {} ({}) since {}, last reply-all {}, {} reply-alls / {} deliveries in the last hour",
                storm.thread_key,
                storm.severity.as_str(),
                storm.rule.as_str(),
                format_millis(storm.started_at),
                format_millis(storm.last_reply_all),
                storm.last_hour.reply_alls,
                storm.last_hour.deliveries
            );
        }
        if self.thread_evictions > 0 || self.reply_alls_dropped > 0 || self.windows_forgotten > 0 {
            let _ = writeln!(
                s,
                "  limits reached: {} threads evicted, {} reply-alls dropped, {} threads' reply-all windows forgotten",
                self.thread_evictions, self.reply_alls_dropped, self.windows_forgotten
            );
        }
        s
    }
}

/// ` (a 1, b 2)` for the non-zero counts, or nothing.
fn breakdown<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = counts
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn join(lines: &[u64]) -> String {
    lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
