//! Deterministic synthetic mail-log streams (`stormwatch generate`).
//!
//! This module owns the labelled event generator used for demos, tests and
//! benchmarks: it writes JSON lines in the event schema of the contract
//! (section 1), one event per line, each with an extra `"label"` field
//! naming the storm it belongs to or `"benign"` (the detector ignores
//! unknown fields, so the labels let tests score detections).
//!
//! Scenarios (see [`Scenario`]): the NHSmail storm of 14 November 2016 in
//! ordinary traffic, heavy benign traffic that must raise no storm, and a
//! mix of both with a second storm and malformed lines; and `adversarial`, a
//! load built to exhaust the engine's bounded maps with a real storm hidden
//! in it (see [`adversarial`]). Output is a pure
//! function of [`GenerateOptions`] (ChaCha8 seeded from the seed, no hash
//! map iteration, no wall clock), streamed in timestamp order with constant
//! memory, except for a deliberate mild disorder (a few lines held back by
//! at most 25 s) and lines repeated as MTAs log one line per hop.
//!
//! Layout: `event` (line format, timestamps), `names` (people, addresses,
//! ids), `background` (streaming benign traffic), `emit` (output stage:
//! repetition and disorder), and one file per scenario or storm.

pub mod adversarial;
mod all_staff;
mod background;
mod benign_busy;
mod emit;
mod event;
mod malformed;
mod mixed;
mod names;
mod nhs2016;
#[cfg(test)]
mod tests;

use background::Background;
use emit::Emitter;
use event::{sub_seed, write_timestamp, EventOut, Line, Refs, RefsOut, TimestampOut};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::io::{self, Write};

/// A synthetic traffic scenario, chosen with `--scenario NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// The NHSmail reply-all storm of 2016-11-14 (850,000 recipients, about
    /// 80 reply-alls over 75 minutes, joined by headers and subject only)
    /// in ordinary background mail. Label `nhs-2016`.
    #[value(name = "nhs-2016")]
    Nhs2016,
    /// Heavy normal traffic (big announcements, newsletters, busy small
    /// lists, rare mistaken reply-alls) that must raise no storm under the
    /// default rules: the false-positive check.
    #[value(name = "benign-busy")]
    BenignBusy,
    /// `benign-busy` traffic with the `nhs-2016` storm, a smaller
    /// `all-staff-2016` storm (joined by `thread_id`) and seven malformed
    /// lines.
    #[value(name = "mixed")]
    Mixed,
    /// Adversarial load: `--events` N distinct thread keys (default 10
    /// million), N/10 reply-alls from N/10 distinct senders on one thread,
    /// giant subjects and References lists, and a real storm among them.
    /// Labels `adversarial-hot` and `real-storm`.
    #[value(name = "adversarial")]
    Adversarial,
}

impl Scenario {
    /// Every traffic scenario, in CLI order. [`Scenario::Adversarial`] is a
    /// load test rather than traffic (no disorder, no repeated lines, not
    /// sized like the others), so it is not in this list.
    pub const ALL: [Scenario; 3] = [Scenario::Nhs2016, Scenario::BenignBusy, Scenario::Mixed];

    /// The CLI name (`nhs-2016`, `benign-busy`, `mixed`).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Nhs2016 => "nhs-2016",
            Scenario::BenignBusy => "benign-busy",
            Scenario::Mixed => "mixed",
            Scenario::Adversarial => "adversarial",
        }
    }

    /// The number of background events when [`GenerateOptions::events`] is
    /// `None`.
    pub fn default_events(self) -> u64 {
        match self {
            Scenario::Nhs2016 => nhs2016::DEFAULT_EVENTS,
            Scenario::BenignBusy | Scenario::Mixed => benign_busy::DEFAULT_EVENTS,
            Scenario::Adversarial => adversarial::DEFAULT_EVENTS,
        }
    }

    /// The labels of the storms this scenario contains, in order of start.
    pub fn storm_labels(self) -> &'static [&'static str] {
        match self {
            Scenario::Nhs2016 => &[nhs2016::LABEL],
            Scenario::BenignBusy => &[],
            Scenario::Mixed => &[nhs2016::LABEL, all_staff::LABEL],
            Scenario::Adversarial => &[adversarial::HOT_LABEL, adversarial::REAL_LABEL],
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to generate. The output is a pure function of these options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Which traffic to produce.
    pub scenario: Scenario,
    /// Seed of every random choice; the same seed gives the same bytes.
    pub seed: u64,
    /// Approximate number of background events (before lines repeated per
    /// hop); `None` = the scenario default ([`Scenario::default_events`]).
    /// Storm events come on top. Up to tens of millions is fine: memory
    /// does not grow with it.
    pub events: Option<u64>,
}

/// What was generated, for the CLI's summary and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenerateSummary {
    /// Well-formed event lines written (storm, background and repeated
    /// lines).
    pub events: u64,
    /// Deliberately malformed lines written (only in `mixed`).
    pub malformed_lines: u64,
    /// Labels of the storms generated, in order of start.
    pub storms: Vec<String>,
}

