//! The MySQL client/server protocol, client side, as a sans-I/O core: server bytes in, events
//! out; commands in, client bytes out. It speaks to MySQL 8 and later and MariaDB 10.6 and
//! later.
//!
//! - [`packet`]: framing (3-byte length, sequence id), payloads of 16 MiB and more split across
//!   packets and reassembled, and the payload limit checked from the headers before anything is
//!   allocated.
//! - [`Handshake`]: the connection phase as a state machine: the server greeting (protocol
//!   version 10), HandshakeResponse41, and authentication with `mysql_native_password` or
//!   `caching_sha2_password` (fast path, and full authentication through the server's RSA public
//!   key), including an AuthSwitchRequest to either.
//! - [`Connection`]: the engine the runtime drives: `queue` commands (COM_QUERY,
//!   COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_CLOSE, COM_PING, COM_QUIT), `poll_transmit`
//!   the bytes to write, `handle_input` the bytes read, `poll_event` the outcomes (text and
//!   binary result sets decoded into [`Value`]s, OK packets, prepared statements, server errors).
//!
//! It does not open sockets, keep time, retry, pool connections, reconnect or speak TLS (no
//! `CLIENT_SSL`): that is `crate::store`'s job on top of this API. It never asks for multiple
//! statements or multiple result sets, local files, compression, session tracking, query
//! attributes, cursors, or MariaDB's extended capabilities, so the server never sends them.
//! It implements no authentication plugin but the two above; any other is a typed error.
//!
//! Randomness is an argument like time: RSA-OAEP padding draws from a seed the caller passes in
//! [`Options::random_seed`]; nothing here asks the operating system.
//!
//! Every limit is a named constant below. Reaching one is a defined error: a payload over
//! [`MYSQL_PACKET_BYTES_MAX`] ends the connection (the stream cannot be trusted after it); a
//! result over [`MYSQL_COLUMNS_MAX`], [`MYSQL_RESULT_ROWS_MAX`] or [`MYSQL_RESULT_BYTES_MAX`] is
//! read to its end without being kept and reported as [`Event::ResultTooLarge`], and the
//! connection stays usable.

mod command;
mod connection;
mod handshake;
pub mod packet;
mod reader;
mod seeded_rng;
mod value;

#[cfg(test)]
mod tests;

pub use command::{Column, Command, Prepared, QueryResult, ResultLimit, Statement};
pub use connection::{Connection, Event, Phase};
pub use handshake::{
    AUTH_CACHING_SHA2_PASSWORD, AUTH_MYSQL_NATIVE_PASSWORD, Handshake, HandshakeState,
    HandshakeStep, Limits, Options, ServerInfo,
};
pub use mysql_common::Value;
pub use mysql_common::constants::{CapabilityFlags, ColumnFlags, ColumnType, StatusFlags};
pub use value::{binary_param_type, decode_binary_value, encode_binary_value};

/// The largest payload (after reassembly of 16 MiB packets) we accept from the server or build
/// for it. Checked from the packet headers, before the payload is buffered or allocated; a
/// larger one ends the connection with [`MysqlError::PacketTooLarge`]. 32 MiB lets a value
/// cross the 16 MiB packet boundary, which our own rows never come near (the largest column in
/// the schema is a password hash).
pub const MYSQL_PACKET_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Columns in one result set, and parameters in one prepared statement. MySQL allows 4096
/// columns per table; our queries use four.
pub const MYSQL_COLUMNS_MAX: usize = 256;

/// Rows kept from one result set. The chat asks for at most a page of history's worth of users
/// at once.
pub const MYSQL_RESULT_ROWS_MAX: usize = 10_000;

/// Payload bytes of the rows kept from one result set.
pub const MYSQL_RESULT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Commands waiting in a [`Connection`] behind the one in flight.
pub const MYSQL_QUEUED_COMMANDS_MAX: usize = 1024;

