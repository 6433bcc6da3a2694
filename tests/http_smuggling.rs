//! The HTTP request-smuggling table (RELIABILITY.md, "HTTP/1.1"): raw requests written from the
//! rules of RFC 9112 (request line §3, field syntax §5, obs-fold §5.2, bare CR/LF §2.2, framing
//! §6, Transfer-Encoding §6.1, Content-Length §6.2–6.3, chunked §7.1) and RFC 9110 (Host,
//! Expect, field values), each sent to the real binary on a fresh connection and followed on
//! the same connection by a canary `GET /healthz`.
//!
//! Every row says which of three outcomes the RFC and ringchat's documented limits call for:
//!
//! - **rejected**: the request cannot be framed unambiguously (or breaks a limit). Its error
//!   response carries `Connection: close`, the server ends the connection, and the canary is
//!   never answered (ARCHITECTURE.md: "A request that cannot be framed unambiguously ends the
//!   connection").
//! - **served**: valid and unambiguous. One response per request in the row, then exactly one
//!   response to the canary (200 `{"status":"ok"}`), then the server closes at its keep-alive
//!   timeout.
//! - **closed**: valid, but the connection does not persist (`Connection: close`, HTTP/1.0
//!   without keep-alive, a refused WebSocket upgrade): its responses, then close, canary unread.
//!
//! Anything else is a **desync**: the canary answered after a request that had to be refused, a
//! response more or fewer than the framing allows, the canary's bytes swallowed into a body
//! (the connection kept open without answering it), a response after `Connection: close`,
//! unparseable output, or a connection still open at the deadline. A well-formed outcome of
//! the expected shape with another status code is a **wrong status**. Both must be zero.
//!
//! Every response of every row is also checked for header hygiene: no CR, LF, NUL or other
//! control byte inside a header line, and none of the header lines the injection rows try to
//! smuggle in through percent-encoded CRLFs (RELIABILITY.md: "No CR, LF or NUL from
//! user-controlled values ever reaches a response header").
//!
//! It does not test timeouts, slow clients or the output limit (tests/http.rs does), nor decoder
//! vectors split at every byte (the unit tables in src/proto/http1 do).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Server;

/// Sent right after every row's bytes, in the same write.
const CANARY: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
/// The body of the canary's response.
const CANARY_BODY: &[u8] = br#"{"status":"ok"}"#;
/// The server's limits for this run: every timeout it could wait on is short, so each row ends
/// within about two seconds; the body limit is small so 413 rows stay small.
const SERVER_FLAGS: [&str; 8] = [
    "--keep-alive-timeout",
    "1",
    "--header-timeout",
    "2",
    "--body-timeout",
    "2",
    "--body-bytes-max",
    "4096",
];
const BODY_BYTES_MAX: usize = 4096;
/// A connection still open this long after the row was sent is a hang.
const ROW_DEADLINE: Duration = Duration::from_secs(6);
/// Header lines the injection rows try to smuggle into a response.
const INJECTED: &str = "x-injected";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Rejected,
    Served,
    Closed,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Rejected => "rejected",
            Class::Served => "served",
            Class::Closed => "closed",
        }
    }
}

struct Row {
    name: &'static str,
    bytes: Vec<u8>,
    class: Class,
    /// The status of each response to the row's own requests, in order (not the canary's).
    statuses: Vec<u16>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn add(&mut self, name: &'static str, bytes: impl AsRef<[u8]>, class: Class, statuses: &[u16]) {
        assert!(
            self.rows.iter().all(|r| r.name != name),
            "row name {name} used twice"
        );
        self.rows.push(Row {
            name,
            bytes: bytes.as_ref().to_vec(),
            class,
            statuses: statuses.to_vec(),
        });
    }

    /// Must be refused with `status`, and the connection ended.
    fn reject(&mut self, name: &'static str, bytes: impl AsRef<[u8]>, status: u16) {
        self.add(name, bytes, Class::Rejected, &[status]);
    }

    /// Pipelined: valid requests answered with `before`, then one refused with `status`.
    fn reject_after(
        &mut self,
        name: &'static str,
        bytes: impl AsRef<[u8]>,
        before: &[u16],
        status: u16,
    ) {
        let mut statuses = before.to_vec();
        statuses.push(status);
        self.add(name, bytes, Class::Rejected, &statuses);
    }

    /// Valid and unambiguous: these responses, then the canary's.
    fn serve(&mut self, name: &'static str, bytes: impl AsRef<[u8]>, statuses: &[u16]) {
        self.add(name, bytes, Class::Served, statuses);
    }

    /// Valid, but the connection ends after these responses.
    fn close(&mut self, name: &'static str, bytes: impl AsRef<[u8]>, statuses: &[u16]) {
        self.add(name, bytes, Class::Closed, statuses);
    }
}

/// `POST /healthz` (answered 405 once its body is read) with these field lines, each ending in
/// CRLF, then the blank line and `body`.
fn post(fields: &[u8], body: &[u8]) -> Vec<u8> {
    [
        b"POST /healthz HTTP/1.1\r\nHost: t\r\n".as_slice(),
        fields,
        b"\r\n",
        body,
    ]
    .concat()
}

/// `POST /healthz` with `Transfer-Encoding: chunked` and this (raw) chunked body.
fn chunked(body: &[u8]) -> Vec<u8> {
    post(b"Transfer-Encoding: chunked\r\n", body)
}

