//! Vectors and properties for the WebSocket core, as data-driven tables.
//!
//! - Connection vectors: the examples of RFC 6455 §5.7 (their masked forms where the RFC shows
//!   an unmasked frame, since a server must refuse those), fragmentation with control frames
//!   between the fragments, UTF-8 across fragment boundaries, every framing error, the message
//!   size limit by declared length and by accumulated fragments, and the close handshake with
//!   valid and invalid codes and reasons. Each is fed whole, split in two at every byte (at a
//!   sample of cuts for the 64 KiB ones) and byte by byte, and must give the same events, bytes
//!   used, error, state and bytes to write every way.
//! - Fail-fast: an invalid UTF-8 byte fails the connection as soon as it arrives, mid-frame.
//! - Frame errors: every prefix of an invalid header is `Partial` or the same error.
//! - The engine: server-initiated close, heartbeat pings and pongs, the event limit, sticky
//!   errors.
//! - The handshake: RFC 6455's example key, requests as browsers send them, every refusal, and
//!   the Origin policy as a table.
//! - Properties (proptest): masked client frames of any opcode, mask and length decode to
//!   themselves and agree with tungstenite's header parser; server frames parse back with
//!   tungstenite's; random messages cut into random fragments with pings between them come out
//!   whole however the input is split; frame soup and arbitrary bytes never panic, never use
//!   more than given, and give the same outcome whole and split.

use std::io::Cursor;

use proptest::prelude::*;

use super::*;
use crate::proto::http1::{HEADERS_COUNT_MAX, RequestHead, decode_request};

// ---------------------------------------------------------------------------------------------
// Building frames
// ---------------------------------------------------------------------------------------------

/// The masking key of RFC 6455 §5.7's masked examples.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);
const CONTINUE: OpCode = OpCode::Data(Data::Continue);
const CLOSE: OpCode = OpCode::Control(Control::Close);
const PING: OpCode = OpCode::Control(Control::Ping);
const PONG: OpCode = OpCode::Control(Control::Pong);

fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked(fin, opcode, MASK, payload, &mut out);
    out
}

fn text(fin: bool, payload: &[u8]) -> Vec<u8> {
    masked(fin, TEXT, payload)
}

fn cont(fin: bool, payload: &[u8]) -> Vec<u8> {
    masked(fin, CONTINUE, payload)
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    masked(true, CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

/// A masked frame header declaring `len` bytes, with no payload after it.
fn header_only(opcode: OpCode, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | u8::from(opcode)];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out
}

fn server_close(code: Option<u16>, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_close(code.map(CloseCode::from), reason, &mut out);
    out
}

fn pong(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_pong(payload, &mut out);
    out
}

fn event_text(text: &str) -> Event {
    Event::Text(text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Feeding a connection
// ---------------------------------------------------------------------------------------------

/// What feeding a connection gave: every event, bytes used (0 once failed, where it means
/// nothing), the error, the bytes to write at the end, and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fed {
    events: Vec<Event>,
    consumed: usize,
    error: Option<WsError>,
    transmit: Vec<u8>,
    state: State,
}

/// Feeds `pieces` the way the server does: unused input is kept and offered again with the
/// next piece; after each call the events are drained, and the call repeated while it makes
/// progress (the event limit may stop it early).
fn feed_conn(conn: &mut WsConnection, pieces: &[&[u8]]) -> Fed {
    let mut fed = Fed {
        events: Vec::new(),
        consumed: 0,
        error: None,
        transmit: Vec::new(),
        state: State::Open,
    };
    let mut pending = Vec::new();
    'pieces: for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            match conn.handle_input(&pending) {
                Ok(used) => {
                    assert!(used <= pending.len(), "used more than offered");
                    pending.drain(..used);
                    fed.consumed += used;
                    fed.events.extend(std::iter::from_fn(|| conn.poll_event()));
                    if used == 0 {
                        break;
                    }
                }
                Err(error) => {
                    // Sticky, and nothing more is reported.
                    assert_eq!(conn.handle_input(&text(true, b"x")), Err(error.clone()));
                    assert_eq!(conn.error(), Some(&error));
                    fed.events.extend(std::iter::from_fn(|| conn.poll_event()));
                    fed.error = Some(error);
                    fed.consumed = 0;
                    break 'pieces;
                }
            }
        }
    }
    conn.poll_transmit(&mut fed.transmit);
    fed.state = conn.state();
    fed
}

fn feed(max: usize, pieces: &[&[u8]]) -> Fed {
    feed_conn(&mut WsConnection::new(max), pieces)
}

/// The input whole, split in two at every byte (at a sample of cuts when it is long), and
/// byte by byte.
fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut splits = vec![vec![input]];
    let cuts: Vec<usize> = if input.len() <= 4096 {
        (0..=input.len()).collect()
    } else {
        (0..64)
            .chain((64..input.len()).step_by(1021))
            .chain(input.len() - 64..=input.len())
            .collect()
    };
    for cut in cuts {
        splits.push(vec![&input[..cut], &input[cut..]]);
    }
    splits.push(input.chunks(1).collect());
    splits
}

fn check(name: &str, max: usize, input: &[u8], want: &Fed) {
    for pieces in splits(input) {
        let got = feed(max, &pieces);
        assert!(
            got == *want,
            "{name}: fed as {} pieces (first {} bytes)\n got {got:?}\nwant {want:?}",
            pieces.len(),
            pieces[0].len()
        );
    }
}

fn open(events: Vec<Event>, consumed: usize, transmit: Vec<u8>) -> Fed {
    Fed {
        events,
        consumed,
        error: None,
        transmit,
        state: State::Open,
    }
}

/// The client closed with `code` (and `reason`); we echo the code.
fn closed(mut events: Vec<Event>, consumed: usize, code: Option<u16>, reason: &str) -> Fed {
    events.push(Event::Close {
        code: code.map(CloseCode::from),
        reason: reason.to_owned(),
    });
    Fed {
        events,
        consumed,
        error: None,
        transmit: server_close(code, ""),
        state: State::Closed,
    }
}

/// The connection failed with `error` after `events`; our close carries its code and message.
fn failed(events: Vec<Event>, error: WsError) -> Fed {
    Fed {
        events,
        consumed: 0,
        transmit: server_close(Some(error.close_code().into()), error.message()),
        error: Some(error),
        state: State::Failed,
    }
}

fn protocol(why: &'static str) -> WsError {
    WsError::Protocol(why)
}

