//! The stdout sink: each alert as one JSON line on standard output (`sinks.stdout.enabled`),
//! for running under a supervisor that collects stdout, or piping into another tool.
//!
//! Standard output can block (a full pipe nobody reads), and the detection thread must never
//! block, so lines go through a bounded channel to a writer thread; when it is full the alert is
//! dropped and counted, like any other sink's. For the same reason shutdown waits for the queue
//! to drain only until its deadline: a writer still blocked then is left behind, and the lines
//! it did not write are counted dropped.

use super::{OUTCOME_DELIVERED, OUTCOME_DROPPED, OUTCOME_FAILED};
use crate::alert::Alert;
use crate::metrics::Metrics;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The metric label of this sink.
pub const STDOUT: &str = "stdout";

/// Alerts waiting for the writer thread at most.
const QUEUE: usize = 10_000;

/// How long dropping a sink that was not closed waits for its queue to drain.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// Lines handed to the writer and not yet written, and whether the sink gave up on them. Under
/// one lock, so that each line is counted once: written by the writer, or dropped by `close`.
#[derive(Debug, Default)]
struct Backlog {
    queued: usize,
    abandoned: bool,
}

/// A running stdout sink.
#[derive(Debug)]
pub struct StdoutSink {
    lines: Option<SyncSender<String>>,
    writer: Option<JoinHandle<()>>,
    backlog: Arc<Mutex<Backlog>>,
    metrics: Arc<Metrics>,
}

impl StdoutSink {
    /// Starts the writer thread.
    pub fn spawn(metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Self::spawn_to(metrics, std::io::stdout)
    }

    /// Starts the writer thread on any writer (tests pass a buffer).
    pub fn spawn_to<W: Write + 'static>(
        metrics: Arc<Metrics>,
        make_writer: impl FnOnce() -> W + Send + 'static,
    ) -> std::io::Result<Self> {
        let (lines, receiver) = sync_channel::<String>(QUEUE);
        let thread_metrics = Arc::clone(&metrics);
        let backlog = Arc::new(Mutex::new(Backlog::default()));
        let thread_backlog = Arc::clone(&backlog);
        let writer = std::thread::Builder::new()
            .name("stormwatch-stdout".into())
            .spawn(move || {
                let mut out = make_writer();
                for line in receiver {
                    let written = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush());
                    {
                        let mut backlog = thread_backlog
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if backlog.abandoned {
                            // Counted dropped already.
                            return;
                        }
                        backlog.queued = backlog.queued.saturating_sub(1);
                    }
                    let outcome = if written.is_ok() {
                        OUTCOME_DELIVERED
                    } else {
                        OUTCOME_FAILED
                    };
                    thread_metrics
                        .alerts_sent_total
                        .with_label_values(&[STDOUT, outcome])
                        .inc();
                }
            })?;
        Ok(Self {
            lines: Some(lines),
            writer: Some(writer),
            backlog,
            metrics,
        })
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the alert's JSON line without blocking; a full queue drops and counts it.
    pub fn offer(&self, alert: &Alert) {
        // Counted as queued before the writer can see it, and taken back if it is not sent.
        self.backlog().queued += 1;
        let sent = match &self.lines {
            Some(lines) => lines.try_send(alert.to_json()),
            None => Err(TrySendError::Disconnected(String::new())),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let mut backlog = self.backlog();
                backlog.queued = backlog.queued.saturating_sub(1);
                drop(backlog);
                self.metrics
                    .alerts_sent_total
                    .with_label_values(&[STDOUT, OUTCOME_DROPPED])
                    .inc();
            }
        }
    }

    /// Stops accepting alerts and waits up to `wait` for the queued ones to be written. Returns
    /// whether they all were; if not (standard output blocked), the writer thread is left
    /// behind and the lines it has not written are counted dropped.
    pub fn close(&mut self, wait: Duration) -> bool {
        self.lines = None;
        let Some(writer) = self.writer.take() else {
            return true;
        };
        let until = Instant::now() + wait;
        while !writer.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if writer.is_finished() {
            if writer.join().is_err() {
                tracing::warn!("the stdout sink's writer thread panicked");
            }
            return true;
        }
        let mut backlog = self.backlog();
        backlog.abandoned = true;
        let dropped = std::mem::take(&mut backlog.queued);
        drop(backlog);
        self.metrics
            .alerts_sent_total
            .with_label_values(&[STDOUT, OUTCOME_DROPPED])
            .inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
        tracing::warn!(
            sink = STDOUT,
            dropped,
            "standard output is blocked; alerts not written by the shutdown deadline are dropped"
        );
        false
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        self.close(DROP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertKind, RuleName, Severity};
    use std::sync::Mutex;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn started() -> Alert {
        Alert {
            kind: AlertKind::StormStarted,
            thread_key: Arc::from("t"),
            severity: Severity::Warning,
            rule: RuleName::Early,
            at: 0,
            started_at: 0,
            reply_alls: 3,
            distinct_senders: 3,
            deliveries: 9000,
            subject: None,
            block_until: 0,
            senders: None,
        }
    }

    #[test]
    fn alerts_are_written_as_json_lines_and_counted() {
        let metrics = Metrics::new();
        let buffer = Shared::default();
        let writer = buffer.clone();
        let mut sink = StdoutSink::spawn_to(Arc::clone(&metrics), move || writer).unwrap();
        let alert = started();
        sink.offer(&alert);
        sink.offer(&alert);
        assert!(sink.close(Duration::from_secs(10)));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, format!("{}\n{}\n", alert.to_json(), alert.to_json()));
        let delivered = metrics
            .alerts_sent_total
            .with_label_values(&[STDOUT, OUTCOME_DELIVERED])
            .get();
        assert_eq!(delivered, 2);
        // After close, offers are dropped and counted, never blocking.
        sink.offer(&alert);
        let dropped = metrics
            .alerts_sent_total
            .with_label_values(&[STDOUT, OUTCOME_DROPPED])
            .get();
        assert_eq!(dropped, 1);
    }

    /// A standard output nobody reads: each write waits until the test lets it go.
    struct Blocked(std::sync::mpsc::Receiver<()>);

    impl Write for Blocked {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn closing_gives_up_on_a_blocked_output_by_its_deadline_and_counts_the_lines_dropped() {
        let metrics = Metrics::new();
        let (release, blocked) = std::sync::mpsc::channel();
        let mut sink =
            StdoutSink::spawn_to(Arc::clone(&metrics), move || Blocked(blocked)).unwrap();
        let alert = started();
        for _ in 0..3 {
            sink.offer(&alert);
        }
        let started = Instant::now();
        assert!(!sink.close(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(5));
        let count = |outcome| {
            metrics
                .alerts_sent_total
                .with_label_values(&[STDOUT, outcome])
                .get()
        };
        assert_eq!(count(OUTCOME_DROPPED), 3);
        // Let the writer go: it finds the sink gone and counts nothing more.
        drop(release);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(count(OUTCOME_DROPPED), 3);
        assert_eq!(count(OUTCOME_DELIVERED) + count(OUTCOME_FAILED), 0);
    }
}
