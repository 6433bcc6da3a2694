//! The opening handshake, server side (RFC 6455 §4.2): deciding whether an HTTP/1.1 request
//! may become a WebSocket, checking its Origin, and encoding the 101 response head.
//!
//! [`check_upgrade`] reads a decoded [`RequestHead`] and answers [`Handshake::Accept`] with the
//! `Sec-WebSocket-Accept` value (computed by tungstenite's `derive_accept_key`), or
//! [`Handshake::Reject`] with the status, a reason and any header lines the refusal must carry.
//! [`origin_allowed`] is the Origin policy (`--allowed-origins`) on its own.
//!
//! It does not route (the caller has matched the path), read the body, build the refusal's
//! response (the server's JSON error responses do, adding the header lines given here), or
//! negotiate subprotocols or extensions: `Sec-WebSocket-Protocol` and
//! `Sec-WebSocket-Extensions` are ignored, and the 101 names neither, which RFC 6455 §4.2.2
//! allows ("null" for both) and browsers accept.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tungstenite::handshake::derive_accept_key;

use crate::proto::http1::{RequestHead, Version, encode_header, encode_status_line};

/// The only protocol version we speak (RFC 6455 §4.1: "The value of this header field MUST be
/// 13").
pub const WS_VERSION: &str = "13";

/// The decoded length of `Sec-WebSocket-Key` (RFC 6455 §4.1: "a randomly selected 16-byte
/// value that has been base64-encoded").
pub const WS_KEY_BYTES: usize = 16;

/// Which pages may open a WebSocket (`--allowed-origins`). A request without an Origin header
/// comes from a program, not a page (RFC 6455 §4.1: browsers always send it), and is allowed
/// whatever this says; Origin protects the users of browsers from other sites' pages, not the
/// server from arbitrary clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// The default: the Origin's host and port must be the request's Host, over `http` or
    /// `https`, so only pages the server itself served (same host) may connect.
    #[default]
    SameHost,
    /// Exactly these serialized origins (`https://chat.example.com`, no path, no trailing
    /// slash), compared ASCII-case-insensitively.
    List(Vec<String>),
    /// Any origin (`*`).
    Any,
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Switch protocols: write [`encode_accept`]'s head, then speak WebSocket.
    Accept {
        /// The `Sec-WebSocket-Accept` value.
        accept_key: String,
    },
    /// Refuse with this status; `headers` are complete `Name: value\r\n` lines the response must
    /// carry (`Sec-WebSocket-Version: 13` with 426, `Allow: GET` with 405), else empty.
    Reject {
        status: u16,
        reason: &'static str,
        headers: &'static [u8],
    },
}

fn reject(status: u16, reason: &'static str) -> Handshake {
    Handshake::Reject {
        status,
        reason,
        headers: b"",
    }
}

/// Decides an upgrade request, in the order of RFC 6455 §4.2.1's list, the Origin last.
pub fn check_upgrade(head: &RequestHead<'_>, allowed: &AllowedOrigins) -> Handshake {
    // RFC 6455 §4.2.1: "1. An HTTP/1.1 or higher GET request, including a "Request-URI"". A
    // request of another method names a resource that exists only for GET: 405.
    if head.method != "GET" {
        return Handshake::Reject {
            status: 405,
            reason: "a WebSocket upgrade must be a GET request",
            headers: b"Allow: GET\r\n",
        };
    }
    // RFC 6455 §4.2.1: "If the server, while reading the handshake, finds that the client did
    // not send a handshake that matches the description below [...], the server MUST stop
    // processing the client's handshake and return an HTTP response with an appropriate error
    // code (such as 400 Bad Request)."
    if head.version != Version::Http11 {
        return reject(400, "a WebSocket upgrade needs HTTP/1.1");
    }
    // RFC 6455 §4.2.1: "3. An |Upgrade| header field containing the value "websocket", treated
    // as an ASCII case-insensitive value."
    if !head.header_has_token("upgrade", "websocket") {
        return reject(400, "missing Upgrade: websocket");
    }
    // RFC 6455 §4.2.1: "4. A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value."
    if !head.header_has_token("connection", "upgrade") {
        return reject(400, "missing Connection: Upgrade");
    }
    // RFC 6455 §4.4: "If this version does not match a version understood by the server, the
    // server MUST abort the WebSocket handshake described in this section and instead send an
    // appropriate HTTP error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version|
    // header field indicating the version(s) the server is capable of understanding." A
    // missing version gets the same answer, which tells the client what to send.
    let mut versions = fields(head, "sec-websocket-version");
    if versions.next() != Some(WS_VERSION.as_bytes()) || versions.next().is_some() {
        return Handshake::Reject {
            status: 426,
            reason: "unsupported WebSocket version; use 13",
            headers: b"Sec-WebSocket-Version: 13\r\n",
        };
    }
    // RFC 6455 §4.2.1: "5. A |Sec-WebSocket-Key| header field with a base64-encoded (see
    // Section 4 of [RFC4648]) value that, when decoded, is 16 bytes in length." and §11.3.1:
    // "The |Sec-WebSocket-Key| header field MUST NOT appear more than once in an HTTP request."
    let mut keys = fields(head, "sec-websocket-key");
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return reject(400, "need exactly one Sec-WebSocket-Key");
    };
    if !key_is_valid(key) {
        return reject(400, "Sec-WebSocket-Key is not base64 of 16 bytes");
    }
    // RFC 6455 §4.2.2: "If the server does not wish to accept this connection, it MUST return
    // an appropriate HTTP error code (e.g., 403 Forbidden) and abort the WebSocket handshake".
    // Two Origin lines could be read two ways; a browser sends one.
    let mut origins = fields(head, "origin");
    let (origin, None) = (origins.next(), origins.next()) else {
        return reject(400, "more than one Origin header field");
    };
    if !origin_allowed(origin, head.header("host"), allowed) {
        return reject(403, "origin not allowed");
    }
    Handshake::Accept {
        // RFC 6455 §4.2.2: "concatenate this with the Globally Unique Identifier [...] take the
        // SHA-1 hash of this concatenated value to obtain a 20-byte value and base64-encode".
        accept_key: derive_accept_key(key),
    }
}

