//! The "Accounts" rows of RELIABILITY.md and its "kill -9 of mariadbd during account creation"
//! row (issue 10), against the real binary and real peers (redis-server and MariaDB on private
//! ports; the embedded store where a row does not depend on them). Each test asserts its row's
//! figure as the row states it:
//!
//! 1. **500 concurrent wrong-password logins during chat load**
//!    ([`wrong_password_storm_under_chat_load`], on Redis + MariaDB): [`CHAT_CONNECTIONS`]
//!    WebSocket connections (the 2 rooms of `chat_clients`; [`POSTERS`] of them post one
//!    message every [`POST_EVERY`], about 200 messages/s, each delivered to all 200, and time
//!    each acknowledgement; the others only read), a baseline of [`BASELINE`], then
//!    [`STORM_CLIENTS`] clients send a wrong-password login at the same instant and keep at it
//!    for [`STORM`]: after a 503 or 429 each waits the Retry-After it was given (so the 500
//!    come back together, a burst a second), after a `LOGIN_FAILED` it asks again at once. The
//!    hashing pool ([`HASH_THREADS`] threads, a queue of [`HASH_QUEUE`]) is full throughout.
//!    Asserted: the server's resident memory (`VmRSS` sampled every [`RSS_SAMPLE_EVERY`], and
//!    `VmHWM` when it rose) grows at most `HASH_THREADS × 19 MiB + 20 MiB` over what it was
//!    just before the storm; every overflow is answered 503 or 429 within
//!    [`OVERFLOW_ANSWER_MAX`] (50 ms) of the request's last byte (from the write to the
//!    answer's first byte); the chat's acknowledgement p99 during the storm is at most twice
//!    the baseline's; no reader is disconnected and no post refused. A storm whose only misses
//!    are those two timing figures runs again on fresh servers, at most
//!    [`TIMING_ATTEMPTS`](ringchat_proto_tests::timing::TIMING_ATTEMPTS)
//!    times: both must hold together in one whole run.
//!
//!    This test runs the **release build** (`ringchat_release_binary`): the figures are a
//!    release build's, and a debug build spends 0.3 to 0.5 ms of a core on each refused login,
//!    so a burst of 500 on two cores is answered over 100 ms or more whatever the server does.
//!    The clients are made cheap for the same reason, since they share the two cores with the
//!    server: the 500 storm clients are tasks on one thread (ringchat's own client runtime,
//!    `rt::run_local`, epoll), and the 190 readers are emptied by one thread every
//!    [`DRAIN_EVERY`].
//! 2. **Unknown user vs wrong password** ([`unknown_user_and_wrong_password_look_alike`], on
//!    Redis + MariaDB): [`TIMING_ROUNDS`] pairs of one login of each kind, the two sent at the
//!    same instant: every answer is byte for byte the same apart from its `Date` line, and the
//!    median of the pairs' time differences (write to EOF) is under [`MEDIAN_GAP_MAX`] (2 ms).
//! 3. **Injection strings in every field** ([`injection_strings_change_only_what_they_should`],
//!    on Redis + MariaDB): SQL, RESP, JSON, CRLF, NUL, `\x1a` and long Unicode strings in the
//!    username, email and password of sign-ups and logins, in the session cookie of `/api/me`
//!    and `/api/logout`, and over the WebSocket in the room id, a message's content,
//!    `firstMessageId`, the event type and as whole frames. No answer is a 5xx, the WebSocket
//!    is never closed (so never with 1011), and afterwards the Redis keyspace (every key by
//!    `SCAN`, with its `TYPE`, `DUMP` and whether it expires) and the MySQL tables (`SHOW
//!    TABLES`, every row of `users` in hex) equal what they were, plus exactly what the valid
//!    requests had to create: the accounts whose sign-up the validator accepts (predicted with
//!    ringchat's own `parse_create_account`, and answered 204), one `session_<sid>` per 204
//!    holding that account's id, and the valid contents appended to room `a`.
//! 4. **kill -9 of mariadbd during account creation**
//!    ([`mariadb_killed_during_signups_loses_no_account`]): [`STEADY_SIGNERS`] clients sign up
//!    one account after another across the crash, and [`RACERS`] sign-ups of one username are
//!    launched just before the kill (it comes when the first racer has its answer, the others
//!    still hashing or inserting); MariaDB (`innodb_flush_log_at_trx_commit=1`, the
//!    harness's) restarts on the same data after [`MARIADB_DOWN`]. The set check
//!    (`ledger::Ledger`): every 204 is in the table and logs in (lost = 0), every row was
//!    attempted (unexpected = 0); of the racers at most one got 204, at most one row has that
//!    username, a 204 has its row and no row means no 204. Answers are only 204, 503, or (for
//!    racers) 400 `USERNAME_EXISTS`.
//! 5. **Old session after expiry or logout** ([`expired_sessions_are_refused_embedded`],
//!    [`expired_and_logged_out_sessions_are_refused_on_redis_and_mariadb`]): with
//!    `--session-ttl 2s`, a session works (200, `hello`) until its TTL and not after: `/api/me`
//!    is 401 from the first request after the TTL (never before it) and the WebSocket upgrade
//!    closes with 1008. On Redis + MariaDB also a logged-out session: 401 and 1008.
//!
//! The 10^6 session tokens row is a unit test:
//! `src/store/handle.rs::a_million_session_ids_are_distinct_and_use_all_128_bits`.
//!
//! The tests take turns (`chat_clients::one_at_a_time`): each loads both cores. Figures are
//! printed (`cargo test -p ringchat-proto-tests --test accounts_abuse -- --nocapture`).

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chat_client::Ws;
use ringchat::accounts::{Invalid, parse_create_account, parse_login};
use ringchat::chat::events::MESSAGE_CHARS_MAX_DEFAULT;
use ringchat::rt::{self, Backend};
use ringchat_proto_tests::chat_clients::{
    Client, PASSWORD, Pace, Poster, ROOMS_FLAG, ack_latencies, assert_none_refused, one_at_a_time,
    percentile, percentiles, sign_up, start_ringchat, stream, upgrade_to_hello,
};
use ringchat_proto_tests::ledger::Ledger;
use ringchat_proto_tests::timing::{Failures, until_timing_holds};
use ringchat_proto_tests::{MariaDb, Redis, Ringchat, ringchat_release_binary};

/// Connecting, and one request's answer (hashing queue included).
const IO_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// HTTP: one request per connection (`Connection: close`), the answer read to EOF, timed.

struct Answer {
    status: u16,
    /// Everything the server sent.
    bytes: Vec<u8>,
    /// From the request's last byte written to the answer's first byte read.
    first_byte: Duration,
    /// From the request's first byte written to EOF.
    took: Duration,
}

impl Answer {
    fn head(&self) -> &str {
        let end = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(self.bytes.len());
        std::str::from_utf8(&self.bytes[..end]).expect("an ASCII head")
    }

