//! Network faults (issue 10, the "Dead peer" row of shared/RELIABILITY.md's WebSocket section
//! and its Durability rows for Redis and MariaDB): a peer that goes silent without a FIN or a
//! reset, its packets dropped by iptables inside a private network namespace
//! ([`ringchat_proto_tests::netns`]) where the real binary, redis-server, MariaDB and the
//! clients all run on a loopback of their own. Every process stays up; only the packets stop.
//!
//! 1. **A chat client dropped** (`/api/ws`, logged in; `--ws-ping-interval` [`PING_INTERVAL`],
//!    `--ws-idle-timeout` [`IDLE_TIMEOUT`]; on io_uring and on epoll): the client answers the
//!    server's pings for longer than the idle timeout (pongs keep it open), then stops, and its
//!    connection's packets are dropped both ways. ringchat has no separate pong timeout: pings
//!    go out every ping interval and a connection that sent nothing, pongs included, for the
//!    idle timeout is shut down, so RELIABILITY.md's "ping interval + pong timeout" is the idle
//!    timeout counted from the last input that reached the server (docs/reliability.md's
//!    reading of the row). Asserted: the server's socket leaves ESTABLISHED (`ss` in the
//!    namespace, polled every [`POLL`]) at the last delivered pong + [`IDLE_TIMEOUT`] ±
//!    [`CLOSE_TOLERANCE`] (0.5 s); the dropped client never sees it (the FIN is dropped too);
//!    a second client posts throughout, every batch acknowledged, no gap between two
//!    acknowledgements longer than [`ALIVE_GAP_MAX`].
//!    **The no-pong variant** (no namespace needed, so it always runs): a client whose TCP is
//!    healthy but that never answers a ping is closed at its upgrade + [`IDLE_TIMEOUT`] ± 0.5 s
//!    after receiving the pings sent meanwhile.
//! 2. **Redis as a dead peer** (`--redis` + `--mysql`, `--redis-timeout` [`REDIS_TIMEOUT`]):
//!    [`REDIS_SENDERS`] clients post steadily; Redis's port is dropped for [`CUT`]. Every error
//!    is `STORE_UNAVAILABLE` and comes within [`REFUSAL_MAX`] of its batch: the code's figure,
//!    one Redis timeout plus [`DELIVERY_SLACK`] (each call ends within the timeout, and the
//!    posts queued behind a failed batch fail with it instead of waiting for a timeout of
//!    their own), which the timeout is chosen to keep within RELIABILITY.md's 1 s. (Before
//!    that rule a post could wait for the batch ahead of it and then for its own: 1.6 s was
//!    measured with a 0.8 s timeout.) Every sender is refused in the cut, no batch
//!    is left unanswered; each sender's first batch after the rules are removed is
//!    acknowledged within [`RECOVERY_MAX`] (2 s); the set check
//!    ([`ringchat_proto_tests::ledger`], read back with `XRANGE`) is all zero, and each client's
//!    rooms equal the streams. A refused message may still be stored (an `XADD` Redis ran
//!    whose reply was cut): it is attempted, so not unexpected, and it is delivered to everyone
//!    (the rooms are read back from the streams), possibly after its sender's later messages;
//!    the test counts such messages and prints them. Before ringchat reset a given-up Redis
//!    connection (`SO_LINGER` 0), every run had 2–8 of them: the `XADD`s written into the cut
//!    sat in the closed socket's send queue and ran when the drop lifted; now 0 in 4 runs.
//! 3. **MariaDB as a dead peer** (`--mysql-timeout` [`MYSQL_TIMEOUT`], 1 s, so the 503 that
//!    follows it has half the bound left for the way out): its port dropped for
//!    [`CUT`] while clients chat; every login and sign-up in the cut answers 503 within
//!    [`ACCOUNT_ANSWER_MAX`] (2 s); the chat keeps flowing (every batch acknowledged, the p99 in
//!    the cut at most twice the one before plus [`P99_SLACK`]); after the rules are removed,
//!    logins and sign-ups succeed again within [`RECOVERY_MAX`] on both cores; set check zero.
//!    The chat's latency figures are timing checks (`ringchat_proto_tests::timing`): a run that
//!    misses only them runs again on fresh servers, at most 3 times.
//!
//! Needs root, iproute2 and iptables: without them the namespace tests print `SKIPPED:` and
//! pass, unless `RINGCHAT_REQUIRE_NETNS=1` (then they fail). Figures are printed
//! (`cargo test -p ringchat-proto-tests --test faults -- --nocapture`). The clients are
//! `ringchat_proto_tests::chat_clients` (a reader thread per connection that answers pings, a
//! poster thread per client with one batch in flight), and for the peer whose pings matter a
//! raw client here ([`Heartbeat`]) built on the shared tests/common/chat_client.rs.

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chat_client::{masked_frame, read_frame, read_head, upgrade_request};
use ringchat_proto_tests::chat_clients::{
    AccountsInOutage, Batch, Client, Conn, Outcome, PASSWORD, Pace, Poster,
    accounts_until_recovered, ack_latencies, assert_matches_store, assert_only_store_unavailable,
    check_accounts_in_outage, check_chat_through_outage, one_at_a_time, percentiles, post_json,
    settle, settle_and_check, sign_up, start_ringchat,
};
use ringchat_proto_tests::ledger::Ledger;
use ringchat_proto_tests::netns::Netns;
use ringchat_proto_tests::timing::{Failures, until_timing_holds};
use ringchat_proto_tests::{MariaDb, Redis};

