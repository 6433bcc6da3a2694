//! Decoding of an HTTP/1.x request head (RFC 9112 §2–§3, §5, §6; RFC 9110 §5, §7.2, §8.6).
//!
//! [`decode_request`] finds the end of the head itself (strict CRLF, size limits checked in
//! stream order), lets `httparse` split the request line and the field lines, then decides the
//! body framing, persistence and `100-continue` from the header fields. It borrows everything
//! from the caller's buffer and allocates nothing.
//!
//! It does not decode the body (see `body.rs`), percent-decode or normalise the target, route,
//! or look at any header beyond Host, Content-Length, Transfer-Encoding, Connection and Expect.
//! Where RFC 9112 lets a recipient either repair or reject a message, we reject: two parsers
//! that repair differently are how requests get smuggled.

use httparse::Header;

use super::{Decode, HEAD_BYTES_MAX, HEADERS_COUNT_MAX, REQUEST_LINE_BYTES_MAX};

/// The protocol version of a request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body; also what `Content-Length: 0` decodes to.
    None,
    /// Exactly this many bytes (never zero).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A decoded request head, borrowing the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'b> {
    /// The method token, case as sent (methods are case-sensitive, RFC 9110 §9.1).
    pub method: &'b str,
    /// The request-target as sent: origin-form (`/path?query`), `*` (OPTIONS only) or
    /// absolute-form (`http://host/path`).
    pub target: &'b str,
    pub version: Version,
    /// The field lines in the order sent; values have surrounding whitespace removed.
    pub headers: &'b [Header<'b>],
    pub framing: BodyFraming,
    /// Whether the connection may stay open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body (RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

impl<'b> RequestHead<'b> {
    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether `token` is an element of the comma-separated list formed by every field named
    /// `name` (RFC 9110 §5.3: repeated field lines combine into one list), case-insensitive.
    /// For list-valued fields such as Connection and Upgrade.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| list_has(h.value, token.as_bytes()))
    }
}

