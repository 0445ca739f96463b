//! The command line of contract section 5, with clap. Each subcommand lives in its own module;
//! this one only parses, dispatches and turns errors into one line on stderr.

mod demo;
mod generate;
mod logging;
mod mock_broker;
mod replay;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Detects reply-all storms in mail infrastructure from the mail-log event stream.
#[derive(Debug, Parser)]
#[command(name = "stormwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read events as JSON lines, write alerts as JSON lines to stdout and a summary to stderr.
    Replay(replay::ReplayArgs),
    /// Write a labelled synthetic event stream as JSON lines to stdout.
    Generate(generate::GenerateArgs),
    /// The service: Kafka consumer group, alert sinks, HTTP endpoints.
    Run(run::RunArgs),
    /// The service on an embedded Kafka cluster fed with a generated storm; no setup.
    Demo(demo::DemoArgs),
    /// librdkafka's mock cluster on 127.0.0.1 until SIGTERM (end-to-end tests; hidden).
    #[command(hide = true)]
    MockBroker(mock_broker::MockBrokerArgs),
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::MockBroker(args) => mock_broker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("stormwatch: {error:#}");
            ExitCode::from(2)
        }
    }
}
