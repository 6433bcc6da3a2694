//! Outbound connections from a core-like runtime (`rt::run_local` + `rt::connect`), on both
//! backends: a round trip, and a deadline enforced on a peer that never answers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use ringchat::rt::{self, Backend};

fn round_trip_and_deadline(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // First connection: answer "ping" with "pong". Second: read and never answer.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").unwrap();
        let (mut silent, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = silent.read_to_end(&mut sink);
    });
    rt::run_local(backend, async move {
        let conn = rt::connect(addr).await.unwrap();
        let (r, _) = conn.write_all(b"ping".to_vec()).await;
        r.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let (r, buf) = conn.read(got).await;
            got = buf;
            assert!(r.unwrap() > 0, "eof before pong");
        }
        assert_eq!(got, b"pong");
        drop(conn);

        let silent = rt::connect(addr).await.unwrap();
        silent.set_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let (r, _) = silent.read(Vec::with_capacity(16)).await;
        let waited = start.elapsed();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert!(silent.timed_out());
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(900),
            "{waited:?}"
        );
    })
    .unwrap();
    server.join().unwrap();
}

#[test]
fn uring_client() {
    round_trip_and_deadline(Backend::Uring);
}

#[test]
fn epoll_client() {
    round_trip_and_deadline(Backend::Epoll);
}

#[test]
fn connect_outside_a_core_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(rt::connect("127.0.0.1:9".parse().unwrap())) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
        Ok(_) => panic!("connect must refuse to run outside a core"),
    }
}
