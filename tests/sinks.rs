//! The non-durable alert sinks against real HTTP on 127.0.0.1: small axum receivers that
//! record what they get and answer as scripted (503s, 400s, refused connections), so retries,
//! drops, Alertmanager re-posting and shutdown are exercised through reqwest for real.

mod common;

use axum::http::{Method, StatusCode};
use common::receiver::Receiver;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stormwatch::alert::{Alert, AlertKind, RuleName, Severity};
use stormwatch::config::SinksConfig;
use stormwatch::metrics::Metrics;
use stormwatch::sink::{webhook, RetryPolicy, SinkHandle, SinkOptions, SinkWorker, Sinks};
use tokio::net::TcpListener;

const STARTED: i64 = 1_709_543_280_000; // 2024-03-04T09:08:00Z

fn alert(kind: AlertKind, severity: Severity, rule: RuleName, at: i64) -> Alert {
    Alert {
        kind,
        thread_key: Arc::from("all-staff-0001@nhs.example"),
        severity,
        rule,
        at,
        started_at: STARTED,
        reply_alls: 4,
        distinct_senders: 3,
        deliveries: 3_400_000,
        subject: Some(Arc::from("Re: Test message")),
        block_until: STARTED + 6 * 3_600_000,
        senders: None,
    }
}

fn started() -> Alert {
    alert(
        AlertKind::StormStarted,
        Severity::Warning,
        RuleName::Early,
        STARTED,
    )
}

/// Short retries so every test finishes in a second or two.
fn quick(max_attempts: Option<u32>) -> SinkOptions {
    SinkOptions {
        retry: RetryPolicy {
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            max_attempts,
            request_timeout: Duration::from_secs(2),
        },
        repost_interval: Duration::from_millis(200),
        ..SinkOptions::default()
    }
}

fn count(metrics: &Metrics, sink: &str, outcome: &str) -> u64 {
    metrics
        .alerts_sent_total
        .with_label_values(&[sink, outcome])
        .get()
}

async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn webhook_config(url: String) -> SinksConfig {
    let mut config = SinksConfig::default();
    config.webhook.url = Some(url);
    config
}

/// A webhook sink to the receiver at `addr`, with [`quick`] retries of at most 5 attempts.
fn quick_webhook(addr: SocketAddr, metrics: &Metrics) -> (SinkHandle, SinkWorker) {
    webhook::spawn(
        &format!("http://{addr}/"),
        &quick(Some(5)),
        metrics,
        &tokio::runtime::Handle::current(),
    )
    .unwrap()
}

