//! The non-durable alert sinks: Alertmanager and a generic webhook, fed from the detection
//! thread without ever blocking it.
//!
//! The alerts topic is the durable output (offsets are committed only once alerts are on it);
//! these sinks are best effort on top: each has a bounded queue, one worker task that delivers
//! with retries, and counts every outcome in `stormwatch_alerts_sent_total{sink, outcome}`.
//! A slow or dead receiver costs dropped (counted, logged) alerts, never detection latency.
//!
//! - [`queue`]: the shared machinery: [`SinkHandle`] (the non-blocking hand-off), [`SinkWorker`]
//!   (the worker task and its shutdown), [`RetryPolicy`] (exponential backoff, full jitter).
//! - [`webhook`]: POSTs each alert as the JSON the alerts topic carries.
//! - [`alertmanager`]: Alertmanager's v2 API, re-posting active storms so they stay firing.
//!
//! [`Sinks`] builds the configured ones from `[sinks]` and fans each alert out to all of them.

pub mod alertmanager;
pub mod queue;
pub mod stdout;
pub mod webhook;

pub use queue::{
    RetryPolicy, SinkHandle, SinkWorker, DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN_DEADLINE,
};

use crate::alert::Alert;
use crate::config::SinksConfig;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

pub use queue::{OUTCOME_DELIVERED, OUTCOME_DROPPED, OUTCOME_FAILED, OUTCOME_RETRIED};

/// The `sink` metric label of the Alertmanager sink.
pub const ALERTMANAGER: &str = "alertmanager";
/// The `sink` metric label of the webhook sink.
pub const WEBHOOK: &str = "webhook";

/// Why a sink could not be set up. Delivery failures are not errors: they are counted and logged.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A configured URL is unusable; `key` is the configuration key (`sinks.webhook.url`).
    #[error("{key}: {message}")]
    InvalidUrl {
        /// The configuration key.
        key: &'static str,
        /// What is wrong (never the URL itself, which may carry credentials).
        message: String,
    },
    /// A [`SinkOptions`] value is out of range.
    #[error("sink option {name}: {message}")]
    InvalidOption {
        /// The option (`queue_capacity`, `retry.initial`, ...).
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot create the HTTP client of the {sink} sink: {source}")]
    Client {
        /// The sink's name.
        sink: &'static str,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

/// Tuning shared by the sinks. The configuration file sets only the URLs; these defaults are
/// what the service uses, and tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Alerts each sink's queue holds before further alerts are dropped (default 10,000).
    pub queue_capacity: usize,
    /// Retries and request timeout.
    pub retry: RetryPolicy,
    /// How often the Alertmanager sink re-posts active storms (default 60 s; Alertmanager
    /// resolves an alert it has not heard about for its `resolve_timeout`, 5 min by default).
    pub repost_interval: Duration,
    /// Storms the Alertmanager sink remembers for re-posting (default 1,000; past it the oldest
    /// is forgotten, and Alertmanager resolves it after its `resolve_timeout`).
    pub max_tracked_storms: usize,
    /// `generatorURL` of Alertmanager alerts (a link back to stormwatch), if any.
    pub generator_url: Option<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            retry: RetryPolicy::default(),
            repost_interval: alertmanager::DEFAULT_REPOST_INTERVAL,
            max_tracked_storms: alertmanager::DEFAULT_MAX_TRACKED_STORMS,
            generator_url: None,
        }
    }
}

impl SinkOptions {
    /// Checks what the types cannot (tokio panics on a zero capacity or interval, so they are
    /// refused here).
    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        let at_least_one = |name: &'static str| SinkError::InvalidOption {
            name,
            message: "must be at least 1".into(),
        };
        if self.queue_capacity == 0 {
            return Err(at_least_one("queue_capacity"));
        }
        if self.max_tracked_storms == 0 {
            return Err(at_least_one("max_tracked_storms"));
        }
        if self.repost_interval.is_zero() {
            return Err(SinkError::InvalidOption {
                name: "repost_interval",
                message: "must be greater than zero".into(),
            });
        }
        self.retry.validate()
    }
}