/// Why a request head was refused. Every one of them ends the connection: after a bad head we
/// cannot know where the next request starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The head did not end within [`HEAD_BYTES_MAX`] bytes (431).
    HeadTooLarge,
    /// More than [`HEADERS_COUNT_MAX`] field lines (431).
    TooManyHeaders,
    /// The request line is longer than [`REQUEST_LINE_BYTES_MAX`] bytes (414).
    UriTooLong,
    /// The head does not follow the grammar (400).
    Malformed(&'static str),
    /// The framing could be read two ways; a defence against request smuggling (400).
    Ambiguous(&'static str),
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferCoding,
    /// A version other than HTTP/1.0 and HTTP/1.1 (505).
    UnsupportedVersion,
}

impl RequestError {
    /// The response status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UriTooLong => 414,
            RequestError::Malformed(_) | RequestError::Ambiguous(_) => 400,
            RequestError::UnsupportedTransferCoding => 501,
            RequestError::UnsupportedVersion => 505,
        }
    }

    /// A short explanation for the client, used in the JSON error body.
    pub fn message(&self) -> &'static str {
        match self {
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many header fields",
            RequestError::UriTooLong => "request line too long",
            RequestError::Malformed(why) | RequestError::Ambiguous(why) => why,
            RequestError::UnsupportedTransferCoding => {
                "transfer coding not implemented; only chunked is supported"
            }
            RequestError::UnsupportedVersion => {
                "HTTP version not supported; use HTTP/1.1 or HTTP/1.0"
            }
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for RequestError {}

const BARE_LF: &str = "bare LF in request head; lines must end with CRLF";
const BARE_CR: &str = "bare CR in request head";
const OBS_FOLD: &str = "obsolete line folding is not accepted";

/// Decodes one request head from the start of `buf`.
///
/// `Partial` (nothing consumed) until the blank line ending the head has arrived; then
/// `consumed` is the length of the head, any empty lines before the request line included, and
/// the body or the next pipelined request starts at `buf[consumed..]`. The limits are checked in
/// stream order, so an error reported for a prefix of the input is the error the whole input
/// would get.
///
/// `slots` must have at least [`HEADERS_COUNT_MAX`] entries (`httparse::EMPTY_HEADER`); fewer
/// make [`RequestError::TooManyHeaders`] come sooner, and entries past the limit are not used.
pub fn decode_request<'b>(
    buf: &'b [u8],
    slots: &'b mut [Header<'b>],
) -> Result<Decode<RequestHead<'b>>, RequestError> {
    let Some(extent) = find_head(buf)? else {
        return Ok(Decode::Partial);
    };
    let head = &buf[extent.start..extent.end];

    let slots_len = slots.len().min(HEADERS_COUNT_MAX);
    let slots: &'b mut [Header<'b>] = &mut slots[..slots_len];
    let mut parsed = httparse::Request::new(slots);
    // RFC 9112 §2.2: "When a server listening only for HTTP request messages, or processing what
    // appears from the start-line to be an HTTP request message, receives a sequence of octets
    // that does not match the HTTP-message grammar aside from the robustness exceptions listed
    // above, the server SHOULD respond with a 400 (Bad Request) response and close the
    // connection." httparse checks the grammar of the request line and of every field line:
    // tokens for method and field names, no whitespace before the colon (RFC 9112 §5.1), no
    // obs-fold, and no CTL but HTAB in values (RFC 9110 §5.5: "a recipient of CR, LF, or NUL
    // within a field value MUST either reject the message or replace each of those characters
    // with SP").
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(RequestError::Malformed("malformed request head")),
        Err(e) => {
            return Err(diagnose(
                e,
                &buf[extent.start..extent.line_end],
                &buf[extent.line_end + 2..extent.end],
            ));
        }
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(RequestError::Malformed("malformed request line"));
    };
    let headers: &'b [Header<'b>] = parsed.headers;

    // RFC 9112 §2.3: "HTTP-version = HTTP-name "/" DIGIT "." DIGIT"; httparse accepts only
    // 1.0 and 1.1, anything else was classified by `diagnose`.
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(RequestError::UnsupportedVersion),
    };

    check_target(method, target)?;

    let fields = Fields::scan(headers);

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    // request message that lacks a Host header field and to any request message that contains
    // more than one Host header field line or a Host header field with an invalid field value."
    match (fields.hosts, version) {
        (0, Version::Http11) => return Err(RequestError::Malformed("missing Host header field")),
        (0 | 1, _) => {}
        _ => return Err(RequestError::Malformed("more than one Host header field")),
    }
    if let Some(host) = fields.host
        && !host.iter().all(|&b| is_host_byte(b))
    {
        return Err(RequestError::Malformed("invalid Host header field"));
    }

    let framing = framing(&fields, version, headers)?;

    // RFC 9112 §9.3: "If the "close" connection option is present (Section 9.6), the
    // connection will not persist after the current response; else, If the received protocol
    // is HTTP/1.1 (or later), the connection will persist after the current response; else, If
    // the received protocol is HTTP/1.0, the "keep-alive" connection option is present, [...]
    // the connection will persist after the current response; otherwise, The connection will
    // close after the current response."
    let keep_alive = !fields.close
        && match version {
            Version::Http11 => true,
            Version::Http10 => fields.keep_alive,
        };

    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    // request MUST ignore that expectation."
    let expect_continue = fields.expect_continue && version == Version::Http11;

    Ok(Decode::Complete {
        value: RequestHead {
            method,
            target,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
        },
        consumed: extent.end,
    })
}

/// Where the head lies in the input: the request line is `start..line_end` (its CRLF follows),
/// the whole head is `start..end` (ending with the blank line's CRLF).
struct HeadExtent {
    start: usize,
    line_end: usize,
    end: usize,
}