    fn body(&self) -> &[u8] {
        &self.bytes[(self.head().len() + 4).min(self.bytes.len())..]
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head().split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The error id of a JSON error answer (`{"id": ..., "message": ...}`); empty when the
    /// answer has no body (a 204).
    fn error_id(&self) -> String {
        if self.body().is_empty() {
            return String::new();
        }
        let body: Value = serde_json::from_slice(self.body())
            .unwrap_or_else(|_| panic!("not a JSON error: {}", self.text()));
        body["id"].as_str().unwrap_or_default().to_string()
    }

    /// The session id a 204 set (`Set-Cookie: sid=<sid>; ...`).
    fn sid(&self) -> String {
        let cookie = self
            .header("set-cookie")
            .unwrap_or_else(|| panic!("no Set-Cookie: {}", self.text()));
        let sid = cookie
            .split(';')
            .next()
            .and_then(|c| c.strip_prefix("sid="));
        sid.unwrap_or_else(|| panic!("not a session cookie: {cookie}"))
            .to_string()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_DEADLINE)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_write_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `raw` on `s` (connected already) and reads the answer to EOF.
fn exchange_on(mut s: TcpStream, raw: &[u8]) -> Answer {
    let started = Instant::now();
    s.write_all(raw).expect("write a request");
    let written = Instant::now();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut first = None;
    loop {
        let n = s.read(&mut chunk).unwrap_or_else(|e| {
            panic!(
                "read an answer: {e} after {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        bytes.extend_from_slice(&chunk[..n]);
    }
    let first = first.unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(raw)));
    Answer::new(bytes, first - written, started.elapsed())
}

impl Answer {
    fn new(bytes: Vec<u8>, first_byte: Duration, took: Duration) -> Answer {
        let status = bytes
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok())
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {:?}", String::from_utf8_lossy(&bytes)));
        Answer {
            status,
            bytes,
            first_byte,
            took,
        }
    }
}

fn exchange(addr: SocketAddr, raw: &[u8]) -> Answer {
    exchange_on(connect(addr), raw)
}

/// A request with `headers` (whole lines, each ending in CRLF) and, for POST, a JSON body.
fn request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    let body_headers = if method == "POST" {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}{body_headers}\r\n{body}")
        .into_bytes()
}

fn account_body(username: &str, email: &str, password: &str) -> String {
    json!({"username": username, "email": email, "password": password}).to_string()
}

fn login_body(email: &str, password: &str) -> String {
    json!({"email": email, "password": password}).to_string()
}

fn create_account(addr: SocketAddr, username: &str, email: &str, password: &str) -> Answer {
    let body = account_body(username, email, password);
    exchange(addr, &request("POST", "/api/create-account", "", &body))
}

fn login(addr: SocketAddr, email: &str, password: &str) -> Answer {
    let body = login_body(email, password);
    exchange(addr, &request("POST", "/api/login", "", &body))
}

/// `GET /api/me` with `Cookie: <cookie>` (the header line as given, bytes and all).
fn me(addr: SocketAddr, cookie: &str) -> Answer {
    exchange(
        addr,
        &request("GET", "/api/me", &format!("Cookie: {cookie}\r\n"), ""),
    )
}

/// The close code of a close frame's payload.
fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// The first frame after an upgrade with `cookie`: the close code when the server closed, or
/// `None` when it sent `hello`.
fn upgrade_close_code(addr: SocketAddr, cookie: &str) -> Option<u16> {
    let mut ws = Ws::open(addr, Some(cookie));
    let (op, payload) = ws.frame();
    if op == 8 {
        return Some(close_code(&payload));
    }
    let event: Value = serde_json::from_slice(&payload).expect("a JSON event");
    assert_eq!(event["type"], "hello", "{event}");
    None
}

// ---------------------------------------------------------------------------------------------
// 1. 500 concurrent wrong-password logins during chat load.

const STORM_CLIENTS: usize = 500;
/// Hashing threads (`--hash-threads`). Two, on a 2-core machine: the memory bound then counts
/// more than one hash, and the pool can keep both cores busy, which the chat's p99 must
/// survive (the workers run at nice 10 under `SCHED_BATCH`, so the cores preempt them).
const HASH_THREADS: u64 = 2;
/// Hashes waiting for a thread (`--hash-queue`): small, so nearly every login overflows.
const HASH_QUEUE: usize = 4;
/// argon2id with m = 19456 KiB holds 19 MiB while it runs.
const HASH_MIB: u64 = 19;
/// RELIABILITY.md: memory ≤ pool × 19 MiB + 20 MiB.
const RSS_GROWTH_MAX_KIB: u64 = (HASH_THREADS * HASH_MIB + 20) * 1024;
/// RELIABILITY.md: overflow answered 429/503 within 50 ms.
const OVERFLOW_ANSWER_MAX: Duration = Duration::from_millis(50);
/// The chat's connections; [`POSTERS`] of them post, the others only read.
const CHAT_CONNECTIONS: usize = 200;
const POSTERS: usize = 10;
/// Each poster's pace: one message every 50 ms, 200 messages/s in all, each delivered to every
/// connection (both rooms are everyone's).
const POST_EVERY: Duration = Duration::from_millis(50);
const WARM_UP: Duration = Duration::from_secs(1);
const BASELINE: Duration = Duration::from_secs(3);
const STORM: Duration = Duration::from_secs(3);
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(2);

/// How often [`Listeners`] empty their sockets. A few kilobytes arrive per connection in that
/// time, far below what the kernel buffers, so the server never sees a slow reader.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Chat connections that only read, emptied by one thread every [`DRAIN_EVERY`] (not a thread
/// each: 190 threads woken by every broadcast would take the CPU from the server's cores). The
/// server's pings (every 20 s by default) come after the test is over.
struct Listeners {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<String>>,
}

impl Listeners {
    /// Upgrades one connection per cookie and waits for each `hello`.
    fn open<'a>(addr: SocketAddr, cookies: impl Iterator<Item = &'a str>) -> Listeners {
        let sockets: Vec<TcpStream> = cookies
            .map(|cookie| {
                let s = connect(addr);
                let (s, _, _hello) = upgrade_to_hello(s, addr, cookie).expect("a listener");
                s.set_nonblocking(true).expect("a non-blocking listener");
                s
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut ended = Vec::new();
            let mut open: Vec<(usize, TcpStream)> = sockets.into_iter().enumerate().collect();
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                open.retain_mut(|(i, s)| {
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                ended.push(format!("listener {i}: closed by the server"));
                                return false;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                            Err(e) => {
                                ended.push(format!("listener {i}: {e}"));
                                return false;
                            }
                        }
                    }
                });
                thread::sleep(DRAIN_EVERY);
            }
            ended
        });
        Listeners { stop, thread }
    }

    /// Stops draining and closes the connections: which ones had ended before, and why.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the listeners' thread")
    }
}

