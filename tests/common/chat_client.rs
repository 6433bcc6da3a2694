//! A chat client for the integration tests: account sign-up over REST and a raw WebSocket
//! client (masked text frames out, unmasked frames in, pings skipped) speaking the chat events.
//! Shared by tests/chat.rs and tests/line.rs. Not a general WebSocket client: no fragmentation,
//! no control frames sent other than what a test writes itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::Server;

/// The password [`sign_up`] gives every account.
pub const PASSWORD: &str = "0123456789";

/// Sends one request on a fresh connection; returns the status and the `sid=...` cookie it set
/// (empty when none).
pub fn http(server: &Server, request: &str) -> (u16, String) {
    let mut s = server.connect();
    s.write_all(request.as_bytes()).unwrap();
    let resp = super::read_response(&mut s, false).unwrap();
    let cookie = resp
        .header("set-cookie")
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap_or_default();
    (resp.status, cookie)
}

/// A `POST` of a JSON body; returns what [`http`] returns.
pub fn post_json(server: &Server, path: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    http(
        server,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Creates an account `name` with email `name@example.com` and [`PASSWORD`]; returns its
/// `sid=...` cookie.
pub fn sign_up(server: &Server, name: &str) -> String {
    sign_up_with(server, name, &format!("{name}@example.com"), PASSWORD)
}

/// Creates an account; returns its `sid=...` cookie.
pub fn sign_up_with(server: &Server, username: &str, email: &str, password: &str) -> String {
    let (status, cookie) = post_json(
        server,
        "/api/create-account",
        &serde_json::json!({"username": username, "email": email, "password": password}),
    );
    assert_eq!(status, 204, "sign-up of {username:?}");
    cookie
}

pub struct Ws {
    pub s: TcpStream,
}

impl Ws {
    pub fn open(server: &Server, cookie: Option<&str>) -> Ws {
        let mut s = server.connect();
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        write!(
            s,
            "GET /api/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{cookie}\r\n",
            server.addr
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Ws { s }
    }

    /// Sends one masked text frame.
    pub fn send(&mut self, text: &str) {
        let mask = [1u8, 2, 3, 4];
        let payload = text.as_bytes();
        let mut out = vec![0x81];
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
        self.s.write_all(&out).unwrap();
    }

    /// The next frame: (opcode, payload); pings are skipped.
    pub fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.s.read_exact(&mut b).unwrap();
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.s.read_exact(&mut b).unwrap();
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload).unwrap();
            if h[0] & 0x0f != 9 {
                return (h[0] & 0x0f, payload);
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