/// Finds the end of the head, checking line endings and limits on the way. `Ok(None)` means
/// more input is needed.
///
/// Only the first [`HEAD_BYTES_MAX`] bytes are looked at: if the head has not ended within them
/// it is too large, whatever follows. This keeps the result for any prefix of the input either
/// `None` or the result for the whole input.
fn find_head(buf: &[u8]) -> Result<Option<HeadExtent>, RequestError> {
    let view = &buf[..buf.len().min(HEAD_BYTES_MAX)];
    match find_head_in(view)? {
        Some(extent) => Ok(Some(extent)),
        None if view.len() == HEAD_BYTES_MAX => Err(RequestError::HeadTooLarge),
        None => Ok(None),
    }
}

fn find_head_in(view: &[u8]) -> Result<Option<HeadExtent>, RequestError> {
    // RFC 9112 §2.2: "In the interest of robustness, a server that is expecting to receive and
    // parse a request-line SHOULD ignore at least one empty line (CRLF) received prior to the
    // request-line."
    let mut start = 0;
    loop {
        match view.get(start) {
            None => return Ok(None),
            Some(b'\r') => match view.get(start + 1) {
                None => return Ok(None),
                Some(b'\n') => start += 2,
                Some(_) => return Err(RequestError::Malformed(BARE_CR)),
            },
            Some(b'\n') => return Err(RequestError::Malformed(BARE_LF)),
            Some(_) => break,
        }
    }

    // RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes to
    // parse MUST respond with a 414 (URI Too Long) status code". We bound the whole request
    // line, method and version included: only its first REQUEST_LINE_BYTES_MAX bytes and CRLF
    // are looked at.
    let line_view_end = start + REQUEST_LINE_BYTES_MAX + 2;
    let line_view = &view[..view.len().min(line_view_end)];
    let line_end = match find_line_end(line_view, start)? {
        Some(end) => end,
        None if line_view.len() == line_view_end => return Err(RequestError::UriTooLong),
        None => return Ok(None),
    };

    let mut line_start = line_end + 2;
    loop {
        // RFC 9112 §5.2: "A server that receives an obs-fold in a request message that is not
        // within a "message/http" container MUST either reject the message by sending a 400 (Bad
        // Request), preferably with a representation explaining that obsolete line folding is
        // unacceptable, or replace each received obs-fold with one or more SP octets prior to
        // interpreting the field value or forwarding the message downstream." Also RFC 9112
        // §2.2: "A recipient that receives whitespace between the start-line and the first
        // header field MUST either reject the message as invalid or consume each
        // whitespace-preceded line without further processing of it".
        if matches!(view.get(line_start), Some(b' ' | b'\t')) {
            return Err(RequestError::Malformed(OBS_FOLD));
        }
        match find_line_end(view, line_start)? {
            None => return Ok(None),
            Some(end) if end == line_start => {
                return Ok(Some(HeadExtent {
                    start,
                    line_end,
                    end: end + 2,
                }));
            }
            Some(end) => line_start = end + 2,
        }
    }
}

/// The index of the CR ending the line that starts at `from`, or `None` if the input ends first.
fn find_line_end(view: &[u8], from: usize) -> Result<Option<usize>, RequestError> {
    let Some(offset) = find_cr_or_lf(&view[from..]) else {
        return Ok(None);
    };
    let at = from + offset;
    // RFC 9112 §2.2: "Although the line terminator for the start-line and fields is the
    // sequence CRLF, a recipient MAY recognize a single LF as a line terminator and ignore any
    // preceding CR." We do not: a front end that splits lines differently from us is a
    // smuggling vector, so a bare LF is an error.
    if view[at] == b'\n' {
        return Err(RequestError::Malformed(BARE_LF));
    }
    match view.get(at + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(at)),
        // RFC 9112 §2.2: "A recipient of such a bare CR MUST consider that element to be invalid
        // or replace each bare CR with SP before processing the element or forwarding the
        // message."
        Some(_) => Err(RequestError::Malformed(BARE_CR)),
    }
}

