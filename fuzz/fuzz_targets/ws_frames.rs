//! Fuzzes the WebSocket frame decoder (`decode`) and the connection engine (`WsConnection`)
//! with arbitrary client bytes. The first byte chooses the message size limit, the second where
//! the input is split; the rest is the input.
//!
//! The engine must never panic, never use more bytes than it is offered, stick to its first
//! error (with one close frame carrying its code queued), and give the same events, bytes used,
//! error, state and bytes to write whether the input arrives whole, in two reads, or byte by
//! byte. The decoder must obey the prefix rule: a prefix of the input is `Partial`, or the
//! whole input's frame or error. It checks no semantics; `src/proto/ws/tests.rs` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::ws::{
    Decode, Event, State, WS_MESSAGE_BYTES_MAX, WsConnection, WsError, decode, encode_close,
};

/// Limits worth reaching: none, tiny, around the control frame size, the 16-bit length
/// boundary, the default.
const LIMITS: [usize; 8] = [0, 1, 16, 125, 126, 4096, 65535, WS_MESSAGE_BYTES_MAX];

#[derive(Debug, PartialEq, Eq)]
struct Fed {
    events: Vec<Event>,
    consumed: usize,
    error: Option<WsError>,
    transmit: Vec<u8>,
    state: State,
}

/// Feeds `pieces` as a server would: unused input is kept and offered again with the next
/// piece, events are drained after every call, and calls repeat while they make progress.
fn feed(max: usize, pieces: &[&[u8]]) -> Fed {
    let mut conn = WsConnection::new(max);
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
                    assert_eq!(
                        conn.handle_input(&pending),
                        Err(error.clone()),
                        "not sticky"
                    );
                    assert_eq!(conn.state(), State::Failed);
                    fed.events.extend(std::iter::from_fn(|| conn.poll_event()));
                    fed.error = Some(error);
                    fed.consumed = 0;
                    break 'pieces;
                }
            }
        }
    }
    conn.poll_transmit(&mut fed.transmit);
    let mut again = Vec::new();
    assert_eq!(conn.poll_transmit(&mut again), 0, "transmitted twice");
    if let Some(error) = &fed.error {
        // The close frame with the error's code and message is the last thing queued.
        let mut close = Vec::new();
        encode_close(Some(error.close_code()), error.message(), &mut close);
        assert!(fed.transmit.ends_with(&close), "no close for {error:?}");
    }
    fed.state = conn.state();
    fed
}

fuzz_target!(|data: &[u8]| {
    let [choice, cut, input @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*choice) % LIMITS.len()];
    let cut = usize::from(*cut) * input.len() / 255;

    let whole = feed(max, &[input]);
    assert_eq!(
        feed(max, &[&input[..cut], &input[cut..]]),
        whole,
        "split at {cut}"
    );
    if input.len() <= 2048 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(max, &bytes), whole, "byte by byte");
    }

    let decoded = decode(input);
    let prefix = decode(&input[..cut]);
    match &decoded {
        Ok(Decode::Complete { consumed, .. }) => {
            assert!(*consumed >= 6 && *consumed <= input.len());
            if cut < *consumed {
                assert_eq!(prefix, Ok(Decode::Partial), "prefix of {cut}");
            } else {
                assert_eq!(prefix, decoded, "prefix of {cut}");
            }
        }
        Ok(Decode::Partial) => assert_eq!(prefix, Ok(Decode::Partial), "prefix of {cut}"),
        Err(_) => assert!(
            prefix == Ok(Decode::Partial) || prefix == decoded,
            "prefix of {cut} gave {prefix:?}, the whole {decoded:?}"
        ),
    }
});
