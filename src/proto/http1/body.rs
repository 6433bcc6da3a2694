//! Decoding of a request body (RFC 9112 §6.3 Content-Length, §7.1 chunked) as an explicit state
//! machine that resumes across reads.
//!
//! [`BodyDecoder`] appends the decoded bytes to a caller's `Vec` (whole runs of data at once,
//! never byte by byte), enforces the body size limit as soon as a chunk size announces more than
//! it allows, and stops exactly at the end of the body: what follows is the next pipelined
//! request and is never consumed. Chunk syntax that parsers are known to disagree on (signs,
//! `0x`, spaces, overlong sizes, bare LF) is refused.
//!
//! Unlike the head decoder it is stateful: it consumes every byte it is given up to the end of
//! the body, keeping a partial chunk-size line in its state, so the caller can drop consumed
//! input at once. It decodes no transfer coding but chunked, and skips trailer fields without
//! keeping them.

use super::request::{BodyFraming, is_tchar};
use super::{CHUNK_LINE_BYTES_MAX, CHUNK_SIZE_DIGITS_MAX, TRAILER_BYTES_MAX};

/// How far one call to [`BodyDecoder::decode`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyProgress {
    /// Bytes of the input that belonged to the body (framing included).
    pub consumed: usize,
    /// The body is complete; input after `consumed` is the next request.
    pub done: bool,
}

/// Why a body was refused. Either way the connection ends: the rest of the input cannot be
/// trusted to start a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the limit (413).
    TooLarge,
    /// The chunked framing does not follow RFC 9112 §7.1 (400).
    BadChunk(&'static str),
}

impl BodyError {
    /// The response status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::BadChunk(_) => 400,
        }
    }

    /// A short explanation for the client, used in the JSON error body.
    pub fn message(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "request body too large",
            BodyError::BadChunk(why) => why,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for BodyError {}

/// Where the decoder is in the body. The chunked states follow RFC 9112 §7.1:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A Content-Length body with this many bytes still to come.
    Length { remaining: u64 },
    /// Reading the hex digits of a chunk size.
    Size { size: u64, digits: usize },
    /// Whitespace after the size (BWS): only more of it or a `;` may follow.
    SizeSpace { size: u64 },
    /// Skipping a chunk extension up to the CR.
    Extension { size: u64 },
    /// The CR ending the chunk-size line was seen; the LF must follow.
    SizeLf { size: u64 },
    /// Chunk data with this many bytes still to come.
    Data { remaining: u64 },
    /// The chunk data is complete; its CR must follow.
    DataCr,
    /// The CR after the chunk data was seen; the LF must follow.
    DataLf,
    /// At the start of a trailer field line, or of the CRLF that ends the body.
    Trailer,
    /// In a trailer field's name (a token), up to its colon.
    TrailerName,
    /// Skipping a trailer field's value up to its CR.
    TrailerField,
    /// The CR ending a trailer field line was seen; the LF must follow.
    TrailerFieldLf,
    /// The CR of the final CRLF was seen; the LF ends the body.
    EndLf,
    /// The body is complete.
    Done,
}

const BARE_LF: &str = "bare LF in chunked framing; lines must end with CRLF";
const TRAILER_NAME: &str = "a trailer line must be a field name (a token) and a colon";

