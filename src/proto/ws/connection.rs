//! [`WsConnection`]: the engine for one WebSocket connection after the upgrade, from the first
//! frame to the close handshake or a failure.
//!
//! The server drives it with a few calls: [`WsConnection::handle_input`] the bytes it read
//! (whole frames only; it says how many bytes it used, and the caller keeps the rest for the
//! next read), [`WsConnection::poll_event`] the messages and the client's close,
//! [`WsConnection::poll_transmit`] the control frames to write (pongs, heartbeat pings, close
//! frames), and [`WsConnection::close`] and [`WsConnection::send_ping`] from its own timers and
//! shutdown. Its states:
//!
//! - [`State::Open`]: messages flow both ways.
//! - [`State::Closing`]: we queued a close frame and wait for the client's. Frames are still
//!   decoded and checked, but no more messages are reported and no pings answered.
//! - [`State::Closed`]: the client's close arrived (and our reply is queued, if we had not sent
//!   one). RFC 6455 §7.1.1: "the server MUST close the underlying TCP connection first" once
//!   the handshake is done, so the caller writes what `poll_transmit` gives, then closes.
//! - [`State::Failed`]: the client broke the protocol; a close frame with the error's code is
//!   queued (unless we had sent one already). The caller writes it and closes the connection
//!   without waiting for the client's close (RFC 6455 §7.1.7, "_Fail the WebSocket
//!   Connection_").
//!
//! It keeps no clock: how often to ping, how long to wait for a pong or for the client's close
//! are the caller's, who asks [`WsConnection::last_pong_seen`]. It never writes data frames:
//! the caller writes broadcast frames (encoded once, `encode_text_frame`) while
//! [`WsConnection::is_open`]; since server frames are never fragmented, they may go between
//! the control frames of `poll_transmit` in any order.

use std::collections::VecDeque;

use super::frame::{decode_header, encode_close, encode_ping, encode_pong, unmask_into};
use super::{
    CloseCode, Control, Data, Decode, FrameHeader, OpCode, WS_CONTROL_PAYLOAD_BYTES_MAX,
    WS_EVENTS_PENDING_MAX, WS_FRAGMENT_CHARGE_BYTES, WS_FRAGMENTS_MIN, WS_PONGS_PENDING_MAX,
    WsError, close_code_allowed,
};

/// What the client sent, for the server to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, all its fragments together, valid UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// The client's close frame, valid: a code RFC 6455 allows (`None` when the frame had no
    /// payload; applications report that as 1005) and a UTF-8 reason. The connection is
    /// [`State::Closed`] and reports nothing after this.
    Close {
        code: Option<CloseCode>,
        reason: String,
    },
}

/// Where the connection is in its life; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Closing,
    Closed,
    Failed,
}

/// Incremental UTF-8 validation over pieces of one text message: what std's `from_utf8` says
/// of each piece, with up to 3 bytes of a character cut at a piece boundary carried over.
/// `Utf8Error::error_len()` is `None` exactly when the input ends inside a character that could
/// still be completed, so an invalid byte is refused as soon as it arrives, and a valid prefix
/// is never refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Utf8Validator {
    carry: [u8; 4],
    carry_len: usize,
}

impl Utf8Validator {
    /// Takes the next bytes of the message; `false` once they cannot be UTF-8, whatever follows.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.carry_len > 0 {
            // The carried bytes are a valid, incomplete character; its lead byte gives its width.
            let width = match self.carry[0] {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let take = (width - self.carry_len).min(bytes.len());
            let mut char_bytes = self.carry;
            char_bytes[self.carry_len..self.carry_len + take].copy_from_slice(&bytes[..take]);
            let len = self.carry_len + take;
            match std::str::from_utf8(&char_bytes[..len]) {
                Ok(_) => {
                    self.carry_len = 0;
                    bytes = &bytes[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    self.carry = char_bytes;
                    self.carry_len = len;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len();
                true
            }
            Err(_) => false,
        }
    }
}

/// A message whose final fragment has not arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fragmented {
    None,
    /// `utf8` has seen all of `data`.
    Text {
        data: Vec<u8>,
        utf8: Utf8Validator,
    },
    Binary {
        data: Vec<u8>,
    },
}

