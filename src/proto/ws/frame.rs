//! WebSocket frames (RFC 6455 §5): decoding what a client sends, encoding what the server sends.
//!
//! [`decode_header`] reads one client frame header from the front of a buffer and refuses, as
//! soon as the byte that breaks a rule has arrived, everything RFC 6455 tells a server to fail
//! the connection for: an unmasked frame, RSV bits without a negotiated extension, a reserved
//! opcode, a fragmented or over-long control frame, a 64-bit length with its top bit set, and a
//! length not in its minimal form. [`decode`] adds the payload, unmasked into an owned `Vec`.
//! The encoders write unmasked, unfragmented server frames into a caller's buffer;
//! [`encode_text_frame`] gives a text frame's bytes once, for every recipient of a broadcast.
//!
//! It keeps no state between frames: fragmentation, message size, UTF-8 and the close handshake
//! belong to `connection.rs`. It never masks (a server must not) and decodes no server frames.
//! The opcode and close-code types are tungstenite's; the decoding is ours, because
//! tungstenite's `FrameHeader::parse` reads the whole header before it looks at the opcode,
//! accepts unmasked frames, non-minimal lengths and a 64-bit length with its top bit set, and
//! works on a `Cursor` over `io::Read`.

use super::{
    CloseCode, Control, Data, Decode, OpCode, WS_CLOSE_REASON_BYTES_MAX,
    WS_CONTROL_PAYLOAD_BYTES_MAX, WsError,
};

/// A decoded client frame header. `opcode` is never one of the reserved ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    pub opcode: OpCode,
    /// The masking key; every client frame has one.
    pub mask: [u8; 4],
    /// The payload length as declared; the payload follows the header.
    pub payload_len: u64,
}

/// A whole client frame, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// Whether `opcode` is a control frame's (close, ping, pong).
pub fn is_control(opcode: OpCode) -> bool {
    matches!(opcode, OpCode::Control(_))
}

/// Decodes one client frame header from the front of `buf`.
///
/// `Partial` (nothing consumed) until the whole header, masking key included, has arrived;
/// `consumed` is then the header's length (2 to 14 bytes) and the payload starts after it. Each
/// rule is checked as soon as the byte it concerns has arrived, so any prefix of the input is
/// either `Partial` or the error the whole input gets.
pub fn decode_header(buf: &[u8]) -> Result<Decode<FrameHeader>, WsError> {
    let Some(&first) = buf.first() else {
        return Ok(Decode::Partial);
    };
    // RFC 6455 §5.2: "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension is negotiated
    // that defines meanings for non-zero values. If a nonzero value is received and none of the
    // negotiated extensions defines the meaning of such a nonzero value, the receiving endpoint
    // MUST _Fail the WebSocket Connection_." We negotiate no extension.
    if first & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let fin = first & 0x80 != 0;
    let opcode = OpCode::from(first & 0x0f);
    match opcode {
        // RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            return Err(WsError::Protocol("reserved opcode"));
        }
        // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less and
        // MUST NOT be fragmented."
        OpCode::Control(_) if !fin => {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        _ => {}
    }

    let Some(&second) = buf.get(1) else {
        return Ok(Decode::Partial);
    };
    // RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not
    // masked. In this case, a server MAY send a Close frame with a status code of 1002
    // (protocol error) as defined in Section 7.4.1."
    if second & 0x80 == 0 {
        return Err(WsError::Protocol("client frame not masked"));
    }
    let length_byte = second & 0x7f;
    if is_control(opcode) && usize::from(length_byte) > WS_CONTROL_PAYLOAD_BYTES_MAX {
        return Err(WsError::Protocol("control frame payload over 125 bytes"));
    }

    // RFC 6455 §5.2: "Payload length: 7 bits, 7+16 bits, or 7+64 bits. [...] If 126, the
    // following 2 bytes interpreted as a 16-bit unsigned integer are the payload length. If
    // 127, the following 8 bytes interpreted as a 64-bit unsigned integer (the most significant
    // bit MUST be 0) are the payload length."
    let (payload_len, length_end) = match length_byte {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(Decode::Partial);
            };
            let len = u16::from_be_bytes([bytes[0], bytes[1]]);
            // RFC 6455 §5.2: "Note that in all cases, the minimal number of bytes MUST be used
            // to encode the length". We refuse what a lenient peer would repair: two decoders
            // that disagree on what they accept are how frames get smuggled past a proxy.
            if len < 126 {
                return Err(WsError::Protocol("payload length not in its minimal form"));
            }
            (u64::from(len), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(Decode::Partial);
            };
            let len = u64::from_be_bytes(bytes.try_into().expect("a range of 8 bytes"));
            if len >> 63 != 0 {
                return Err(WsError::Protocol(
                    "64-bit payload length with its most significant bit set",
                ));
            }
            if len <= u64::from(u16::MAX) {
                return Err(WsError::Protocol("payload length not in its minimal form"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };

    let Some(mask) = buf.get(length_end..length_end + 4) else {
        return Ok(Decode::Partial);
    };
    Ok(Decode::Complete {
        value: FrameHeader {
            fin,
            opcode,
            mask: mask.try_into().expect("a range of 4 bytes"),
            payload_len,
        },
        consumed: length_end + 4,
    })
}

/// Decodes one whole client frame from the front of `buf`, payload unmasked.
///
/// `Partial` (nothing consumed, nothing allocated) until the whole payload has arrived, so the
/// payload it allocates is never larger than the input. It enforces no message size limit:
/// `WsConnection` checks the declared length against its limit before waiting for a payload.
pub fn decode(buf: &[u8]) -> Result<Decode<Frame>, WsError> {
    let (header, header_len) = match decode_header(buf)? {
        Decode::Partial => return Ok(Decode::Partial),
        Decode::Complete { value, consumed } => (value, consumed),
    };
    let available = (buf.len() - header_len) as u64;
    if available < header.payload_len {
        return Ok(Decode::Partial);
    }
    // Fits in usize: it is no more than the input's length.
    let end = header_len + header.payload_len as usize;
    let mut payload = Vec::with_capacity(end - header_len);
    unmask_into(&buf[header_len..end], header.mask, 0, &mut payload);
    Ok(Decode::Complete {
        value: Frame {
            fin: header.fin,
            opcode: header.opcode,
            payload,
        },
        consumed: end,
    })
}

/// Appends `masked` to `out`, unmasked. `offset` is the position of `masked[0]` in its frame's
/// payload (RFC 6455 §5.3: "Octet i of the transformed data ("transformed-octet-i") is the XOR
/// of octet i of the original data ("original-octet-i") with octet at index i modulo 4 of the
/// masking key ("masking-key-octet-j")").
pub fn unmask_into(masked: &[u8], mask: [u8; 4], offset: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(masked);
    let mask = rotated(mask, offset);
    // Eight bytes at a time: this runs over every byte every client sends.
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = out[start..].chunks_exact_mut(8);
    for word in &mut words {
        let value = u64::from_ne_bytes((&*word).try_into().expect("chunks_exact_mut(8)")) ^ wide;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// The masking key as seen from payload position `offset`.
fn rotated(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset % 4;
    [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ]
}

/// Appends the header of an unmasked server frame with FIN set.
fn encode_header(opcode: OpCode, payload_len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | u8::from(opcode));
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
    match payload_len {
        0..=125 => out.push(payload_len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
}

/// The length of a server frame carrying `payload_len` bytes, header included.
pub fn server_frame_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    header + payload_len
}

/// Appends one unmasked, unfragmented server frame.
///
/// RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client." A control
/// frame's payload over [`WS_CONTROL_PAYLOAD_BYTES_MAX`] is a bug in the caller; it is cut to
/// the limit rather than sent as a frame the client must fail the connection for.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let payload = if is_control(opcode) {
        debug_assert!(
            payload.len() <= WS_CONTROL_PAYLOAD_BYTES_MAX,
            "control frame payload of {} bytes",
            payload.len()
        );
        &payload[..payload.len().min(WS_CONTROL_PAYLOAD_BYTES_MAX)]
    } else {
        payload
    };
    out.reserve(server_frame_len(payload.len()));
    encode_header(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a text frame. Taking `&str` keeps invalid UTF-8 from ever leaving the server.
pub fn encode_text(payload: &str, out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Text), payload.as_bytes(), out);
}

/// A whole text frame in a `Vec` of exactly its size: encoded once, its bytes shared by every
/// recipient of a broadcast (STYLE.md: "A broadcast frame is encoded once").
pub fn encode_text_frame(payload: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(server_frame_len(payload.len()));
    encode_text(payload, &mut out);
    out
}

/// Appends a binary frame.
pub fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Binary), payload, out);
}