/// Probability that an event line is held back (mild disorder).
const DISORDER: f64 = 0.002;

/// The span of a background of `events` events: at least `min_minutes`,
/// longer when needed to keep the rate at or below 100 events per second.
fn span_ms(events: u64, min_minutes: i64) -> i64 {
    let by_rate = i64::try_from(events.saturating_mul(10)).unwrap_or(i64::MAX / 2);
    (min_minutes * event::MINUTE_MS).max(by_rate)
}

/// Writes the whole stream for `options` to `out` as JSON lines, ordered by
/// timestamp except for the deliberate mild disorder (a line is never more
/// than 25 s behind the largest timestamp before it). `out` is buffered
/// internally and flushed at the end. Memory stays small whatever the size:
/// background events are generated in order as they are written.
pub fn generate(options: &GenerateOptions, out: &mut dyn Write) -> io::Result<GenerateSummary> {
    let events = options
        .events
        .unwrap_or_else(|| options.scenario.default_events());
    let seed = options.seed;
    let (bg, mut lines) = match options.scenario {
        // Built line by line from its index; the seed does not change it.
        Scenario::Adversarial => return adversarial::generate(events, out),
        Scenario::Nhs2016 => (nhs2016::background(seed, events), nhs2016::storm(seed)),
        Scenario::BenignBusy => (benign_busy::background(seed, events), Vec::new()),
        Scenario::Mixed => {
            let bg = mixed::background(seed, events);
            let lines = mixed::lines(seed, &bg);
            (bg, lines)
        }
    };
    // Stable: lines at one instant keep the order they were built in.
    lines.sort_by_key(Line::ts);

    let mut background = Background::new(bg);
    let rng = ChaCha8Rng::seed_from_u64(sub_seed(seed, 3));
    let mut em = Emitter::new(out, rng, DISORDER);
    let mut ts_buf = String::new();
    let mut prebuilt = lines.iter().peekable();
    loop {
        let next_line = prebuilt.peek().map(|l| l.ts());
        let next_bg = background.peek();
        // A pre-built line goes first at equal timestamps.
        let prebuilt_first = match (next_line, next_bg) {
            (None, None) => break,
            (Some(l), Some(b)) => l <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if prebuilt_first {
            if let Some(line) = prebuilt.next() {
                write_line(&mut em, line, &mut ts_buf)?;
            }
        } else {
            background.emit_next(&mut em)?;
        }
    }
    let (events, malformed_lines) = em.finish()?;
    Ok(GenerateSummary {
        events,
        malformed_lines,
        storms: options
            .scenario
            .storm_labels()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    })
}

/// Writes one pre-built line.
fn write_line(em: &mut Emitter<'_>, line: &Line, ts_buf: &mut String) -> io::Result<()> {
    let e = match line {
        Line::Raw { ts, text } => return em.raw(*ts, text),
        Line::Event(e) => e,
    };
    let timestamp = match write_timestamp(ts_buf, e.ts, e.ts_form) {
        Some(t) => TimestampOut::Text(t),
        None => TimestampOut::Millis(e.ts),
    };
    let list: Vec<&str>;
    let references = match &e.references {
        None => None,
        Some(Refs::Joined(s)) => Some(RefsOut::Joined(s)),
        Some(Refs::List(items)) => {
            list = items.iter().map(String::as_str).collect();
            Some(RefsOut::List(&list))
        }
    };
    let out = EventOut {
        timestamp,
        message_id: &e.message_id,
        sender: &e.sender,
        recipient_count: Some(e.recipient_count),
        recipients: None,
        thread_id: e.thread_id.as_deref(),
        in_reply_to: e.in_reply_to.as_deref(),
        references,
        subject: e.subject.as_deref(),
        label: e.label,
    };
    em.event(e.ts, &out, e.copies, true)
}
