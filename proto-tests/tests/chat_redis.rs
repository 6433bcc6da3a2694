//! The chat over WebSocket against the real binary with MariaDB for users and Redis for sessions
//! and history: messages acknowledged in post order with increasing ids, stored as the reference
//! stores them (one stream per room, entries `payload <json>`), and history plus the session
//! surviving a restart of ringchat (the first page in `hello`, the rest by `requestRoomHistory`).
//! A bogus session cookie is closed with 1008.
//!
//! This crate has no JSON library, so a small reader for the server's events is written here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use ringchat_proto_tests::{MariaDb, Redis, Ringchat};

const IO_DEADLINE: Duration = Duration::from_secs(30);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_DEADLINE)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_write_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Creates an account; returns its `sid=...` cookie.
fn sign_up(addr: SocketAddr, name: &str) -> String {
    let body =
        format!(r#"{{"username":"{name}","email":"{name}@example.com","password":"0123456789"}}"#);
    let mut s = connect(addr);
    write!(
        s,
        "POST /api/create-account HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 204 "), "sign-up: {text}");
    let cookie = text
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("set-cookie").then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no Set-Cookie: {text}"));
    let sid = cookie.split(';').next().unwrap().to_string();
    assert!(sid.starts_with("sid="), "{cookie}");
    sid
}

struct Ws {
    s: TcpStream,
}

impl Ws {
    fn open(addr: SocketAddr, cookie: Option<&str>) -> Ws {
        let mut s = connect(addr);
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        write!(
            s,
            "GET /api/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{cookie}\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Ws { s }
    }

    fn send(&mut self, text: &str) {
        let mask = [1u8, 2, 3, 4];
        let payload = text.as_bytes();
        let mut out = vec![0x81];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&out).unwrap();
    }

    /// The next frame: (opcode, payload); pings are skipped.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
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

    fn event(&mut self) -> Value {
        let (op, payload) = self.frame();
        assert_eq!(op, 1, "expected a text frame, got opcode {op}: {payload:?}");
        serde_json::from_slice(&payload).unwrap()
    }
}

/// A message id `<ms>-<seq>` as a pair, for comparing.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("bad id {id:?}"));
    (
        ms.parse().unwrap_or_else(|_| panic!("bad id {id:?}")),
        seq.parse().unwrap_or_else(|_| panic!("bad id {id:?}")),
    )
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

/// The bulk strings of a RESP reply, in order (nesting flattened).
fn bulk_strings(reply: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < reply.len() {
        let end = i + reply[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("truncated reply {:?}", String::from_utf8_lossy(reply)));
        let line = &reply[i..end];
        i = end + 2;
        match line.first() {
            Some(b'$') => {
                let len: usize = std::str::from_utf8(&line[1..]).unwrap().parse().unwrap();
                out.push(String::from_utf8(reply[i..i + len].to_vec()).unwrap());
                i += len + 2;
            }
            Some(b'*') => {}
            _ => panic!("unexpected reply {:?}", String::from_utf8_lossy(reply)),
        }
    }
    out
}

const ROOMS: [&str; 4] = ["beast", "async", "db", "wasm"];
const N: usize = 120;

