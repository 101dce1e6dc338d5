//! The `coffer` command line: parses arguments, opens the repository, runs one command, and maps
//! failures to restic's exit codes (documented in README.md):
//! 0 success, 1 fatal error, 3 backup made but some files could not be read, 10 repository does
//! not exist, 11 repository is locked, 12 wrong password, 130 interrupted.

mod cmd;
mod global;
mod ui;

use clap::Parser;

use crate::global::Cli;

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let daemon = matches!(cli.command, cmd::Command::Serve(_));
    ui::init_logging(cli.global.verbose, cli.global.quiet, daemon);
    ui::init_lang(cli.global.config.as_deref());
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = global::exit_code(&e);
            if global::is_broken_pipe(&e) {
                0
            } else {
                ui::print_error(&e);
                code
            }
        }
    };
    std::process::exit(code);
}

/// Packs and chunks are large, short-lived buffers. A fixed mmap threshold makes glibc return
/// them to the system when freed instead of keeping them in arenas, which holds peak memory to
/// what is actually in flight.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
