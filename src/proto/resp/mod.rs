//! The Redis serialization protocol (RESP2 and RESP3), client side, as a sans-I/O core: reply
//! bytes in, [`Value`]s out; commands in, request bytes out.
//!
//! - [`decode_value`] decodes one reply of any RESP2 or RESP3 type from the front of a buffer,
//!   or says it is [`Decode::Partial`] (consuming nothing and allocating nothing), or refuses it
//!   with a [`RespError`]. Every limit is checked from the header that announces a length or a
//!   count, before anything is waited for or allocated.
//! - [`encode_command`] appends a command (an array of bulk strings) to a caller's buffer;
//!   `encode_hello`, `encode_xadd`, `encode_set_nx_ex` and the others are thin functions over it
//!   for the commands ringchat sends (see the data model in `shared/spec/compat.md`).
//! - [`RespConnection`] is the engine for one pipelined connection: the handshake (`HELLO 3`,
//!   falling back to RESP2 with `AUTH` on a server that does not know `HELLO`, then `SELECT`),
//!   then commands queued with a caller's token, written together by
//!   [`RespConnection::poll_transmit`], and replies matched to their tokens in order. RESP3 push
//!   frames are never matched to a command.
//!
//! It does not open sockets, keep time, retry, reconnect or parse `redis://` URLs: that is
//! `crate::store`'s job on top of this API. It does not speak RESP3 streamed strings and
//! aggregates (`$?`, `*?`, `;`, `.`), which Redis never sends to a client; they are a typed
//! error. Attributes (`|`) are framed and checked like maps, then skipped: the value they
//! annotate is returned without them, since ringchat has no use for them. It does not
//! subscribe, so pushes are kept (up to a limit) for the caller to look at, not dispatched.
//!
//! Why not the `redis-protocol` crate's decoder (6.0.0), which issue 3 suggested: it recurses
//! once per nesting level with no limit, so `*1\r\n` repeated a million times aborts the process
//! with a stack overflow; it does not check that the two bytes after a blob string's data are
//! CRLF (`$3\r\nabcXY` decodes as `abc`); it accepts a bare LF inside a simple string; its
//! RESP3 decoder refuses the RESP2 nulls `$-1` and `*-1`, which a RESP2 fallback needs; it
//! keeps maps and sets in hash containers, losing order and repeated keys; and it re-parses
//! the whole frame on every call with no hint of how much more input it needs. Its streaming
//! `take` of a huge declared length does not allocate, but nothing bounds a reply's total size.
//! Framing RESP is short enough to do here with every limit named; the crate stays a
//! dev-dependency, as an independent decoder the test vectors are cross-checked against.
//!
//! Limits: a reply over any of the `RESP_*_MAX` constants below is a [`RespError::TooLarge`]
//! naming the limit; it ends the connection, since nothing after it can be framed any more.

mod connection;
mod decode;
mod encode;
mod value;

#[cfg(test)]
mod tests;

pub use crate::proto::http1::Decode;
pub use connection::{Credentials, HandshakeStep, Options, Phase, Protocol, RespConnection};
pub use decode::decode_value;
pub use encode::{
    encode_auth, encode_command, encode_del, encode_get, encode_hello, encode_ping, encode_select,
    encode_set_nx_ex, encode_xadd, encode_xrange_after, encode_xread, encode_xrevrange_before,
    encode_xrevrange_newest,
};
pub use value::Value;

/// The data of one blob string, blob error or verbatim string, as its header declares it. A
/// larger declared length is refused as soon as the header's CRLF arrives, before any of the
/// data is waited for. Chat messages and session values are a few KiB at most; Redis's own
/// default ceiling (`proto-max-bulk-len`) is 512 MiB.
pub const RESP_BULK_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Elements of one aggregate (array, set, push), where a map's or attribute's pairs count
/// twice. A larger declared count is refused from the header. A history page is 100 stream
/// entries.
pub const RESP_AGGREGATE_ELEMENTS_MAX: usize = 1024 * 1024;

/// Aggregates enclosing one another in one reply, attributes included. The deepest reply
/// ringchat reads (XREAD, RESP2) has 5 levels. One more level is refused before it is descended
/// into, so the decoder's recursion is bounded by this.
pub const RESP_NESTING_DEPTH_MAX: usize = 32;

/// The text of one line-terminated item (simple string, simple error, number, double, boolean,
/// big number, null) and of every length line, CRLF excluded. A line with no CRLF within this
/// many bytes is refused rather than buffered further.
pub const RESP_LINE_BYTES_MAX: usize = 64 * 1024;

