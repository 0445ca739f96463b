//! The offline pipeline behind `stormwatch replay`: records in (JSON events, Postfix log lines
//! or Exchange message-tracking rows), alerts as JSON lines out, a summary at the end. It drives
//! the same [`Engine`] as the service, and for the mail-log formats the same parser and
//! correlator, so a replay of a topic gives the alerts the service gave for the same order.

mod lines;
mod summary;

pub use lines::{Appended, LineReader, Record};
pub use summary::{MalformedSample, Summary};

use crate::config::InputConfig;
use crate::decode::{
    decode_json, Correlator, DecodeOptions, InputFormat, LineOutcome, Malformed, RecordParser,
    DEFAULT_MAX_RECORD_BYTES,
};
use crate::engine::{Engine, Outcome};
use crate::event::Event;
use crate::timefmt::{now_millis, Millis};
use std::io::{self, BufRead, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How often (in records) the wall clock for the future-timestamp check is re-read.
const CLOCK_REFRESH_RECORDS: u64 = 4096;

/// Events per [`Engine::ingest_batch`] call in a JSON replay: enough for the batch's map
/// lookups to overlap, few enough that the batch's lines stay in the L1 cache.
const JSON_BATCH: usize = 32;

/// Replay settings besides the engine's.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// `detection.max_future_skew` in milliseconds.
    pub max_future_skew: Millis,
    /// Longest record accepted.
    pub max_record_bytes: usize,
    /// What the records are.
    pub format: InputFormat,
    /// How mail-log lines are read and assembled (the `input` section).
    pub input: InputConfig,
    /// Time the engine's share of a JSON replay apart from reading and decoding
    /// ([`Summary::engine_time`]), for benchmarks: two clock reads per batch of events.
    pub time_engine: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            max_future_skew: 5 * 60_000,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            format: InputFormat::Json,
            input: InputConfig::default(),
            time_engine: false,
        }
    }
}

/// The shortest JSON line an event can come from: `{"timestamp":0,"message_id":"","sender":"",
/// "recipients":[]}` is 60 bytes with its newline. Mail-log lines are longer in practice.
const SHORTEST_EVENT_LINE: u64 = 60;

/// At most how many events an input of `bytes` bytes holds, for sizing the engine's maps
/// ([`crate::engine::Engine::reserve_entries`]). A bound that turns out low (an unusual log
/// format) costs only index rebuilds as the maps grow past it.
pub fn events_at_most(bytes: u64) -> usize {
    usize::try_from(bytes / SHORTEST_EVENT_LINE).unwrap_or(usize::MAX)
}

/// Reads every record of `input`, feeds the engine, and writes each alert as one JSON line to
/// `output` as soon as it is decided (flushed, so a pipeline sees it at once). `progress` is
/// called now and then with the bytes read so far. Output errors stop the replay (a closed pipe
/// means nobody is listening); input errors are returned.
pub fn replay<R: BufRead, W: Write>(
    input: R,
    engine: &mut Engine,
    output: &mut W,
    options: &ReplayOptions,
    progress: impl FnMut(u64),
) -> io::Result<Summary> {
    match options.format {
        InputFormat::Json => replay_json(input, engine, output, options, progress),
        InputFormat::Postfix | InputFormat::ExchangeTracking => {
            replay_mail_log(input, engine, output, options, progress)
        }
    }
}

