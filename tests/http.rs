//! End-to-end HTTP/1.1 behaviour of the real binary, on both I/O backends.
//!
//! Every test body is a function of the backend name; the macro at the bottom runs each one
//! under `--io uring` and `--io epoll`.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Server, read_response, read_to_eof};

fn pipelined_requests_are_answered_in_order(io: &str) {
    let server = Server::start(io, &[]);
    let mut s = server.connect();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /missing.css HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let a = read_response(&mut s, false).unwrap();
    let b = read_response(&mut s, false).unwrap();
    let c = read_response(&mut s, false).unwrap();
    let d = read_response(&mut s, false).unwrap();
    assert_eq!(
        (a.status, b.status, c.status, d.status),
        (200, 200, 404, 200)
    );
    assert_eq!(a.text(), r#"{"status":"ok"}"#);
    assert_eq!(b.text(), "body{color:red}\n");
    assert_eq!(b.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert!(d.text().contains("hello"));
}

fn keep_alive_reuses_the_connection(io: &str) {
    let server = Server::start(io, &["--keep-alive-max", "3"]);
    let mut s = server.connect();
    for i in 0..3 {
        write!(s, "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 200);
        if i < 2 {
            assert_eq!(
                r.header("keep-alive"),
                Some(format!("timeout=5, max={}", 2 - i).as_str())
            );
            assert_eq!(r.header("connection"), None);
        } else {
            // The third request reaches --keep-alive-max: the server says so and closes.
            assert_eq!(r.header("connection"), Some("close"));
            assert!(read_to_eof(&mut s).0.is_empty());
        }
        assert!(r.header("date").is_some());
    }
    // HTTP/1.0 keeps the connection only when asked to.
    let mut s = server.connect();
    s.write_all(
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n",
    )
    .unwrap();
    assert!(
        read_response(&mut s, false)
            .unwrap()
            .header("keep-alive")
            .is_some()
    );
    assert_eq!(
        read_response(&mut s, false).unwrap().header("connection"),
        Some("close")
    );
    assert_eq!(
        server.metric("ringchat_accepted_connections_total{core=\"all\"}"),
        3
    );
}

fn chunked_upload_is_decoded_and_the_next_request_found(io: &str) {
    let server = Server::start(io, &["--body-bytes-max", "1000"]);
    let mut s = server.connect();
    // Sent in pieces: the decoder must resume across reads.
    let parts: [&[u8]; 5] = [
        b"POST /api/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n6;ext=1\r\n world\r\n",
        b"0\r\nTrailer: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for part in parts {
        s.write_all(part).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // spread over reads; not a readiness wait
    }
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 404, "the upload reached the router: {}", r.text());
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(
        r.status, 200,
        "the request after the chunked body was found intact"
    );

    // Over the body limit while chunked: 413 and close.
    let mut s = server.connect();
    s.write_all(b"POST /api/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        s.write_all(b"190\r\n").unwrap();
        s.write_all(&[b'a'; 400]).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
}

fn oversized_heads_and_bodies_are_refused(io: &str) {
    let server = Server::start(io, &["--body-bytes-max", "1000"]);
    // 101 headers → 431.
    let mut s = server.connect();
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.header("connection")), (431, Some("close")));
    assert!(r.text().contains("HEADERS_TOO_LARGE"));
    // A 17 KiB head → 431, before the head ends.
    let mut s = server.connect();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n",
            "a".repeat(17 * 1024)
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 431);
    // Content-Length of 10^12 → 413 without sending any of it.
    let mut s = server.connect();
    s.write_all(b"POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.header("connection")), (413, Some("close")));
    assert!(start.elapsed() < Duration::from_secs(1));
    // A malformed request line → 400 and close; nothing after it is read as a request.
    let mut s = server.connect();
    s.write_all(b"GET /a b c HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (bytes, _) = read_to_eof(&mut s);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "the canary must not be answered: {text}"
    );
    // Smuggling: Content-Length with Transfer-Encoding → 400 and close.
    let mut s = server.connect();
    s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (bytes, _) = read_to_eof(&mut s);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    assert!(server.metric("ringchat_http_responses_total{core=\"all\",class=\"4xx\"}") >= 5);
}

fn slowloris_is_closed_at_the_header_timeout(io: &str) {
    let server = Server::start(io, &["--header-timeout", "1"]);
    let mut slow = server.connect();
    let start = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Others are served meanwhile.
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").status, 200);
    }
    let mut trickle = slow.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        for _ in 0..30 {
            if trickle.write_all(b"X-A: b\r\n").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (_, _) = read_to_eof(&mut slow);
    let elapsed = start.elapsed();
    trickler.join().unwrap();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1600),
        "closed after {elapsed:?}"
    );
    // An idle keep-alive connection is closed at the keep-alive timeout, not the header one.
    let server = Server::start(io, &["--header-timeout", "1", "--keep-alive-timeout", "2"]);
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut s, false).unwrap();
    let start = Instant::now();
    read_to_eof(&mut s);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_millis(2600),
        "idle closed after {elapsed:?}"
    );
}

