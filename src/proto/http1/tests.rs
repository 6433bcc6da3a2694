//! Vectors and properties for the HTTP/1.1 core, as data-driven tables.
//!
//! Every request vector is decoded whole and as each of its prefixes: a prefix must be `Partial`
//! or fail with exactly the error of the whole input, and anything from the end of the head on
//! must decode to the same head with the same `consumed`. Every body vector is fed whole, split
//! in two at every byte, and byte by byte, and must give the same decoded bytes, `consumed` and
//! error each time. Property tests cover chunked and Content-Length round trips, the prefix
//! rule on mutated requests, and header encoding.

use super::*;
use proptest::prelude::*;

use BodyFraming::{Chunked, Length, None as NoBody};
use RequestError::{
    Ambiguous, HeadTooLarge, Malformed, TooManyHeaders, UnsupportedTransferCoding,
    UnsupportedVersion, UriTooLong,
};
use Version::{Http10, Http11};

// ---------------------------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------------------------

/// What a good vector must decode to (headers are checked by the dedicated tests below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    method: &'static str,
    target: &'static str,
    version: Version,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
}

const fn get(target: &'static str) -> Head {
    Head {
        method: "GET",
        target,
        version: Http11,
        framing: NoBody,
        keep_alive: true,
        expect_continue: false,
    }
}

const fn post(framing: BodyFraming) -> Head {
    Head {
        method: "POST",
        target: "/",
        version: Http11,
        framing,
        keep_alive: true,
        expect_continue: false,
    }
}

