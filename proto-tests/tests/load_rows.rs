//! The load-bearing WebSocket and HTTP rows of shared/RELIABILITY.md (issue 10), at the scale
//! the rows give, against the real binary (two cores, the embedded store). Each test measures
//! its baseline in the same run, just before its attack: the same clients doing the same thing
//! without the attack ("Baseline p99 is the same run without the attack, under background chat
//! load").
//!
//! 1. **100 slow consumers at 2,000 messages/s.** Ten clients post into one room at 2,000
//!    messages/s and read everything (the fast clients). Then 100 more connections read their
//!    `hello` and nothing after it (a 4 KiB receive buffer and a 536-byte MSS, so the kernel
//!    holds little for them). The server's outbox budget for each (`--ws-max-message` 16 KiB
//!    → 256 KiB) fills; "passing its queue limit" happens inside the server, so it is bracketed
//!    from the outside: every connection is sent the same frames as a fast client (whose
//!    reader records each frame's size and arrival), so the limit is passed no later than the
//!    moment those frames, counted from the slow one's `hello`, exceed the budget plus what
//!    the kernel holds for it (its server socket's send queue plus its own receive queue,
//!    read from `/proc/net/tcp`). Its close is seen in `/proc/net/tcp` too: the server's
//!    socket leaves ESTABLISHED (FIN_WAIT1 after the server's `shutdown(2)`). Asserted: each
//!    closed within [`CUT_WITHIN`] (1 s) of that moment; the fast clients' acknowledgement p99
//!    during the attack at most [`P99_RATIO_MAX`] times the baseline's; every acknowledged
//!    message reached every fast client exactly once and in the same order (a set check by id
//!    and content).
//! 2. **SIGTERM with 2,000 open WebSocket connections while some post**: 1,990 connections
//!    that read, 10 that post; SIGTERM mid-posting. Every one of the 2,000 gets close 1001
//!    (counted), the process exits within [`EXIT_WITHIN`] (5 s), and after a restart on the
//!    same data the history read back over WebSocket holds every acknowledged message, each
//!    once, and nothing that was not posted.
//! 3. **Connection caps under load**: with `--connections-per-core-max` reached (chat load
//!    plus idle keep-alive connections), a flood of new connections is refused (each closed
//!    without an answer; the refusal metric counts them all) while the chat's acknowledgement
//!    p99 stays within [`P99_RATIO_MAX`] of its baseline at the cap without the flood. The
//!    50 ms refusal bound is tests/limits.rs's; here it is only printed.
//! 4. **Slowloris and slow body, 1,000 connections** (a raw loop: 500 trickle a head, 500 a
//!    body, a byte every [`TRICKLE`]), `--header-timeout 2 --body-timeout 2`: each is closed
//!    at its timeout ± 1 s (each measured: from its connect for a head, from its head for a
//!    body), every request of a probe client (`GET /healthz` on a fresh connection every
//!    [`PROBE_PACE`]) succeeds, and the probe's p99 during the attack is at most
//!    [`P99_RATIO_MAX`] times its baseline.
//!
//! Rows 3 and 4 run the background chat load of RELIABILITY.md's baseline: 200 connections, of
//! which 10 post 200 messages/s. Latency is the chat clients' acknowledgement (a batch sent to
//! its own messages coming back), or the probe's whole request. Figures are printed
//! (`--nocapture`). Every failed check of a test is collected and reported together, so one
//! miss does not hide the others' figures. A run whose only misses are timing figures (latency
//! ratios, and a close that came but later than its bound, as measured from outside) is run
//! again on a fresh server, at most
//! [`TIMING_ATTEMPTS`](ringchat_proto_tests::timing::TIMING_ATTEMPTS) times in all: the suite
//! shares two cores with the load generator and whatever else the machine runs, and one
//! descheduled moment in a few-second window can double a p99; the figure must still hold in
//! one whole run. Any other miss (a lost message, a connection never closed or closed early, a
//! refused probe) fails at once. The tests take turns ([`one_at_a_time`]) and raise the
//! process's open-file limit to its hard limit (the server inherits it).
//!
//! Not here: the 50 ms refusal bound and descriptor exhaustion (tests/limits.rs), a slow
//! consumer that reads slowly rather than not at all (tests/chat.rs).

use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringchat_proto_tests::chat_clients::{
    Batch, Client, Conn, Msg, Outcome, Pace, Poster, ROOMS, ack_latencies, catch_up,
    check_sequence, masked_frame, one_at_a_time, percentile, percentiles, read_whole_frame,
    sign_up, start_ringchat, upgrade_to_hello,
};
use ringchat_proto_tests::timing::{Failures, until_timing_holds};

