//! The stdout sink: each alert as one JSON line on standard output (`sinks.stdout.enabled`),
//! for running under a supervisor that collects stdout, or piping into another tool.
//!
//! Standard output can block (a full pipe nobody reads), and the detection thread must never
//! block, so lines go through a bounded channel to a writer thread; when it is full the alert is
//! dropped and counted, like any other sink's.

use super::{OUTCOME_DELIVERED, OUTCOME_DROPPED, OUTCOME_FAILED};
use crate::alert::Alert;
use crate::metrics::Metrics;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The metric label of this sink.
pub const STDOUT: &str = "stdout";

/// Alerts waiting for the writer thread at most.
const QUEUE: usize = 10_000;

/// A running stdout sink.
#[derive(Debug)]
pub struct StdoutSink {
    lines: Option<SyncSender<String>>,
    writer: Option<JoinHandle<()>>,
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
        let writer = std::thread::Builder::new()
            .name("stormwatch-stdout".into())
            .spawn(move || {
                let mut out = make_writer();
                for line in receiver {
                    let written = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush());
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
            metrics,
        })
    }

    /// Queues the alert's JSON line without blocking; a full queue drops and counts it.
    pub fn offer(&self, alert: &Alert) {
        let sent = match &self.lines {
            Some(lines) => lines.try_send(alert.to_json()),
            None => Err(TrySendError::Disconnected(String::new())),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics
                    .alerts_sent_total
                    .with_label_values(&[STDOUT, OUTCOME_DROPPED])
                    .inc();
            }
        }
    }

    /// Stops accepting alerts and waits for the queued ones to be written.
    pub fn close(&mut self) {
        self.lines = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::warn!("the stdout sink's writer thread panicked");
            }
        }
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        self.close();
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

    #[test]
    fn alerts_are_written_as_json_lines_and_counted() {
        let metrics = Metrics::new();
        let buffer = Shared::default();
        let writer = buffer.clone();
        let mut sink = StdoutSink::spawn_to(Arc::clone(&metrics), move || writer).unwrap();
        let alert = Alert {
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
        };
        sink.offer(&alert);
        sink.offer(&alert);
        sink.close();
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
}
