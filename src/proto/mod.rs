//! Sans-I/O protocol cores: bytes in, values and bytes out.
//!
//! Each submodule decodes what a peer sends into values and encodes what we send into a caller's
//! buffer. Nothing here reads or writes a socket, reads a clock, spawns a thread or uses
//! `unsafe`; the runtime (`crate::rt`) and the server (`crate::server`) drive these cores.
//! Incomplete input is `Partial` and consumes nothing; every limit is a named constant.

pub mod http1;
pub mod line;
pub mod mysql;
pub mod resp;
pub mod ws;