/// RELIABILITY.md: the others' p99 under an attack at most twice the baseline's.
const P99_RATIO_MAX: f64 = 2.0;
/// Everything acknowledged has reached every client: a delivery that should take milliseconds.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);
/// After every client has all it should, a pause in which a duplicate would show up.
const QUIET: Duration = Duration::from_millis(300);
/// How often the tests look at `/proc/net/tcp` or their sockets when timing a close.
const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/// Raises this process's soft limit on open files to its hard limit: a test holds 2,000 client
/// sockets (and a reader for some), and the server it starts inherits the limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) and setrlimit(2), each with a valid pointer to one rlimit.
    let rc = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            -1
        } else {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit)
        }
    };
    assert_eq!(rc, 0, "RLIMIT_NOFILE: {}", io::Error::last_os_error());
    assert!(
        limit.rlim_cur >= 2 * CONNECTIONS_2 as u64 + 1000,
        "the hard limit on open files ({}) is too low for {CONNECTIONS_2} connections",
        limit.rlim_max
    );
}

/// `during`'s p99 at most [`P99_RATIO_MAX`] times `baseline`'s; prints both and the ratio.
fn check_p99(failures: &mut Failures, what: &str, baseline: Vec<Duration>, during: Vec<Duration>) {
    let (b, d) = (p99(&baseline), p99(&during));
    let ratio = d.as_secs_f64() / b.as_secs_f64();
    eprintln!(
        "{what}: baseline {}; under attack {}; p99 ratio {ratio:.2}",
        percentiles(baseline),
        percentiles(during)
    );
    failures.check_timing(ratio <= P99_RATIO_MAX, || {
        format!("{what}: p99 {d:?} under attack, {ratio:.2} × the baseline's {b:?}")
    });
}

fn p99(latencies: &[Duration]) -> Duration {
    assert!(!latencies.is_empty(), "no latencies measured");
    let mut sorted = latencies.to_vec();
    sorted.sort();
    percentile(&sorted, 99)
}

/// Acknowledgement latencies of the batches sent in `[from, to)`.
fn acked_between(batches: &[Batch], from: Instant, to: Instant) -> Vec<Duration> {
    ack_latencies(batches.iter().filter(|b| b.sent >= from && b.sent < to))
}

/// One TCP socket as `/proc/net/tcp` shows it.
#[derive(Clone, Copy, Debug)]
struct TcpSocket {
    /// `st`: [`ESTABLISHED`], 04 FIN_WAIT1, ...
    state: u8,
    /// Bytes written and not yet acknowledged by the peer (`tx_queue`).
    send_queue: u64,
    /// Bytes arrived and not yet read (`rx_queue`).
    receive_queue: u64,
}

const ESTABLISHED: u8 = 0x01;

/// Every IPv4 TCP socket of this network namespace, by (local port, remote port): the tests
/// talk over 127.0.0.1 only, so a pair of ports names one end of one connection.
fn tcp_sockets() -> std::collections::HashMap<(u16, u16), TcpSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex in /proc/net/tcp");
    let port = |addr: &str| hex(addr.rsplit(':').next().expect("addr:port")) as u16;
    table
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (tx, rx) = f[4].split_once(':').expect("tx_queue:rx_queue");
            (
                (port(f[1]), port(f[2])),
                TcpSocket {
                    state: hex(f[3]) as u8,
                    send_queue: hex(tx),
                    receive_queue: hex(rx),
                },
            )
        })
        .collect()
}

/// A GET on an open keep-alive connection: its status and body.
fn get(s: &mut TcpStream, path: &str) -> io::Result<(u16, String)> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The value of `key` (a metric name with its labels) in a `/metrics` page.
fn metric(page: &str, key: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {key} missing from:\n{page}"))
}

/// RELIABILITY.md's background chat load: [`LOAD_POSTERS`] clients posting 200 messages/s in
/// all (a batch of 1 to 3 messages every 100 ms each, rooms alternating), and more connections
/// of one account reading, [`LOAD_CONNECTIONS`] in all.
struct ChatLoad {
    conns: Vec<Arc<Conn>>,
    posters: Vec<Poster>,
}

const LOAD_POSTERS: usize = 10;
const LOAD_CONNECTIONS: usize = 200;
const LOAD_PACE: Pace = Pace::Interval(Duration::from_millis(100));
const LOAD_BATCH_MAX: usize = 3;

impl ChatLoad {
    fn start(addr: SocketAddr, prefix: &str) -> ChatLoad {
        let names: Vec<String> = (0..LOAD_POSTERS)
            .map(|i| format!("{prefix}{i:02}"))
            .collect();
        let clients = Client::sign_up_all(&[addr], &names);
        let mut conns = Client::open_all(&[addr], &clients);
        while conns.len() < LOAD_CONNECTIONS {
            conns.push(Conn::open(addr, &clients[0].cookie));
        }
        let posters = Poster::start_all(&clients, &conns, LOAD_PACE, LOAD_BATCH_MAX);
        ChatLoad { conns, posters }
    }