/// JSON events, decoded and fed to the engine in batches of up to [`JSON_BATCH`] (see
/// [`Engine::ingest_batch`] for why), each event borrowing from the batch's lines. A batch ends
/// early where the input has nothing more buffered, so a live pipe's events are not held back;
/// alerts are written right after the event that caused them, and a closed output stops the
/// replay there, as the one-event-at-a-time loop did.
fn replay_json<R: BufRead, W: Write>(
    input: R,
    engine: &mut Engine,
    output: &mut W,
    options: &ReplayOptions,
    mut progress: impl FnMut(u64),
) -> io::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut records = Records::new(input, options);
    let mut lines = LineBatch::default();
    let mut alerts = Vec::new();
    // The line of the event whose alert found the output closed, where the replay stops.
    let mut stopped_at = None;
    let mut engine_time = options.time_engine.then_some(Duration::ZERO);
    while records.next_batch(&mut lines, JSON_BATCH, &mut progress)? {
        let mut events = Vec::with_capacity(lines.records.len());
        let mut line_numbers = Vec::with_capacity(lines.records.len());
        let mut malformed = Vec::new();
        for (line_number, decode_options, record) in lines.records() {
            match record.and_then(|bytes| decode_json(bytes, &decode_options)) {
                Ok(event) => {
                    events.push(event);
                    line_numbers.push(line_number);
                }
                Err(reason) => malformed.push((line_number, reason)),
            }
        }
        // Malformed lines are noted in line order among the events, so that a replay stopped
        // by a closed output counts exactly the lines before the stop. (An index rather than a
        // peekable iterator: this runs once per event, and the iterator's bookkeeping showed in
        // the profile.)
        let mut next_malformed = 0;
        let mut note_malformed_before = |line: u64, summary: &mut Summary| {
            while let Some(&(line_number, reason)) = malformed.get(next_malformed) {
                if line_number >= line {
                    break;
                }
                summary.note_malformed(reason, line_number);
                next_malformed += 1;
            }
        };
        let batch_started = engine_time.map(|_| Instant::now());
        let flow = engine.ingest_batch(&events, &mut alerts, |index, outcome, alerts| {
            // `index` is an index into `events`, which `line_numbers` matches one for one.
            let line_number = line_numbers.get(index).copied().unwrap_or_default();
            note_malformed_before(line_number, &mut summary);
            if outcome == Outcome::Late {
                summary.note_late(line_number);
            }
            if alerts.is_empty() {
                return ControlFlow::Continue(());
            }
            let written = write_alerts(output, alerts);
            alerts.clear();
            match written {
                Ok(true) => ControlFlow::Continue(()),
                Ok(false) => ControlFlow::Break(Ok(line_number)),
                Err(error) => ControlFlow::Break(Err(error)),
            }
        });
        if let (Some(total), Some(started)) = (engine_time.as_mut(), batch_started) {
            *total += started.elapsed();
        }
        if let ControlFlow::Break(stopped) = flow {
            stopped_at = Some(stopped?);
            break;
        }
        note_malformed_before(u64::MAX, &mut summary);
    }
    summary.engine_time = engine_time;
    progress(records.reader.bytes_read());
    let lines_read = stopped_at.unwrap_or(records.line_number);
    summary.finish(engine, lines_read, started.elapsed());
    Ok(summary)
}

/// Mail-log lines: parsed, then assembled into events by the correlator (the line number is
/// the token), the events fed to the engine as they complete; at the end of input the
/// messages still waiting are emitted if complete and dropped otherwise.
fn replay_mail_log<R: BufRead, W: Write>(
    input: R,
    engine: &mut Engine,
    output: &mut W,
    options: &ReplayOptions,
    mut progress: impl FnMut(u64),
) -> io::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    summary.format = options.format;
    let mut records = Records::new(input, options);
    let mut parser = RecordParser::new(options.format, &options.input);
    let mut correlator: Correlator<u64> = Correlator::new(options.format, &options.input);
    let mut events: Vec<Event<'static>> = Vec::new();
    let mut sink = AlertSink::new(output);
    while let Some((line_number, decode_options, record)) = records.next(&mut progress)? {
        let parsed = record.and_then(|bytes| parser.parse(bytes, &decode_options));
        match parsed {
            Ok(parsed) => {
                if let Some(at) = parsed.timestamp() {
                    correlator.expire(at, &mut events);
                }
                if let LineOutcome::Ignored(reason) =
                    correlator.accept(&parsed, line_number, &mut events)
                {
                    summary.note_ignored(reason);
                }
            }
            Err(reason) => summary.note_malformed(reason, line_number),
        }
        if !sink.feed(engine, &mut events, &mut summary, line_number)? {
            break;
        }
    }
    let line_number = records.line_number;
    correlator.flush(&mut events);
    sink.feed(engine, &mut events, &mut summary, line_number)?;
    progress(records.reader.bytes_read());
    summary.correlation = Some(correlator.stats());
    summary.finish(engine, line_number, started.elapsed());
    Ok(summary)
}