fn head_and_conditional_requests(io: &str) {
    let server = Server::start(io, &[]);
    let get = server.get("/index.html");
    let etag = get.header("etag").unwrap().to_string();
    let modified = get.header("last-modified").unwrap().to_string();
    assert_eq!(get.header("cache-control"), Some("no-cache"));
    let mut s = server.connect();
    // HEAD: GET's headers, no body; the next response on the connection parses cleanly.
    s.write_all(b"HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    write!(
        s,
        "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\", {etag}\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    write!(
        s,
        "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {modified}\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 304);
    write!(s, "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut s, false).unwrap().status,
        200,
        "If-None-Match decides when present"
    );
    // HEAD of a large, uncached file still announces its length.
    s.write_all(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, true).unwrap();
    assert_eq!(r.header("content-length"), Some("1572864"));
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.body.len(), 1572864);
    assert!(r.body.iter().all(|&b| b == 7));
    // A changed file is served fresh after the revalidation interval.
    std::fs::write(server.root().join("style.css"), "body{color:blue}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get("/style.css").text() != "body{color:blue}\n" {
        assert!(Instant::now() < deadline, "static cache never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn static_paths_and_methods(io: &str) {
    let server = Server::start(io, &[]);
    assert!(server.get("/").text().contains("hello"));
    assert_eq!(
        server.get("/chat").text(),
        "<!doctype html><title>chat</title>\n"
    );
    assert_eq!(
        server.get("/chat").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(server.get("/docs/").text(), "docs\n");
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/api/nothing").status, 404);
    assert_eq!(
        server.get("/api/nothing").header("content-type"),
        Some("application/json")
    );
    for bad in [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/..%2fetc%2fpasswd",
        "/a%00.html",
        "/%5c..%5cetc",
    ] {
        assert_eq!(server.get(bad).status, 400, "{bad}");
    }
    for hidden in ["/etc/passwd", "/host.txt", "/.secret"] {
        assert_eq!(
            server.get(hidden).status,
            404,
            "{hidden} must not be served"
        );
    }
    let mut s = server.connect();
    s.write_all(b"DELETE /index.html HTTP/1.1\r\nHost: t\r\n\r\nPOST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(read_response(&mut s, false).unwrap().status, 405);
}

fn graceful_shutdown_finishes_in_flight_requests(io: &str) {
    let mut server = Server::start(io, &[]);
    let mut idle = server.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut idle, false).unwrap();
    // In flight: the head and half the body are in; the rest comes after the signal.
    let mut busy = server.connect();
    busy.write_all(b"POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("ringchat_open_connections{core=\"all\"}") < 3 {
        assert!(Instant::now() < deadline);
    }
    server.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed promptly.
    let start = Instant::now();
    let (bytes, _) = read_to_eof(&mut idle);
    assert!(bytes.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "idle connection closed after {:?}",
        start.elapsed()
    );
    // No new connections are accepted once every core has stopped accepting.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpStream::connect(server.addr) {
            Err(_) => break,
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
                if read_response(&mut s, false).is_err() {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
    }
    // The in-flight request completes, with Connection: close.
    busy.write_all(b"56789").unwrap();
    let r = read_response(&mut busy, false).unwrap();
    assert_eq!((r.status, r.header("connection")), (404, Some("close")));
    let (code, took) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5));
}

fn shutdown_timeout_bounds_the_exit(io: &str) {
    let mut server = Server::start(io, &["--shutdown-timeout", "1"]);
    let mut stuck = server.connect();
    stuck
        .write_all(b"POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("ringchat_open_connections{core=\"all\"}") < 2 {
        assert!(Instant::now() < deadline);
    }
    server.signal(libc::SIGINT);
    let (code, took) = server.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "exit after {took:?}"
    );
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
}

fn connections_spread_over_both_cores(io: &str) {
    let server = Server::start(io, &[]);
    let mut open = Vec::new();
    for _ in 0..64 {
        let mut s = server.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().status, 200);
        open.push(s);
    }
    let core0 = server.metric("ringchat_accepted_connections_total{core=\"0\"}");
    let core1 = server.metric("ringchat_accepted_connections_total{core=\"1\"}");
    assert!(
        core0 > 0 && core1 > 0,
        "SO_REUSEPORT spread: core0={core0} core1={core1}"
    );
    assert!(core0 + core1 >= 64);
    let text = server.get("/metrics").text();
    for name in [
        "ringchat_open_connections",
        "ringchat_received_bytes_total",
        "ringchat_sent_bytes_total",
        "ringchat_http_responses_total",
        "ringchat_websocket_writes_total",
        "ringchat_websocket_frames_sent_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
}

fn flags_are_read_from_the_environment(io: &str) {
    let server = Server::start_with_env(
        io,
        &[],
        &[
            ("RINGCHAT_KEEP_ALIVE_MAX", "7"),
            ("RINGCHAT_KEEP_ALIVE_TIMEOUT", "3"),
        ],
    );
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s, false).unwrap().header("keep-alive"),
        Some("timeout=3, max=6")
    );
    // The command line wins over the environment.
    let server = Server::start_with_env(
        io,
        &["--keep-alive-max", "9"],
        &[("RINGCHAT_KEEP_ALIVE_MAX", "7")],
    );
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s, false).unwrap().header("keep-alive"),
        Some("timeout=5, max=8")
    );
}