    /// Stops posting; every batch posted. Asserts that every connection is still open.
    fn finish(self) -> Vec<Batch> {
        let batches = self.posters.into_iter().flat_map(Poster::finish).collect();
        for conn in &self.conns {
            let closed = conn.with(|s| s.closed.clone());
            assert!(closed.is_none(), "a chat connection ended: {closed:?}");
        }
        batches
    }
}

// ---------------------------------------------------------------------------------------------
// 1. 100 slow consumers at 2,000 messages/s.

const FAST: usize = 10;
const SLOW: usize = 100;
/// 10 posters, a batch of 1 to 7 messages (4 on average) every 20 ms each, all in room 0:
/// 2,000 messages/s.
const PACE_1: Pace = Pace::Interval(Duration::from_millis(20));
const BATCH_MAX_1: usize = 7;
const WS_MAX_MESSAGE: usize = 16 * 1024;
/// The outbox budget that `--ws-max-message` gives: 16 messages' worth, at least 256 KiB
/// (`OUTBOX_MESSAGES_BUDGET`, `OUTBOX_WRITE_BYTES_MAX` in src/server/ws.rs).
const OUTBOX_BUDGET: usize = 256 * 1024;
/// A slow consumer's receive buffer and MSS: the kernel then holds little for it (the server's
/// send buffer grows with the MSS; with loopback's 64 KiB one it reached 3 MB here).
const SLOW_RECEIVE_BUFFER: usize = 4096;
const SLOW_MSS: u32 = 536;
const WARM_UP: Duration = Duration::from_millis(500);
const BASELINE: Duration = Duration::from_secs(3);
/// RELIABILITY.md: "each closed within 1 s of passing its queue limit".
const CUT_WITHIN: Duration = Duration::from_secs(1);
/// A socket missing from this many reads of `/proc/net/tcp` in a row is closed (it is
/// counted from the first).
const UNSEEN_READS_GONE: usize = 3;
/// How long past its bound a slow consumer is watched before it counts as not closed.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// A chat connection that read its `hello` and reads nothing after it.
struct Stalled {
    _s: TcpStream,
    port: u16,
    /// When it stopped reading.
    stalled: Instant,
    /// The most the kernel held for it (its server socket's send queue and its receive
    /// queue) while open.
    kernel_bytes: u64,
    closed: Option<Instant>,
    /// Reads of `/proc/net/tcp` in a row without its server socket, since when.
    unseen: Option<(usize, Instant)>,
    /// The latest moment its outbox can have passed its budget (see the file's comment).
    limit_by: Option<Instant>,
}

fn open_stalled(addr: SocketAddr, cookie: &str) -> Stalled {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(SLOW_RECEIVE_BUFFER)
        .expect("SO_RCVBUF");
    socket.set_mss(SLOW_MSS).expect("TCP_MAXSEG");
    socket.connect(&addr.into()).expect("connect");
    let (s, _, _) = upgrade_to_hello(socket.into(), addr, cookie).expect("upgrade");
    Stalled {
        port: s.local_addr().unwrap().port(),
        _s: s,
        stalled: Instant::now(),
        kernel_bytes: 0,
        closed: None,
        unseen: None,
        limit_by: None,
    }
}

/// The first instant at which `frames` (arrival, bytes), counted after `from`, add up to more
/// than `bytes`.
fn passed(frames: &[(Instant, usize)], from: Instant, bytes: u64) -> Option<Instant> {
    let mut sum = 0u64;
    frames
        .iter()
        .filter(|(at, _)| *at > from)
        .find(|(_, n)| {
            sum += *n as u64;
            sum > bytes
        })
        .map(|(at, _)| *at)
}

#[test]
fn slow_consumers_are_cut_while_the_others_keep_pace() {
    let _turn = one_at_a_time();
    raise_open_files_limit();
    until_timing_holds("slow consumers", slow_consumers_once);
}