/// `head` (request line and field lines, without the blank line), a Content-Length for `body`,
/// then `body`.
fn with_length(head: &str, body: &[u8]) -> Vec<u8> {
    [
        head.as_bytes(),
        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat()
}

/// A request that, if a body were ever parsed as a request, would be answered 404.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// One chunk of `data`, size in lowercase hex.
fn chunk(data: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
}

const WS_UPGRADE: &str = "GET /api/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn table() -> Table {
    let mut t = Table::default();

    // --- Content-Length (RFC 9112 §6.2, §6.3; RFC 9110 §8.6: Content-Length = 1*DIGIT) ---
    t.serve(
        "cl: body read, next request found",
        post(b"Content-Length: 5\r\n", b"hello"),
        &[405],
    );
    t.serve("cl: zero", post(b"Content-Length: 0\r\n", b""), &[405]);
    t.serve(
        "cl: leading zeros (1*DIGIT)",
        post(b"Content-Length: 0005\r\n", b"hello"),
        &[405],
    );
    t.serve(
        "cl: OWS around the value",
        post(b"Content-Length:   5  \r\n", b"hello"),
        &[405],
    );
    t.serve(
        "cl: HTAB OWS around the value",
        post(b"Content-Length:\t5\t\r\n", b"hello"),
        &[405],
    );
    t.reject(
        "cl: plus sign",
        post(b"Content-Length: +5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: minus sign",
        post(b"Content-Length: -5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: hex 0x5",
        post(b"Content-Length: 0x5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: decimal point",
        post(b"Content-Length: 5.0\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: space inside the number",
        post(b"Content-Length: 5 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: empty value",
        post(b"Content-Length: \r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: full-width digit (obs-text)",
        post(b"Content-Length: \xef\xbc\x95\r\n", b"hello"),
        400,
    );
    // §6.3: a list of identical valid values is processed as that single value.
    t.serve(
        "cl: list of identical values",
        post(b"Content-Length: 5, 5\r\n", b"hello"),
        &[405],
    );
    t.reject(
        "cl: list of differing values",
        post(b"Content-Length: 5, 6\r\n", b"hello!"),
        400,
    );
    t.reject(
        "cl: list with an empty element",
        post(b"Content-Length: 5,\r\n", b"hello"),
        400,
    );
    t.serve(
        "cl: two identical lines",
        post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        &[405],
    );
    t.reject(
        "cl: two differing lines",
        post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        400,
    );
    t.reject(
        "cl: two differing lines, larger first",
        post(b"Content-Length: 6\r\nContent-Length: 5\r\n", b"hello!"),
        400,
    );
    t.reject(
        "cl: u64::MAX + 1",
        post(b"Content-Length: 18446744073709551616\r\n", b""),
        400,
    );
    t.reject(
        "cl: 40 digits",
        post(
            b"Content-Length: 9999999999999999999999999999999999999999\r\n",
            b"",
        ),
        400,
    );
    // ARCHITECTURE.md Limits: --body-bytes-max → 413 before the body is read.
    t.reject(
        "cl: 10^12, over the body limit",
        post(b"Content-Length: 1000000000000\r\n", b""),
        413,
    );
    t.reject(
        "cl: one over the body limit",
        post(
            format!("Content-Length: {}\r\n", BODY_BYTES_MAX + 1).as_bytes(),
            b"",
        ),
        413,
    );
    // RFC 9112 §5.1: whitespace between field name and colon → 400.
    t.reject(
        "cl: space before the colon",
        post(b"Content-Length : 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: obs-fold before the value",
        post(b"Content-Length:\r\n 5\r\n", b"hello"),
        400,
    );
    t.reject(
        "cl: NUL after the value",
        post(b"Content-Length: 5\0\r\n", b"hello"),
        400,
    );
    // Not a framing field: no body, so none is sent.
    t.serve(
        "cl: Content_Length is not Content-Length",
        post(b"Content_Length: 5\r\n", b""),
        &[405],
    );
    t.serve(
        "cl: GET with a body holding a request",
        with_length("GET /healthz HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[200],
    );
    t.serve(
        "cl: POST with a body holding a request",
        with_length("POST /healthz HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[405],
    );
    t.serve(
        "cl: HTTP/1.0 keep-alive with a body",
        b"POST /healthz HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
        &[405],
    );
    t.close(
        "cl: HTTP/1.0 with a body, not persistent",
        b"POST /healthz HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
        &[405],
    );

    // --- Transfer-Encoding (RFC 9112 §6.1, §6.3) ---
    t.serve("te: chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n"), &[405]);
    // RFC 9112 §7: transfer coding names are case-insensitive.
    t.serve(
        "te: CHUNKED in capitals",
        post(
            b"Transfer-Encoding: CHUNKED\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        &[405],
    );
    // Trailing OWS is not part of a field value (RFC 9112 §5).
    t.serve(
        "te: \"chunked \" (trailing space)",
        post(b"Transfer-Encoding: chunked \r\n", b"0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "te: leading HTAB",
        post(b"Transfer-Encoding:\tchunked\r\n", b"0\r\n\r\n"),
        &[405],
    );
    // RFC 9110 §5.6.1: a recipient MUST parse and ignore a reasonable number of empty list
    // elements.
    t.serve(
        "te: \",chunked\"",
        post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "te: \"chunked,\"",
        post(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "te: \", ,chunked\"",
        post(b"Transfer-Encoding: , ,chunked\r\n", b"0\r\n\r\n"),
        &[405],
    );
    // RFC 9112 §6.1: chunked MUST NOT be applied more than once.
    t.reject(
        "te: chunked, chunked",
        post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: chunked on two lines",
        post(
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        400,
    );
    // RFC 9112 §6.3: chunked not the final coding → 400 and close.
    t.reject(
        "te: identity",
        post(b"Transfer-Encoding: identity\r\n", b"hello"),
        400,
    );
    t.reject(
        "te: gzip",
        post(b"Transfer-Encoding: gzip\r\n", b"hello"),
        400,
    );
    t.reject(
        "te: chunked, identity",
        post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: chunked, gzip",
        post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: chunked line then identity line",
        post(
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            b"0\r\n\r\n",
        ),
        400,
    );
    t.reject(
        "te: xchunked",
        post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: chunk",
        post(b"Transfer-Encoding: chunk\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: chunked with a parameter",
        post(b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: empty value",
        post(b"Transfer-Encoding: \r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: only a comma",
        post(b"Transfer-Encoding: ,\r\n", b"0\r\n\r\n"),
        400,
    );
    // RFC 9112 §6.1: a transfer coding we do not implement → 501.
    t.reject(
        "te: identity, chunked",
        post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"),
        501,
    );
    t.reject(
        "te: gzip, chunked",
        post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        501,
    );
    t.reject(
        "te: space before the colon",
        post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: HTAB before the colon",
        post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: obs-fold before the value",
        post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: vertical tab before the value",
        post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
        400,
    );
    t.reject(
        "te: NUL after the value",
        post(b"Transfer-Encoding: chunked\0\r\n", b"0\r\n\r\n"),
        400,
    );
    // Not a framing field: the POST has no body, and "0" is then a malformed request line.
    t.reject_after(
        "te: Transfer_Encoding is not Transfer-Encoding",
        post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n"),
        &[405],
        400,
    );
    t.serve(
        "te: X-Transfer-Encoding is not framing",
        post(b"X-Transfer-Encoding: chunked\r\n", b""),
        &[405],
    );
    // RFC 9112 §6.3: both TE and CL "ought to be handled as an error"; we refuse.
    t.reject(
        "te+cl: TE first",
        post(
            b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            b"0\r\n\r\n",
        ),
        400,
    );
    t.reject(
        "te+cl: CL first",
        post(
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        400,
    );
    t.reject(
        "te+cl: CL zero",
        post(
            b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n",
        ),
        400,
    );
    t.reject(
        "te+cl: CL covers a smuggled request",
        post(
            b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
            &[b"0\r\n\r\n".as_slice(), SMUGGLED].concat(),
        ),
        400,
    );
    t.reject(
        "te+cl: TE not chunked",
        post(
            b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
            b"hello",
        ),
        400,
    );
    // RFC 9112 §6.1: TE in an HTTP/1.0 message → framing faulty, close.
    t.reject(
        "te: HTTP/1.0 with chunked",
        b"POST /healthz HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    t.reject(
        "te: HTTP/1.0 with chunked and CL",
        b"POST /healthz HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
    t.serve(
        "te: GET with a chunked body holding a request",
        [
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
            &chunk(SMUGGLED),
            b"0\r\n\r\n",
        ]
        .concat(),
        &[200],
    );

    // --- Chunked coding (RFC 9112 §7.1) ---
    t.serve(
        "chunk: two chunks",
        chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk: data holding a request",
        chunked(&[chunk(SMUGGLED).as_slice(), b"0\r\n\r\n"].concat()),
        &[405],
    );
    t.serve(
        "chunk: data holding NUL, CR, LF",
        chunked(b"5\r\na\0\r\nb\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk: uppercase hex size",
        chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk: size with leading zeros",
        chunked(b"0005\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk: size of 16 digits",
        chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    // ringchat's CHUNK_SIZE_DIGITS_MAX: more than 16 digits is padding or overflow → 400.
    t.reject(
        "chunk: size of 17 digits",
        chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: size of 24 digits",
        chunked(b"000000000000000000000005\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    // The body limit is checked digit by digit, before any overflow.
    t.reject(
        "chunk: size overflowing u64",
        chunked(b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        413,
    );
    t.reject(
        "chunk: size over the body limit",
        chunked(format!("{:x}\r\nhello\r\n0\r\n\r\n", BODY_BYTES_MAX + 1).as_bytes()),
        413,
    );
    t.reject(
        "chunk: sizes adding up over the body limit",
        chunked(
            [
                chunk(&[b'a'; BODY_BYTES_MAX / 2]),
                chunk(&[b'b'; BODY_BYTES_MAX / 2]),
                b"1\r\nc\r\n0\r\n\r\n".to_vec(),
            ]
            .concat()
            .as_slice(),
        ),
        413,
    );
    t.reject(
        "chunk: size 0x5",
        chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject("chunk: size +5", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400);
    t.reject("chunk: size -5", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400);
    t.reject(
        "chunk: leading space before size",
        chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: trailing space after size, no extension",
        chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: hex junk after size",
        chunked(b"5g\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: size not hex",
        chunked(b"g\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject("chunk: empty size", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400);
    t.reject(
        "chunk: bare LF after size",
        chunked(b"5\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: bare CR after size",
        chunked(b"5\rhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: data longer than its size",
        chunked(b"3\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: data shorter than its size",
        chunked(b"7\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: no CRLF after data",
        chunked(b"5\r\nhello0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk: bare LF after data",
        chunked(b"5\r\nhello\n0\r\n\r\n"),
        400,
    );
    // RFC 9112 §7.1.1: unrecognized chunk extensions are ignored.
    t.serve(
        "chunk ext: name=value",
        chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk ext: quoted value with ; and =",
        chunked(b"5;a=\"b;c=d\"\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk ext: BWS before ;",
        chunked(b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    t.serve(
        "chunk ext: HTAB BWS before ;",
        chunked(b"5\t;a\r\nhello\r\n0\r\n\r\n"),
        &[405],
    );
    t.reject(
        "chunk ext: bare LF",
        chunked(b"5;a=b\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk ext: control byte",
        chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    t.reject(
        "chunk ext: NUL",
        chunked(b"5;a=\0\r\nhello\r\n0\r\n\r\n"),
        400,
    );
    // RFC 9112 §7.1.1: a server ought to limit chunk extensions (CHUNK_LINE_BYTES_MAX) → 4xx.
    t.reject(
        "chunk ext: over the chunk line limit",
        chunked(&[b"5;".as_slice(), &[b'a'; 5000], b"\r\nhello\r\n0\r\n\r\n"].concat()),
        400,
    );
    t.serve(
        "last chunk: 000",
        chunked(b"5\r\nhello\r\n000\r\n\r\n"),
        &[405],
    );
    t.serve(
        "last chunk: with an extension",
        chunked(b"0;a=b\r\n\r\n"),
        &[405],
    );
    // RFC 9112 §7.1: chunked-body = *chunk last-chunk trailer-section CRLF. Without the final
    // CRLF the canary's request line would be read as a trailer field line, but it is not a
    // field-line (no colon, spaces in the name; RFC 9112 §5), so the message is invalid.
    t.reject(
        "last chunk: no final CRLF (canary follows)",
        chunked(b"0\r\n"),
        400,
    );
    t.reject(
        "last chunk: bare LF as final line",
        chunked(b"0\r\n\n"),
        400,
    );
    // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ).
    t.serve(
        "trailer: one field",
        chunked(b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n"),
        &[405],
    );
    // RFC 9110 §6.5.1: framing and routing fields are not allowed in trailers; a recipient that
    // discards trailers (as ringchat does) does not act on them.
    t.serve(
        "trailer: framing and Host fields (discarded)",
        chunked(b"0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\n"),
        &[405],
    );
    t.reject(
        "trailer: line without a colon",
        chunked(b"0\r\nnot a field line\r\n\r\n"),
        400,
    );
    // RFC 9112 §5.1: whitespace between field name and colon → 400.
    t.reject(
        "trailer: space before the colon",
        chunked(b"0\r\nX-Trailer : v\r\n\r\n"),
        400,
    );
    t.reject(
        "trailer: obs-fold",
        chunked(b"0\r\nX-Trailer: a\r\n b\r\n\r\n"),
        400,
    );
    t.reject("trailer: bare LF", chunked(b"0\r\nX-Trailer: v\n\r\n"), 400);
    t.reject(
        "trailer: NUL in value",
        chunked(b"0\r\nX-Trailer: a\0b\r\n\r\n"),
        400,
    );
    // TRAILER_BYTES_MAX (8 KiB).
    t.reject(
        "trailer: over the trailer limit",
        chunked(
            &[
                b"0\r\n".as_slice(),
                &b"X-Trailer: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                    .repeat(150),
                b"\r\n",
            ]
            .concat(),
        ),
        400,
    );

    // --- Expect: 100-continue (RFC 9110 §10.1.1) with the body sent anyway ---
    t.serve(
        "expect: 100-continue, body sent at once",
        post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
        &[405],
    );
    t.serve(
        "expect: 100-continue, chunked body sent at once",
        post(
            b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
        &[405],
    );
    t.serve(
        "expect: 100-continue on a GET without a body",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        &[200],
    );
    t.reject(
        "expect: 100-continue over the body limit",
        post(
            b"Expect: 100-continue\r\nContent-Length: 1000000000000\r\n",
            b"",
        ),
        413,
    );
    t.serve(
        "expect: unknown expectation",
        post(b"Expect: something\r\nContent-Length: 5\r\n", b"hello"),
        &[405],
    );
    t.serve(
        "expect: 100-continue in HTTP/1.0 (ignored)",
        b"POST /healthz HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        &[405],
    );

    // --- Unread bodies on keep-alive: the body is consumed even when the route ignores it ---
    t.serve(
        "unread body: GET /healthz",
        with_length("GET /healthz HTTP/1.1\r\nHost: t\r\n", b"hello"),
        &[200],
    );
    t.serve(
        "unread body: POST to a static file",
        with_length("POST /index.html HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[405],
    );
    t.serve(
        "unread body: unknown method",
        with_length("FOO /healthz HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[405],
    );
    t.serve(
        "unread body: unknown API path",
        with_length("POST /api/nope HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[404],
    );
    t.serve(
        "unread body: GET /api/ws with a body is no upgrade",
        with_length("GET /api/ws HTTP/1.1\r\nHost: t\r\n", SMUGGLED),
        &[404],
    );

    // --- Pipelining ---
    t.serve(
        "pipeline: two GETs",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200, 200],
    );
    t.serve(
        "pipeline: CL body then GET",
        [
            post(b"Content-Length: 5\r\n", b"hello"),
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        ]
        .concat(),
        &[405, 404],
    );
    t.serve(
        "pipeline: chunked then CL",
        [
            chunked(b"5\r\nhello\r\n0\r\n\r\n"),
            post(b"Content-Length: 5\r\n", b"hello"),
        ]
        .concat(),
        &[405, 405],
    );
    t.reject_after(
        "pipeline: GET then malformed line",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nXYZ\r\n\r\n",
        &[200],
        400,
    );
    t.reject_after(
        "pipeline: GET then TE+CL",
        [
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            post(
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
        ]
        .concat(),
        &[200],
        400,
    );
    t.close(
        "pipeline: Connection: close ends it",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    // RFC 9112 §2.2: at least one empty line before a request-line SHOULD be ignored.
    t.serve(
        "pipeline: empty lines before the request",
        b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.reject(
        "pipeline: bare LF before the request",
        b"\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );

    // --- Connection persistence (RFC 9112 §9.3) ---
    t.close(
        "conn: Connection: close",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &[200],
    );
    t.close(
        "conn: keep-alive, close",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n",
        &[200],
    );
    t.close(
        "conn: HTTP/1.0 without keep-alive",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        &[200],
    );
    t.serve(
        "conn: HTTP/1.0 keep-alive",
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &[200],
    );

    // --- Request line (RFC 9112 §3, §2.3) ---
    // Methods are case-sensitive (RFC 9110 §9.1): "get" is a valid, unknown method.
    t.serve(
        "line: lowercase method",
        b"get /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[405],
    );
    t.reject(
        "line: two spaces after method",
        b"GET  /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: two spaces before version",
        b"GET /healthz  HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: HTAB separators",
        b"GET\t/healthz\tHTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: trailing space",
        b"GET /healthz HTTP/1.1 \r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: leading space",
        b" GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: space inside the target",
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: NUL in the target",
        b"GET /\0 HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: DEL in the target",
        b"GET /\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: target not UTF-8",
        b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: NUL in the method",
        b"G\0T /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: method not a token",
        b"G(T /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: NUL before the request",
        b"\0GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: HTTP/1.2",
        b"GET /healthz HTTP/1.2\r\nHost: t\r\n\r\n",
        505,
    );
    t.reject(
        "line: HTTP/2.0",
        b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n",
        505,
    );
    t.reject(
        "line: HTTP/3.0",
        b"GET /healthz HTTP/3.0\r\nHost: t\r\n\r\n",
        505,
    );
    t.reject(
        "line: HTTP/0.9 request (no version)",
        b"GET /healthz\r\nHost: t\r\n\r\n",
        505,
    );
    t.reject(
        "line: HTTP/1.10",
        b"GET /healthz HTTP/1.10\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: lowercase http/1.1",
        b"GET /healthz http/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "line: HTTP/1 without minor",
        b"GET /healthz HTTP/1\r\nHost: t\r\n\r\n",
        400,
    );
    // ARCHITECTURE.md Limits: REQUEST_LINE_BYTES_MAX (8 KiB) → 414.
    t.reject(
        "line: request line over 8 KiB",
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)),
        414,
    );
    // RFC 9112 §3.2.2: a server MUST accept the absolute-form; its authority wins over Host.
    t.serve(
        "target: absolute-form",
        b"GET http://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.serve(
        "target: absolute-form, Host differs",
        b"GET http://other.example/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.serve(
        "target: absolute-form https",
        b"GET https://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.serve(
        "target: absolute-form, scheme in capitals",
        b"GET HTTP://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.serve(
        "target: absolute-form without a path",
        b"GET http://t HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    // RFC 9112 §3.2: Host is required in HTTP/1.1 whatever the target's form.
    t.reject(
        "target: absolute-form without Host",
        b"GET http://t/healthz HTTP/1.1\r\n\r\n",
        400,
    );
    t.reject(
        "target: ftp scheme",
        b"GET ftp://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "target: authority-form CONNECT",
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n",
        400,
    );
    t.reject(
        "target: asterisk-form with GET",
        b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    t.serve(
        "target: asterisk-form with OPTIONS",
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        &[405],
    );
    t.reject(
        "target: relative without slash",
        b"GET healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );

    // --- Host (RFC 9112 §3.2: missing, repeated or invalid → 400) ---
    t.reject(
        "host: missing in HTTP/1.1",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        400,
    );
    t.reject(
        "host: two differing",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        400,
    );
    t.reject(
        "host: two identical",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "host: HTTP/1.0 with two",
        b"GET /healthz HTTP/1.0\r\nHost: t\r\nHost: u\r\n\r\n",
        400,
    );
    // RFC 9110 §7.2: an empty Host is what a client sends when the authority is undefined.
    t.serve(
        "host: empty",
        b"GET /healthz HTTP/1.1\r\nHost: \r\n\r\n",
        &[200],
    );
    t.serve(
        "host: with port",
        b"GET /healthz HTTP/1.1\r\nHost: t:8080\r\n\r\n",
        &[200],
    );
    t.reject(
        "host: space inside",
        b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
    );
    t.reject(
        "host: slash",
        b"GET /healthz HTTP/1.1\r\nHost: t/evil\r\n\r\n",
        400,
    );
    t.reject(
        "host: userinfo @",
        b"GET /healthz HTTP/1.1\r\nHost: user@t\r\n\r\n",
        400,
    );
    t.reject(
        "host: space before the colon",
        b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n",
        400,
    );
    t.close(
        "host: none in HTTP/1.0",
        b"GET /healthz HTTP/1.0\r\nX-A: b\r\n\r\n",
        &[200],
    );

    // --- Field syntax (RFC 9112 §5, §5.1, §5.2; RFC 9110 §5.1, §5.5) ---
    t.reject(
        "field: space inside the name",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n",
        400,
    );
    t.reject(
        "field: space before the colon",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n",
        400,
    );
    t.reject(
        "field: HTAB before the colon",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A\t: v\r\n\r\n",
        400,
    );
    t.reject(
        "field: empty name",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n",
        400,
    );
    t.reject(
        "field: no colon",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A v\r\n\r\n",
        400,
    );
    t.reject(
        "field: name not a token",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX(A): v\r\n\r\n",
        400,
    );
    t.reject(
        "field: NUL in the name",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-\0A: v\r\n\r\n",
        400,
    );
    t.reject(
        "field: non-ASCII name",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-\xc3\xa9: v\r\n\r\n",
        400,
    );
    t.reject(
        "field: NUL in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        400,
    );
    t.reject(
        "field: bare CR in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        400,
    );
    t.reject(
        "field: DEL in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n",
        400,
    );
    t.reject(
        "field: vertical tab in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x0bb\r\n\r\n",
        400,
    );
    t.reject(
        "field: form feed in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x0cb\r\n\r\n",
        400,
    );
    t.serve(
        "field: obs-text in the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: caf\xc3\xa9 \xff\r\n\r\n",
        &[200],
    );
    t.serve(
        "field: HTAB inside the value",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\tb\r\n\r\n",
        &[200],
    );
    // RFC 9112 §5.2: obs-fold MUST be rejected with 400 or replaced; we reject.
    t.reject(
        "field: obs-fold with SP",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
        400,
    );
    t.reject(
        "field: obs-fold with HTAB",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n",
        400,
    );
    // RFC 9112 §2.2: whitespace between the start-line and the first field → reject.
    t.reject(
        "field: whitespace-preceded first line",
        b"GET /healthz HTTP/1.1\r\n Host: t\r\n\r\n",
        400,
    );
    // ARCHITECTURE.md Limits: HEADERS_COUNT_MAX (100) and HEAD_BYTES_MAX (16 KiB) → 431.
    t.serve(
        "field: exactly 100 field lines",
        [
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec(),
            (1..100)
                .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
                .collect(),
            b"\r\n".to_vec(),
        ]
        .concat(),
        &[200],
    );
    t.reject(
        "field: 101 field lines",
        [
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec(),
            (1..101)
                .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
                .collect(),
            b"\r\n".to_vec(),
        ]
        .concat(),
        431,
    );
    t.reject(
        "field: head over 16 KiB",
        format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(17 * 1024)
        ),
        431,
    );

    // --- Line endings (RFC 9112 §2.2: we accept no bare LF and no bare CR) ---
    t.reject(
        "eol: bare LF after the request line",
        b"GET /healthz HTTP/1.1\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "eol: bare LF after a field",
        b"GET /healthz HTTP/1.1\r\nHost: t\n\r\n",
        400,
    );
    t.reject(
        "eol: bare LF everywhere",
        b"GET /healthz HTTP/1.1\nHost: t\n\n",
        400,
    );
    t.reject(
        "eol: bare LF as the blank line",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\n",
        400,
    );
    t.reject(
        "eol: bare CR everywhere",
        b"GET /healthz HTTP/1.1\rHost: t\r\r",
        400,
    );
    t.reject(
        "eol: CR CR LF",
        b"GET /healthz HTTP/1.1\r\r\nHost: t\r\n\r\n",
        400,
    );
    t.reject(
        "eol: LF CR LF after the fields",
        b"GET /healthz HTTP/1.1\r\nHost: t\n\r\n\r\n",
        400,
    );

    // --- User bytes that must never reach a response header (RELIABILITY.md) ---
    t.serve(
        "inject: %0d%0a in the path",
        b"GET /%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: t\r\n\r\n",
        &[404],
    );
    t.serve(
        "inject: %0d%0a in the query",
        b"GET /healthz?x=%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: t\r\n\r\n",
        &[200],
    );
    t.serve(
        "inject: %0a%0d%00 in an API path",
        b"GET /api/%0a%0dX-Injected:%00yes HTTP/1.1\r\nHost: t\r\n\r\n",
        &[404],
    );
    t.serve(
        "inject: %00 in the path",
        b"GET /index.html%00X-Injected HTTP/1.1\r\nHost: t\r\n\r\n",
        &[400],
    );
    t.serve(
        "inject: %0d%0a in a static path with a directory",
        b"GET /docs/%0d%0aX-Injected:%20yes/ HTTP/1.1\r\nHost: t\r\n\r\n",
        &[404],
    );
    // A refused WebSocket upgrade answers and closes (its headers are fixed strings).
    t.close(
        "inject: %0d%0a in a refused upgrade's Origin",
        [
            WS_UPGRADE,
            "Sec-WebSocket-Version: 13\r\nOrigin: http://evil%0d%0aX-Injected:%20yes\r\n\r\n",
        ]
        .concat(),
        &[403],
    );
    t.close(
        "inject: upgrade with an unknown WebSocket version",
        [
            WS_UPGRADE,
            "Sec-WebSocket-Version: 8%0d%0aX-Injected:%20yes\r\n\r\n",
        ]
        .concat(),
        &[426],
    );
    t
}

/// One response as read from the wire.
struct Response {
    status: u16,
    /// The response says `Connection: close`.
    close: bool,
    /// Status line and header lines, without the final blank line.
    head: Vec<u8>,
    body: Vec<u8>,
}

struct Outcome {
    /// 1xx responses (a `100 Continue` may precede a final response).
    interim: Vec<u16>,
    finals: Vec<Response>,
    /// The server closed the connection before the deadline.
    closed: bool,
    /// Output that is not a sequence of complete responses.
    junk: Option<String>,
}

/// Sends `bytes` and the canary in one write on a fresh connection, then reads until the
/// server closes or [`ROW_DEADLINE`] passes.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let deadline = Instant::now() + ROW_DEADLINE;
    // The server may close before reading all of a long request (414, 431): a failed write is
    // not an outcome, what the server answered is.
    let _ = s.write_all(&[bytes, CANARY].concat());
    let mut wire = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset also ends the connection; what arrived before it stands.
            Err(_) => break true,
        }
    };
    parse_responses(&wire, closed)
}

fn parse_responses(wire: &[u8], closed: bool) -> Outcome {
    let mut outcome = Outcome {
        interim: Vec::new(),
        finals: Vec::new(),
        closed,
        junk: None,
    };
    let mut rest = wire;
    while !rest.is_empty() {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            outcome.junk = Some(format!(
                "incomplete response head: {:?}",
                String::from_utf8_lossy(rest)
            ));
            break;
        };
        let head = &rest[..end];
        let status = head
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            outcome.junk = Some(format!(
                "not a status line: {:?}",
                String::from_utf8_lossy(head)
            ));
            break;
        };
        let lines: Vec<&[u8]> = head.split(|&b| b == b'\n').skip(1).collect();
        let field = |name: &str| -> Option<String> {
            lines.iter().find_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                line[..colon]
                    .eq_ignore_ascii_case(name.as_bytes())
                    .then(|| {
                        String::from_utf8_lossy(&line[colon + 1..])
                            .trim()
                            .to_string()
                    })
            })
        };
        let after_head = &rest[end + 4..];
        if status < 200 {
            outcome.interim.push(status);
            rest = after_head;
            continue;
        }
        let length = if status == 204 || status == 304 {
            0
        } else {
            match field("content-length").and_then(|v| v.parse::<usize>().ok()) {
                Some(length) => length,
                None => {
                    outcome.junk = Some(format!(
                        "response without a Content-Length: {:?}",
                        String::from_utf8_lossy(head)
                    ));
                    break;
                }
            }
        };
        if after_head.len() < length {
            outcome.junk = Some(format!(
                "truncated body: {} of {length} bytes",
                after_head.len()
            ));
            break;
        }
        let close = field("connection").is_some_and(|v| {
            v.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("close"))
        });
        outcome.finals.push(Response {
            status,
            close,
            head: head.to_vec(),
            body: after_head[..length].to_vec(),
        });
        rest = &after_head[length..];
    }
    outcome
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    WrongStatus(String),
    Desync(String),
}

fn judge(row: &Row, outcome: &Outcome) -> Verdict {
    let got: Vec<u16> = outcome.finals.iter().map(|r| r.status).collect();
    if let Some(junk) = &outcome.junk {
        return Verdict::Desync(format!("{junk} after {got:?}"));
    }
    if !outcome.closed {
        return Verdict::Desync(format!(
            "connection still open after {ROW_DEADLINE:?} (hang), responses {got:?}"
        ));
    }
    let Some(last) = outcome.finals.last() else {
        return Verdict::Desync("closed without any response".into());
    };
    if let Some(at) = outcome.finals[..outcome.finals.len() - 1]
        .iter()
        .position(|r| r.close)
    {
        return Verdict::Desync(format!(
            "response {} says Connection: close yet more followed: {got:?}",
            at + 1
        ));
    }
    let n = row.statuses.len();
    match row.class {
        Class::Served => {
            if last.close {
                // The server ended the connection early: over-strict, but not a desync.
                if got.len() <= n {
                    return Verdict::WrongStatus(format!(
                        "refused a valid request: expected {:?} + canary, got {got:?}",
                        row.statuses
                    ));
                }
                return Verdict::Desync(format!(
                    "expected {:?} + canary, got {got:?} ending in close",
                    row.statuses
                ));
            }
            if got.len() != n + 1 {
                return Verdict::Desync(format!(
                    "expected {} responses + the canary's, got {got:?}",
                    n
                ));
            }
            if last.status != 200 || last.body != CANARY_BODY {
                return Verdict::Desync(format!(
                    "the canary's response is {} {:?}",
                    last.status,
                    String::from_utf8_lossy(&last.body)
                ));
            }
            if got[..n] != row.statuses[..] {
                return Verdict::WrongStatus(format!(
                    "expected {:?} + canary, got {got:?}",
                    row.statuses
                ));
            }
            Verdict::Ok
        }
        Class::Rejected | Class::Closed => {
            if !last.close {
                return Verdict::Desync(if got.len() > n {
                    format!(
                        "canary answered: expected {:?} then close, got {got:?}",
                        row.statuses
                    )
                } else {
                    format!(
                        "connection kept open without answering the canary (its bytes were taken \
                         as part of the request): expected {:?} then close, got {got:?}",
                        row.statuses
                    )
                });
            }
            if got.len() > n {
                return Verdict::Desync(format!(
                    "more responses than requests: expected {:?}, got {got:?}",
                    row.statuses
                ));
            }
            if got != row.statuses {
                return Verdict::WrongStatus(format!(
                    "expected {:?} then close, got {got:?}",
                    row.statuses
                ));
            }
            Verdict::Ok
        }
    }
}

/// Header lines that break hygiene: a control byte inside a line (a CR or LF that split it, a
/// NUL), a field name that is not a token, or an injected field.
fn header_problems(outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    for response in &outcome.finals {
        // Lines end with CRLF; any other CR or LF is one that came from somewhere else.
        let lines = crlf_lines(&response.head);
        for line in &lines {
            if line.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
                problems.push(format!(
                    "control byte in header line {:?}",
                    String::from_utf8_lossy(line)
                ));
            }
        }
        for line in &lines[1..] {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let token = !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || !line.contains(&b':') {
                problems.push(format!(
                    "not a field line: {:?}",
                    String::from_utf8_lossy(line)
                ));
            }
            if String::from_utf8_lossy(line)
                .to_ascii_lowercase()
                .contains(INJECTED)
            {
                problems.push(format!(
                    "injected bytes in a header line: {:?}",
                    String::from_utf8_lossy(line)
                ));
            }
        }
    }
    problems
}

/// `bytes` split at each CRLF (and only there).
fn crlf_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    lines.push(rest);
    lines
}

fn expected_text(row: &Row) -> String {
    let statuses: Vec<String> = row.statuses.iter().map(u16::to_string).collect();
    let statuses = statuses.join(",");
    match row.class {
        Class::Served => format!("{statuses}+canary"),
        Class::Rejected | Class::Closed => format!("{statuses},close"),
    }
}

fn got_text(outcome: &Outcome) -> String {
    let mut parts: Vec<String> = outcome.interim.iter().map(|s| format!("({s})")).collect();
    parts.extend(outcome.finals.iter().map(|r| {
        if r.close {
            format!("{},close", r.status)
        } else {
            r.status.to_string()
        }
    }));
    if !outcome.closed {
        parts.push("OPEN".into());
    }
    parts.join(" ")
}

fn smuggling_table(io: &str) {
    let server = Server::start(io, &SERVER_FLAGS);
    let rows = table().rows;
    assert!(rows.len() >= 100, "only {} rows", rows.len());
    let addr = server.addr;
    // Each row waits for the server to close (about the keep-alive timeout), so they run at
    // once, one connection each.
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .iter()
            .map(|row| scope.spawn(move || exchange(addr, &row.bytes)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("row thread"))
            .collect()
    });

    let mut desyncs = Vec::new();
    let mut wrong = Vec::new();
    let mut hygiene = Vec::new();
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    eprintln!("smuggling table ({io}): {} rows", rows.len());
    eprintln!(
        "{:width$}  {:8}  {:16}  {:24}  verdict",
        "row", "class", "expected", "got"
    );
    for (row, outcome) in rows.iter().zip(&outcomes) {
        let verdict = judge(row, outcome);
        let shown = match &verdict {
            Verdict::Ok => "ok".to_string(),
            Verdict::WrongStatus(why) => format!("WRONG STATUS: {why}"),
            Verdict::Desync(why) => format!("DESYNC: {why}"),
        };
        eprintln!(
            "{:width$}  {:8}  {:16}  {:24}  {shown}",
            row.name,
            row.class.name(),
            expected_text(row),
            got_text(outcome)
        );
        match verdict {
            Verdict::Ok => {}
            Verdict::WrongStatus(why) => wrong.push(format!("{}: {why}", row.name)),
            Verdict::Desync(why) => desyncs.push(format!("{}: {why}", row.name)),
        }
        hygiene.extend(
            header_problems(outcome)
                .into_iter()
                .map(|p| format!("{}: {p}", row.name)),
        );
    }
    let count = |class: Class| rows.iter().filter(|r| r.class == class).count();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for row in rows.iter().filter(|r| r.class == Class::Rejected) {
        *by_status
            .entry(*row.statuses.last().expect("a status"))
            .or_default() += 1;
    }
    eprintln!(
        "summary ({io}): {} rows: {} rejected {:?}, {} served, {} closed; {} ok, {} desyncs, {} wrong statuses, {} header-hygiene problems",
        rows.len(),
        count(Class::Rejected),
        by_status,
        count(Class::Served),
        count(Class::Closed),
        rows.len() - desyncs.len() - wrong.len(),
        desyncs.len(),
        wrong.len(),
        hygiene.len()
    );
    let mut failures = String::new();
    for (title, list) in [
        ("desyncs", &desyncs),
        ("wrong statuses", &wrong),
        ("header hygiene", &hygiene),
    ] {
        if !list.is_empty() {
            failures.push_str(&format!("\n{title}:\n  {}", list.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{io}:{failures}");
}

#[test]
fn smuggling_table_uring() {
    smuggling_table("uring");
}

#[test]
fn smuggling_table_epoll() {
    smuggling_table("epoll");
}

/// The parser of this file, checked on hand-written wire bytes, so a verdict is never the
/// harness's mistake.
#[test]
fn the_judge_classifies_outcomes() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
    let refused = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
    let not_allowed = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 2\r\n\r\n{}";
    let rejected = Row {
        name: "r",
        bytes: Vec::new(),
        class: Class::Rejected,
        statuses: vec![400],
    };
    let served = Row {
        name: "s",
        bytes: Vec::new(),
        class: Class::Served,
        statuses: vec![405],
    };
    let verdict = |row: &Row, wire: &[&[u8]], closed: bool| {
        judge(row, &parse_responses(&wire.concat(), closed))
    };
    assert_eq!(verdict(&rejected, &[refused], true), Verdict::Ok);
    assert!(matches!(
        verdict(&rejected, &[refused, ok], true),
        Verdict::Desync(_)
    ));
    assert!(matches!(
        verdict(&rejected, &[not_allowed, ok], true),
        Verdict::Desync(_)
    ));
    assert!(matches!(
        verdict(&rejected, &[not_allowed], true),
        Verdict::Desync(_)
    ));
    assert!(matches!(
        verdict(&rejected, &[refused], false),
        Verdict::Desync(_)
    ));
    assert_eq!(
        verdict(
            &served,
            &[b"HTTP/1.1 100 Continue\r\n\r\n", not_allowed, ok],
            true
        ),
        Verdict::Ok
    );
    assert!(matches!(
        verdict(&served, &[not_allowed, not_allowed, ok], true),
        Verdict::Desync(_)
    ));
    assert!(matches!(
        verdict(&served, &[not_allowed], true),
        Verdict::Desync(_)
    ));
    assert!(matches!(
        verdict(&served, &[refused], true),
        Verdict::WrongStatus(_)
    ));
    assert!(matches!(
        verdict(&served, &[not_allowed, &ok[..20]], true),
        Verdict::Desync(_)
    ));
    let injected = parse_responses(
        b"HTTP/1.1 404 Not Found\r\nX-A: a\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
        true,
    );
    assert_eq!(header_problems(&injected).len(), 2);
    assert!(header_problems(&parse_responses(ok, true)).is_empty());
}
