//! The Alertmanager sink: turns alerts into Alertmanager v2 postable alerts
//! (`POST {url}/api/v2/alerts`, a JSON array) and keeps active storms firing.
//!
//! Alertmanager identifies an alert by its label set and resolves one it has not heard about for
//! its `resolve_timeout` (5 min by default). A storm lasts at least the quiet period (30 min),
//! so posting `storm_started` once is not enough: the worker remembers each active storm
//! (`storm_id` -> latest alert, at most [`DEFAULT_MAX_TRACKED_STORMS`], oldest forgotten first)
//! and re-posts them all every `repost_interval` (60 s by default) until their `storm_ended`,
//! which carries `endsAt`, has been delivered.
//!
//! The label set is `alertname="ReplyAllStorm"`, `severity`, `thread_key` (cut to 128 code
//! points), `rule`, `source="stormwatch"`. An escalation changes `severity` and `rule`, which to
//! Alertmanager is a new alert; so the escalated alert is posted together with the superseded
//! warning one, the latter with `endsAt` = now + [`RESOLVE_GRACE`], which resolves it.
//!
//! Why the grace: `deploy/alertmanager/alertmanager.yml` mutes the Prometheus backstop
//! (`stormwatch_storms_active > 0`) while the direct alert fires. The backstop learns that the
//! storm ended only at Prometheus' next scrape and evaluation (up to about 30 s later with the
//! shipped intervals); were the direct alert resolved at once, the still-firing backstop would be
//! unmuted meanwhile and could page at its group's next flush, after the storm ended. So the
//! direct alert ends [`RESOLVE_GRACE`] after the storm does.
//!
//! Counting, with the bounded outcome set of [`super::queue`]: a queued alert counts `delivered`
//! once when accepted (the resolution of a superseded alert rides along, uncounted). A periodic
//! re-post is one attempt per batch (the next interval is its retry): each storm in an accepted
//! batch counts `delivered`, in a failed batch `retried`, in a rejected (4xx) batch `failed` and
//! is forgotten. So `delivered` grows by one per active storm per interval. An alert whose
//! retries ran out is counted `failed` but stays remembered, so the next re-post can still start
//! (or end) the storm in Alertmanager once it is back. Senders are never sent to Alertmanager.

use super::queue::{
    self, AttemptError, Deliver, Delivery, Handled, Poster, SinkHandle, SinkWorker,
};
use super::{SinkError, SinkOptions, ALERTMANAGER};
use crate::alert::{Alert, AlertKind};
use crate::metrics::{Metrics, MAX_THREAD_KEY_LABEL};
use crate::timefmt::{format_millis, now_millis, Millis};
use hashlink::LinkedHashMap;
use reqwest::Url;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// The configuration key the Alertmanager URL comes from (named in errors).
pub const URL_KEY: &str = "sinks.alertmanager.url";
/// How often active storms are re-posted by default.
pub const DEFAULT_REPOST_INTERVAL: Duration = Duration::from_secs(60);
/// Storms remembered for re-posting by default.
pub const DEFAULT_MAX_TRACKED_STORMS: usize = 1_000;
/// The `alertname` label of every alert.
pub const ALERTNAME: &str = "ReplyAllStorm";
/// The path of the v2 alerts endpoint.
const API_PATH: &str = "/api/v2/alerts";
/// Longest `subject` annotation, in code points (the contract's subject bound).
const MAX_SUBJECT: usize = 256;
/// Storms per re-post request.
const REPOST_BATCH: usize = 100;

/// The endpoint for `sinks.alertmanager.url`: the base URL of Alertmanager (with or without a
/// trailing slash, with or without a route prefix), or the full `.../api/v2/alerts` URL.
pub fn api_url(base: &str) -> Result<Url, SinkError> {
    let mut url = queue::parse_http_url(URL_KEY, base)?;
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with(API_PATH) {
        path.to_owned()
    } else {
        format!("{path}{API_PATH}")
    };
    url.set_path(&path);
    Ok(url)
}

/// Starts an Alertmanager sink for the base URL `url` (see [`api_url`]), its worker on
/// `runtime`.
pub fn spawn(
    url: &str,
    options: &SinkOptions,
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) -> Result<(SinkHandle, SinkWorker), SinkError> {
    spawn_url(api_url(url)?, options, metrics, runtime)
}

/// [`spawn`] with the endpoint already resolved.
pub(crate) fn spawn_url(
    url: Url,
    options: &SinkOptions,
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) -> Result<(SinkHandle, SinkWorker), SinkError> {
    let endpoint = url.clone();
    let sink = AlertmanagerSink {
        url,
        storms: LinkedHashMap::new(),
        max_tracked: options.max_tracked_storms.max(1),
        repost_interval: options.repost_interval,
        generator_url: options.generator_url.clone(),
    };
    queue::spawn(ALERTMANAGER, &endpoint, sink, options, metrics, runtime)
}

