//! The chat over WebSocket against the real binary with the embedded store, with 2 and 4 worker
//! threads: authentication by the session cookie (close 1008 without one), `hello` first with
//! each room's newest messages, every message delivered to every connection (on every core)
//! exactly once and in one order, the sender's acknowledgement being its broadcast, error events
//! that keep the connection, history pagination back to the first message, and history that
//! survives a restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::chat_client::{Ws, post, sign_up};
use serde_json::Value;

fn delivery_is_total_and_ordered(threads: &str) {
    let server = Server::start("uring", &["--threads", threads]);
    let alice = sign_up(&server, "alice");
    let bob = sign_up(&server, "bobby");
    // Enough connections that every core holds some (SO_REUSEPORT spreads them).
    let mut conns: Vec<Ws> = (0..12usize)
        .map(|i| {
            Ws::open(
                &server,
                Some(if i.is_multiple_of(2) { &alice } else { &bob }),
            )
        })
        .collect();
    for ws in &mut conns {
        let hello = ws.event();
        assert_eq!(hello["type"], "hello");
        let rooms: Vec<&str> = hello["payload"]["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(rooms, ["beast", "async", "db", "wasm"]);
    }
    // Every connection posts to two rooms owned by different cores.
    const PER_CONN: usize = 10;
    for round in 0..PER_CONN {
        for (i, ws) in conns.iter_mut().enumerate() {
            let room = if (i + round).is_multiple_of(2) {
                "beast"
            } else {
                "async"
            };
            post(ws, room, &format!("c{i}-m{round}"));
        }
    }
    let total = conns.len() * PER_CONN;
    let mut orders: Vec<Vec<(String, String)>> = Vec::new();
    for ws in &mut conns {
        let mut seen = Vec::new();
        while seen.len() < total {
            let ev = ws.event();
            assert_eq!(ev["type"], "serverMessages", "{ev}");
            let room = ev["payload"]["roomId"].as_str().unwrap().to_string();
            for m in ev["payload"]["messages"].as_array().unwrap() {
                seen.push((room.clone(), m["content"].as_str().unwrap().to_string()));
                let user = m["user"]["username"].as_str().unwrap();
                let idx: usize = m["content"].as_str().unwrap()[1..]
                    .split('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(
                    user,
                    if idx.is_multiple_of(2) {
                        "alice"
                    } else {
                        "bobby"
                    }
                );
            }
        }
        assert_eq!(seen.len(), total, "exactly once");
        orders.push(seen);
    }
    // Per room, every connection saw the same order.
    for room in ["beast", "async"] {
        let of = |o: &Vec<(String, String)>| -> Vec<String> {
            o.iter()
                .filter(|(r, _)| r == room)
                .map(|(_, c)| c.clone())
                .collect()
        };
        let first = of(&orders[0]);
        assert_eq!(first.len(), total / 2);
        for o in &orders[1..] {
            assert_eq!(of(o), first, "room {room}: orders differ");
        }
    }
    // A new connection's hello shows the newest 100 of beast, newest first, and more exist? No:
    // 60 were posted there, so hasMoreMessages is false.
    let mut late = Ws::open(&server, Some(&alice));
    let hello = late.event();
    let beast = &hello["payload"]["rooms"][0];
    assert_eq!(beast["messages"].as_array().unwrap().len(), total / 2);
    assert_eq!(beast["hasMoreMessages"], false);
    let newest_first: Vec<String> = beast["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    let seen_beast: Vec<String> = orders[0]
        .iter()
        .filter(|(r, _)| r == "beast")
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(newest_first, seen_beast, "history is the broadcast order");
}

#[test]
fn delivery_is_total_and_ordered_on_2_cores() {
    delivery_is_total_and_ordered("2");
}

#[test]
fn delivery_is_total_and_ordered_on_4_cores() {
    delivery_is_total_and_ordered("4");
}

#[test]
fn no_session_closes_with_1008() {
    let server = Server::start("epoll", &[]);
    for cookie in [None, Some("sid=AAAAAAAAAAAAAAAAAAAAAA==")] {
        let mut ws = Ws::open(&server, cookie);
        let (op, payload) = ws.frame();
        assert_eq!(op, 8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    }
}

#[test]
fn bad_events_get_error_events_and_the_connection_stays() {
    let server = Server::start("epoll", &["--max-message-chars", "10"]);
    let cookie = sign_up(&server, "carol");
    let mut ws = Ws::open(&server, Some(&cookie));
    assert_eq!(ws.event()["type"], "hello");
    for (text, id) in [
        ("nope", "INVALID_JSON"),
        (r#"{"type":"dance","payload":{}}"#, "UNKNOWN_TYPE"),
        (
            r#"{"type":"clientMessages","payload":{"roomId":"zzz","messages":[{"content":"x"}]}}"#,
            "UNKNOWN_ROOM",
        ),
        (
            r#"{"type":"clientMessages","payload":{"roomId":"db","messages":[{"content":" "}]}}"#,
            "EMPTY_CONTENT",
        ),
        (
            r#"{"type":"clientMessages","payload":{"roomId":"db","messages":[{"content":"12345678901"}]}}"#,
            "CONTENT_TOO_LONG",
        ),
        (
            r#"{"type":"requestRoomHistory","payload":{"roomId":"db","firstMessageId":"x"}}"#,
            "BAD_MESSAGE_ID",
        ),
    ] {
        ws.send(text);
        let ev = ws.event();
        assert_eq!(ev["type"], "error", "{text}");
        assert_eq!(ev["payload"]["id"], id, "{text}");
    }
    post(&mut ws, "db", "still here");
    let ev = ws.event();
    assert_eq!(ev["type"], "serverMessages");
    assert_eq!(ev["payload"]["messages"][0]["content"], "still here");
}

#[test]
fn history_pages_back_to_the_first_message_and_survives_a_restart() {
    let mut server = Server::start("uring", &["--threads", "2"]);
    let cookie = sign_up(&server, "dave1");
    let mut ws = Ws::open(&server, Some(&cookie));
    assert_eq!(ws.event()["type"], "hello");
    const N: usize = 1000;
    for i in 0..N {
        post(&mut ws, "wasm", &format!("n{i}"));
    }
    // Acknowledged by the broadcasts (posts that arrive together may share one event).
    let mut acked = 0;
    while acked < N {
        let ev = ws.event();
        assert_eq!(ev["type"], "serverMessages");
        acked += ev["payload"]["messages"].as_array().unwrap().len();
    }
    assert_eq!(acked, N);
    drop(ws);
    server.signal(libc_sigterm());
    server.wait_exit(Duration::from_secs(10));
    let data_dir = server.data_dir.path().to_str().unwrap().to_string();
    let server = Server::start("epoll", &["--threads", "2", "--data-dir", &data_dir]);
    // The old session survives the restart too.
    let mut ws = Ws::open(&server, Some(&cookie));
    let hello = ws.event();
    let all = whole_history(&mut ws, &hello, "wasm");
    let expected: Vec<String> = (0..N).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(all, expected, "no gap, no duplicate, newest first");
}

/// Every message of `room`, newest first: the `hello` page, then `requestRoomHistory` back to
/// an empty page, which must say there is no more.
fn whole_history(ws: &mut Ws, hello: &Value, room: &str) -> Vec<String> {
    let rooms = hello["payload"]["rooms"].as_array().unwrap();
    let first = rooms.iter().find(|r| r["id"] == room).unwrap();
    let mut all: Vec<String> = Vec::new();
    let mut page: Vec<Value> = first["messages"].as_array().unwrap().clone();
    while let Some(oldest) = page.last() {
        all.extend(
            page.iter()
                .map(|m| m["content"].as_str().unwrap().to_string()),
        );
        let oldest = oldest["id"].as_str().unwrap().to_string();
        ws.send(&format!(
            r#"{{"type":"requestRoomHistory","payload":{{"roomId":"{room}","firstMessageId":"{oldest}"}}}}"#
        ));
        let ev = ws.event();
        assert_eq!(ev["type"], "roomHistory");
        page = ev["payload"]["messages"].as_array().unwrap().clone();
        if page.is_empty() {
            assert_eq!(ev["payload"]["hasMoreMessages"], false);
        }
    }
    all
}

/// `--room-retention 150`: a room sent 400 messages keeps its newest 150 and history ends there;
/// a room sent fewer keeps them all.
#[test]
fn room_retention_keeps_the_newest_messages() {
    let server = Server::start("uring", &["--threads", "2", "--room-retention", "150"]);
    let cookie = sign_up(&server, "rita1");
    let mut ws = Ws::open(&server, Some(&cookie));
    assert_eq!(ws.event()["type"], "hello");
    let sent = [("wasm", 400), ("db", 20)];
    for (room, n) in sent {
        for i in 0..n {
            post(&mut ws, room, &format!("{room}{i}"));
        }
    }
    let mut acked = 0;
    while acked < 420 {
        let ev = ws.event();
        assert_eq!(ev["type"], "serverMessages");
        acked += ev["payload"]["messages"].as_array().unwrap().len();
    }
    let mut late = Ws::open(&server, Some(&cookie));
    let hello = late.event();
    let expected: Vec<String> = (250..400).rev().map(|i| format!("wasm{i}")).collect();
    assert_eq!(whole_history(&mut late, &hello, "wasm"), expected);
    let expected: Vec<String> = (0..20).rev().map(|i| format!("db{i}")).collect();
    assert_eq!(whole_history(&mut late, &hello, "db"), expected);
}

#[test]
fn a_slow_consumer_is_closed_while_the_others_keep_pace() {
    let server = Server::start("epoll", &["--threads", "2", "--max-message-chars", "60000"]);
    let cookie = sign_up(&server, "erin1");
    let mut slow = Ws::open(&server, Some(&cookie));
    let mut fast: Vec<Ws> = (0..3).map(|_| Ws::open(&server, Some(&cookie))).collect();
    assert_eq!(slow.event()["type"], "hello");
    for ws in &mut fast {
        assert_eq!(ws.event()["type"], "hello");
    }
    // The fast ones post and read; the slow one never reads. Each message is ~60 KB: the slow
    // one's kernel buffers (a few MB on loopback) fill, then its outbox (16 × 64 KiB).
    let content = "x".repeat(60_000);
    let mut received = vec![0usize; fast.len()];
    const MESSAGES: usize = 400;
    for i in 0..MESSAGES {
        let sender = i % fast.len();
        post(&mut fast[sender], "beast", &content);
        for (k, ws) in fast.iter_mut().enumerate() {
            while received[k] <= i {
                let ev = ws.event();
                assert_eq!(ev["type"], "serverMessages");
                received[k] += ev["payload"]["messages"].as_array().unwrap().len();
            }
        }
    }
    assert!(received.iter().all(|&n| n == MESSAGES), "{received:?}");
    // Now the slow one reads: its backlog, then the end. The server closed with 1008 "slow
    // consumer" and, since the write of that frame was stuck behind the unread backlog, shut the
    // socket down within SLOW_CONSUMER_CLOSE_WITHIN_MS instead of waiting out the send timeout:
    // the close frame arrives only if it fit in the socket's buffers before that.
    let mut frames = 0;
    loop {
        match slow.try_frame() {
            Ok((8, close)) => {
                assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1008);
                assert_eq!(&close[2..], b"slow consumer");
                break;
            }
            Ok((op, _)) => {
                assert_eq!(op, 1, "only text frames before the close");
                frames += 1;
            }
            // Cut mid-frame, or at a frame boundary: the backlog ends without the close frame.
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ),
                    "{e}"
                );
                break;
            }
        }
    }
    assert!(
        frames < MESSAGES,
        "the slow consumer got {frames} of {MESSAGES}: it was not cut"
    );
    // /metrics counts the cut, and the chat connections registered in the rooms are the three
    // fast ones, then none once they hang up: the cut one left nothing behind.
    assert_eq!(
        server.metric("ringchat_websocket_slow_consumers_total{core=\"all\"}"),
        1
    );
    assert_eq!(server.metric("ringchat_chat_connections{core=\"all\"}"), 3);
    drop(fast);
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("ringchat_chat_connections{core=\"all\"}") != 0 {
        assert!(
            Instant::now() < deadline,
            "chat connections left registered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hello_comes_first_and_joins_the_stream_without_gap_or_duplicate() {
    let server = Server::start("uring", &["--threads", "2"]);
    let cookie = sign_up(&server, "frank");
    const N: usize = 300;
    // One client posts while others connect: each newcomer's hello must come first, and its
    // broadcasts must continue exactly after the newest message its hello showed.
    let mut poster = Ws::open(&server, Some(&cookie));
    assert_eq!(poster.event()["type"], "hello");
    let posting = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for i in 0..N {
            post(&mut poster, "beast", &format!("p{i}"));
            while ids.len() <= i {
                let ev = poster.event();
                for m in ev["payload"]["messages"].as_array().unwrap() {
                    ids.push(m["id"].as_str().unwrap().to_string());
                }
            }
        }
        ids
    });
    let mut joined = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(15));
        let mut ws = Ws::open(&server, Some(&cookie));
        let hello = ws.event();
        assert_eq!(hello["type"], "hello", "the first event is hello: {hello}");
        let newest = hello["payload"]["rooms"][0]["messages"][0]["id"]
            .as_str()
            .map(str::to_string);
        joined.push((ws, newest));
    }
    let all = posting.join().unwrap();
    let key = |id: &str| {
        let (a, b) = id.split_once('-').unwrap();
        (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap())
    };
    for (mut ws, newest) in joined {
        let expected: Vec<String> = all
            .iter()
            .filter(|id| newest.as_deref().is_none_or(|n| key(id) > key(n)))
            .cloned()
            .collect();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let ev = ws.event();
            assert_eq!(ev["type"], "serverMessages", "{ev}");
            for m in ev["payload"]["messages"].as_array().unwrap() {
                got.push(m["id"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(
            got, expected,
            "after hello: every later message once, in order"
        );
    }
}

#[test]
fn shutdown_says_going_away_and_does_not_wait_for_clients() {
    let mut server = Server::start("uring", &["--threads", "2"]);
    let cookie = sign_up(&server, "gina1");
    let mut conns: Vec<Ws> = (0..4).map(|_| Ws::open(&server, Some(&cookie))).collect();
    for ws in &mut conns {
        assert_eq!(ws.event()["type"], "hello");
    }
    server.signal(libc_sigterm());
    for ws in &mut conns {
        let (op, payload) = ws.frame();
        assert_eq!(op, 8, "a close frame");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        // Answer the close, as browsers do.
        let mut close = vec![0x88, 0x82, 0, 0, 0, 0];
        close.extend_from_slice(&payload[..2]);
        ws.s.write_all(&close).unwrap();
    }
    let (code, took) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}

fn libc_sigterm() -> i32 {
    15
}

/// A reconnect storm: 200 connections, far more than `HELLOS_IN_FLIGHT_MAX` (32), ask for their
/// `hello` at once, as after a restart (200 keeps the test under a default 1,024 open files). The core admits 32 at a time and the rest wait their
/// turn: every one gets its `hello` (a turn that is never given back would leave the 33rd
/// waiting, and this test would time out). What the admission prevents, the embedded store's
/// queue (1,024 requests) overflowing into close 1011, shows only with a release build, whose
/// core outruns the storage thread: `chat-load --scenario idle --conns 2000` on the release
/// binary saw 1011 from the 1,026th connection on before the admission, none since; this
/// debug-build test cannot reproduce that race.
#[test]
fn a_reconnect_storm_queues_for_hello_instead_of_failing() {
    const STORM_CONNECTIONS: usize = 200;
    let server = Server::start("uring", &["--threads", "1"]);
    let cookie = sign_up(&server, "storm1");
    let mut socks: Vec<TcpStream> = (0..STORM_CONNECTIONS)
        .map(|_| {
            let mut s = server.connect();
            write!(
                s,
                "GET /api/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Cookie: {cookie}\r\n\r\n",
                server.addr
            )
            .unwrap();
            s
        })
        .collect();
    let mut hellos = 0;
    for s in socks.drain(..) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut s = s;
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "));
        let mut ws = Ws { s };
        let (op, payload) = ws.frame();
        assert_eq!(
            op,
            1,
            "connection {hellos}: expected hello, got opcode {op} {:?}",
            String::from_utf8_lossy(&payload)
        );
        let event: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(event["type"], "hello");
        hellos += 1;
    }
    assert_eq!(hellos, STORM_CONNECTIONS);
    // Every hello is a data frame sent by some write.
    let frames = server.metric("ringchat_websocket_frames_sent_total{core=\"all\"}");
    let writes = server.metric("ringchat_websocket_writes_total{core=\"all\"}");
    assert!(frames >= STORM_CONNECTIONS as u64, "frames sent: {frames}");
    assert!(
        (1..=frames).contains(&writes),
        "writes: {writes}, frames: {frames}"
    );
}
