//! The command line. Every flag can also be set through an environment variable named
//! `RINGCHAT_<FLAG>` (upper case, dashes as underscores); a flag given on the command line wins.
//!
//! This file only describes and validates settings; it starts nothing. README.md's
//! configuration table lists the same flags and must stay in step with this file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Which I/O backend the per-core runtimes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll with one log line saying why.
    Auto,
    /// io_uring or exit with an explanation.
    Uring,
    /// epoll (plain tokio), for containers whose seccomp profile blocks io_uring.
    Epoll,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringchat",
    version,
    about = "Thread-per-core group chat server"
)]
pub struct Config {
    /// Address to listen on (every core binds it with SO_REUSEPORT).
    #[arg(long, env = "RINGCHAT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Worker threads, one per core, each pinned to its core. 0 = the cores available to the process.
    #[arg(long, env = "RINGCHAT_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// I/O backend: auto, uring or epoll.
    #[arg(long, env = "RINGCHAT_IO", value_enum, default_value_t = IoMode::Auto)]
    pub io: IoMode,

    /// Directory of static files (the web client).
    #[arg(long = "static", env = "RINGCHAT_STATIC", default_value = "static")]
    pub static_dir: PathBuf,

    /// Log level (error, warn, info, debug, trace); RUST_LOG, when set, wins.
    #[arg(long, env = "RINGCHAT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, env = "RINGCHAT_KEEP_ALIVE_TIMEOUT", default_value_t = 5)]
    pub keep_alive_timeout: u64,

    /// Requests served on one connection before it is closed.
    #[arg(long, env = "RINGCHAT_KEEP_ALIVE_MAX", default_value_t = 100)]
    pub keep_alive_max: u64,

    /// Seconds a client has to send a complete request head, counted from its first byte
    /// (or from the accept, for the first request): the slowloris defence.
    #[arg(long, env = "RINGCHAT_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,

    /// Seconds a client has to send a whole request body (the slow-body defence).
    #[arg(long, env = "RINGCHAT_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,

    /// Seconds a response may take to be accepted by the client's socket before the
    /// connection is dropped (clients that never read).
    #[arg(long, env = "RINGCHAT_SEND_TIMEOUT", default_value_t = 30)]
    pub send_timeout: u64,

    /// Largest request body accepted, in bytes; larger ones get 413 before the body is read.
    #[arg(long, env = "RINGCHAT_BODY_BYTES_MAX", default_value_t = 1024 * 1024)]
    pub body_bytes_max: u64,

    /// Seconds to wait for in-flight requests after SIGINT/SIGTERM before exiting anyway.
    #[arg(long, env = "RINGCHAT_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,

    /// Open connections per core; further ones are accepted and closed at once.
    #[arg(
        long,
        env = "RINGCHAT_CONNECTIONS_PER_CORE_MAX",
        default_value_t = 10_000
    )]
    pub connections_per_core_max: usize,
}
