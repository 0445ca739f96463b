//! The `adversarial` scenario: input built to exhaust every bounded map of the engine, with a
//! real storm hidden in it. It checks that memory stays within the `limits.*` caps, that the
//! caps evict and count rather than fail, and that detection still works under attack.
//!
//! For `events` = N (default 10 million), over three hours of event time, in timestamp order:
//!
//! - **flood**: N reply-alls, each on its own thread (`thread_id`), with its own message id and
//!   its own reply subject: N distinct thread keys, message ids and subjects;
//! - **hot thread**: N / 10 reply-alls on one thread (`adversarial-hot`), each from a different
//!   sender: N / 10 distinct senders and reply-alls on one thread, far past
//!   `limits.max_reply_alls_per_thread`;
//! - **giants**: N / 100,000 (at least one) reply-alls with a 64 KiB subject and a References
//!   list of 8,192 ids (about 300 KB a line, under the 1 MiB record limit);
//! - **the real storm** (`real-storm`): an announcement to 850,000 people and 20 reply-alls to
//!   it by In-Reply-To, one every 30 s from the middle of the stream.
//!
//! Labels: `adversarial-hot`, `real-storm`, else `benign`. Memory is constant: every line is
//! built from its index.

use super::event::{write_timestamp, TsForm, START_MS};
use super::GenerateSummary;
use std::io::{self, Write};

/// Default size: 10 million flood events (about 11 million lines in all).
pub(crate) const DEFAULT_EVENTS: u64 = 10_000_000;
/// The hot thread's label and thread id.
pub(crate) const HOT_LABEL: &str = "adversarial-hot";
/// The real storm's label.
pub(crate) const REAL_LABEL: &str = "real-storm";
/// The real storm's thread key (its announcement's message id).
pub const REAL_STORM_THREAD: &str = "real-root@victim.example";
/// The hot thread's key.
pub const HOT_THREAD: &str = HOT_LABEL;

/// Event time covered by the stream.
const SPAN_MS: i64 = 3 * 3_600_000;
/// One hot-thread reply-all every this many flood events.
const HOT_EVERY: u64 = 10;
/// One giant line every this many flood events.
const GIANT_EVERY: u64 = 100_000;
/// A giant line's subject length in bytes.
const GIANT_SUBJECT: usize = 64 * 1024;
/// A giant line's References entries.
const GIANT_REFERENCES: usize = 8_192;
/// Reply-alls of the real storm, and the time between them.
const REAL_REPLIES: i64 = 20;
const REAL_GAP_MS: i64 = 30_000;
/// Recipients of the real storm's list.
const REAL_RECIPIENTS: u64 = 850_000;
/// Recipients of every adversarial reply-all: just enough to count (`min_recipients`).
const ADVERSARIAL_RECIPIENTS: u64 = 2_500;

/// Writes the scenario; returns what was written.
pub(crate) fn generate(events: u64, out: &mut dyn Write) -> io::Result<GenerateSummary> {
    let events = events.max(1);
    let mut w = Writer {
        out: io::BufWriter::with_capacity(1 << 16, out),
        ts: String::new(),
        written: 0,
    };
    let at =
        |i: u64| START_MS + i128_to_ms(i128::from(i) * i128::from(SPAN_MS) / i128::from(events));
    let real_start = at(events / 2);
    // The real storm's lines, in time order: the announcement, then the reply-alls.
    let mut real = (0..=REAL_REPLIES)
        .map(|k| (real_start + k * REAL_GAP_MS, k))
        .peekable();
    for i in 0..events {
        let now = at(i);
        while let Some((ts, k)) = real.next_if(|(ts, _)| *ts <= now) {
            w.real(ts, k)?;
        }
        w.flood(now, i)?;
        if i % HOT_EVERY == 0 {
            w.hot(now, i / HOT_EVERY)?;
        }
        if i % GIANT_EVERY == GIANT_EVERY / 2 || (events < GIANT_EVERY && i == events / 2) {
            w.giant(now, i / GIANT_EVERY)?;
        }
    }
    for (ts, k) in real {
        w.real(ts, k)?;
    }
    w.out.flush()?;
    Ok(GenerateSummary {
        events: w.written,
        malformed_lines: 0,
        storms: vec![HOT_LABEL.to_owned(), REAL_LABEL.to_owned()],
    })
}

fn i128_to_ms(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct Writer<'w> {
    out: io::BufWriter<&'w mut dyn Write>,
    ts: String,
    written: u64,
}

