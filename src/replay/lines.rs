//! Reads newline-delimited records with a hard cap on record size, so one 10 GB "line" cannot
//! take the process's memory: past the cap the rest of the line is skipped unbuffered and the
//! record reported as too large. The buffer is reused from line to line.

use std::io::{self, BufRead};

/// One record read.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A line's bytes without its `\n` (a trailing `\r` is left for the JSON parser, which
    /// treats it as whitespace).
    Line(&'a [u8]),
    /// A line longer than the cap; its bytes were discarded.
    TooLarge,
}

/// A line reader over any `BufRead`.
pub struct LineReader<R> {
    inner: R,
    buffer: Vec<u8>,
    max_len: usize,
    bytes_read: u64,
    /// The last record read used up the bytes the input had buffered: the next read may wait
    /// for the input (a pipe, a terminal).
    drained: bool,
}

impl<R: BufRead> LineReader<R> {
    /// Reads lines of at most `max_len` bytes from `inner`.
    pub fn new(inner: R, max_len: usize) -> Self {
        Self {
            inner,
            buffer: Vec::with_capacity(4096),
            max_len,
            bytes_read: 0,
            drained: false,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Whether the last record read used up everything the input had buffered, so that
    /// reading another may block: a caller gathering records into a batch ends it here, so
    /// that records from a live pipe are not held back waiting for more.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// The next record, or `None` at end of input.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let read = self.append_record(&mut buffer);
        self.buffer = buffer;
        Ok(match read? {
            None => None,
            Some(Appended::Line(_)) => Some(Record::Line(&self.buffer)),
            Some(Appended::TooLarge) => Some(Record::TooLarge),
        })
    }

    /// Reads the next record onto the end of `out` (which is left as it was when the record is
    /// too large), or returns `None` at end of input: for a caller that keeps several records in
    /// one buffer.
    pub fn append_record(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Appended>> {
        let start = out.len();
        let mut too_large = false;
        let mut saw_any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let (chunk, used, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (&available[..end], end + 1, true),
                None => (available, available.len(), false),
            };
            if !too_large {
                if out.len() - start + chunk.len() > self.max_len {
                    too_large = true;
                    out.truncate(start);
                } else {
                    out.extend_from_slice(chunk);
                }
            }
            self.drained = used == available.len();
            self.inner.consume(used);
            self.bytes_read += used as u64;
            if done {
                break;
            }
        }
        Ok(Some(if too_large {
            Appended::TooLarge
        } else {
            Appended::Line(start..out.len())
        }))
    }
}

/// One record appended by [`LineReader::append_record`].
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Where the line's bytes (without the `\n`) now are in the caller's buffer.
    Line(std::ops::Range<usize>),
    /// A line longer than the cap; its bytes were discarded.
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, capacity: usize) -> Vec<Option<Vec<u8>>> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(capacity, input), max);
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            out.push(match record {
                Record::Line(bytes) => Some(bytes.to_vec()),
                Record::TooLarge => None,
            });
        }
        out
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        let got = all(b"ab\ncdefgh\n\nij", 100, 3);
        assert_eq!(
            got,
            vec![
                Some(b"ab".to_vec()),
                Some(b"cdefgh".to_vec()),
                Some(b"".to_vec()),
                Some(b"ij".to_vec())
            ]
        );
    }

    #[test]
    fn oversized_lines_are_skipped_and_reported() {
        let got = all(b"short\nwaytoolongline\nok\n", 6, 4);
        assert_eq!(
            got,
            vec![Some(b"short".to_vec()), None, Some(b"ok".to_vec())]
        );
    }

    #[test]
    fn records_append_to_one_buffer_and_an_oversized_one_leaves_it_as_it_was() {
        let input: &[u8] = b"one\nwaytoolongline\ntwo\n";
        let mut reader = LineReader::new(io::BufReader::with_capacity(4, input), 6);
        let mut buffer = b"kept".to_vec();
        let mut got = Vec::new();
        while let Some(appended) = reader.append_record(&mut buffer).unwrap() {
            got.push(appended);
        }
        assert_eq!(
            got,
            vec![
                Appended::Line(4..7),
                Appended::TooLarge,
                Appended::Line(7..10)
            ]
        );
        assert_eq!(buffer, b"keptonetwo");
        assert_eq!(reader.bytes_read(), input.len() as u64);
    }

    #[test]
    fn crlf_keeps_the_carriage_return() {
        assert_eq!(
            all(b"a\r\nb", 10, 8),
            vec![Some(b"a\r".to_vec()), Some(b"b".to_vec())]
        );
    }
}
