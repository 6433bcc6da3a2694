//! The line port (telnet or netcat chat) as a sans-I/O core: client bytes in, lines out.
//!
//! [`LineDecoder`] cuts a client's byte stream into lines ([`LineEvent`]):
//!
//! - A line ends at LF, CRLF, or telnet's CR NUL; the terminator is not part of the line. A CR
//!   followed by anything else is an ordinary byte of the line.
//! - Telnet commands are removed before lines are cut: `IAC WILL/WONT/DO/DONT x`, a whole
//!   subnegotiation `IAC SB … IAC SE`, and every other two-byte `IAC x`. `IAC IAC` is one 0xFF
//!   data byte (which no UTF-8 line can hold, so its line is [`LineEvent::BadUtf8`]). Commands
//!   are invisible to the line layer: they do not count towards the limit, and `CR IAC NOP LF`
//!   still ends a line with CRLF.
//! - A line holds at most the limit given to [`LineDecoder::new`] (`--line-max-bytes`, default
//!   [`LINE_BYTES_MAX_DEFAULT`]) content bytes. The byte that passes it gives
//!   [`LineEvent::TooLong`] at once, without waiting for the end of the line; the rest of that
//!   line, up to and including its end, is discarded without a further event.
//! - A complete line that is not UTF-8 gives [`LineEvent::BadUtf8`]; empty lines are given
//!   too (as `Line("")`), and the caller ignores them.
//!
//! Unlike the other decoders under `crate::proto`, whose `Partial` consumes nothing and leaves
//! the caller to offer the same bytes again with more appended, this one consumes every byte it
//! is offered up to the end of the first event and keeps the unfinished line itself. That suits
//! this port: a telnet client in character mode sends one keystroke per segment, so re-offering
//! a growing line would scan it again on every read (quadratic in its length), and a line with
//! telnet commands inside it is not a contiguous slice of the input anyway, so nothing could be
//! borrowed from the caller's buffer. Memory stays bounded: the decoder holds at most the limit
//! in content bytes (its buffer never grows past the limit), plus a few bytes of state for a
//! telnet command or subnegotiation in progress and a CR waiting for its next byte; the caller
//! holds nothing between reads. Every state survives a split of the input at any byte.
//!
//! It does not answer telnet negotiation (docs/line-chat.md: it is removed and never
//! answered, so the client stays in the network virtual terminal's defaults), echo, parse chat
//! commands, strip control characters other than the terminators (a NUL or ESC inside a line is
//! the caller's business), or know about sockets and timeouts.

#[cfg(test)]
mod tests;

/// Default limit for --line-max-bytes.
///
/// The content bytes of one line, terminator and telnet commands excluded. A chat line is a few
/// hundred bytes; 16 KiB leaves room for a pasted paragraph.
pub const LINE_BYTES_MAX_DEFAULT: usize = 16 * 1024;

/// The bytes of one telnet subnegotiation between `IAC SB` and `IAC SE`, option code included
/// and `IAC IAC` counted once. Subnegotiations are never stored, so this bounds time, not
/// memory: it keeps a stray `IAC SB` (a netcat user pasting binary, a client that never sends
/// `IAC SE`) from swallowing every line after it. The byte that would pass the limit ends the
/// subnegotiation, as if `IAC SE` had come just before it, and is read as ordinary input.
/// Real subnegotiations are a handful of bytes (NAWS is 5, a terminal type a few dozen).
pub const TELNET_SUBNEGOTIATION_BYTES_MAX: usize = 1024;

/// Telnet "Interpret As Command" (RFC 854).
pub const TELNET_IAC: u8 = 255;
/// Telnet "End of subnegotiation parameters" (RFC 854).
pub const TELNET_SE: u8 = 240;
/// Telnet "Indicates that what follows is subnegotiation of the indicated option" (RFC 854).
pub const TELNET_SB: u8 = 250;
/// Telnet WILL, the first of the four option negotiation commands WILL, WON'T, DO, DON'T
/// (251..=254 in RFC 854), each followed by one option code byte.
pub const TELNET_WILL: u8 = 251;
/// Telnet DON'T, the last of the four option negotiation commands.
pub const TELNET_DONT: u8 = 254;

const LF: u8 = b'\n';
const CR: u8 = b'\r';
const NUL: u8 = 0;

/// What one call to [`LineDecoder::decode`] completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line: terminator removed, telnet commands removed, valid UTF-8.
    Line(String),
    /// The current line passed the limit: reported once, at the moment it passes (so memory
    /// stays bounded and the client hears at once); the rest of that line up to its end is
    /// discarded silently.
    TooLong,
    /// A complete line that is not valid UTF-8 (dropped).
    BadUtf8,
}

