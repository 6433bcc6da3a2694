//! The `ringchat` binary: parse the command line, set up logging, start the server.
//!
//! Everything else lives in the library so tests, benchmarks and fuzzers reach the same code.

use clap::Parser;

/// mimalloc rather than glibc's malloc: an idle WebSocket connection costs about half the
/// resident memory (bench/results: the `idle` scenario), and allocation is faster. Not under
/// AddressSanitizer (`--cfg ringchat_asan`, set by proto-tests/asan): ASan checks only the heap
/// it intercepts (malloc/free), and mimalloc's own pages would hide every heap error from it.
#[cfg(not(ringchat_asan))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = ringchat::config::Config::parse();
    ringchat::server::init_logging(&config.log_level);
    ringchat::server::run(config)?;
    Ok(())
}
