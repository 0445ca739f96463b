//! The machinery every non-durable sink shares: the bounded hand-off from the detection thread
//! ([`SinkHandle`]), the worker task that owns the other end ([`SinkWorker`]), and HTTP delivery
//! with retries ([`RetryPolicy`], exponential backoff with full jitter).
//!
//! Why it looks like this: the detection thread must never wait for a sink. So the hand-off is a
//! bounded `tokio::sync::mpsc` channel fed with `try_send` (no await, no lock held across I/O):
//! when a sink is slow or dead its queue fills and further alerts are dropped and counted, instead
//! of memory growing or detection stalling. Each sink has one worker task that delivers its
//! alerts one at a time, in order, retrying transient failures (connection errors, timeouts, 5xx,
//! 408, 429) and giving up on the rest (other 4xx: the receiver will not change its mind).
//!
//! Every outcome lands in `stormwatch_alerts_sent_total{sink, outcome}` with a bounded outcome
//! set: `delivered`, `retried` (one per retry), `dropped` (never attempted: queue full, sink
//! closed, or abandoned at the shutdown deadline) and `failed` (attempted and given up).
//!
//! No retry crate: none is a dependency, and the loop is short. Logs name the sink and the
//! storm id, never an address, a URL path (webhook paths often carry secrets) or a response body.

use crate::alert::Alert;
use crate::metrics::Metrics;
use prometheus::{IntCounter, IntGauge};
use rand::Rng;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{SinkError, SinkOptions};

/// Alerts a sink's queue holds by default before further alerts are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// How long [`super::Sinks::shutdown`] callers typically give the sinks to drain.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// At most one "dropping alerts" warning per sink in this time.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// After the shutdown deadline, how long the worker gets to notice it must stop before its task
/// is aborted. It stops at its next await point, so this is only a backstop.
const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// Outcome label: the receiver accepted the alert (2xx).
pub const OUTCOME_DELIVERED: &str = "delivered";
/// Outcome label: an attempt failed transiently and another will follow.
pub const OUTCOME_RETRIED: &str = "retried";
/// Outcome label: the alert was never (fully) attempted: queue full, sink closed, or abandoned
/// at the shutdown deadline.
pub const OUTCOME_DROPPED: &str = "dropped";
/// Outcome label: the receiver rejected the alert (4xx other than 408/429), or the attempts ran out.
pub const OUTCOME_FAILED: &str = "failed";

/// How a sink retries a delivery: exponential backoff (factor 2) with full jitter, so many
/// stormwatch instances (or many alerts) recovering at once do not hit the receiver in lockstep.
///
/// The wait before retry `n` (1-based) is uniform in `[0, min(max_delay, initial * 2^(n-1))]`;
/// a `Retry-After` header (seconds or a date) on a 429 or 503 raises it (capped at `max_delay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first wait (default 200 ms). Must be greater than zero.
    pub initial: Duration,
    /// Cap on every wait (default 30 s).
    pub max_delay: Duration,
    /// Attempts per alert, the first included (default 10: about 80 s of waits at most with the
    /// default delays); `None` retries until shutdown. After the last one the alert is dropped
    /// and counted `failed`.
    pub max_attempts: Option<u32>,
    /// Limit on one request, connecting included (default 10 s). Must be greater than zero.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_attempts: Some(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait before retry `retry` (1-based; 0 is treated as 1):
    /// `min(max_delay, initial * 2^(retry - 1))`, without overflow for any `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }

    /// The wait before retry `retry`: full jitter, uniform in `[0, ceiling(retry)]`.
    pub fn backoff<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }

    /// Whether another attempt may follow `attempts` failed ones.
    fn allows_another(&self, attempts: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts < max.max(1))
    }

    /// Checks what the types cannot: every duration must be greater than zero.
    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        let bad = |name: &'static str| SinkError::InvalidOption {
            name,
            message: "must be greater than zero".into(),
        };
        if self.initial.is_zero() {
            return Err(bad("retry.initial"));
        }
        if self.max_delay.is_zero() {
            return Err(bad("retry.max_delay"));
        }
        if self.request_timeout.is_zero() {
            return Err(bad("retry.request_timeout"));
        }
        Ok(())
    }
}

