//! The one test client for ringchat's chat, shared by both crates' tests: account sign-up over
//! REST (`Connection: close`, reply read to EOF), and a raw WebSocket client (the upgrade, masked
//! frames out, unmasked frames in, pings skipped) speaking the chat events as JSON.
//!
//! Used by the root crate's integration tests (through `tests/common`: tests/chat.rs,
//! tests/line.rs, tests/ws_echo.rs) and by proto-tests (tests/chat_redis.rs and the library's
//! src/chat_clients.rs include this file with `#[path]`).
//! So it depends on nothing but std and serde_json, which every one of those targets has;
//! never on `super::` (the root harness) or on `ringchat_proto_tests`. A server is reached
//! through [`Endpoint`]: a bare [`SocketAddr`], or the root harness's `Server`
//! (tests/common/mod.rs implements it with its own deadlines).
//!
//! Not a general WebSocket client: no fragmentation or control frames sent other than what a
//! test writes itself, and a masked server frame is an error.

// Each test target uses part of it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// The password [`sign_up`] gives every account.
pub const PASSWORD: &str = "0123456789";

/// The `Sec-WebSocket-Key` every upgrade sends and the `Sec-WebSocket-Accept` that answers it:
/// the example of RFC 6455 §1.3.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Connect, read and write deadline of a socket opened from a bare [`SocketAddr`] (proto-tests'
/// servers share the machine with redis-server and MariaDB, and with each other).
pub const SOCKET_DEADLINE: Duration = Duration::from_secs(30);

/// Where the server under test listens, and how to open a socket to it with the caller's
/// deadlines.
pub trait Endpoint {
    fn addr(&self) -> SocketAddr;
    fn connect(&self) -> TcpStream;
}

impl Endpoint for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(self, SOCKET_DEADLINE)
            .unwrap_or_else(|e| panic!("connect {self}: {e}"));
        s.set_read_timeout(Some(SOCKET_DEADLINE)).unwrap();
        s.set_write_timeout(Some(SOCKET_DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

impl<T: Endpoint + ?Sized> Endpoint for &T {
    fn addr(&self) -> SocketAddr {
        (**self).addr()
    }

    fn connect(&self) -> TcpStream {
        (**self).connect()
    }
}

// ---------------------------------------------------------------------------------------------
// REST.

/// A reply, read to EOF.
struct Reply {
    status: u16,
    /// The `sid=...` part of `Set-Cookie`; empty when none was set.
    cookie: String,
    /// The whole reply, for failure messages.
    text: String,
}

/// A `POST` of a JSON body on a fresh connection.
fn exchange(to: impl Endpoint, path: &str, body: &Value) -> Reply {
    let body = body.to_string();
    let mut s = to.connect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let text = String::from_utf8_lossy(&reply).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("POST {path}: no status in {text:?}"));
    let cookie = head
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or_default().to_string())
        })
        .unwrap_or_default();
    Reply {
        status,
        cookie,
        text,
    }
}

/// A `POST` of a JSON body; returns the status and the `sid=...` cookie it set (empty when
/// none).
pub fn post_json(to: impl Endpoint, path: &str, body: &Value) -> (u16, String) {
    let reply = exchange(to, path, body);
    (reply.status, reply.cookie)
}

/// Creates an account `name` with email `name@example.com` and [`PASSWORD`]; returns its
/// `sid=...` cookie.
pub fn sign_up(to: impl Endpoint, name: &str) -> String {
    sign_up_with(to, name, &format!("{name}@example.com"), PASSWORD)
}

/// Creates an account; returns its `sid=...` cookie.
pub fn sign_up_with(to: impl Endpoint, username: &str, email: &str, password: &str) -> String {
    let reply = exchange(
        to,
        "/api/create-account",
        &serde_json::json!({"username": username, "email": email, "password": password}),
    );
    assert_eq!(reply.status, 204, "sign-up of {username:?}: {}", reply.text);
    assert!(
        reply.cookie.starts_with("sid="),
        "sign-up of {username:?}: no session cookie: {}",
        reply.text
    );
    reply.cookie
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames and the upgrade.

/// An upgrade request for `path`; `headers` are whole lines (each ending in CRLF) added to it.
pub fn upgrade_request(host: SocketAddr, path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// A response head, up to and including the blank line; no more is read.
pub fn read_head(r: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF in head: {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// One client frame: masked, as RFC 6455 §5.1 requires of every frame a client sends.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One server frame: (fin, opcode, payload). "A server MUST NOT mask any frames that it sends
/// to the client" (RFC 6455 §5.1), so a masked one is an error.
pub fn read_frame(r: &mut impl Read) -> io::Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    if h[1] & 0x80 != 0 {
        return Err(io::Error::other("a masked frame from the server"));
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

// ---------------------------------------------------------------------------------------------
// The chat over WebSocket.

/// A chat WebSocket (`/api/ws`), blocking, with the endpoint's deadlines.
pub struct Ws {
    pub s: TcpStream,
}

impl Ws {
    /// Upgrades with the session cookie, if any.
    pub fn open(to: impl Endpoint, cookie: Option<&str>) -> Ws {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        Self::upgrade(to, "/api/ws", &cookie).0
    }

    /// Upgrades `path` with `headers` added (see [`upgrade_request`]); panics unless the answer
    /// is 101. Returns the socket and the response head.
    pub fn upgrade(to: impl Endpoint, path: &str, headers: &str) -> (Ws, String) {
        let addr = to.addr();
        let mut s = to.connect();
        s.write_all(upgrade_request(addr, path, headers).as_bytes())
            .unwrap_or_else(|e| panic!("{addr}: upgrade: {e}"));
        let head = read_head(&mut s).unwrap_or_else(|e| panic!("{addr}: upgrade: {e}"));
        assert!(head.starts_with("HTTP/1.1 101 "), "{addr}: {head}");
        (Ws { s }, head)
    }

    /// Sends one masked text frame.
    pub fn send(&mut self, text: &str) {
        self.s
            .write_all(&masked_frame(true, 1, text.as_bytes()))
            .unwrap();
    }

    /// The next frame: (opcode, payload); pings are skipped.
    pub fn frame(&mut self) -> (u8, Vec<u8>) {
        self.try_frame().unwrap()
    }

    /// [`Ws::frame`], or the error that ended the connection.
    pub fn try_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            let (_, op, payload) = read_frame(&mut self.s)?;
            if op != 9 {
                return Ok((op, payload));
            }
        }
    }

    /// The next event (a text frame holding JSON).
    pub fn event(&mut self) -> Value {
        let (op, payload) = self.frame();
        assert_eq!(op, 1, "expected a text frame, got opcode {op}: {payload:?}");
        serde_json::from_slice(&payload).unwrap()
    }
}

/// Posts one message to `room` with a `clientMessages` event.
pub fn post(ws: &mut Ws, room: &str, content: &str) {
    ws.send(
        &serde_json::json!({"type":"clientMessages","payload":{"roomId":room,"messages":[{"content":content}]}})
            .to_string(),
    );
}

/// A message id `<ms>-<seq>` as a pair, for comparing.
pub fn id_key(id: &str) -> (u64, u64) {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("bad message id {id:?}"))
}
