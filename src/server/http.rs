//! The HTTP/1.1 connection driver: feeds a connection's bytes to the sans-I/O parser, answers
//! each request in order, and decides when the connection ends.
//!
//! One loop turn: decode every complete request already buffered (pipelining) and encode their
//! responses into one output buffer, write that buffer in one call, then read more. Parsing stops
//! while the output buffer holds [`OUTPUT_BUFFER_BYTES_MAX`], so a client that pipelines without
//! reading is not answered beyond that until it reads (and is dropped at the send timeout).
//!
//! Deadlines (enforced by `rt` shutting the socket down): the header timeout runs from the
//! accept, or from the first byte of a later request, to the end of its head; the body timeout
//! covers a whole body; the keep-alive timeout covers the wait for a next request; the send
//! timeout covers each write. After an error that leaves unread input (a rejected head, a 413),
//! the connection sends its response, half-closes, and discards input for at most [`LINGER_MS`]
//! so the client reads the response instead of a reset.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::Core;
use super::metrics::CoreMetrics;
use super::response::{Persistence, Response, encode};
use super::ws;
use crate::proto::http1::{
    BodyDecoder, BodyFraming, Decode, HEADERS_COUNT_MAX, REQUEST_LINE_BYTES_MAX, RequestHead,
    decode_request,
};
use crate::proto::ws::{Handshake, check_upgrade, encode_accept};
use crate::rt::Conn;

/// Initial capacity of a connection's read buffer, and its growth step; it grows only while a
/// head is incomplete, and the parser refuses heads beyond `HEAD_BYTES_MAX`. Most request heads
/// (a browser's WebSocket upgrade with its cookie included) fit in the first 2 KiB, and
/// thousands of connections upgrading at once should not each touch 8.
pub const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Initial capacity of a connection's response buffer (it grows as responses need).
pub const WRITE_BUFFER_BYTES: usize = 1024;
/// Output queued for one connection before it stops decoding further pipelined requests.
pub const OUTPUT_BUFFER_BYTES_MAX: usize = 256 * 1024;
/// Reads one request head may take. Each read costs the core a wake-up, a system call and a
/// parse of the head so far, so a head trickled one byte per packet (16 KiB of it: 16,384
/// reads) cost 130–190 ms of CPU in a release build; past this many reads it gets 400 and the
/// connection ends. Browsers, proxies and curl send a head in one to a few writes; a 16 KiB
/// head in 536-byte segments is 31.
pub const HEAD_READS_MAX: u32 = 64;
/// How long unread input is discarded after an error response before closing.
pub const LINGER_MS: u64 = 1000;
/// How much unread input is discarded after an error response before closing.
pub const LINGER_BYTES_MAX: usize = 256 * 1024;

enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a body; the head is kept as bytes and decoded again once the body is complete.
    Body {
        decoder: BodyDecoder,
        head: Vec<u8>,
        body: Vec<u8>,
    },
}

/// How the connection ends after the current flush.
#[derive(PartialEq, Eq, Clone)]
enum Ending {
    Open,
    /// Close after the response (Connection: close, keep-alive max, draining).
    Close,
    /// Close after an error that may leave unread input: half-close and discard for a while.
    Linger,
    /// The 101 is in the output: after it, the connection speaks WebSocket.
    Upgrade(ws::Endpoint),
}

/// Serves one accepted connection: HTTP/1.1 until it ends or upgrades, then WebSocket.
///
/// Each phase's future is boxed, so the connection's task holds only the phase it is in: an
/// idle WebSocket does not carry the HTTP driver's state (about 7 KiB of parser slots and
/// locals) for its whole life. `bench/run`'s `idle` scenario measures what a connection costs.
pub(super) async fn serve(core: Rc<Core>, conn: Conn) {
    core.metrics().connection_opened();
    if let Some((input, endpoint)) = Box::pin(drive(&core, &conn)).await {
        Box::pin(ws::serve(&core, &conn, input, endpoint)).await;
    }
    core.metrics().connection_closed();
}

struct Out {
    buf: Vec<u8>,
    /// A large shared body that follows `buf` on the wire.
    tail: Option<Bytes>,
}