/// What the worker remembers of one storm.
struct Tracked {
    /// The latest alert (after `storm_ended`, that one, until its delivery).
    latest: Arc<Alert>,
    /// An earlier alert of the storm with another label set (the warning before an escalation)
    /// that Alertmanager still has to be told is resolved, with the `endsAt` to tell it.
    superseded: Option<(Arc<Alert>, Millis)>,
}

/// The worker state of the Alertmanager sink.
struct AlertmanagerSink {
    url: Url,
    /// storm_id -> storm, least recently updated first.
    storms: LinkedHashMap<String, Tracked>,
    max_tracked: usize,
    repost_interval: Duration,
    generator_url: Option<String>,
}

impl AlertmanagerSink {
    /// The postable alerts for one storm: its latest alert, and the resolution of a superseded
    /// one if pending.
    fn postables(&self, tracked: &Tracked, into: &mut Vec<Value>) {
        into.push(postable(
            &tracked.latest,
            ends_at(&tracked.latest),
            self.generator_url.as_deref(),
        ));
        if let Some((old, ends)) = &tracked.superseded {
            into.push(postable(old, Some(*ends), self.generator_url.as_deref()));
        }
    }

    /// Remembers `tracked` as the most recent storm, forgetting the oldest past the cap.
    fn remember(&mut self, id: String, tracked: Tracked) {
        self.storms.insert(id, tracked);
        while self.storms.len() > self.max_tracked {
            if let Some((forgotten, _)) = self.storms.pop_front() {
                warn!(
                    sink = ALERTMANAGER,
                    storm_id = %forgotten,
                    max_tracked = self.max_tracked,
                    "too many active storms to re-post; forgetting the oldest (Alertmanager will resolve it)"
                );
            }
        }
    }

    /// After a storm's alerts were accepted: an ended storm is done, a superseded alert resolved.
    fn accepted(&mut self, id: &str) {
        let ended = match self.storms.get_mut(id) {
            Some(tracked) => {
                tracked.superseded = None;
                tracked.latest.kind == AlertKind::StormEnded
            }
            None => false,
        };
        if ended {
            self.storms.remove(id);
        }
    }
}

/// Whether two alerts of a storm have the same Alertmanager label set.
fn same_labels(a: &Alert, b: &Alert) -> bool {
    a.severity == b.severity && a.rule == b.rule && a.thread_key == b.thread_key
}

/// How long after a storm's end (or an escalation) the direct alert stays firing, so the
/// Prometheus backstop it mutes has resolved first (see the module documentation): two
/// scrape-plus-evaluation rounds at the shipped 15 s intervals, and margin.
pub const RESOLVE_GRACE: Millis = 2 * 60_000;

/// `endsAt` of an alert: [`RESOLVE_GRACE`] after its `at` when the storm ended (never before
/// `startsAt`, which Alertmanager would reject), none while it is active.
fn ends_at(alert: &Alert) -> Option<Millis> {
    (alert.kind == AlertKind::StormEnded)
        .then(|| alert.at.max(alert.started_at).saturating_add(RESOLVE_GRACE))
}

/// The first `max` code points of `text`.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// One Alertmanager v2 postable alert for `alert`.
fn postable(alert: &Alert, ends_at: Option<Millis>, generator_url: Option<&str>) -> Value {
    let thread_key = cut(&alert.thread_key, MAX_THREAD_KEY_LABEL);
    let labels = json!({
        "alertname": ALERTNAME,
        "severity": alert.severity.as_str(),
        "thread_key": thread_key,
        "rule": alert.rule.as_str(),
        "source": "stormwatch",
    });
    let state = if alert.kind == AlertKind::StormEnded {
        "Reply-all storm ended on thread"
    } else {
        "Reply-all storm on thread"
    };
    let mut annotations = Map::new();
    let mut note = |key: &str, value: String| {
        annotations.insert(key.to_owned(), Value::String(value));
    };
    note(
        "summary",
        format!(
            "{state} {thread_key}: {} reply-alls, {} deliveries in the last hour",
            alert.reply_alls, alert.deliveries
        ),
    );
    if let Some(subject) = alert.subject.as_deref() {
        note("subject", cut(subject, MAX_SUBJECT).to_owned());
    }
    note("storm_id", alert.storm_id());
    note("kind", alert.kind.as_str().to_owned());
    note("started_at", format_millis(alert.started_at));
    note("block_until", format_millis(alert.block_until));
    note("reply_alls", alert.reply_alls.to_string());
    note("distinct_senders", alert.distinct_senders.to_string());
    note("deliveries", alert.deliveries.to_string());
    let mut object = Map::new();
    object.insert("labels".into(), labels);
    object.insert("annotations".into(), Value::Object(annotations));
    object.insert(
        "startsAt".into(),
        Value::String(format_millis(alert.started_at)),
    );
    if let Some(ends) = ends_at {
        object.insert("endsAt".into(), Value::String(format_millis(ends)));
    }
    if let Some(url) = generator_url {
        object.insert("generatorURL".into(), Value::String(url.to_owned()));
    }
    Value::Object(object)
}