/// The metric series of one sink, resolved once.
#[derive(Clone)]
pub(crate) struct Counters {
    /// `outcome="delivered"`.
    pub(crate) delivered: IntCounter,
    /// `outcome="retried"`.
    pub(crate) retried: IntCounter,
    /// `outcome="dropped"`.
    pub(crate) dropped: IntCounter,
    /// `outcome="failed"`.
    pub(crate) failed: IntCounter,
    /// `stormwatch_alert_queue_depth{sink}`.
    depth: IntGauge,
}

impl Counters {
    fn new(metrics: &Metrics, sink: &str) -> Self {
        let outcome = |name: &str| metrics.alerts_sent_total.with_label_values(&[sink, name]);
        Self {
            delivered: outcome(OUTCOME_DELIVERED),
            retried: outcome(OUTCOME_RETRIED),
            dropped: outcome(OUTCOME_DROPPED),
            failed: outcome(OUTCOME_FAILED),
            depth: metrics.alert_queue_depth.with_label_values(&[sink]),
        }
    }

    fn set_depth(&self, queued: usize) {
        self.depth.set(i64::try_from(queued).unwrap_or(i64::MAX));
    }
}

/// The detection side of a sink's queue: cheap to clone, `Send + Sync`, and never blocks.
#[derive(Clone)]
pub struct SinkHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    name: &'static str,
    tx: mpsc::Sender<Arc<Alert>>,
    counters: Counters,
    warner: DropWarner,
}

/// Rate-limits the "dropping alerts" warning to one per [`DROP_WARN_INTERVAL`], lock-free, and
/// reports how many were dropped since the previous warning.
struct DropWarner {
    origin: Instant,
    /// Milliseconds since `origin` before which no warning is logged.
    next_warn_ms: AtomicU64,
    /// Drops since the last warning.
    since_warning: AtomicU64,
}

impl DropWarner {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            next_warn_ms: AtomicU64::new(0),
            since_warning: AtomicU64::new(0),
        }
    }

    /// Records a drop; returns the number of drops to report when a warning is due now.
    fn note(&self) -> Option<u64> {
        self.since_warning.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_warn_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(DROP_WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now < due {
            return None;
        }
        self.next_warn_ms
            .compare_exchange(
                due,
                now.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()?;
        Some(self.since_warning.swap(0, Ordering::Relaxed))
    }
}

impl SinkHandle {
    /// Hands `alert` to the sink's worker without blocking or awaiting; safe to call from any
    /// thread, inside a runtime or not. Returns whether the alert was queued. When the queue is
    /// full (or the sink is shut down) the alert is dropped, counted `dropped`, and a warning is
    /// logged at most once per 10 s per sink.
    pub fn offer(&self, alert: Arc<Alert>) -> bool {
        let inner = &*self.inner;
        let (alert, reason) = match inner.tx.try_send(alert) {
            Ok(()) => {
                inner.counters.set_depth(self.queued());
                return true;
            }
            Err(TrySendError::Full(alert)) => (alert, "queue full"),
            Err(TrySendError::Closed(alert)) => (alert, "sink shut down"),
        };
        inner.counters.dropped.inc();
        if let Some(dropped) = inner.warner.note() {
            warn!(
                sink = inner.name,
                reason,
                dropped,
                queue_capacity = inner.tx.max_capacity(),
                storm_id = %alert.storm_id(),
                kind = alert.kind.as_str(),
                "alert sink is not keeping up: dropping alerts (this warning repeats at most every 10 s)"
            );
        }
        false
    }

    /// The sink's name, as in the `sink` metric label.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Alerts waiting in the queue now (approximate while the worker runs).
    pub fn queued(&self) -> usize {
        let tx = &self.inner.tx;
        tx.max_capacity().saturating_sub(tx.capacity())
    }
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("name", &self.inner.name)
            .field("queued", &self.queued())
            .finish()
    }
}

/// What the worker has been told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Deliver alerts as they come.
    Running,
    /// Accept nothing new; deliver what is queued, then stop.
    Draining,
    /// The shutdown deadline passed: stop now, counting what is left as `dropped`.
    Abandon,
}

/// The task side of a sink: owns the worker task. Dropping it without [`SinkWorker::shutdown`]
/// lets the worker drain its queue in the background (bounded by the retry policy).
#[derive(Debug)]
pub struct SinkWorker {
    name: &'static str,
    control: watch::Sender<Phase>,
    task: JoinHandle<()>,
}

