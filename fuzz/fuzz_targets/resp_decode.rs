//! Fuzzes the RESP reply decoder (`decode_value`) and the connection engine (`RespConnection`)
//! with arbitrary server bytes.
//!
//! The decoder must never panic; a complete decode must consume at least one byte and no more
//! than the input, and decode the same from the consumed bytes alone; a prefix of the input
//! (cut where the first byte says) must be `Partial`, or the whole input's value or error (the
//! prefix rule the engine relies on when a reply arrives over several reads).
//!
//! The engine, past a `HELLO 3` handshake and with a few commands written, must give the same
//! consumption, answers, pushes and error whether the input arrives whole or in two reads, must
//! never consume more than it is offered, and must keep failing with its first error. It checks
//! no reply semantics; `src/proto/resp/tests.rs` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::resp::{
    Decode, Options, RespConnection, RespError, Value, decode_value, encode_ping,
};

/// `HELLO 3` answered by redis-server 7.0.15.
const HELLO_REPLY: &[u8] =
    b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";

/// Commands written before the input arrives, so that many replies can be matched.
const COMMANDS_IN_FLIGHT: u32 = 8;

type Fed = (
    Result<usize, RespError>,
    Vec<(u32, Result<Value, RespError>)>,
    Vec<Value>,
);

fn ready_connection() -> RespConnection<u32> {
    let mut conn = RespConnection::new(Options::default());
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    assert_eq!(conn.handle_input(HELLO_REPLY), Ok(HELLO_REPLY.len()));
    let mut ping = Vec::new();
    encode_ping(&mut ping);
    for token in 0..COMMANDS_IN_FLIGHT {
        conn.queue(token, &ping).expect("a ping queues");
    }
    out.clear();
    conn.poll_transmit(&mut out);
    conn
}

/// Feeds `input` to a copy of `conn` in one read, or in two split at `cut`, keeping what is not
/// consumed as a runtime would.
fn feed(conn: &RespConnection<u32>, input: &[u8], cut: Option<usize>) -> Fed {
    let mut conn = conn.clone();
    let result = match cut {
        None => conn.handle_input(input),
        Some(cut) => match conn.handle_input(&input[..cut]) {
            Err(error) => Err(error),
            Ok(first) => {
                assert!(first <= cut, "consumed past its input");
                conn.handle_input(&input[first..])
                    .map(|second| first + second)
            }
        },
    };
    if let Ok(consumed) = result {
        assert!(consumed <= input.len(), "consumed past its input");
    }
    let replies = std::iter::from_fn(|| conn.poll_reply()).collect();
    let pushes = std::iter::from_fn(|| conn.poll_push()).collect();
    (result, replies, pushes)
}

fuzz_target!(|data: &[u8]| {
    let whole = decode_value(data);
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let prefix = decode_value(&data[..cut]);
    match &whole {
        Ok(Decode::Complete { value, consumed }) => {
            assert!(*consumed > 0 && *consumed <= data.len());
            assert_eq!(
                decode_value(&data[..*consumed]),
                Ok(Decode::Complete {
                    value: value.clone(),
                    consumed: *consumed
                })
            );
            if cut < *consumed {
                assert_eq!(prefix, Ok(Decode::Partial), "prefix of {cut}");
            } else {
                assert_eq!(prefix, whole, "prefix of {cut}");
            }
        }
        Ok(Decode::Partial) => assert_eq!(prefix, Ok(Decode::Partial), "prefix of {cut}"),
        Err(_) => assert!(
            prefix == Ok(Decode::Partial) || prefix == whole,
            "prefix of {cut} gave {prefix:?}, the whole {whole:?}"
        ),
    }

    let conn = ready_connection();
    let once = feed(&conn, data, None);
    assert_eq!(feed(&conn, data, Some(cut)), once, "split at {cut}");
    let mut conn = conn;
    if let Err(error) = conn.handle_input(data) {
        // Sticky: the error repeats and nothing more leaves.
        assert_eq!(conn.handle_input(b"+OK\r\n"), Err(error));
        let mut out = Vec::new();
        assert_eq!(conn.poll_transmit(&mut out), 0);
    }
});
