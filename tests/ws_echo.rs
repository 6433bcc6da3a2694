//! The WebSocket driver through the echo endpoint (`--ws-echo`), on both I/O backends: the
//! upgrade and its refusals, echoes (text, binary, fragmented with a ping between), the close
//! handshake, protocol errors closing with their codes, the heartbeat, the idle timeout, and a
//! client that never reads being closed as a slow consumer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::chat_client::{ACCEPT, KEY, Ws, masked_frame, read_frame, read_head, upgrade_request};

const ECHO: &str = "/api/ws-echo";

/// An upgrade request for the echo endpoint, with an `Origin` header if given.
fn echo_request(server: &Server, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    upgrade_request(server.addr, ECHO, &origin)
}

/// Opens a WebSocket on the echo endpoint; returns the stream after the 101 head.
fn open(server: &Server) -> TcpStream {
    let (ws, head) = Ws::upgrade(server, ECHO, "");
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}")),
        "{head}"
    );
    ws.s
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// Reads until EOF (or an error), returning how long it took.
fn wait_eof(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

fn echo_round_trips(io: &str) {
    let server = Server::start(io, &["--ws-echo"]);
    let mut s = open(&server);
    s.write_all(&masked_frame(true, 1, b"Hello")).unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), (true, 1, b"Hello".to_vec()));
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&masked_frame(true, 2, &big)).unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), (true, 2, big));
    // Fragmented text with a ping between the fragments: the pong first, then the message.
    let mut bytes = masked_frame(false, 1, "κό".as_bytes());
    bytes.extend(masked_frame(true, 9, b"p"));
    bytes.extend(masked_frame(true, 0, "σμε".as_bytes()));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), (true, 10, b"p".to_vec()));
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (true, 1, "κόσμε".as_bytes().to_vec())
    );
    // Many messages in one write: every echo, in order.
    let burst: Vec<u8> = (0..200)
        .flat_map(|i| masked_frame(true, 1, format!("m{i}").as_bytes()))
        .collect();
    s.write_all(&burst).unwrap();
    for i in 0..200 {
        assert_eq!(read_frame(&mut s).unwrap().2, format!("m{i}").into_bytes());
    }
    // The client's close is echoed, then the server hangs up.
    s.write_all(&masked_frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e']))
        .unwrap();
    let (_, op, payload) = read_frame(&mut s).unwrap();
    assert_eq!((op, close_code(&payload)), (8, 1000));
    assert!(wait_eof(&mut s, Duration::from_secs(5)) < Duration::from_secs(3));
}

#[test]
fn echo_round_trips_uring() {
    echo_round_trips("uring");
}

#[test]
fn echo_round_trips_epoll() {
    echo_round_trips("epoll");
}

#[test]
fn protocol_errors_close_with_their_codes() {
    let server = Server::start("epoll", &["--ws-echo", "--ws-max-message", "1024"]);
    let cases: [(Vec<u8>, u16); 4] = [
        (masked_frame(true, 1, &[0xce, 0xba, 0xff]), 1007),
        (masked_frame(true, 2, &[0u8; 1025]), 1009),
        (masked_frame(true, 3, b"x"), 1002),
        // Unmasked frame.
        (vec![0x81, 0x02, b'h', b'i'], 1002),
    ];
    for (bytes, code) in cases {
        let mut s = open(&server);
        s.write_all(&bytes).unwrap();
        let (_, op, payload) = read_frame(&mut s).unwrap();
        assert_eq!((op, close_code(&payload)), (8, code), "{bytes:?}");
        assert!(wait_eof(&mut s, Duration::from_secs(5)) < Duration::from_secs(3));
    }
    // Exactly at the limit is fine.
    let mut s = open(&server);
    s.write_all(&masked_frame(true, 2, &[7u8; 1024])).unwrap();
    assert_eq!(read_frame(&mut s).unwrap().2.len(), 1024);
}

#[test]
fn upgrades_are_checked() {
    let server = Server::start("epoll", &["--ws-echo"]);
    let status = |request: String| {
        let mut s = server.connect();
        s.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut s).unwrap();
        head.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
    };
    let same = format!("http://{}", server.addr);
    assert_eq!(status(echo_request(&server, Some(&same))), 101);
    assert_eq!(
        status(echo_request(&server, Some("https://evil.example"))),
        403
    );
    let old_version = echo_request(&server, None).replace("Version: 13", "Version: 8");
    assert_eq!(status(old_version), 426);
    let no_key = echo_request(&server, None).replace(KEY, "short");
    assert_eq!(status(no_key), 400);
    // Without the flag the endpoint does not exist.
    let plain = Server::start("epoll", &[]);
    let mut s = plain.connect();
    s.write_all(echo_request(&plain, None).as_bytes()).unwrap();
    assert!(read_head(&mut s).unwrap().starts_with("HTTP/1.1 404 "));
}

#[test]
fn heartbeat_pings_and_idle_clients_are_dropped() {
    let server = Server::start(
        "uring",
        &[
            "--ws-echo",
            "--ws-ping-interval",
            "200ms",
            "--ws-idle-timeout",
            "700ms",
        ],
    );
    let mut s = open(&server);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (_, op, _) = read_frame(&mut s).unwrap();
    assert_eq!(op, 9, "a heartbeat ping");
    // Answering keeps it alive past the idle timeout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        let (_, op, payload) = read_frame(&mut s).unwrap();
        assert_eq!(op, 9);
        s.write_all(&masked_frame(true, 10, &payload)).unwrap();
    }
    // Silence ends it within about the idle timeout.
    let gone = wait_eof(&mut s, Duration::from_secs(5));
    assert!(gone < Duration::from_secs(3), "{gone:?}");
}

#[test]
fn a_client_that_never_reads_is_closed_as_a_slow_consumer() {
    let server = Server::start("epoll", &["--ws-echo", "--ws-max-message", "4096"]);
    let mut s = open(&server);
    // Echoes pile up while this client does not read: the kernel's buffers first, then the
    // outbox (16 × 4 KiB), then the server gives up on it.
    let message = masked_frame(true, 2, &[1u8; 4000]);
    let mut sent = 0usize;
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    while sent < 4000 {
        if s.write_all(&message).is_err() {
            break;
        }
        sent += 1;
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let close = loop {
        let (_, op, payload) = read_frame(&mut s).unwrap();
        if op == 8 {
            break payload;
        }
        assert_eq!(op, 2);
    };
    assert!(sent > 16, "closed after only {sent} messages");
    assert_eq!(close_code(&close), 1008);
    assert_eq!(&close[2..], b"slow consumer");
}