impl Fragmented {
    fn len(&self) -> usize {
        match self {
            Fragmented::None => 0,
            Fragmented::Text { data, .. } | Fragmented::Binary { data } => data.len(),
        }
    }
}

/// How far the UTF-8 of the text frame at the front of the input has been checked while its
/// payload was still arriving, so each byte is checked once however small the reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peek {
    header: FrameHeader,
    /// Payload bytes checked.
    checked: usize,
    /// The message's validator after them.
    utf8: Utf8Validator,
}

/// Bytes unmasked at a time on the stack while checking a partial text frame.
const PEEK_CHUNK_BYTES: usize = 256;

const INVALID_TEXT: &str = "text message is not UTF-8";

/// One WebSocket connection's protocol engine, server side.
#[derive(Debug, Clone)]
pub struct WsConnection {
    state: State,
    error: Option<WsError>,
    message_bytes_max: usize,
    fragmented: Fragmented,
    /// Frames of the fragmented message in progress (0 when none).
    fragments: usize,
    peek: Option<Peek>,
    events: VecDeque<Event>,
    /// Encoded frames waiting for `poll_transmit`, written in this order: the pongs (one
    /// frame each, at most [`WS_PONGS_PENDING_MAX`]), then at most one ping and one close.
    pongs_out: VecDeque<Vec<u8>>,
    ping_out: Vec<u8>,
    close_out: Vec<u8>,
    /// We have queued a close frame; nothing may follow it (RFC 6455 §5.5.1).
    close_queued: bool,
    pong_seen: bool,
}