fn slow_consumers_once() -> Failures {
    let started = Instant::now();
    let ringchat = start_ringchat(&["--ws-max-message", &WS_MAX_MESSAGE.to_string()]);
    let addr = ringchat.addr;
    let names: Vec<String> = (0..FAST).map(|i| format!("fast{i:02}")).collect();
    let clients = Client::sign_up_all(&[addr], &names);
    let slow_cookie = sign_up(addr, "slow");
    let conns = Client::open_all(&[addr], &clients);
    let posters: Vec<Poster> = clients
        .iter()
        .zip(&conns)
        .map(|(c, conn)| Poster::start_in_room(c, conn, 0, PACE_1, BATCH_MAX_1, 0))
        .collect();
    thread::sleep(WARM_UP);
    let baseline_from = Instant::now();
    thread::sleep(BASELINE);

    let attack_from = Instant::now();
    let mut slow: Vec<Stalled> = (0..SLOW)
        .map(|_| open_stalled(addr, &slow_cookie))
        .collect();
    let opened = attack_from.elapsed();
    // Watch every slow consumer's server socket until it closes, or until it is past its bound.
    let server_port = addr.port();
    let watch_until = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let table = tcp_sockets();
        let now = Instant::now();
        let frames = conns[0].with(|s| s.frames.clone());
        for c in slow.iter_mut().filter(|c| c.closed.is_none()) {
            match table.get(&(server_port, c.port)) {
                Some(server) if server.state == ESTABLISHED => {
                    let client = table.get(&(c.port, server_port));
                    let held = server.send_queue + client.map_or(0, |c| c.receive_queue);
                    c.kernel_bytes = c.kernel_bytes.max(held);
                    c.limit_by = passed(&frames, c.stalled, OUTBOX_BUDGET as u64 + c.kernel_bytes);
                    c.unseen = None;
                }
                Some(_) => c.closed = Some(now),
                // The table is read in pieces while it changes, so a socket may be missing
                // from one read; gone for good is gone from several in a row.
                None => {
                    let (reads, since) = c.unseen.get_or_insert((0, now));
                    *reads += 1;
                    if *reads == UNSEEN_READS_GONE {
                        c.closed = Some(*since);
                    }
                }
            }
        }
        let watched = |c: &Stalled| {
            c.closed.is_none()
                && c.limit_by
                    .is_none_or(|at| now < at + CUT_WITHIN + CUT_GRACE)
        };
        if !slow.iter().any(watched) || now > watch_until {
            break;
        }
        thread::sleep(POLL);
    }
    let attack_to = Instant::now();
    let batches: Vec<Batch> = posters.into_iter().flat_map(Poster::finish).collect();
    // Again with every frame: the fast client's reader may have lagged behind the server when
    // a slow consumer was closed.
    let frames = conns[0].with(|s| s.frames.clone());
    for c in &mut slow {
        c.limit_by = passed(&frames, c.stalled, OUTBOX_BUDGET as u64 + c.kernel_bytes);
    }

    let mut failures = Failures::default();
    let sent: usize = batches
        .iter()
        .filter(|b| b.sent >= baseline_from && b.sent < attack_from)
        .map(|b| b.contents.len())
        .sum();
    eprintln!(
        "slow consumers: {FAST} fast clients posting {:.0} messages/s in the baseline; {SLOW} \
         slow ones opened in {opened:?}",
        sent as f64 / BASELINE.as_secs_f64()
    );
    check_p99(
        &mut failures,
        "slow consumers: fast clients' acknowledgements",
        acked_between(&batches, baseline_from, attack_from),
        acked_between(&batches, attack_from, attack_to),
    );
    // Each slow consumer: closed, and within CUT_WITHIN of the latest moment it can have passed
    // its limit.
    let mut fill = Vec::new();
    let mut cut_after = Vec::new();
    let mut missed = Vec::new();
    let mut late = Vec::new();
    for (i, c) in slow.iter().enumerate() {
        let Some(limit_by) = c.limit_by else {
            missed.push(format!(
                "{i}: its budget and kernel buffers ({} B) never filled (closed {:?} after its \
                 hello)",
                c.kernel_bytes,
                c.closed.map(|at| at - c.stalled)
            ));
            continue;
        };
        // Closed before that moment counts as 0: the server saw its frames before the fast
        // client did.
        fill.push(limit_by - c.stalled);
        match c.closed {
            Some(at) => {
                let after = at.saturating_duration_since(limit_by);
                cut_after.push(after);
                if after > CUT_WITHIN {
                    late.push(format!("{i}: closed {after:?} after passing its limit"));
                }
            }
            None => missed.push(format!(
                "{i}: still open {:?} after passing its limit",
                limit_by.elapsed()
            )),
        }
    }
    failures.check(missed.is_empty(), || {
        format!(
            "slow consumers: {} of {SLOW} never filled or never closed (first 3: {:?})",
            missed.len(),
            &missed[..missed.len().min(3)]
        )
    });
    // Closed, but late: a time measured from the outside (the fast reader's lag, the 10 ms
    // poll of /proc/net/tcp), so a timing figure.
    failures.check_timing(late.is_empty(), || {
        format!(
            "slow consumers: {} of {SLOW} closed later than {CUT_WITHIN:?} after passing their \
             limit (first 3: {:?})",
            late.len(),
            &late[..late.len().min(3)]
        )
    });
    let kernel: Vec<u64> = slow.iter().map(|c| c.kernel_bytes).collect();
    eprintln!(
        "slow consumers: kernel held {}..{} B each; budget plus kernel filled {} after the \
         hello; closed {} after that ({} of {SLOW} closed)",
        kernel.iter().min().unwrap(),
        kernel.iter().max().unwrap(),
        percentiles(fill),
        percentiles(cut_after),
        slow.iter().filter(|c| c.closed.is_some()).count()
    );
    drop(slow);

    // Nothing lost for the fast ones: every acknowledged message reached every one of them,
    // once, and all of them saw the same sequence.
    let acknowledged: HashSet<String> = batches
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .flat_map(|b| b.contents.iter().cloned())
        .collect();
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    for (name, conn) in names.iter().zip(&conns) {
        let all = conn.wait_for(deadline, |s| {
            acknowledged
                .iter()
                .all(|c| s.contents.contains(c))
                .then_some(())
        });
        failures.check(all.is_some(), || {
            format!("{name}: not every acknowledged message arrived")
        });
    }
    thread::sleep(QUIET);
    let reference: Vec<Msg> = conns[0].with(|s| s.rooms[0].clone());
    for (name, conn) in names.iter().zip(&conns) {
        let (room, other, closed) =
            conn.with(|s| (s.rooms[0].clone(), s.rooms[1].len(), s.closed.clone()));
        check_sequence(name, 0, &room);
        failures.check(closed.is_none(), || {
            format!("{name}: disconnected: {closed:?}")
        });
        failures.check(other == 0, || format!("{name}: {other} messages in room 1"));
        failures.check(room == reference, || {
            format!(
                "{name}: {} messages, {} another fast client saw, or in another order",
                room.len(),
                reference.len()
            )
        });
    }
    eprintln!(
        "slow consumers: {} messages acknowledged, each fast client holds {}; whole test {:?}",
        acknowledged.len(),
        reference.len(),
        started.elapsed()
    );
    failures
}