/// The configured sinks: one handle and one worker each. Offer alerts from the detection
/// thread, shut down once at the end.
#[derive(Debug, Default)]
pub struct Sinks {
    handles: Vec<SinkHandle>,
    workers: Vec<SinkWorker>,
    stdout: Option<stdout::StdoutSink>,
}

impl Sinks {
    /// Starts the sinks `config` enables (a URL each), with the default [`SinkOptions`], their
    /// workers on `runtime`. An unusable URL is an error naming its key.
    pub fn from_config(
        config: &SinksConfig,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Sinks, SinkError> {
        Self::from_config_with(config, &SinkOptions::default(), metrics, runtime)
    }

    /// As [`Sinks::from_config`], with explicit tuning.
    pub fn from_config_with(
        config: &SinksConfig,
        options: &SinkOptions,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Sinks, SinkError> {
        // Check every URL before starting anything, so an error leaves no task behind.
        let alertmanager_url = config
            .alertmanager
            .url
            .as_deref()
            .map(alertmanager::api_url)
            .transpose()?;
        let webhook_url = config
            .webhook
            .url
            .as_deref()
            .map(webhook::endpoint_url)
            .transpose()?;
        options.validate()?;
        let mut sinks = Sinks::default();
        if let Some(url) = alertmanager_url {
            let (handle, worker) = alertmanager::spawn_url(url, options, &metrics, runtime)?;
            sinks.handles.push(handle);
            sinks.workers.push(worker);
        }
        if let Some(url) = webhook_url {
            let (handle, worker) = webhook::spawn_url(url, options, &metrics, runtime)?;
            sinks.handles.push(handle);
            sinks.workers.push(worker);
        }
        if config.stdout.enabled {
            let sink =
                stdout::StdoutSink::spawn(metrics).map_err(|e| SinkError::InvalidOption {
                    name: "sinks.stdout.enabled",
                    message: format!("cannot start the stdout writer: {e}"),
                })?;
            sinks.stdout = Some(sink);
        }
        Ok(sinks)
    }

    /// Hands `alert` to every sink without blocking (see [`SinkHandle::offer`]); a full queue
    /// drops the alert for that sink only.
    pub fn offer(&self, alert: &Alert) {
        if let Some(stdout) = &self.stdout {
            stdout.offer(alert);
        }
        if self.handles.is_empty() {
            return;
        }
        let alert = Arc::new(alert.clone());
        for handle in &self.handles {
            handle.offer(Arc::clone(&alert));
        }
    }

    /// Re-offers an alert already announced (before a restart) to the sinks that hold state
    /// about active storms, Alertmanager, so it keeps an ongoing storm firing; stateless sinks
    /// (webhook, stdout) would only see a duplicate and are skipped. The caller offers only
    /// storms the alerts topic shows open: offered, an ended one would fire again.
    pub fn refresh(&self, alert: &Alert) {
        let alert = Arc::new(alert.clone());
        for handle in self.handles.iter().filter(|h| h.name() == ALERTMANAGER) {
            handle.offer(Arc::clone(&alert));
        }
    }

    /// Whether no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty() && self.stdout.is_none()
    }

    /// The running sinks' names, as in the `sink` metric label.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.handles.iter().map(SinkHandle::name).collect();
        if self.stdout.is_some() {
            names.push(stdout::STDOUT);
        }
        names
    }

    /// The handles, for callers that offer from several places (clone them freely).
    pub fn handles(&self) -> &[SinkHandle] {
        &self.handles
    }

    /// Stops every sink: refuses new alerts, delivers what is queued until `deadline` has
    /// passed (one deadline for all sinks, which drain concurrently), then drops and counts the
    /// rest. Returns `true` when every queue was drained in time.
    pub async fn shutdown(mut self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        for worker in &self.workers {
            worker.begin_shutdown();
        }
        let mut drained = true;
        if let Some(mut stdout) = self.stdout.take() {
            // A blocking wait (for a thread), on a thread of its own, while the others drain.
            drained &= tokio::task::spawn_blocking(move || stdout.close(deadline))
                .await
                .unwrap_or(false);
        }
        for worker in self.workers {
            drained &= worker.finish_shutdown(until).await;
        }
        drained
    }
}
