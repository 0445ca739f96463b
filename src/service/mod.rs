//! `stormwatch run`: the service. Kafka consumer group -> decode -> timestamp merge -> engine ->
//! alerts topic (durable), Alertmanager and webhook sinks; malformed records to the DLQ; metrics
//! and the HTTP endpoints on the side.
//!
//! Threads: the intake thread (`intake.rs`) polls the consumer and parses records; the detection
//! thread (`pipeline.rs`) owns the merge, the engine, the commits and the producer handle and
//! never waits on anything slow; a small tokio runtime serves HTTP and runs the sink workers;
//! librdkafka runs its own threads. Shutdown (SIGTERM/SIGINT, or [`RunningService::stop`])
//! raises a flag: the detection thread drains its buffers, flushes the producer, commits and
//! leaves the group; then the sinks drain (bounded) and HTTP stops.

mod announced;
mod intake;
mod pipeline;
mod producer;

pub use announced::{Announced, Verdict};

pub use producer::{Output, Settled};

use crate::alert::Alert;
use crate::config::Config;
use crate::engine::{millis, Engine, ALERT_WINDOW};
use crate::http::{HttpState, Readiness, StormBoard};
use crate::metrics::Metrics;
use crate::sink::Sinks;
use crate::source::{consumer_config, SourceContext};
use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long start-up waits for the brokers before giving up with a clear error.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sinks may take to deliver what they hold at shutdown.
const SINK_DRAIN: Duration = Duration::from_secs(5);

/// A callback shown each alert as it is decided (the demo prints them).
pub type AlertPrinter = Box<dyn Fn(&Alert) + Send>;

/// What the detection thread shares with the rest of the service.
pub(crate) struct ServiceHandles {
    pub metrics: Arc<Metrics>,
    pub sinks: Sinks,
    pub board: Arc<StormBoard>,
    pub readiness: Arc<Readiness>,
    pub shutdown: Arc<AtomicBool>,
    pub alert_printer: Option<AlertPrinter>,
}

/// Options for starting the service besides its configuration.
#[derive(Default)]
pub struct StartOptions {
    /// Called with each alert (on the detection thread; keep it quick).
    pub alert_printer: Option<AlertPrinter>,
}

/// A started service.
pub struct RunningService {
    runtime: tokio::runtime::Runtime,
    shutdown: Arc<AtomicBool>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    detection: JoinHandle<Sinks>,
    http_address: SocketAddr,
    metrics: Arc<Metrics>,
    board: Arc<StormBoard>,
    readiness: Arc<Readiness>,
}

/// How far back the committed offsets stay, so a restart rebuilds the engine's state: the
/// longest window the engine looks at plus the allowed lateness.
pub fn rebuild_holdback(config: &Config) -> crate::timefmt::Millis {
    let rules = &config.rules;
    let longest = [
        ALERT_WINDOW,
        millis(rules.exchange.window),
        millis(rules.amplification.window),
        millis(rules.early.window),
        millis(rules.sustained.window),
        millis(config.detection.dedup_window),
    ]
    .into_iter()
    .max()
    .unwrap_or(ALERT_WINDOW);
    longest.saturating_add(millis(config.detection.allowed_lateness))
}

