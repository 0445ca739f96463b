//! The `stormwatch` command: parses the command line and hands each subcommand to its module
//! in [`cli`]. Errors reach the user as one plain line and a non-zero exit.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