/// The records of the input with their line numbers, the options to decode them with (the wall
/// clock refreshed now and then) and progress reports: the loop both replays share.
struct Records<R> {
    reader: LineReader<R>,
    decode_options: DecodeOptions,
    line_number: u64,
    /// The input ended: not read again (a terminal would need a second end-of-file).
    at_end: bool,
    /// A read error met after the first record of a batch, returned once that batch is done.
    deferred_error: Option<io::Error>,
}

impl<R: BufRead> Records<R> {
    fn new(input: R, options: &ReplayOptions) -> Self {
        Self {
            reader: LineReader::new(input, options.max_record_bytes),
            decode_options: DecodeOptions {
                now: now_millis(),
                max_future_skew: options.max_future_skew,
                max_record_bytes: options.max_record_bytes,
            },
            line_number: 0,
            at_end: false,
            deferred_error: None,
        }
    }

    /// The next record (its bytes, or `TooLarge` as malformed), its line number and the decode
    /// options; `None` at the end of input.
    #[allow(clippy::type_complexity)]
    fn next(
        &mut self,
        progress: &mut impl FnMut(u64),
    ) -> io::Result<Option<(u64, DecodeOptions, Result<&[u8], Malformed>)>> {
        self.refresh(progress);
        let Some(record) = self.reader.next_record()? else {
            return Ok(None);
        };
        self.line_number += 1;
        let bytes = match record {
            Record::TooLarge => Err(Malformed::TooLarge),
            Record::Line(bytes) => Ok(bytes),
        };
        Ok(Some((self.line_number, self.decode_options, bytes)))
    }

    /// Re-reads the wall clock and reports progress every [`CLOCK_REFRESH_RECORDS`] records.
    fn refresh(&mut self, progress: &mut impl FnMut(u64)) {
        if self.line_number % CLOCK_REFRESH_RECORDS == CLOCK_REFRESH_RECORDS - 1 {
            self.decode_options.now = now_millis();
            progress(self.reader.bytes_read());
        }
    }

    /// Replaces `batch` with up to `max` next records, read straight into its buffer; `false`
    /// when there were none left. The batch ends early where the input has nothing more
    /// buffered. A read error after the batch's first record is returned by the next call, so
    /// the records read before it are still replayed.
    fn next_batch(
        &mut self,
        batch: &mut LineBatch,
        max: usize,
        progress: &mut impl FnMut(u64),
    ) -> io::Result<bool> {
        batch.bytes.clear();
        batch.records.clear();
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        while batch.records.len() < max && !self.at_end {
            if !batch.records.is_empty() && self.reader.drained() {
                break;
            }
            self.refresh(progress);
            let appended = match self.reader.append_record(&mut batch.bytes) {
                Ok(Some(appended)) => appended,
                Ok(None) => {
                    self.at_end = true;
                    break;
                }
                Err(error) if batch.records.is_empty() => return Err(error),
                Err(error) => {
                    self.deferred_error = Some(error);
                    break;
                }
            };
            self.line_number += 1;
            let span = match appended {
                Appended::Line(span) => Ok(span),
                Appended::TooLarge => Err(Malformed::TooLarge),
            };
            batch
                .records
                .push((self.line_number, self.decode_options, span));
        }
        Ok(!batch.records.is_empty())
    }
}

