//! `stormwatch run`: the service, until SIGTERM or SIGINT. `--print-config` shows the effective
//! configuration (file plus environment) and exits.

use super::logging;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use stormwatch::config::Config;

/// Arguments of `stormwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file and environment overrides) and exit.
    #[arg(long)]
    print_config: bool,
}

/// Runs the service.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    logging::init(logging::Style::Service);
    let service = stormwatch::service::start(&config, Default::default())?;
    service.run_until_signalled()?;
    Ok(ExitCode::SUCCESS)
}
