//! Responses as the server builds them, and their encoding onto a connection's output buffer.
//!
//! A [`Response`] is a status, a block of pre-encoded header lines (shared bytes, so a cached
//! static file costs no copy), and a body. [`encode`] adds the headers every response carries
//! (Date, Content-Length, Connection / Keep-Alive) and appends the body unless it is large, in
//! which case the caller writes it without copying. Nothing here does I/O.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::proto::http1::{encode_header, encode_status_line};

/// Bodies up to this size are copied into the output buffer so header and body leave in one
/// write; larger ones are written from their shared buffer without a copy.
pub const BODY_COPY_BYTES_MAX: usize = 16 * 1024;

pub enum Body {
    Empty,
    Shared(Bytes),
    Owned(Vec<u8>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Shared(b) => b.len(),
            Body::Owned(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Response {
    pub status: u16,
    /// Complete `Name: value\r\n` lines, already validated.
    pub headers: Bytes,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
    /// HEAD and 304 send no body.
    pub omit_body: bool,
    /// Content-Length to announce when it is not the body's length (HEAD of an uncached file).
    pub content_length: Option<u64>,
}

impl Response {
    pub fn new(status: u16, headers: Bytes, body: Body) -> Response {
        Response {
            status,
            headers,
            body,
            close: false,
            omit_body: false,
            content_length: None,
        }
    }

    /// `{"id": ID, "message": MESSAGE}` with `application/json`, the error shape of the REST API
    /// (keys in that order, as the BoostServerTech clients expect).
    pub fn json_error(status: u16, id: &str, message: &str) -> Response {
        let body = serde_json::json!({ "id": id, "message": message }).to_string();
        Response::new(
            status,
            Bytes::from_static(b"Content-Type: application/json\r\nCache-Control: no-store\r\n"),
            Body::Owned(body.into_bytes()),
        )
    }
}

/// The Date header value, formatted at most once a second per core.
#[derive(Default)]
pub struct DateCache {
    second: Cell<u64>,
    text: Cell<[u8; 29]>,
}

impl DateCache {
    pub fn now(&self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second.get() || second == 0 {
            let mut text = [b' '; 29];
            let formatted = httpdate::fmt_http_date(now);
            let n = formatted.len().min(29);
            text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
            self.text.set(text);
            self.second.set(second);
        }
        self.text.get()
    }
}

/// How the connection continues after a response.
#[derive(Debug, Clone, Copy)]
pub enum Persistence {
    Close,
    KeepAlive { timeout_s: u64, remaining: u64 },
}

/// Appends the status line, headers and (small) body to `out`. Returns the body bytes that the
/// caller must still write itself (a large shared body), if any.
pub fn encode(
    response: Response,
    date: &[u8; 29],
    persistence: Persistence,
    out: &mut Vec<u8>,
) -> Option<Bytes> {
    encode_status_line(response.status, out);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.headers);
    // RFC 9110 §8.6: no Content-Length in 1xx and 204 responses; we send none in 304 either.
    if response.status >= 200 && response.status != 204 && response.status != 304 {
        let len = response
            .content_length
            .unwrap_or(response.body.len() as u64);
        let mut n = itoa::Buffer::new();
        let _ = encode_header("Content-Length", n.format(len).as_bytes(), out);
    }
    match persistence {
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Persistence::KeepAlive {
            timeout_s,
            remaining,
        } => {
            out.extend_from_slice(b"Keep-Alive: timeout=");
            let mut n = itoa::Buffer::new();
            out.extend_from_slice(n.format(timeout_s).as_bytes());
            out.extend_from_slice(b", max=");
            out.extend_from_slice(n.format(remaining).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if response.omit_body {
        return None;
    }
    match response.body {
        Body::Empty => None,
        Body::Owned(v) => {
            out.extend_from_slice(&v);
            None
        }
        Body::Shared(b) if b.len() <= BODY_COPY_BYTES_MAX => {
            out.extend_from_slice(&b);
            None
        }
        Body::Shared(b) => Some(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_keep_alive_response_with_body() {
        let mut out = Vec::new();
        let r = Response::new(
            200,
            Bytes::from_static(b"Content-Type: text/plain\r\n"),
            Body::Owned(b"hi".to_vec()),
        );
        let rest = encode(
            r,
            b"Tue, 24 Nov 2026 20:00:00 GMT",
            Persistence::KeepAlive {
                timeout_s: 5,
                remaining: 99,
            },
            &mut out,
        );
        assert!(rest.is_none());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Tue, 24 Nov 2026 20:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nKeep-Alive: timeout=5, max=99\r\n\r\nhi"
        );
    }

    #[test]
    fn head_and_304_keep_length_but_send_no_body() {
        let mut out = Vec::new();
        let mut r = Response::new(
            200,
            Bytes::new(),
            Body::Shared(Bytes::from(vec![b'x'; 100_000])),
        );
        r.omit_body = true;
        let rest = encode(
            r,
            b"Tue, 24 Nov 2026 20:00:00 GMT",
            Persistence::Close,
            &mut out,
        );
        assert!(rest.is_none());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 100000\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn large_shared_body_is_returned_not_copied() {
        let mut out = Vec::new();
        let body = Bytes::from(vec![b'x'; BODY_COPY_BYTES_MAX + 1]);
        let rest = encode(
            Response::new(200, Bytes::new(), Body::Shared(body.clone())),
            b"Tue, 24 Nov 2026 20:00:00 GMT",
            Persistence::Close,
            &mut out,
        );
        assert_eq!(rest.unwrap(), body);
        assert!(out.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn json_error_keeps_key_order() {
        let r = Response::json_error(404, "NOT_FOUND", "no such \"thing\"");
        let Body::Owned(body) = r.body else {
            panic!("owned body expected")
        };
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"id":"NOT_FOUND","message":"no such \"thing\""}"#
        );
    }

    #[test]
    fn date_is_imf_fixdate() {
        let d = DateCache::default().now();
        let s = std::str::from_utf8(&d).unwrap();
        assert!(s.ends_with(" GMT"), "{s}");
        assert!(httpdate::parse_http_date(s).is_ok());
    }
}
