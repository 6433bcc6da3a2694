//! The `ringchat` binary: parse the command line, set up logging, start the server.
//!
//! Everything else lives in the library so tests, benchmarks and fuzzers reach the same code.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = ringchat::config::Config::parse();
    ringchat::server::init_logging(&config.log_level);
    ringchat::server::run(config)?;
    Ok(())
}