/// Appends a ping; `payload` is at most [`WS_CONTROL_PAYLOAD_BYTES_MAX`] bytes.
pub fn encode_ping(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Control(Control::Ping), payload, out);
}

/// Appends a pong; `payload` is at most [`WS_CONTROL_PAYLOAD_BYTES_MAX`] bytes.
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Control(Control::Pong), payload, out);
}

/// Appends a close frame: no payload when `code` is `None`, else the code and `reason`, cut at
/// a character boundary to [`WS_CLOSE_REASON_BYTES_MAX`] bytes.
///
/// RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
/// unsigned integer (in network byte order) representing a status code with value /code/
/// defined in Section 7.4. Following the 2-byte integer, the body MAY contain UTF-8-encoded
/// data with value /reason/". A code that must not be sent (1005, 1006, 1015, anything
/// [`super::close_code_allowed`] refuses) is a bug in the caller; it is sent as no code at all.
pub fn encode_close(code: Option<CloseCode>, reason: &str, out: &mut Vec<u8>) {
    let Some(code) = code else {
        encode_frame(OpCode::Control(Control::Close), &[], out);
        return;
    };
    let code = u16::from(code);
    if !super::close_code_allowed(code) {
        debug_assert!(false, "close code {code} must not be sent");
        encode_frame(OpCode::Control(Control::Close), &[], out);
        return;
    }
    let reason = truncate_at_char(reason, WS_CLOSE_REASON_BYTES_MAX);
    let mut payload = [0u8; WS_CONTROL_PAYLOAD_BYTES_MAX];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(
        OpCode::Control(Control::Close),
        &payload[..2 + reason.len()],
        out,
    );
}

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Appends a masked client frame, as a browser would send it: for tests, the fuzz corpus and
/// the load generator. The server never sends one (RFC 6455 §5.1).
pub fn encode_masked(fin: bool, opcode: OpCode, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    let fin_bit = if fin { 0x80 } else { 0 };
    out.push(fin_bit | u8::from(opcode));
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    // Masking and unmasking are the same XOR.
    unmask_into(payload, mask, 0, out);
}