// ---------------------------------------------------------------------------------------------
// 2. SIGTERM with 2,000 open WebSocket connections.

const CONNECTIONS_2: usize = 2000;
const POSTERS_2: usize = 10;
/// 10 posters, a batch of 1 to 3 messages every 100 ms each: 200 messages/s, to 2,000
/// connections.
const PACE_2: Pace = Pace::Interval(Duration::from_millis(100));
const BATCH_MAX_2: usize = 3;
/// Threads opening the connections, and reading them.
const OPENERS: usize = 8;
const READERS: usize = 16;
/// Posting before the signal.
const POSTING: Duration = Duration::from_secs(1);
/// RELIABILITY.md: "exit within 5 s".
const EXIT_WITHIN: Duration = Duration::from_secs(5);
const GOING_AWAY: u16 = 1001;

/// Reads frames until a close; answers it (as a client should) and returns its code.
fn read_until_close(reader: &mut BufReader<TcpStream>, s: &mut TcpStream) -> io::Result<u16> {
    loop {
        let (op, payload) = read_whole_frame(reader)?;
        if op == 8 {
            let code = payload
                .get(..2)
                .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
            let _ = s.write_all(&masked_frame(true, 8, &code.to_be_bytes()));
            return Ok(code);
        }
    }
}

#[test]
fn sigterm_with_2000_connections_says_going_away_and_loses_nothing() {
    let started = Instant::now();
    let _turn = one_at_a_time();
    raise_open_files_limit();
    let mut ringchat = start_ringchat(&[]);
    let addr = ringchat.addr;
    let names: Vec<String> = (0..POSTERS_2).map(|i| format!("term{i:02}")).collect();
    let clients = Client::sign_up_all(&[addr], &names);
    let reader_cookie = sign_up(addr, "reader");
    let conns = Client::open_all(&[addr], &clients);
    let idle = CONNECTIONS_2 - POSTERS_2;
    let opening = Instant::now();
    let opened: Vec<(TcpStream, BufReader<TcpStream>)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..OPENERS)
            .map(|t| {
                let cookie = &reader_cookie;
                scope.spawn(move || {
                    (t..idle)
                        .step_by(OPENERS)
                        .map(|_| {
                            let s = TcpStream::connect(addr).expect("connect");
                            let (s, reader, _) =
                                upgrade_to_hello(s, addr, cookie).expect("upgrade");
                            (s, reader)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("opener"))
            .collect()
    });
    let opened_in = opening.elapsed();
    // Readers: each takes its share in turn, reading to the close frame, answering it.
    let mut shares: Vec<Vec<(TcpStream, BufReader<TcpStream>)>> =
        (0..READERS).map(|_| Vec::new()).collect();
    for (i, c) in opened.into_iter().enumerate() {
        shares[i % READERS].push(c);
    }
    let readers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            thread::spawn(move || {
                share
                    .into_iter()
                    .map(|(mut s, mut reader)| read_until_close(&mut reader, &mut s))
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let posters = Poster::start_all(&clients, &conns, PACE_2, BATCH_MAX_2);
    thread::sleep(POSTING);
    let signalled = Instant::now();
    ringchat.stop();
    let exited = signalled.elapsed();
    let batches: Vec<Batch> = posters.into_iter().flat_map(Poster::finish).collect();
    let mut codes: Vec<io::Result<u16>> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("reader"))
        .collect();
    for conn in &conns {
        let why = conn
            .wait_for(Instant::now() + DELIVERY_DEADLINE, |s| s.closed.clone())
            .map(|(_, why)| why);
        codes.push(match why {
            Some(why) if why.starts_with("close frame Some(") => Ok(why
                .trim_start_matches("close frame Some(")
                .split(')')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)),
            other => Err(io::Error::other(format!("{other:?}"))),
        });
    }

    let mut failures = Failures::default();
    let going_away = codes.iter().filter(|c| matches!(c, Ok(GOING_AWAY))).count();
    let others: Vec<String> = codes
        .iter()
        .filter(|c| !matches!(c, Ok(GOING_AWAY)))
        .map(|c| format!("{c:?}"))
        .take(5)
        .collect();
    eprintln!(
        "sigterm: {CONNECTIONS_2} connections opened ({idle} in {opened_in:?}); exited \
         {exited:?} after SIGTERM; {going_away} got close {GOING_AWAY}"
    );
    failures.check(going_away == CONNECTIONS_2, || {
        format!(
            "{going_away} of {CONNECTIONS_2} connections got close {GOING_AWAY}; others \
             (first 5): {others:?}"
        )
    });
    failures.check(exited <= EXIT_WITHIN, || {
        format!("exited {exited:?} after SIGTERM")
    });

    // Restart on the same data; the whole history, read back over WebSocket.
    ringchat.restart();
    let reader = Conn::open(ringchat.addr, &reader_cookie);
    let stored: Vec<Msg> = (0..ROOMS.len())
        .flat_map(|room| catch_up("reader", &reader, room, &[]).0)
        .collect();
    let attempted: HashSet<&str> = batches
        .iter()
        .flat_map(|b| b.contents.iter().map(String::as_str))
        .collect();
    let mut acknowledged: HashSet<String> = HashSet::new();
    for conn in &conns {
        conn.with(|s| acknowledged.extend(s.contents.iter().cloned()));
    }
    let mut seen = HashSet::new();
    let duplicates: Vec<&str> = stored
        .iter()
        .map(|m| m.content.as_str())
        .filter(|c| !seen.insert(*c))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|c| !seen.contains(c.as_str()))
        .collect();
    let unexpected: Vec<&&str> = seen.iter().filter(|c| !attempted.contains(**c)).collect();
    eprintln!(
        "sigterm: attempted {}, acknowledged {}, read back {}: lost {}, unexpected {}, \
         duplicates {}; whole test {:?}",
        attempted.len(),
        acknowledged.len(),
        stored.len(),
        lost.len(),
        unexpected.len(),
        duplicates.len(),
        started.elapsed()
    );
    failures.check(!acknowledged.is_empty(), || "nothing acknowledged".into());
    failures.check(
        lost.is_empty() && unexpected.is_empty() && duplicates.is_empty(),
        || {
            format!(
                "lost {:?}, unexpected {:?}, duplicates {:?} (first 5 each)",
                &lost[..lost.len().min(5)],
                &unexpected[..unexpected.len().min(5)],
                &duplicates[..duplicates.len().min(5)]
            )
        },
    );
    failures.assert_none("sigterm");
}

// ---------------------------------------------------------------------------------------------
// 3. Connection caps under load.

const PER_CORE_MAX: usize = 128;
const CORES: usize = 2;
/// Threads connecting as fast as they can while the flood lasts.
const FLOODERS: usize = 4;
const FLOOD: Duration = Duration::from_secs(3);

/// Opens a connection and sends a request on it: the connection, answered (kept open), or
/// refused (closed without an answer) after how long.
fn attempt(addr: SocketAddr) -> Result<TcpStream, Duration> {
    let mut s = connect(addr);
    let start = Instant::now();
    match get(&mut s, "/healthz") {
        Ok((200, _)) => Ok(s),
        Ok((status, body)) => panic!("an attempt got {status}: {body}"),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Err(start.elapsed())
        }
        Err(e) => panic!("an attempt was neither answered nor refused: {e}"),
    }
}