/// Context switches of every thread of process `pid` so far (voluntary and not).
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// An idle server sleeps: with no connection, neither the cores' deadline sweepers nor the
/// main thread wake on a timer (it was ~74 wake-ups a second: the main thread polled the cores
/// every 50 ms and each core swept two empty registries every 100 ms). After a connection has
/// come and gone the sweeper stops again. At most [`IDLE_WAKE_UPS_MAX`] in [`IDLE_WINDOW`].
fn an_idle_server_sleeps(io: &str) {
    let server = Server::start(io, &[]);
    let pid = server.child.id();
    // One connection wakes the sweeper of its core; its end lets it sleep again.
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, true).unwrap().status, 200);
    drop(s);
    // The sweep that forgets the closed connection, and start-up's last wake-ups.
    std::thread::sleep(Duration::from_millis(500));
    let before = context_switches(pid);
    std::thread::sleep(IDLE_WINDOW);
    let woke = context_switches(pid) - before;
    eprintln!("idle server ({io}): {woke} context switches in {IDLE_WINDOW:?}");
    assert!(
        woke <= IDLE_WAKE_UPS_MAX,
        "an idle server woke {woke} times in {IDLE_WINDOW:?}"
    );
}

/// How long [`an_idle_server_sleeps`] watches.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// Wake-ups allowed in [`IDLE_WINDOW`]: none are expected; a few leave room for the kernel.
const IDLE_WAKE_UPS_MAX: u64 = 10;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring { $( #[test] fn $name() { super::$name("uring") } )* }
        mod epoll { $( #[test] fn $name() { super::$name("epoll") } )* }
    };
}

on_both_backends!(
    pipelined_requests_are_answered_in_order,
    keep_alive_reuses_the_connection,
    chunked_upload_is_decoded_and_the_next_request_found,
    oversized_heads_and_bodies_are_refused,
    slowloris_is_closed_at_the_header_timeout,
    head_and_conditional_requests,
    static_paths_and_methods,
    graceful_shutdown_finishes_in_flight_requests,
    shutdown_timeout_bounds_the_exit,
    connections_spread_over_both_cores,
    flags_are_read_from_the_environment,
    an_idle_server_sleeps,
);