/// The server's RSA public key as PEM text (a 4096-bit key is about 800 bytes).
pub const MYSQL_PUBLIC_KEY_BYTES_MAX: usize = 16 * 1024;

/// The result of a decoder that needs a complete unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode<T> {
    /// The input ends before the unit does: read more and call again with all of it. Nothing
    /// was consumed.
    Partial,
    /// The unit was decoded from the first `consumed` bytes of the input.
    Complete { value: T, consumed: usize },
}

/// An ERR packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The MySQL error number, e.g. 1045 (access denied), 1062 (duplicate entry).
    pub code: u16,
    /// The five-character SQLSTATE, e.g. `28000`, `23000`; `HY000` when the server sent none
    /// (an ERR before the handshake carries no state).
    pub state: String,
    /// The human-readable message, decoded as UTF-8 with invalid bytes replaced.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ERROR {} ({}): {}", self.code, self.state, self.message)
    }
}

/// Why the engine failed, or refused a command. Every error from
/// [`Connection::handle_input`] is fatal: the connection must be closed (the engine repeats the
/// error if fed again). Errors from [`Connection::queue`] and [`Connection::new`] concern only
/// that call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MysqlError {
    /// The server sent bytes that cannot be what the protocol allows at this point.
    Malformed(&'static str),
    /// A packet carried another sequence id than the one the protocol expects next.
    Sequence { expected: u8, found: u8 },
    /// A payload announced more than [`MYSQL_PACKET_BYTES_MAX`] (or the connection's lower
    /// [`Limits::packet_bytes_max`]) bytes, or a command would need to send one.
    PacketTooLarge,
    /// The server greets with a protocol version other than 10, or lacks a capability we
    /// require (`CLIENT_PROTOCOL_41`, `CLIENT_SECURE_CONNECTION`, `CLIENT_PLUGIN_AUTH`).
    Unsupported(&'static str),
    /// The server asks for an authentication plugin we do not implement.
    UnsupportedAuthPlugin(String),
    /// Full `caching_sha2_password` authentication over a connection without TLS needs the
    /// server's RSA public key, and we were neither given it nor allowed to ask for it.
    PublicKeyRequired,
    /// The server's RSA public key (given or received) cannot be parsed or used, or the password
    /// is too long for it.
    PublicKey(&'static str),
    /// The server refused the connection: an ERR packet during the handshake (wrong password,
    /// unknown database, host blocked, too many connections).
    Server(ServerError),
    /// An option cannot be sent: a user name or database containing NUL, or a public key that
    /// does not parse.
    InvalidOption(&'static str),
    /// An execute names a statement with a different number of parameters.
    ParamCount { expected: u16, found: usize },
    /// [`MYSQL_QUEUED_COMMANDS_MAX`] commands already wait.
    QueueFull,
    /// The connection has quit or failed; it takes no more commands.
    Closed,
}

impl std::fmt::Display for MysqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MysqlError::Malformed(why) => write!(f, "malformed server packet: {why}"),
            MysqlError::Sequence { expected, found } => {
                write!(f, "packet sequence id {found}, expected {expected}")
            }
            MysqlError::PacketTooLarge => write!(f, "payload over the packet size limit"),
            MysqlError::Unsupported(why) => write!(f, "unsupported server: {why}"),
            MysqlError::UnsupportedAuthPlugin(name) => {
                write!(f, "unsupported authentication plugin {name:?}")
            }
            MysqlError::PublicKeyRequired => write!(
                f,
                "full authentication needs the server's RSA public key: pass it or allow \
                 retrieving it"
            ),
            MysqlError::PublicKey(why) => write!(f, "server RSA public key: {why}"),
            MysqlError::Server(error) => write!(f, "server refused the connection: {error}"),
            MysqlError::InvalidOption(why) => write!(f, "invalid option: {why}"),
            MysqlError::ParamCount { expected, found } => {
                write!(f, "statement takes {expected} parameters, {found} given")
            }
            MysqlError::QueueFull => write!(f, "too many queued commands"),
            MysqlError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for MysqlError {}