impl SinkWorker {
    /// Stops the sink: new offers are refused (and counted `dropped`), what is queued is
    /// delivered (with retries) until `deadline` has passed, then whatever is left, the alert in
    /// flight included, is counted `dropped` and the worker stops. Returns `true` when the queue
    /// was drained before the deadline. Returns within about `deadline` (plus at most 1 s if the
    /// worker has to be aborted).
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.begin_shutdown();
        self.finish_shutdown(tokio::time::Instant::now() + deadline)
            .await
    }

    /// The sink's name, as in the `sink` metric label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Tells the worker to stop accepting and drain.
    pub(crate) fn begin_shutdown(&self) {
        self.control.send_replace(Phase::Draining);
    }

    /// Waits for the drain until `until`, then abandons what is left.
    pub(crate) async fn finish_shutdown(self, until: tokio::time::Instant) -> bool {
        let name = self.name;
        let mut task = self.task;
        match tokio::time::timeout_at(until, &mut task).await {
            Ok(joined) => {
                if let Err(error) = joined {
                    warn!(sink = name, %error, "alert sink worker ended abnormally");
                }
                debug!(sink = name, "alert sink drained");
                true
            }
            Err(_) => {
                self.control.send_replace(Phase::Abandon);
                if tokio::time::timeout(ABANDON_GRACE, &mut task)
                    .await
                    .is_err()
                {
                    warn!(sink = name, "alert sink worker did not stop; aborting it");
                    task.abort();
                }
                false
            }
        }
    }
}

/// How one piece of work ended, as far as the worker loop cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Done (delivered, failed or dropped: counted either way).
    Done,
    /// Interrupted by the shutdown deadline; the alert in hand is still to be counted.
    Abandoned,
}

/// One kind of sink: what to do with each alert, and optionally something periodic.
pub(crate) trait Deliver: Send + 'static {
    /// Delivers one queued alert (counting its outcome through `poster`).
    fn deliver(
        &mut self,
        alert: Arc<Alert>,
        poster: &Poster,
    ) -> impl Future<Output = Handled> + Send;

    /// How often [`Deliver::tick`] runs while the sink is not shutting down; `None`: never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work (Alertmanager re-posts active storms).
    fn tick(&mut self, _poster: &Poster) -> impl Future<Output = Handled> + Send {
        async { Handled::Done }
    }
}

/// Starts the worker for `sink` on `runtime` and returns both ends of its queue.
pub(crate) fn spawn<D: Deliver>(
    name: &'static str,
    endpoint: &Url,
    sink: D,
    options: &SinkOptions,
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) -> Result<(SinkHandle, SinkWorker), SinkError> {
    options.validate()?;
    let client = reqwest::Client::builder()
        .timeout(options.retry.request_timeout)
        .connect_timeout(options.retry.request_timeout)
        .user_agent(concat!("stormwatch/", env!("CARGO_PKG_VERSION")))
        // A followed 301, 302 or 303 turns the POST into a GET without the alert, and a 2xx
        // at its end would count the alert delivered though nobody got it. Not followed, a
        // redirect is a permanent failure, counted and logged with its status, so a moved
        // endpoint shows and its URL gets fixed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|source| SinkError::Client {
            sink: name,
            source: source.without_url(),
        })?;
    let counters = Counters::new(metrics, name);
    counters.set_depth(0);
    let (tx, rx) = mpsc::channel(options.queue_capacity);
    let (control, control_rx) = watch::channel(Phase::Running);
    let poster = Poster {
        name,
        client,
        policy: options.retry.clone(),
        counters: counters.clone(),
        control: control_rx.clone(),
    };
    let task = runtime.spawn(run(sink, rx, poster, control_rx));
    info!(
        sink = name,
        endpoint = %endpoint.origin().ascii_serialization(),
        queue_capacity = options.queue_capacity,
        "alert sink started"
    );
    let handle = SinkHandle {
        inner: Arc::new(HandleInner {
            name,
            tx,
            counters,
            warner: DropWarner::new(),
        }),
    };
    Ok((
        handle,
        SinkWorker {
            name,
            control,
            task,
        },
    ))
}

