//! stormwatch detects reply-all storms in mail infrastructure from the mail-log event stream.
//!
//! On 14 November 2016 a test message reached every NHSmail account; about 80 reply-alls put
//! ~500 million messages on the network in 75 minutes. Exchange Online now blocks a thread after
//! 10 reply-alls to 2,500+ recipients in an hour; everyone else hears about a storm from users.
//! stormwatch reads the mail-log events and says, within seconds, which thread is storming.
//!
//! # Layout
//!
//! Data flows one way: bytes -> [`decode`] -> [`event::Event`] -> [`engine::Engine`] ->
//! [`alert::Alert`] -> output.
//!
//! - [`event`]: the decoded mail-log event and the id/sender normalization the contract fixes.
//! - [`decode`]: JSON bytes to an event, or a malformed-record reason (a small enum, no allocation).
//! - [`subject`]: RFC 2047 decoding, reply/forward prefixes and subject normalization.
//! - [`engine`]: the pure detector: thread keys, windows, rules, storm lifecycle, bounded state.
//! - [`alert`]: the alert the engine emits and its JSON form (contract section 4).
//! - [`config`]: the TOML configuration, its defaults and `STORMWATCH_SECTION__KEY` overrides.
//! - [`source`]: Kafka input: consumer callbacks, the timestamp-ordered partition merge and
//!   the commit rules.
//! - [`service`]: `stormwatch run`: the intake and detection threads, the durable alerts/DLQ
//!   producer and the wiring of sinks, metrics and HTTP.
//! - [`sink`]: Alertmanager and webhook sinks with bounded queues and retries.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/v1/storms`.
//! - [`latency`]: hdrhistogram-fed latency histograms for Prometheus.
//! - [`demo`]: `stormwatch demo` on an embedded Kafka cluster.
//! - [`replay`]: the offline pipeline behind `stormwatch replay` (lines in, alerts out, a summary).
//! - [`generate`]: deterministic synthetic event streams (`stormwatch generate`).
//! - [`metrics`]: the Prometheus registry of the service.
//! - [`timefmt`]: millisecond timestamps to and from RFC 3339.
//! - [`allocator`]: the settings of the binary's allocator.

pub mod alert;
pub mod allocator;
pub mod config;
pub mod decode;
pub mod demo;
pub mod engine;
pub mod event;
pub mod generate;
pub mod http;
pub mod latency;
pub mod metrics;
pub mod replay;
pub mod service;
pub mod sink;
pub mod source;
pub mod subject;
pub mod timefmt;