/// The names of the hashing pool's threads begin so (`rt::workers`).
const HASH_THREAD_NAME_PREFIX: &str = "ringchat-hash-";

/// CPU time (user and system) the server's threads other than the hashing pool's have used:
/// the cores, which parse, refuse and answer every login.
fn core_cpu_time(server: &Ringchat) -> Duration {
    server
        .thread_cpu_times()
        .into_iter()
        .filter(|(name, _)| !name.starts_with(HASH_THREAD_NAME_PREFIX))
        .map(|(_, time)| time)
        .sum()
}

/// Threads the storm's clients run on, [`STORM_CLIENTS`] / this many tasks each.
const STORM_THREADS: usize = 2;

/// One share of the storm's clients, all on one thread: ringchat's own client runtime
/// (`rt::run_local`, epoll) drives them as tasks, so 500 clients cost the machine
/// [`STORM_THREADS`] threads instead of 500 that the scheduler would set against the server's
/// cores. Each connects before `go`, then logs in until [`STORM`] has passed, waiting the
/// Retry-After of each 503 or 429; every answer is returned. An answer's time is taken when its
/// task runs again, so a thread busy with its other clients adds to it: with all 500 on one
/// thread the slowest overflow answer measured 40–46 ms on a quiet machine while the server's
/// cores were 11 % busy.
fn storm(addr: SocketAddr, go: &Barrier, raw: &[u8], clients: usize) -> Vec<Answer> {
    rt::run_local(Backend::Epoll, async {
        let mut first = Vec::with_capacity(clients);
        for _ in 0..clients {
            first.push(rt::connect(addr).await.expect("connect a storm client"));
        }
        go.wait();
        let until = Instant::now() + STORM;
        let clients: Vec<_> = first
            .into_iter()
            .map(|conn| tokio::task::spawn_local(storm_client(addr, conn, raw.to_vec(), until)))
            .collect();
        let mut answers = Vec::new();
        for client in clients {
            answers.extend(client.await.expect("a storm client"));
        }
        answers
    })
    .expect("the storm's runtime")
}

async fn storm_client(
    addr: SocketAddr,
    first: rt::Conn,
    raw: Vec<u8>,
    until: Instant,
) -> Vec<Answer> {
    let mut first = Some(first);
    let mut answers = Vec::new();
    while Instant::now() < until {
        let conn = match first.take() {
            Some(conn) => conn,
            None => rt::connect(addr).await.expect("connect a storm client"),
        };
        let started = Instant::now();
        let (written, _) = conn.write_all(raw.clone()).await;
        written.expect("write a login");
        let written = Instant::now();
        let mut bytes = Vec::with_capacity(1024);
        let mut first_byte = None;
        loop {
            let (read, buf) = conn.read(bytes).await;
            bytes = buf;
            match read {
                Ok(0) => break,
                Ok(_) => {
                    first_byte.get_or_insert_with(Instant::now);
                }
                Err(e) => panic!("read a login's answer: {e}"),
            }
        }
        let first_byte = first_byte.expect("an answer to a login") - written;
        let answer = Answer::new(bytes, first_byte, started.elapsed());
        let wait = match answer.status {
            429 | 503 => {
                let seconds: u64 = answer
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no Retry-After: {}", answer.text()));
                Duration::from_secs(seconds)
            }
            _ => Duration::ZERO,
        };
        answers.push(answer);
        tokio::time::sleep(wait.min(until.saturating_duration_since(Instant::now()))).await;
    }
    answers
}

#[test]
fn wrong_password_storm_under_chat_load() {
    let _turn = one_at_a_time();
    // The release build (see the file's comment), built first when stale.
    let binary = ringchat_release_binary();
    until_timing_holds("login storm", || storm_once(binary.clone()));
}

