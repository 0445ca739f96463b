//! `stormwatch generate`: a deterministic, labelled synthetic event stream on stdout.

use anyhow::Context;
use clap::Args;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use stormwatch::generate::{generate, GenerateOptions, Scenario};

/// Arguments of `stormwatch generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The traffic to produce.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Seed of every random choice; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Approximate number of background events (default: the scenario's own size).
    #[arg(long)]
    events: Option<u64>,
}

/// Writes the stream to stdout; a closed pipe (`| head`) is a normal end.
pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let options = GenerateOptions {
        scenario: args.scenario,
        seed: args.seed,
        events: args.events,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = generate(&options, &mut out).and_then(|summary| out.flush().map(|()| summary));
    match result {
        Ok(summary) => {
            eprintln!(
                "stormwatch generate: {} events, {} malformed lines, storms: {}",
                summary.events,
                summary.malformed_lines,
                if summary.storms.is_empty() {
                    "none".to_string()
                } else {
                    summary.storms.join(", ")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing the event stream"),
    }
}
