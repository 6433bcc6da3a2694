//! Data-driven vectors for the HTTP/1.1 decoders. Every vector is also fed as each of its
//! prefixes: a prefix must decode as Partial or fail with the same error as the whole, and the
//! whole must give the expected result and `consumed`. Body vectors are fed split in two at every
//! byte and byte by byte, and must decode identically.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// method, target, framing, keep_alive, consumed (None = whole input)
    Ok(&'static str, &'static str, BodyFraming, bool, Option<usize>),
    Err(u16),
}

use BodyFraming::{Chunked, Length, None as NoBody};
use Want::{Err as E, Ok as K};

const REQUESTS: &[(&str, &[u8], Want)] = &[
    ("simple GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", K("GET", "/", NoBody, true, None)),
    ("query kept in target", b"GET /a?b=c HTTP/1.1\r\nHost: a\r\n\r\n", K("GET", "/a?b=c", NoBody, true, None)),
    ("leading CRLF skipped", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", K("GET", "/", NoBody, true, None)),
    ("HTTP/1.0 closes by default", b"GET / HTTP/1.0\r\n\r\n", K("GET", "/", NoBody, false, None)),
    ("HTTP/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", K("GET", "/", NoBody, true, None)),
    ("Connection: close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", K("GET", "/", NoBody, false, None)),
    ("Content-Length", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", K("POST", "/x", Length(5), true, Some(48))),
    ("Content-Length 0 is no body", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", K("POST", "/x", NoBody, true, None)),
    ("identical duplicate CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", K("POST", "/", Length(3), true, None)),
    ("identical CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", K("POST", "/", Length(3), true, None)),
    ("chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", K("POST", "/", Chunked, true, None)),
    ("chunked any case", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", K("POST", "/", Chunked, true, None)),
    ("pipelined: consumed stops at the first", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", K("GET", "/1", NoBody, true, Some(28))),
    ("absolute-form", b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", K("GET", "http://a/x", NoBody, true, None)),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", K("OPTIONS", "*", NoBody, true, None)),
    ("empty header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n", K("GET", "/", NoBody, true, None)),
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", E(400)),
    ("TE and CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", E(400)),
    ("differing CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", E(400)),
    ("differing CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", E(400)),
    ("CL with sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", E(400)),
    ("negative CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", E(400)),
    ("CL with inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", E(400)),
    ("hex CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", E(400)),
    ("CL overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", E(400)),
    ("empty CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", E(400)),
    ("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", E(501)),
    ("TE chunked not last", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", E(400)),
    ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", E(400)),
    ("TE chunked in two headers", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E(400)),
    ("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", E(400)),
    ("TE empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", E(400)),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", E(400)),
    ("TE with vertical tab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", E(400)),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", E(400)),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n", E(400)),
    ("bare LF line ending", b"GET / HTTP/1.1\nHost: a\n\n", E(400)),
    ("bare LF in one header", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", E(400)),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", E(400)),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", E(400)),
    ("NUL in target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", E(400)),
    ("missing Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", E(400)),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", E(400)),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", E(505)),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", E(505)),
    ("no version", b"GET /\r\nHost: a\r\n\r\n", E(400)),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", E(400)),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", E(400)),
    ("authority-form", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", E(400)),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", E(400)),
];

fn check_request(name: &str, input: &[u8], want: &Want) {
    // The whole input.
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    let got = decode_request(input, &mut slots);
    let whole_error = match (&got, want) {
        (Ok(Decode::Complete { value, consumed }), Want::Ok(m, t, f, k, c)) => {
            assert_eq!(
                (value.method, value.target, value.framing, value.keep_alive),
                (*m, *t, *f, *k),
                "{name}"
            );
            assert_eq!(*consumed, c.unwrap_or(input.len()), "{name}: consumed");
            None
        }
        (Err(e), Want::Err(status)) => {
            assert_eq!(e.status(), *status, "{name}: {e:?}");
            Some(e.clone())
        }
        _ => panic!("{name}: got {got:?}, want {want:?}"),
    };
    // Every prefix: Partial, or (for error vectors) the same error found early.
    let end = match want {
        Want::Ok(.., Some(c)) => *c,
        _ => input.len(),
    };
    for cut in 0..end {
        let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
        match decode_request(&input[..cut], &mut slots) {
            Ok(Decode::Partial) => {}
            Err(e) if Some(&e) == whole_error.as_ref() => {}
            other => panic!("{name}: prefix of {cut} bytes gave {other:?}"),
        }
    }
}

#[test]
fn request_vectors_whole_and_split_at_every_byte() {
    for (name, input, want) in REQUESTS {
        check_request(name, input, want);
    }
}

#[test]
fn limits_are_enforced() {
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..HEADERS_COUNT_MAX {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    assert_eq!(
        decode_request(&many, &mut slots).unwrap_err(),
        RequestError::TooManyHeaders
    );

    let mut exactly = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..HEADERS_COUNT_MAX - 1 {
        exactly.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    exactly.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    assert!(matches!(
        decode_request(&exactly, &mut slots),
        Ok(Decode::Complete { .. })
    ));

    // An unterminated head past the limit is refused without waiting for its end.
    let big = [
        b"GET / HTTP/1.1\r\nHost: a\r\nX: ".as_slice(),
        &[b'a'; HEAD_BYTES_MAX],
    ]
    .concat();
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    assert_eq!(
        decode_request(&big, &mut slots).unwrap_err(),
        RequestError::HeadTooLarge
    );
    let long_line = [b"GET /".as_slice(), &[b'a'; REQUEST_LINE_BYTES_MAX]].concat();
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    assert_eq!(
        decode_request(&long_line, &mut slots).unwrap_err(),
        RequestError::UriTooLong
    );
    let status = RequestError::UriTooLong.status();
    assert_eq!(status, 414);
}

#[test]
fn header_lookup_and_tokens() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n";
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    let Ok(Decode::Complete { value, .. }) = decode_request(input, &mut slots) else {
        panic!()
    };
    assert_eq!(value.header("HOST"), Some(&b"a"[..]));
    assert!(value.header_has_token("connection", "upgrade"));
    assert!(!value.header_has_token("connection", "close"));
    assert!(value.expect_continue);
    assert_eq!(value.version, Version::Http11);
}

#[derive(Debug)]
enum BodyWant {
    Ok(&'static [u8], usize),
    Err(u16),
}

const BODIES: &[(&str, BodyFraming, &[u8], BodyWant)] = &[
    ("length", Length(5), b"helloGET", BodyWant::Ok(b"hello", 5)),
    (
        "chunked",
        Chunked,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
        BodyWant::Ok(b"hello world", 26),
    ),
    (
        "upper hex",
        Chunked,
        b"A\r\n0123456789\r\n0\r\n\r\n",
        BodyWant::Ok(b"0123456789", 20),
    ),
    (
        "leading zeros",
        Chunked,
        b"0005\r\nhello\r\n0\r\n\r\n",
        BodyWant::Ok(b"hello", 18),
    ),
    (
        "extension",
        Chunked,
        b"5;name=val\r\nhello\r\n0;x\r\n\r\n",
        BodyWant::Ok(b"hello", 26),
    ),
    (
        "BWS before extension",
        Chunked,
        b"5 ;x\r\nhello\r\n0\r\n\r\n",
        BodyWant::Ok(b"hello", 18),
    ),
    (
        "trailers",
        Chunked,
        b"1\r\na\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nG",
        BodyWant::Ok(b"a", 25),
    ),
    (
        "0x prefix",
        Chunked,
        b"0x5\r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    ("negative", Chunked, b"-1\r\n", BodyWant::Err(400)),
    (
        "plus",
        Chunked,
        b"+5\r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "space before size",
        Chunked,
        b" 5\r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "space after size, no ext",
        Chunked,
        b"5 \r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "empty size",
        Chunked,
        b"\r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "17 hex digits",
        Chunked,
        b"10000000000000000\r\n",
        BodyWant::Err(400),
    ),
    (
        "data longer than size",
        Chunked,
        b"3\r\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "bare LF after size",
        Chunked,
        b"5\nhello\r\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    (
        "bare LF after data",
        Chunked,
        b"5\r\nhello\n0\r\n\r\n",
        BodyWant::Err(400),
    ),
    ("bare LF at end", Chunked, b"0\r\n\n", BodyWant::Err(400)),
    (
        "bare LF in trailer",
        Chunked,
        b"0\r\nX: y\n\r\n",
        BodyWant::Err(400),
    ),
    ("over the limit", Chunked, b"400\r\n", BodyWant::Err(413)),
    (
        "over the limit in pieces",
        Chunked,
        b"200\r\n",
        BodyWant::Ok(b"", 0),
    ),
];

/// Body limit for the table: 1000 bytes.
const LIMIT: u64 = 1000;

fn run_body(framing: BodyFraming, pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), BodyError> {
    run_body_limited(framing, pieces, LIMIT)
}

fn run_body_limited(
    framing: BodyFraming,
    pieces: &[&[u8]],
    limit: u64,
) -> Result<(Vec<u8>, usize, bool), BodyError> {
    let mut d = BodyDecoder::new(framing, limit)?;
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut carry: Vec<u8> = Vec::new();
    for piece in pieces {
        carry.extend_from_slice(piece);
        let p = d.decode(&carry, &mut out)?;
        consumed += p.consumed;
        carry.drain(..p.consumed);
        if p.done {
            return Ok((out, consumed, true));
        }
    }
    Ok((out, consumed, d.is_done()))
}

#[test]
fn body_vectors_in_every_split() {
    for (name, framing, input, want) in BODIES {
        let mut splits: Vec<Vec<&[u8]>> = vec![vec![input]];
        for cut in 0..=input.len() {
            splits.push(vec![&input[..cut], &input[cut..]]);
        }
        splits.push(input.chunks(1).collect());
        for pieces in splits {
            let got = run_body(*framing, &pieces);
            match (want, &got) {
                (BodyWant::Ok(data, consumed), Ok((out, c, done))) => {
                    if *name == "over the limit in pieces" {
                        assert!(!done, "{name}");
                        continue;
                    }
                    assert!(done, "{name}: not done with {pieces:?}");
                    assert_eq!((out.as_slice(), *c), (*data, *consumed), "{name}");
                }
                (BodyWant::Err(status), Err(e)) => assert_eq!(e.status(), *status, "{name}"),
                _ => panic!("{name}: {got:?} with pieces {pieces:?}"),
            }
        }
    }
}

#[test]
fn body_limits() {
    assert_eq!(
        BodyDecoder::new(Length(LIMIT + 1), LIMIT).unwrap_err(),
        BodyError::TooLarge
    );
    assert!(BodyDecoder::new(Length(LIMIT), LIMIT).is_ok());
    // Two chunks that pass the limit together.
    let mut d = BodyDecoder::new(Chunked, LIMIT).unwrap();
    let mut out = Vec::new();
    let first = [b"1f4\r\n".as_slice(), &[b'a'; 500], b"\r\n"].concat();
    assert!(d.decode(&first, &mut out).is_ok());
    assert_eq!(
        d.decode(b"1f5\r\n", &mut out).unwrap_err(),
        BodyError::TooLarge
    );
    // An endless chunk extension.
    let mut d = BodyDecoder::new(Chunked, LIMIT).unwrap();
    let ext = [b"5;".as_slice(), &[b'x'; CHUNK_LINE_BYTES_MAX]].concat();
    assert_eq!(d.decode(&ext, &mut out).unwrap_err().status(), 400);
    // An endless trailer section.
    let mut d = BodyDecoder::new(Chunked, LIMIT).unwrap();
    let trailer = [
        b"0\r\n".as_slice(),
        &b"X: y\r\n".repeat(TRAILER_BYTES_MAX / 6 + 1),
    ]
    .concat();
    assert_eq!(d.decode(&trailer, &mut out).unwrap_err().status(), 400);
}

#[test]
fn encode_header_refuses_splitting_values() {
    let mut out = Vec::new();
    for bad in [&b"a\r\nSet-Cookie: x"[..], b"a\nb", b"a\rb", b"a\x00b"] {
        assert_eq!(encode_header("X-A", bad, &mut out), Err(HeaderValueError));
    }
    assert_eq!(
        encode_header("Bad Name", b"v", &mut out),
        Err(HeaderValueError)
    );
    assert_eq!(encode_header("", b"v", &mut out), Err(HeaderValueError));
    assert!(out.is_empty());
    encode_header("X-A", b"ok value", &mut out).unwrap();
    assert_eq!(out, b"X-A: ok value\r\n");
    let mut line = Vec::new();
    encode_status_line(431, &mut line);
    assert_eq!(line, b"HTTP/1.1 431 Request Header Fields Too Large\r\n");
}

fn encode_chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn chunked_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8), cut in 0usize..4000) {
        let wire = encode_chunked(&chunks);
        let data: Vec<u8> = chunks.concat();
        let cut = cut.min(wire.len());
        let (out, consumed, done) = run_body_limited(Chunked, &[&wire[..cut], &wire[cut..]], u64::MAX).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert!(done);
        prop_assert_eq!(consumed, wire.len());
        prop_assert_eq!(out, data);
    }

    #[test]
    fn header_values_never_carry_line_breaks(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        match encode_header("X-V", &value, &mut out) {
            Ok(()) => prop_assert!(!out[..out.len() - 2].iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)),
            Err(_) => prop_assert!(out.is_empty()),
        }
    }

    #[test]
    fn decode_request_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
        let _ = decode_request(&input, &mut slots);
    }
}