#[test]
fn chat_history_survives_a_restart_on_redis_and_mariadb() {
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let (mysql_url, redis_url) = (mariadb.url(), redis.url());
    let mut server = Ringchat::start(&[
        "--redis",
        &redis_url,
        "--mysql",
        &mysql_url,
        "--threads",
        "2",
    ]);

    let cookie = sign_up(server.addr, "erin1");
    let mut ws = Ws::open(server.addr, Some(&cookie));
    let hello = ws.event();
    assert_eq!(hello["type"], "hello", "{hello:?}");
    let rooms: Vec<&str> = hello["payload"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ROOMS);
    assert!(
        hello["payload"]["rooms"][2]["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let me = hello["payload"]["me"].clone();
    assert_eq!(me["username"].as_str().unwrap(), "erin1");
    let my_id = me["id"].as_i64().expect("me.id is an integer");

    for i in 0..N {
        ws.send(&format!(
            r#"{{"type":"clientMessages","payload":{{"roomId":"db","messages":[{{"content":"n{i}"}}]}}}}"#
        ));
    }
    // Acknowledged by the broadcasts; posts that arrive together may share one event.
    let mut acked: Vec<Value> = Vec::new();
    while acked.len() < N {
        let ev = ws.event();
        assert_eq!(ev["type"], "serverMessages", "{ev:?}");
        assert_eq!(ev["payload"]["roomId"].as_str().unwrap(), "db");
        acked.extend(
            ev["payload"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    assert_eq!(acked.len(), N);
    let expected: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    assert_eq!(contents(&acked), expected, "acknowledged in post order");
    for pair in acked.windows(2) {
        assert!(
            id_key(pair[0]["id"].as_str().unwrap()) < id_key(pair[1]["id"].as_str().unwrap()),
            "ids not increasing: {:?} then {:?}",
            pair[0]["id"],
            pair[1]["id"]
        );
    }
    for m in &acked {
        assert_eq!(m["user"]["username"].as_str().unwrap(), "erin1");
    }

    // The data model, from the outside: stream `db`, entries `payload <json>`.
    let xlen = redis.raw("XLEN db");
    assert_eq!(
        xlen,
        format!(":{N}\r\n").as_bytes(),
        "{:?}",
        String::from_utf8_lossy(&xlen)
    );
    let first = bulk_strings(&redis.raw("XRANGE db - + COUNT 1"));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(
        first[0],
        acked[0]["id"].as_str().unwrap(),
        "the stream id is the message id"
    );
    assert_eq!(first[1], "payload");
    // The reference's keys, in its order.
    assert!(
        first[2].starts_with(r#"{"content":"n0","timestamp":"#)
            && first[2].contains(r#","user_id":"#),
        "{}",
        first[2]
    );
    let payload: Value = serde_json::from_str(&first[2]).unwrap();
    assert_eq!(payload.as_object().unwrap().len(), 3, "{}", first[2]);
    assert_eq!(payload["content"].as_str().unwrap(), "n0");
    assert!(payload["timestamp"].is_u64(), "{}", first[2]);
    assert_eq!(payload["user_id"].as_i64(), Some(my_id), "{}", first[2]);
    assert_eq!(redis.raw("TYPE db"), b"+stream\r\n");

    drop(ws);
    server.restart();

    // The session lives in Redis, so the old cookie still works.
    let mut ws = Ws::open(server.addr, Some(&cookie));
    let hello = ws.event();
    assert_eq!(hello["type"], "hello", "{hello:?}");
    assert_eq!(
        hello["payload"]["me"]["username"].as_str().unwrap(),
        "erin1"
    );
    let db = &hello["payload"]["rooms"][2];
    assert_eq!(db["id"].as_str().unwrap(), "db");
    let page = db["messages"].as_array().unwrap();
    let newest: Vec<String> = (20..N).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(
        contents(page),
        newest,
        "hello: the newest 100, newest first"
    );
    assert_eq!(db["hasMoreMessages"], true);
    for (m, sent) in page.iter().zip(acked.iter().rev()) {
        assert_eq!(m["id"], sent["id"], "ids survive the restart");
    }
    let oldest = page.last().unwrap()["id"].as_str().unwrap().to_string();
    ws.send(&format!(
        r#"{{"type":"requestRoomHistory","payload":{{"roomId":"db","firstMessageId":"{oldest}"}}}}"#
    ));
    let ev = ws.event();
    assert_eq!(ev["type"], "roomHistory", "{ev:?}");
    assert_eq!(ev["payload"]["roomId"].as_str().unwrap(), "db");
    let rest: Vec<String> = (0..20).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(
        contents(ev["payload"]["messages"].as_array().unwrap()),
        rest
    );
    assert_eq!(ev["payload"]["hasMoreMessages"], false);

    // A session Redis does not know is closed with 1008 (policy violation).
    let mut bogus = Ws::open(server.addr, Some("sid=AAAAAAAAAAAAAAAAAAAAAA=="));
    let (op, payload) = bogus.frame();
    assert_eq!(op, 8, "expected a close frame: {payload:?}");
    assert!(payload.len() >= 2, "close without a code");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);

    drop(ws);
    drop(server);
}