/// The HTTP/1.1 phase. Returns the bytes after the upgrade request's head and the endpoint
/// when the connection became a WebSocket (the 101 is already written).
async fn drive(core: &Core, conn: &Conn) -> Option<(Vec<u8>, ws::Endpoint)> {
    let settings = core.settings();
    let metrics = core.metrics();
    let mut input = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut out = Out {
        buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
        tail: None,
    };
    let mut state = State::Head;
    let mut served: u64 = 0;
    let mut ending = Ending::Open;
    // The first request's head is due within the header timeout of the accept.
    conn.set_timeout(settings.header_timeout);
    let mut head_clock_running = true;
    // When the body being read must be complete (`--body-timeout` from the end of its head);
    // a `100 Continue` written meanwhile runs under the send timeout, then this is restored.
    let mut body_deadline = Instant::now();
    // Reads that brought bytes of the head being decoded (0 between requests).
    let mut head_reads: u32 = 0;
    // Bytes of the head being decoded that a decode already found incomplete (0 when none):
    // until a line ends past them it cannot be complete, so it is not parsed again.
    let mut head_seen: usize = 0;

    loop {
        let mut pos = 0;
        while ending == Ending::Open
            && out.tail.is_none()
            && out.buf.len() < OUTPUT_BUFFER_BYTES_MAX
        {
            match std::mem::replace(&mut state, State::Head) {
                State::Head => {
                    let pending = &input[pos..];
                    let unchanged = head_seen > 0
                        && pending.len() <= REQUEST_LINE_BYTES_MAX
                        && !pending[head_seen.min(pending.len())..].contains(&b'\n');
                    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
                    let decoded = if unchanged {
                        // Below every length limit and no new line end: as incomplete as
                        // before (a head ends with a line end; the length limits are checked
                        // by the parse once past the smallest of them).
                        Ok(Decode::Partial)
                    } else {
                        decode_request(pending, &mut slots)
                    };
                    if matches!(decoded, Ok(Decode::Partial)) {
                        head_seen = pending.len();
                    }
                    match decoded {
                        Ok(Decode::Partial) if head_reads >= HEAD_READS_MAX => {
                            let r = Response::json_error(
                                400,
                                error_id(400),
                                "the request head arrived in too many pieces",
                            );
                            ending = Ending::Linger;
                            push(core, r, false, &mut served, conn, &mut out);
                        }
                        Ok(Decode::Partial) => break,
                        Err(e) => {
                            let r =
                                Response::json_error(e.status(), error_id(e.status()), e.message());
                            ending = Ending::Linger;
                            push(core, r, false, &mut served, conn, &mut out);
                        }
                        Ok(Decode::Complete {
                            value: head,
                            consumed,
                        }) => {
                            head_clock_running = false;
                            head_reads = 0;
                            head_seen = 0;
                            if head.framing == BodyFraming::None
                                && let Some(endpoint) = core.ws_endpoint(&head)
                            {
                                pos += consumed;
                                match check_upgrade(&head, &core.ws_settings().allowed_origins) {
                                    Handshake::Accept { accept_key } => {
                                        encode_accept(&accept_key, &mut out.buf);
                                        core.metrics().response(101);
                                        ending = Ending::Upgrade(endpoint);
                                    }
                                    Handshake::Reject {
                                        status,
                                        reason,
                                        headers,
                                    } => {
                                        let mut r =
                                            Response::json_error(status, error_id(status), reason);
                                        let mut lines = r.headers.to_vec();
                                        lines.extend_from_slice(headers);
                                        r.headers = Bytes::from(lines);
                                        r.close = true;
                                        push(core, r, false, &mut served, conn, &mut out);
                                        ending = Ending::Close;
                                    }
                                }
                                continue;
                            }
                            if head.framing == BodyFraming::None {
                                let response = core.respond(&head, &[], conn.peer().ip()).await;
                                let keep = head.keep_alive;
                                pos += consumed;
                                if push(core, response, keep, &mut served, conn, &mut out) {
                                    ending = Ending::Close;
                                }
                                continue;
                            }
                            match BodyDecoder::new(head.framing, core.body_limit(&head)) {
                                Err(e) => {
                                    // 413 before reading the body: the rest of the input is not
                                    // ours to interpret, so the connection ends.
                                    let r = Response::json_error(
                                        e.status(),
                                        error_id(e.status()),
                                        e.message(),
                                    );
                                    ending = Ending::Linger;
                                    push(core, r, false, &mut served, conn, &mut out);
                                }
                                Ok(decoder) => {
                                    let expect = head.expect_continue;
                                    let head = input[pos..pos + consumed].to_vec();
                                    pos += consumed;
                                    if expect && pos == input.len() {
                                        out.buf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                    }
                                    body_deadline = Instant::now() + settings.body_timeout;
                                    conn.set_deadline(Some(body_deadline));
                                    state = State::Body {
                                        decoder,
                                        head,
                                        body: Vec::new(),
                                    };
                                }
                            }
                        }
                    }
                }
                State::Body {
                    mut decoder,
                    head,
                    mut body,
                } => match decoder.decode(&input[pos..], &mut body) {
                    Err(e) => {
                        let r = Response::json_error(e.status(), error_id(e.status()), e.message());
                        ending = Ending::Linger;
                        push(core, r, false, &mut served, conn, &mut out);
                    }
                    Ok(progress) => {
                        pos += progress.consumed;
                        if !progress.done {
                            state = State::Body {
                                decoder,
                                head,
                                body,
                            };
                            break;
                        }
                        let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
                        let response = match decode_request(&head, &mut slots) {
                            Ok(Decode::Complete { value: head, .. }) => {
                                let keep = head.keep_alive;
                                (core.respond(&head, &body, conn.peer().ip()).await, keep)
                            }
                            _ => (
                                Response::json_error(
                                    500,
                                    "INTERNAL",
                                    "request head could not be decoded twice",
                                ),
                                false,
                            ),
                        };
                        if push(core, response.0, response.1, &mut served, conn, &mut out) {
                            ending = Ending::Close;
                        }
                    }
                },
            }
        }
        input.drain(..pos);
        let paused = ending == Ending::Open
            && (out.tail.is_some() || out.buf.len() >= OUTPUT_BUFFER_BYTES_MAX);

        if !out.buf.is_empty() || out.tail.is_some() {
            conn.set_idle(false);
            conn.set_timeout(settings.send_timeout);
            let len = (out.buf.len() + out.tail.as_ref().map_or(0, Bytes::len)) as u64;
            let result = match out.tail.take() {
                // A large shared body goes out with its head in one vectored write, uncopied.
                Some(tail) => {
                    conn.write_all_vectored(vec![Bytes::copy_from_slice(&out.buf), tail])
                        .await
                }
                None => {
                    let (result, buf) = conn.write_all(std::mem::take(&mut out.buf)).await;
                    out.buf = buf;
                    result
                }
            };
            out.buf.clear();
            if result.is_err() {
                return None;
            }
            CoreMetrics::add(&metrics.bytes_out, len);
            if matches!(state, State::Body { .. }) {
                conn.set_deadline(Some(body_deadline));
            }
        }
        match &ending {
            Ending::Open => {}
            Ending::Close => {
                conn.shutdown_write();
                return None;
            }
            Ending::Linger => {
                linger(conn, input).await;
                return None;
            }
            Ending::Upgrade(endpoint) => {
                return Some((input, endpoint.clone()));
            }
        }
        if paused {
            // Decoding stopped at the output limit with requests possibly still buffered:
            // answer those before reading more.
            continue;
        }
        if matches!(state, State::Head) {
            if input.is_empty() {
                // Nothing in flight (a fresh connection, or between requests): a draining core
                // may close it at once.
                if conn.draining() {
                    return None;
                }
                conn.set_idle(true);
                if !head_clock_running {
                    conn.set_timeout(settings.keep_alive_timeout);
                }
            } else if !head_clock_running {
                // A pipelined head has begun: its clock runs from now.
                conn.set_timeout(settings.header_timeout);
                head_clock_running = true;
            }
        }
        if input.len() == input.capacity() {
            input.reserve(READ_BUFFER_BYTES);
        }
        let (result, buf) = conn.read(input).await;
        input = buf;
        conn.set_idle(false);
        match result {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                CoreMetrics::add(&metrics.bytes_in, n as u64);
                if matches!(state, State::Head) {
                    head_reads += 1;
                }
                if matches!(state, State::Head) && !head_clock_running {
                    conn.set_timeout(settings.header_timeout);
                    head_clock_running = true;
                }
            }
        }
    }
}