#[test]
fn a_flood_over_the_connection_cap_is_refused_and_the_chat_keeps_pace() {
    let _turn = one_at_a_time();
    raise_open_files_limit();
    until_timing_holds("caps", connection_cap_once);
}

fn connection_cap_once() -> Failures {
    let started = Instant::now();
    let cap = PER_CORE_MAX.to_string();
    let ringchat = start_ringchat(&[
        "--connections-per-core-max",
        &cap,
        "--keep-alive-timeout",
        "60",
        "--keep-alive-max",
        "100000",
    ]);
    let addr = ringchat.addr;
    let load = ChatLoad::start(addr, "cap");
    // Fill both cores with idle keep-alive connections (SO_REUSEPORT spreads connections by a
    // hash, so one core may fill first: refusals on the way are expected).
    let mut held = Vec::new();
    let mut refused_filling = 0;
    while LOAD_CONNECTIONS + held.len() < PER_CORE_MAX * CORES {
        match attempt(addr) {
            Ok(s) => held.push(s),
            Err(_) => refused_filling += 1,
        }
        assert!(refused_filling < 10_000, "the cores never filled");
    }
    thread::sleep(WARM_UP);
    let baseline_from = Instant::now();
    thread::sleep(BASELINE);

    let flood_from = Instant::now();
    let flooding = Arc::new(AtomicBool::new(true));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let flooding = flooding.clone();
            thread::spawn(move || {
                let (mut refused, mut answered) = (Vec::new(), 0usize);
                while flooding.load(Ordering::Relaxed) {
                    match attempt(addr) {
                        Ok(_) => answered += 1,
                        Err(after) => refused.push(after),
                    }
                }
                (refused, answered)
            })
        })
        .collect();
    thread::sleep(FLOOD);
    flooding.store(false, Ordering::Relaxed);
    let flood_to = Instant::now();
    let mut refused = Vec::new();
    let mut answered = 0;
    for f in flooders {
        let (r, a) = f.join().expect("flooder");
        refused.extend(r);
        answered += a;
    }
    let batches = load.finish();

    let mut failures = Failures::default();
    let page = get(&mut held[0], "/metrics").expect("metrics").1;
    let counted = metric(&page, "ringchat_refused_connections_total{core=\"all\"}");
    eprintln!(
        "caps: {} refused while filling; flood: {} refused in {FLOOD:?} ({:.0}/s), {answered} \
         answered; refusal {}; server counted {counted} refusals",
        refused_filling,
        refused.len(),
        refused.len() as f64 / (flood_to - flood_from).as_secs_f64(),
        percentiles(refused.clone())
    );
    failures.check(answered == 0, || {
        format!("{answered} connections over the cap were served")
    });
    failures.check(refused.len() >= 100, || {
        format!("only {} refusals in the flood", refused.len())
    });
    failures.check(counted == (refused_filling + refused.len()) as u64, || {
        format!(
            "the server counted {counted} refusals, the clients saw {}",
            refused_filling + refused.len()
        )
    });
    check_p99(
        &mut failures,
        "caps: chat acknowledgements",
        acked_between(&batches, baseline_from, flood_from),
        acked_between(&batches, flood_from, flood_to),
    );
    for s in &mut held {
        failures.check(matches!(get(s, "/healthz"), Ok((200, _))), || {
            "a held connection was not served after the flood".into()
        });
    }
    eprintln!("caps: whole test {:?}", started.elapsed());
    failures
}

