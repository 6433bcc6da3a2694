//! WebSocket (RFC 6455), server side, as a sans-I/O core: an upgrade request in, a 101 or a
//! refusal out; client frames in, messages and control replies out.
//!
//! - [`check_upgrade`] decides an HTTP/1.1 upgrade request ([`crate::proto::http1::RequestHead`])
//!   against RFC 6455 §4.2.1 and the configured [`AllowedOrigins`]: a [`Handshake::Accept`] with
//!   the `Sec-WebSocket-Accept` key (tungstenite's `derive_accept_key`), whose 101 head
//!   [`encode_accept`] writes, or a [`Handshake::Reject`] with its status (400, 403, 405, 426).
//! - [`decode_header`] and [`decode`] read one client frame from the front of a buffer
//!   (`Partial` consumes nothing), refusing an unmasked frame, RSV bits, reserved opcodes,
//!   fragmented or over-long control frames and non-minimal lengths as soon as the offending
//!   byte arrives. `encode_*` append unmasked server frames to a caller's buffer;
//!   [`encode_text_frame`] encodes a broadcast once for every recipient.
//! - [`WsConnection`] is the engine for one connection: [`WsConnection::handle_input`] takes
//!   whole frames, reassembles fragmented messages (control frames may come between the
//!   fragments), validates text as UTF-8 across fragments and fails as soon as an invalid byte
//!   arrives, enforces the message size limit from a frame's declared length, answers pings,
//!   and runs the close handshake from either side. [`WsConnection::poll_event`] gives the
//!   messages and the peer's close; [`WsConnection::poll_transmit`] the pongs, pings and closes
//!   to write.
//!
//! It does not read sockets or clocks, parse configuration, or write data frames for the
//! caller: the server (`crate::server`) owns the socket, calls [`WsConnection::send_ping`] on
//! its heartbeat timer and reads [`WsConnection::last_pong_seen`] to enforce its idle timeout,
//! and writes broadcast frames itself while [`WsConnection::is_open`]. It negotiates no
//! extension (so no permessage-deflate: RSV bits are a protocol error) and no subprotocol.
//!
//! Every error from a client's bytes is a [`WsError`] that names the close code to answer with
//! (1002, 1007 or 1009); it is always the client's fault. The engine has already queued that
//! close frame when it returns the error.

mod connection;
mod frame;
mod handshake;

#[cfg(test)]
mod tests;

pub use crate::proto::http1::Decode;
pub use connection::{Event, State, WsConnection};
pub use frame::{
    Frame, FrameHeader, decode, decode_header, encode_binary, encode_close, encode_frame,
    encode_masked, encode_ping, encode_pong, encode_text, encode_text_frame, is_control,
    server_frame_len, unmask_into,
};
pub use handshake::{
    AllowedOrigins, Handshake, WS_KEY_BYTES, WS_VERSION, check_upgrade, encode_accept,
    origin_allowed,
};
/// tungstenite's frame types: opcodes (with their reserved values, which [`decode_header`]
/// refuses) and close codes.
pub use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// The default for `--ws-max-message`: the largest message, all its fragments together, that a
/// client may send. A frame whose declared length would take its message over the limit is
/// refused with close 1009 as soon as its header arrives, before its payload is waited for.
/// A chat message is a few hundred bytes.
pub const WS_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// The payload of a control frame (close, ping, pong). RFC 6455 §5.5: "All control frames MUST
/// have a payload length of 125 bytes or less".
pub const WS_CONTROL_PAYLOAD_BYTES_MAX: usize = 125;
/// A fragmented message may have one frame per this many bytes of the message limit (4,096
/// frames under the 64 KiB default), so a flood of empty or one-byte fragments closes with
/// 1009 like a message that is too big, instead of being read forever.
pub const WS_FRAGMENT_CHARGE_BYTES: usize = 16;
/// The fewest frames a fragmented message may have, however small the limit.
pub const WS_FRAGMENTS_MIN: usize = 64;

