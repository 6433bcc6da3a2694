//! Fuzzes `decode_request`: it must never panic, a complete decode must consume no more than
//! the input and decode the same from the consumed bytes alone, and every prefix of the input
//! must be `Partial` or give exactly the whole input's error (the prefix rule the server relies
//! on when a head arrives over several reads). It checks no request semantics beyond that; the
//! unit tests in `src/proto/http1/tests.rs` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::http1::{
    BodyFraming, Decode, HEADERS_COUNT_MAX, RequestError, Version, decode_request,
};

/// An owned summary of a decode, comparable across buffers.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
}

fn decode(input: &[u8]) -> Result<Decode<Head>, RequestError> {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    Ok(match decode_request(input, &mut slots)? {
        Decode::Partial => Decode::Partial,
        Decode::Complete { value, consumed } => Decode::Complete {
            value: Head {
                method: value.method.to_owned(),
                target: value.target.to_owned(),
                version: value.version,
                headers: value
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
                framing: value.framing,
                keep_alive: value.keep_alive,
                expect_continue: value.expect_continue,
            },
            consumed,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    let head_len = match &whole {
        Ok(Decode::Complete { consumed, .. }) => {
            assert!(*consumed <= data.len());
            assert_eq!(
                decode(&data[..*consumed]),
                whole,
                "the head alone decodes differently"
            );
            Some(*consumed)
        }
        Ok(Decode::Partial) => None,
        Err(e) => {
            assert!(!e.message().is_empty());
            assert!(matches!(e.status(), 400 | 414 | 431 | 501 | 505));
            None
        }
    };
    // Every prefix for small inputs; a spread of them for large ones.
    let step = (data.len() / 64).max(1);
    for cut in (0..data.len())
        .step_by(step)
        .chain(data.len().checked_sub(1))
    {
        let prefix = decode(&data[..cut]);
        match (&prefix, &whole, head_len) {
            (Ok(Decode::Partial), _, Some(len)) => {
                assert!(cut < len, "Partial at {cut} with a head of {len}")
            }
            (Ok(Decode::Partial), _, None) => {}
            (Err(_), Err(_), _) | (Ok(Decode::Complete { .. }), Ok(Decode::Complete { .. }), _) => {
                assert_eq!(prefix, whole, "prefix of {cut} bytes");
            }
            _ => panic!("prefix of {cut} bytes gave {prefix:?}, the whole {whole:?}"),
        }
    }
});
