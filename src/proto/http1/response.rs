//! Encoding of a response head: the status line and validated header field lines, appended to
//! a caller's buffer.
//!
//! It does not decide which header fields a response carries, format dates or write bodies
//! (see `crate::server::response`), and it never allocates: everything goes into the caller's
//! `Vec`.

/// The reason phrase for a status code (RFC 9110 §15), or `""` for one it does not name.
///
/// RFC 9112 §4: "A client SHOULD ignore the reason-phrase content because it is not a reliable
/// channel for information (it might be translated for a given locale, overwritten, or removed
/// when the message is forwarded through an intermediary)." So an empty one is fine.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends the status line, e.g. `HTTP/1.1 200 OK\r\n`.
///
/// RFC 9112 §4: "status-line = HTTP-version SP status-code SP [ reason-phrase ]" and RFC 9110
/// §15: "status-code = 3DIGIT". A code outside 100..=999 is a bug in the caller; it is sent as
/// 500 rather than as a status line no client could parse.
pub fn encode_status_line(status: u16, out: &mut Vec<u8>) {
    debug_assert!(
        (100..=999).contains(&status),
        "status code {status} is not three digits"
    );
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    // Three digits, most significant first; `status` < 1000 makes each a single digit.
    let digits = [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A header field line was refused: its value held CR, LF or NUL, or its name was not a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderValueError;

impl std::fmt::Display for HeaderValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("header field name is not a token, or its value contains CR, LF or NUL")
    }
}

impl std::error::Error for HeaderValueError {}

/// Appends `name: value\r\n`.
///
/// Refuses (`Err`, appending nothing) a value containing CR, LF or NUL, or a name that is not an
/// RFC 9110 token, so that no value taken from a request can split a response or smuggle in a
/// header field of its own.
pub fn encode_header(name: &str, value: &[u8], out: &mut Vec<u8>) -> Result<(), HeaderValueError> {
    // RFC 9110 §5.1: "field-name = token"
    if !super::request::is_token(name.as_bytes()) {
        return Err(HeaderValueError);
    }
    // RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
    // dangerous, due to the varying ways that implementations might parse and interpret those
    // characters".
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HeaderValueError);
    }
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Ok(())
}