impl WsConnection {
    /// A connection just upgraded, accepting messages up to `message_bytes_max` bytes
    /// (`--ws-max-message`, default [`super::WS_MESSAGE_BYTES_MAX`]).
    pub fn new(message_bytes_max: usize) -> WsConnection {
        WsConnection {
            state: State::Open,
            error: None,
            message_bytes_max,
            fragmented: Fragmented::None,
            fragments: 0,
            peek: None,
            events: VecDeque::new(),
            pongs_out: VecDeque::new(),
            ping_out: Vec::new(),
            close_out: Vec::new(),
            close_queued: false,
            pong_seen: true,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the server may still send data frames: no close frame queued by either side's
    /// doing. RFC 6455 §5.5.1: "After sending a Close frame, the application MUST NOT send any
    /// more data frames."
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The error that failed the connection.
    pub fn error(&self) -> Option<&WsError> {
        self.error.as_ref()
    }

    /// Whether a pong has arrived since the last [`WsConnection::send_ping`] (true before the
    /// first). Any pong counts, solicited or not: it shows the client is alive. RFC 6455
    /// §5.5.3: "A Pong frame MAY be sent unsolicited. This serves as a unidirectional
    /// heartbeat."
    pub fn last_pong_seen(&self) -> bool {
        self.pong_seen
    }

    /// Takes client bytes: every whole frame at the front of `input`, until a partial frame,
    /// the client's close, or [`super::WS_EVENTS_PENDING_MAX`] events waiting. Returns how many
    /// bytes it used; the caller keeps the rest and offers it again, with more, at the front of
    /// the next call (a partial text frame's UTF-8 is checked as it arrives on that basis).
    /// When the event limit stopped it, whole frames may remain: drain the events and call
    /// again until it uses nothing.
    ///
    /// An error fails the connection: a close frame with the error's code is queued, and this
    /// error is returned again by every later call, which uses nothing. Once
    /// [`State::Closed`], it uses nothing.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, WsError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let mut used = 0;
        while self.state != State::Closed && self.events.len() < WS_EVENTS_PENDING_MAX {
            match self.next_frame(&input[used..]) {
                Ok(Some(consumed)) => used += consumed,
                Ok(None) => break,
                Err(error) => {
                    self.fail(error.clone());
                    return Err(error);
                }
            }
        }
        Ok(used)
    }

    /// Handles the frame at the front of `input`, if it is whole: `Some` of its length.
    fn next_frame(&mut self, input: &[u8]) -> Result<Option<usize>, WsError> {
        let (header, header_len) = match decode_header(input)? {
            Decode::Partial => return Ok(None),
            Decode::Complete { value, consumed } => (value, consumed),
        };
        self.check_header(&header)?;
        let available = &input[header_len..];
        // `check_header` bounded the length by the message limit or 125 bytes.
        let Ok(payload_len) = usize::try_from(header.payload_len) else {
            return Err(self.too_big());
        };
        if available.len() < payload_len {
            self.check_partial_text(&header, available)?;
            return Ok(None);
        }
        let peek = self.peek.take().filter(|peek| peek.header == header);
        self.handle_frame(&header, &available[..payload_len], peek)?;
        Ok(Some(header_len + payload_len))
    }

    /// The rules that depend on the message in progress, checked as soon as a header is whole.
    fn check_header(&self, header: &FrameHeader) -> Result<(), WsError> {
        match (header.opcode, &self.fragmented) {
            // RFC 6455 §5.4: "A fragmented message consists of a single frame with the FIN bit
            // clear and an opcode other than 0, followed by zero or more frames with the FIN bit
            // clear and the opcode set to 0, and terminated by a single frame with the FIN bit
            // set and an opcode of 0."
            (OpCode::Data(Data::Continue), Fragmented::None) => {
                return Err(WsError::Protocol(
                    "continuation frame without a message to continue",
                ));
            }
            // RFC 6455 §5.4: "The fragments of one message MUST NOT be interleaved between the
            // fragments of another message unless an extension has been negotiated that can
            // interpret the interleaving."
            (OpCode::Data(Data::Text | Data::Binary), Fragmented::Text { .. })
            | (OpCode::Data(Data::Text | Data::Binary), Fragmented::Binary { .. }) => {
                return Err(WsError::Protocol(
                    "new message before the fragmented one ended",
                ));
            }
            (OpCode::Data(_), fragmented) => {
                // RFC 6455 §10.4: "Such limits SHOULD be enforced [...] an endpoint MAY send a
                // Close frame with status code 1009 when a message is too large". Checked from
                // the declared length, before the payload is waited for or buffered. A
                // fragmented message also has at most `fragments_max` frames, so a flood of
                // empty fragments ends the same way instead of being read forever.
                let room = self.message_bytes_max.saturating_sub(fragmented.len());
                let in_fragments = !header.fin || !matches!(fragmented, Fragmented::None);
                let over_by_fragments = in_fragments && self.fragments >= self.fragments_max();
                if header.payload_len > room as u64 || over_by_fragments {
                    return Err(self.too_big());
                }
            }
            // `decode_header` bounded control payloads to 125 bytes.
            (OpCode::Control(_), _) => {}
        }
        Ok(())
    }

    /// Frames one fragmented message may have: one per [`WS_FRAGMENT_CHARGE_BYTES`] of the
    /// limit (4,096 for 64 KiB), and never fewer than [`WS_FRAGMENTS_MIN`].
    fn fragments_max(&self) -> usize {
        (self.message_bytes_max / WS_FRAGMENT_CHARGE_BYTES).max(WS_FRAGMENTS_MIN)
    }

    fn too_big(&self) -> WsError {
        WsError::MessageTooBig {
            limit_bytes: self.message_bytes_max,
        }
    }

    /// Checks the UTF-8 of the part of a text frame that has arrived, so an invalid byte fails
    /// the connection as soon as it arrives, not when its frame or message ends (the Autobahn
    /// suite's "fail fast" cases, 6.4.*). Only the bytes not checked by an earlier call are
    /// looked at.
    fn check_partial_text(&mut self, header: &FrameHeader, masked: &[u8]) -> Result<(), WsError> {
        let start = match (header.opcode, &self.fragmented) {
            (OpCode::Data(Data::Text), _) => Utf8Validator::default(),
            (OpCode::Data(Data::Continue), Fragmented::Text { utf8, .. }) => *utf8,
            _ => return Ok(()),
        };
        let mut peek = match self.peek {
            Some(peek) if peek.header == *header => peek,
            _ => Peek {
                header: *header,
                checked: 0,
                utf8: start,
            },
        };
        let mut scratch = [0u8; PEEK_CHUNK_BYTES];
        while peek.checked < masked.len() {
            let end = masked.len().min(peek.checked + PEEK_CHUNK_BYTES);
            let chunk = &masked[peek.checked..end];
            for (i, (out, byte)) in scratch.iter_mut().zip(chunk).enumerate() {
                *out = byte ^ header.mask[(peek.checked + i) % 4];
            }
            if !peek.utf8.feed(&scratch[..chunk.len()]) {
                return Err(WsError::InvalidPayload(INVALID_TEXT));
            }
            peek.checked = end;
        }
        self.peek = Some(peek);
        Ok(())
    }

    /// Handles one whole frame; `masked` is its payload as received.
    fn handle_frame(
        &mut self,
        header: &FrameHeader,
        masked: &[u8],
        peek: Option<Peek>,
    ) -> Result<(), WsError> {
        let mut payload = Vec::with_capacity(masked.len());
        unmask_into(masked, header.mask, 0, &mut payload);
        match header.opcode {
            OpCode::Control(Control::Ping) => {
                // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
                // frame in response, unless it already received a Close frame." So each ping
                // gets its pong, in order, however many arrive in one read (Autobahn 2.10). A
                // flood is bounded by §5.5.3: "If an endpoint receives a Ping frame and has not
                // yet sent Pong frame(s) in response to previous Ping frame(s), the endpoint MAY
                // elect to send a Pong frame for only the most recently processed Ping frame."
                // With WS_PONGS_PENDING_MAX waiting, the oldest is dropped for the newest.
                // After our own close nothing more is sent.
                if !self.close_queued {
                    if self.pongs_out.len() == WS_PONGS_PENDING_MAX {
                        self.pongs_out.pop_front();
                    }
                    let mut frame = Vec::with_capacity(2 + payload.len());
                    encode_pong(&payload, &mut frame);
                    self.pongs_out.push_back(frame);
                }
                Ok(())
            }
            OpCode::Control(Control::Pong) => {
                self.pong_seen = true;
                Ok(())
            }
            OpCode::Control(Control::Close) => self.handle_close(&payload),
            OpCode::Data(Data::Text) if header.fin => {
                let text = String::from_utf8(payload)
                    .map_err(|_| WsError::InvalidPayload(INVALID_TEXT))?;
                self.emit(Event::Text(text));
                Ok(())
            }
            OpCode::Data(Data::Binary) if header.fin => {
                self.emit(Event::Binary(payload));
                Ok(())
            }
            OpCode::Data(Data::Text) => {
                let mut utf8 = Utf8Validator::default();
                feed_unchecked(&mut utf8, &payload, peek)?;
                self.fragmented = Fragmented::Text {
                    data: payload,
                    utf8,
                };
                self.fragments = 1;
                Ok(())
            }
            OpCode::Data(Data::Binary) => {
                self.fragmented = Fragmented::Binary { data: payload };
                self.fragments = 1;
                Ok(())
            }
            OpCode::Data(Data::Continue) => self.handle_continuation(header.fin, payload, peek),
            // `decode_header` refuses these; a local invariant, but never worth a panic.
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                Err(WsError::Protocol("reserved opcode"))
            }
        }
    }