// ---------------------------------------------------------------------------------------------
// 4. Slowloris and slow body.

const SLOW_HTTP: usize = 1000;
const TIMEOUT_S: u64 = 2;
/// RELIABILITY.md: "closed at the timeout ± 1 s".
const TIMEOUT_TOLERANCE: Duration = Duration::from_secs(1);
/// A slow connection sends one more byte this often.
const TRICKLE: Duration = Duration::from_millis(250);
/// Threads driving the slow connections.
const TRICKLERS: usize = 4;
const PROBE_PACE: Duration = Duration::from_millis(10);

/// A connection sending its request a byte at a time.
struct Trickle {
    s: TcpStream,
    /// Whether it is past its head (a slow body) or still in it (slowloris).
    body: bool,
    /// When its timeout started: the connect for a head, the end of the head for a body.
    from: Instant,
    next: Instant,
    closed: Option<Instant>,
}

impl Trickle {
    fn open(addr: SocketAddr, body: bool) -> Trickle {
        let mut s = connect(addr);
        let mut from = Instant::now();
        if body {
            s.write_all(b"POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
                .expect("write a head");
            from = Instant::now();
        } else {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("write a head's start");
        }
        s.set_nonblocking(true).unwrap();
        Trickle {
            s,
            body,
            from,
            next: from + TRICKLE,
            closed: None,
        }
    }

    /// Sends its next byte when due; notes when the server closed it (anything it sent
    /// first is read and dropped).
    fn step(&mut self, now: Instant) {
        let mut buf = [0u8; 1024];
        let gone = match self.s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        if gone {
            self.closed = Some(now);
        } else if now >= self.next {
            self.next = now + TRICKLE;
            if self.s.write_all(b"x").is_err() {
                self.closed = Some(now);
            }
        }
    }
}

#[test]
fn slowloris_and_slow_bodies_are_closed_at_their_timeouts() {
    let _turn = one_at_a_time();
    raise_open_files_limit();
    until_timing_holds("slow HTTP", slow_http_once);
}

fn slow_http_once() -> Failures {
    let started = Instant::now();
    let timeout_s = TIMEOUT_S.to_string();
    let ringchat = start_ringchat(&["--header-timeout", &timeout_s, "--body-timeout", &timeout_s]);
    let addr = ringchat.addr;
    let load = ChatLoad::start(addr, "loris");
    let probing = Arc::new(AtomicBool::new(true));
    let probe = {
        let probing = probing.clone();
        thread::spawn(move || {
            let mut samples = Vec::new();
            while probing.load(Ordering::Relaxed) {
                let start = Instant::now();
                let answer = get(&mut connect(addr), "/healthz");
                samples.push((start, start.elapsed(), answer.map(|(status, _)| status)));
                thread::sleep(PROBE_PACE.saturating_sub(start.elapsed()));
            }
            samples
        })
    };
    thread::sleep(WARM_UP);
    let baseline_from = Instant::now();
    thread::sleep(BASELINE);

    let attack_from = Instant::now();
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<Trickle> = (t..SLOW_HTTP)
                    .step_by(TRICKLERS)
                    .map(|i| Trickle::open(addr, i % 2 == 1))
                    .collect();
                let last_from = conns.iter().map(|c| c.from).max().unwrap();
                let deadline = last_from + Duration::from_secs(TIMEOUT_S) + TIMEOUT_TOLERANCE * 2;
                while conns.iter().any(|c| c.closed.is_none()) && Instant::now() < deadline {
                    let now = Instant::now();
                    for c in conns.iter_mut().filter(|c| c.closed.is_none()) {
                        c.step(now);
                    }
                    thread::sleep(POLL);
                }
                conns
            })
        })
        .collect();
    let conns: Vec<Trickle> = tricklers
        .into_iter()
        .flat_map(|t| t.join().expect("trickler"))
        .collect();
    let attack_to = Instant::now();
    probing.store(false, Ordering::Relaxed);
    let samples = probe.join().expect("probe");
    let batches = load.finish();

    let mut failures = Failures::default();
    let timeout = Duration::from_secs(TIMEOUT_S);
    for body in [false, true] {
        let what = if body { "slow body" } else { "slowloris" };
        let mut after = Vec::new();
        let mut open = 0;
        for c in conns.iter().filter(|c| c.body == body) {
            match c.closed {
                Some(at) => after.push(at - c.from),
                None => open += 1,
            }
        }
        let early: Vec<&Duration> = after
            .iter()
            .filter(|a| **a + TIMEOUT_TOLERANCE < timeout)
            .collect();
        let late: Vec<&Duration> = after
            .iter()
            .filter(|a| **a > timeout + TIMEOUT_TOLERANCE)
            .collect();
        eprintln!(
            "{what}: {} connections closed after {}; {open} still open",
            after.len(),
            percentiles(after.clone())
        );
        failures.check(open == 0 && early.is_empty(), || {
            format!(
                "{what}: {open} not closed, {} closed before {TIMEOUT_S} s - \
                 {TIMEOUT_TOLERANCE:?} (first: {:?})",
                early.len(),
                early.first()
            )
        });
        // Late is measured from the outside (each trickler thread walks 250 sockets every
        // 10 ms), so it is a timing figure; never closed or closed early is not.
        failures.check_timing(late.is_empty(), || {
            format!(
                "{what}: {} closed after {TIMEOUT_S} s + {TIMEOUT_TOLERANCE:?} (first: {:?})",
                late.len(),
                late.first()
            )
        });
    }
    let failed: Vec<_> = samples
        .iter()
        .filter(|(_, _, status)| !matches!(status, Ok(200)))
        .collect();
    failures.check(failed.is_empty(), || {
        format!(
            "{} of {} probe requests failed (first {:?})",
            failed.len(),
            samples.len(),
            failed.first()
        )
    });
    let probe_between = |from: Instant, to: Instant| -> Vec<Duration> {
        samples
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .map(|(_, took, _)| *took)
            .collect()
    };
    check_p99(
        &mut failures,
        "slow HTTP: probe",
        probe_between(baseline_from, attack_from),
        probe_between(attack_from, attack_to),
    );
    check_p99(
        &mut failures,
        "slow HTTP: chat acknowledgements",
        acked_between(&batches, baseline_from, attack_from),
        acked_between(&batches, attack_from, attack_to),
    );
    eprintln!("slow HTTP: whole test {:?}", started.elapsed());
    failures
}