impl Head {
    const fn method(self, method: &'static str) -> Head {
        Head { method, ..self }
    }
    const fn http10(self) -> Head {
        Head {
            version: Http10,
            keep_alive: false,
            ..self
        }
    }
    const fn keep_alive(self, keep_alive: bool) -> Head {
        Head { keep_alive, ..self }
    }
    const fn expect_continue(self) -> Head {
        Head {
            expect_continue: true,
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// The head decodes; `consumed` is the length of the vector's first part.
    Ok(Head),
    Err(RequestError),
}

use Want::{Err as Fails, Ok as Decodes};

/// A request vector: name, the head (or whole input), what follows it, and the expected outcome.
type RequestVector = (&'static str, &'static [u8], &'static [u8], Want);

const BARE_LF: RequestError = Malformed("bare LF in request head; lines must end with CRLF");
const BARE_CR: RequestError = Malformed("bare CR in request head");
const OBS_FOLD: RequestError = Malformed("obsolete line folding is not accepted");
const BAD_CL: RequestError = Malformed("invalid Content-Length");
const NOT_THREE_PARTS: RequestError =
    Malformed("request line is not method SP request-target SP version");
const CONTROL_IN_VALUE: RequestError = Malformed("control character in header field value");

#[rustfmt::skip]
const REQUESTS: &[RequestVector] = &[
    // Good heads.
    ("simple GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/"))),
    ("query kept in target", b"GET /a?b=c&d HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/a?b=c&d"))),
    ("leading empty lines skipped and counted", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/"))),
    ("lowercase method is a token like any other", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/").method("get"))),
    ("extension method", b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/x").method("PURGE"))),
    ("HTTP/1.0 closes by default", b"GET / HTTP/1.0\r\n\r\n", b"", Decodes(get("/").http10())),
    ("HTTP/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", b"", Decodes(get("/").http10().keep_alive(true))),
    ("HTTP/1.0 keep-alive in a list", b"GET / HTTP/1.0\r\nConnection: foo,  keep-alive \r\n\r\n", b"", Decodes(get("/").http10().keep_alive(true))),
    ("HTTP/1.0 close beats keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", b"", Decodes(get("/").http10())),
    ("HTTP/1.1 Connection: close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", b"", Decodes(get("/").keep_alive(false))),
    ("close in a list, any case", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", b"", Decodes(get("/").keep_alive(false))),
    ("keep-alive token alone does not close 1.1", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", b"", Decodes(get("/"))),
    ("Expect: 100-continue", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", b"hi", Decodes(post(Length(2)).expect_continue())),
    ("Expect any case", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n", b"", Decodes(post(Length(2)).expect_continue())),
    ("Expect ignored in HTTP/1.0", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"", Decodes(post(Length(2)).http10())),
    ("Content-Length: the body is not consumed", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", b"hello", Decodes(post(Length(5)))),
    ("Content-Length: 0 is no body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", b"", Decodes(post(NoBody))),
    ("Content-Length: leading zeros", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", b"", Decodes(post(Length(7)))),
    ("Content-Length: u64::MAX", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", b"", Decodes(post(Length(u64::MAX)))),
    ("Content-Length with OWS", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 3 \t\r\n\r\n", b"", Decodes(post(Length(3)))),
    ("identical duplicate Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", b"", Decodes(post(Length(3)))),
    ("identical Content-Length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3,3\r\n\r\n", b"", Decodes(post(Length(3)))),
    ("chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", b"0\r\n\r\n", Decodes(post(Chunked))),
    ("chunked, any case", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", b"", Decodes(post(Chunked))),
    ("chunked with empty list elements", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n", b"", Decodes(post(Chunked))),
    ("pipelined: consumed stops at the first", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n", Decodes(get("/1"))),
    ("pipelined after a body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", b"xGET / HTTP/1.1\r\nHost: a\r\n\r\n", Decodes(post(Length(1)))),
    ("absolute-form", b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("http://a/x"))),
    ("absolute-form https, any case", b"GET HTTPS://a/ HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("HTTPS://a/"))),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("*").method("OPTIONS"))),
    ("empty header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n", b"", Decodes(get("/"))),
    ("HTAB and obs-text in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-V: a\tb\xc3\xa9\r\n\r\n", b"", Decodes(get("/"))),
    ("UTF-8 in the target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", b"", Decodes(get("/caf\u{e9}"))),
    ("Host with port", b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", b"", Decodes(get("/"))),
    ("Host IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", b"", Decodes(get("/"))),
    ("empty Host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", b"", Decodes(get("/"))),
    ("HTTP/1.0 needs no Host", b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", b"", Decodes(get("/").http10())),

    // Framing that could be read two ways (request smuggling).
    ("CL then TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"", Fails(Ambiguous("both Transfer-Encoding and Content-Length"))),
    ("TE then CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", b"", Fails(Ambiguous("both Transfer-Encoding and Content-Length"))),
    ("TE then invalid CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n", b"", Fails(Ambiguous("both Transfer-Encoding and Content-Length"))),
    ("differing Content-Length lines", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", b"", Fails(Ambiguous("differing Content-Length values"))),
    ("differing Content-Length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", b"", Fails(Ambiguous("differing Content-Length values"))),
    ("Content-Length with a plus sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", b"", Fails(BAD_CL)),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", b"", Fails(BAD_CL)),
    ("Content-Length with inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", b"", Fails(BAD_CL)),
    ("hex Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", b"", Fails(BAD_CL)),
    ("empty Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", b"", Fails(BAD_CL)),
    ("Content-Length list with an empty element", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\n", b"", Fails(BAD_CL)),
    ("Content-Length overflows u64", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", b"", Fails(Malformed("Content-Length overflows"))),
    ("TE: gzip alone", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", b"", Fails(Ambiguous("chunked is not the final transfer coding"))),
    ("TE: identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", b"", Fails(Ambiguous("chunked is not the final transfer coding"))),
    ("TE: chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", b"", Fails(Ambiguous("chunked is not the final transfer coding"))),
    ("TE: gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"", Fails(UnsupportedTransferCoding)),
    ("TE lines combine: gzip then chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", b"", Fails(UnsupportedTransferCoding)),
    ("TE: chunked with a parameter", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", b"", Fails(Ambiguous("chunked is not the final transfer coding"))),
    ("TE: chunked, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", b"", Fails(Ambiguous("chunked applied more than once"))),
    ("TE: chunked on two lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", b"", Fails(Ambiguous("chunked applied more than once"))),
    ("TE: empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", b"", Fails(Malformed("empty Transfer-Encoding"))),
    ("TE: vertical tab before chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", b"", Fails(CONTROL_IN_VALUE)),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", b"", Fails(Ambiguous("Transfer-Encoding in an HTTP/1.0 request"))),
    ("TE and CL in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", b"", Fails(Ambiguous("both Transfer-Encoding and Content-Length"))),

    // Line syntax.
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", b"", Fails(OBS_FOLD)),
    ("obs-fold with HTAB", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", b"", Fails(OBS_FOLD)),
    ("whitespace before the first field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", b"", Fails(OBS_FOLD)),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n", b"", Fails(Malformed("whitespace between header field name and colon"))),
    ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", b"", Fails(Malformed("whitespace between header field name and colon"))),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: a\n\n", b"", Fails(BARE_LF)),
    ("bare LF ending one field", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", b"", Fails(BARE_LF)),
    ("bare LF ending the head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", b"", Fails(BARE_LF)),
    ("bare LF before the request line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(BARE_LF)),
    ("bare CR in a field", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", b"", Fails(BARE_CR)),
    ("bare CR before the request line", b"\r\rGET / HTTP/1.1\r\n\r\n", b"", Fails(BARE_CR)),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", b"", Fails(CONTROL_IN_VALUE)),
    ("DEL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", b"", Fails(CONTROL_IN_VALUE)),
    ("ESC in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", b"", Fails(CONTROL_IN_VALUE)),
    ("NUL in the target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("invalid request-target"))),
    ("target not UTF-8", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("request-target is not UTF-8"))),
    ("field line without a colon", b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", b"", Fails(Malformed("header field line without a colon"))),
    ("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", b"", Fails(Malformed("invalid header field name"))),
    ("field name not a token", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", b"", Fails(Malformed("invalid header field name"))),

    // Request line and Host.
    ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", b"", Fails(Malformed("missing Host header field"))),
    ("no fields at all in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", b"", Fails(Malformed("missing Host header field"))),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"", Fails(Malformed("more than one Host header field"))),
    ("two Hosts in HTTP/1.0", b"GET / HTTP/1.0\r\nhost: a\r\nHOST: a\r\n\r\n", b"", Fails(Malformed("more than one Host header field"))),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", b"", Fails(Malformed("invalid Host header field"))),
    ("Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", b"", Fails(Malformed("invalid Host header field"))),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", b"", Fails(UnsupportedVersion)),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", b"", Fails(UnsupportedVersion)),
    ("HTTP/0.9 simple request", b"GET /\r\n\r\n", b"", Fails(UnsupportedVersion)),
    ("version without minor", b"GET / HTTP/1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("invalid HTTP version"))),
    ("lowercase version", b"GET / http/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("invalid HTTP version"))),
    ("TLS handshake", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"", Fails(Malformed("invalid method"))),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(NOT_THREE_PARTS)),
    ("two spaces after method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(NOT_THREE_PARTS)),
    ("trailing space after version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", b"", Fails(NOT_THREE_PARTS)),
    ("authority-form CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("request-target must be origin-form or absolute-form"))),
    ("relative target", b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("request-target must be origin-form or absolute-form"))),
    ("asterisk with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", b"", Fails(Malformed("asterisk-form request-target is only for OPTIONS"))),
];

/// Vectors too large to write out: the limits, each at and just past its edge.
fn generated_requests() -> Vec<(String, Vec<u8>, Want)> {
    let with_fields = |count: usize| {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..count {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    };
    let long_target = |len: usize| leak(&format!("/{}", "a".repeat(len - "GET / HTTP/1.1".len())));
    let line_of =
        |len: usize| format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", long_target(len)).into_bytes();
    let head_of = |len: usize| {
        let fixed = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(len - fixed)
        )
        .into_bytes()
    };
    let mut unterminated = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    unterminated.resize(17 * 1024, b'a');
    let mut endless_line = b"GET /".to_vec();
    endless_line.resize(REQUEST_LINE_BYTES_MAX + 2, b'a');
    vec![
        (
            "exactly HEADERS_COUNT_MAX fields".into(),
            with_fields(HEADERS_COUNT_MAX),
            Decodes(get("/")),
        ),
        (
            "one field too many".into(),
            with_fields(HEADERS_COUNT_MAX + 1),
            Fails(TooManyHeaders),
        ),
        (
            "request line of exactly REQUEST_LINE_BYTES_MAX".into(),
            line_of(REQUEST_LINE_BYTES_MAX),
            Decodes(get(long_target(REQUEST_LINE_BYTES_MAX))),
        ),
        (
            "request line one byte too long".into(),
            line_of(REQUEST_LINE_BYTES_MAX + 1),
            Fails(UriTooLong),
        ),
        (
            "request line that never ends".into(),
            endless_line,
            Fails(UriTooLong),
        ),
        (
            "head of exactly HEAD_BYTES_MAX".into(),
            head_of(HEAD_BYTES_MAX),
            Decodes(get("/")),
        ),
        (
            "head one byte too large".into(),
            head_of(HEAD_BYTES_MAX + 1),
            Fails(HeadTooLarge),
        ),
        (
            "17 KiB head that never ends".into(),
            unterminated,
            Fails(HeadTooLarge),
        ),
        (
            "endless empty lines".into(),
            b"\r\n".repeat(HEAD_BYTES_MAX),
            Fails(HeadTooLarge),
        ),
    ]
}

fn decode(input: &[u8]) -> Result<Decode<Head>, RequestError> {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    Ok(match decode_request(input, &mut slots)? {
        Decode::Partial => Decode::Partial,
        Decode::Complete { value: h, consumed } => Decode::Complete {
            value: Head {
                method: leak(h.method),
                target: leak(h.target),
                version: h.version,
                framing: h.framing,
                keep_alive: h.keep_alive,
                expect_continue: h.expect_continue,
            },
            consumed,
        },
    })
}

/// Test-only: lets decoded heads outlive their slots for comparison.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Decodes `input` whole and as each of its prefixes, checking the prefix rule.
fn check_request(name: &str, input: &[u8], head_len: usize, want: &Want) {
    let whole = decode(input);
    match (want, &whole) {
        (Want::Ok(head), Ok(Decode::Complete { value, consumed })) => {
            assert_eq!(value, head, "{name}");
            assert_eq!(*consumed, head_len, "{name}: consumed");
        }
        (Want::Err(error), Err(got)) => assert_eq!(got, error, "{name}"),
        _ => panic!("{name}: got {whole:?}, want {want:?}"),
    }
    for cut in 0..input.len() {
        let got = decode(&input[..cut]);
        let fine = match (&got, &whole) {
            (Ok(Decode::Partial), Ok(_)) => cut < head_len,
            (Ok(Decode::Partial), Err(_)) => true,
            (Err(e), Err(w)) => e == w,
            (Ok(Decode::Complete { .. }), Ok(_)) => got == whole && cut >= head_len,
            _ => false,
        };
        assert!(
            fine,
            "{name}: prefix of {cut} bytes gave {got:?}, the whole input {whole:?}"
        );
    }
}

#[test]
fn request_vectors_whole_and_at_every_prefix() {
    for (name, head, after, want) in REQUESTS {
        let input = [*head, *after].concat();
        check_request(name, &input, head.len(), want);
    }
}

#[test]
fn limit_vectors_whole_and_at_every_prefix() {
    for (name, input, want) in generated_requests() {
        check_request(&name, &input, input.len(), &want);
    }
}

#[test]
fn request_vector_count() {
    // Coverage floor: keep the tables from shrinking by accident.
    assert!(REQUESTS.len() + generated_requests().len() >= 40);
}

#[test]
fn header_lookup_is_case_insensitive_and_lists_combine() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nconnection: Upgrade\r\n\
                  Upgrade: websocket\r\nX-Twice: 1\r\nX-Twice: 2\r\nX-Padded:  v \r\n\r\n";
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    let Ok(Decode::Complete { value: head, .. }) = decode_request(input, &mut slots) else {
        panic!("the vector is a good request");
    };
    assert_eq!(head.headers.len(), 7);
    assert_eq!(head.header("HOST"), Some(&b"a"[..]));
    assert_eq!(
        head.header("x-twice"),
        Some(&b"1"[..]),
        "the first of repeated fields"
    );
    assert_eq!(
        head.header("x-padded"),
        Some(&b"v"[..]),
        "surrounding whitespace is not part of the value"
    );
    assert_eq!(head.header("missing"), None);
    assert!(
        head.header_has_token("Connection", "upgrade"),
        "tokens across repeated fields"
    );
    assert!(head.header_has_token("connection", "KEEP-ALIVE"));
    assert!(head.header_has_token("upgrade", "websocket"));
    assert!(!head.header_has_token("connection", "close"));
    assert!(
        !head.header_has_token("connection", "keep"),
        "whole tokens only"
    );
}

#[test]
fn slots_past_the_limit_are_not_used() {
    let mut input = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..HEADERS_COUNT_MAX {
        input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; 2 * HEADERS_COUNT_MAX];
    assert_eq!(decode_request(&input, &mut slots), Err(TooManyHeaders));
}

#[test]
fn request_errors_map_to_their_status() {
    let cases = [
        (HeadTooLarge, 431),
        (TooManyHeaders, 431),
        (UriTooLong, 414),
        (Malformed("x"), 400),
        (Ambiguous("x"), 400),
        (UnsupportedTransferCoding, 501),
        (UnsupportedVersion, 505),
    ];
    for (error, status) in cases {
        assert_eq!(error.status(), status, "{error:?}");
        assert!(!error.message().is_empty(), "{error:?}");
        assert!(!reason(status).is_empty(), "{status}");
    }
    assert_eq!(Malformed("why").message(), "why");
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyWant {
    /// The body ends where the vector's first part does, decoding to these bytes.
    Done(&'static [u8]),
    /// All of the input is consumed and the body is not over yet.
    Incomplete(&'static [u8]),
    /// Refused, after decoding these bytes.
    Fails(BodyError, &'static [u8]),
}

use BodyError::{BadChunk, TooLarge};
use BodyWant::{Done, Fails as Refused, Incomplete};

/// Body size limit for the tables.
const LIMIT_BYTES: u64 = 1000;

/// A body vector: name, framing, the body (or whole input), what follows it, expected outcome.
type BodyVector = (
    &'static str,
    BodyFraming,
    &'static [u8],
    &'static [u8],
    BodyWant,
);

const CHUNK_BARE_LF: BodyError = BadChunk("bare LF in chunked framing; lines must end with CRLF");
const TRAILER_NAME: &str = "a trailer line must be a field name (a token) and a colon";
const NOT_HEX: BodyError = BadChunk("chunk size must start with a hex digit");
const NO_DATA_CRLF: BodyError = BadChunk("chunk data must be followed by CRLF");

#[rustfmt::skip]
const BODIES: &[BodyVector] = &[
    ("no body leaves the input alone", NoBody, b"", b"GET / HTTP/1.1\r\n", Done(b"")),
    ("length", Length(5), b"hello", b"GET", Done(b"hello")),
    ("length of CRLFs", Length(4), b"\r\n\r\n", b"", Done(b"\r\n\r\n")),
    ("length, short", Length(10), b"hello", b"", Incomplete(b"hello")),
    ("two chunks, then the next request", Chunked, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"GET / HTTP/1.1\r\n", Done(b"hello world")),
    ("empty chunked body", Chunked, b"0\r\n\r\n", b"", Done(b"")),
    ("uppercase hex", Chunked, b"A\r\n0123456789\r\n0\r\n\r\n", b"", Done(b"0123456789")),
    ("lowercase hex", Chunked, b"a\r\n0123456789\r\n0\r\n\r\n", b"", Done(b"0123456789")),
    ("leading zeros", Chunked, b"0005\r\nhello\r\n000\r\n\r\n", b"", Done(b"hello")),
    ("16 hex digits", Chunked, b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"", Done(b"hello")),
    ("chunk data holding CRLFs", Chunked, b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n", Done(b"\r\n\r\n")),
    ("extensions", Chunked, b"5;name=val;x\r\nhello\r\n0;last\r\n\r\n", b"", Done(b"hello")),
    ("quoted extension value", Chunked, b"5;a=\"q;\\\"x\"\r\nhello\r\n0\r\n\r\n", b"", Done(b"hello")),
    ("BWS before an extension", Chunked, b"5 \t;x\r\nhello\r\n0\r\n\r\n", b"", Done(b"hello")),
    ("trailer fields", Chunked, b"1\r\na\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", b"G", Done(b"a")),
    ("size line cut short", Chunked, b"5\r\nhel", b"", Incomplete(b"hel")),
    ("size announced, no data yet", Chunked, b"200\r\n", b"", Incomplete(b"")),
    ("waiting for the final CRLF", Chunked, b"0\r\nX: y\r\n", b"", Incomplete(b"")),
    ("0x prefix", Chunked, b"0x10\r\n", b"", Refused(BadChunk("invalid character after chunk size"), b"")),
    ("negative size", Chunked, b"-1\r\n", b"", Refused(NOT_HEX, b"")),
    ("plus sign", Chunked, b"+5\r\nhello\r\n0\r\n\r\n", b"", Refused(NOT_HEX, b"")),
    ("space before the size", Chunked, b" 5\r\nhello\r\n0\r\n\r\n", b"", Refused(NOT_HEX, b"")),
    ("empty size", Chunked, b"\r\nhello\r\n0\r\n\r\n", b"", Refused(NOT_HEX, b"")),
    ("whitespace after the size, no extension", Chunked, b"5 \r\nhello\r\n0\r\n\r\n", b"", Refused(BadChunk("whitespace after chunk size without an extension"), b"")),
    ("17 hex digits", Chunked, b"00000000000000005\r\nhello\r\n0\r\n\r\n", b"", Refused(BadChunk("chunk size has more than 16 hex digits"), b"")),
    ("data longer than its size", Chunked, b"3\r\nhello\r\n0\r\n\r\n", b"", Refused(NO_DATA_CRLF, b"hel")),
    ("no CRLF after data", Chunked, b"5\r\nhello0\r\n\r\n", b"", Refused(NO_DATA_CRLF, b"hello")),
    ("bare CR after data", Chunked, b"5\r\nhello\r0\r\n\r\n", b"", Refused(NO_DATA_CRLF, b"hello")),
    ("bare LF after data", Chunked, b"5\r\nhello\n0\r\n\r\n", b"", Refused(NO_DATA_CRLF, b"hello")),
    ("bare LF after the size", Chunked, b"5\nhello\r\n0\r\n\r\n", b"", Refused(CHUNK_BARE_LF, b"")),
    ("bare CR after the size", Chunked, b"5\rhello\r\n0\r\n\r\n", b"", Refused(BadChunk("chunk-size line must end with CRLF"), b"")),
    ("bare LF in an extension", Chunked, b"5;x\nhello\r\n0\r\n\r\n", b"", Refused(CHUNK_BARE_LF, b"")),
    ("NUL in an extension", Chunked, b"5;\x00\r\nhello\r\n0\r\n\r\n", b"", Refused(BadChunk("control character in chunk extension"), b"")),
    ("bare LF ending the body", Chunked, b"0\r\n\n", b"", Refused(CHUNK_BARE_LF, b"")),
    ("bare CR ending the body", Chunked, b"0\r\n\rX", b"", Refused(BadChunk("chunked body must end with CRLF"), b"")),
    ("bare LF in a trailer", Chunked, b"0\r\nX: y\n\r\n", b"", Refused(CHUNK_BARE_LF, b"")),
    ("bare CR in a trailer", Chunked, b"0\r\nX: y\rz\r\n\r\n", b"", Refused(BadChunk("trailer field line must end with CRLF"), b"")),
    ("obs-fold in a trailer", Chunked, b"0\r\nX: y\r\n z\r\n\r\n", b"", Refused(BadChunk("obsolete line folding in trailer"), b"")),
    ("NUL in a trailer", Chunked, b"0\r\nX: \x00\r\n\r\n", b"", Refused(BadChunk("control character in trailer"), b"")),
    // RFC 9112 §5 and §5.1: a trailer line is `token ":" value`. Reading anything else as a
    // field would take a following request's head for trailer fields (a desync).
    ("trailer line without a colon", Chunked, b"0\r\nnot a field line\r\n\r\n", b"", Refused(BadChunk(TRAILER_NAME), b"")),
    ("space before a trailer's colon", Chunked, b"0\r\nX-T : v\r\n\r\n", b"", Refused(BadChunk(TRAILER_NAME), b"")),
    ("trailer line starting with a colon", Chunked, b"0\r\n: v\r\n\r\n", b"", Refused(BadChunk(TRAILER_NAME), b"")),
    ("the next request read as a trailer", Chunked, b"0\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n", b"", Refused(BadChunk(TRAILER_NAME), b"")),
    ("one chunk over the limit", Chunked, b"3E9\r\n", b"", Refused(TooLarge, b"")),
    ("refused before the size line ends", Chunked, b"FFFFFFFFFFFF;x\r\n", b"", Refused(TooLarge, b"")),
    ("chunks adding up past the limit", Chunked, b"1\r\na\r\n3E8\r\n", b"", Refused(TooLarge, b"a")),
];

/// Vectors too large to write out.
fn generated_bodies() -> Vec<(String, BodyFraming, Vec<u8>, BodyWant)> {
    let mut at_limit = b"3E8\r\n".to_vec();
    at_limit.extend_from_slice(&[b'x'; 1000]);
    at_limit.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut long_extension = b"5;".to_vec();
    long_extension.resize(CHUNK_LINE_BYTES_MAX + 1, b'x');
    let mut longest_extension = long_extension.clone();
    longest_extension.pop();
    longest_extension.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let mut big_trailer = b"0\r\n".to_vec();
    big_trailer.extend_from_slice(&b"X: y\r\n".repeat(TRAILER_BYTES_MAX / 6 + 1));
    big_trailer.extend_from_slice(b"\r\n");
    vec![
        (
            "chunked body of exactly the limit".into(),
            Chunked,
            at_limit,
            Done(Box::leak(Box::new([b'x'; 1000]))),
        ),
        (
            "longest chunk-size line".into(),
            Chunked,
            longest_extension,
            Done(b"hello"),
        ),
        (
            "chunk-size line one byte too long".into(),
            Chunked,
            long_extension,
            Refused(BadChunk("chunk-size line too long"), b""),
        ),
        (
            "trailer section over the limit".into(),
            Chunked,
            big_trailer,
            Refused(BadChunk("trailer section too large"), b""),
        ),
    ]
}

/// What feeding a body in pieces gave: decoded bytes, bytes consumed, done, and the error.
#[derive(Debug, PartialEq, Eq)]
struct Fed {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<BodyError>,
}

/// Feeds `pieces` the way the server does: unconsumed input is kept and offered again with the
/// next piece; feeding stops once the body is done.
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
                // Stateful: everything offered is consumed unless the body ended.
                assert!(
                    fed.done || pending.is_empty(),
                    "unconsumed input before the end of the body"
                );
            }
            Err(error) => {
                // The error sticks.
                assert_eq!(
                    decoder.decode(b"0\r\n\r\n", &mut Vec::new()),
                    Err(error.clone())
                );
                fed.error = Some(error);
                break;
            }
        }
    }
    Ok(fed)
}

/// The input whole, split in two at every byte, and byte by byte.
fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut splits = vec![vec![input]];
    for cut in 0..=input.len() {
        splits.push(vec![&input[..cut], &input[cut..]]);
    }
    splits.push(input.chunks(1).collect());
    splits
}

fn check_body(name: &str, framing: BodyFraming, body: &[u8], after: &[u8], want: &BodyWant) {
    let input = [body, after].concat();
    let expected = match want {
        Done(out) => Fed {
            out: out.to_vec(),
            consumed: body.len(),
            done: true,
            error: None,
        },
        Incomplete(out) => Fed {
            out: out.to_vec(),
            consumed: input.len(),
            done: false,
            error: None,
        },
        Refused(error, out) => Fed {
            out: out.to_vec(),
            consumed: 0,
            done: false,
            error: Some(error.clone()),
        },
    };
    for pieces in splits(&input) {
        let mut got = feed(framing, LIMIT_BYTES, &pieces)
            .unwrap_or_else(|e| panic!("{name}: refused at new: {e:?}"));
        if got.error.is_some() {
            got.consumed = 0; // Not meaningful once refused.
        }
        assert_eq!(
            got,
            expected,
            "{name}: fed as {} pieces {pieces:?}",
            pieces.len()
        );
    }
}

#[test]
fn body_vectors_whole_split_and_byte_by_byte() {
    for (name, framing, body, after, want) in BODIES {
        check_body(name, *framing, body, after, want);
    }
}

#[test]
fn generated_body_vectors_whole_split_and_byte_by_byte() {
    for (name, framing, body, want) in generated_bodies() {
        check_body(&name, framing, &body, b"", &want);
    }
}

#[test]
fn content_length_over_the_limit_is_refused_before_any_byte() {
    assert_eq!(
        BodyDecoder::new(Length(LIMIT_BYTES + 1), LIMIT_BYTES).unwrap_err(),
        TooLarge
    );
    assert_eq!(
        BodyDecoder::new(Length(u64::MAX), LIMIT_BYTES).unwrap_err(),
        TooLarge
    );
    assert!(BodyDecoder::new(Length(LIMIT_BYTES), LIMIT_BYTES).is_ok());
    assert!(BodyDecoder::new(Length(0), 0).is_ok_and(|d| d.is_done()));
    assert_eq!(TooLarge.status(), 413);
    assert_eq!(BadChunk("x").status(), 400);
    assert_eq!(BadChunk("why").message(), "why");
}

#[test]
fn a_done_decoder_consumes_nothing() {
    let mut decoder = BodyDecoder::new(Chunked, LIMIT_BYTES).expect("chunked needs no length");
    let mut out = Vec::new();
    let progress = decoder
        .decode(b"0\r\n\r\nGET", &mut out)
        .expect("a valid body");
    assert_eq!(
        progress,
        BodyProgress {
            consumed: 5,
            done: true
        }
    );
    assert_eq!(
        decoder.decode(b"GET", &mut out),
        Ok(BodyProgress {
            consumed: 0,
            done: true
        })
    );
    assert_eq!(
        decoder.decode(b"", &mut out),
        Ok(BodyProgress {
            consumed: 0,
            done: true
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[test]
fn status_lines() {
    let cases: [(u16, &[u8]); 5] = [
        (200, b"HTTP/1.1 200 OK\r\n"),
        (100, b"HTTP/1.1 100 Continue\r\n"),
        (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (505, b"HTTP/1.1 505 HTTP Version Not Supported\r\n"),
        (299, b"HTTP/1.1 299 \r\n"),
    ];
    for (status, line) in cases {
        let mut out = b"before".to_vec();
        encode_status_line(status, &mut out);
        assert_eq!(&out[..6], b"before", "appends");
        assert_eq!(&out[6..], line, "{status}");
    }
}

#[test]
fn encode_header_refuses_what_could_split_a_response() {
    let mut out = b"kept".to_vec();
    for bad in [
        &b"a\r\nSet-Cookie: x"[..],
        b"a\nb",
        b"a\rb",
        b"a\x00b",
        b"\r\n",
    ] {
        assert_eq!(
            encode_header("X-A", bad, &mut out),
            Err(HeaderValueError),
            "{bad:?}"
        );
    }
    for bad in ["", "Bad Name", "X:Y", "X\r\nY", "Caf\u{e9}", "X(1)"] {
        assert_eq!(
            encode_header(bad, b"v", &mut out),
            Err(HeaderValueError),
            "{bad:?}"
        );
    }
    assert_eq!(out, b"kept", "nothing appended when refused");
    encode_header("X-A", b"ok \t value \xc3\xa9", &mut out).expect("a valid line");
    encode_header("Content-Length", b"", &mut out).expect("empty values are valid");
    assert_eq!(
        out,
        b"keptX-A: ok \t value \xc3\xa9\r\nContent-Length: \r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Chunked encoding as a client would produce it, with optional extensions and trailers.
fn encode_chunked(chunks: &[(Vec<u8>, bool)], upper: bool, trailers: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (data, extension) in chunks {
        let size = if upper {
            format!("{:X}", data.len())
        } else {
            format!("{:x}", data.len())
        };
        wire.extend_from_slice(size.as_bytes());
        if *extension {
            wire.extend_from_slice(b" ; ext=\"v\"");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n");
    for trailer in trailers {
        wire.extend_from_slice(trailer.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

/// `input` cut at `cuts` (sorted, clamped).
fn cut_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces.push(&input[start..]);
    pieces
}

/// The prefix rule for any input: each prefix is Partial or the same error, and a complete head
/// decodes the same from any prefix that holds it.
fn check_prefix_rule(input: &[u8]) -> Result<(), TestCaseError> {
    let whole = decode(input);
    if let Ok(Decode::Complete { consumed, .. }) = whole {
        prop_assert!(consumed <= input.len());
        prop_assert_eq!(decode(&input[..consumed]), whole.clone());
    }
    for cut in 0..input.len() {
        let got = decode(&input[..cut]);
        let fine = match (&got, &whole) {
            (Ok(Decode::Partial), Ok(Decode::Complete { consumed, .. })) => cut < *consumed,
            (Ok(Decode::Partial), _) => true,
            (Err(_), Err(_)) | (Ok(Decode::Complete { .. }), Ok(Decode::Complete { .. })) => {
                got == whole
            }
            _ => false,
        };
        prop_assert!(
            fine,
            "prefix of {} bytes gave {:?}, the whole {:?}",
            cut,
            got,
            whole
        );
    }
    Ok(())
}

const TEMPLATE: &[u8] =
    b"POST /a?b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
                          Connection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n";

proptest! {
    #[test]
    fn chunked_round_trip(
        chunks in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..300), any::<bool>()), 0..8),
        upper in any::<bool>(),
        trailers in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,8}: [ -~]{0,16}", 0..3),
        after in proptest::collection::vec(any::<u8>(), 0..16),
        cuts in proptest::collection::vec(0usize..3000, 0..4),
    ) {
        let wire = encode_chunked(&chunks, upper, &trailers);
        let input = [wire.as_slice(), &after].concat();
        let data: Vec<u8> = chunks.iter().flat_map(|(d, _)| d.iter().copied()).collect();
        let fed = feed(Chunked, u64::MAX, &cut_at(&input, &cuts)).expect("no limit");
        prop_assert_eq!(fed, Fed { out: data.clone(), consumed: wire.len(), done: true, error: None });
        // Exactly the limit passes; one byte less is refused.
        let limit = data.len() as u64;
        prop_assert!(feed(Chunked, limit, &[&input]).expect("chunked").done);
        if limit > 0 {
            prop_assert_eq!(feed(Chunked, limit - 1, &[&input]).expect("chunked").error, Some(TooLarge));
        }
    }

    #[test]
    fn length_round_trip(
        data in proptest::collection::vec(any::<u8>(), 1..600),
        after in proptest::collection::vec(any::<u8>(), 0..16),
        cuts in proptest::collection::vec(0usize..700, 0..4),
    ) {
        let input = [data.as_slice(), &after].concat();
        let fed = feed(Length(data.len() as u64), LIMIT_BYTES, &cut_at(&input, &cuts)).expect("within the limit");
        prop_assert_eq!(fed, Fed { out: data.clone(), consumed: data.len(), done: true, error: None });
    }

    #[test]
    fn header_lines_never_carry_line_breaks(name in "[ -~]{0,12}", value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        let must_refuse = name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
        match encode_header(&name, &value, &mut out) {
            Ok(()) => {
                prop_assert!(!must_refuse);
                prop_assert_eq!(out, [name.as_bytes(), b": ", &value, b"\r\n"].concat());
            }
            Err(HeaderValueError) => {
                prop_assert!(must_refuse);
                prop_assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn line_end_search_matches_a_plain_scan(
        bytes in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), Just(0x8d), any::<u8>()], 0..40),
        filler in 0usize..20,
    ) {
        let input = [vec![b'a'; filler], bytes].concat();
        let plain = input.iter().position(|&b| b == b'\r' || b == b'\n');
        prop_assert_eq!(super::request::find_cr_or_lf(&input), plain);
    }

    #[test]
    fn random_bytes_obey_the_prefix_rule(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_prefix_rule(&input)?;
    }

    #[test]
    fn mutated_requests_obey_the_prefix_rule(
        edits in proptest::collection::vec((0usize..TEMPLATE.len(), any::<u8>(), 0u8..3), 0..4),
    ) {
        let mut input = TEMPLATE.to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(input.len().saturating_sub(1));
            match kind {
                0 => input[at] = byte,
                1 => input.insert(at, byte),
                _ => { input.remove(at); }
            }
        }
        check_prefix_rule(&input)?;
    }

    #[test]
    fn good_requests_decode_with_their_fields(
        path in "/[a-zA-Z0-9._~!$&'()*+,;=:@%/?-]{0,40}",
        fields in proptest::collection::vec(("X-[A-Za-z0-9]{1,8}", "[!-~]([ -~]{0,20}[!-~])?"), 0..10),
        length in 0u64..10_000,
    ) {
        let mut input = format!("PUT {path} HTTP/1.1\r\nHost: h\r\n");
        for (name, value) in &fields {
            input.push_str(&format!("{name}: {value}\r\n"));
        }
        input.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
        match decode_request(input.as_bytes(), &mut slots) {
            Ok(Decode::Complete { value, consumed }) => {
                prop_assert_eq!(consumed, input.len());
                prop_assert_eq!(value.target, path.as_str());
                prop_assert_eq!(value.headers.len(), fields.len() + 2);
                let framing = if length == 0 { NoBody } else { Length(length) };
                prop_assert_eq!(value.framing, framing);
                for (name, _) in &fields {
                    prop_assert!(value.header(name).is_some());
                }
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
