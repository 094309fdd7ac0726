//! The `herd` binary: parse, run, map errors to `error:`/`hint:` and an exit
//! code. Everything else is in the library.

use std::io::ErrorKind;

use clap::Parser;

fn main() {
    herd::cli::alias::adopt_argv0();
    let cli = herd::cli::Cli::parse();
    if let Err(e) = herd::cli::run(cli) {
        // `herd list | head`: a closed stdout is not an error (ripgrep does this).
        if let herd::error::Error::Io { source, .. } = &e {
            if source.kind() == ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
        eprintln!("error: {e}");
        if let Some(h) = e.hint() {
            eprintln!("hint: {h}");
        }
        std::process::exit(1);
    }
}