const NOT_MASKED: &str = "client frame not masked";
const RSV: &str = "reserved bits set without an extension";
const RESERVED_OPCODE: &str = "reserved opcode";
const CONTROL_TOO_LONG: &str = "control frame payload over 125 bytes";
const FRAGMENTED_CONTROL: &str = "fragmented control frame";
const NO_MESSAGE: &str = "continuation frame without a message to continue";
const INTERLEAVED: &str = "new message before the fragmented one ended";
const NON_MINIMAL: &str = "payload length not in its minimal form";
const INVALID_TEXT: &str = "text message is not UTF-8";

fn invalid_text() -> WsError {
    WsError::InvalidPayload(INVALID_TEXT)
}

fn too_big(limit_bytes: usize) -> WsError {
    WsError::MessageTooBig { limit_bytes }
}

// ---------------------------------------------------------------------------------------------
// Connection vectors
// ---------------------------------------------------------------------------------------------

const DEFAULT: usize = WS_MESSAGE_BYTES_MAX;

fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn vectors() -> Vec<(&'static str, usize, Vec<u8>, Fed)> {
    let hello_masked: Vec<u8> = vec![
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let hel_lo = [text(false, b"Hel"), cont(true, b"lo")].concat();
    let ping_hello: Vec<u8> = vec![
        0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let pong_hello: Vec<u8> = vec![
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let binary_256 = masked(true, BINARY, &binary_payload(256));
    let binary_64k = masked(true, BINARY, &binary_payload(64 * 1024));
    let with_ping = [
        text(false, b"Hel"),
        masked(true, PING, b"x"),
        cont(true, b"lo"),
    ]
    .concat();
    let pings_and_pong_between = [
        masked(false, BINARY, b"\x00\x01"),
        masked(true, PING, b"1"),
        masked(true, PONG, b"unsolicited"),
        cont(false, b""),
        masked(true, PING, b"2"),
        cont(true, b"\x02"),
    ]
    .concat();
    let close_mid_message = [
        text(false, b"Hel"),
        close_frame(1000, b""),
        text(true, b"after"),
    ]
    .concat();
    let clef = "a\u{1d11e}b".as_bytes().to_vec(); // 'a', U+1D11E (4 bytes), 'b'
    let kosme = "κόσμε".as_bytes().to_vec();
    let surrogate: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";

    let mut vectors = vec![
        // RFC 6455 §5.7, "A single-frame masked text message".
        (
            "rfc single-frame masked Hello",
            DEFAULT,
            hello_masked.clone(),
            open(vec![event_text("Hello")], 11, vec![]),
        ),
        // RFC 6455 §5.7, "A single-frame unmasked text message": a server must refuse it.
        (
            "rfc single-frame unmasked Hello",
            DEFAULT,
            vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            failed(vec![], protocol(NOT_MASKED)),
        ),
        // RFC 6455 §5.7, "A fragmented unmasked text message", refused, and masked.
        (
            "rfc fragmented unmasked Hel lo",
            DEFAULT,
            vec![0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
            failed(vec![], protocol(NOT_MASKED)),
        ),
        (
            "rfc fragmented Hel lo, masked",
            DEFAULT,
            hel_lo.clone(),
            open(vec![event_text("Hello")], hel_lo.len(), vec![]),
        ),
        // RFC 6455 §5.7: "Unmasked Ping request and masked Ping response": masked, our pong is
        // the RFC's unmasked form.
        (
            "rfc ping Hello answered",
            DEFAULT,
            ping_hello.clone(),
            open(vec![], 11, vec![0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
        ),
        (
            "rfc masked pong Hello",
            DEFAULT,
            pong_hello.clone(),
            open(vec![], 11, vec![]),
        ),
        // RFC 6455 §5.7: "256 bytes binary message in a single unmasked frame", masked.
        (
            "rfc 256-byte binary",
            DEFAULT,
            binary_256.clone(),
            open(
                vec![Event::Binary(binary_payload(256))],
                4 + 4 + 256,
                vec![],
            ),
        ),
        // RFC 6455 §5.7: "64KiB binary message in a single unmasked frame", masked: exactly
        // the default limit.
        (
            "rfc 64 KiB binary at the limit",
            DEFAULT,
            binary_64k.clone(),
            open(
                vec![Event::Binary(binary_payload(64 * 1024))],
                10 + 4 + 64 * 1024,
                vec![],
            ),
        ),
        // Fed byte by byte, this is 65,550 calls on one partial text frame: quadratic if the
        // UTF-8 check of a partial frame started over on every call.
        (
            "64 KiB text at the limit",
            DEFAULT,
            text(true, "é".repeat(32 * 1024).as_bytes()),
            open(
                vec![event_text(&"é".repeat(32 * 1024))],
                10 + 4 + 64 * 1024,
                vec![],
            ),
        ),
        (
            "64 KiB + 1 refused from the header",
            DEFAULT,
            header_only(BINARY, 64 * 1024 + 1),
            failed(vec![], too_big(DEFAULT)),
        ),
        (
            "ping between fragments",
            DEFAULT,
            with_ping.clone(),
            open(vec![event_text("Hello")], with_ping.len(), pong(b"x")),
        ),
        (
            "pings, a pong and an empty fragment between fragments",
            DEFAULT,
            pings_and_pong_between.clone(),
            // Every ping gets its pong, in order.
            open(
                vec![Event::Binary(b"\x00\x01\x02".to_vec())],
                pings_and_pong_between.len(),
                [pong(b"1"), pong(b"2")].concat(),
            ),
        ),
        (
            // Autobahn 2.10 and 2.11: ten pings in one read (and byte by byte) get ten pongs.
            "ten pings get ten pongs in order",
            DEFAULT,
            (0..10)
                .flat_map(|i| masked(true, PING, format!("payload-{i}").as_bytes()))
                .collect(),
            open(
                vec![],
                10 * (6 + 9),
                (0..10)
                    .flat_map(|i| pong(format!("payload-{i}").as_bytes()))
                    .collect(),
            ),
        ),
        (
            "close between fragments",
            DEFAULT,
            close_mid_message.clone(),
            closed(vec![], 6 + 3 + 6 + 2, Some(1000), ""),
        ),
        (
            "empty text message",
            DEFAULT,
            text(true, b""),
            open(vec![event_text("")], 6, vec![]),
        ),
        (
            "two messages in one read",
            DEFAULT,
            [text(true, b"one"), masked(true, BINARY, b"two")].concat(),
            open(
                vec![event_text("one"), Event::Binary(b"two".to_vec())],
                18,
                vec![],
            ),
        ),
        // UTF-8 across fragment boundaries.
        (
            "4-byte character split between fragments",
            DEFAULT,
            [text(false, &clef[..3]), cont(true, &clef[3..])].concat(),
            open(vec![event_text("a\u{1d11e}b")], 6 + 3 + 6 + 3, vec![]),
        ),
        (
            "4-byte character split in three fragments",
            DEFAULT,
            [
                text(false, &clef[..2]),
                cont(false, &clef[2..4]),
                cont(true, &clef[4..]),
            ]
            .concat(),
            open(vec![event_text("a\u{1d11e}b")], 6 * 3 + 6, vec![]),
        ),
        (
            "kosme one byte per fragment",
            DEFAULT,
            kosme
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    let last = i == kosme.len() - 1;
                    if i == 0 {
                        text(last, &[*b])
                    } else {
                        cont(last, &[*b])
                    }
                })
                .collect(),
            open(vec![event_text("κόσμε")], 7 * kosme.len(), vec![]),
        ),
        (
            "invalid continuation byte after a split character",
            DEFAULT,
            [text(false, &clef[..3]), cont(true, b"(")].concat(),
            failed(vec![], invalid_text()),
        ),
        (
            "invalid byte fails before the message ends",
            DEFAULT,
            // No final fragment: the invalid fragment alone fails the connection.
            [text(false, b"ok"), cont(false, b"\xff")].concat(),
            failed(vec![], invalid_text()),
        ),
        (
            "invalid first fragment fails at once",
            DEFAULT,
            text(false, b"\xc0\xaf"),
            failed(vec![], invalid_text()),
        ),
        (
            "surrogate half in one frame",
            DEFAULT,
            text(true, surrogate),
            failed(vec![], invalid_text()),
        ),
        (
            "message ends inside a character",
            DEFAULT,
            [text(false, b"a\xf0"), cont(true, b"\x9d")].concat(),
            failed(vec![], invalid_text()),
        ),
        (
            "single frame ends inside a character",
            DEFAULT,
            text(true, b"a\xe2\x82"),
            failed(vec![], invalid_text()),
        ),
        (
            "valid message before an invalid one is reported",
            DEFAULT,
            [text(true, b"fine"), text(true, b"\xff")].concat(),
            failed(vec![event_text("fine")], invalid_text()),
        ),
        // Framing errors.
        (
            "unmasked binary",
            DEFAULT,
            vec![0x82, 0x01, 0x00],
            failed(vec![], protocol(NOT_MASKED)),
        ),
        (
            "unmasked close",
            DEFAULT,
            vec![0x88, 0x00],
            failed(vec![], protocol(NOT_MASKED)),
        ),
        (
            "rsv1 (permessage-deflate not negotiated)",
            DEFAULT,
            [vec![0xc1], text(true, b"x")[1..].to_vec()].concat(),
            failed(vec![], protocol(RSV)),
        ),
        ("rsv2", DEFAULT, vec![0xa1], failed(vec![], protocol(RSV))),
        (
            "rsv3 on a ping",
            DEFAULT,
            vec![0x99],
            failed(vec![], protocol(RSV)),
        ),
        (
            "control frame of 126 bytes",
            DEFAULT,
            masked(true, PING, &[b'p'; 126]),
            failed(vec![], protocol(CONTROL_TOO_LONG)),
        ),
        (
            "close frame of 126 bytes",
            DEFAULT,
            close_frame(1000, &[b'r'; 124]),
            failed(vec![], protocol(CONTROL_TOO_LONG)),
        ),
        (
            "ping of 125 bytes is fine",
            DEFAULT,
            masked(true, PING, &[b'p'; 125]),
            open(vec![], 6 + 125, pong(&[b'p'; 125])),
        ),
        (
            "fragmented ping",
            DEFAULT,
            masked(false, PING, b"x"),
            failed(vec![], protocol(FRAGMENTED_CONTROL)),
        ),
        (
            "fragmented close",
            DEFAULT,
            masked(false, CLOSE, b""),
            failed(vec![], protocol(FRAGMENTED_CONTROL)),
        ),
        (
            "continuation without a start",
            DEFAULT,
            cont(true, b"lo"),
            failed(vec![], protocol(NO_MESSAGE)),
        ),
        (
            "continuation after a finished message",
            DEFAULT,
            [text(true, b"done"), cont(true, b"more")].concat(),
            failed(vec![event_text("done")], protocol(NO_MESSAGE)),
        ),
        (
            "text during a fragmented text",
            DEFAULT,
            [text(false, b"Hel"), text(true, b"lo")].concat(),
            failed(vec![], protocol(INTERLEAVED)),
        ),
        (
            "binary during a fragmented text",
            DEFAULT,
            [text(false, b"Hel"), masked(true, BINARY, b"lo")].concat(),
            failed(vec![], protocol(INTERLEAVED)),
        ),
        (
            "16-bit length in non-minimal form",
            DEFAULT,
            vec![0x81, 0xfe, 0x00, 0x05],
            failed(vec![], protocol(NON_MINIMAL)),
        ),
        (
            "64-bit length in non-minimal form",
            DEFAULT,
            vec![0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            failed(vec![], protocol(NON_MINIMAL)),
        ),
        (
            "64-bit length with its top bit set",
            DEFAULT,
            vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
            failed(
                vec![],
                protocol("64-bit payload length with its most significant bit set"),
            ),
        ),
        (
            "huge 64-bit length refused from the header",
            DEFAULT,
            header_only(BINARY, u64::MAX >> 1),
            failed(vec![], too_big(DEFAULT)),
        ),
        // The message size limit (16 bytes here).
        (
            "declared length over the limit, no payload sent",
            16,
            header_only(TEXT, 17),
            failed(vec![], too_big(16)),
        ),
        (
            "message at the limit",
            16,
            text(true, &[b'a'; 16]),
            open(vec![event_text(&"a".repeat(16))], 22, vec![]),
        ),
        (
            "fragments over the limit",
            16,
            [text(false, &[b'a'; 10]), header_only(CONTINUE, 7)].concat(),
            failed(vec![], too_big(16)),
        ),
        (
            "fragments at the limit with a ping between",
            16,
            [
                text(false, &[b'a'; 10]),
                masked(true, PING, b"not counted"),
                cont(true, &[b'b'; 6]),
            ]
            .concat(),
            open(
                vec![event_text("aaaaaaaaaabbbbbb")],
                16 + 17 + 12,
                pong(b"not counted"),
            ),
        ),
        (
            "zero limit takes empty messages only",
            0,
            [text(true, b""), text(true, b"x")].concat(),
            failed(vec![event_text("")], too_big(0)),
        ),
        // The close handshake.
        (
            "close without a payload",
            DEFAULT,
            masked(true, CLOSE, b""),
            closed(vec![], 6, None, ""),
        ),
        (
            "close with a reason",
            DEFAULT,
            close_frame(1001, "au revoir ✓".as_bytes()),
            closed(vec![], 6 + 2 + 13, Some(1001), "au revoir ✓"),
        ),
        (
            "bytes after the close are not used",
            DEFAULT,
            [close_frame(1000, b""), text(true, b"late"), vec![0xff]].concat(),
            closed(vec![], 8, Some(1000), ""),
        ),
        (
            "1-byte close payload",
            DEFAULT,
            masked(true, CLOSE, b"\x03"),
            failed(vec![], protocol("close frame with a 1-byte payload")),
        ),
        (
            "close reason not UTF-8",
            DEFAULT,
            close_frame(1000, b"\xce\xba\xff"),
            failed(vec![], WsError::InvalidPayload("close reason is not UTF-8")),
        ),
    ];
    // RFC 6455 §7.4.1 and §7.4.2, as the Autobahn suite's cases 7.7.* and 7.9.* exercise them.
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        vectors.push((
            "valid close code",
            DEFAULT,
            close_frame(code, b"reason"),
            closed(vec![], 6 + 8, Some(code), "reason"),
        ));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        vectors.push((
            "invalid close code",
            DEFAULT,
            close_frame(code, b""),
            failed(vec![], protocol("invalid close code")),
        ));
    }
    for opcode in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        vectors.push((
            "reserved opcode",
            DEFAULT,
            vec![0x80 | opcode, 0x80, 1, 2, 3, 4],
            failed(vec![], protocol(RESERVED_OPCODE)),
        ));
    }
    vectors
}

#[test]
fn connection_vectors_whole_split_and_byte_by_byte() {
    for (name, max, input, want) in vectors() {
        check(name, max, &input, &want);
    }
}

#[test]
fn invalid_utf8_fails_as_soon_as_the_byte_arrives() {
    // A 40-byte text frame whose 4th payload byte is invalid: once that byte has arrived the
    // connection fails, long before the frame (let alone the message) is complete. `at` is the
    // index of the invalid byte in the input.
    let mut payload = b"abc\xffdefghijklmnopqrstuvwxyz0123456789AB".to_vec();
    payload.truncate(40);
    for (name, frame, at) in [
        ("first frame", text(false, &payload), 6 + 3),
        (
            "continuation",
            [text(false, b"\xe2\x82"), cont(false, b"\xacz\xff")].concat(),
            8 + 6 + 2,
        ),
        (
            "continuation after a split character",
            [text(false, b"\xe2\x82"), cont(false, b"\x28")].concat(),
            8 + 6,
        ),
    ] {
        for cut in 0..=frame.len() {
            for pieces in [vec![&frame[..cut]], frame[..cut].chunks(1).collect()] {
                let got = feed(DEFAULT, &pieces);
                if cut > at {
                    assert_eq!(got.error, Some(invalid_text()), "{name}: cut {cut}");
                } else {
                    assert_eq!(got.error, None, "{name}: cut {cut}");
                }
            }
        }
    }
}

#[test]
fn text_fed_a_byte_at_a_time_is_checked_as_it_arrives() {
    // The peek resumes where it stopped: a valid frame fed a byte at a time completes, and a
    // character cut at every place in a partial frame is never refused.
    let message = "ünïcödé ✓ 𝄞 ".repeat(20);
    let frame = text(true, message.as_bytes());
    let mut conn = WsConnection::new(DEFAULT);
    let mut pending = Vec::new();
    for byte in &frame {
        pending.push(*byte);
        let used = conn.handle_input(&pending).unwrap();
        pending.drain(..used);
    }
    assert!(pending.is_empty());
    assert_eq!(conn.poll_event(), Some(Event::Text(message)));
}

// ---------------------------------------------------------------------------------------------
// Frame decoding
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_decoder_reads_the_rfc_example() {
    let hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0xaa,
    ];
    assert_eq!(
        decode(&hello),
        Ok(Decode::Complete {
            value: Frame {
                fin: true,
                opcode: TEXT,
                payload: b"Hello".to_vec(),
            },
            consumed: 11,
        })
    );
    assert_eq!(
        decode_header(&hello),
        Ok(Decode::Complete {
            value: FrameHeader {
                fin: true,
                opcode: TEXT,
                mask: MASK,
                payload_len: 5,
            },
            consumed: 6,
        })
    );
    for cut in 0..11 {
        assert_eq!(decode(&hello[..cut]), Ok(Decode::Partial), "cut {cut}");
    }
}

#[test]
fn frame_decoder_obeys_the_prefix_rule() {
    // `decode` reads the first frame of every vector: each prefix of it is Partial, or the
    // whole input's frame or error (never another frame, never another error).
    for (name, _, input, _) in vectors() {
        let whole = decode(&input);
        for cut in 0..=input.len().min(200) {
            let prefix = decode(&input[..cut]);
            match &whole {
                Ok(Decode::Complete { consumed, .. }) if cut < *consumed => {
                    assert_eq!(prefix, Ok(Decode::Partial), "{name}: cut {cut}");
                }
                Ok(Decode::Partial) => {
                    assert_eq!(prefix, Ok(Decode::Partial), "{name}: cut {cut}");
                }
                _ => assert!(
                    prefix == Ok(Decode::Partial) || prefix == whole,
                    "{name}: cut {cut} gave {prefix:?}, the whole {whole:?}"
                ),
            }
        }
    }
}

#[test]
fn unmasking_resumes_at_any_offset() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut whole = Vec::new();
    unmask_into(&payload, MASK, 0, &mut whole);
    for offset in [0, 1, 2, 3, 5, 8, 13, 999, 1000] {
        let mut tail = b"kept".to_vec();
        unmask_into(&payload[offset..], MASK, offset, &mut tail);
        assert_eq!(&tail[..4], b"kept");
        assert_eq!(tail[4..], whole[offset..], "offset {offset}");
    }
    // Masking twice is the identity.
    let mut twice = Vec::new();
    unmask_into(&whole, MASK, 0, &mut twice);
    assert_eq!(twice, payload);
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

#[test]
fn server_frames_match_the_rfc_examples() {
    let mut out = Vec::new();
    encode_text("Hello", &mut out);
    assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(encode_text_frame("Hello"), out);
    assert_eq!(encode_text_frame("Hello").capacity(), 7);

    out.clear();
    encode_ping(b"Hello", &mut out);
    assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

    out.clear();
    encode_binary(&binary_payload(256), &mut out);
    assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);

    out.clear();
    encode_binary(&binary_payload(65536), &mut out);
    assert_eq!(
        out[..10],
        [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    assert_eq!(out.len(), server_frame_len(65536));
}

#[test]
fn close_frames_carry_code_and_a_cut_reason() {
    assert_eq!(server_close(None, "ignored"), [0x88, 0x00]);
    assert_eq!(server_close(Some(1000), "bye"), b"\x88\x05\x03\xe8bye");
    // 200 bytes of 2-byte characters: cut to 122 bytes, a character boundary under 123.
    let long = "é".repeat(100);
    let frame = server_close(Some(1001), &long);
    assert_eq!(frame[1] as usize, 2 + 122);
    assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
    assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), "é".repeat(61));
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

fn transmit(conn: &mut WsConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let written = conn.poll_transmit(&mut out);
    assert_eq!(written, out.len());
    out
}

#[test]
fn server_initiated_close_waits_for_the_clients() {
    let mut conn = WsConnection::new(DEFAULT);
    conn.close(CloseCode::Away, "server shutting down");
    assert_eq!(conn.state(), State::Closing);
    assert!(!conn.is_open());
    assert_eq!(
        transmit(&mut conn),
        server_close(Some(1001), "server shutting down")
    );
    // A second close, and pings, are not sent.
    conn.close(CloseCode::Normal, "again");
    conn.send_ping(b"hb");
    assert!(transmit(&mut conn).is_empty());
    // The client's messages and pings are read but neither reported nor answered.
    let input = [
        text(true, b"in flight"),
        masked(true, PING, b"p"),
        close_frame(1001, b""),
    ]
    .concat();
    let fed = feed_conn(&mut conn, &[&input]);
    assert_eq!(
        fed,
        Fed {
            events: vec![Event::Close {
                code: Some(CloseCode::Away),
                reason: String::new(),
            }],
            consumed: input.len(),
            error: None,
            transmit: vec![],
            state: State::Closed,
        }
    );
    assert_eq!(conn.handle_input(&text(true, b"x")), Ok(0));
}

#[test]
fn protocol_errors_while_closing_send_no_second_close() {
    let mut conn = WsConnection::new(DEFAULT);
    conn.close(CloseCode::Normal, "");
    let close = transmit(&mut conn);
    assert_eq!(close, server_close(Some(1000), ""));
    assert_eq!(conn.handle_input(&[0x81, 0x00]), Err(protocol(NOT_MASKED)));
    assert_eq!(conn.state(), State::Failed);
    assert!(transmit(&mut conn).is_empty());
}

#[test]
fn heartbeat_pings_and_pongs() {
    let mut conn = WsConnection::new(DEFAULT);
    assert!(conn.last_pong_seen());
    conn.send_ping(b"1");
    conn.send_ping(b"2");
    assert!(!conn.last_pong_seen());
    let mut ping = Vec::new();
    encode_ping(b"2", &mut ping);
    assert_eq!(transmit(&mut conn), ping, "only the latest ping");
    assert!(transmit(&mut conn).is_empty());
    // Other frames do not count as a pong.
    let input = text(true, b"chat");
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert!(!conn.last_pong_seen());
    let input = masked(true, PONG, b"2");
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert!(conn.last_pong_seen());
    // A pong queued before a ping is written first, then the ping, then a close.
    conn.send_ping(b"3");
    assert_eq!(conn.handle_input(&masked(true, PING, b"c")), Ok(7));
    conn.close(CloseCode::Normal, "");
    let mut want = pong(b"c");
    encode_ping(b"3", &mut want);
    want.extend_from_slice(&server_close(Some(1000), ""));
    assert_eq!(transmit(&mut conn), want);
}

#[test]
fn event_limit_stops_input_until_drained() {
    let frames: Vec<u8> = (0..WS_EVENTS_PENDING_MAX + 10)
        .flat_map(|_| text(true, b"m"))
        .collect();
    let mut conn = WsConnection::new(DEFAULT);
    let used = conn.handle_input(&frames).unwrap();
    assert_eq!(used, WS_EVENTS_PENDING_MAX * 7);
    // Nothing more until the events are taken.
    assert_eq!(conn.handle_input(&frames[used..]), Ok(0));
    let drained = std::iter::from_fn(|| conn.poll_event()).count();
    assert_eq!(drained, WS_EVENTS_PENDING_MAX);
    assert_eq!(conn.handle_input(&frames[used..]), Ok(10 * 7));
}

#[test]
fn ping_floods_leave_the_latest_pongs() {
    let input: Vec<u8> = (0..1000u32)
        .flat_map(|i| masked(true, PING, &i.to_be_bytes()))
        .collect();
    let mut conn = WsConnection::new(DEFAULT);
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    let latest: Vec<u8> = (1000 - WS_PONGS_PENDING_MAX as u32..1000)
        .flat_map(|i| pong(&i.to_be_bytes()))
        .collect();
    assert_eq!(transmit(&mut conn), latest);
    assert!(transmit(&mut conn).is_empty());
    // Written pongs make room: the next pings are all answered again.
    let input: Vec<u8> = (0..3u8).flat_map(|i| masked(true, PING, &[i])).collect();
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert_eq!(
        transmit(&mut conn),
        [pong(&[0]), pong(&[1]), pong(&[2])].concat()
    );
}

#[test]
fn errors_are_the_clients_and_name_their_close_code() {
    assert_eq!(protocol(NOT_MASKED).close_code(), CloseCode::Protocol);
    assert_eq!(invalid_text().close_code(), CloseCode::Invalid);
    assert_eq!(too_big(16).close_code(), CloseCode::Size);
    assert_eq!(
        too_big(16).to_string(),
        "WebSocket client sent a message over 16 bytes (close 1009)"
    );
    assert_eq!(
        protocol(NOT_MASKED).to_string(),
        "WebSocket client error: client frame not masked (close 1002)"
    );
    for error in [protocol(INTERLEAVED), invalid_text(), too_big(1)] {
        assert!(error.message().len() <= WS_CLOSE_REASON_BYTES_MAX);
    }
}

// ---------------------------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------------------------

/// RFC 6455 §1.2's example request.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// What Chromium sends for `new WebSocket("ws://localhost:8080/ws")` from a page of the same
/// server.
const CHROMIUM_REQUEST: &str = "GET /ws HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: sid=abc\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// What Firefox sends: `Connection: keep-alive, Upgrade`, `Upgrade: websocket`.
const FIREFOX_REQUEST: &str = "GET /ws HTTP/1.1\r\n\
Host: chat.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n\
Accept: */*\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Connection: keep-alive, Upgrade\r\n\
Upgrade: websocket\r\n\r\n";

fn with_head<R>(request: &str, f: impl FnOnce(&RequestHead<'_>) -> R) -> R {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    match decode_request(request.as_bytes(), &mut slots) {
        Ok(Decode::Complete { value, .. }) => f(&value),
        other => panic!("test request does not decode: {other:?}"),
    }
}

fn answer(request: &str, allowed: &AllowedOrigins) -> Handshake {
    with_head(request, |head| check_upgrade(head, allowed))
}

fn accept(key: &str) -> Handshake {
    Handshake::Accept {
        accept_key: key.to_owned(),
    }
}

fn refused(status: u16, reason: &'static str) -> Handshake {
    Handshake::Reject {
        status,
        reason,
        headers: b"",
    }
}

#[test]
fn rfc_example_key_and_101_head() {
    let any = AllowedOrigins::Any;
    assert_eq!(
        answer(RFC_REQUEST, &any),
        accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let mut out = Vec::new();
    encode_accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    // The example's page is another host than the server: refused by default, allowed by list.
    assert_eq!(
        answer(RFC_REQUEST, &AllowedOrigins::SameHost),
        refused(403, "origin not allowed")
    );
    let list = AllowedOrigins::List(vec![
        "https://other.example".into(),
        "HTTP://Example.com".into(),
    ]);
    assert_eq!(
        answer(RFC_REQUEST, &list),
        accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn browsers_requests_are_accepted() {
    let same = AllowedOrigins::SameHost;
    assert_eq!(
        answer(CHROMIUM_REQUEST, &same),
        accept("HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
    );
    assert_eq!(
        answer(FIREFOX_REQUEST, &same),
        accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

/// The RFC request with `line` replaced by `with` (or removed when `with` is empty).
fn edited(line: &str, with: &str) -> String {
    let request = RFC_REQUEST.replace("Origin: http://example.com\r\n", "");
    assert!(request.contains(line), "{line}");
    request.replace(line, with)
}

#[test]
fn refusals() {
    let same = AllowedOrigins::SameHost;
    let cases: Vec<(&str, String, Handshake)> = vec![
        (
            "POST",
            edited("GET /chat", "POST /chat"),
            Handshake::Reject {
                status: 405,
                reason: "a WebSocket upgrade must be a GET request",
                headers: b"Allow: GET\r\n",
            },
        ),
        (
            "HTTP/1.0",
            edited("HTTP/1.1", "HTTP/1.0"),
            refused(400, "a WebSocket upgrade needs HTTP/1.1"),
        ),
        (
            "no Upgrade",
            edited("Upgrade: websocket\r\n", ""),
            refused(400, "missing Upgrade: websocket"),
        ),
        (
            "Upgrade: h2c",
            edited("Upgrade: websocket\r\n", "Upgrade: h2c\r\n"),
            refused(400, "missing Upgrade: websocket"),
        ),
        (
            "no Connection",
            edited("Connection: Upgrade\r\n", ""),
            refused(400, "missing Connection: Upgrade"),
        ),
        (
            "Connection: keep-alive",
            edited("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
            refused(400, "missing Connection: Upgrade"),
        ),
        (
            "version 8",
            edited("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            Handshake::Reject {
                status: 426,
                reason: "unsupported WebSocket version; use 13",
                headers: b"Sec-WebSocket-Version: 13\r\n",
            },
        ),
        (
            "no version",
            edited("Sec-WebSocket-Version: 13\r\n", ""),
            Handshake::Reject {
                status: 426,
                reason: "unsupported WebSocket version; use 13",
                headers: b"Sec-WebSocket-Version: 13\r\n",
            },
        ),
        (
            "two versions",
            edited(
                "Sec-WebSocket-Version: 13\r\n",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n",
            ),
            Handshake::Reject {
                status: 426,
                reason: "unsupported WebSocket version; use 13",
                headers: b"Sec-WebSocket-Version: 13\r\n",
            },
        ),
        (
            "no key",
            edited("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            refused(400, "need exactly one Sec-WebSocket-Key"),
        ),
        (
            "two keys",
            edited(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n",
            ),
            refused(400, "need exactly one Sec-WebSocket-Key"),
        ),
        (
            "key of 15 bytes",
            edited("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
            refused(400, "Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            "key of 17 bytes",
            edited("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQAB"),
            refused(400, "Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            "key not base64",
            edited("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j*Q=="),
            refused(400, "Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            "key with stray bits in its last character",
            edited("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZR=="),
            refused(400, "Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            "key without padding",
            edited("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
            refused(400, "Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            "cross-site origin",
            edited(
                "Host: server.example.com\r\n",
                "Host: server.example.com\r\nOrigin: https://evil.example\r\n",
            ),
            refused(403, "origin not allowed"),
        ),
        (
            "two origins",
            edited(
                "Host: server.example.com\r\n",
                "Host: server.example.com\r\nOrigin: http://server.example.com\r\nOrigin: https://evil.example\r\n",
            ),
            refused(400, "more than one Origin header field"),
        ),
    ];
    for (name, request, want) in cases {
        assert_eq!(answer(&request, &same), want, "{name}");
    }
    // Case-insensitive tokens, and no Origin at all (a program, not a page), are fine.
    let request = edited("Upgrade: websocket", "Upgrade: WebSocket")
        .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
    assert_eq!(
        answer(&request, &same),
        accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn origin_policy_table() {
    use AllowedOrigins::{Any, List, SameHost};
    let list = List(vec![
        "https://chat.example.com".into(),
        "http://localhost:3000".into(),
    ]);
    let cases: &[(Option<&str>, Option<&str>, &AllowedOrigins, bool)] = &[
        (None, Some("chat.example.com"), &SameHost, true),
        (None, None, &list, true),
        (
            Some("https://chat.example.com"),
            Some("chat.example.com"),
            &SameHost,
            true,
        ),
        (
            Some("http://chat.example.com"),
            Some("chat.example.com"),
            &SameHost,
            true,
        ),
        (
            Some("https://Chat.Example.com"),
            Some("chat.example.COM"),
            &SameHost,
            true,
        ),
        (
            Some("https://chat.example.com"),
            Some("chat.example.com:443"),
            &SameHost,
            true,
        ),
        (
            Some("http://chat.example.com"),
            Some("chat.example.com:80"),
            &SameHost,
            true,
        ),
        (
            Some("https://chat.example.com:443"),
            Some("chat.example.com"),
            &SameHost,
            true,
        ),
        (
            Some("http://localhost:8080"),
            Some("localhost:8080"),
            &SameHost,
            true,
        ),
        (
            Some("http://[::1]:8080"),
            Some("[::1]:8080"),
            &SameHost,
            true,
        ),
        (Some("http://[::1]"), Some("[::1]"), &SameHost, true),
        (
            Some("http://localhost:8080"),
            Some("localhost:8081"),
            &SameHost,
            false,
        ),
        (
            Some("http://localhost"),
            Some("localhost:8080"),
            &SameHost,
            false,
        ),
        (
            Some("https://chat.example.com"),
            Some("chat.example.com:80"),
            &SameHost,
            false,
        ),
        (
            Some("https://evil.example"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (
            Some("https://chat.example.com.evil.example"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (Some("https://chat.example.com"), None, &SameHost, false),
        (Some("null"), Some("chat.example.com"), &SameHost, false),
        (
            Some("file://chat.example.com"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (
            Some("ws://chat.example.com"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (
            Some("https://chat.example.com/"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (
            Some("https://user@chat.example.com"),
            Some("chat.example.com"),
            &SameHost,
            false,
        ),
        (
            Some("https://chat.example.com:"),
            Some("chat.example.com:"),
            &SameHost,
            false,
        ),
        (
            Some("https://chat.example.com:99999"),
            Some("chat.example.com:99999"),
            &SameHost,
            false,
        ),
        (Some("https://"), Some(""), &SameHost, false),
        (
            Some("https://chat.example.com"),
            Some("evil.example"),
            &list,
            true,
        ),
        (
            Some("HTTPS://CHAT.EXAMPLE.COM"),
            Some("evil.example"),
            &list,
            true,
        ),
        (Some("http://localhost:3000"), None, &list, true),
        (
            Some("http://localhost:3001"),
            Some("localhost:3001"),
            &list,
            false,
        ),
        (Some("https://chat.example.com/"), None, &list, false),
        (
            Some("https://evil.example"),
            Some("evil.example"),
            &Any,
            true,
        ),
        (Some("null"), None, &Any, true),
    ];
    for (origin, host, allowed, want) in cases {
        assert_eq!(
            origin_allowed(origin.map(str::as_bytes), host.map(str::as_bytes), allowed),
            *want,
            "origin {origin:?} host {host:?} under {allowed:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties (proptest)
// ---------------------------------------------------------------------------------------------

fn opcode_strategy() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(TEXT),
        Just(BINARY),
        Just(CONTINUE),
        Just(CLOSE),
        Just(PING),
        Just(PONG)
    ]
}

fn length_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=125, 126usize..=0xffff, 0x10000usize..0x10100]
}

/// Frames a fuzzer or a random client might send: valid ones, and invalid or partial ones.
fn piece_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ("\\PC{0,12}", any::<bool>()).prop_map(|(t, fin)| text(fin, t.as_bytes())),
        (proptest::collection::vec(any::<u8>(), 0..12), any::<bool>())
            .prop_map(|(b, fin)| cont(fin, &b)),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| masked(true, PING, &b)),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| masked(true, PONG, &b)),
        (any::<u16>(), "\\PC{0,6}").prop_map(|(c, r)| close_frame(c, r.as_bytes())),
        (1000u16..1012).prop_map(|c| close_frame(c, b"")),
        proptest::collection::vec(any::<u8>(), 0..6),
        (0u64..300).prop_map(|len| header_only(BINARY, len)),
        Just(text(false, b"\xf0\x9f")),
        Just(cont(true, b"\x98\x80")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn masked_frames_round_trip(
        fin in any::<bool>(),
        opcode in opcode_strategy(),
        mask in any::<[u8; 4]>(),
        len in length_strategy(),
        seed in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (fin, len) = if is_control(opcode) { (true, len % 126) } else { (fin, len) };
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let mut input = Vec::new();
        encode_masked(fin, opcode, mask, &payload, &mut input);
        input.extend_from_slice(b"next");
        let frame_len = input.len() - 4;
        prop_assert_eq!(
            decode(&input),
            Ok(Decode::Complete {
                value: Frame { fin, opcode, payload: payload.clone() },
                consumed: frame_len,
            })
        );
        // Any prefix is Partial.
        let cut = cut.index(frame_len);
        prop_assert_eq!(decode(&input[..cut]), Ok(Decode::Partial));
        // tungstenite reads the same header.
        let mut cursor = Cursor::new(&input);
        let (header, length) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
            .unwrap()
            .unwrap();
        prop_assert_eq!(header.is_final, fin);
        prop_assert_eq!(header.opcode, opcode);
        prop_assert_eq!(header.mask, Some(mask));
        prop_assert_eq!(length, len as u64);
        let Ok(Decode::Complete { consumed, .. }) = decode_header(&input) else {
            panic!("header decodes");
        };
        prop_assert_eq!(cursor.position() as usize, consumed);
        prop_assert!(consumed <= WS_FRAME_HEADER_BYTES_MAX);
    }

    #[test]
    fn server_frames_parse_back(
        opcode in opcode_strategy(),
        len in length_strategy(),
        seed in any::<u8>(),
    ) {
        let len = if is_control(opcode) { len % 126 } else { len };
        let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
        let mut out = b"before".to_vec();
        encode_frame(opcode, &payload, &mut out);
        prop_assert_eq!(out.len(), 6 + server_frame_len(len));
        let mut cursor = Cursor::new(&out[6..]);
        let (header, length) = tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
            .unwrap()
            .unwrap();
        prop_assert!(header.is_final);
        prop_assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
        prop_assert_eq!(header.opcode, opcode);
        prop_assert_eq!(header.mask, None);
        prop_assert_eq!(length, len as u64);
        let start = 6 + cursor.position() as usize;
        prop_assert!(out[start..] == payload[..]);
        prop_assert!(cursor.position() as usize <= WS_SERVER_FRAME_HEADER_BYTES_MAX);
    }

    #[test]
    fn fragmented_messages_with_pings_come_out_whole(
        messages in proptest::collection::vec(
            (
                any::<bool>(),
                "\\PC{0,40}",
                proptest::collection::vec(any::<u8>(), 0..120),
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                any::<[u8; 4]>(),
                any::<bool>(),
            ),
            0..6,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut input = Vec::new();
        let mut events = Vec::new();
        let mut sent_pings: Vec<[u8; 2]> = Vec::new();
        for (n, (is_text, text, binary, cuts, mask, pings)) in messages.iter().enumerate() {
            let payload = if *is_text { text.as_bytes() } else { &binary[..] };
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
            bounds.push(0);
            bounds.push(payload.len());
            bounds.sort_unstable();
            let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = match (i, is_text) {
                    (0, true) => TEXT,
                    (0, false) => BINARY,
                    _ => CONTINUE,
                };
                let fin = i == pieces.len() - 1;
                encode_masked(fin, opcode, *mask, piece, &mut input);
                if *pings && !fin {
                    let ping = [n as u8, i as u8];
                    encode_masked(true, PING, *mask, &ping, &mut input);
                    sent_pings.push(ping);
                }
            }
            events.push(if *is_text {
                Event::Text(text.clone())
            } else {
                Event::Binary(binary.clone())
            });
        }
        // Every ping's pong, in order, less the oldest past WS_PONGS_PENDING_MAX.
        let answered = &sent_pings[sent_pings.len().saturating_sub(WS_PONGS_PENDING_MAX)..];
        let want = open(events, input.len(), answered.iter().flat_map(|p| pong(p)).collect());
        let cut = cut.index(input.len() + 1);
        prop_assert_eq!(&feed(DEFAULT, &[&input]), &want);
        prop_assert_eq!(&feed(DEFAULT, &[&input[..cut], &input[cut..]]), &want);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&feed(DEFAULT, &bytes), &want);
    }

    #[test]
    fn frame_soup_is_the_same_whole_and_split(
        pieces in proptest::collection::vec(piece_strategy(), 0..10),
        max in prop_oneof![Just(0usize), Just(8), Just(64), Just(DEFAULT)],
        cut in any::<prop::sample::Index>(),
    ) {
        let input = pieces.concat();
        let whole = feed(max, &[&input]);
        let cut = cut.index(input.len() + 1);
        prop_assert_eq!(&feed(max, &[&input[..cut], &input[cut..]]), &whole);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&feed(max, &bytes), &whole);
        // The standalone decoder obeys the prefix rule on the same bytes.
        let decoded = decode(&input);
        let prefix = decode(&input[..cut]);
        match &decoded {
            Ok(Decode::Complete { consumed, .. }) if cut < *consumed => {
                prop_assert_eq!(prefix, Ok(Decode::Partial));
            }
            Ok(Decode::Complete { .. }) => prop_assert_eq!(prefix, decoded.clone()),
            Ok(Decode::Partial) => prop_assert_eq!(prefix, Ok(Decode::Partial)),
            Err(_) => prop_assert!(prefix == Ok(Decode::Partial) || prefix == decoded),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        cut in any::<prop::sample::Index>(),
    ) {
        let whole = feed(DEFAULT, &[&bytes]);
        let cut = cut.index(bytes.len() + 1);
        prop_assert_eq!(&feed(DEFAULT, &[&bytes[..cut], &bytes[cut..]]), &whole);
        if let Ok(Decode::Complete { consumed, .. }) = decode(&bytes) {
            prop_assert!(consumed <= bytes.len());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fragment floods (WS_FRAGMENT_CHARGE_BYTES)
// ---------------------------------------------------------------------------------------------

/// Feeds `input` whole, draining events; the events, and the error if the engine failed.
fn feed_all(ws: &mut WsConnection, mut input: &[u8]) -> (Vec<Event>, Option<WsError>) {
    let mut events = Vec::new();
    loop {
        match ws.handle_input(input) {
            Ok(used) => {
                while let Some(e) = ws.poll_event() {
                    events.push(e);
                }
                if used == 0 {
                    return (events, None);
                }
                input = &input[used..];
            }
            Err(e) => return (events, Some(e)),
        }
    }
}

#[test]
fn a_flood_of_empty_fragments_closes_with_1009_at_the_limit() {
    let mut ws = WsConnection::new(DEFAULT);
    let allowed = DEFAULT / WS_FRAGMENT_CHARGE_BYTES;
    let mut input = text(false, b"");
    for _ in 1..allowed {
        input.extend(cont(false, b""));
    }
    // Exactly at the limit: still reading.
    let (events, error) = feed_all(&mut ws, &input);
    assert!(events.is_empty() && error.is_none(), "{error:?}");
    // One more empty fragment passes it.
    let (_, error) = feed_all(&mut ws, &cont(false, b""));
    assert_eq!(error, Some(too_big(DEFAULT)));
    assert_eq!(ws.state(), State::Failed);
}

#[test]
fn a_message_of_a_thousand_small_fragments_under_the_limit_is_whole() {
    let mut ws = WsConnection::new(DEFAULT);
    let mut input = text(false, b"0123456789");
    for i in 1..1000 {
        input.extend(cont(i == 999, b"0123456789"));
    }
    let (events, error) = feed_all(&mut ws, &input);
    assert_eq!(error, None);
    assert_eq!(events, vec![Event::Text("0123456789".repeat(1000))]);
    // The count starts over with the next message, and one frame may use the whole limit.
    let (events, error) = feed_all(&mut ws, &masked(true, BINARY, &binary_payload(DEFAULT)));
    assert_eq!(error, None);
    assert_eq!(events.len(), 1);
}

#[test]
fn a_message_at_the_limit_in_two_fragments_is_whole() {
    let mut ws = WsConnection::new(DEFAULT);
    let half = binary_payload(DEFAULT / 2);
    let input = [masked(false, BINARY, &half), cont(true, &half)].concat();
    let (events, error) = feed_all(&mut ws, &input);
    assert_eq!(error, None);
    assert_eq!(events, vec![Event::Binary([half.clone(), half].concat())]);
}

#[test]
fn a_tiny_limit_still_allows_the_minimum_of_fragments() {
    let mut ws = WsConnection::new(16);
    let mut input = text(false, b"");
    for _ in 1..WS_FRAGMENTS_MIN {
        input.extend(cont(false, b""));
    }
    assert_eq!(feed_all(&mut ws, &input).1, None);
    assert_eq!(feed_all(&mut ws, &cont(false, b"")).1, Some(too_big(16)));
}
