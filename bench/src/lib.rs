//! Measurement helpers shared by ringchat's benchmark programs.
//!
//! What lives here: small, pure pieces a benchmark needs to turn the operating system's counters
//! into numbers (today: a parser for `/proc/<pid>/stat`). What does not: load generators and the
//! scripts that run peers side by side; those are binaries under `src/bin/` and shell scripts in
//! `bench/`. Nothing here links against the `ringchat` package: a benchmark measures the server
//! from the outside, as a client and as `/proc` see it.

pub mod proc_stat;
