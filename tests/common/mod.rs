//! Helpers shared by the behaviour tests: run the real `stormwatch` binary and read its output.

#![allow(dead_code)]

pub mod kafka;
pub mod receiver;

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A configuration file for the binary's `--config`, removed when dropped.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    path: String,
}

impl ConfigFile {
    /// A file holding `toml`.
    pub fn new(toml: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stormwatch.toml");
        std::fs::write(&path, toml).expect("the configuration is written");
        ConfigFile {
            path: path.to_string_lossy().into_owned(),
            _dir: dir,
        }
    }

    /// Its path, for `--config`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// The binary under test, built by cargo for the integration tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stormwatch"))
}

/// Runs the binary with `args`, feeding `stdin`, and returns its output.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = binary()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stormwatch starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The binary may stop reading early; a broken pipe here is not the test's failure.
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("stormwatch runs");
    let _ = writer.join();
    output
}

/// `stormwatch generate --scenario NAME --seed SEED [--events N]` stdout.
pub fn generate(scenario: &str, seed: u64, events: Option<u64>) -> Vec<u8> {
    let seed = seed.to_string();
    let events = events.map(|n| n.to_string());
    let mut args = vec!["generate", "--scenario", scenario, "--seed", &seed];
    if let Some(events) = &events {
        args.extend(["--events", events]);
    }
    let output = run(&args, b"");
    assert!(
        output.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Parses JSON lines.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The contract's required alert fields.
pub use stormwatch::alert::REQUIRED_FIELDS;

/// An alert reduced to the required fields, as a canonical string (for set comparison).
pub fn canonical(alert: &serde_json::Value) -> String {
    let mut reduced = serde_json::Map::new();
    for field in REQUIRED_FIELDS {
        let value = alert
            .get(field)
            .cloned()
            .unwrap_or_else(|| serde_json::Value::String("<missing>".into()));
        reduced.insert(field.to_string(), value);
    }
    serde_json::Value::Object(reduced).to_string()
}