/// A port on which nothing listens (bound, then released).
async fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_503s_and_delivers_once() {
    let (receiver, addr) = Receiver::start(|n| {
        if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    })
    .await;
    let metrics = Metrics::new();
    let sinks = Sinks::from_config_with(
        &webhook_config(format!("http://{addr}/hooks/storms")),
        &quick(Some(5)),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    assert_eq!(sinks.names(), vec!["webhook"]);
    let alert = started();
    sinks.offer(&alert);
    eventually("delivery", Duration::from_secs(5), || {
        count(&metrics, "webhook", "delivered") == 1
    })
    .await;
    assert!(sinks.shutdown(Duration::from_secs(1)).await);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "two 503s, then the 200: {seen:?}");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "the alert arrives exactly once");
    let request = &accepted[0];
    assert_eq!(request.path, "/hooks/storms");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let expected: Value = serde_json::from_str(&alert.to_json()).unwrap();
    assert_eq!(request.body, expected, "the alerts topic's JSON, unchanged");
    for field in stormwatch::alert::REQUIRED_FIELDS {
        assert!(request.body.get(field).is_some(), "{field}");
    }
    assert_eq!(request.body["kind"], "storm_started");
    assert_eq!(request.body["at"], "2024-03-04T09:08:00.000Z");

    assert_eq!(count(&metrics, "webhook", "retried"), 2);
    assert_eq!(count(&metrics, "webhook", "delivered"), 1);
    assert_eq!(count(&metrics, "webhook", "failed"), 0);
    assert_eq!(count(&metrics, "webhook", "dropped"), 0);
    let text = metrics.encode();
    assert!(text.contains("stormwatch_alerts_sent_total"), "{text}");
    assert!(
        text.contains("stormwatch_alert_queue_depth{sink=\"webhook\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_400_is_not_retried() {
    let (receiver, addr) = Receiver::start(|_| StatusCode::BAD_REQUEST).await;
    let metrics = Metrics::new();
    let (handle, worker) = quick_webhook(addr, &metrics);
    assert!(handle.offer(Arc::new(started())));
    eventually("failure", Duration::from_secs(5), || {
        count(&metrics, "webhook", "failed") == 1
    })
    .await;
    // Longer than every backoff of the policy: a retry would have happened by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(count(&metrics, "webhook", "failed"), 1);
    assert_eq!(count(&metrics, "webhook", "retried"), 0);
    assert_eq!(count(&metrics, "webhook", "delivered"), 0);
    assert!(worker.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_the_alert_counts_as_failed() {
    // Followed, a 301, 302 or 303 turns the POST into a GET without the alert, and the page it
    // leads to answers 200: the alert would count as delivered though nobody got it.
    for redirect in [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
    ] {
        let (receiver, addr) = Receiver::start(move |n| match n {
            0 => redirect,
            _ => StatusCode::OK,
        })
        .await;
        let metrics = Metrics::new();
        let (handle, worker) = quick_webhook(addr, &metrics);
        assert!(handle.offer(Arc::new(started())));
        eventually("an outcome", Duration::from_secs(5), || {
            count(&metrics, "webhook", "failed") + count(&metrics, "webhook", "delivered") > 0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = receiver.seen();
        assert_eq!(seen.len(), 1, "{redirect}: {seen:?}");
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(count(&metrics, "webhook", "failed"), 1, "{redirect}");
        assert_eq!(count(&metrics, "webhook", "delivered"), 0, "{redirect}");
        assert!(worker.shutdown(Duration::from_secs(1)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_until_the_receiver_starts() {
    let addr = refused_port().await;
    let metrics = Metrics::new();
    let sinks = Sinks::from_config_with(
        &webhook_config(format!("http://{addr}/hook")),
        &quick(None),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    sinks.offer(&started());
    eventually("a few refused attempts", Duration::from_secs(5), || {
        count(&metrics, "webhook", "retried") >= 3
    })
    .await;
    assert_eq!(count(&metrics, "webhook", "delivered"), 0);

    // The receiver comes up on the same port.
    let listener = TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::serve(listener, |_| StatusCode::OK);
    eventually(
        "delivery after the receiver started",
        Duration::from_secs(5),
        || count(&metrics, "webhook", "delivered") == 1,
    )
    .await;
    assert!(sinks.shutdown(Duration::from_secs(1)).await);
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(receiver.accepted()[0].body["kind"], "storm_started");
    assert_eq!(count(&metrics, "webhook", "failed"), 0);
    assert_eq!(count(&metrics, "webhook", "dropped"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sink_never_blocks_the_offering_thread() {
    let addr = refused_port().await;
    let metrics = Metrics::new();
    let options = SinkOptions {
        queue_capacity: 2,
        retry: RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
            request_timeout: Duration::from_secs(1),
        },
        ..SinkOptions::default()
    };
    let (handle, worker) = webhook::spawn(
        &format!("http://{addr}/"),
        &options,
        &metrics,
        &tokio::runtime::Handle::current(),
    )
    .unwrap();

    // Offer from a plain thread, as the detection thread does: no runtime context there.
    let offering = handle.clone();
    let (accepted, slowest) = std::thread::spawn(move || {
        let alert = Arc::new(started());
        let mut accepted = 0u64;
        let mut slowest = Duration::ZERO;
        for _ in 0..100 {
            let start = Instant::now();
            if offering.offer(Arc::clone(&alert)) {
                accepted += 1;
            }
            slowest = slowest.max(start.elapsed());
        }
        (accepted, slowest)
    })
    .join()
    .unwrap();
    assert!(
        slowest < Duration::from_millis(10),
        "an offer took {slowest:?}"
    );
    assert!(
        (2..=3).contains(&accepted),
        "queue of 2 (+1 in flight): {accepted}"
    );
    assert_eq!(count(&metrics, "webhook", "dropped"), 100 - accepted);
    let depth = metrics
        .alert_queue_depth
        .with_label_values(&["webhook"])
        .get();
    assert!((0..=2).contains(&depth), "{depth}");

    // Shutdown gives up at the deadline; what was queued or in flight is dropped and counted.
    let start = Instant::now();
    assert!(!worker.shutdown(Duration::from_millis(300)).await);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(count(&metrics, "webhook", "dropped"), 100);
    assert_eq!(count(&metrics, "webhook", "delivered"), 0);
    assert_eq!(count(&metrics, "webhook", "failed"), 0);
    // After shutdown an offer is refused at once and counted.
    assert!(!handle.offer(Arc::new(started())));
    assert_eq!(count(&metrics, "webhook", "dropped"), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_what_is_queued() {
    let (receiver, addr) = Receiver::start(|n| {
        // A hiccup in the middle: the drain still retries it.
        if n == 2 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        }
    })
    .await;
    let metrics = Metrics::new();
    let sinks = Sinks::from_config_with(
        &webhook_config(format!("http://{addr}/")),
        &quick(Some(5)),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    for n in 0..5 {
        let mut a = started();
        a.reply_alls = n;
        sinks.offer(&a);
    }
    assert!(sinks.shutdown(Duration::from_secs(5)).await);
    let order: Vec<Value> = receiver
        .accepted()
        .into_iter()
        .map(|s| s.body["reply_alls"].clone())
        .collect();
    assert_eq!(
        order,
        (0..5).map(Value::from).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(count(&metrics, "webhook", "delivered"), 5);
    assert_eq!(count(&metrics, "webhook", "retried"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_lifecycle_reposts_escalates_and_resolves() {
    let (receiver, addr) = Receiver::start(|_| StatusCode::OK).await;
    let metrics = Metrics::new();
    let mut config = SinksConfig::default();
    config.alertmanager.url = Some(format!("http://{addr}/"));
    let sinks = Sinks::from_config_with(
        &config,
        &quick(Some(5)),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    assert_eq!(sinks.names(), vec!["alertmanager"]);
    let bodies = || -> Vec<Vec<Value>> {
        receiver
            .accepted()
            .into_iter()
            .map(|s| {
                assert_eq!(s.path, "/api/v2/alerts");
                assert_eq!(s.content_type.as_deref(), Some("application/json"));
                s.body.as_array().cloned().expect("a JSON array")
            })
            .collect()
    };

    // storm_started: posted with the labels, annotations and startsAt, no endsAt.
    let first = started();
    sinks.offer(&first);
    eventually("storm_started", Duration::from_secs(5), || {
        !bodies().is_empty()
    })
    .await;
    let posted = &bodies()[0];
    assert_eq!(posted.len(), 1);
    let am = &posted[0];
    assert_eq!(
        am["labels"],
        serde_json::json!({
            "alertname": "ReplyAllStorm",
            "severity": "warning",
            "thread_key": "all-staff-0001@nhs.example",
            "rule": "early",
            "source": "stormwatch",
        })
    );
    let notes = &am["annotations"];
    assert_eq!(
        notes["summary"],
        "Reply-all storm on thread all-staff-0001@nhs.example: 4 reply-alls, 3400000 deliveries in the last hour"
    );
    assert_eq!(notes["subject"], "Re: Test message");
    assert_eq!(notes["storm_id"], first.storm_id().as_str());
    assert_eq!(notes["started_at"], "2024-03-04T09:08:00.000Z");
    assert_eq!(notes["block_until"], "2024-03-04T15:08:00.000Z");
    assert_eq!(am["startsAt"], "2024-03-04T09:08:00.000Z");
    assert!(am.get("endsAt").is_none(), "{am}");

    // While active it is re-posted (interval 200 ms here), unchanged and still firing.
    eventually("re-posts", Duration::from_secs(5), || bodies().len() >= 3).await;
    for body in bodies() {
        assert_eq!(body.len(), 1);
        assert_eq!(body[0]["labels"]["severity"], "warning");
        assert!(body[0].get("endsAt").is_none());
    }

    // storm_escalated: the critical alert is posted with the warning one resolved beside it.
    let escalated = alert(
        AlertKind::StormEscalated,
        Severity::Critical,
        RuleName::Exchange,
        STARTED + 600_000,
    );
    sinks.offer(&escalated);
    let has_critical =
        |body: &Vec<Value>| body.iter().any(|a| a["labels"]["severity"] == "critical");
    eventually("storm_escalated", Duration::from_secs(5), || {
        bodies().iter().any(has_critical)
    })
    .await;
    let all = bodies();
    let at = all.iter().position(has_critical).unwrap();
    let escalation = &all[at];
    assert_eq!(escalation.len(), 2, "{escalation:?}");
    let critical = escalation
        .iter()
        .find(|a| a["labels"]["severity"] == "critical")
        .unwrap();
    assert_eq!(critical["labels"]["rule"], "exchange");
    assert_eq!(critical["startsAt"], "2024-03-04T09:08:00.000Z");
    assert!(critical.get("endsAt").is_none());
    let resolved = escalation
        .iter()
        .find(|a| a["labels"]["severity"] == "warning")
        .unwrap();
    assert_eq!(resolved["labels"]["rule"], "early");
    let ends = resolved["endsAt"]
        .as_str()
        .expect("the warning is resolved");
    assert!(ends >= resolved["startsAt"].as_str().unwrap());

    // Later re-posts carry the critical alert alone.
    let seen_before = all.len();
    eventually("re-posts after escalation", Duration::from_secs(5), || {
        bodies().len() >= seen_before + 2
    })
    .await;
    for body in &bodies()[seen_before..] {
        assert_eq!(body.len(), 1, "{body:?}");
        assert_eq!(body[0]["labels"]["severity"], "critical");
        assert!(body[0].get("endsAt").is_none());
    }

    // storm_ended: posted with endsAt = at + the resolve grace, then re-posting stops.
    let ended = alert(
        AlertKind::StormEnded,
        Severity::Critical,
        RuleName::Exchange,
        STARTED + 3_600_000,
    );
    sinks.offer(&ended);
    let is_ended = |body: &Vec<Value>| {
        body.iter()
            .any(|a| a.get("endsAt").is_some() && a["labels"]["severity"] == "critical")
    };
    eventually("storm_ended", Duration::from_secs(5), || {
        bodies().iter().any(is_ended)
    })
    .await;
    let all = bodies();
    let last = all.last().unwrap();
    assert!(is_ended(last), "nothing after the end: {last:?}");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["endsAt"], "2024-03-04T10:10:00.000Z");
    assert_eq!(last[0]["labels"]["rule"], "exchange");
    assert!(last[0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("Reply-all storm ended on thread"));
    let after_end = all.len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        bodies().len(),
        after_end,
        "re-posting stopped after storm_ended"
    );

    // Three queued alerts plus one `delivered` per storm per successful re-post.
    let delivered = count(&metrics, "alertmanager", "delivered");
    assert_eq!(delivered, u64::try_from(after_end).unwrap());
    assert_eq!(count(&metrics, "alertmanager", "failed"), 0);
    assert!(sinks.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_url_may_already_name_the_endpoint() {
    let (receiver, addr) = Receiver::start(|_| StatusCode::OK).await;
    let metrics = Metrics::new();
    let mut config = SinksConfig::default();
    config.alertmanager.url = Some(format!("http://{addr}/api/v2/alerts"));
    let sinks = Sinks::from_config_with(
        &config,
        &quick(Some(3)),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    sinks.offer(&started());
    eventually("post", Duration::from_secs(5), || {
        !receiver.seen().is_empty()
    })
    .await;
    assert_eq!(receiver.seen()[0].path, "/api/v2/alerts");
    assert!(sinks.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_down_then_up_gets_the_active_storm_by_repost() {
    let addr = refused_port().await;
    let metrics = Metrics::new();
    let mut config = SinksConfig::default();
    config.alertmanager.url = Some(format!("http://{addr}"));
    let sinks = Sinks::from_config_with(
        &config,
        &quick(Some(2)),
        metrics.clone(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    sinks.offer(&started());
    eventually("the post to give up", Duration::from_secs(5), || {
        count(&metrics, "alertmanager", "failed") == 1
    })
    .await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::serve(listener, |_| StatusCode::OK);
    eventually("a re-post", Duration::from_secs(5), || {
        !receiver.accepted().is_empty()
    })
    .await;
    let body = &receiver.accepted()[0].body;
    assert_eq!(body[0]["labels"]["alertname"], "ReplyAllStorm");
    assert!(body[0].get("endsAt").is_none());
    // Counted once the sink has the answer, a moment after the receiver has the body.
    eventually(
        "the re-post counted as delivered",
        Duration::from_secs(5),
        || count(&metrics, "alertmanager", "delivered") >= 1,
    )
    .await;
    assert!(sinks.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_key() {
    let metrics = Metrics::new();
    let runtime = tokio::runtime::Handle::current();
    let none = Sinks::from_config(&SinksConfig::default(), metrics.clone(), &runtime).unwrap();
    assert!(none.is_empty());
    none.offer(&started());
    assert!(none.shutdown(Duration::from_millis(10)).await);

    let error = Sinks::from_config(
        &webhook_config("hooks.example/path".into()),
        metrics.clone(),
        &runtime,
    )
    .unwrap_err();
    assert!(
        error.to_string().starts_with("sinks.webhook.url: "),
        "{error}"
    );

    let mut config = SinksConfig::default();
    config.alertmanager.url = Some("ftp://user:secret@am.example/".into());
    config.webhook.url = Some("http://127.0.0.1:1/".into());
    let error = Sinks::from_config(&config, metrics.clone(), &runtime).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("sinks.alertmanager.url: "), "{text}");
    assert!(!text.contains("secret"), "{text}");

    let bad = SinkOptions {
        queue_capacity: 0,
        ..SinkOptions::default()
    };
    let error = Sinks::from_config_with(
        &webhook_config("http://127.0.0.1:1/".into()),
        &bad,
        metrics,
        &runtime,
    )
    .unwrap_err();
    assert!(error.to_string().contains("queue_capacity"), "{error}");
}
