//! A recording HTTP endpoint on 127.0.0.1 for the service tests, in place of Alertmanager or a
//! webhook receiver: it answers every request `200 OK` and keeps each request's JSON body, so a
//! test can read what a sink posted. One request per connection (it answers
//! `connection: close`), served in arrival order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// See the module documentation.
pub struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Recorder {
    /// Listens on a free port until the test process ends.
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = answer(stream) {
                    kept.lock().expect("not poisoned").push(body);
                }
            }
        });
        Recorder { url, bodies }
    }

    /// The bodies received so far, oldest first.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().expect("not poisoned").clone()
    }
}

/// Reads one request, answers it, and returns its body as JSON.
fn answer(mut stream: TcpStream) -> Option<serde_json::Value> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    serde_json::from_slice(&body).ok()
}
