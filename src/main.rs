//! `audrey-reporting`: wires the crates together and reports how each task
//! ended. Behaviour lives in the crates:
//!
//! - `audrey-core` (`core/`): the event contract, projection, queries;
//! - `audrey-store` (`store/`): the RocksDB store;
//! - `audrey-consumer` (`consumer/`): AMQP ingestion and the publisher;
//! - `audrey-api` (`api/`): XML/JSON reports, health, metrics, replication.
//!
//! Here: [`cli`] (the command line), [`serve`] (the service, and
//! [`bootstrap`], how a replica starts from a peer), [`tools`] (rebuild,
//! export, import), [`simulate`], [`wait`], [`logging`], and [`http_client`], the HTTP(S)
//! client of `wait` and the bootstrap.
// Unsafe code only in `limit_malloc_arenas` (one libc call, allowed there).
#![deny(unsafe_code)]

mod bootstrap;
mod cli;
mod http_client;
mod logging;
mod serve;
mod simulate;
mod tools;
mod wait;

use clap::Parser;

/// glibc's malloc spent a quarter of the time of report requests (many
/// threads, many small rows); mimalloc does not. Its v2 line (the crate's
/// `v2` feature): with v3 the peak RSS of the ingest benchmark was
/// 177-222 MiB over eleven runs, with v2 146-162 MiB over ten, at the same speed
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cli::{Cli, Command};

/// A command line clap cannot parse: EX_USAGE, not clap's 2, which `wait`
/// uses for a timeout.
const USAGE_ERROR: u8 = 64;

/// RocksDB's C++ allocates with glibc's malloc, not mimalloc: its block
/// cache's blocks (freed on eviction) and its memtables' 2 MiB arena blocks.
/// By default glibc gives each thread that allocates its own arena (up to
/// eight per core), each keeping what was freed in it, and, once a large
/// block has been freed, serves later large blocks from the arenas instead
/// of `mmap`. In the query benchmark's service that kept 30 – 40 MiB more
/// resident: peak RSS 195 – 211 MiB by default, 159 – 171 MiB with two
/// arenas (one per core of the target machine) and a fixed mmap threshold,
/// so that a flushed memtable's blocks go back to the system
/// (BENCHMARKS.md, goal 5).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    const ARENAS: libc::c_int = 2;
    const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
    // SAFETY: mallopt only sets glibc's malloc parameters; it is called
    // first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::from(USAGE_ERROR)
            } else {
                std::process::ExitCode::SUCCESS // --help, --version
            };
        }
    };
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(*args)),
        Command::Rebuild(args) => tools::rebuild(&args),
        Command::Export(args) => tools::export(&args),
        Command::Import(args) => tools::import(&args),
        Command::Simulate(args) => runtime.block_on(simulate::run(args)),
        Command::Wait(args) => return wait::run(&args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "stopped");
            eprintln!("audrey-reporting: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
