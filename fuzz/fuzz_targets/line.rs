//! Fuzzes the line port's decoder (`LineDecoder`) with arbitrary client bytes. The first byte
//! chooses the line limit (its top two bits) and the size of the reads the input is cut into
//! (the rest); the rest is the input.
//!
//! The decoder must never panic, use at least one byte and at most what it is offered on every
//! call, hold no more than the limit, give only lines within the limit with no LF in them, and
//! give the same events and hold the same bytes whether the input arrives whole, in reads of
//! the chosen size, or byte by byte. It checks no semantics; `src/proto/line/tests.rs` does,
//! against a model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::line::{LINE_BYTES_MAX_DEFAULT, LineDecoder, LineEvent};

/// Limits worth reaching: none, one byte, a short line, the default.
const LIMITS: [usize; 4] = [0, 1, 16, LINE_BYTES_MAX_DEFAULT];

/// Feeds `input` in reads of `chunk` bytes, looping over each read until it is used up, and
/// returns the events and the bytes held at the end.
fn feed(max: usize, input: &[u8], chunk: usize) -> (Vec<LineEvent>, usize) {
    let mut decoder = LineDecoder::new(max);
    let mut events = Vec::new();
    for read in input.chunks(chunk) {
        let mut rest = read;
        while !rest.is_empty() {
            let (used, event) = decoder.decode(rest);
            assert!(used > 0, "no progress");
            assert!(used <= rest.len(), "used more than offered");
            assert!(decoder.buffered() <= max, "held more than the limit");
            if let Some(LineEvent::Line(line)) = &event {
                assert!(line.len() <= max, "a line over the limit");
                assert!(!line.contains('\n'), "a line with its terminator");
            }
            events.extend(event);
            rest = &rest[used..];
        }
    }
    assert_eq!(decoder.decode(&[]), (0, None), "an event from nothing");
    (events, decoder.buffered())
}

fuzz_target!(|data: &[u8]| {
    let [choice, input @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*choice >> 6)];
    let chunk = usize::from(*choice & 0x3f) + 1;

    let whole = feed(max, input, input.len().max(1));
    assert_eq!(feed(max, input, chunk), whole, "reads of {chunk}");
    if input.len() <= 4096 {
        assert_eq!(feed(max, input, 1), whole, "byte by byte");
    }
});