/// One storm on fresh servers. Panics on any miss but the timing figures, which it records.
fn storm_once(binary: std::path::PathBuf) -> Failures {
    let started = Instant::now();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let (threads, queue) = (HASH_THREADS.to_string(), HASH_QUEUE.to_string());
    let server = Ringchat::start_binary(
        binary,
        &[
            "--rooms",
            ROOMS_FLAG,
            "--redis",
            &redis.url(),
            "--mysql",
            &mariadb.url(),
            "--hash-threads",
            &threads,
            "--hash-queue",
            &queue,
            "--login-failures-per-minute",
            "1000000",
        ],
    );
    let addr = server.addr;
    sign_up(addr, "victim");

    let names: Vec<String> = (0..POSTERS).map(|i| format!("poster{i:02}")).collect();
    // One at a time: the hashing queue is small.
    let clients: Vec<_> = names
        .iter()
        .flat_map(|name| Client::sign_up_all(&[addr], std::slice::from_ref(name)))
        .collect();
    let conns = Client::open_all(&[addr], &clients);
    let listeners = Listeners::open(
        addr,
        (POSTERS..CHAT_CONNECTIONS).map(|i| clients[i % POSTERS].cookie.as_str()),
    );
    let posters = Poster::start_all(&clients, &conns, Pace::Interval(POST_EVERY), 1);
    thread::sleep(WARM_UP);

    let raw = request(
        "POST",
        "/api/login",
        "",
        &login_body("victim@example.com", "wrong password"),
    );
    let go = Barrier::new(1 + STORM_THREADS);
    let sampling = AtomicBool::new(true);
    let (
        rss,
        answers,
        baseline_from,
        storm_from,
        storm_to,
        rss_before,
        hwm_before,
        hwm_after,
        cores_cpu,
    ) = thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push((Instant::now(), server.proc_status_kib("VmRSS")));
                thread::sleep(RSS_SAMPLE_EVERY);
            }
            samples
        });
        let baseline_from = Instant::now();
        let storm: Vec<_> = (0..STORM_THREADS)
            .map(|i| {
                // Shares as equal as can be (the last takes what is left).
                let share = STORM_CLIENTS.div_ceil(STORM_THREADS);
                let clients = share.min(STORM_CLIENTS - (i * share).min(STORM_CLIENTS));
                let (go, raw) = (&go, &raw);
                scope.spawn(move || storm(addr, go, raw, clients))
            })
            .collect();
        thread::sleep(BASELINE);
        let hwm_before = server.proc_status_kib("VmHWM");
        let rss_before = server.proc_status_kib("VmRSS");
        let cores_before = core_cpu_time(&server);
        go.wait();
        let storm_from = Instant::now();
        let answers: Vec<Answer> = storm
            .into_iter()
            .flat_map(|share| share.join().expect("the storm"))
            .collect();
        let storm_to = Instant::now();
        let cores_cpu = core_cpu_time(&server) - cores_before;
        let hwm_after = server.proc_status_kib("VmHWM");
        sampling.store(false, Ordering::Relaxed);
        let rss = sampler.join().expect("sampler");
        (
            rss,
            answers,
            baseline_from,
            storm_from,
            storm_to,
            rss_before,
            hwm_before,
            hwm_after,
            cores_cpu,
        )
    });
    let batches: Vec<_> = posters.into_iter().flat_map(Poster::finish).collect();

    // What the storm got.
    let mut overflow = Vec::new();
    let mut hashed = 0;
    for answer in &answers {
        match (answer.status, answer.error_id().as_str()) {
            (400, "LOGIN_FAILED") => hashed += 1,
            (503, "SERVICE_UNAVAILABLE") | (429, "RATE_LIMITED") => {
                overflow.push(answer.first_byte)
            }
            (status, id) => panic!("a wrong-password login answered {status} {id}"),
        }
    }
    overflow.sort();
    // Memory: the peak during the storm over the last sample before it.
    let peak_sampled = rss
        .iter()
        .filter(|(at, _)| (storm_from..=storm_to).contains(at))
        .map(|&(_, kib)| kib)
        .max()
        .unwrap_or(rss_before);
    let peak = if hwm_after > hwm_before {
        peak_sampled.max(hwm_after)
    } else {
        peak_sampled
    };
    let growth = peak.saturating_sub(rss_before);
    // The chat.
    let baseline = ack_latencies(
        batches
            .iter()
            .filter(|b| b.sent >= baseline_from && b.sent < storm_from),
    );
    let during = ack_latencies(
        batches
            .iter()
            .filter(|b| b.sent >= storm_from && b.sent < storm_to),
    );
    let storm_time = storm_to - storm_from;
    eprintln!(
        "login storm: {STORM_CLIENTS} clients for {storm_time:?}, {} logins ({hashed} hashed \
         and refused LOGIN_FAILED, {} overflowed); hashing {HASH_THREADS} threads, queue \
         {HASH_QUEUE}; overflow answered after {}; RSS {rss_before} KiB before the storm, peak \
         {peak} KiB ({} samples, VmHWM {hwm_before} → {hwm_after} KiB): growth {growth} KiB \
         (max {RSS_GROWTH_MAX_KIB}); chat acknowledgements: baseline {}, during the storm {}; \
         the server's cores used {cores_cpu:?} of CPU in the storm ({:?} per login, chat \
         included)",
        answers.len(),
        overflow.len(),
        percentiles(overflow.clone()),
        rss.len(),
        percentiles(baseline.clone()),
        percentiles(during.clone()),
        cores_cpu / answers.len().max(1) as u32,
    );

    let ended = listeners.finish();
    assert!(ended.is_empty(), "listeners disconnected: {ended:?}");
    assert_none_refused("chat under the storm", &batches);
    assert!(
        overflow.len() >= STORM_CLIENTS - HASH_QUEUE - HASH_THREADS as usize,
        "the storm never filled the hashing pool: {} overflowed",
        overflow.len()
    );
    assert!(hashed > 0, "no login was hashed during the storm");
    let slowest = overflow.last().copied().unwrap_or_default();
    let late = overflow
        .iter()
        .filter(|d| **d > OVERFLOW_ANSWER_MAX)
        .count();
    let mut failures = Failures::default();
    failures.check_timing(slowest <= OVERFLOW_ANSWER_MAX, || {
        format!(
            "{late} of {} overflowing logins were answered later than \
             {OVERFLOW_ANSWER_MAX:?} (slowest {slowest:?})",
            overflow.len()
        )
    });
    assert!(
        growth <= RSS_GROWTH_MAX_KIB,
        "the server grew by {growth} KiB during the storm (max {RSS_GROWTH_MAX_KIB} KiB)"
    );
    assert!(
        baseline.len() >= 100 && during.len() >= 100,
        "too few acknowledgements to compare: {} before, {} during",
        baseline.len(),
        during.len()
    );
    let (p99_before, p99_during) = (percentile(&baseline, 99), percentile(&during, 99));
    failures.check_timing(p99_during <= p99_before * 2, || {
        format!("chat acknowledgement p99 {p99_during:?} during the storm, {p99_before:?} before")
    });
    eprintln!("login storm: whole test {:?}", started.elapsed());
    failures
}

// ---------------------------------------------------------------------------------------------
// 2. Unknown user vs wrong password.

/// Logins of each kind.
const TIMING_ROUNDS: usize = 50;
/// RELIABILITY.md: the median time gap under 2 ms.
const MEDIAN_GAP_MAX: Duration = Duration::from_millis(2);

/// The answer without its `Date` line.
fn without_date(answer: &Answer) -> Vec<u8> {
    let text = answer.text();
    let lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    lines.join("\r\n").into_bytes()
}

/// The median of signed microseconds.
fn median_us(mut values: Vec<i128>) -> i128 {
    values.sort();
    values[values.len() / 2]
}

/// ringchat with sessions and messages in `redis`, users in `mariadb`, and `extra` flags.
fn on_redis_and_mariadb(redis: &Redis, mariadb: &MariaDb, extra: &[&str]) -> Ringchat {
    let (redis_url, mariadb_url) = (redis.url(), mariadb.url());
    let mut args = vec!["--redis", &redis_url, "--mysql", &mariadb_url];
    args.extend_from_slice(extra);
    Ringchat::start(&args)
}

#[test]
fn unknown_user_and_wrong_password_look_alike() {
    let _turn = one_at_a_time();
    until_timing_holds("login timing", look_alike_once);
}

