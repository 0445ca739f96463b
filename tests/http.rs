//! The HTTP endpoints over a real socket: `serve` on 127.0.0.1:0, requests with reqwest.
//! Covers the probes, the metrics exposition (with the latency histograms), the storms API,
//! bearer-token protection, the method/path/size refusals and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;
use stormwatch::alert::{Alert, AlertKind, RuleName, Severity};
use stormwatch::engine::{StormSnapshot, WindowStats};
use stormwatch::http::{serve, HttpError, HttpState, TokenError};
use stormwatch::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "t0k3n-for-tests";

/// A running server and the means to stop it.
struct Server {
    base: String,
    state: HttpState,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = HttpState::new(Metrics::new(), token.map(str::to_owned)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{address}"),
            state,
            stop: Some(stop),
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        client().get(self.url(path)).send().await.unwrap()
    }

    async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("serve returns after the shutdown signal")
            .unwrap()
    }
}

/// A client that ignores any proxy settings of the environment.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const T0: i64 = 1_479_112_140_000; // 2016-11-14T08:29:00Z

fn snapshot(key: &str, severity: Severity, rule: RuleName, reply_alls: u64) -> StormSnapshot {
    StormSnapshot {
        thread_key: Arc::from(key),
        severity,
        rule,
        started_at: T0,
        last_reply_all: T0 + 120_000,
        last_hour: WindowStats {
            reply_alls,
            deliveries: reply_alls * 850_000,
            distinct_senders: reply_alls - 1,
        },
        subject: Some(Arc::from("Re: Test email")),
    }
}

fn ended_alert(key: &str) -> Alert {
    Alert {
        kind: AlertKind::StormEnded,
        thread_key: Arc::from(key),
        severity: Severity::Critical,
        rule: RuleName::Exchange,
        at: T0 + 1_800_000,
        started_at: T0 - 600_000,
        reply_alls: 14,
        distinct_senders: 13,
        deliveries: 11_900_000,
        subject: Some(Arc::from("Re: old storm")),
        block_until: T0 + 21_000_000,
        // Even when alerts list senders, the board never shows them.
        senders: Some(stormwatch::alert::SenderList {
            listed: vec![Arc::from("alice@nhs.example")],
            omitted: 0,
        }),
    }
}

