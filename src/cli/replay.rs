//! `stormwatch replay`: events (or Postfix / Exchange log lines, `--format`) from a file or
//! stdin through the engine, alerts to stdout, a summary to stderr. Exit 0 unless the input cannot be opened (or the configuration is bad):
//! bad records are reported, never fatal.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use stormwatch::config::Config;
use stormwatch::decode::InputFormat;
use stormwatch::engine::{millis, Engine};
use stormwatch::replay::{events_at_most, replay, ReplayOptions};

/// Arguments of `stormwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What the input holds: `json` (contract events), `postfix` (syslog lines, raw or in
    /// JSON) or `exchange-tracking` (message-tracking CSV). Overrides `input.format`.
    #[arg(long, value_name = "FORMAT")]
    format: Option<InputFormat>,
    /// Events as JSON lines (or log lines); `-` or nothing reads stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    input: String,
}

const READ_BUFFER: usize = 1 << 18;

/// Runs the replay.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let options = ReplayOptions {
        max_future_skew: millis(config.detection.max_future_skew),
        format: args.format.unwrap_or(config.input.format),
        input: config.input.clone(),
        ..ReplayOptions::default()
    };
    if let Err(error) = stormwatch::allocator::avoid_transparent_huge_pages() {
        tracing::debug!(%error, "transparent huge pages stay on");
    }
    let (input, length): (Box<dyn BufRead>, Option<u64>) = if args.input == "-" {
        (
            Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin().lock())),
            None,
        )
    } else {
        let file =
            File::open(&args.input).with_context(|| format!("cannot open {}", args.input))?;
        let length = file.metadata().ok().map(|m| m.len());
        (
            Box::new(BufReader::with_capacity(READ_BUFFER, file)),
            length,
        )
    };
    let mut engine = Engine::from_config(&config);
    if let Err(error) = engine.reserve_entries(length.map(events_at_most)) {
        tracing::warn!(%error, "the engine's maps will grow as needed (limits.* are larger than the memory available)");
    }
    let bar = progress_bar(length);
    let stdout = io::stdout();
    let mut output = stdout.lock();
    let summary = replay(input, &mut engine, &mut output, &options, |bytes| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    })
    .with_context(|| format!("reading {}", args.input))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprint!("{}", summary.render());
    // The process ends here: freeing millions of map entries one by one would only delay it.
    std::mem::forget(engine);
    Ok(ExitCode::SUCCESS)
}

/// A byte progress bar on stderr, only for a file (known length) on a terminal.
fn progress_bar(length: Option<u64>) -> Option<ProgressBar> {
    let length = length?;
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} replay [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}
