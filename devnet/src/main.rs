//! `sandrun-devnet`: a local Sandrun network in one command.
//!
//! The orchestrator (this binary without a subcommand, [`orchestrator`]) runs the registry
//! in-process and starts each worker as a child process of the same binary
//! (`sandrun-devnet worker`, hidden; [`worker::process`]), so that the `crash` fault is a
//! real process exit. Once every server answers it prints one JSON line (`--json`)
//! describing the network and keeps running until SIGINT/SIGTERM, then stops the
//! workers, which kill their jobs' process groups. The flags of both are in [`cli`].

mod chain;
mod cli;
mod exec;
mod http;
mod ipfs;
mod manifest;
mod orchestrator;
mod registry;
mod sign;
mod upload;
mod util;
mod worker;
mod ws;

use clap::Parser;
use cli::{Cli, Sub};

/// Says what went wrong on stderr and exits 2 (the exit status of a bad command line).
fn die(msg: &str) -> ! {
    eprintln!("sandrun-devnet: {msg}");
    std::process::exit(2)
}

/// The tokio runtime of the orchestrator and of each worker process (two worker threads).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("cannot start runtime: {e}")))
}

fn main() {
    let cli = Cli::parse();
    match cli.worker {
        Some(Sub::Worker(w)) => worker::process::main(w),
        None => orchestrator::run(cli.net, cli.common),
    }
}
