//! Fuzzes `BodyDecoder`: it must never panic, never consume more than it is offered, never
//! produce more than the limit, stick to its first error, and decode identically whether the
//! input comes whole, split in two, or byte by byte. The first three bytes choose the framing,
//! the limit and the split; the rest is the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::http1::{BodyDecoder, BodyError, BodyFraming};

#[derive(Debug, PartialEq, Eq)]
struct Fed {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<BodyError>,
}

fn feed(framing: BodyFraming, limit: u64, pieces: &[&[u8]]) -> Result<Fed, BodyError> {
    let mut decoder = BodyDecoder::new(framing, limit)?;
    let mut fed = Fed {
        out: Vec::new(),
        consumed: 0,
        done: decoder.is_done(),
        error: None,
    };
    let mut pending = Vec::new();
    for piece in pieces {
        if fed.done {
            break;
        }
        pending.extend_from_slice(piece);
        match decoder.decode(&pending, &mut fed.out) {
            Ok(progress) => {
                assert!(progress.consumed <= pending.len());
                assert_eq!(progress.done, decoder.is_done());
                fed.consumed += progress.consumed;
                fed.done = progress.done;
                pending.drain(..progress.consumed);
                assert!(
                    fed.done || pending.is_empty(),
                    "input left before the end of the body"
                );
            }
            Err(error) => {
                assert_eq!(
                    decoder.decode(b"0\r\n\r\n", &mut Vec::new()),
                    Err(error.clone())
                );
                fed.error = Some(error);
                fed.consumed = 0;
                break;
            }
        }
    }
    assert!(fed.out.len() as u64 <= limit, "decoded past the limit");
    Ok(fed)
}

fuzz_target!(|data: &[u8]| {
    let [kind, limit, cut, input @ ..] = data else {
        return;
    };
    let limit = u64::from(*limit) * 16;
    let framing = match kind % 4 {
        0 => BodyFraming::None,
        1 => BodyFraming::Length(u64::from(*kind / 4) * 8),
        _ => BodyFraming::Chunked,
    };
    let cut = usize::from(*cut).min(input.len());
    let whole = feed(framing, limit, &[input]);
    assert_eq!(
        feed(framing, limit, &[&input[..cut], &input[cut..]]),
        whole,
        "split at {cut}"
    );
    if input.len() <= 512 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(framing, limit, &bytes), whole, "byte by byte");
    }
});