/// Where the decoder is in the telnet command layer, beneath the lines.
///
/// RFC 854: "All TELNET commands consist of at least a two byte sequence: the "Interpret as
/// Command" (IAC) escape character followed by the code for the command."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    /// Ordinary data: bytes go to the line.
    Data,
    /// An IAC was read; the next byte is a command code (or a second IAC: a data byte 255).
    Command,
    /// WILL, WON'T, DO or DON'T was read; the next byte is its option code, dropped.
    Option,
    /// Inside `IAC SB … IAC SE`, `bytes` of it read so far.
    Subnegotiation { bytes: usize },
    /// An IAC inside a subnegotiation; the next byte decides: SE ends it, IAC is a data byte
    /// of it.
    SubnegotiationCommand { bytes: usize },
}

/// Cuts one connection's byte stream into lines, across as many reads as they take.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    line_bytes_max: usize,
    /// Content bytes of the unfinished line, never more than `line_bytes_max` (its capacity
    /// neither: see [`LineDecoder::reserve`]). Empty while discarding.
    line: Vec<u8>,
    /// The last data byte was a CR not yet known to be a terminator (CR LF, CR NUL) or a byte
    /// of the line (CR anything else). It is not in `line` and not counted until then.
    cr_pending: bool,
    /// The line passed the limit and [`LineEvent::TooLong`] was given; its bytes are dropped
    /// until its end.
    discarding: bool,
    telnet: Telnet,
}

impl LineDecoder {
    /// A decoder for lines of at most `line_bytes_max` content bytes. Allocates nothing until
    /// bytes arrive.
    pub fn new(line_bytes_max: usize) -> LineDecoder {
        LineDecoder {
            line_bytes_max,
            line: Vec::new(),
            cr_pending: false,
            discarding: false,
            telnet: Telnet::Data,
        }
    }