/// The index of the first CR or LF in `bytes`.
///
/// This runs over every byte of every request head, so it looks at eight bytes at a time: a
/// byte of `word ^ [CR; 8]` is zero exactly where `word` holds a CR, and `(x - 0x01..) & !x &
/// 0x80..` flags zero bytes. A flag can be wrong only above a true zero byte (the borrow runs
/// upwards), so the lowest flag is always right.
pub(super) fn find_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const CRS: u64 = u64::from_le_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_le_bytes([b'\n'; 8]);
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("chunks_exact(8) yields 8 bytes"));
        let found = zero_bytes(word ^ CRS) | zero_bytes(word ^ LFS);
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|at| offset + at)
}

/// Turns an httparse error into the most precise error we can name. Only runs on a bad head.
fn diagnose(error: httparse::Error, request_line: &[u8], field_lines: &[u8]) -> RequestError {
    if error == httparse::Error::TooManyHeaders {
        return RequestError::TooManyHeaders;
    }
    if let Some(problem) = request_line_problem(request_line) {
        return problem;
    }
    field_lines
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find_map(field_line_problem)
        .unwrap_or(RequestError::Malformed("malformed request head"))
}

fn request_line_problem(line: &[u8]) -> Option<RequestError> {
    // RFC 9112 §3: "request-line = method SP request-target SP HTTP-version"
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next(), parts.next());
    if parts.next().is_some() {
        return Some(RequestError::Malformed(
            "request line is not method SP request-target SP version",
        ));
    }
    // RFC 9110 §9.1: "method = token"
    if !is_token(method) {
        return Some(RequestError::Malformed("invalid method"));
    }
    // RFC 9112 §3.2: "No whitespace is allowed in the request-target."
    let Some(target) = target.filter(|t| !t.is_empty() && t.iter().all(|&b| b > b' ' && b != 0x7f))
    else {
        return Some(RequestError::Malformed("invalid request-target"));
    };
    if std::str::from_utf8(target).is_err() {
        return Some(RequestError::Malformed("request-target is not UTF-8"));
    }
    match version {
        // A bare "GET /path" is an HTTP/0.9 simple request.
        None => Some(RequestError::UnsupportedVersion),
        // RFC 9112 §2.3: "HTTP-version = HTTP-name "/" DIGIT "." DIGIT"
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0' | b'1') => None,
                _ => Some(RequestError::UnsupportedVersion),
            }
        }
        Some(_) => Some(RequestError::Malformed("invalid HTTP version")),
    }
}

fn field_line_problem(line: &[u8]) -> Option<RequestError> {
    // RFC 9112 §5: "field-line = field-name ":" OWS field-value OWS"
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Some(RequestError::Malformed("header field line without a colon"));
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // RFC 9112 §5.1: "A server MUST reject, with a response status code of 400 (Bad Request),
    // any received request message that contains whitespace between a header field name and
    // colon."
    if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Some(RequestError::Malformed(
            "whitespace between header field name and colon",
        ));
    }
    // RFC 9110 §5.1: "field-name = token"
    if !is_token(name) {
        return Some(RequestError::Malformed("invalid header field name"));
    }
    // RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
    // dangerous [...] Field values containing other CTL characters are also invalid".
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Some(RequestError::Malformed(
            "control character in header field value",
        ));
    }
    None
}

fn check_target(method: &str, target: &str) -> Result<(), RequestError> {
    // RFC 9112 §3.2: "request-target = origin-form / absolute-form / authority-form /
    // asterisk-form"
    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" {
        // RFC 9112 §3.2.4: "The "asterisk-form" of request-target is only used for a
        // server-wide OPTIONS request".
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(RequestError::Malformed(
                "asterisk-form request-target is only for OPTIONS",
            ))
        };
    }
    // RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests even though most
    // HTTP/1.1 clients will only send the absolute-form to a proxy."
    let http_scheme =
        |scheme: &str| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if target
        .split_once("://")
        .is_some_and(|(scheme, _)| http_scheme(scheme))
    {
        return Ok(());
    }
    // RFC 9112 §3.2.3: "The "authority-form" of request-target is only used for CONNECT
    // requests". We are not a proxy, so CONNECT and anything else is refused.
    Err(RequestError::Malformed(
        "request-target must be origin-form or absolute-form",
    ))
}