#[tokio::test]
async fn healthz_is_alive_and_readyz_follows_readiness() {
    let server = Server::start(None).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let not_ready = server.get("/readyz").await;
    assert_eq!(not_ready.status(), 503);
    assert_eq!(not_ready.text().await.unwrap(), "no partitions assigned");

    server.state.readiness().set_assigned(true);
    let catching_up = server.get("/readyz").await;
    assert_eq!(catching_up.status(), 503);
    assert_eq!(catching_up.text().await.unwrap(), "catching up");

    server.state.readiness().set_caught_up(true);
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_expose_build_info_and_latency_families() {
    let server = Server::start(None).await;
    let metrics = server.state.metrics();
    let mut lag = metrics.event_lag.recorder().unwrap();
    lag.record(Duration::from_millis(3));
    lag.record(Duration::from_secs(2));
    lag.flush();
    let mut processing = metrics.processing_latency.recorder().unwrap();
    processing.record(Duration::from_micros(40));
    processing.flush();
    metrics.caught_up.set(1);

    let response = server.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    for expected in [
        "stormwatch_build_info{version=\"",
        "# TYPE stormwatch_event_lag_seconds histogram",
        "stormwatch_event_lag_seconds_bucket{le=\"0.005\"} 1",
        "stormwatch_event_lag_seconds_bucket{le=\"2.5\"} 2",
        "stormwatch_event_lag_seconds_bucket{le=\"+Inf\"} 2",
        "stormwatch_event_lag_seconds_count 2",
        "stormwatch_event_lag_seconds_sum 2.003",
        "# TYPE stormwatch_event_lag_seconds_quantile gauge",
        "stormwatch_event_lag_seconds_quantile{quantile=\"0.999\"}",
        "# TYPE stormwatch_processing_latency_seconds histogram",
        "stormwatch_processing_latency_seconds_bucket{le=\"0.001\"} 1",
        "stormwatch_processing_latency_seconds_quantile{quantile=\"0.5\"} 0.00004",
        "\nstormwatch_caught_up 1\n",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn storms_api_returns_the_board() {
    let server = Server::start(None).await;
    let empty: serde_json::Value = server.get("/api/v1/storms").await.json().await.unwrap();
    assert_eq!(
        empty,
        serde_json::json!({"active": [], "recently_ended": []})
    );

    server.state.board().update(
        vec![
            snapshot("warning-thread", Severity::Warning, RuleName::Early, 4),
            snapshot("nhs-all-staff", Severity::Critical, RuleName::Exchange, 80),
        ],
        [&ended_alert("old-thread")],
    );
    let response = server.get("/api/v1/storms").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body = response.text().await.unwrap();
    assert!(!body.contains("alice"), "no sender address: {body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();

    let active = view["active"].as_array().unwrap();
    assert_eq!(active.len(), 2);
    let first = &active[0];
    assert_eq!(first["thread_key"], "nhs-all-staff", "critical first");
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["rule"], "exchange");
    assert_eq!(first["started_at"], "2016-11-14T08:29:00.000Z");
    assert_eq!(first["last_reply_all"], "2016-11-14T08:31:00.000Z");
    assert_eq!(first["last_hour"]["reply_alls"], 80);
    assert_eq!(first["last_hour"]["distinct_senders"], 79);
    assert_eq!(first["last_hour"]["deliveries"], 68_000_000);
    assert_eq!(first["subject"], "Re: Test email");
    assert_eq!(first["storm_id"].as_str().unwrap().len(), 16);
    assert!(first.get("ended_at").is_none());
    assert_eq!(active[1]["thread_key"], "warning-thread");
    assert_eq!(active[1]["severity"], "warning");

    let ended = view["recently_ended"].as_array().unwrap();
    assert_eq!(ended.len(), 1);
    let old = ended_alert("old-thread");
    assert_eq!(ended[0]["thread_key"], "old-thread");
    assert_eq!(ended[0]["storm_id"], old.storm_id());
    assert_eq!(ended[0]["ended_at"], "2016-11-14T08:59:00.000Z");
    assert_eq!(ended[0]["started_at"], "2016-11-14T08:19:00.000Z");
    assert_eq!(ended[0]["last_hour"]["reply_alls"], 14);
    assert_eq!(ended[0]["subject"], "Re: old storm");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_protects_everything_but_the_probes() {
    let server = Server::start(Some(TOKEN)).await;
    for path in ["/api/v1/storms", "/metrics", "/api/v1/other", "/nowhere"] {
        let missing = server.get(path).await;
        assert_eq!(missing.status(), 401, "{path} without a token");
        assert_eq!(
            missing.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .split_whitespace()
                .next(),
            Some("Bearer")
        );
        let wrong = server.get_with_token(path, "t0k3n-for-tesTs").await;
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let longer = server.get_with_token(path, &format!("{TOKEN}x")).await;
        assert_eq!(longer.status(), 401, "{path} with a longer token");
    }
    let basic = client()
        .get(server.url("/metrics"))
        .basic_auth("prometheus", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401, "basic auth is not a bearer token");

    let storms = server.get_with_token("/api/v1/storms", TOKEN).await;
    assert_eq!(storms.status(), 200);
    let metrics = server.get_with_token("/metrics", TOKEN).await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("stormwatch_build_info"));
    let unknown = server.get_with_token("/nowhere", TOKEN).await;
    assert_eq!(unknown.status(), 404, "authorized, then not found");

    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200, "probes carry no token");
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 503, "not ready, but not unauthorized");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_other_methods_and_big_bodies_are_refused() {
    let server = Server::start(None).await;
    assert_eq!(server.get("/nowhere").await.status(), 404);
    assert_eq!(server.get("/api/v1/storms/extra").await.status(), 404);
    assert_eq!(server.get("/metrics/").await.status(), 404);

    let post = client()
        .post(server.url("/metrics"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let delete = client()
        .delete(server.url("/api/v1/storms"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 405);

    let big = client()
        .post(server.url("/metrics"))
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);

    let head = client().head(server.url("/healthz")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_returns_and_stops_listening() {
    let server = Server::start(None).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    let url = server.url("/healthz");
    let state = server.state.clone();
    server.shutdown().await.unwrap();
    assert_eq!(
        state.readiness().check(),
        Err("shutting down"),
        "shutdown marks the instance not ready"
    );
    let after = client().get(url).send().await;
    assert!(after.is_err(), "nothing listens after shutdown");
}

#[test]
fn an_unusable_token_is_an_error() {
    let empty = HttpState::new(Metrics::new(), Some("   ".to_owned()));
    assert_eq!(
        empty.unwrap_err(),
        HttpError::BearerToken(TokenError::Empty)
    );
    let spaced = HttpState::new(Metrics::new(), Some("a b".to_owned()));
    assert!(spaced.is_err());
    let none = HttpState::new(Metrics::new(), None).unwrap();
    assert!(!none.requires_token());
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_client_stalls_mid_request() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(None).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    server.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < stormwatch::http::SHUTDOWN_GRACE + Duration::from_secs(2),
        "{took:?}"
    );
    drop(stalled);
}
