//! Fuzzes `BodyDecoder`: it must never panic, never consume more than it is given, never
//! produce more than the limit, and decode the same whether the input comes whole or split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::http1::{BodyDecoder, BodyFraming};

const LIMIT: u64 = 4096;

fn run(framing: BodyFraming, pieces: &[&[u8]]) -> Option<(Vec<u8>, usize, bool)> {
    let mut d = BodyDecoder::new(framing, LIMIT).ok()?;
    let mut out = Vec::new();
    let mut carry = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        carry.extend_from_slice(piece);
        let p = d.decode(&carry, &mut out).ok()?;
        assert!(p.consumed <= carry.len());
        consumed += p.consumed;
        carry.drain(..p.consumed);
        if p.done {
            break;
        }
    }
    assert!(out.len() as u64 <= LIMIT);
    Some((out, consumed, d.is_done()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let framing = if data[0] & 1 == 0 { BodyFraming::Chunked } else { BodyFraming::Length(u64::from(data[0] >> 1) * 32) };
    let cut = usize::from(data[1]) % (data.len() - 1);
    let body = &data[2..];
    let whole = run(framing, &[body]);
    let split = run(framing, &[&body[..cut.min(body.len())], &body[cut.min(body.len())..]]);
    assert_eq!(whole, split);
});