/// A close, a recovery, every client having all it should: things that take seconds.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often the tests look at the server's sockets.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// 1. WebSocket dead peers.

const PING_INTERVAL: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// RELIABILITY.md: "closed at ping interval + pong timeout ± 0.5 s".
const CLOSE_TOLERANCE: Duration = Duration::from_millis(500);
/// Pongs the dropped client answers before it goes silent: 2 s of them, more than the idle
/// timeout, so answering is seen to keep the connection open.
const PONGS_BEFORE_CUT: usize = 4;
/// The other client posts a batch every 50 ms; the longest wait between two of its
/// acknowledgements allowed while the dropped one is being timed out.
const ALIVE_GAP_MAX: Duration = Duration::from_millis(500);

/// What a [`Heartbeat`] connection saw.
#[derive(Default)]
struct Beats {
    /// Whether pings are answered right now.
    answering: bool,
    /// When the `hello` came.
    hello: Option<Instant>,
    pings: Vec<Instant>,
    /// When each pong was written (before the cut, each reached the server).
    pongs: Vec<Instant>,
    /// Data frames after `hello` (the other clients' messages).
    events: usize,
    /// When and how the connection ended, seen from this side.
    ended: Option<(Instant, String)>,
}

/// A chat WebSocket whose answers to pings the test switches on and off, with a reader thread
/// that records pings, pongs and the end. It never sends anything but pongs.
struct Heartbeat {
    /// Its own (client) port: what the cut matches and `ss` looks for.
    port: u16,
    /// When the upgrade request was written: its last input to the server while it never
    /// answers.
    upgraded: Instant,
    beats: Arc<(Mutex<Beats>, Condvar)>,
    socket: TcpStream,
}

impl Heartbeat {
    fn open(addr: SocketAddr, cookie: &str, answering: bool) -> Heartbeat {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        let upgraded = Instant::now();
        s.write_all(upgrade_request(addr, "/api/ws", &format!("Cookie: {cookie}\r\n")).as_bytes())
            .expect("write the upgrade");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let head = read_head(&mut s).expect("read the upgrade's answer");
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        s.set_read_timeout(None).unwrap();
        let beats = Arc::new((
            Mutex::new(Beats {
                answering,
                ..Beats::default()
            }),
            Condvar::new(),
        ));
        let (reader, seen) = (s.try_clone().expect("clone the socket"), beats.clone());
        thread::spawn(move || beat(reader, &seen));
        Heartbeat {
            port: s.local_addr().expect("local address").port(),
            upgraded,
            beats,
            socket: s,
        }
    }