/// The reason text of a close frame: the control payload less its 2-byte status code.
pub const WS_CLOSE_REASON_BYTES_MAX: usize = WS_CONTROL_PAYLOAD_BYTES_MAX - 2;

/// A client frame header: 2 bytes, 8 of extended length, 4 of masking key.
pub const WS_FRAME_HEADER_BYTES_MAX: usize = 14;

/// A server frame header: 2 bytes and 8 of extended length, never a masking key.
pub const WS_SERVER_FRAME_HEADER_BYTES_MAX: usize = 10;

/// Events a [`WsConnection`] holds for [`WsConnection::poll_event`]. With this many waiting,
/// [`WsConnection::handle_input`] stops before the next frame and reports only what it used;
/// the caller drains the events and offers the rest again. So many tiny frames in one read
/// cannot make the queue grow without bound.
pub const WS_EVENTS_PENDING_MAX: usize = 64;

/// Pongs a [`WsConnection`] holds for pings not yet answered. Every ping is answered, in
/// order; with this many pongs waiting, a new ping's pong replaces the oldest one, as RFC 6455
/// §5.5.3 allows. So a ping flood in one read costs at most this many pongs (about 2 KiB).
pub const WS_PONGS_PENDING_MAX: usize = 16;

/// Why a client's frames were refused. Always the client's fault: its bytes broke RFC 6455 or
/// our limit. The reaction is the close code of [`WsError::close_code`] (the engine queues that
/// close frame itself), then closing the TCP connection once it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// A framing or protocol rule broken: close 1002 (protocol error).
    Protocol(&'static str),
    /// Text that is not UTF-8, in a message or a close reason: close 1007 (invalid frame
    /// payload data).
    InvalidPayload(&'static str),
    /// A message over the connection's limit (see [`WS_MESSAGE_BYTES_MAX`]): close 1009
    /// (message too big).
    MessageTooBig { limit_bytes: usize },
}

impl WsError {
    /// The status code of the close frame that answers this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) => CloseCode::Protocol,
            WsError::InvalidPayload(_) => CloseCode::Invalid,
            WsError::MessageTooBig { .. } => CloseCode::Size,
        }
    }

    /// A short explanation, sent as the close frame's reason (at most
    /// [`WS_CLOSE_REASON_BYTES_MAX`] bytes).
    pub fn message(&self) -> &'static str {
        match self {
            WsError::Protocol(why) | WsError::InvalidPayload(why) => why,
            WsError::MessageTooBig { .. } => "message too big",
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::MessageTooBig { limit_bytes } => write!(
                f,
                "WebSocket client sent a message over {limit_bytes} bytes (close 1009)"
            ),
            _ => write!(
                f,
                "WebSocket client error: {} (close {})",
                self.message(),
                u16::from(self.close_code())
            ),
        }
    }
}

impl std::error::Error for WsError {}

/// Whether a close frame may carry `code`, received or sent.
///
/// RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011 for use in close frames; 1004 is reserved,
/// and of 1005, 1006 and 1015: "It is designated for use in applications expecting a status
/// code to indicate that [...]. It MUST NOT be sent in a Close control frame by an endpoint".
/// §7.4.2: "Status codes in the range 0-999 are not used", "1000-2999 are reserved for
/// definition by this protocol, its future revisions, and extensions", "3000-3999 are reserved
/// for use by libraries, frameworks, and applications" (registered with IANA), "4000-4999 are
/// reserved for private use". We refuse every 1xxx-2xxx code RFC 6455 does not define,
/// including 1012-1014, which IANA registered later (tungstenite's `CloseCode::is_allowed`
/// takes 1012 and 1013): browsers let a page send only 1000 and 3000-4999, and the Autobahn
/// suite expects 1000-1003, 1007-1011 and 3000-4999 to be echoed.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}
