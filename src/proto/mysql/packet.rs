//! MySQL packet framing: a 3-byte little-endian payload length and a 1-byte sequence id before
//! every payload, payloads of 2^24-1 bytes or more split across packets.
//!
//! [`decode_packet`] returns one whole logical payload (every packet of a split one), borrowed
//! from the input when it fits one packet and reassembled into one exact allocation when it
//! does not; it checks that the packets of a split payload carry consecutive sequence ids, and
//! refuses a payload over the caller's limit as soon as the headers announce it, before
//! anything is buffered or allocated. [`encode_packet`] frames a payload into a caller's `Vec`.
//!
//! It does not know which sequence id should come next: that depends on the command and is the
//! engine's job (`connection.rs`). It implements no compression (`CLIENT_COMPRESS`).

use std::borrow::Cow;

use super::{Decode, MysqlError};

/// The largest payload one packet carries; a packet this long says another follows.
pub const PACKET_PAYLOAD_BYTES_MAX: usize = 0xff_ffff;

/// Bytes of a packet header.
pub const PACKET_HEADER_BYTES: usize = 4;

/// One logical payload and the sequence ids of its first and last packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The sequence id of the first packet.
    pub sequence_id: u8,
    /// The sequence id of the last packet (the same as `sequence_id` unless it was split); the
    /// next packet in either direction carries this plus one.
    pub last_sequence_id: u8,
    pub payload: Cow<'a, [u8]>,
}

fn header(input: &[u8]) -> Option<(usize, u8)> {
    let [a, b, c, sequence_id] = *input.first_chunk::<PACKET_HEADER_BYTES>()?;
    Some((u32::from_le_bytes([a, b, c, 0]) as usize, sequence_id))
}

/// Decodes the logical payload at the start of `input`, refusing one larger than
/// `payload_bytes_max`.
pub fn decode_packet(
    input: &[u8],
    payload_bytes_max: usize,
) -> Result<Decode<Packet<'_>>, MysqlError> {
    // First pass over the headers only: find where the payload ends, check sequence ids and
    // the limit, allocate nothing.
    let mut offset = 0;
    let mut total = 0usize;
    let mut first_sequence_id = None;
    let mut last_sequence_id = 0u8;
    let mut pieces = 0usize;
    loop {
        let Some((length, sequence_id)) = header(&input[offset..]) else {
            return Ok(Decode::Partial);
        };
        match first_sequence_id {
            None => first_sequence_id = Some(sequence_id),
            // "The sequence-id is incremented with each packet and may wrap around."
            Some(_) if sequence_id != last_sequence_id.wrapping_add(1) => {
                return Err(MysqlError::Sequence {
                    expected: last_sequence_id.wrapping_add(1),
                    found: sequence_id,
                });
            }
            Some(_) => {}
        }
        last_sequence_id = sequence_id;
        pieces += 1;
        total += length;
        if total > payload_bytes_max {
            return Err(MysqlError::PacketTooLarge);
        }
        offset += PACKET_HEADER_BYTES;
        if input.len() - offset < length {
            return Ok(Decode::Partial);
        }
        offset += length;
        // "If the payload is larger than or equal to 2^24-1 bytes the length is set to 2^24-1
        // (ff ff ff) and additional packets are sent with the rest of the payload until the
        // payload of a packet is less than 2^24-1 bytes."
        if length < PACKET_PAYLOAD_BYTES_MAX {
            break;
        }
    }
    let sequence_id = first_sequence_id.expect("the loop reads at least one header");
    let payload = if pieces == 1 {
        Cow::Borrowed(&input[PACKET_HEADER_BYTES..offset])
    } else {
        let mut joined = Vec::with_capacity(total);
        let mut at = 0;
        while at < offset {
            let (length, _) = header(&input[at..]).expect("walked above");
            joined.extend_from_slice(&input[at + PACKET_HEADER_BYTES..][..length]);
            at += PACKET_HEADER_BYTES + length;
        }
        Cow::Owned(joined)
    };
    Ok(Decode::Complete {
        value: Packet {
            sequence_id,
            last_sequence_id,
            payload,
        },
        consumed: offset,
    })
}

/// Appends `payload` framed as packets starting at `sequence_id`, and returns the sequence id
/// the next packet (the peer's reply) carries.
pub fn encode_packet(payload: &[u8], sequence_id: u8, out: &mut Vec<u8>) -> u8 {
    let mut sequence_id = sequence_id;
    let mut rest = payload;
    out.reserve(
        payload.len() + PACKET_HEADER_BYTES * (payload.len() / PACKET_PAYLOAD_BYTES_MAX + 1),
    );
    loop {
        let length = rest.len().min(PACKET_PAYLOAD_BYTES_MAX);
        out.extend_from_slice(&(length as u32).to_le_bytes()[..3]);
        out.push(sequence_id);
        out.extend_from_slice(&rest[..length]);
        rest = &rest[length..];
        sequence_id = sequence_id.wrapping_add(1);
        // "Sending a payload of 16 777 215 (2^24-1) bytes looks like: ff ff ff 00 ...
        // 00 00 00 01": a full packet is always followed by a shorter one, even an empty one.
        if length < PACKET_PAYLOAD_BYTES_MAX {
            return sequence_id;
        }
    }
}