    fn handle_continuation(
        &mut self,
        fin: bool,
        payload: Vec<u8>,
        peek: Option<Peek>,
    ) -> Result<(), WsError> {
        self.fragments = if fin { 0 } else { self.fragments + 1 };
        let event = match std::mem::replace(&mut self.fragmented, Fragmented::None) {
            Fragmented::Text { mut data, mut utf8 } => {
                data.extend_from_slice(&payload);
                if !fin {
                    feed_unchecked(&mut utf8, &payload, peek)?;
                    self.fragmented = Fragmented::Text { data, utf8 };
                    return Ok(());
                }
                // RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
                // finds that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint
                // MUST _Fail the WebSocket Connection_." The whole message is checked once more
                // here, so a character cut at its end is refused too.
                Event::Text(
                    String::from_utf8(data).map_err(|_| WsError::InvalidPayload(INVALID_TEXT))?,
                )
            }
            Fragmented::Binary { mut data } => {
                data.extend_from_slice(&payload);
                if !fin {
                    self.fragmented = Fragmented::Binary { data };
                    return Ok(());
                }
                Event::Binary(data)
            }
            // `check_header` refused a continuation with no message to continue.
            Fragmented::None => {
                return Err(WsError::Protocol(
                    "continuation frame without a message to continue",
                ));
            }
        };
        self.emit(event);
        Ok(())
    }

