//! Log setup: structured `tracing` logs on stderr, filtered by `STORMWATCH_LOG` (as `RUST_LOG`).
//! The service logs JSON lines when stderr is not a terminal (a container's log collector reads
//! them), readable lines otherwise; the demo keeps to warnings so its alert lines stand out.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Which program is logging.
pub enum Style {
    /// `stormwatch run`.
    Service,
    /// `stormwatch demo`.
    Demo,
}

/// Installs the global subscriber.
pub fn init(style: Style) {
    let default = match style {
        Style::Service => "info",
        Style::Demo => "warn",
    };
    let filter =
        EnvFilter::try_from_env("STORMWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if matches!(style, Style::Service) && !std::io::stderr().is_terminal() {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
    if let Err(error) = result {
        eprintln!("stormwatch: logging is not available: {error}");
    }
}