/// Waits for the next tick, or forever when there is no ticker.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The worker loop: alerts from the queue in order, periodic work in between, and the phases of
/// shutdown.
async fn run<D: Deliver>(
    mut sink: D,
    mut rx: mpsc::Receiver<Arc<Alert>>,
    poster: Poster,
    mut control: watch::Receiver<Phase>,
) {
    let mut ticker = sink.tick_interval().map(|every| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut draining = false;
    let mut control_open = true;
    loop {
        tokio::select! {
            biased;
            changed = control.changed(), if control_open => {
                // A dropped SinkWorker means nobody will ask again: drain and stop.
                let phase = match changed {
                    Ok(()) => *control.borrow_and_update(),
                    Err(_) => {
                        control_open = false;
                        Phase::Draining
                    }
                };
                if phase != Phase::Running && !draining {
                    draining = true;
                    rx.close();
                }
                if phase == Phase::Abandon {
                    abandon(&mut rx, &poster, 0);
                    return;
                }
            }
            next = rx.recv() => match next {
                Some(alert) => {
                    poster.counters.set_depth(rx.len());
                    if sink.deliver(alert, &poster).await == Handled::Abandoned {
                        abandon(&mut rx, &poster, 1);
                        return;
                    }
                }
                None => break,
            },
            () = next_tick(&mut ticker), if !draining => {
                if sink.tick(&poster).await == Handled::Abandoned {
                    abandon(&mut rx, &poster, 0);
                    return;
                }
            }
        }
    }
    poster.counters.set_depth(0);
    debug!(sink = poster.name, "alert sink worker stopped");
}

/// Counts the alert in flight (if any) and everything still queued as `dropped`.
fn abandon(rx: &mut mpsc::Receiver<Arc<Alert>>, poster: &Poster, in_flight: u64) {
    rx.close();
    let mut dropped = in_flight;
    while rx.try_recv().is_ok() {
        dropped += 1;
    }
    poster.counters.dropped.inc_by(dropped);
    poster.counters.set_depth(0);
    if dropped > 0 {
        warn!(
            sink = poster.name,
            dropped, "alert sink shutdown deadline passed: undelivered alerts dropped"
        );
    }
}

/// How a delivery with retries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// 2xx; counted `delivered`.
    Delivered,
    /// A 4xx other than 408/429 (or a request that cannot be built); counted `failed`.
    Rejected,
    /// Transient failures until the attempts ran out; counted `failed`.
    GaveUp,
    /// The shutdown deadline passed first; not counted (the worker counts it `dropped`).
    Abandoned,
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Worth retrying: connection error, timeout, 5xx, 408, 429.
    Transient {
        /// For the log: a status or a transport error (without its URL).
        cause: String,
        /// The wait the receiver asked for with `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying: the receiver rejected the request.
    Permanent {
        /// For the log.
        cause: String,
    },
}

impl AttemptError {
    /// The cause, for logs.
    pub(crate) fn cause(&self) -> &str {
        match self {
            AttemptError::Transient { cause, .. } | AttemptError::Permanent { cause } => cause,
        }
    }
}

/// Sends JSON to a sink's receiver: one HTTP client, the retry policy, the sink's counters, and
/// the shutdown signal every wait is raced against.
pub(crate) struct Poster {
    name: &'static str,
    client: reqwest::Client,
    policy: RetryPolicy,
    pub(crate) counters: Counters,
    control: watch::Receiver<Phase>,
}

impl Poster {
    /// Resolves when the shutdown deadline has passed; never if the worker's owner is gone.
    pub(crate) async fn abandoned(&self) {
        let mut control = self.control.clone();
        if control
            .wait_for(|phase| *phase == Phase::Abandon)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// POSTs `body` (JSON) to `url` once.
    pub(crate) async fn post_once(&self, url: &Url, body: &[u8]) -> Result<(), AttemptError> {
        let sent = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => classify(response.status(), response.headers()),
            Err(error) if error.is_builder() => Err(AttemptError::Permanent {
                cause: describe(error),
            }),
            Err(error) => Err(AttemptError::Transient {
                cause: describe(error),
                retry_after: None,
            }),
        }
    }

    /// POSTs `body` (JSON) to `url` until it is accepted, rejected, the attempts run out or the
    /// shutdown deadline passes, counting `retried` per retry and `delivered` or `failed` once.
    /// `alert` names what is delivered, for the logs.
    pub(crate) async fn post_with_retry(&self, url: &Url, body: &[u8], alert: &Alert) -> Delivery {
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            let result = tokio::select! {
                biased;
                () = self.abandoned() => return Delivery::Abandoned,
                result = self.post_once(url, body) => result,
            };
            let error = match result {
                Ok(()) => {
                    self.counters.delivered.inc();
                    debug!(
                        sink = self.name,
                        storm_id = %alert.storm_id(),
                        kind = alert.kind.as_str(),
                        attempts,
                        "alert delivered"
                    );
                    return Delivery::Delivered;
                }
                Err(error) => error,
            };
            let retry_after = match &error {
                AttemptError::Permanent { cause } => {
                    self.counters.failed.inc();
                    warn!(
                        sink = self.name,
                        storm_id = %alert.storm_id(),
                        kind = alert.kind.as_str(),
                        cause = cause.as_str(),
                        "alert rejected by the receiver; not retried"
                    );
                    return Delivery::Rejected;
                }
                AttemptError::Transient { retry_after, .. } => *retry_after,
            };
            if !self.policy.allows_another(attempts) {
                self.counters.failed.inc();
                warn!(
                    sink = self.name,
                    storm_id = %alert.storm_id(),
                    kind = alert.kind.as_str(),
                    attempts,
                    cause = error.cause(),
                    "alert not delivered: attempts exhausted; dropping it"
                );
                return Delivery::GaveUp;
            }
            self.counters.retried.inc();
            let jittered = self.policy.backoff(attempts, &mut rand::thread_rng());
            let wait = retry_after.map_or(jittered, |hint| {
                jittered.max(hint.min(self.policy.max_delay))
            });
            debug!(
                sink = self.name,
                storm_id = %alert.storm_id(),
                attempts,
                cause = error.cause(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "alert delivery failed; retrying"
            );
            tokio::select! {
                biased;
                () = self.abandoned() => return Delivery::Abandoned,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// A transport error and its causes on one line (`error sending request: client error
/// (Connect): tcp connect error: Connection refused`), without the URL, which may carry a secret.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sorts a response status into success, retry or give up.
fn classify(status: StatusCode, headers: &HeaderMap) -> Result<(), AttemptError> {
    if status.is_success() {
        return Ok(());
    }
    let cause = format!("HTTP status {}", status.as_u16());
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        return Err(AttemptError::Transient { cause, retry_after });
    }
    Err(AttemptError::Permanent { cause })
}

/// A `Retry-After` value (RFC 9110, section 10.2.3) as the wait it asks for from `now`: either
/// form, seconds or an HTTP date (a date already past asks for none); `None` when it is neither.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a sink URL from the configuration: absolute, `http` or `https`, with a host. The
/// error message never repeats the URL (it may carry credentials or a secret path).
pub(crate) fn parse_http_url(key: &'static str, text: &str) -> Result<Url, SinkError> {
    let bad = |message: String| SinkError::InvalidUrl { key, message };
    let url = Url::parse(text.trim()).map_err(|e| bad(format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(initial_ms),
            max_delay: Duration::from_millis(max_ms),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = RetryPolicy::default();
        assert_eq!(p.initial, Duration::from_millis(200));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        assert_eq!(p.max_attempts, Some(10));
        assert_eq!(p.request_timeout, Duration::from_secs(10));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn ceiling_doubles_from_initial_then_caps() {
        let p = RetryPolicy::default();
        let ms = |retry| p.ceiling(retry).as_millis();
        assert_eq!(ms(0), 200);
        assert_eq!(ms(1), 200);
        assert_eq!(ms(2), 400);
        assert_eq!(ms(3), 800);
        assert_eq!(ms(8), 25_600);
        assert_eq!(ms(9), 30_000);
        assert_eq!(ms(10), 30_000);
        for retry in 1..200 {
            assert!(p.ceiling(retry) <= p.max_delay);
            assert!(p.ceiling(retry) >= p.ceiling(retry.saturating_sub(1)));
        }
    }

    #[test]
    fn ceiling_never_overflows() {
        let p = RetryPolicy {
            initial: Duration::from_secs(u64::MAX / 2),
            max_delay: Duration::from_secs(u64::MAX),
            ..RetryPolicy::default()
        };
        assert_eq!(p.ceiling(1), Duration::from_secs(u64::MAX / 2));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(u64::MAX));
        let small = policy(200, 30_000);
        assert_eq!(small.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn initial_above_cap_is_capped() {
        let p = policy(5_000, 1_000);
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_ceiling() {
        let p = RetryPolicy::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for retry in 1..=12 {
            let ceiling = p.ceiling(retry);
            let waits: Vec<Duration> = (0..500).map(|_| p.backoff(retry, &mut rng)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}");
            // Full jitter spreads over the whole range, not just near the ceiling.
            let below_half = waits.iter().filter(|w| **w < ceiling / 2).count();
            assert!(
                (150..350).contains(&below_half),
                "retry {retry}: {below_half}"
            );
        }
    }

    #[test]
    fn jitter_of_a_huge_ceiling_does_not_panic() {
        let p = RetryPolicy {
            initial: Duration::from_secs(u64::MAX),
            max_delay: Duration::from_secs(u64::MAX),
            ..RetryPolicy::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let _ = p.backoff(3, &mut rng);
    }

    #[test]
    fn attempts_limit() {
        let mut p = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        p.max_attempts = Some(0);
        assert!(!p.allows_another(1), "zero means one attempt");
        p.max_attempts = None;
        assert!(p.allows_another(u32::MAX));
    }

    #[test]
    fn zero_durations_are_rejected() {
        for p in [
            policy(0, 10),
            policy(10, 0),
            RetryPolicy {
                request_timeout: Duration::ZERO,
                ..RetryPolicy::default()
            },
        ] {
            assert!(matches!(p.validate(), Err(SinkError::InvalidOption { .. })));
        }
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        let transient = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            matches!(classify(status, &none), Err(AttemptError::Transient { .. }))
        };
        assert!(classify(StatusCode::OK, &none).is_ok());
        assert!(classify(StatusCode::ACCEPTED, &none).is_ok());
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(transient(code), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 422] {
            assert!(!transient(code), "{code}");
            let status = StatusCode::from_u16(code).unwrap();
            assert!(classify(status, &none).is_err());
        }
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        match classify(StatusCode::TOO_MANY_REQUESTS, &headers) {
            Err(AttemptError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        // A date already past asks for no wait.
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        match classify(StatusCode::SERVICE_UNAVAILABLE, &headers) {
            Err(AttemptError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::ZERO));
            }
            other => panic!("{other:?}"),
        }
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        match classify(StatusCode::SERVICE_UNAVAILABLE, &headers) {
            Err(AttemptError::Transient { retry_after, .. }) => assert_eq!(retry_after, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_dates_are_waited_for() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_420); // 07:27:00
        for (value, wait) in [
            // The three date formats RFC 9110 has recipients accept.
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(60)),
            ("Wednesday, 21-Oct-15 07:28:00 GMT", Some(60)),
            ("Wed Oct 21 07:28:00 2015", Some(60)),
            (" 120 ", Some(120)),
            ("Wed, 21 Oct 2015 07:26:00 GMT", Some(0)),
            ("-5", None),
            ("Wed, 21 Oct 2015", None),
        ] {
            assert_eq!(
                parse_retry_after(value, now),
                wait.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn urls_are_checked_without_echoing_them() {
        assert!(parse_http_url("k", "http://127.0.0.1:9093").is_ok());
        assert!(parse_http_url("k", " https://hooks.example/x/y ").is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://x/",
            "/relative",
            "mailto:a@x",
            "file:///tmp",
        ] {
            let error = parse_http_url("sinks.webhook.url", bad).unwrap_err();
            let text = error.to_string();
            assert!(text.starts_with("sinks.webhook.url: "), "{text}");
        }
        let error = parse_http_url("k", "ftp://user:secret@x/").unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn drop_warnings_are_rate_limited() {
        let warner = DropWarner::new();
        assert_eq!(warner.note(), Some(1));
        for _ in 0..100 {
            assert_eq!(warner.note(), None);
        }
        // Pretend the interval has passed: the next warning reports everything since the last.
        warner.next_warn_ms.store(0, Ordering::Relaxed);
        assert_eq!(warner.note(), Some(101));
    }

    #[test]
    fn handles_are_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<SinkHandle>();
    }
}