impl Writer<'_> {
    fn timestamp(&mut self, ms: i64) -> &str {
        write_timestamp(&mut self.ts, ms, TsForm::Utc).unwrap_or_default()
    }

    fn line(&mut self, ms: i64, fields: std::fmt::Arguments<'_>) -> io::Result<()> {
        let ts = write_timestamp(&mut self.ts, ms, TsForm::Utc).unwrap_or_default();
        writeln!(self.out, r#"{{"timestamp":"{ts}",{fields}}}"#)?;
        self.written += 1;
        Ok(())
    }

    /// A reply-all alone on its own thread.
    fn flood(&mut self, ms: i64, i: u64) -> io::Result<()> {
        self.line(
            ms,
            format_args!(
                r#""message_id":"<flood-{i}@adversary.example>","sender":"f{}@adversary.example","recipient_count":{ADVERSARIAL_RECIPIENTS},"thread_id":"flood-{i}","subject":"Re: flood {i}","label":"benign""#,
                i % 1000
            ),
        )
    }

    /// A reply-all on the hot thread from a new sender.
    fn hot(&mut self, ms: i64, j: u64) -> io::Result<()> {
        self.line(
            ms,
            format_args!(
                r#""message_id":"<hot-{j}@adversary.example>","sender":"s{j}@adversary.example","recipient_count":{ADVERSARIAL_RECIPIENTS},"thread_id":"{HOT_THREAD}","subject":"Re: hot","label":"{HOT_LABEL}""#
            ),
        )
    }

    /// A reply-all with a giant subject and References list.
    fn giant(&mut self, ms: i64, g: u64) -> io::Result<()> {
        let ts = self.timestamp(ms).to_owned();
        write!(
            self.out,
            r#"{{"timestamp":"{ts}","message_id":"<giant-{g}@adversary.example>","sender":"giant@adversary.example","recipient_count":{ADVERSARIAL_RECIPIENTS},"subject":"Re: {g} "#
        )?;
        let filler = [b'A'; 1024];
        for _ in 0..GIANT_SUBJECT / filler.len() {
            self.out.write_all(&filler)?;
        }
        self.out.write_all(br#"","references":["#)?;
        for k in 0..GIANT_REFERENCES {
            let comma = if k == 0 { "" } else { "," };
            write!(self.out, r#"{comma}"<ref{k}-{g}@adversary.example>""#)?;
        }
        self.out.write_all(b"],\"label\":\"benign\"}\n")?;
        self.written += 1;
        Ok(())
    }

    /// The real storm: line 0 is the announcement, lines 1.. the reply-alls.
    fn real(&mut self, ms: i64, k: i64) -> io::Result<()> {
        if k == 0 {
            return self.line(
                ms,
                format_args!(
                    r#""message_id":"<{REAL_STORM_THREAD}>","sender":"it@victim.example","recipient_count":{REAL_RECIPIENTS},"subject":"Test","label":"{REAL_LABEL}""#
                ),
            );
        }
        self.line(
            ms,
            format_args!(
                r#""message_id":"<real-{k}@victim.example>","sender":"person{k}@victim.example","recipient_count":{REAL_RECIPIENTS},"in_reply_to":"<{REAL_STORM_THREAD}>","subject":"RE: Test","label":"{REAL_LABEL}""#
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(events: u64) -> (Vec<serde_json::Value>, GenerateSummary) {
        let mut out = Vec::new();
        let summary = generate(events, &mut out).expect("generate");
        let text = String::from_utf8(out).expect("UTF-8");
        let values = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        (values, summary)
    }

    #[test]
    fn shapes_and_counts_follow_the_size() {
        let (lines, summary) = lines(2_000);
        assert_eq!(lines.len() as u64, summary.events);
        let label = |l: &str| lines.iter().filter(|v| v["label"] == l).count();
        assert_eq!(label(HOT_LABEL), 200);
        assert_eq!(label(REAL_LABEL), 21);
        // 2,000 flood lines and one giant.
        assert_eq!(label("benign"), 2_001);
        let giant = lines
            .iter()
            .find(|v| v["message_id"] == "<giant-0@adversary.example>")
            .expect("a giant line");
        assert!(giant["subject"].as_str().map_or(0, str::len) > GIANT_SUBJECT);
        assert_eq!(
            giant["references"].as_array().map(Vec::len),
            Some(GIANT_REFERENCES)
        );
        let threads: std::collections::HashSet<&str> = lines
            .iter()
            .filter_map(|v| v["thread_id"].as_str())
            .collect();
        assert_eq!(
            threads.len(),
            2_001,
            "every flood line its own thread, plus hot"
        );
    }

    #[test]
    fn lines_are_in_timestamp_order_and_under_the_record_limit() {
        let mut out = Vec::new();
        generate(300_000, &mut out).expect("generate");
        let mut last = String::new();
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() < crate::decode::DEFAULT_MAX_RECORD_BYTES);
            let ts = line.get(14..38).map(<[u8]>::to_vec).unwrap_or_default();
            let ts = String::from_utf8(ts).expect("ASCII timestamp");
            assert!(ts >= last, "{ts} after {last}");
            last = ts;
        }
    }
}