    /// Consumes bytes of `input` up to and including the point where the first event is
    /// complete (or all of `input` when none completes), and returns how many it used and the
    /// event, if any. Callers loop:
    /// `while !input.is_empty() { let (used, ev) = d.decode(input); input = &input[used..]; ... }`.
    ///
    /// Always makes progress: `used > 0` when `input` is not empty. Unlike the other decoders'
    /// `Partial`, which consumes nothing, the unfinished line is kept inside the decoder
    /// (bounded by the limit); see the module documentation for why.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<LineEvent>) {
        let mut at = 0;
        while at < input.len() {
            // The common case, a run of plain text, is copied (or skipped) in one go.
            if self.telnet == Telnet::Data && !self.cr_pending {
                let rest = &input[at..];
                let run = rest
                    .iter()
                    .position(|&b| matches!(b, LF | CR | TELNET_IAC))
                    .unwrap_or(rest.len());
                if run > 0 {
                    if self.discarding {
                        at += run;
                        continue;
                    }
                    let room = self.line_bytes_max.saturating_sub(self.line.len());
                    if run > room {
                        // The byte at `at + room` passes the limit: report it now.
                        return (at + room + 1, Some(self.too_long()));
                    }
                    self.reserve(run);
                    self.line.extend_from_slice(&rest[..run]);
                    at += run;
                    continue;
                }
            }
            let byte = input[at];
            at += 1;
            if let Some(event) = self.handle_byte(byte) {
                return (at, Some(event));
            }
        }
        (input.len(), None)
    }

    /// Bytes of an unfinished line held now (never more than the limit).
    ///
    /// A CR waiting to learn whether it ends the line is not counted: it is a flag, not a held
    /// byte, until the next data byte makes it one.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// One byte through the telnet layer, then, if it is data, through the line layer.
    fn handle_byte(&mut self, byte: u8) -> Option<LineEvent> {
        match self.telnet {
            Telnet::Data => {
                if byte == TELNET_IAC {
                    self.telnet = Telnet::Command;
                    None
                } else {
                    self.handle_data(byte)
                }
            }
            Telnet::Command => self.handle_command(byte),
            Telnet::Option => {
                self.telnet = Telnet::Data;
                None
            }
            Telnet::Subnegotiation { bytes } => {
                if byte == TELNET_IAC {
                    self.telnet = Telnet::SubnegotiationCommand { bytes };
                    None
                } else if bytes >= TELNET_SUBNEGOTIATION_BYTES_MAX {
                    // Too long to be a real subnegotiation: it ends before this byte.
                    self.telnet = Telnet::Data;
                    self.handle_data(byte)
                } else {
                    self.telnet = Telnet::Subnegotiation { bytes: bytes + 1 };
                    None
                }
            }
            Telnet::SubnegotiationCommand { bytes } => match byte {
                TELNET_SE => {
                    self.telnet = Telnet::Data;
                    None
                }
                // RFC 855: "if parameters in an option "subnegotiation" include a byte with a
                // value of 255, it is necessary to double this byte in accordance the general
                // TELNET rules." A parameter byte, dropped with the rest.
                TELNET_IAC => {
                    if bytes >= TELNET_SUBNEGOTIATION_BYTES_MAX {
                        // Past the limit, as above; outside a subnegotiation `IAC IAC` is data.
                        self.telnet = Telnet::Data;
                        self.handle_data(TELNET_IAC)
                    } else {
                        self.telnet = Telnet::Subnegotiation { bytes: bytes + 1 };
                        None
                    }
                }
                // Any other command inside a subnegotiation breaks RFC 855's
                // `IAC SB … IAC SE` shape: take it as the end of the subnegotiation (the client
                // forgot its IAC SE) and the command as an ordinary one, as libtelnet does.
                _ => self.handle_command(byte),
            },
        }
    }

    /// The byte after an IAC outside a subnegotiation.
    fn handle_command(&mut self, byte: u8) -> Option<LineEvent> {
        self.telnet = match byte {
            // RFC 1123 §3.2.6: "a Telnet escape character (known as IAC, with the value 255)
            // to be sent as data MUST be doubled."
            TELNET_IAC => {
                self.telnet = Telnet::Data;
                return self.handle_data(TELNET_IAC);
            }
            TELNET_WILL..=TELNET_DONT => Telnet::Option,
            TELNET_SB => Telnet::Subnegotiation { bytes: 0 },
            // NOP, GA, AYT, IP, BRK, a stray SE…: two bytes, dropped.
            _ => Telnet::Data,
        };
        None
    }

    /// One data byte through the line layer.
    fn handle_data(&mut self, byte: u8) -> Option<LineEvent> {
        if self.cr_pending {
            self.cr_pending = false;
            // RFC 1123 §3.3.1: "CR LF and CR NUL MUST have the same effect on an ASCII server
            // host when received as input over a Telnet connection." (RFC 854 meant CR NUL as
            // a bare carriage return, but clients send it for the Return key.)
            if byte == LF || byte == NUL {
                return self.end_line();
            }
            // A lone CR is a byte of the line; it may be the one that passes the limit.
            let event = self.push(CR);
            let next = if byte == CR {
                self.cr_pending = true;
                None
            } else {
                // After a TooLong this only discards, so at most one event comes out.
                self.push(byte)
            };
            return event.or(next);
        }
        match byte {
            // RFC 1123 §3.3.1: "A User Telnet MUST be able to send any of the forms: CR LF, CR
            // NUL, and LF." netcat sends LF.
            LF => self.end_line(),
            CR => {
                self.cr_pending = true;
                None
            }
            _ => self.push(byte),
        }
    }

    /// Adds a content byte to the line, or reports that it passes the limit.
    fn push(&mut self, byte: u8) -> Option<LineEvent> {
        if self.discarding {
            return None;
        }
        if self.line.len() >= self.line_bytes_max {
            return Some(self.too_long());
        }
        self.reserve(1);
        self.line.push(byte);
        None
    }

    /// The line passed the limit: drop what it held and discard the rest of it.
    fn too_long(&mut self) -> LineEvent {
        self.line.clear();
        self.discarding = true;
        LineEvent::TooLong
    }

    /// A terminator was read: the event for the finished line, if it still has one.
    fn end_line(&mut self) -> Option<LineEvent> {
        if self.discarding {
            // Already reported as TooLong when it passed the limit.
            self.discarding = false;
            self.line.clear();
            return None;
        }
        match String::from_utf8(std::mem::take(&mut self.line)) {
            Ok(line) => Some(LineEvent::Line(line)),
            Err(error) => {
                // Keep the allocation for the next line.
                self.line = error.into_bytes();
                self.line.clear();
                Some(LineEvent::BadUtf8)
            }
        }
    }

    /// Makes room for `more` bytes, growing the buffer as a `Vec` would (doubling) but never
    /// past the limit, so a line at the limit holds no more than the limit in memory.
    /// `line.len() + more` is within the limit: callers checked it.
    fn reserve(&mut self, more: usize) {
        let needed = self.line.len() + more;
        if needed <= self.line.capacity() {
            return;
        }
        let wanted = (self.line.capacity().saturating_mul(2))
            .max(needed)
            .max(64)
            .min(self.line_bytes_max)
            .max(needed);
        self.line.reserve_exact(wanted - self.line.len());
    }
}