    fn wait_for<T>(&self, deadline: Instant, mut ready: impl FnMut(&Beats) -> Option<T>) -> T {
        let (lock, changed) = &*self.beats;
        let mut beats = lock.lock().unwrap();
        loop {
            if let Some(value) = ready(&beats) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "heartbeat client: not there by the deadline ({} pings, {} pongs, ended {:?})",
                beats.pings.len(),
                beats.pongs.len(),
                beats.ended
            );
            beats = changed.wait_timeout(beats, left).unwrap().0;
        }
    }

    /// Stops answering; when the last pong was written. Holding the lock the reader answers
    /// under, so no pong is written after this returns until [`Heartbeat::answer`].
    fn stop_answering(&self) -> Instant {
        let mut beats = self.beats.0.lock().unwrap();
        beats.answering = false;
        *beats.pongs.last().expect("answered pings before")
    }

    fn answer(&self) {
        self.beats.0.lock().unwrap().answering = true;
    }

    fn with<T>(&self, f: impl FnOnce(&Beats) -> T) -> T {
        f(&self.beats.0.lock().unwrap())
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// The [`Heartbeat`] reader: answers pings while told to, until the connection ends.
fn beat(mut s: TcpStream, seen: &(Mutex<Beats>, Condvar)) {
    let (lock, changed) = seen;
    let why = loop {
        let (_, op, payload) = match read_frame(&mut s) {
            Ok(frame) => frame,
            Err(e) => break format!("read: {e}"),
        };
        let now = Instant::now();
        let mut beats = lock.lock().unwrap();
        match op {
            9 => {
                beats.pings.push(now);
                if beats.answering {
                    if let Err(e) = s.write_all(&masked_frame(true, 10, &payload)) {
                        break format!("write a pong: {e}");
                    }
                    beats.pongs.push(Instant::now());
                }
            }
            8 => break format!("close frame {payload:?}"),
            _ if beats.hello.is_none() => {
                let event: Value = serde_json::from_slice(&payload).unwrap_or_default();
                if event["type"] != "hello" {
                    break format!("expected hello, got opcode {op}: {event}");
                }
                beats.hello = Some(now);
            }
            _ => beats.events += 1,
        }
        changed.notify_all();
    };
    lock.lock().unwrap().ended = Some((Instant::now(), why));
    changed.notify_all();
}

/// Whether this namespace holds an established TCP connection from `local` to `peer` (ports on
/// its loopback), by `ss`.
fn established(local: u16, peer: u16) -> bool {
    let out = Command::new("ss")
        .args(["-H", "-t", "-n", "state", "established"])
        .args(["sport", "=", &format!(":{local}"), "and"])
        .args(["dport", "=", &format!(":{peer}")])
        .output()
        .expect("run ss (iproute2)");
    assert!(
        out.status.success(),
        "ss: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    !out.stdout.is_empty()
}

/// The dead-peer flags of the WebSocket tests, on backend `io`.
fn heartbeat_flags(io: &str) -> Vec<String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    vec![
        "--io".into(),
        io.into(),
        "--ws-ping-interval".into(),
        ms(PING_INTERVAL),
        "--ws-idle-timeout".into(),
        ms(IDLE_TIMEOUT),
    ]
}

/// Test 1 on backend `io`: a logged-in chat client's packets dropped (see the file's comment).
fn dropped_chat_client_is_closed_at_the_idle_timeout(io: &str) {
    let test = format!("dropped chat client ({io})");
    let Some(ns) = Netns::create_or_skip(&test) else {
        return;
    };
    let _turn = one_at_a_time();
    ns.run(|| {
        let flags = heartbeat_flags(io);
        let ringchat = start_ringchat(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        let addr = ringchat.addr;
        let clients = Client::sign_up_all(&[addr], &["alive".into(), "dropped".into()]);
        let conn = Conn::open(addr, &clients[0].cookie);
        let poster = Poster::start(
            &clients[0],
            &conn,
            Pace::Interval(Duration::from_millis(50)),
            2,
        );

        let peer = Heartbeat::open(addr, &clients[1].cookie, true);
        peer.wait_for(Instant::now() + DEADLINE, |b| {
            (b.hello.is_some() && b.pongs.len() >= PONGS_BEFORE_CUT).then_some(())
        });
        assert!(
            established(addr.port(), peer.port),
            "{test}: the server dropped a client that answered {PONGS_BEFORE_CUT} pings"
        );
        let events = peer.with(|b| b.events);
        assert!(
            events > 0,
            "{test}: the client to drop received none of the other's messages"
        );
        let last_input = peer.stop_answering();
        let cut = ns.cut(peer.port);
        let cut_at = cut.since;
        // From the client's side nothing is wrong: it would answer any ping that reached it.
        peer.answer();

        let closed = loop {
            let now = Instant::now();
            if !established(addr.port(), peer.port) {
                break now;
            }
            assert!(
                now < last_input + IDLE_TIMEOUT + DEADLINE,
                "{test}: the server still holds the dropped connection {:?} after its last pong",
                now - last_input
            );
            thread::sleep(POLL);
        };
        let client_view = peer.with(|b| b.ended.clone());
        let (pings, pongs) = peer.with(|b| (b.pings.len(), b.pongs.len()));
        cut.restore();
        let batches = poster.finish();

        let since_last = closed - last_input;
        eprintln!(
            "{test}: closed by the server {since_last:?} after the last pong that reached it \
             ({:?} after the cut; idle timeout {IDLE_TIMEOUT:?}, ping interval \
             {PING_INTERVAL:?}); the client saw {pings} pings and wrote {pongs} pongs in all",
            closed - cut_at,
        );
        assert!(
            client_view.is_none(),
            "{test}: the dropped client saw its connection end: {client_view:?} (the cut leaked)"
        );
        assert!(
            since_last + CLOSE_TOLERANCE >= IDLE_TIMEOUT
                && since_last <= IDLE_TIMEOUT + CLOSE_TOLERANCE,
            "{test}: closed {since_last:?} after the last input (idle timeout {IDLE_TIMEOUT:?} \
             ± {CLOSE_TOLERANCE:?})"
        );

        // The other client chatted throughout.
        let acks: Vec<Instant> = batches
            .iter()
            .map(|b| match b.outcome {
                Outcome::Acked(at) => at,
                other => panic!("{test}: the other client's batch got {other:?}: {b:?}"),
            })
            .collect();
        let gap = acks
            .windows(2)
            .filter(|w| w[1] >= last_input && w[0] <= closed)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_else(|| panic!("{test}: the other client posted nothing meanwhile"));
        let closed_alive = conn.with(|s| s.closed.clone());
        eprintln!(
            "{test}: the other client: {} batches acknowledged, latency {}, longest gap \
             between acknowledgements around the dead peer {gap:?}",
            batches.len(),
            percentiles(ack_latencies(&batches))
        );
        assert!(closed_alive.is_none(), "{test}: {closed_alive:?}");
        assert!(
            gap <= ALIVE_GAP_MAX,
            "{test}: the other client waited {gap:?} for an acknowledgement (max \
             {ALIVE_GAP_MAX:?})"
        );
    });
}

#[test]
fn a_chat_client_whose_packets_are_dropped_is_closed_at_the_idle_timeout_uring() {
    dropped_chat_client_is_closed_at_the_idle_timeout("uring");
}

#[test]
fn a_chat_client_whose_packets_are_dropped_is_closed_at_the_idle_timeout_epoll() {
    dropped_chat_client_is_closed_at_the_idle_timeout("epoll");
}

/// The no-pong variant on `io`: TCP healthy, pings never answered.
fn silent_chat_client_is_closed_at_the_idle_timeout(io: &str) {
    let _turn = one_at_a_time();
    let flags = heartbeat_flags(io);
    let ringchat = start_ringchat(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let cookie = sign_up(ringchat.addr, "silent");
    let peer = Heartbeat::open(ringchat.addr, &cookie, false);
    let (ended, why) = peer.wait_for(peer.upgraded + IDLE_TIMEOUT + DEADLINE, |b| b.ended.clone());
    let (hello, pings) = peer.with(|b| (b.hello, b.pings.clone()));
    let after = ended - peer.upgraded;
    eprintln!(
        "silent chat client ({io}): closed {after:?} after its upgrade ({why}); pings at {:?}",
        pings.iter().map(|p| *p - peer.upgraded).collect::<Vec<_>>()
    );
    assert!(hello.is_some(), "no hello before the close ({why})");
    let expected_pings = (IDLE_TIMEOUT.as_millis() / PING_INTERVAL.as_millis()) as usize - 1;
    assert!(
        pings.len() >= expected_pings,
        "{} pings before the close, expected at least {expected_pings}",
        pings.len()
    );
    assert!(
        after + CLOSE_TOLERANCE >= IDLE_TIMEOUT && after <= IDLE_TIMEOUT + CLOSE_TOLERANCE,
        "closed {after:?} after the upgrade (idle timeout {IDLE_TIMEOUT:?} ± {CLOSE_TOLERANCE:?})"
    );
}

#[test]
fn a_chat_client_that_never_answers_pings_is_closed_at_the_idle_timeout_uring() {
    silent_chat_client_is_closed_at_the_idle_timeout("uring");
}

#[test]
fn a_chat_client_that_never_answers_pings_is_closed_at_the_idle_timeout_epoll() {
    silent_chat_client_is_closed_at_the_idle_timeout("epoll");
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. The stores as dead peers.

/// How long a store's packets are dropped.
const CUT: Duration = Duration::from_secs(3);
/// RELIABILITY.md: "the first write succeeds within 2 s of its return", and MariaDB's
/// "recovery within 2 s".
const RECOVERY_MAX: Duration = Duration::from_secs(2);
/// Each sender posts a batch every 20 ms at most.
const PACE: Pace = Pace::Interval(Duration::from_millis(20));

const REDIS_SENDERS: usize = 4;
/// `--redis-timeout`: a call on the silent connection fails after this long. Chosen so that
/// one timeout plus [`DELIVERY_SLACK`] is RELIABILITY.md's 1 s while two timeouts (a post
/// waiting for the batch ahead of it and then for its own) are not.
const REDIS_TIMEOUT: Duration = Duration::from_millis(600);
/// From the store's error to the error event at the client: the server's timer, the event's
/// way out and the client's reader thread, on two cores shared with everything else (with
/// 100 ms, the slowest measured was 804 ms against 900 ms).
const DELIVERY_SLACK: Duration = Duration::from_millis(400);
const _: () = assert!(REDIS_TIMEOUT.as_millis() * 2 > 1000);
/// The code's figure for a post's error: its room's batch in flight times out, and the posts
/// queued behind it fail with it.
const REFUSAL_MAX: Duration = REDIS_TIMEOUT.saturating_add(DELIVERY_SLACK);
// RELIABILITY.md: "senders get an error within 1 s while it is down".
const _: () = assert!(REFUSAL_MAX.as_millis() <= 1000);

#[test]
fn redis_as_a_dead_peer_senders_get_errors_then_recover_losing_nothing() {
    let test = "redis dead peer";
    let Some(ns) = Netns::create_or_skip(test) else {
        return;
    };
    let _turn = one_at_a_time();
    ns.run(|| {
        let started = Instant::now();
        let mariadb = MariaDb::start();
        let redis = Redis::start();
        let timeout = format!("{}ms", REDIS_TIMEOUT.as_millis());
        let ringchat = start_ringchat(&[
            "--redis",
            &redis.url(),
            "--mysql",
            &mariadb.url(),
            "--redis-timeout",
            &timeout,
        ]);
        let addr = ringchat.addr;
        let names: Vec<String> = (0..REDIS_SENDERS).map(|i| format!("rdrop{i}")).collect();
        let clients = Client::sign_up_all(&[addr], &names);
        let conns = Client::open_all(&[addr], &clients);
        let posters = Poster::start_all(&clients, &conns, PACE, 3);
        assert!(
            conns[0].wait_for_counts(Instant::now() + DEADLINE, [50, 50]),
            "{test}: no traffic"
        );

        let cut = ns.cut(redis.port);
        let cut_at = cut.since;
        thread::sleep(CUT);
        let up = cut.restore();
        let back: Vec<Duration> = posters
            .iter()
            .zip(&names)
            .map(|(poster, name)| {
                let first = poster.first_ack_since(up, up + DEADLINE);
                first.unwrap_or_else(|| panic!("{test}: {name} not acknowledged again")) - up
            })
            .collect();
        // Steady again for a moment, then stop.
        let counts = conns[0].with(|s| s.counts());
        assert!(
            conns[0].wait_for_counts(Instant::now() + DEADLINE, counts.map(|n| n + 30)),
            "{test}: traffic stalled after the cut"
        );
        let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();

        let error_ids = assert_only_store_unavailable(&conns);
        let mut refusals = Vec::new();
        let mut refused_in_cut = vec![0usize; REDIS_SENDERS];
        let mut refused_contents: HashSet<&str> = HashSet::new();
        for (sender, batches) in all.iter().enumerate() {
            for b in batches {
                match b.outcome {
                    Outcome::Acked(_) => {}
                    Outcome::Refused(at) => {
                        assert!(
                            at >= cut_at && b.sent <= up + RECOVERY_MAX,
                            "{test}: refused outside the cut: sent {:?}, answered {:?} after it",
                            b.sent.checked_duration_since(cut_at),
                            at - cut_at
                        );
                        refusals.push(at - b.sent);
                        refused_in_cut[sender] += usize::from(b.sent < up);
                        refused_contents.extend(b.contents.iter().map(String::as_str));
                    }
                    Outcome::Unanswered | Outcome::Lost => panic!(
                        "{test}: a batch got {:?} (sent {:?} after the cut began)",
                        b.outcome,
                        b.sent.checked_duration_since(cut_at)
                    ),
                }
                if b.sent >= cut_at && b.sent < up {
                    assert!(
                        matches!(b.outcome, Outcome::Refused(_)),
                        "{test}: acknowledged while Redis was unreachable: {b:?}"
                    );
                }
            }
        }

        // Delivery settled; every connection holds each stream, in its order.
        let watched: Vec<(&str, &Conn, [usize; 2])> = names
            .iter()
            .zip(&conns)
            .map(|(name, conn)| (name.as_str(), &**conn, [0, 0]))
            .collect();
        let streams = settle(redis.port, &watched, Instant::now() + DEADLINE);
        for (name, conn, _) in &watched {
            let rooms = conn.with(|s| s.rooms.clone());
            for room in 0..2 {
                assert_matches_store(name, room, &rooms[room], &streams[room]);
            }
        }
        let refused_but_stored: Vec<&str> = streams
            .iter()
            .flatten()
            .map(|(_, content)| content.as_str())
            .filter(|c| refused_contents.contains(c))
            .collect();

        eprintln!(
            "{test}: Redis's port dropped for {CUT:?} (--redis-timeout {REDIS_TIMEOUT:?}); \
             errors {error_ids:?}, per sender in the cut {refused_in_cut:?}; time to the error \
             {}; every sender acknowledged again within {:?} of the rules' removal ({back:?}); \
             {} refused messages stored after all (a timed-out XADD delivered when the drop \
             lifted), first {:?}",
            percentiles(refusals.clone()),
            back.iter().max().expect("senders"),
            refused_but_stored.len(),
            &refused_but_stored[..refused_but_stored.len().min(3)],
        );
        for (name, n) in names.iter().zip(&refused_in_cut) {
            assert!(*n > 0, "{test}: {name} got no error in the cut");
        }
        let slowest = refusals.iter().max().copied().unwrap_or_default();
        assert!(
            slowest <= REFUSAL_MAX,
            "{test}: an error came {slowest:?} after its batch (max {REFUSAL_MAX:?})"
        );
        let slowest_back = back.iter().max().copied().unwrap_or_default();
        assert!(
            slowest_back <= RECOVERY_MAX,
            "{test}: a sender's first acknowledgement came {slowest_back:?} after the drop \
             lifted (max {RECOVERY_MAX:?})"
        );
        Ledger::chat(all.iter().flatten(), &conns, &streams).assert_clean(test);
        eprintln!("{test}: whole test {:?}", started.elapsed());
    });
}

const MARIADB_SENDERS: usize = 3;
/// RELIABILITY.md: login and sign-up answer 503 within 2 s.
const ACCOUNT_ANSWER_MAX: Duration = Duration::from_secs(2);
/// `--mysql-timeout` (a statement's bound, connecting included): half of
/// [`ACCOUNT_ANSWER_MAX`], leaving the rest for the answer's way out on two shared cores (with
/// the default 1.5 s the slowest 503 measured was 1.65 s).
const MYSQL_TIMEOUT: Duration = Duration::from_secs(1);
/// Recovered: this many logins and as many sign-ups in a row succeed, on whichever core.
const RECOVERED_IN_A_ROW: usize = 6;
/// How long the chat runs before the cut, for its baseline.
const BASELINE: Duration = Duration::from_millis(1500);
/// The chat's p99 in the cut at most twice the one before, plus this much (a p99 of a few
/// milliseconds on a shared 2-core machine moves by that much between two windows; a delivery
/// waiting on MySQL would wait its [`MYSQL_TIMEOUT`]).
const P99_SLACK: Duration = Duration::from_millis(20);

/// A login (even `k`) or a sign-up (odd `k`, a fresh name): its kind, status and duration.
fn account_request(addr: SocketAddr, k: usize, tag: &str) -> (&'static str, u16, Duration) {
    let start = Instant::now();
    let (kind, path, body) = if k.is_multiple_of(2) {
        (
            "login",
            "/api/login",
            json!({"email": "mlogin@example.com", "password": PASSWORD}),
        )
    } else {
        let name = format!("m{tag}{k:03}");
        (
            "sign-up",
            "/api/create-account",
            json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
        )
    };
    let (status, _) = post_json(addr, path, &body);
    (kind, status, start.elapsed())
}

#[test]
fn mariadb_as_a_dead_peer_accounts_answer_503_and_chat_keeps_flowing() {
    let test = "mariadb dead peer";
    let Some(ns) = Netns::create_or_skip(test) else {
        return;
    };
    let _turn = one_at_a_time();
    until_timing_holds(test, || ns.run(|| mariadb_dead_peer_once(test, &ns)));
}

/// One cut on fresh servers; the chat's latency figures are timing checks (run again when they
/// alone miss), every other check is not.
fn mariadb_dead_peer_once(test: &str, ns: &Netns) -> Failures {
    let started = Instant::now();
    let mut failures = Failures::default();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let mysql_timeout = format!("{}ms", MYSQL_TIMEOUT.as_millis());
    let ringchat = start_ringchat(&[
        "--redis",
        &redis.url(),
        "--mysql",
        &mariadb.url(),
        "--mysql-timeout",
        &mysql_timeout,
    ]);
    let addr = ringchat.addr;
    let names: Vec<String> = (0..MARIADB_SENDERS).map(|i| format!("mdrop{i}")).collect();
    let clients = Client::sign_up_all(&[addr], &names);
    sign_up(addr, "mlogin");
    assert_eq!(account_request(addr, 0, "").1, 204, "login before the cut");
    let conns = Client::open_all(&[addr], &clients);
    let posters = Poster::start_all(&clients, &conns, PACE, 3);
    // Every author's messages delivered to every reader: their names are known, so the
    // chat does not need MySQL any more.
    for conn in &conns {
        let known = conn.wait_for(Instant::now() + DEADLINE, |s| {
            (0..2)
                .all(|room| {
                    let authors: HashSet<&str> =
                        s.rooms[room].iter().map(|m| m.user.as_str()).collect();
                    authors.len() == MARIADB_SENDERS
                })
                .then_some(())
        });
        assert!(known.is_some(), "{test}: not every author delivered yet");
    }
    let baseline_from = Instant::now();
    thread::sleep(BASELINE);

    let cut = ns.cut(mariadb.port);
    let cut_at = cut.since;
    // Logins and sign-ups side by side, each kind one after another, until the cut ends.
    let answers: Vec<(&str, u16, Duration)> = thread::scope(|scope| {
        let kinds: Vec<_> = (0..2)
            .map(|kind| {
                scope.spawn(move || {
                    let mut answers = Vec::new();
                    let mut k = kind;
                    while cut_at.elapsed() < CUT {
                        answers.push(account_request(addr, k, "cut"));
                        k += 2;
                    }
                    answers
                })
            })
            .collect();
        kinds
            .into_iter()
            .flat_map(|h| h.join().expect("account requests"))
            .collect()
    });
    let up = cut.restore();
    let after = accounts_until_recovered(test, up, DEADLINE, RECOVERED_IN_A_ROW, |k| {
        let (kind, status, _) = account_request(addr, k, "up");
        (kind, status)
    });
    let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();
    let batches: Vec<&Batch> = all.iter().flatten().collect();

    eprintln!(
        "{test}: MariaDB's port dropped for {:?}; in the cut (kind, status, time to answer) \
         {answers:?}; after it (kind, status, answered after the drop lifted) {after:?}",
        up - cut_at
    );
    check_accounts_in_outage(
        &mut failures,
        &AccountsInOutage {
            test,
            during: &answers,
            after: &after,
            each_kind_min: 2,
            answer_max: ACCOUNT_ANSWER_MAX,
            recovery_max: RECOVERY_MAX,
        },
    );
    // The chat kept flowing through the cut.
    check_chat_through_outage(
        &mut failures,
        test,
        &batches,
        baseline_from,
        (cut_at, up),
        P99_SLACK,
    );

    let watched: Vec<(&str, &Conn)> = names
        .iter()
        .zip(&conns)
        .map(|(name, conn)| (name.as_str(), &**conn))
        .collect();
    let streams = settle_and_check(redis.port, &watched, Instant::now() + DEADLINE);
    Ledger::chat(batches.iter().copied(), &conns, &streams).assert_clean(test);
    eprintln!("{test}: whole test {:?}", started.elapsed());
    failures
}