/// Encodes postable alerts; `None` (counted by the caller) if that ever fails.
fn encode(alerts: &[Value]) -> Option<Vec<u8>> {
    match serde_json::to_vec(alerts) {
        Ok(body) => Some(body),
        Err(error) => {
            warn!(sink = ALERTMANAGER, %error, "alerts could not be encoded");
            None
        }
    }
}

impl Deliver for AlertmanagerSink {
    async fn deliver(&mut self, alert: Arc<Alert>, poster: &Poster) -> Handled {
        let id = alert.storm_id();
        let superseded = match self.storms.get(&id) {
            Some(previous) if !same_labels(&previous.latest, &alert) => {
                let resolved_at = now_millis()
                    .max(previous.latest.started_at)
                    .saturating_add(RESOLVE_GRACE);
                Some((Arc::clone(&previous.latest), resolved_at))
            }
            Some(previous) => previous.superseded.clone(),
            None => None,
        };
        let tracked = Tracked {
            latest: Arc::clone(&alert),
            superseded,
        };
        let mut postables = Vec::with_capacity(2);
        self.postables(&tracked, &mut postables);
        let Some(body) = encode(&postables) else {
            poster.counters.failed.inc();
            return Handled::Done;
        };
        // Remembered before posting: if delivery gives up, the next re-post tries again.
        self.remember(id.clone(), tracked);
        match poster.post_with_retry(&self.url, &body, &alert).await {
            Delivery::Delivered => self.accepted(&id),
            Delivery::Rejected => {
                // Alertmanager would reject it again on every re-post.
                self.storms.remove(&id);
            }
            Delivery::GaveUp => {}
            Delivery::Abandoned => return Handled::Abandoned,
        }
        Handled::Done
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.repost_interval)
    }

    async fn tick(&mut self, poster: &Poster) -> Handled {
        let ids: Vec<String> = self.storms.keys().cloned().collect();
        for batch in ids.chunks(REPOST_BATCH) {
            let mut postables = Vec::with_capacity(batch.len());
            for id in batch {
                if let Some(tracked) = self.storms.get(id) {
                    self.postables(tracked, &mut postables);
                }
            }
            let storms = u64::try_from(batch.len()).unwrap_or(u64::MAX);
            let Some(body) = encode(&postables) else {
                poster.counters.failed.inc_by(storms);
                continue;
            };
            let result = tokio::select! {
                biased;
                () = poster.abandoned() => return Handled::Abandoned,
                result = poster.post_once(&self.url, &body) => result,
            };
            match result {
                Ok(()) => {
                    poster.counters.delivered.inc_by(storms);
                    for id in batch {
                        self.accepted(id);
                    }
                    debug!(sink = ALERTMANAGER, storms, "active storms re-posted");
                }
                Err(AttemptError::Transient { cause, .. }) => {
                    poster.counters.retried.inc_by(storms);
                    warn!(
                        sink = ALERTMANAGER,
                        storms,
                        cause = cause.as_str(),
                        "re-posting active storms failed; trying again at the next interval"
                    );
                }
                Err(AttemptError::Permanent { cause }) => {
                    poster.counters.failed.inc_by(storms);
                    for id in batch {
                        self.storms.remove(id);
                    }
                    warn!(
                        sink = ALERTMANAGER,
                        storms,
                        cause = cause.as_str(),
                        "Alertmanager rejected re-posted storms; forgetting them"
                    );
                }
            }
        }
        Handled::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{RuleName, Severity};

    fn alert(kind: AlertKind) -> Alert {
        Alert {
            kind,
            thread_key: Arc::from("root@example.org"),
            severity: Severity::Warning,
            rule: RuleName::Early,
            at: 1_709_543_280_000,
            started_at: 1_709_543_280_000,
            reply_alls: 3,
            distinct_senders: 3,
            deliveries: 9000,
            subject: Some(Arc::from("Re: all staff")),
            block_until: 1_709_564_880_000,
            senders: Some(crate::alert::SenderList {
                listed: vec![Arc::from("ann@example.org")],
                omitted: 0,
            }),
        }
    }

    #[test]
    fn api_url_accepts_base_prefix_and_full_forms() {
        let expect = "http://am:9093/api/v2/alerts";
        for base in [
            "http://am:9093",
            "http://am:9093/",
            "http://am:9093/api/v2/alerts",
            "http://am:9093/api/v2/alerts/",
            " http://am:9093// ",
        ] {
            assert_eq!(api_url(base).unwrap().as_str(), expect, "{base}");
        }
        assert_eq!(
            api_url("https://ops.example/alertmanager/")
                .unwrap()
                .as_str(),
            "https://ops.example/alertmanager/api/v2/alerts"
        );
        let error = api_url("am:9093").unwrap_err().to_string();
        assert!(error.starts_with("sinks.alertmanager.url: "), "{error}");
    }

    #[test]
    fn postable_has_labels_annotations_and_times() {
        let value = postable(&alert(AlertKind::StormStarted), None, None);
        let labels = &value["labels"];
        assert_eq!(labels["alertname"], "ReplyAllStorm");
        assert_eq!(labels["severity"], "warning");
        assert_eq!(labels["thread_key"], "root@example.org");
        assert_eq!(labels["rule"], "early");
        assert_eq!(labels["source"], "stormwatch");
        assert_eq!(labels.as_object().unwrap().len(), 5);
        let notes = &value["annotations"];
        assert_eq!(
            notes["summary"],
            "Reply-all storm on thread root@example.org: 3 reply-alls, 9000 deliveries in the last hour"
        );
        assert_eq!(notes["subject"], "Re: all staff");
        assert_eq!(notes["storm_id"], alert(AlertKind::StormStarted).storm_id());
        assert_eq!(notes["started_at"], "2024-03-04T09:08:00.000Z");
        assert_eq!(notes["block_until"], "2024-03-04T15:08:00.000Z");
        assert_eq!(value["startsAt"], "2024-03-04T09:08:00.000Z");
        assert!(value.get("endsAt").is_none());
        assert!(value.get("generatorURL").is_none());
        assert!(!value.to_string().contains("ann@example.org"), "no senders");
    }

    #[test]
    fn ended_storm_carries_ends_at_never_before_start() {
        let mut ended = alert(AlertKind::StormEnded);
        ended.at += 1_800_000;
        assert_eq!(ends_at(&ended), Some(ended.at + RESOLVE_GRACE));
        let value = postable(&ended, ends_at(&ended), Some("http://sw/"));
        assert_eq!(value["endsAt"], "2024-03-04T09:40:00.000Z");
        assert_eq!(value["generatorURL"], "http://sw/");
        ended.at = ended.started_at - 5;
        assert_eq!(ends_at(&ended), Some(ended.started_at + RESOLVE_GRACE));
        assert_eq!(ends_at(&alert(AlertKind::StormEscalated)), None);
    }

    #[test]
    fn long_keys_and_subjects_are_cut_by_code_point() {
        let mut long = alert(AlertKind::StormStarted);
        long.thread_key = Arc::from("é".repeat(300).as_str());
        long.subject = Some(Arc::from("ß".repeat(400).as_str()));
        let value = postable(&long, None, None);
        let key = value["labels"]["thread_key"].as_str().unwrap();
        assert_eq!(key.chars().count(), 128);
        let subject = value["annotations"]["subject"].as_str().unwrap();
        assert_eq!(subject.chars().count(), 256);
        long.subject = None;
        assert!(postable(&long, None, None)["annotations"]
            .get("subject")
            .is_none());
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("", 5), "");
    }

    #[test]
    fn tracking_is_bounded_oldest_first() {
        let mut sink = AlertmanagerSink {
            url: api_url("http://127.0.0.1:1").unwrap(),
            storms: LinkedHashMap::new(),
            max_tracked: 3,
            repost_interval: DEFAULT_REPOST_INTERVAL,
            generator_url: None,
        };
        for n in 0..5 {
            let mut a = alert(AlertKind::StormStarted);
            a.started_at += n;
            sink.remember(
                a.storm_id(),
                Tracked {
                    latest: Arc::new(a),
                    superseded: None,
                },
            );
        }
        assert_eq!(sink.storms.len(), 3);
        let kept: Vec<i64> = sink
            .storms
            .values()
            .map(|t| t.latest.started_at - 1_709_543_280_000)
            .collect();
        assert_eq!(kept, vec![2, 3, 4]);
    }
}
