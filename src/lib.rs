//! ringchat: a thread-per-core group chat server.
//!
//! The module tree mirrors the architecture (see ARCHITECTURE.md):
//! - [`proto`]: sans-I/O protocol cores (bytes in, values and bytes out);
//! - [`rt`]: the only code that knows io_uring, epoll, threads, cores, sockets and timers;
//! - [`chat`]: the chat domain, free of I/O;
//! - [`store`]: persistence behind one interface;
//! - [`accounts`]: request validation and password hashing for the account endpoints;
//! - [`server`]: the wiring of connections to routes, static files and operations endpoints;
//! - [`config`]: the command line and its `RINGCHAT_*` environment variables.
//!
//! `main.rs` only parses the configuration and starts [`server::run`].

pub mod accounts;
pub mod chat;
pub mod config;
pub mod proto;
pub mod rt;
pub mod server;
pub mod store;