/// Consecutive records kept together in one buffer, so that a batch of events can borrow
/// from all of them at once. It holds at most [`JSON_BATCH`] records of at most
/// `max_record_bytes` each (so 32 MiB at the 1 MiB default, and about 9 KiB for typical
/// events), and keeps its largest size for reuse.
#[derive(Default)]
struct LineBatch {
    bytes: Vec<u8>,
    /// Per record: its line number, its decode options and its span in `bytes` (or why it has
    /// none).
    records: Vec<(
        u64,
        DecodeOptions,
        Result<std::ops::Range<usize>, Malformed>,
    )>,
}

impl LineBatch {
    /// The records with their bytes.
    fn records(&self) -> impl Iterator<Item = (u64, DecodeOptions, Result<&[u8], Malformed>)> {
        self.records.iter().map(|(line_number, options, span)| {
            // Spans are taken from `bytes` as it is filled, so the lookup cannot miss; were
            // it to, the record would count as empty rather than panic.
            let bytes = span
                .clone()
                .and_then(|span| self.bytes.get(span).ok_or(Malformed::Empty));
            (*line_number, *options, bytes)
        })
    }
}

/// Feeds assembled events to the engine and writes the alerts they cause.
struct AlertSink<'w, W> {
    output: &'w mut W,
    alerts: Vec<crate::alert::Alert>,
    open: bool,
}

impl<'w, W: Write> AlertSink<'w, W> {
    fn new(output: &'w mut W) -> Self {
        Self {
            output,
            alerts: Vec::new(),
            open: true,
        }
    }

    /// Drains `events` into the engine; `false` once the output has gone away.
    fn feed(
        &mut self,
        engine: &mut Engine,
        events: &mut Vec<Event<'static>>,
        summary: &mut Summary,
        line_number: u64,
    ) -> io::Result<bool> {
        for event in events.drain(..) {
            if engine.ingest(&event, &mut self.alerts) == Outcome::Late {
                summary.note_late(line_number);
            }
        }
        if !self.alerts.is_empty() {
            if self.open {
                self.open = write_alerts(self.output, &self.alerts)?;
            }
            self.alerts.clear();
        }
        Ok(self.open)
    }
}