/// What the framing, persistence and expectation decisions need from the field lines,
/// gathered in one pass.
#[derive(Default)]
struct Fields<'b> {
    hosts: u32,
    host: Option<&'b [u8]>,
    content_length: bool,
    transfer_encoding: bool,
    /// Transfer codings across every Transfer-Encoding line, empty list elements ignored.
    codings: u32,
    chunked: u32,
    last_is_chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[Header<'b>]) -> Fields<'b> {
        let mut fields = Fields::default();
        for header in headers {
            let name = header.name;
            // Dispatch on length first: most field lines are none of these.
            match name.len() {
                4 if name.eq_ignore_ascii_case("host") => {
                    fields.hosts += 1;
                    fields.host = Some(header.value);
                }
                6 if name.eq_ignore_ascii_case("expect") => {
                    // RFC 9110 §10.1.1: "The only expectation defined by this specification is
                    // "100-continue" (with no defined parameters)."
                    fields.expect_continue |= list_has(header.value, b"100-continue");
                }
                10 if name.eq_ignore_ascii_case("connection") => {
                    // RFC 9110 §7.6.1: "Connection options are case-insensitive."
                    for option in list_elements(header.value) {
                        fields.close |= option.eq_ignore_ascii_case(b"close");
                        fields.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                14 if name.eq_ignore_ascii_case("content-length") => fields.content_length = true,
                17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                    fields.transfer_encoding = true;
                    for coding in list_elements(header.value) {
                        let chunked = coding.eq_ignore_ascii_case(b"chunked");
                        fields.codings += 1;
                        fields.chunked += u32::from(chunked);
                        fields.last_is_chunked = chunked;
                    }
                }
                _ => {}
            }
        }
        fields
    }
}

fn framing(
    fields: &Fields<'_>,
    version: Version,
    headers: &[Header<'_>],
) -> Result<BodyFraming, RequestError> {
    if fields.transfer_encoding {
        // RFC 9112 §6.3: "If a message is received with both a Transfer-Encoding and a
        // Content-Length header field, the Transfer-Encoding overrides the Content-Length. Such
        // a message might indicate an attempt to perform request smuggling (Section 11.2) or
        // response splitting (Section 11.1) and ought to be handled as an error."
        if fields.content_length {
            return Err(RequestError::Ambiguous(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty,
        // even if a Content-Length is present, and close the connection after processing the
        // message."
        if version == Version::Http10 {
            return Err(RequestError::Ambiguous(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.1: "Transfer-Encoding = #transfer-coding"; a list of no elements names no
        // coding at all.
        if fields.codings == 0 {
            return Err(RequestError::Malformed("empty Transfer-Encoding"));
        }
        // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than once to
        // a message body (i.e., chunking an already chunked message is not allowed)."
        if fields.chunked > 1 {
            return Err(RequestError::Ambiguous("chunked applied more than once"));
        }
        // RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and the
        // chunked transfer coding is not the final encoding, the message body length cannot be
        // determined reliably; the server MUST respond with the 400 (Bad Request) status code
        // and then close the connection." (This covers `identity` and `gzip` alone too.)
        if !fields.last_is_chunked {
            return Err(RequestError::Ambiguous(
                "chunked is not the final transfer coding",
            ));
        }
        // RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
        // does not understand SHOULD respond with 501 (Not Implemented)." We implement only
        // chunked.
        if fields.codings > 1 {
            return Err(RequestError::UnsupportedTransferCoding);
        }
        return Ok(BodyFraming::Chunked);
    }
    if fields.content_length {
        let length = content_length(headers)?;
        // RFC 9112 §6.3: "If a valid Content-Length header field is present without
        // Transfer-Encoding, its decimal value defines the expected message body length in
        // octets."
        return Ok(if length == 0 {
            BodyFraming::None
        } else {
            BodyFraming::Length(length)
        });
    }
    // RFC 9112 §6.3: "If this is a request message and none of the above are true, then the
    // message body length is zero (no message body is present)."
    Ok(BodyFraming::None)
}

/// The single value of every Content-Length field line combined.
fn content_length(headers: &[Header<'_>]) -> Result<u64, RequestError> {
    let mut length = None;
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        // RFC 9112 §6.3: "If a message is received without Transfer-Encoding and with an invalid
        // Content-Length header field, then the message framing is invalid and the recipient
        // MUST treat it as an unrecoverable error, unless the field value can be successfully
        // parsed as a comma-separated list (Section 5.6.1 of [HTTP]), all values in the list are
        // valid, and all values in the list are identical (in which case, the message is
        // processed with that single value used as the Content-Length field value)."
        // Repeated field lines are one list (RFC 9110 §5.3). An empty element is not a valid
        // value here: leniency about framing is what smuggling feeds on.
        for element in header.value.split(|&b| b == b',') {
            let value = decimal(trim_ows(element))?;
            match length {
                None => length = Some(value),
                Some(first) if first == value => {}
                Some(_) => return Err(RequestError::Ambiguous("differing Content-Length values")),
            }
        }
    }
    length.ok_or(RequestError::Malformed("invalid Content-Length"))
}

/// RFC 9110 §8.6: "Content-Length = 1*DIGIT"; "a recipient MUST anticipate potentially large
/// decimal numerals and prevent parsing errors due to integer conversion overflows or precision
/// loss due to integer representation."
fn decimal(digits: &[u8]) -> Result<u64, RequestError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::Malformed("invalid Content-Length"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RequestError::Malformed("Content-Length overflows"))
    })
}

/// RFC 9110 §5.6.1: "#element => [ element ] *( OWS "," OWS [ element ] )" and "A recipient MUST
/// parse and ignore a reasonable number of empty list elements". Non-empty elements, trimmed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn list_has(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// RFC 9110 §5.6.3: "OWS = *( SP / HTAB )"
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 9110 §5.6.2: "token = 1*tchar"
pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// RFC 9110 §5.6.2: "tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^"
/// / "_" / "`" / "|" / "~" / DIGIT / ALPHA"
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §7.2: "Host = uri-host [ ":" port ]", where uri-host is an IP-literal in brackets,
/// an IPv4 address or a reg-name of unreserved, pct-encoded and sub-delims characters (RFC 3986
/// §3.2.2). Checked by alphabet only: enough to refuse whitespace, `/`, `@` and other bytes that
/// would let a Host value change the meaning of a URL built from it.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// The origin-form part of a request target: an absolute-form target (RFC 9112 §3.2.2,
/// `http://host/path?q`) loses its scheme and authority, the scheme compared without regard to
/// case (RFC 9110 §4.2.3: "The scheme and host are case-insensitive"); any other target is
/// returned as it is. The query is kept.
pub fn origin_form(target: &str) -> &str {
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])
    });
    match after_scheme {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

#[cfg(test)]
mod origin_form_tests {
    use super::origin_form;

    #[test]
    fn absolute_form_loses_its_scheme_and_authority_in_any_case() {
        assert_eq!(origin_form("/a?b"), "/a?b");
        assert_eq!(origin_form("http://h:1/a?b"), "/a?b");
        assert_eq!(origin_form("HTTP://h/x"), "/x");
        assert_eq!(origin_form("hTTpS://h"), "/");
        assert_eq!(origin_form("*"), "*");
        assert_eq!(origin_form("ftp://h/x"), "ftp://h/x");
        assert_eq!(origin_form("http:/"), "http:/");
    }
}
