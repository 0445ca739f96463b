//! The output stage: serializes events to lines, repeats the lines that are
//! logged once per hop, and holds back a few lines to produce the mild
//! disorder real log shippers show.

use super::event::EventOut;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::io::{self, Write};

/// The largest delay of a held-back line, in milliseconds. A held line is
/// released before the first line at or after `ts + delay`, so it is never
/// more than this much behind the largest timestamp written before it (the
/// detector's allowed lateness is 60 s; the brief caps disorder at 30 s).
pub(crate) const MAX_DISORDER_MS: i64 = 25_000;

struct Held {
    release: i64,
    line: Vec<u8>,
    copies: u8,
}

/// Above this many buffered bytes, the buffer goes to the caller's writer.
const FLUSH_AT: usize = 1 << 16;

/// Writes lines to the caller's writer through an internal buffer. Each
/// line is serialized straight into the buffer; a repeated line is copied
/// within it and a held-back line is moved out of it.
pub(crate) struct Emitter<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
    rng: ChaCha8Rng,
    /// Probability that an event line is held back.
    disorder: f64,
    held: Vec<Held>,
    /// The smallest `release` in `held` (`i64::MAX` when empty).
    next_release: i64,
    spare: Vec<Vec<u8>>,
    /// Well-formed event lines written (repeated lines included).
    pub(crate) events: u64,
    /// Malformed lines written.
    pub(crate) malformed: u64,
}

impl<'w> Emitter<'w> {
    pub(crate) fn new(out: &'w mut dyn Write, rng: ChaCha8Rng, disorder: f64) -> Self {
        Emitter {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            rng,
            disorder,
            held: Vec::new(),
            next_release: i64::MAX,
            spare: Vec::new(),
            events: 0,
            malformed: 0,
        }
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Appends the held lines due at `ts` (those whose release time is at
    /// or before it), oldest first.
    fn release_due(&mut self, ts: i64) {
        if ts < self.next_release {
            return;
        }
        let mut next = i64::MAX;
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].release <= ts {
                let held = self.held.remove(i);
                for _ in 0..held.copies {
                    self.buf.extend_from_slice(&held.line);
                }
                self.spare.push(held.line);
            } else {
                next = next.min(self.held[i].release);
                i += 1;
            }
        }
        self.next_release = next;
    }

    /// Writes `event` (timestamp `ts`) `copies` times as identical lines;
    /// with `may_hold`, the line may be held back by up to
    /// [`MAX_DISORDER_MS`].
    pub(crate) fn event(
        &mut self,
        ts: i64,
        event: &EventOut<'_>,
        copies: u8,
        may_hold: bool,
    ) -> io::Result<()> {
        self.release_due(ts);
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, event)?;
        self.buf.push(b'\n');
        self.events += u64::from(copies);
        if may_hold && self.disorder > 0.0 && self.rng.gen_bool(self.disorder) {
            let release = ts + self.rng.gen_range(1_000..=MAX_DISORDER_MS);
            let mut line = self.spare.pop().unwrap_or_default();
            line.clear();
            line.extend_from_slice(&self.buf[start..]);
            self.buf.truncate(start);
            self.held.push(Held {
                release,
                line,
                copies,
            });
            self.next_release = self.next_release.min(release);
        } else {
            let end = self.buf.len();
            for _ in 1..copies {
                self.buf.extend_from_within(start..end);
            }
        }
        self.flush_if_full()
    }

    /// Writes a deliberately malformed line verbatim, at stream position `ts`.
    pub(crate) fn raw(&mut self, ts: i64, text: &str) -> io::Result<()> {
        self.release_due(ts);
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
        self.malformed += 1;
        self.flush_if_full()
    }

    /// Writes every line still held back and flushes: (event lines,
    /// malformed lines) written.
    pub(crate) fn finish(mut self) -> io::Result<(u64, u64)> {
        self.release_due(i64::MAX);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok((self.events, self.malformed))
    }
}
