//! Recording HTTP receivers on 127.0.0.1, in place of Alertmanager or a webhook endpoint: axum
//! servers that keep every request and answer as a test scripts them (503s, 400s, ...).
//! [`Receiver`] runs on the test's tokio runtime; [`Recorder`] is the same on a thread of its
//! own, for tests that have no runtime (the service tests drive the binary's service from
//! plain threads).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
    pub status: StatusCode,
}

type Script = Arc<dyn Fn(usize) -> StatusCode + Send + Sync>;

/// A recording HTTP receiver; `script(n)` is the status of the n-th request (0-based).
#[derive(Clone)]
pub struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
}

impl Receiver {
    pub async fn start(
        script: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
    ) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (Self::serve(listener, script), addr)
    }

    pub fn serve(
        listener: TcpListener,
        script: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
    ) -> Self {
        let receiver = Receiver {
            seen: Arc::default(),
            script: Arc::new(script),
        };
        let app = Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.status.is_success())
            .collect()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    let mut seen = receiver.seen.lock().unwrap();
    let status = (receiver.script)(seen.len());
    seen.push(Seen {
        method,
        path: uri.path().to_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    // A scripted redirect points somewhere a client would follow it to: this receiver again.
    (status, [(header::LOCATION, "/moved")])
}

/// A [`Receiver`] answering `200 OK` to everything, served from a thread of its own until the
/// test process ends.
pub struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    receiver: Receiver,
}

impl Recorder {
    /// Listens on a free port.
    pub fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        listener.set_nonblocking(true).expect("non-blocking");
        let (sender, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                let _ = sender.send(Receiver::serve(listener, |_| StatusCode::OK));
                std::future::pending::<()>().await;
            });
        });
        let receiver = started.recv().expect("the recorder starts");
        Recorder { url, receiver }
    }

    /// The JSON bodies received so far, oldest first.
    pub fn bodies(&self) -> Vec<Value> {
        self.receiver
            .seen()
            .into_iter()
            .map(|seen| seen.body)
            .collect()
    }
}
