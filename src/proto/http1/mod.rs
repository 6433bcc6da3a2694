//! HTTP/1.1 (RFC 9112) as a sans-I/O core: request heads in, bodies in, response heads out.
//!
//! - [`decode_request`] turns the bytes of a request head into a [`RequestHead`] borrowing from
//!   the caller's buffer, and refuses everything that could make two parsers disagree about
//!   where a message ends (request smuggling): bare LF, obs-fold, duplicate or conflicting
//!   framing headers.
//! - [`BodyDecoder`] is the state machine for a request body (Content-Length or chunked) that
//!   stops exactly at the body's end, so a pipelined request after it is left intact.
//! - [`encode_status_line`] and [`encode_header`] append a response head to a caller's `Vec`.
//!
//! It does not read sockets, keep time, route requests, percent-decode targets, decompress
//! anything or build responses; that is `crate::server`'s job. It implements no transfer coding
//! other than `chunked`, and only HTTP/1.0 and HTTP/1.1.
//!
//! Every limit is a named constant below; reaching one is an error with a fixed status code
//! ([`RequestError::status`], [`BodyError::status`]), never unbounded growth.

mod body;
mod cookie;
mod request;
mod response;

#[cfg(test)]
mod tests;

pub use body::{BodyDecoder, BodyError, BodyProgress};
pub use cookie::{COOKIE_VALUE_BYTES_MAX, find_cookie, find_in_field, set_cookie_value};
pub use request::{BodyFraming, RequestError, RequestHead, Version, decode_request, origin_form};
pub use response::{HeaderValueError, encode_header, encode_status_line, reason};

/// Request line plus header section, including the blank line that ends it (and any empty lines
/// before the request line); a head that does not end within this many bytes is refused with
/// 431.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Header field lines in one request head; one more is refused with 431.
pub const HEADERS_COUNT_MAX: usize = 100;

/// The request line without its CRLF; a longer one is refused with 414.
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;

/// A chunk-size line without its CRLF, chunk extensions included; a longer one is refused with
/// 400.
pub const CHUNK_LINE_BYTES_MAX: usize = 4096;

/// Hex digits in a chunk size, leading zeros included: 16 digits hold any `u64`, so more can
/// only be an overflow or padding meant to confuse another parser. More is refused with 400.
pub const CHUNK_SIZE_DIGITS_MAX: usize = 16;

/// The trailer section after the last chunk, every field line and its CRLF and the final CRLF
/// included; the fields are skipped, never stored. More is refused with 400.
pub const TRAILER_BYTES_MAX: usize = 8 * 1024;

/// The result of a decoder that needs a complete unit of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode<T> {
    /// The input ends before the unit does: read more and call again with all of it. Nothing
    /// was consumed.
    Partial,
    /// The unit was decoded from the first `consumed` bytes of the input; anything after them
    /// belongs to what follows (a body, or the next pipelined request).
    Complete { value: T, consumed: usize },
}