/// Starts the service: checks the brokers, binds HTTP, starts the sinks and the detection
/// thread. Errors are one clear line each (bad URL, port in use, broker unreachable).
pub fn start(config: &Config, options: StartOptions) -> anyhow::Result<RunningService> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stormwatch-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let metrics = Metrics::new();
    let state = HttpState::new(Arc::clone(&metrics), config.http.bearer_token.clone())
        .context("invalid http.bearer_token")?;
    let board = Arc::clone(state.board());
    let readiness = Arc::clone(state.readiness());
    let listener = std::net::TcpListener::bind(&config.http.listen)
        .with_context(|| format!("cannot listen on http.listen = {}", config.http.listen))?;
    listener
        .set_nonblocking(true)
        .context("cannot configure the HTTP socket")?;
    let http_address = listener
        .local_addr()
        .context("cannot read the HTTP address")?;
    let sinks = Sinks::from_config(&config.sinks, Arc::clone(&metrics), runtime.handle())
        .context("invalid sink configuration")?;

    let kafka = &config.kafka;
    let context = SourceContext::new(&kafka.topic, Arc::clone(&metrics));
    let consumer: BaseConsumer<SourceContext> = consumer_config(kafka)
        .create_with_context(context)
        .context("cannot create the Kafka consumer (check kafka.properties)")?;
    consumer
        .fetch_metadata(Some(&kafka.topic), BROKER_TIMEOUT)
        .with_context(|| {
            format!(
                "cannot reach Kafka at kafka.brokers = {} within {}s",
                kafka.brokers,
                BROKER_TIMEOUT.as_secs()
            )
        })?;
    consumer
        .subscribe(&[&kafka.topic])
        .with_context(|| format!("cannot subscribe to kafka.topic = {}", kafka.topic))?;
    let announced = Announced::read_back(kafka, BROKER_TIMEOUT).with_context(|| {
        format!(
            "cannot read back kafka.alerts_topic = {}",
            kafka.alerts_topic
        )
    })?;
    tracing::info!(
        storms = announced.len(),
        "storms already announced on the alerts topic"
    );
    let shutdown = Arc::new(AtomicBool::new(false));
    let (output, settled) =
        producer::DurableOutput::new(kafka, Arc::clone(&metrics), Arc::clone(&shutdown))
            .context("cannot create the Kafka producer (check kafka.properties)")?;

    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = {
        let _guard = runtime.enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).context("cannot use the HTTP socket")?;
        runtime.spawn(crate::http::serve(listener, state, async move {
            let _ = http_stopped.await;
        }))
    };

    let handles = ServiceHandles {
        metrics: Arc::clone(&metrics),
        sinks,
        board: Arc::clone(&board),
        readiness: Arc::clone(&readiness),
        shutdown: Arc::clone(&shutdown),
        alert_printer: options.alert_printer,
    };
    let pipeline = pipeline::Pipeline {
        consumer: Arc::new(consumer),
        output,
        settled,
        engine: {
            let mut engine = Engine::from_config(config);
            match engine.reserve_capacity() {
                Err(error) => {
                    tracing::warn!(%error, "the engine's maps will grow as needed (limits.* are larger than the memory available)");
                }
                Ok(()) if config.limits.pretouch => {
                    let started = Instant::now();
                    let bytes = engine.pretouch_reserved();
                    tracing::info!(
                        bytes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "the engine's map memory for limits.* is backed (limits.pretouch)"
                    );
                }
                Ok(()) => {}
            }
            engine
        },
        announced,
        handles,
        topic: kafka.topic.clone(),
        max_future_skew: millis(config.detection.max_future_skew),
        merge_max_wait: millis(kafka.merge_max_wait),
        holdback: rebuild_holdback(config),
        input: config.input.clone(),
    };
    let detection = std::thread::Builder::new()
        .name("stormwatch-detect".into())
        .spawn(move || pipeline.run())
        .context("cannot start the detection thread")?;
    tracing::info!(
        brokers = %kafka.brokers,
        topic = %kafka.topic,
        alerts_topic = %kafka.alerts_topic,
        http = %http_address,
        "stormwatch running"
    );
    Ok(RunningService {
        runtime,
        shutdown,
        http_stop: Some(http_stop),
        http_task,
        detection,
        http_address,
        metrics,
        board,
        readiness,
    })
}

impl RunningService {
    /// Where the HTTP endpoints listen.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The storms the service currently reports.
    pub fn board(&self) -> &Arc<StormBoard> {
        &self.board
    }

    /// Waits for SIGTERM or SIGINT, then stops.
    pub fn run_until_signalled(self) -> anyhow::Result<()> {
        self.runtime.block_on(shutdown_signal());
        tracing::info!("signal received, shutting down");
        self.stop()
    }

    /// Stops cleanly: the detection thread drains, flushes, commits and leaves the group; the
    /// sinks deliver what they hold (bounded); HTTP stops. `/readyz` answers "shutting down"
    /// from the start, so that a load balancer or rollout moves on during the drain (up to
    /// the producer's flush and the sinks' delivery time) rather than after it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.readiness.set_shutting_down();
        self.shutdown.store(true, Ordering::Relaxed);
        let sinks = self
            .detection
            .join()
            .map_err(|_| anyhow::anyhow!("the detection thread panicked"))?;
        let drained = self.runtime.block_on(sinks.shutdown(SINK_DRAIN));
        if !drained {
            tracing::warn!("some sink alerts were not delivered before shutdown");
        }
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        match self.runtime.block_on(self.http_task) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server error"),
            Err(error) => tracing::warn!(%error, "HTTP task failed"),
        }
        self.runtime.shutdown_timeout(Duration::from_secs(2));
        tracing::info!("stormwatch stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
