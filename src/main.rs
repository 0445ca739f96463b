//! The `stormwatch` command: parses the command line and hands each subcommand to its module
//! in [`cli`]. Errors reach the user as one plain line and a non-zero exit.

mod cli;

use std::process::ExitCode;

/// mimalloc: the engine allocates and frees many small, short-lived map nodes and strings;
/// glibc's allocator spent a tenth of replay time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    stormwatch::allocator::keep_freed_memory();
    cli::main()
}
