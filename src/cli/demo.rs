//! `stormwatch demo`: the service on an embedded Kafka cluster with a generated storm.

use super::logging;
use clap::Args;
use std::process::ExitCode;
use stormwatch::demo::{run as run_demo, DemoOptions};

/// Arguments of `stormwatch demo`; the defaults are the demo.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Event time runs this many times faster than the wall clock.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    speed: u32,
    /// Background events in the generated stream.
    #[arg(long, default_value_t = 30_000)]
    events: u64,
    /// Seed of the generated stream.
    #[arg(long, default_value_t = 2016)]
    seed: u64,
    /// Stop once the stream is produced and every storm has ended, instead of at Ctrl-C.
    #[arg(long)]
    exit_when_done: bool,
    /// Where the HTTP endpoints listen (any free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:9464")]
    http_listen: String,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    logging::init(logging::Style::Demo);
    run_demo(&DemoOptions {
        speed: args.speed,
        background_events: args.events,
        seed: args.seed,
        exit_when_done: args.exit_when_done,
        http_listen: args.http_listen,
        ..DemoOptions::default()
    })?;
    Ok(ExitCode::SUCCESS)
}