/// The values of every field line named `name`.
fn fields<'h, 'b>(
    head: &'h RequestHead<'b>,
    name: &'static str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    head.headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Canonical base64 (padding required, no stray bits) of exactly [`WS_KEY_BYTES`] bytes.
fn key_is_valid(key: &[u8]) -> bool {
    // 16 bytes are 24 base64 characters with "==": checked first, so nothing long is decoded.
    key.len() == 24
        && STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == WS_KEY_BYTES)
}

/// Appends the 101 response head that completes the handshake (RFC 6455 §4.2.2, item 5),
/// blank line included.
pub fn encode_accept(accept_key: &str, out: &mut Vec<u8>) {
    encode_status_line(101, out);
    // Fixed values and base64: none holds CR, LF or NUL.
    for (name, value) in [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key),
    ] {
        encode_header(name, value.as_bytes(), out).expect("base64 and fixed values are safe");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a page of `origin` (the Origin header, `None` when absent) may open a WebSocket on
/// a request whose Host header is `host`.
///
/// RFC 6455 §10.2: "The |Origin| header field [...] is used to protect against unauthorized
/// cross-origin use of a WebSocket server by scripts using the WebSocket API in a web browser.
/// [...] servers that are not intended to process input from any web page but only for certain
/// sites SHOULD verify the |Origin| field is an origin they expect." Under
/// [`AllowedOrigins::SameHost`] an absent port is the scheme's default on both sides, so
/// `Origin: https://chat.example.com` matches `Host: chat.example.com:443`; `null` (a
/// sandboxed or `file:` page) and anything but `http`/`https` never match.
pub fn origin_allowed(
    origin: Option<&[u8]>,
    host: Option<&[u8]>,
    allowed: &AllowedOrigins,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    match allowed {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => list
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin)),
        AllowedOrigins::SameHost => {
            let (Some((scheme, origin_host, origin_port)), Some((host, host_port))) =
                (parse_origin(origin), host.and_then(split_host_port))
            else {
                return false;
            };
            let default_port = if scheme.eq_ignore_ascii_case(b"https") {
                443
            } else {
                80
            };
            origin_host.eq_ignore_ascii_case(host)
                && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
        }
    }
}

/// RFC 6454 §7.1: "serialized-origin = scheme "://" host [ ":" port ]", for `http` and `https`
/// only: (scheme, host, port).
fn parse_origin(origin: &[u8]) -> Option<(&[u8], &[u8], Option<u16>)> {
    let at = origin.windows(3).position(|w| w == b"://")?;
    let scheme = &origin[..at];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let (host, port) = split_host_port(&origin[at + 3..])?;
    Some((scheme, host, port))
}

/// RFC 9110 §7.2: "Host = uri-host [ ":" port ]", with an IPv6 literal in brackets. Refuses
/// anything with a path, userinfo, query or fragment, and an empty host or port.
fn split_host_port(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if authority
        .iter()
        .any(|&b| matches!(b, b'/' | b'?' | b'#' | b'@') || !b.is_ascii_graphic())
    {
        return None;
    }
    let (host, port) = if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        match &authority[close + 1..] {
            [] => (&authority[..=close], None),
            [b':', port @ ..] => (&authority[..=close], Some(port)),
            _ => return None,
        }
    } else {
        match authority.iter().position(|&b| b == b':') {
            None => (authority, None),
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) => {
            // RFC 3986 §3.2.3: "port = *DIGIT"; we want one that fits a TCP port.
            if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let value = digits
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(value).ok()?)
        }
    };
    Some((host, port))
}
