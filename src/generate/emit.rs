//! The output stage: serializes events to lines, repeats the lines that are
//! logged once per hop, and holds back a few lines to produce the mild
//! disorder real log shippers show.

use super::event::EventOut;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::io::{self, BufWriter, Write};

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

/// Writes lines to the caller's writer through an internal buffer.
pub(crate) struct Emitter<'w> {
    out: BufWriter<&'w mut dyn Write>,
    rng: ChaCha8Rng,
    /// Probability that an event line is held back.
    disorder: f64,
    line: Vec<u8>,
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
            out: BufWriter::with_capacity(1 << 16, out),
            rng,
            disorder,
            line: Vec::with_capacity(512),
            held: Vec::new(),
            next_release: i64::MAX,
            spare: Vec::new(),
            events: 0,
            malformed: 0,
        }
    }

    /// Writes the held lines due at `ts` (those whose release time is at or
    /// before it), oldest first.
    fn release_due(&mut self, ts: i64) -> io::Result<()> {
        if ts < self.next_release {
            return Ok(());
        }
        let mut next = i64::MAX;
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].release <= ts {
                let held = self.held.remove(i);
                for _ in 0..held.copies {
                    self.out.write_all(&held.line)?;
                }
                self.spare.push(held.line);
            } else {
                next = next.min(self.held[i].release);
                i += 1;
            }
        }
        self.next_release = next;
        Ok(())
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
        self.line.clear();
        serde_json::to_writer(&mut self.line, event)?;
        self.line.push(b'\n');
        self.release_due(ts)?;
        self.events += u64::from(copies);
        if may_hold && self.disorder > 0.0 && self.rng.gen_bool(self.disorder) {
            let release = ts + self.rng.gen_range(1_000..=MAX_DISORDER_MS);
            let replacement = self.spare.pop().unwrap_or_default();
            let line = std::mem::replace(&mut self.line, replacement);
            self.held.push(Held {
                release,
                line,
                copies,
            });
            self.next_release = self.next_release.min(release);
            return Ok(());
        }
        for _ in 0..copies {
            self.out.write_all(&self.line)?;
        }
        Ok(())
    }

    /// Writes a deliberately malformed line verbatim, at stream position `ts`.
    pub(crate) fn raw(&mut self, ts: i64, text: &str) -> io::Result<()> {
        self.release_due(ts)?;
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.malformed += 1;
        Ok(())
    }

    /// Writes every line still held back and flushes.
    pub(crate) fn finish(mut self) -> io::Result<(u64, u64)> {
        self.release_due(i64::MAX)?;
        self.out.flush()?;
        Ok((self.events, self.malformed))
    }
}