/// Each round sends one login of each kind at the same instant, on connections opened before,
/// so that both meet the same machine: on a shared machine the time of one hash moves by tens
/// of milliseconds from one second to the next, far more than the 2 ms asked, and two logins
/// timed one after the other would mostly measure that. The server has two hashing threads, so
/// neither waits for the other. The gap asserted is the median of the rounds' differences,
/// which cancels what the machine does to both; the difference of the two kinds' medians is
/// printed too (under load it moves by a few milliseconds either way from run to run).
/// The answers' bytes are a hard check; the median gap is a timing one (run again on fresh
/// servers when it alone misses).
fn look_alike_once() -> Failures {
    let mut failures = Failures::default();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let server = on_redis_and_mariadb(
        &redis,
        &mariadb,
        &[
            "--login-failures-per-minute",
            "100000",
            "--hash-threads",
            "2",
        ],
    );
    let addr = server.addr;
    sign_up(addr, "timing");
    let wrong = request(
        "POST",
        "/api/login",
        "",
        &login_body("timing@example.com", "wrong password"),
    );
    // The same length as the known address, a new one each time.
    let unknown = |i: usize| {
        let body = login_body(&format!("nobo{i:02}@example.com"), PASSWORD);
        request("POST", "/api/login", "", &body)
    };
    let reference = without_date(&exchange(addr, &wrong));
    let pair = |i: usize| -> (Answer, Answer) {
        let (to_wrong, to_unknown) = (connect(addr), connect(addr));
        let unknown = unknown(i);
        let together = Barrier::new(2);
        thread::scope(|scope| {
            let w = scope.spawn(|| {
                together.wait();
                exchange_on(to_wrong, &wrong)
            });
            together.wait();
            let u = exchange_on(to_unknown, &unknown);
            (w.join().expect("wrong-password login"), u)
        })
    };
    // Warm both paths up (pooled connections, caches) before timing them.
    for i in 0..3 {
        pair(90 + i);
    }
    let (mut wrong_times, mut unknown_times, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..TIMING_ROUNDS {
        let (w, u) = pair(i);
        for (kind, answer) in [("wrong password", &w), ("unknown user", &u)] {
            assert_eq!(answer.status, 400, "{kind}: {}", answer.text());
            assert_eq!(
                String::from_utf8_lossy(&without_date(answer)),
                String::from_utf8_lossy(&reference),
                "{kind}: the answers differ"
            );
        }
        gaps.push(u.took.as_micros() as i128 - w.took.as_micros() as i128);
        wrong_times.push(w.took.as_micros() as i128);
        unknown_times.push(u.took.as_micros() as i128);
    }
    let (wrong_median, unknown_median) = (median_us(wrong_times), median_us(unknown_times));
    let gap_of_medians = unknown_median - wrong_median;
    let median_gap = median_us(gaps.clone());
    gaps.sort();
    eprintln!(
        "login timing over {TIMING_ROUNDS} pairs: median wrong password {wrong_median} µs, \
         unknown user {unknown_median} µs (difference {gap_of_medians} µs); median of the \
         pairs' differences (unknown − wrong) {median_gap} µs, quartiles {} and {} µs; \
         answer {:?}",
        gaps[TIMING_ROUNDS / 4],
        gaps[TIMING_ROUNDS * 3 / 4],
        String::from_utf8_lossy(&reference)
    );
    failures.check_timing(
        median_gap.unsigned_abs() < MEDIAN_GAP_MAX.as_micros(),
        || {
            format!(
                "unknown user − wrong password: median gap {median_gap} µs over {TIMING_ROUNDS} \
             pairs (max {MEDIAN_GAP_MAX:?})"
            )
        },
    );
    failures
}

// ---------------------------------------------------------------------------------------------
// 3. Injection strings in every field.

/// What the tests inject: SQL, RESP, JSON and header syntax, control bytes, Unicode.
fn injections() -> Vec<String> {
    let mut all: Vec<String> = [
        "'; DROP TABLE users; --",
        "' OR '1'='1",
        "\" OR \"\"=\"",
        "admin'--",
        "x'); DELETE FROM users; --",
        "back\\slash\\'quote\\\\",
        "nul\0byte\0",
        "sub\x1astitute\x1a",
        "\r\n*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n",
        "*1\r\n$8\r\nFLUSHALL\r\n",
        "FLUSHALL \"a b\" c",
        "KEYS * spaces  and\ttabs",
        "{\"type\":\"clientMessages\",\"payload\":{}}",
        "\"},\"username\":\"admin\",\"x\":{\"",
        "header\r\nSet-Cookie: sid=evil",
        "%0d%0aSet-Cookie:%20evil",
        "session_*",
        "o'reilly+tag@example.com",
        "\"quoted\"@example.com",
        "🦀ünïcødé𝄞 <script>alert(1)</script>",
        // 25 four-byte characters: exactly the 100-byte limit of usernames and passwords.
        &"𝄞".repeat(25),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Far over every limit, but under the 16 KiB body limit.
    all.push("é𝄞中\u{202e}".repeat(1200));
    all
}

/// The keyspace and tables, read from the outside.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Every key: its type, its `DUMP`, and whether it expires.
    redis: BTreeMap<Vec<u8>, (String, Vec<u8>, bool)>,
    tables: Vec<String>,
    /// Every row of `users`, by id: username, email and password in hex.
    users: BTreeMap<i64, [String; 3]>,
}

fn snapshot(redis: &Redis, mariadb: &MariaDb) -> Snapshot {
    let mut keys = BTreeSet::new();
    let mut cursor = b"0".to_vec();
    loop {
        let mut reply = redis
            .strings(&[b"SCAN", &cursor, b"COUNT", b"1000"])
            .into_iter();
        cursor = reply.next().expect("SCAN's cursor");
        keys.extend(reply);
        if cursor == b"0" {
            break;
        }
    }
    let redis = keys
        .into_iter()
        .map(|key| {
            let kind = String::from_utf8(redis.strings(&[b"TYPE", &key]).remove(0)).unwrap();
            let dump = redis.strings(&[b"DUMP", &key]).remove(0);
            let pttl = redis.strings(&[b"PTTL", &key]).remove(0);
            (key, (kind, dump, pttl != b"-1"))
        })
        .collect();
    let tables = mariadb
        .root_sql(&format!("SHOW TABLES FROM {}", MariaDb::DATABASE))
        .lines()
        .map(str::to_string)
        .collect();
    let users = mariadb
        .root_sql(&format!(
            "SELECT id, HEX(username), HEX(email), HEX(password) FROM {}.users ORDER BY id",
            MariaDb::DATABASE
        ))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [id, username, email, password] = fields[..] else {
                panic!("a row of users: {line:?}")
            };
            (
                id.parse().expect("an id"),
                [username, email, password].map(str::to_string),
            )
        })
        .collect();
    Snapshot {
        redis,
        tables,
        users,
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

/// An HTTP answer to an injected request: never a 5xx.
#[track_caller]
fn not_5xx(what: &str, answer: &Answer) {
    assert!(
        answer.status < 500,
        "{what}: {}",
        String::from_utf8_lossy(&answer.bytes)
    );
}

#[test]
fn injection_strings_change_only_what_they_should() {
    let _turn = one_at_a_time();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let server = start_ringchat(&[
        "--redis",
        &redis.url(),
        "--mysql",
        &mariadb.url(),
        "--login-failures-per-minute",
        "100000",
    ]);
    let addr = server.addr;
    // Something in every place first: accounts, sessions, both rooms.
    let cookie = sign_up(addr, "injector");
    sign_up(addr, "bystander");
    let mut ws = Ws::open(addr, Some(&cookie));
    assert_eq!(ws.event()["type"], "hello");
    for room in ["a", "b"] {
        chat_client::post(&mut ws, room, "before the injections");
        assert_eq!(ws.event()["type"], "serverMessages");
    }
    let before = snapshot(&redis, &mariadb);
    let room_a_before = stream(redis.port, 0);

    let strings = injections();
    // Accounts the valid sign-ups create, (username, email); sessions the 204s start, by sid,
    // with their account's email.
    let mut accounts: Vec<(String, String)> = Vec::new();
    let mut sessions: BTreeMap<String, String> = BTreeMap::new();
    let mut sign_up_as = |username: &str, email: &str, password: &str| {
        let body = account_body(username, email, password);
        let answer = exchange(addr, &request("POST", "/api/create-account", "", &body));
        let what = format!("sign-up {username:?} {email:?} {password:?}");
        not_5xx(&what, &answer);
        match parse_create_account(Some("application/json"), body.as_bytes()) {
            Ok(_) => {
                assert_eq!(answer.status, 204, "{what}: {}", answer.text());
                sessions.insert(answer.sid(), email.to_string());
                accounts.push((username.to_string(), email.to_string()));
            }
            Err(invalid) => assert_invalid(&what, &answer, invalid),
        }
    };
    for (i, s) in strings.iter().enumerate() {
        sign_up_as(s, &format!("user{i:02}@example.com"), PASSWORD);
        sign_up_as(&format!("email{i:02}"), s, PASSWORD);
        sign_up_as(
            &format!("mail{i:02}"),
            &format!("{s}@example.com").replace(['\r', '\n'], ""),
            PASSWORD,
        );
        sign_up_as(
            &format!("pass{i:02}"),
            &format!("pass{i:02}@example.com"),
            s,
        );
    }
    for (i, s) in strings.iter().enumerate() {
        // Logins: injected emails (known ones log in) and passwords (right or wrong).
        let pass_email = format!("pass{i:02}@example.com");
        for (email, password) in [
            (s.as_str(), PASSWORD),
            (pass_email.as_str(), s.as_str()),
            ("injector@example.com", s.as_str()),
        ] {
            let body = login_body(email, password);
            let answer = exchange(addr, &request("POST", "/api/login", "", &body));
            let what = format!("login {email:?} {password:?}");
            not_5xx(&what, &answer);
            // Only the right password of an account that exists logs in: the accounts with
            // an injected email have PASSWORD, `pass<i>` has the injected password.
            let known = if email == pass_email {
                accounts.iter().any(|(_, e)| *e == pass_email)
            } else {
                password == PASSWORD && accounts.iter().any(|(_, e)| e == email)
            };
            match parse_login(Some("application/json"), body.as_bytes()) {
                Ok(_) if known => {
                    assert_eq!(answer.status, 204, "{what}: {}", answer.text());
                    sessions.insert(answer.sid(), email.to_string());
                }
                Ok(_) => {
                    assert_eq!(
                        (answer.status, answer.error_id().as_str()),
                        (400, "LOGIN_FAILED"),
                        "{what}"
                    );
                }
                Err(invalid) => assert_invalid(&what, &answer, invalid),
            }
        }
        // The session cookie: no session, so 401 (or 400 when the header itself is bad), and
        // logout deletes nothing that exists.
        for cookie in [format!("sid={s}"), s.clone(), format!("sid=\"{s}\"")] {
            let answer = me(addr, &cookie);
            not_5xx(&format!("/api/me with {cookie:?}"), &answer);
            assert!(
                [400, 401].contains(&answer.status),
                "{cookie:?}: {}",
                answer.text()
            );
            let logout = exchange(
                addr,
                &request("POST", "/api/logout", &format!("Cookie: {cookie}\r\n"), ""),
            );
            not_5xx(&format!("logout with {cookie:?}"), &logout);
        }
    }

    // The WebSocket: one event at a time, each answered by one event, never a close.
    let mut posted = Vec::new();
    for s in &strings {
        let content_ok = s.chars().count() <= MESSAGE_CHARS_MAX_DEFAULT;
        let events = [
            (
                json!({"type": "clientMessages", "payload": {"roomId": s, "messages": [{"content": "x"}]}}).to_string(),
                "UNKNOWN_ROOM",
            ),
            (
                json!({"type": "clientMessages", "payload": {"roomId": "a", "messages": [{"content": s}]}}).to_string(),
                if content_ok { "" } else { "CONTENT_TOO_LONG" },
            ),
            (
                json!({"type": "requestRoomHistory", "payload": {"roomId": "a", "firstMessageId": s}}).to_string(),
                "BAD_MESSAGE_ID",
            ),
            (
                json!({"type": "requestRoomHistory", "payload": {"roomId": s, "firstMessageId": "1-0"}}).to_string(),
                "UNKNOWN_ROOM",
            ),
            (
                json!({"type": s, "payload": {"roomId": "a"}}).to_string(),
                "UNKNOWN_TYPE",
            ),
            (s.clone(), "INVALID_JSON"),
        ];
        for (text, expected) in events {
            ws.send(&text);
            let (op, payload) = ws.frame();
            assert_ne!(op, 8, "closed ({}) after {text:?}", close_code(&payload));
            let event: Value = serde_json::from_slice(&payload).expect("a JSON event");
            if expected.is_empty() {
                assert_eq!(event["type"], "serverMessages", "{text:?}: {event}");
                assert_eq!(event["payload"]["messages"][0]["content"], s.as_str());
                posted.push(s.clone());
            } else if expected == "INVALID_JSON" {
                // A whole frame of JSON-ish text may parse: then it is a bad event instead.
                assert_eq!(event["type"], "error", "{text:?}: {event}");
            } else {
                assert_eq!(event["type"], "error", "{text:?}: {event}");
                assert_eq!(event["payload"]["id"], expected, "{text:?}: {event}");
            }
        }
    }
    drop(ws);

    // Nothing but what the valid requests had to create.
    let after = snapshot(&redis, &mariadb);
    assert_eq!(after.tables, before.tables, "SHOW TABLES");
    for (id, row) in &before.users {
        assert_eq!(after.users.get(id), Some(row), "user {id} changed");
    }
    let mut created: Vec<(String, String)> = after
        .users
        .iter()
        .filter(|(id, _)| !before.users.contains_key(id))
        .map(|(_, [username, email, password])| {
            assert!(
                password.starts_with(&hex("$argon2id$")),
                "a new password hash is not argon2id: {password}"
            );
            (username.clone(), email.clone())
        })
        .collect();
    let mut expected: Vec<(String, String)> = accounts
        .iter()
        .map(|(username, email)| (hex(username), hex(email)))
        .collect();
    created.sort();
    expected.sort();
    assert_eq!(created, expected, "the new rows of users (hex)");
    let id_by_email = |email: &str| -> i64 {
        let hexed = hex(email);
        let found = after.users.iter().find(|(_, row)| row[1] == hexed);
        *found.unwrap_or_else(|| panic!("no user {email:?}")).0
    };
    for (key, value) in &before.redis {
        let now = after.redis.get(key);
        if key == b"a" {
            assert_eq!(now.map(|v| v.0.as_str()), Some("stream"));
        } else {
            assert_eq!(
                now,
                Some(value),
                "key {:?} changed or went away",
                String::from_utf8_lossy(key)
            );
        }
    }
    let new_keys: BTreeSet<Vec<u8>> = after
        .redis
        .keys()
        .filter(|k| !before.redis.contains_key(*k))
        .cloned()
        .collect();
    let session_keys: BTreeSet<Vec<u8>> = sessions
        .keys()
        .map(|sid| format!("session_{sid}").into_bytes())
        .collect();
    assert_eq!(
        new_keys
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        session_keys
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        "new Redis keys"
    );
    for (sid, email) in &sessions {
        let key = format!("session_{sid}");
        assert_eq!(after.redis[key.as_bytes()].0, "string", "{key}");
        assert!(after.redis[key.as_bytes()].2, "{key} does not expire");
        let value = redis.strings(&[b"GET", key.as_bytes()]).remove(0);
        assert_eq!(
            String::from_utf8_lossy(&value),
            id_by_email(email).to_string(),
            "{key} is not {email:?}'s"
        );
    }
    let room_a = stream(redis.port, 0);
    let (old, new) = room_a.split_at(room_a_before.len().min(room_a.len()));
    assert_eq!(old, room_a_before.as_slice(), "room a's earlier messages");
    let new: Vec<&str> = new.iter().map(|(_, content)| content.as_str()).collect();
    assert_eq!(new, posted, "room a's new messages");
    eprintln!(
        "injections: {} strings; {} accounts and {} sessions created, {} messages posted; \
         {} Redis keys before, {} after; {} users before, {} after",
        strings.len(),
        accounts.len(),
        sessions.len(),
        posted.len(),
        before.redis.len(),
        after.redis.len(),
        before.users.len(),
        after.users.len()
    );
}

/// A refused body: 400 `BAD_REQUEST` with the validator's message, or 413 for a body over the
/// API's limit.
#[track_caller]
fn assert_invalid(what: &str, answer: &Answer, invalid: Invalid) {
    if answer.status == 413 {
        return;
    }
    assert_eq!(answer.status, 400, "{what}: {}", answer.text());
    let body: Value = serde_json::from_slice(answer.body()).expect("a JSON error");
    assert_eq!(body["id"], "BAD_REQUEST", "{what}: {body}");
    assert_eq!(body["message"], invalid.message(), "{what}: {body}");
}

// ---------------------------------------------------------------------------------------------
// 4. kill -9 of mariadbd during account creation.

const STEADY_SIGNERS: usize = 4;
/// Between one steady sign-up's answer and the next request.
const STEADY_PAUSE: Duration = Duration::from_millis(10);
/// Steady sign-ups before the racers and the kill.
const STEADY_BEFORE: Duration = Duration::from_secs(1);
const RACERS: usize = 100;
/// MariaDB is killed as soon as this many racers have their answer: the race has been decided
/// (a winner acknowledged, or refused), while the other racers, whose passwords were still
/// being hashed, reach MariaDB around the kill and after the restart.
const RACERS_ANSWERED_AT_KILL: usize = 1;
/// From the kill to the restart.
const MARIADB_DOWN: Duration = Duration::from_millis(500);
/// Steady sign-ups go on this long after MariaDB answers again, and until one more of them has
/// been acknowledged.
const STEADY_AFTER: Duration = Duration::from_millis(500);

/// One steady sign-up's answer.
struct Steady {
    name: String,
    status: u16,
    id: String,
    sent: Instant,
    answered: Instant,
}

#[test]
fn mariadb_killed_during_signups_loses_no_account() {
    let started = Instant::now();
    let _turn = one_at_a_time();
    let mut mariadb = MariaDb::start();
    let redis = Redis::start();
    let server = on_redis_and_mariadb(
        &redis,
        &mariadb,
        &[
            "--signups-per-hour",
            "100000",
            "--hash-threads",
            "2",
            "--hash-queue",
            "256",
        ],
    );
    let addr = server.addr;
    let stop = AtomicBool::new(false);
    let go = Barrier::new(RACERS + 1);
    let answered = AtomicUsize::new(0);
    // Steady sign-ups acknowledged so far.
    let acked = AtomicUsize::new(0);
    let (steady, racers, race_lead, killed, restarted, up) = thread::scope(|scope| {
        let steady: Vec<_> = (0..STEADY_SIGNERS)
            .map(|t| {
                let (stop, acked) = (&stop, &acked);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("steady{t}x{:04}", out.len());
                        let email = format!("{name}@example.com");
                        let sent = Instant::now();
                        let answer = create_account(addr, &name, &email, PASSWORD);
                        if answer.status == 204 {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        out.push(Steady {
                            name,
                            status: answer.status,
                            id: answer.error_id(),
                            sent,
                            answered: Instant::now(),
                        });
                        thread::sleep(STEADY_PAUSE);
                    }
                    out
                })
            })
            .collect();
        thread::sleep(STEADY_BEFORE);
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (go, answered) = (&go, &answered);
                scope.spawn(move || {
                    let s = connect(addr);
                    let body = account_body("racer", &format!("racer{i:03}@example.com"), PASSWORD);
                    let raw = request("POST", "/api/create-account", "", &body);
                    go.wait();
                    let answer = exchange_on(s, &raw);
                    answered.fetch_add(1, Ordering::Relaxed);
                    (i, answer.status, answer.error_id())
                })
            })
            .collect();
        go.wait();
        let launched = Instant::now();
        while answered.load(Ordering::Relaxed) < RACERS_ANSWERED_AT_KILL {
            assert!(launched.elapsed() < IO_DEADLINE, "no racer answered");
            thread::sleep(Duration::from_millis(1));
        }
        let killed = Instant::now();
        mariadb.kill9();
        thread::sleep(MARIADB_DOWN);
        let restarted = Instant::now();
        mariadb.restart();
        let up = Instant::now();
        let acked_before = acked.load(Ordering::Relaxed);
        thread::sleep(STEADY_AFTER);
        while acked.load(Ordering::Relaxed) == acked_before && up.elapsed() < IO_DEADLINE {
            thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let steady: Vec<Steady> = steady
            .into_iter()
            .flat_map(|t| t.join().expect("steady signer"))
            .collect();
        let racers: Vec<(usize, u16, String)> = racers
            .into_iter()
            .map(|t| t.join().expect("racer"))
            .collect();
        (steady, racers, killed - launched, killed, restarted, up)
    });

    let rows: Vec<(String, String)> = mariadb
        .root_sql(&format!(
            "SELECT username, email FROM {}.users",
            MariaDb::DATABASE
        ))
        .lines()
        .map(|l| {
            let (u, e) = l.split_once('\t').expect("username and email");
            (u.to_string(), e.to_string())
        })
        .collect();
    let count = |status: u16| steady.iter().filter(|s| s.status == status).count();
    for s in &steady {
        assert!(
            s.status == 204 || (s.status == 503 && s.id == "SERVICE_UNAVAILABLE"),
            "sign-up {}: {} {}",
            s.name,
            s.status,
            s.id
        );
    }
    let winners: Vec<usize> = racers.iter().filter(|r| r.1 == 204).map(|r| r.0).collect();
    let mut ledger = Ledger::new();
    ledger.attempted(steady.iter().map(|s| s.name.clone()));
    ledger.attempted(["racer"]);
    ledger.acknowledged(
        steady
            .iter()
            .filter(|s| s.status == 204)
            .map(|s| s.name.clone()),
    );
    ledger.acknowledged(winners.iter().map(|_| "racer"));
    ledger.read_back(rows.iter().map(|r| r.0.clone()));
    let report = ledger.report();

    for (i, status, id) in &racers {
        assert!(
            *status == 204
                || (*status == 503 && id == "SERVICE_UNAVAILABLE")
                || (*status == 400 && id == "USERNAME_EXISTS"),
            "racer {i}: {status} {id}"
        );
    }
    let racer_rows: Vec<&(String, String)> = rows.iter().filter(|r| r.0 == "racer").collect();
    // In the server when MariaDB died or while it was down.
    let across = steady
        .iter()
        .filter(|s| s.sent < restarted && s.answered > killed)
        .count();
    eprintln!(
        "mariadb kill -9: steady sign-ups {} (204: {}, 503: {}, {across} in flight across the \
         crash), MariaDB killed {race_lead:?} \
         after the racers were launched, restarted after {:?} and answering again {:?} after \
         the kill; \
         racers: {} got 204 {winners:?}, {} \
         USERNAME_EXISTS, {} 503; rows named racer {racer_rows:?}; set check {report}",
        steady.len(),
        count(204),
        count(503),
        restarted - killed,
        up - killed,
        winners.len(),
        racers.iter().filter(|r| r.1 == 400).count(),
        racers.iter().filter(|r| r.1 == 503).count(),
    );
    assert!(report.is_clean(), "accounts across the crash: {report}");
    // Across the crash: acknowledged before the kill, some in flight, acknowledged after.
    let acked = |s: &&Steady| s.status == 204;
    assert!(
        steady.iter().filter(acked).any(|s| s.answered < killed)
            && across > 0
            && steady.iter().filter(acked).any(|s| s.answered > up),
        "the steady sign-ups did not go on across the crash"
    );
    assert!(winners.len() <= 1, "racers {winners:?} all got 204");
    assert!(racer_rows.len() <= 1, "{racer_rows:?}");
    if let Some(&winner) = winners.first() {
        assert_eq!(
            racer_rows.first().map(|r| r.1.as_str()),
            Some(format!("racer{winner:03}@example.com").as_str()),
            "the winner's account"
        );
    }
    // Every acknowledged account logs in (the 204s that were not lost, and the winner).
    let mut acknowledged: Vec<String> = steady
        .iter()
        .filter(|s| s.status == 204)
        .map(|s| format!("{}@example.com", s.name))
        .collect();
    acknowledged.extend(
        winners
            .iter()
            .map(|winner| format!("racer{winner:03}@example.com")),
    );
    thread::scope(|scope| {
        for chunk in acknowledged.chunks(acknowledged.len().div_ceil(4).max(1)) {
            scope.spawn(move || {
                for email in chunk {
                    let answer = login(addr, email, PASSWORD);
                    assert_eq!(answer.status, 204, "login {email}: {}", answer.text());
                }
            });
        }
    });
    eprintln!(
        "mariadb kill -9: {} acknowledged accounts log in; whole test {:?}",
        acknowledged.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Old session after expiry or logout.

/// `--session-ttl`.
const SESSION_TTL: Duration = Duration::from_secs(2);
const SESSION_TTL_FLAG: &str = "2s";
/// Between two `/api/me` requests while waiting for the expiry.
const EXPIRY_POLL: Duration = Duration::from_millis(20);
/// The first request after the TTL is refused; its answer comes within this long of the TTL
/// (the poll interval, one request, a loaded machine).
const EXPIRY_NOTICED_MAX: Duration = Duration::from_millis(250);

/// Signs up, checks the session works, then polls `/api/me` until it is refused: never before
/// the TTL, and from the first request after it. Then the WebSocket closes with 1008.
fn session_expires(addr: SocketAddr, name: &str) {
    let sent = Instant::now();
    let answer = create_account(addr, name, &format!("{name}@example.com"), PASSWORD);
    let got = Instant::now();
    assert_eq!(answer.status, 204, "{}", answer.text());
    let set_cookie = answer.header("set-cookie").unwrap_or_default().to_string();
    assert!(
        set_cookie.contains(&format!("Max-Age={}", SESSION_TTL.as_secs())),
        "the cookie lives as long as the session: {set_cookie}"
    );
    let cookie = format!("sid={}", answer.sid());
    assert_eq!(me(addr, &cookie).status, 200);
    assert_eq!(upgrade_close_code(addr, &cookie), None, "a live session");
    let mut last_ok = None;
    let refused = loop {
        let asked = Instant::now();
        let answer = me(addr, &cookie);
        let answered = Instant::now();
        match answer.status {
            200 => last_ok = Some(asked),
            401 => break answered,
            other => panic!("/api/me answered {other}: {}", answer.text()),
        }
        assert!(
            answered < got + SESSION_TTL + EXPIRY_NOTICED_MAX,
            "{name}: the session still works {:?} after its sign-up",
            answered - sent
        );
        thread::sleep(EXPIRY_POLL);
    };
    let last_ok = last_ok.expect("the session worked before it expired");
    eprintln!(
        "{name}: TTL {SESSION_TTL:?}; last 200 asked {:?} after the sign-up was sent, first \
         401 answered {:?} after it",
        last_ok - sent,
        refused - sent
    );
    assert!(
        refused >= sent + SESSION_TTL,
        "refused {:?} after the sign-up, before its TTL",
        refused - sent
    );
    assert!(
        last_ok < got + SESSION_TTL,
        "answered 200 to a request sent {:?} after the sign-up's answer",
        last_ok - got
    );
    assert_eq!(upgrade_close_code(addr, &cookie), Some(1008), "expired");
}

#[test]
fn expired_sessions_are_refused_embedded() {
    let _turn = one_at_a_time();
    let server = Ringchat::start(&["--session-ttl", SESSION_TTL_FLAG]);
    session_expires(server.addr, "expiring");
}

#[test]
fn expired_and_logged_out_sessions_are_refused_on_redis_and_mariadb() {
    let _turn = one_at_a_time();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let server = on_redis_and_mariadb(&redis, &mariadb, &["--session-ttl", SESSION_TTL_FLAG]);
    let addr = server.addr;
    // Logged out: refused at once, both ways; another session of the same user still works.
    let kept = sign_up(addr, "leaving");
    let answer = login(addr, "leaving@example.com", PASSWORD);
    assert_eq!(answer.status, 204, "{}", answer.text());
    let cookie = format!("sid={}", answer.sid());
    assert_eq!(me(addr, &cookie).status, 200);
    let logout = exchange(
        addr,
        &request("POST", "/api/logout", &format!("Cookie: {cookie}\r\n"), ""),
    );
    assert_eq!(logout.status, 204, "{}", logout.text());
    let answer = me(addr, &cookie);
    assert_eq!(
        (answer.status, answer.error_id().as_str()),
        (401, "UNAUTHORIZED"),
        "logged out"
    );
    assert_eq!(upgrade_close_code(addr, &cookie), Some(1008), "logged out");
    assert_eq!(me(addr, &kept).status, 200, "the other session");
    session_expires(addr, "expiring");
}