    fn handle_close(&mut self, payload: &[u8]) -> Result<(), WsError> {
        let code = match payload {
            [] => None,
            // RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a
            // 2-byte unsigned integer (in network byte order) representing a status code".
            [_] => return Err(WsError::Protocol("close frame with a 1-byte payload")),
            [high, low, ..] => {
                let code = u16::from_be_bytes([*high, *low]);
                if !close_code_allowed(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                Some(CloseCode::from(code))
            }
        };
        // RFC 6455 §5.5.1: "the body MAY contain UTF-8-encoded data with value /reason/"; §8.1
        // applies to it as to text messages.
        let reason = std::str::from_utf8(payload.get(2..).unwrap_or_default())
            .map_err(|_| WsError::InvalidPayload("close reason is not UTF-8"))?
            .to_owned();
        // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously send a
        // Close frame, the endpoint MUST send a Close frame in response. (When sending a Close
        // frame in response, the endpoint typically echos the status code it received.)"
        if !self.close_queued {
            encode_close(code, "", &mut self.close_out);
            self.close_queued = true;
        }
        self.state = State::Closed;
        self.fragmented = Fragmented::None;
        self.fragments = 0;
        self.peek = None;
        self.events.push_back(Event::Close { code, reason });
        Ok(())
    }

    /// Reports a message while the connection is open; once we have sent a close, the
    /// client's messages are read (to find its close) but dropped.
    fn emit(&mut self, event: Event) {
        if self.state == State::Open {
            self.events.push_back(event);
        }
    }

    fn fail(&mut self, error: WsError) {
        // RFC 6455 §7.1.7: "If _The WebSocket Connection is Established_ prior to the point where
        // the endpoint is required to _Fail the WebSocket Connection_, the endpoint SHOULD send
        // a Close frame with an appropriate status code (Section 7.4) before proceeding to
        // _Close the WebSocket Connection_."
        if !self.close_queued {
            encode_close(
                Some(error.close_code()),
                error.message(),
                &mut self.close_out,
            );
            self.close_queued = true;
        }
        self.state = State::Failed;
        self.fragmented = Fragmented::None;
        self.fragments = 0;
        self.peek = None;
        self.error = Some(error);
    }

    /// The next message or close the client sent, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the control frames waiting to be written (pongs, a heartbeat ping, a close) to
    /// `out`; returns how many bytes it appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        for pong in self.pongs_out.drain(..) {
            out.extend_from_slice(&pong);
        }
        for queued in [&mut self.ping_out, &mut self.close_out] {
            out.extend_from_slice(queued);
            queued.clear();
        }
        out.len() - before
    }

    /// Starts the close handshake from the server's side (shutdown, idle timeout, a policy
    /// violation): queues a close frame and enters [`State::Closing`]. Does nothing unless
    /// [`State::Open`]. A `reason` over [`super::WS_CLOSE_REASON_BYTES_MAX`] bytes is cut at a
    /// character boundary; a code that may not be sent (1005, 1006, 1015, ...) is a bug, sent
    /// as a close without a code.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.state != State::Open {
            return;
        }
        encode_close(Some(code), reason, &mut self.close_out);
        self.close_queued = true;
        self.state = State::Closing;
    }

    /// Queues a heartbeat ping (replacing one not yet written) and forgets any pong seen. Does
    /// nothing once a close is queued. A `payload` over [`WS_CONTROL_PAYLOAD_BYTES_MAX`] bytes
    /// is a bug in the caller and is cut to that length.
    pub fn send_ping(&mut self, payload: &[u8]) {
        if self.close_queued {
            return;
        }
        self.ping_out.clear();
        encode_ping(
            &payload[..payload.len().min(WS_CONTROL_PAYLOAD_BYTES_MAX)],
            &mut self.ping_out,
        );
        self.pong_seen = false;
    }
}

/// Feeds a non-final text fragment to `utf8`, resuming after the bytes `peek` checked while
/// the frame was arriving.
fn feed_unchecked(
    utf8: &mut Utf8Validator,
    payload: &[u8],
    peek: Option<Peek>,
) -> Result<(), WsError> {
    let from = match peek {
        Some(peek) if peek.checked <= payload.len() => {
            *utf8 = peek.utf8;
            peek.checked
        }
        _ => 0,
    };
    if utf8.feed(&payload[from..]) {
        Ok(())
    } else {
        Err(WsError::InvalidPayload(INVALID_TEXT))
    }
}