/// Encodes a response; returns whether the connection must close after it.
fn push(
    core: &Core,
    response: Response,
    keep_alive: bool,
    served: &mut u64,
    conn: &Conn,
    out: &mut Out,
) -> bool {
    let settings = core.settings();
    *served += 1;
    let close =
        response.close || !keep_alive || *served >= settings.keep_alive_max || conn.draining();
    let persistence = if close {
        Persistence::Close
    } else {
        Persistence::KeepAlive {
            timeout_s: settings.keep_alive_timeout.as_secs(),
            remaining: settings.keep_alive_max - *served,
        }
    };
    core.metrics().response(response.status);
    let date = core.date();
    out.tail = encode(response, &date, persistence, &mut out.buf);
    close
}

fn error_id(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        403 => "FORBIDDEN",
        405 => "METHOD_NOT_ALLOWED",
        426 => "UPGRADE_REQUIRED",
        413 => "PAYLOAD_TOO_LARGE",
        414 => "URI_TOO_LONG",
        431 => "HEADERS_TOO_LARGE",
        501 => "NOT_IMPLEMENTED",
        505 => "HTTP_VERSION_NOT_SUPPORTED",
        _ => "ERROR",
    }
}

/// Half-closes, then discards input until EOF, [`LINGER_BYTES_MAX`] or [`LINGER_MS`].
async fn linger(conn: &Conn, mut input: Vec<u8>) {
    conn.shutdown_write();
    conn.set_deadline(Some(
        Instant::now() + std::time::Duration::from_millis(LINGER_MS),
    ));
    let mut discarded = 0;
    while discarded < LINGER_BYTES_MAX {
        input.clear();
        let (result, buf) = conn.read(input).await;
        input = buf;
        match result {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// Used by `Core::respond`: HEAD gets GET's headers and no body.
pub(super) fn head_only(head: &RequestHead<'_>, mut response: Response) -> Response {
    if head.method == "HEAD" {
        response.omit_body = true;
    }
    response
}
