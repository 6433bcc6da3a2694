//! Request-head decoding (RFC 9112 §2–§3, §5, §6): request line, header fields, and the
//! message-body framing they imply.
//!
//! Strict where leniency enables request smuggling: bare LF, obs-fold, whitespace before a
//! colon, ambiguous framing and unknown transfer codings are refused, never guessed at. Does not
//! decode bodies (see `body.rs`) and does not interpret the target beyond its form.

use super::{Decode, HEAD_BYTES_MAX, REQUEST_LINE_BYTES_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A decoded request head, borrowing from the input buffer.
#[derive(Debug)]
pub struct RequestHead<'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    pub headers: &'b [httparse::Header<'b>],
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl<'b> RequestHead<'b> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether a comma-separated header (all its occurrences) contains `token`, ignoring case.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 431: the head is larger than HEAD_BYTES_MAX.
    HeadTooLarge,
    /// 431: more than HEADERS_COUNT_MAX header fields.
    TooManyHeaders,
    /// 414: the request line is longer than REQUEST_LINE_BYTES_MAX.
    UriTooLong,
    /// 400: not a well-formed HTTP/1.x request head.
    Malformed(&'static str),
    /// 400: the body framing could be read more than one way (request smuggling defence).
    Ambiguous(&'static str),
    /// 501: a transfer coding we do not implement.
    UnsupportedTransferCoding,
    /// 505: an HTTP version other than 1.0 and 1.1.
    UnsupportedVersion,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UriTooLong => 414,
            RequestError::Malformed(_) | RequestError::Ambiguous(_) => 400,
            RequestError::UnsupportedTransferCoding => 501,
            RequestError::UnsupportedVersion => 505,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many header fields",
            RequestError::UriTooLong => "request line too long",
            RequestError::Malformed(why) | RequestError::Ambiguous(why) => why,
            RequestError::UnsupportedTransferCoding => "unsupported transfer coding",
            RequestError::UnsupportedVersion => "unsupported HTTP version",
        }
    }
}

/// Decodes one request head from the start of `buf`. `slots` must hold at least
/// HEADERS_COUNT_MAX entries. Incomplete input is `Partial` and consumes nothing.
pub fn decode_request<'b>(
    buf: &'b [u8],
    slots: &'b mut [httparse::Header<'b>],
) -> Result<Decode<RequestHead<'b>>, RequestError> {
    // RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD
    // ignore at least one empty line (CRLF) received prior to the request-line."
    let mut skip = 0;
    while buf[skip..].starts_with(b"\r\n") {
        skip += 2;
    }
    if skip > 0 && buf.len() == skip {
        return Ok(Decode::Partial);
    }
    let rest = &buf[skip..];
    let line_end = rest.iter().position(|&b| b == b'\n');
    match line_end {
        None if rest.len() > REQUEST_LINE_BYTES_MAX => return Err(RequestError::UriTooLong),
        Some(n) if n > REQUEST_LINE_BYTES_MAX => return Err(RequestError::UriTooLong),
        _ => {}
    }
    let Some(head_len) = find_head_end(rest) else {
        if rest.len() > HEAD_BYTES_MAX {
            return Err(RequestError::HeadTooLarge);
        }
        check_line_endings(rest)?;
        return Ok(Decode::Partial);
    };
    if head_len > HEAD_BYTES_MAX {
        return Err(RequestError::HeadTooLarge);
    }
    let head = &rest[..head_len];
    check_line_endings(head)?;
    let mut request = httparse::Request::new(slots);
    let status = httparse::ParserConfig::default().parse_request(&mut request, head);
    match status {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(RequestError::Malformed("incomplete request head"));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(classify_version(head)),
        Err(httparse::Error::HeaderName) => {
            // RFC 9112 §5.1: "No whitespace is allowed between the field name and colon. ... A
            // server MUST reject, with a response status code of 400 (Bad Request), any
            // received request message that contains whitespace between a header field name
            // and colon." §5.2: obs-fold "MAY reject the message by sending a 400".
            return Err(RequestError::Malformed(
                "invalid header field name or folded line",
            ));
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(RequestError::Malformed("invalid header field value"));
        }
        Err(httparse::Error::Token) => return Err(RequestError::Malformed("invalid method")),
        Err(httparse::Error::NewLine) | Err(httparse::Error::Status) => {
            return Err(RequestError::Malformed("invalid request line"));
        }
    }
    let method = request
        .method
        .ok_or(RequestError::Malformed("missing method"))?;
    let target = request
        .path
        .ok_or(RequestError::Malformed("missing request target"))?;
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(RequestError::UnsupportedVersion),
    };
    let headers: &'b [httparse::Header<'b>] = request.headers;
    check_target(method, target)?;

    let mut host_count = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_count = 0;
    let mut chunked_last = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("host") {
            host_count += 1;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3 (5): "If a message is received without Transfer-Encoding and with
            // an invalid Content-Length header field, then the message framing is invalid and
            // the recipient MUST treat it as an unrecoverable error ... the server MUST respond
            // with a 400". Identical repeated values (also as a list) are allowed (RFC 9110 §8.6).
            for part in h.value.split(|&b| b == b',') {
                let n = parse_content_length(part.trim_ascii())?;
                match content_length {
                    Some(prev) if prev != n => {
                        return Err(RequestError::Ambiguous("differing Content-Length values"));
                    }
                    _ => content_length = Some(n),
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in h.value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_count += 1;
                    chunked_last = true;
                } else {
                    other_coding = true;
                    chunked_last = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message that
    // contains more than one Host header field line or a Host header field with an invalid
    // field value."
    if host_count > 1 || (version == Version::Http11 && host_count == 0) {
        return Err(RequestError::Malformed(
            "exactly one Host header is required",
        ));
    }
    let framing = if transfer_encoding {
        // RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length and
        // Transfer-Encoding or process such a request in accordance with the Transfer-Encoding
        // alone. Regardless, the server MUST close the connection after responding".
        if content_length.is_some() {
            return Err(RequestError::Ambiguous(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        if version == Version::Http10 {
            return Err(RequestError::Ambiguous(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than once".
        if chunked_count > 1 {
            return Err(RequestError::Ambiguous("chunked applied more than once"));
        }
        // RFC 9112 §6.3 (4): "If a Transfer-Encoding header field is present in a request and
        // the chunked transfer coding is not the final encoding, the message body length
        // cannot be determined reliably; the server MUST respond with the 400".
        if !chunked_last && !other_coding {
            return Err(RequestError::Ambiguous("empty Transfer-Encoding"));
        }
        if !chunked_last {
            return Err(RequestError::Ambiguous(
                "chunked is not the final transfer coding",
            ));
        }
        // RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
        // does not understand SHOULD respond with 501 (Not Implemented)."
        if other_coding {
            return Err(RequestError::UnsupportedTransferCoding);
        }
        BodyFraming::Chunked
    } else {
        match content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
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
        consumed: skip + head_len,
    })
}

/// Length of the head including its final CRLFCRLF, if complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line terminator"; we do not,
/// because proxies disagree about it and disagreement is how requests get smuggled. Also refuses
/// a bare CR (§2.2: "A sender MUST NOT generate a bare CR") and NUL anywhere in the head.
fn check_line_endings(head: &[u8]) -> Result<(), RequestError> {
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                return Err(RequestError::Malformed("bare LF in request head"));
            }
            b'\r' if i + 1 < head.len() && head[i + 1] != b'\n' => {
                return Err(RequestError::Malformed("bare CR in request head"));
            }
            0 => return Err(RequestError::Malformed("NUL in request head")),
            _ => {}
        }
    }
    Ok(())
}

fn classify_version(head: &[u8]) -> RequestError {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    // RFC 9112 §3: "request-line = method SP request-target SP HTTP-version": exactly three parts.
    if line.split(|&b| b == b' ').count() != 3 {
        return RequestError::Malformed("invalid request line");
    }
    match line.rsplit(|&b| b == b' ').next() {
        Some(v)
            if v.starts_with(b"HTTP/")
                && v.len() > 5
                && v[5..].iter().all(|b| b.is_ascii_digit() || *b == b'.') =>
        {
            RequestError::UnsupportedVersion
        }
        _ => RequestError::Malformed("invalid request line"),
    }
}

/// RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT), asterisk-form
/// (OPTIONS). We serve no CONNECT.
fn check_target(method: &str, target: &str) -> Result<(), RequestError> {
    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" && method == "OPTIONS" {
        return Ok(());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    Err(RequestError::Malformed("unsupported request-target form"))
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`.
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::Ambiguous("invalid Content-Length"));
    }
    let mut n: u64 = 0;
    for &d in value {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RequestError::Ambiguous("Content-Length overflows"))?;
    }
    Ok(n)
}