/// One whole reply, attributes included. A reply that needs more bytes than this is refused,
/// so a peer cannot make the caller buffer without bound with many small elements. The decoded
/// [`Value`]s of a reply take at most about 11 times its bytes (a 6-byte map entry `_\r\n_\r\n`
/// becomes a 64-byte pair).
pub const RESP_REPLY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Commands queued in a [`RespConnection`] and not yet answered (written or not). One more is
/// refused with [`RespError::PipelineFull`].
pub const RESP_PIPELINE_COMMANDS_MAX: usize = 16 * 1024;

/// Bytes of queued commands not yet handed to [`RespConnection::poll_transmit`]. A command that
/// would go over is refused with [`RespError::PipelineFull`].
pub const RESP_PIPELINE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// RESP3 push frames kept for [`RespConnection::poll_push`]; later ones are dropped and counted
/// ([`RespConnection::pushes_dropped`]). ringchat subscribes to nothing, so it expects none.
pub const RESP_PUSH_FRAMES_MAX: usize = 64;

/// Which limit a reply or a command went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`RESP_BULK_BYTES_MAX`].
    BulkBytes,
    /// [`RESP_AGGREGATE_ELEMENTS_MAX`].
    AggregateElements,
    /// [`RESP_NESTING_DEPTH_MAX`].
    NestingDepth,
    /// [`RESP_LINE_BYTES_MAX`].
    LineBytes,
    /// [`RESP_REPLY_BYTES_MAX`].
    ReplyBytes,
}

/// Why a reply could not be decoded, a command was refused, or the connection failed.
///
/// Errors about the server's bytes (everything up to [`RespError::TooLarge`]) and
/// [`RespError::UnexpectedReply`] and [`RespError::Refused`] end the connection: the caller
/// closes it and reconnects. [`RespError::Server`] is one command's answer; the connection stays
/// usable. [`RespError::PipelineFull`], [`RespError::BadCommand`] and [`RespError::Closed`]
/// concern only the [`RespConnection::queue`] call that returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// A reply starts with a byte that is no RESP2 or RESP3 type.
    UnknownType(u8),
    /// A length or count that is not decimal digits, or is negative other than a RESP2 null's
    /// `-1`.
    BadLength,
    /// A line not ended by CRLF: a bare LF, a CR followed by something else, or anything but
    /// CRLF after a blob's data.
    BadLineEnd,
    /// An item whose text is not what its type allows (a number out of the 64-bit range, a
    /// boolean other than `t` or `f`, a verbatim string without its `xxx:` format).
    BadValue(&'static str),
    /// A RESP3 feature we do not implement: streamed strings and aggregates.
    Unsupported(&'static str),
    /// A reply over one of the limits.
    TooLarge(Limit),
    /// A reply arrived when no command was waiting for one, or the handshake got an answer of
    /// the wrong type.
    UnexpectedReply,
    /// The server refused the handshake (`HELLO`, `AUTH` or `SELECT`) with this error text, e.g.
    /// `WRONGPASS invalid username-password pair or user is disabled.`
    Refused(Vec<u8>),
    /// The server answered a command with this error text (a simple or blob error, e.g.
    /// `ERR The ID specified in XADD is equal or smaller than the target stream top item`).
    Server(Vec<u8>),
    /// [`RESP_PIPELINE_COMMANDS_MAX`] commands are waiting, or the queued bytes would go over
    /// [`RESP_PIPELINE_BYTES_MAX`].
    PipelineFull,
    /// The bytes given to [`RespConnection::queue`] are not exactly one complete RESP array.
    BadCommand,
    /// The connection has failed; it takes no more commands.
    Closed,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(f, "unknown RESP type byte 0x{byte:02x}"),
            RespError::BadLength => write!(f, "malformed RESP length"),
            RespError::BadLineEnd => write!(f, "RESP line not ended by CRLF"),
            RespError::BadValue(what) => write!(f, "malformed RESP {what}"),
            RespError::Unsupported(what) => write!(f, "unsupported RESP feature: {what}"),
            RespError::TooLarge(limit) => write!(f, "RESP reply over the limit {limit:?}"),
            RespError::UnexpectedReply => write!(f, "unexpected reply from Redis"),
            RespError::Refused(text) => write!(
                f,
                "Redis refused the connection: {}",
                String::from_utf8_lossy(text)
            ),
            RespError::Server(text) => write!(f, "Redis error: {}", String::from_utf8_lossy(text)),
            RespError::PipelineFull => write!(f, "too many queued Redis commands"),
            RespError::BadCommand => write!(f, "not one complete RESP command"),
            RespError::Closed => write!(f, "Redis connection closed"),
        }
    }
}

impl std::error::Error for RespError {}