/// Decodes one request body, across as many calls as its bytes take to arrive.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Body bytes announced so far (chunk sizes whose line is complete).
    decoded_bytes: u64,
    body_bytes_max: u64,
    /// Bytes of the current chunk-size line before its CR, bounded by CHUNK_LINE_BYTES_MAX.
    line_bytes: usize,
    /// Bytes of the trailer section so far, bounded by TRAILER_BYTES_MAX.
    trailer_bytes: usize,
    /// Once refused, the body stays refused.
    failed: Option<BodyError>,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`, refusing more than `body_bytes_max` bytes.
    ///
    /// `Err(TooLarge)` at once when a Content-Length exceeds `body_bytes_max`, so that 413 is
    /// sent before any body byte is read.
    pub fn new(framing: BodyFraming, body_bytes_max: u64) -> Result<Self, BodyError> {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(length) if length > body_bytes_max => {
                return Err(BodyError::TooLarge);
            }
            BodyFraming::Length(length) => State::Length { remaining: length },
            BodyFraming::Chunked => State::Size { size: 0, digits: 0 },
        };
        Ok(BodyDecoder {
            state,
            decoded_bytes: 0,
            body_bytes_max,
            line_bytes: 0,
            trailer_bytes: 0,
            failed: None,
        })
    }

    /// Consumes as much of `buf` as belongs to the body, appending decoded body bytes to `out`.
    ///
    /// Never consumes bytes past the end of the body (they are the next pipelined request).
    /// `Err(TooLarge)` as soon as a chunk size takes the total past `body_bytes_max`, before its
    /// data is read. After an error every call returns the same error.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<BodyProgress, BodyError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.run(buf, out) {
            Ok(consumed) => Ok(BodyProgress {
                consumed,
                done: self.is_done(),
            }),
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn run(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        let mut at = 0;
        while at < buf.len() {
            match self.state {
                State::Done => break,
                State::Length { remaining } => {
                    let taken = copy_run(remaining, &buf[at..], out);
                    at += taken;
                    let remaining = remaining - taken as u64;
                    self.state = if remaining == 0 {
                        State::Done
                    } else {
                        State::Length { remaining }
                    };
                }
                State::Data { remaining } => {
                    let taken = copy_run(remaining, &buf[at..], out);
                    at += taken;
                    let remaining = remaining - taken as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                state => {
                    self.state = self.step(state, buf[at])?;
                    at += 1;
                }
            }
        }
        Ok(at)
    }

    /// One byte of chunked framing (everything but chunk data).
    fn step(&mut self, state: State, byte: u8) -> Result<State, BodyError> {
        if matches!(
            state,
            State::Size { .. } | State::SizeSpace { .. } | State::Extension { .. }
        ) && byte != b'\r'
        {
            // RFC 9112 §7.1.1: "A server ought to limit the total length of chunk extensions
            // received in a request to an amount reasonable for the services provided, in the
            // same way that it applies length limitations and timeouts for other parts of a
            // message, and generate an appropriate 4xx (Client Error) response if that amount
            // is exceeded."
            self.line_bytes += 1;
            if self.line_bytes > CHUNK_LINE_BYTES_MAX {
                return Err(BodyError::BadChunk("chunk-size line too long"));
            }
        }
        if matches!(
            state,
            State::Trailer
                | State::TrailerName
                | State::TrailerField
                | State::TrailerFieldLf
                | State::EndLf
        ) {
            // The trailer section is skipped, but not without bound.
            self.trailer_bytes += 1;
            if self.trailer_bytes > TRAILER_BYTES_MAX {
                return Err(BodyError::BadChunk("trailer section too large"));
            }
        }
        match state {
            State::Size { size, digits } => {
                if let Some(value) = hex_value(byte) {
                    // RFC 9112 §7.1: "Recipients MUST anticipate potentially large hexadecimal
                    // numerals and prevent parsing errors due to integer conversion overflows or
                    // precision loss due to integer representation." 16 digits fill a u64.
                    if digits == CHUNK_SIZE_DIGITS_MAX {
                        return Err(BodyError::BadChunk(
                            "chunk size has more than 16 hex digits",
                        ));
                    }
                    let size = (size << 4) | u64::from(value);
                    if self.decoded_bytes.saturating_add(size) > self.body_bytes_max {
                        return Err(BodyError::TooLarge);
                    }
                    return Ok(State::Size {
                        size,
                        digits: digits + 1,
                    });
                }
                // RFC 9112 §7.1: "chunk-size = 1*HEXDIG". No sign, no `0x`, no leading space.
                if digits == 0 {
                    return Err(BodyError::BadChunk(
                        "chunk size must start with a hex digit",
                    ));
                }
                match byte {
                    b'\r' => Ok(State::SizeLf { size }),
                    b';' => Ok(State::Extension { size }),
                    b' ' | b'\t' => Ok(State::SizeSpace { size }),
                    b'\n' => Err(BodyError::BadChunk(BARE_LF)),
                    _ => Err(BodyError::BadChunk("invalid character after chunk size")),
                }
            }
            // RFC 9112 §7.1.1: "chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
            // chunk-ext-val ] )": whitespace after the size may only lead to a `;`.
            State::SizeSpace { size } => match byte {
                b' ' | b'\t' => Ok(State::SizeSpace { size }),
                b';' => Ok(State::Extension { size }),
                _ => Err(BodyError::BadChunk(
                    "whitespace after chunk size without an extension",
                )),
            },
            // RFC 9112 §7.1.1: "A recipient MUST ignore unrecognized chunk extensions."
            State::Extension { size } => match byte {
                b'\r' => Ok(State::SizeLf { size }),
                b'\n' => Err(BodyError::BadChunk(BARE_LF)),
                _ if is_control(byte) => {
                    Err(BodyError::BadChunk("control character in chunk extension"))
                }
                _ => Ok(State::Extension { size }),
            },
            State::SizeLf { size } => {
                // RFC 9112 §2.2: "A recipient of such a bare CR MUST consider that element to be
                // invalid".
                if byte != b'\n' {
                    return Err(BodyError::BadChunk("chunk-size line must end with CRLF"));
                }
                self.line_bytes = 0;
                if size == 0 {
                    return Ok(State::Trailer);
                }
                // Within the limit: checked as the digits arrived.
                self.decoded_bytes += size;
                Ok(State::Data { remaining: size })
            }
            // RFC 9112 §7.1: "chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF": data
            // longer than its size is not extra data, it is a broken frame.
            State::DataCr if byte == b'\r' => Ok(State::DataLf),
            State::DataLf if byte == b'\n' => Ok(State::Size { size: 0, digits: 0 }),
            State::DataCr | State::DataLf => {
                Err(BodyError::BadChunk("chunk data must be followed by CRLF"))
            }
            // RFC 9112 §7.1.2: "trailer-section = *( field-line CRLF )" and "A recipient that
            // removes the chunked coding from a message MAY selectively retain or discard the
            // received trailer fields." We discard them.
            State::Trailer => match byte {
                b'\r' => Ok(State::EndLf),
                b'\n' => Err(BodyError::BadChunk(BARE_LF)),
                // RFC 9112 §5.2: obs-fold is as unwelcome in a trailer as in the head.
                b' ' | b'\t' => Err(BodyError::BadChunk("obsolete line folding in trailer")),
                _ if is_control(byte) => Err(BodyError::BadChunk("control character in trailer")),
                // RFC 9112 §5: "field-line = field-name ":" OWS field-value OWS", with
                // "field-name = token"; §5.1: "a server MUST reject, with a response status
                // code of 400 (Bad Request), any received request message that contains
                // whitespace between a header field name and colon". Anything else here is not
                // a field line, and reading on would take the next request for trailer fields.
                _ if is_tchar(byte) => Ok(State::TrailerName),
                _ => Err(BodyError::BadChunk(TRAILER_NAME)),
            },
            State::TrailerName => match byte {
                b':' => Ok(State::TrailerField),
                _ if is_tchar(byte) => Ok(State::TrailerName),
                _ => Err(BodyError::BadChunk(TRAILER_NAME)),
            },
            State::TrailerField => match byte {
                b'\r' => Ok(State::TrailerFieldLf),
                b'\n' => Err(BodyError::BadChunk(BARE_LF)),
                _ if is_control(byte) => Err(BodyError::BadChunk("control character in trailer")),
                _ => Ok(State::TrailerField),
            },
            State::TrailerFieldLf if byte == b'\n' => Ok(State::Trailer),
            State::TrailerFieldLf => {
                Err(BodyError::BadChunk("trailer field line must end with CRLF"))
            }
            State::EndLf if byte == b'\n' => Ok(State::Done),
            State::EndLf => Err(BodyError::BadChunk("chunked body must end with CRLF")),
            // `run` handles these without calling `step`.
            State::Length { .. } | State::Data { .. } | State::Done => Ok(state),
        }
    }
}

/// Appends up to `remaining` bytes of `input` to `out` in one copy; returns how many.
fn copy_run(remaining: u64, input: &[u8], out: &mut Vec<u8>) -> usize {
    let taken = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
    out.extend_from_slice(&input[..taken]);
    taken
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// CTL other than HTAB (RFC 5234 B.1: "CTL = %x00-1F / %x7F").
fn is_control(byte: u8) -> bool {
    (byte < b' ' && byte != b'\t') || byte == 0x7f
}
