//! Message-body decoding (RFC 9112 §6.2 Content-Length, §7.1 chunked), as an explicit state
//! machine that resumes across reads.
//!
//! Appends decoded bytes to a caller's buffer and never consumes past the end of the body (the
//! bytes after it are the next pipelined request). Enforces the body size limit as bytes are
//! decoded, and refuses chunk syntax that parsers disagree on. Does not decode any transfer
//! coding but chunked, and does not keep trailer fields.

use super::request::BodyFraming;
use super::{CHUNK_LINE_BYTES_MAX, TRAILER_BYTES_MAX};

/// Most hex digits in a chunk size: 16 fills a u64.
pub const CHUNK_SIZE_DIGITS_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyProgress {
    pub consumed: usize,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// 413: the body is larger than the configured maximum.
    TooLarge,
    /// 400: malformed chunked framing.
    BadChunk(&'static str),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::BadChunk(_) => 400,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "request body too large",
            BodyError::BadChunk(why) => why,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length body: bytes still to come.
    Length {
        remaining: u64,
    },
    /// Reading the hex digits of a chunk size.
    Size {
        value: u64,
        digits: usize,
    },
    /// Whitespace after the size: only a ';' may follow.
    ExtensionSpace {
        value: u64,
    },
    /// Skipping a chunk extension up to CR.
    Extension {
        value: u64,
    },
    /// Saw CR after the size line; expecting LF.
    SizeLf {
        value: u64,
    },
    /// Chunk data: bytes still to come.
    Data {
        remaining: u64,
    },
    /// After chunk data: expecting CR.
    DataCr,
    /// After chunk data and CR: expecting LF.
    DataLf,
    /// After the last chunk: at the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// CR at the end of a trailer line; expecting LF.
    TrailerLf,
    /// CR of the final empty line; expecting LF.
    EndLf,
    Done,
}

/// Decodes one message body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    decoded: u64,
    limit: u64,
    /// Bytes of the current chunk-size line, bounded by CHUNK_LINE_BYTES_MAX.
    line_bytes: usize,
    trailer_bytes: usize,
}

impl BodyDecoder {
    /// A Content-Length over `body_bytes_max` is refused here, before any body byte is read.
    pub fn new(framing: BodyFraming, body_bytes_max: u64) -> Result<Self, BodyError> {
        let state = match framing {
            BodyFraming::None => State::Done,
            BodyFraming::Length(n) if n > body_bytes_max => return Err(BodyError::TooLarge),
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::Size {
                value: 0,
                digits: 0,
            },
        };
        Ok(BodyDecoder {
            state,
            decoded: 0,
            limit: body_bytes_max,
            line_bytes: 0,
            trailer_bytes: 0,
        })
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what of `buf` belongs to the body, appending decoded bytes to `out`.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<BodyProgress, BodyError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            match self.state {
                State::Length { remaining } | State::Data { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len() - i);
                    out.extend_from_slice(&buf[i..i + take]);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.state = match self.state {
                        State::Length { .. } if remaining == 0 => State::Done,
                        State::Length { .. } => State::Length { remaining },
                        _ if remaining == 0 => State::DataCr,
                        _ => State::Data { remaining },
                    };
                    continue;
                }
                _ => {}
            }
            let b = buf[i];
            i += 1;
            if matches!(
                self.state,
                State::Size { .. }
                    | State::ExtensionSpace { .. }
                    | State::Extension { .. }
                    | State::SizeLf { .. }
            ) {
                self.line_bytes += 1;
                if self.line_bytes > CHUNK_LINE_BYTES_MAX {
                    return Err(BodyError::BadChunk("chunk size line too long"));
                }
            }
            self.state = match self.state {
                // RFC 9112 §7.1: "chunk-size = 1*HEXDIG". No sign, no prefix, no spaces.
                State::Size { value, digits } => {
                    if let Some(d) = hex_value(b) {
                        if digits == CHUNK_SIZE_DIGITS_MAX {
                            return Err(BodyError::BadChunk("chunk size too large"));
                        }
                        State::Size {
                            value: (value << 4) | u64::from(d),
                            digits: digits + 1,
                        }
                    } else if digits == 0 {
                        return Err(BodyError::BadChunk("chunk size is not hexadecimal"));
                    } else if b == b';' {
                        State::Extension { value }
                    } else if b == b' ' || b == b'\t' {
                        State::ExtensionSpace { value }
                    } else if b == b'\r' {
                        State::SizeLf { value }
                    } else {
                        return Err(BodyError::BadChunk("invalid character after chunk size"));
                    }
                }
                // RFC 9112 §7.1.1: "chunk-ext = *( BWS ";" BWS chunk-ext-name ...)": whitespace
                // after the size is allowed only before a ';'.
                State::ExtensionSpace { value } => match b {
                    b' ' | b'\t' => State::ExtensionSpace { value },
                    b';' => State::Extension { value },
                    _ => {
                        return Err(BodyError::BadChunk(
                            "whitespace after chunk size without an extension",
                        ));
                    }
                },
                State::Extension { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(BodyError::BadChunk("bare LF in chunk extension")),
                    0 => return Err(BodyError::BadChunk("NUL in chunk extension")),
                    _ => State::Extension { value },
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunk("chunk size line must end with CRLF"));
                    }
                    self.line_bytes = 0;
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        self.decoded = self.decoded.saturating_add(value);
                        if self.decoded > self.limit {
                            return Err(BodyError::TooLarge);
                        }
                        State::Data { remaining: value }
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                State::DataCr | State::DataLf => {
                    return Err(BodyError::BadChunk("chunk data must end with CRLF"));
                }
                // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(BodyError::BadChunk("bare LF after last chunk")),
                    _ => self.trailer_byte(State::TrailerLine)?,
                },
                State::TrailerLine => match b {
                    b'\r' => self.trailer_byte(State::TrailerLf)?,
                    b'\n' => return Err(BodyError::BadChunk("bare LF in trailer")),
                    0 => return Err(BodyError::BadChunk("NUL in trailer")),
                    _ => self.trailer_byte(State::TrailerLine)?,
                },
                State::TrailerLf if b == b'\n' => self.trailer_byte(State::TrailerStart)?,
                State::TrailerLf => {
                    return Err(BodyError::BadChunk("trailer line must end with CRLF"));
                }
                State::EndLf if b == b'\n' => State::Done,
                State::EndLf => return Err(BodyError::BadChunk("chunked body must end with CRLF")),
                // The loop condition excludes Done, and the data states `continue` above.
                State::Length { .. } | State::Data { .. } | State::Done => self.state,
            };
        }
        Ok(BodyProgress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn trailer_byte(&mut self, next: State) -> Result<State, BodyError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(BodyError::BadChunk("trailer section too large"));
        }
        Ok(next)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