/// Writes alerts as JSON lines and flushes. Returns `false` when the reader has gone away.
fn write_alerts<W: Write>(output: &mut W, alerts: &[crate::alert::Alert]) -> io::Result<bool> {
    let result = alerts
        .iter()
        .try_for_each(|alert| {
            serde_json::to_writer(&mut *output, alert).map_err(io::Error::from)?;
            output.write_all(b"\n")
        })
        .and_then(|()| output.flush());
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The bound that sizes the maps for an input holds: the shortest line that decodes to an
    /// event is the constant's length (`recipients: []` is the shortest way to give a count,
    /// and no required field can go), so no input holds more events than its bytes allow.
    #[test]
    fn an_input_holds_at_most_one_event_per_shortest_line() {
        let decoded = |line: &str| {
            let summary = replay_into(
                format!("{line}\n").as_bytes(),
                &mut Engine::from_config(&Config::default()),
                &mut Vec::new(),
            )
            .expect("in memory");
            summary.malformed_total() == 0 && summary.ignored == 1
        };
        let shortest = r#"{"timestamp":0,"message_id":"","sender":"","recipients":[]}"#;
        assert_eq!(shortest.len() as u64 + 1, SHORTEST_EVENT_LINE);
        assert!(decoded(shortest));
        assert!(decoded(
            r#"{"timestamp":0,"message_id":"","sender":"","recipient_count":0}"#
        ));
        for required in [
            r#""timestamp":0,"#,
            r#""message_id":"","#,
            r#""sender":"","#,
        ] {
            let without = shortest.replace(required, "");
            assert!(!decoded(&without), "{without} decodes without {required}");
        }
        assert!(!decoded(r#"{"timestamp":0,"message_id":"","sender":""}"#));
        assert_eq!(events_at_most(0), 0);
        assert_eq!(
            events_at_most(SHORTEST_EVENT_LINE * 1000 + SHORTEST_EVENT_LINE - 1),
            1000
        );
    }

    /// Replays `input` into `output` with the default configuration.
    fn replay_into(
        input: impl BufRead,
        engine: &mut Engine,
        output: &mut impl Write,
    ) -> io::Result<Summary> {
        replay(input, engine, output, &ReplayOptions::default(), |_| {})
    }

    /// The engine's share is timed only when asked for, and is part of the replay's time.
    #[test]
    fn the_engine_is_timed_apart_only_when_asked() {
        let input = r#"{"timestamp":0,"message_id":"<a@x>","sender":"s@x","recipient_count":1}
{"timestamp":1,"message_id":"<b@x>","sender":"s@x","recipient_count":1,"in_reply_to":"<a@x>"}
"#;
        let replay_with = |time_engine| {
            let options = ReplayOptions {
                time_engine,
                ..ReplayOptions::default()
            };
            let mut engine = Engine::from_config(&Config::default());
            replay(
                input.as_bytes(),
                &mut engine,
                &mut Vec::new(),
                &options,
                |_| {},
            )
            .expect("in memory")
        };
        assert_eq!(replay_with(false).engine_time, None);
        let timed = replay_with(true);
        assert_eq!(timed.ignored, 2);
        let engine_time = timed.engine_time.expect("timed");
        assert!(engine_time > Duration::ZERO && engine_time <= timed.elapsed);
    }

    fn run(input: &str) -> (String, Summary) {
        let mut engine = Engine::from_config(&Config::default());
        let mut out = Vec::new();
        let summary = replay_into(input.as_bytes(), &mut engine, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), summary)
    }

    fn line(minute: u32, id: &str, sender: &str) -> String {
        format!(
            r#"{{"timestamp": "2024-03-04T09:{minute:02}:00Z", "message_id": "{id}", "sender": "{sender}", "recipient_count": 3000, "thread_id": "t", "subject": "Re: t"}}"#
        )
    }

    #[test]
    fn alerts_come_out_and_bad_lines_are_counted_with_line_numbers() {
        let input = [
            line(0, "m1", "a@x"),
            "{oops".into(),
            line(1, "m2", "b@x"),
            String::new(),
            line(1, "m2", "b@x"),
            "[]".into(),
            line(2, "m3", "c@x"),
        ]
        .join("\n");
        let (out, summary) = run(&input);
        let alerts: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0]["kind"], "storm_started");
        assert_eq!(summary.records, 7);
        assert_eq!(summary.malformed_total(), 3);
        assert_eq!(summary.counted, 3);
        assert_eq!(summary.duplicate, 1);
        let not_json = summary.malformed_samples(Malformed::NotJson);
        assert_eq!(
            not_json.map(|s| (s.count, s.first_lines.clone())),
            Some((1, vec![2]))
        );
        assert_eq!(
            summary.malformed_samples(Malformed::Empty).map(|s| s.count),
            Some(1)
        );
        assert_eq!(summary.active.len(), 1);
    }

    /// An ordinary message (no reply-all) at `minute`, on its own thread.
    fn filler(minute: u32, n: usize) -> String {
        format!(
            r#"{{"timestamp": "2024-03-04T09:{minute:02}:00Z", "message_id": "f{n}", "sender": "f@x", "recipient_count": 2, "subject": "note {n}"}}"#
        )
    }

    /// Lines 1 to `count`: fillers, with three reply-alls (a storm) at 33 to 35, malformed
    /// lines at 40 and 65 and a late event at 50.
    fn long_input(count: usize) -> String {
        (1..=count)
            .map(|n| match n {
                33 => line(10, "m1", "a@x"),
                34 => line(11, "m2", "b@x"),
                35 => line(12, "m3", "c@x"),
                40 | 65 => "{oops".into(),
                50 => filler(0, n).replace("09:00", "07:00"),
                _ => filler(if n < 33 { 5 } else { 12 }, n),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn line_numbers_carry_across_batches() {
        let (out, summary) = run(&long_input(70));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert_eq!(summary.records, 70);
        assert_eq!(
            summary
                .malformed_samples(Malformed::NotJson)
                .map(|s| s.first_lines.clone()),
            Some(vec![40, 65])
        );
        assert_eq!(summary.first_late_lines, vec![50]);
        assert_eq!(summary.counted, 3);
    }

    /// Refuses every write, as a pipe whose reader has gone does.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_stops_the_replay_right_after_the_alert() {
        let mut engine = Engine::from_config(&Config::default());
        let input = long_input(70);
        let summary = replay_into(input.as_bytes(), &mut engine, &mut ClosedPipe).unwrap();
        // The storm starts at line 35; nothing after it is read into the counts or the engine.
        assert_eq!(summary.records, 35);
        assert_eq!(summary.malformed_total(), 0);
        assert_eq!(engine.stats().counted, 3);
        assert_eq!(engine.stats().ignored, 32);
    }

    /// Gives `data` in one read, then fails.
    struct FailsAfter<'a> {
        data: &'a [u8],
    }

    impl io::Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::other("disk gone"));
            }
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_comes_after_the_lines_read_before_it_are_replayed() {
        let input = format!("{}\n", long_input(36));
        let reader = io::BufReader::new(FailsAfter {
            data: input.as_bytes(),
        });
        let mut engine = Engine::from_config(&Config::default());
        let mut out = Vec::new();
        let result = replay_into(reader, &mut engine, &mut out);
        assert_eq!(result.map(|_| ()).unwrap_err().to_string(), "disk gone");
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
        assert_eq!(engine.stats().counted, 3);
    }

    /// A pipe fed by hand: `data` in one read; the next read only once `released` is set (by
    /// the output, when the alert came out), else an error; then the end of input, counted.
    struct LivePipe<'a> {
        data: &'a [u8],
        released: std::rc::Rc<std::cell::Cell<bool>>,
        ends: std::rc::Rc<std::cell::Cell<u32>>,
    }

    impl io::Read for LivePipe<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.data.is_empty() {
                let n = self.data.len().min(buf.len());
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                return Ok(n);
            }
            if !self.released.get() {
                return Err(io::Error::other("read again before the alert was written"));
            }
            self.ends.set(self.ends.get() + 1);
            Ok(0)
        }
    }

    /// Marks `released` on the first write.
    struct Watcher(std::rc::Rc<std::cell::Cell<bool>>);

    impl Write for Watcher {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.set(true);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_live_pipe_gets_its_alert_before_more_input_and_the_end_is_read_once() {
        // Three reply-alls, all the pipe holds for now: a batch must not wait for more.
        let input = format!(
            "{}\n{}\n{}\n",
            line(0, "m1", "a@x"),
            line(1, "m2", "b@x"),
            line(2, "m3", "c@x")
        );
        let released = std::rc::Rc::new(std::cell::Cell::new(false));
        let ends = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = io::BufReader::new(LivePipe {
            data: input.as_bytes(),
            released: released.clone(),
            ends: ends.clone(),
        });
        let mut engine = Engine::from_config(&Config::default());
        let summary = replay_into(reader, &mut engine, &mut Watcher(released)).unwrap();
        assert_eq!(summary.records, 3);
        assert_eq!(ends.get(), 1, "the end of input is read once");
    }

    #[test]
    fn the_summary_names_counts_not_senders() {
        let input = [
            line(0, "m1", "alice@secret.example"),
            line(1, "m2", "b@x"),
            line(2, "m3", "c@x"),
        ]
        .join("\n");
        let (_, summary) = run(&input);
        let text = summary.render();
        assert!(text.contains("counted"), "{text}");
        assert!(text.contains("still active"), "{text}");
        assert!(!text.contains("alice@secret.example"), "{text}");
    }
}
