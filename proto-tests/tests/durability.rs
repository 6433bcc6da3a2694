//! Durability (issue 10, the "Durability" rows of shared/RELIABILITY.md): ringchat under load
//! while the stores behind it crash, and when it crashes itself, against real peers
//! (redis-server, MariaDB) and the real binary. Three scenarios:
//!
//! 1. **kill -9 of redis-server, ten times, at about 1,000 messages/s** (one instance,
//!    `--threads 2`, `--redis` with `appendonly yes` and `appendfsync everysec`, `--mysql`):
//!    Redis is killed, left down for [`REDIS_DOWN`], started again on the same port and
//!    directory. Posts while it is down get an error event within [`REFUSAL_MAX`] (1 s); every
//!    sender is acknowledged again within [`RECOVERY_MAX`] (2 s) of Redis answering again; at
//!    the end the set check below holds and every client's sequence per room is the stream.
//!    `everysec` is enough here: a process kill leaves what Redis wrote to its log in the page
//!    cache, and only an OS crash would tell it from `always` (RELIABILITY.md's note).
//! 2. **MariaDB down** (kill -9, then started again) for [`MARIADB_DOWN`] = 5 s, where
//!    RELIABILITY.md says 30 s: the behaviour is reached on the first request (pooled
//!    connections fail at once, new ones are refused by the closed port), so the longer outage
//!    would only cost CI time. Each login and sign-up in the outage answers 503 within 2 s;
//!    chat between clients already connected (their names already cached) keeps flowing, with
//!    its acknowledgement p99 at most twice the one before the outage (plus [`P99_SLACK`]);
//!    after MariaDB answers again, logins and sign-ups work again within 2 s on both cores.
//!    Not covered: a MariaDB that hangs (SIGSTOP) rather than goes away; ringchat then answers
//!    after its `--mysql-timeout` (1.5 s by default, below the 2 s bound; measured at 2 s
//!    when that default was 2 s).
//! 3. **kill -9 of ringchat mid-load, then clients resync**, on the embedded store
//!    (`--data-dir`, no Redis) and on Redis + MySQL, [`KILLS_3`] times each: the instance is
//!    killed while every client posts, started again on the same port with the same data, and
//!    the clients reconnect at once, polling; each is back (its `hello`, and
//!    `requestRoomHistory` pages when it needs them) within 5 s of the restart. Two clients
//!    come back only after more than a page per room has gone by, so their catch-up needs
//!    history pages. Every client's sequence per room (what it had before each kill, what it
//!    caught up on, what came live after) is the store's whole room: no gap, no duplicate.
//!
//! **The set check** (RELIABILITY.md's habit; `ringchat_proto_tests::ledger`): a message is
//! *attempted* when a client wrote it in a `clientMessages` event; *acknowledged* when it came
//! back to any client in `serverMessages` (the sender's copy is its acknowledgement; an error
//! event refuses a batch); *read back* is the store's content at the end, read from the outside
//! (`XRANGE`, or the embedded SQLite file with the server stopped). lost = acknowledged − read
//! back, unexpected = read back − attempted, duplicates = contents read back twice: all zero. A
//! refused or unanswered message that was stored anyway is attempted, so it is not unexpected.
//!
//! Figures are printed (`cargo test --test durability -- --nocapture`). The tests take turns:
//! each loads both cores with the server, the peers and a dozen client threads. The time
//! bounds are RELIABILITY.md's, asserted as they are (only the p99 comparison has a slack); a
//! peer "answers again" when it answers the harness's readiness probe, polled every 20 ms. The
//! MariaDB scenario's chat latency figures (the p99 and the batch count in the outage against
//! the baseline) are timing checks (`ringchat_proto_tests::timing`): a run that misses only
//! them runs again on fresh servers, at most 3 times; CI once failed on 42.03 ms against 42.0.
//!
//! The clients are `ringchat_proto_tests::chat_clients`, shared with tests/scale_out.rs
//! (blocking sockets, a reader thread per connection that answers pings and records events, a
//! poster thread per client with one batch in flight), here with paced posting and connection
//! attempts that fail instead of panicking (reconnecting after a kill); killing and restarting
//! ringchat on its own address is `ringchat_proto_tests::crash`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;

use ringchat_proto_tests::chat_clients::{
    AccountsInOutage, Batch, Client, Conn, Msg, Outcome, PAGE, PASSWORD, Pace, Poster, QUIET,
    ROOMS, Room, accounts_until_recovered, ack_latencies, assert_matches_store,
    assert_no_surprises, assert_none_refused, assert_only_store_unavailable, catch_up,
    check_accounts_in_outage, check_chat_through_outage, check_sequence, hello_rooms, id_key,
    one_at_a_time, percentiles, post_json, settle_and_check, sign_up, start_ringchat, stream,
};
use ringchat_proto_tests::ledger::Ledger;
use ringchat_proto_tests::timing::{Failures, until_timing_holds};
use ringchat_proto_tests::{MariaDb, Redis};

/// A killed server's connections ending.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);
/// Everything stored has reached every client; a recovery that should take seconds.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
/// Every sender posts a batch every 20 ms at most.
const PACE: Pace = Pace::Interval(Duration::from_millis(20));

// ---------------------------------------------------------------------------------------------
// The store read back from the outside, and the set check.

/// A room as the embedded store holds it, read from its SQLite file (the server stopped: it
/// holds an exclusive lock while it runs).
fn embedded_room(data_dir: &Path, room: usize) -> Room {
    let db = rusqlite::Connection::open(data_dir.join("ringchat.sqlite3"))
        .expect("open the embedded database");
    let mut query = db
        .prepare("SELECT ms, seq, content FROM messages WHERE room = ?1 ORDER BY ms, seq")
        .expect("prepare");
    query
        .query_map([ROOMS[room]], |row| {
            let (ms, seq, content): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            Ok((format!("{ms}-{seq}"), content))
        })
        .expect("query messages")
        .collect::<Result<_, _>>()
        .expect("read messages")
}

/// The set check ([`Ledger::chat`]): attempted = every content `batches` wrote, whatever
/// answered them; acknowledged = every content that came back in `serverMessages` to any of
/// `conns`. Prints the figures and asserts lost = unexpected = duplicates = 0.
fn set_check<'a>(
    what: &str,
    batches: impl IntoIterator<Item = &'a Batch>,
    conns: &[Arc<Conn>],
    read_back: &[Room; 2],
) {
    Ledger::chat(batches, conns, read_back).assert_clean(what);
}

/// Each connection with its client's name, for [`settle_and_check`].
fn by_name<'a>(names: &'a [String], conns: &'a [Arc<Conn>]) -> Vec<(&'a str, &'a Conn)> {
    names
        .iter()
        .map(String::as_str)
        .zip(conns.iter().map(|c| &**c))
        .collect()
}

/// Sent to acknowledged, of the acknowledged batches sent in `[from, to)`, sorted.
fn ack_latencies_between(batches: &[&Batch], from: Instant, to: Instant) -> Vec<Duration> {
    ack_latencies(
        batches
            .iter()
            .copied()
            .filter(|b| b.sent >= from && b.sent < to),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of redis-server, ten times, at about 1,000 messages/s.

const KILLS: usize = 10;
/// Between the kill and the restart: a short pause, as a supervisor's restart would take.
const REDIS_DOWN: Duration = Duration::from_millis(300);
/// Steady traffic between one recovery and the next kill.
const REDIS_UP: Duration = Duration::from_millis(700);
const SENDERS_1: usize = 8;
/// 8 senders, a batch of 1 to 4 messages (2.5 on average) every 20 ms each ([`PACE`]): 1,000
/// messages/s offered, when the acknowledgements keep up.
const BATCH_MAX_1: usize = 4;
/// RELIABILITY.md: "senders get an error within 1 s while it is down".
const REFUSAL_MAX: Duration = Duration::from_secs(1);
/// RELIABILITY.md: "the first write succeeds within 2 s of its return"; asserted for every
/// sender, not only the first one.
const RECOVERY_MAX: Duration = Duration::from_secs(2);

/// One kill of redis-server.
struct Outage {
    killed: Instant,
    /// redis-server answers PING again.
    up: Instant,
    /// Per sender: from `up` to the acknowledgement of its first batch sent after `up`.
    back: Vec<Duration>,
}

#[test]
fn redis_killed_ten_times_under_load_loses_nothing_acknowledged() {
    let started = Instant::now();
    let _turn = one_at_a_time();
    let mariadb = MariaDb::start();
    // appendonly yes, appendfsync everysec (the harness's, as the reference runs it).
    let mut redis = Redis::start();
    let ringchat = start_ringchat(&["--redis", &redis.url(), "--mysql", &mariadb.url()]);
    let addr = ringchat.addr;

    let names: Vec<String> = (0..SENDERS_1).map(|i| format!("redis{i:02}")).collect();
    let clients = Client::sign_up_all(&[addr], &names);
    let conns = Client::open_all(&[addr], &clients);
    let posters = Poster::start_all(&clients, &conns, PACE, BATCH_MAX_1);
    assert!(
        conns[0].wait_for_counts(Instant::now() + DELIVERY_DEADLINE, [200, 200]),
        "no traffic: {:?}",
        conns[0].with(|s| s.counts())
    );

    let loading = Instant::now();
    let mut outages: Vec<Outage> = Vec::new();
    for kill in 0..KILLS {
        let killed = Instant::now();
        redis.kill9();
        thread::sleep(REDIS_DOWN);
        let restarting = Instant::now();
        redis.restart();
        let up = Instant::now();
        let back: Vec<Duration> = posters
            .iter()
            .zip(&names)
            .map(|(poster, name)| {
                let first = poster.first_ack_since(up, up + DELIVERY_DEADLINE);
                let first = first.unwrap_or_else(|| {
                    panic!(
                        "kill {}: {name} had nothing acknowledged within {DELIVERY_DEADLINE:?} \
                         of Redis answering again",
                        kill + 1
                    )
                });
                first - up
            })
            .collect();
        eprintln!(
            "redis kill {}: down {:?}, answering {:?} after the restart began, every sender \
             acknowledged again within {:?} of that",
            kill + 1,
            restarting - killed,
            up - restarting,
            back.iter().max().expect("senders")
        );
        outages.push(Outage { killed, up, back });
        thread::sleep(REDIS_UP);
    }
    let loaded = loading.elapsed();
    let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();
    let batches: Vec<&Batch> = all.iter().flatten().collect();

    // Delivery: every connection holds each stream, in order, once; nothing dropped them.
    let watched = by_name(&names, &conns);
    let streams = settle_and_check(redis.port, &watched, Instant::now() + DELIVERY_DEADLINE);
    for (name, conn) in &watched {
        let closed = conn.with(|s| s.closed.clone());
        assert!(closed.is_none(), "{name}: disconnected: {closed:?}");
    }

    // The answers: refusals within 1 s of the send (or of the kill, for a batch in flight
    // then), only while Redis was down or coming back; every batch sent while it was down
    // answered within 1 s.
    let error_ids = assert_only_store_unavailable(&conns);
    let mut refusals = Vec::new();
    let mut in_outages = Vec::new();
    let mut refused_per_outage = vec![0usize; KILLS];
    for b in &batches {
        match b.outcome {
            Outcome::Acked(_) => {}
            Outcome::Refused(at) => {
                let k = outages
                    .iter()
                    .rposition(|o| o.killed <= at)
                    .unwrap_or_else(|| panic!("refused before any kill: {:?}", b.contents));
                let outage = &outages[k];
                assert!(
                    at <= outage.up + RECOVERY_MAX,
                    "refused {:?} after Redis answered again (kill {}): {:?}",
                    at - outage.up,
                    k + 1,
                    b.contents
                );
                refused_per_outage[k] += 1;
                refusals.push(at - b.sent.max(outage.killed));
            }
            Outcome::Unanswered | Outcome::Lost => {
                panic!("a batch got {:?}: {:?}", b.outcome, b.contents)
            }
        }
        if let Some(o) = outages.iter().find(|o| b.sent >= o.killed && b.sent < o.up) {
            let answered = b.answered().expect("answered (checked above)");
            in_outages.push(answered - b.sent);
            assert!(
                answered - b.sent <= REFUSAL_MAX,
                "a batch sent {:?} after the kill was answered {:?} later: {:?}",
                b.sent - o.killed,
                answered - b.sent,
                b.contents
            );
        }
    }
    refusals.sort();
    let back: Vec<Duration> = outages.iter().flat_map(|o| o.back.clone()).collect();
    let messages: usize = batches.iter().map(|b| b.contents.len()).sum();
    let acked_messages: usize = batches
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .map(|b| b.contents.len())
        .sum();
    let downtime: Duration = outages.iter().map(|o| o.up - o.killed).sum();
    // Redis up and every sender acknowledged again: from each recovery to the next kill.
    let steady = |o: &Outage| o.up + o.back.iter().max().copied().unwrap_or_default();
    let between: Vec<&Batch> = batches
        .iter()
        .copied()
        .filter(|b| {
            outages
                .iter()
                .all(|o| b.sent < o.killed || b.sent > steady(o))
        })
        .collect();
    let steady_time = loaded
        - outages
            .iter()
            .map(|o| steady(o) - o.killed)
            .sum::<Duration>();
    let steady_rate = between
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .map(|b| b.contents.len())
        .sum::<usize>() as f64
        / steady_time.as_secs_f64();
    eprintln!(
        "redis: {KILLS} kills in {loaded:?} (Redis down {downtime:?} in all); {messages} messages \
         in {} batches posted, {acked_messages} acknowledged ({:.0} messages/s offered, {:.0}/s \
         acknowledged over the whole run, {steady_rate:.0}/s while Redis was up); errors {error_ids:?}, per kill {refused_per_outage:?}; \
         refusal latency {}; answer latency of batches sent while Redis was down {}; every \
         sender acknowledged again after {}; acknowledgement latency outside the outages {}",
        batches.len(),
        messages as f64 / loaded.as_secs_f64(),
        acked_messages as f64 / loaded.as_secs_f64(),
        percentiles(refusals.clone()),
        percentiles(in_outages),
        percentiles(back.clone()),
        percentiles(ack_latencies_between(&between, loading, Instant::now()))
    );
    for (k, n) in refused_per_outage.iter().enumerate() {
        assert!(*n > 0, "kill {}: no sender got an error", k + 1);
    }
    let slowest_refusal = refusals.last().copied().unwrap_or_default();
    assert!(
        slowest_refusal <= REFUSAL_MAX,
        "an error event came {slowest_refusal:?} after the send or the kill (max {REFUSAL_MAX:?})"
    );
    let slowest_back = back.iter().max().copied().unwrap_or_default();
    assert!(
        slowest_back <= RECOVERY_MAX,
        "a sender's first acknowledgement came {slowest_back:?} after Redis answered again \
         (max {RECOVERY_MAX:?})"
    );

    set_check(
        "redis kill -9 ×10",
        batches.iter().copied(),
        &conns,
        &streams,
    );
    eprintln!("redis: whole test {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. MariaDB down.

/// RELIABILITY.md says 30 s; 5 s shows the same (see the file's comment) at a sixth of the cost.
const MARIADB_DOWN: Duration = Duration::from_secs(5);
/// RELIABILITY.md: login and sign-up answer 503 within 2 s (and, as for Redis, recovery
/// within 2 s: [`RECOVERY_MAX`]).
const ACCOUNT_ANSWER_MAX: Duration = Duration::from_secs(2);
/// Recovered: this many logins and as many sign-ups in a row succeed, on whichever core.
const RECOVERED_IN_A_ROW: usize = 6;
/// Between two account requests in the outage.
const ACCOUNT_REQUEST_PAUSE: Duration = Duration::from_millis(200);
const SENDERS_2: usize = 3;
/// How long the chat runs before the outage, for its baseline.
const BASELINE: Duration = Duration::from_secs(2);
/// RELIABILITY.md: the chat's p99 during the outage at most twice the one before it, plus
/// this much: a p99 of a few milliseconds on a shared 2-core machine moves by that much
/// between any two windows. What it guards against is far larger: a delivery waiting on
/// MySQL waits for `--mysql-timeout` (1.5 s).
const P99_SLACK: Duration = Duration::from_millis(20);

fn login(addr: SocketAddr, name: &str) -> (u16, Duration) {
    let start = Instant::now();
    let (status, _) = post_json(
        addr,
        "/api/login",
        &json!({"email": format!("{name}@example.com"), "password": PASSWORD}),
    );
    (status, start.elapsed())
}

fn create_account(addr: SocketAddr, name: &str) -> (u16, Duration) {
    let start = Instant::now();
    let (status, _) = post_json(
        addr,
        "/api/create-account",
        &json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
    );
    (status, start.elapsed())
}

#[test]
fn mariadb_down_accounts_answer_503_and_chat_keeps_flowing() {
    let _turn = one_at_a_time();
    until_timing_holds("mariadb down", mariadb_down_once);
}

/// One outage on fresh servers; the chat's latency figures are timing checks (run again when
/// they alone miss), every other check is not.
fn mariadb_down_once() -> Failures {
    let started = Instant::now();
    let mut failures = Failures::default();
    let mut mariadb = MariaDb::start();
    let redis = Redis::start();
    let ringchat = start_ringchat(&["--redis", &redis.url(), "--mysql", &mariadb.url()]);
    let addr = ringchat.addr;

    let names: Vec<String> = (0..SENDERS_2).map(|i| format!("maria{i:02}")).collect();
    let clients = Client::sign_up_all(&[addr], &names);
    sign_up(addr, "marialogin");
    assert_eq!(login(addr, "marialogin").0, 204, "login before the outage");
    let conns = Client::open_all(&[addr], &clients);
    let posters = Poster::start_all(&clients, &conns, PACE, 3);
    // Every author's messages delivered in both rooms: the readers know every name.
    for conn in &conns {
        let everyone = conn.wait_for(Instant::now() + DELIVERY_DEADLINE, |s| {
            let authors = |room: usize| {
                s.rooms[room]
                    .iter()
                    .map(|m| m.user.as_str())
                    .collect::<HashSet<_>>()
                    .len()
            };
            (authors(0) == SENDERS_2 && authors(1) == SENDERS_2).then_some(())
        });
        assert!(everyone.is_some(), "not every author delivered yet");
    }
    let baseline_from = Instant::now();
    thread::sleep(BASELINE);

    let killed = Instant::now();
    mariadb.kill9();
    let mut answers: Vec<(&str, u16, Duration)> = Vec::new();
    let mut k = 0;
    while killed.elapsed() < MARIADB_DOWN {
        let (kind, (status, took)) = if k % 2 == 0 {
            ("login", login(addr, "marialogin"))
        } else {
            ("sign-up", create_account(addr, &format!("mariadown{k:02}")))
        };
        answers.push((kind, status, took));
        k += 1;
        thread::sleep(ACCOUNT_REQUEST_PAUSE);
    }
    let restarting = Instant::now();
    mariadb.restart();
    let up = Instant::now();
    let after =
        accounts_until_recovered("mariadb", up, DELIVERY_DEADLINE, RECOVERED_IN_A_ROW, |k| {
            if k % 2 == 0 {
                ("login", login(addr, "marialogin").0)
            } else {
                ("sign-up", create_account(addr, &format!("mariaup{k:02}")).0)
            }
        });
    let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();
    let batches: Vec<&Batch> = all.iter().flatten().collect();

    eprintln!(
        "mariadb: down {:?} (kill -9), answering {:?} after the restart began; in the outage \
         (kind, status, time to answer) {answers:?}; after it (kind, status, answered after \
         MariaDB answered) {after:?}",
        restarting - killed,
        up - restarting,
    );
    check_accounts_in_outage(
        &mut failures,
        &AccountsInOutage {
            test: "mariadb",
            during: &answers,
            after: &after,
            each_kind_min: 5,
            answer_max: ACCOUNT_ANSWER_MAX,
            recovery_max: RECOVERY_MAX,
        },
    );
    // The chat kept flowing through the outage: everything acknowledged, at a comparable p99.
    let acked_during: usize = batches
        .iter()
        .filter(|b| b.sent >= killed && b.sent < restarting)
        .map(|b| b.contents.len())
        .sum();
    eprintln!("mariadb: {acked_during} messages acknowledged while MariaDB was down");
    check_chat_through_outage(
        &mut failures,
        "mariadb",
        &batches,
        baseline_from,
        (killed, restarting),
        P99_SLACK,
    );

    let streams = settle_and_check(
        redis.port,
        &by_name(&names, &conns),
        Instant::now() + DELIVERY_DEADLINE,
    );
    set_check("mariadb down", batches.iter().copied(), &conns, &streams);
    eprintln!("mariadb: whole test {:?}", started.elapsed());
    failures
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 of ringchat mid-load.

const SENDERS_3: usize = 6;
/// The last clients come back only after more than a page per room went by without them.
const LATE_3: usize = 2;
const KILLS_3: usize = 3;
/// RELIABILITY.md: "clients back within 5 s", from the restart to the client's `hello` and
/// catch-up.
const BACK_MAX: Duration = Duration::from_secs(5);

enum Backend {
    Embedded,
    Redis { redis: Redis, mariadb: MariaDb },
}

/// One client across its connections.
struct Resyncing {
    client: Arc<Client>,
    /// Per room, what it got on its earlier connections and caught up on after each: the room
    /// up to where `conn`'s live messages begin.
    prefix: [Vec<Msg>; 2],
    conn: Arc<Conn>,
}

impl Resyncing {
    /// The room as this client saw it, over all its connections.
    fn whole(&self, room: usize) -> Vec<Msg> {
        let mut whole = self.prefix[room].clone();
        whole.extend(self.conn.with(|s| s.rooms[room].clone()));
        whole
    }

    /// Its connection ended: what came live on it joins the prefix.
    fn ended(&mut self) {
        self.prefix = [0, 1].map(|room| self.whole(room));
    }

    /// A new connection after [`Resyncing::ended`], caught up by [`catch_up`]: what it missed
    /// per room and the history pages asked.
    fn catch_up(&self, conn: &Conn) -> ([Vec<Msg>; 2], usize) {
        let mut pages = 0;
        let missed = [0, 1].map(|room| {
            assert!(
                !self.prefix[room].is_empty(),
                "{}: had nothing before, so nothing to resume from",
                self.client.name
            );
            let (missed, asked) = catch_up(&self.client.name, conn, room, &self.prefix[room]);
            pages += asked;
            missed
        });
        (missed, pages)
    }

    fn resume(&mut self, conn: Arc<Conn>, missed: [Vec<Msg>; 2]) {
        for (prefix, missed) in self.prefix.iter_mut().zip(missed) {
            prefix.extend(missed);
        }
        self.conn = conn;
    }
}

fn ringchat_kill9_and_resync(what: &str, backend: Backend) {
    let started = Instant::now();
    let store_flags: Vec<String> = match &backend {
        Backend::Embedded => Vec::new(),
        Backend::Redis { redis, mariadb } => {
            vec![
                "--redis".into(),
                redis.url(),
                "--mysql".into(),
                mariadb.url(),
            ]
        }
    };
    let flags: Vec<&str> = store_flags.iter().map(String::as_str).collect();
    let mut ringchat = start_ringchat(&flags);
    let addr = ringchat.addr;

    let names: Vec<String> = (0..SENDERS_3)
        .map(|i| format!("{}{i:02}", &what[..4]))
        .collect();
    let clients = Client::sign_up_all(&[addr], &names);
    let mut users: Vec<Resyncing> = clients
        .iter()
        .map(|client| Resyncing {
            client: client.clone(),
            prefix: [Vec::new(), Vec::new()],
            conn: Conn::open(addr, &client.cookie),
        })
        .collect();
    let mut every_conn: Vec<Arc<Conn>> = users.iter().map(|u| u.conn.clone()).collect();
    let mut posters: Vec<Poster> = users
        .iter()
        .map(|u| Poster::start(&u.client, &u.conn, PACE, 3))
        .collect();
    assert!(
        users[0]
            .conn
            .wait_for_counts(Instant::now() + DELIVERY_DEADLINE, [150, 150]),
        "{what}: no traffic: {:?}",
        users[0].conn.with(|s| s.counts())
    );

    let mut batches: Vec<Batch> = Vec::new();
    let mut backs: Vec<Duration> = Vec::new();
    for kill in 1..=KILLS_3 {
        let killing = Instant::now();
        ringchat.kill9();
        // A batch in flight, or sent before its client noticed, ends with its connection.
        let mut in_flight = 0;
        for b in posters.drain(..).flat_map(Poster::finish) {
            in_flight += usize::from(matches!(b.outcome, Outcome::Lost));
            batches.push(b);
        }
        for u in &mut users {
            let closed = u
                .conn
                .wait_for(killing + CLOSE_DEADLINE, |s| s.closed.clone());
            let (at, why) = closed.unwrap_or_else(|| {
                panic!("{what}: {} still connected after the kill", u.client.name)
            });
            assert!(
                at >= killing,
                "{what}: {}'s connection ended before the kill: {why}",
                u.client.name
            );
            u.ended();
        }

        // The first clients reconnect at once, polling, while the server starts again on its
        // port and data.
        let restarting = Instant::now();
        type Back = (Arc<Conn>, [Vec<Msg>; 2], Duration, usize, usize);
        let reconnecting: Vec<JoinHandle<Back>> = users[..SENDERS_3 - LATE_3]
            .iter()
            .map(|u| {
                let view = Resyncing {
                    client: u.client.clone(),
                    prefix: u.prefix.clone(),
                    conn: u.conn.clone(),
                };
                thread::spawn(move || {
                    let deadline = restarting + DELIVERY_DEADLINE;
                    let (conn, failed) = Conn::reconnect(addr, &view.client.cookie, deadline);
                    let (missed, pages) = view.catch_up(&conn);
                    (conn, missed, restarting.elapsed(), failed, pages)
                })
            })
            .collect();
        ringchat.restart_at_same_address();
        let listening = restarting.elapsed();
        let mut report = Vec::new();
        for (u, handle) in users.iter_mut().zip(reconnecting) {
            let (conn, missed, back, failed, pages) = handle.join().expect("reconnecting client");
            report.push(format!(
                "{} {back:?} ({failed} refused, missed {:?}, {pages} pages)",
                u.client.name,
                missed.each_ref().map(Vec::len)
            ));
            backs.push(back);
            every_conn.push(conn.clone());
            u.resume(conn, missed);
            posters.push(Poster::start(&u.client, &u.conn, PACE, 3));
        }
        eprintln!(
            "{what} {kill}: killed with {in_flight} batches in flight; listening again \
             {listening:?} after the restart began; back after: {}",
            report.join(", ")
        );

        // The late clients come back once more than a page per room went by without them.
        let counts_back = users[0].conn.with(|s| s.counts());
        assert!(
            users[0].conn.wait_for_counts(
                Instant::now() + DELIVERY_DEADLINE,
                counts_back.map(|n| n + PAGE + 20)
            ),
            "{what}: traffic stalled after the restart: {:?}",
            users[0].conn.with(|s| s.counts())
        );
        for u in &mut users[SENDERS_3 - LATE_3..] {
            let conn = Conn::open(addr, &u.client.cookie);
            let (missed, pages) = u.catch_up(&conn);
            assert!(
                missed.iter().all(|m| m.len() > PAGE) && pages >= 2,
                "{}: the test meant to miss more than a page per room (missed {:?}, {pages} \
                 pages)",
                u.client.name,
                missed.each_ref().map(Vec::len)
            );
            eprintln!(
                "{what} {kill}: {} back later, missed {:?}, caught up with {pages} history pages",
                u.client.name,
                missed.each_ref().map(Vec::len)
            );
            every_conn.push(conn.clone());
            u.resume(conn, missed);
            posters.push(Poster::start(&u.client, &u.conn, PACE, 3));
        }
        // Every client posts again before the next kill (or the end).
        let counts_late = users[0].conn.with(|s| s.counts());
        assert!(
            users[0].conn.wait_for_counts(
                Instant::now() + DELIVERY_DEADLINE,
                counts_late.map(|n| n + 60)
            ),
            "{what}: traffic stalled after the late clients came back"
        );
    }
    batches.extend(posters.into_iter().flat_map(Poster::finish));
    assert_none_refused(what, &batches);

    // Settled: every client holds the newest message a fresh client's hello shows, per room,
    // and nothing more arrives.
    let newest = || -> [Option<String>; 2] {
        let fresh = Conn::open(addr, &clients[0].cookie);
        let rooms = hello_rooms(&fresh.hello);
        [0, 1].map(|r| rooms[r].1.first().map(|m| m.id.clone()))
    };
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let target = newest();
        for u in &users {
            let reached = u.conn.wait_for(deadline, |s| {
                (0..2)
                    .all(|room| {
                        let last = s.rooms[room].last().or(u.prefix[room].last());
                        last.map(|m| id_key(&m.id)) >= target[room].as_deref().map(id_key)
                    })
                    .then_some(())
            });
            assert!(
                reached.is_some(),
                "{what}: {} short of {target:?}: {:?} live, {:?} before",
                u.client.name,
                u.conn.with(|s| s.counts()),
                u.prefix.each_ref().map(Vec::len)
            );
        }
        thread::sleep(QUIET);
        if newest() == target {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: the rooms keep growing");
    }
    for u in &users {
        let closed = u.conn.with(|s| s.closed.clone());
        assert!(
            closed.is_none(),
            "{}: disconnected: {closed:?}",
            u.client.name
        );
    }

    // The rooms as the store holds them, read from the outside.
    let read_back: [Room; 2] = match &backend {
        Backend::Embedded => {
            ringchat.stop();
            [0, 1].map(|r| embedded_room(ringchat.data_dir(), r))
        }
        Backend::Redis { redis, .. } => [0, 1].map(|r| stream(redis.port, r)),
    };
    for u in &users {
        for (room, stored) in read_back.iter().enumerate() {
            let whole = u.whole(room);
            check_sequence(&u.client.name, room, &whole);
            assert_matches_store(&u.client.name, room, &whole, stored);
        }
    }
    for conn in &every_conn {
        assert_no_surprises(what, conn, true);
        let errors = conn.with(|s| s.errors.clone());
        assert!(errors.is_empty(), "{what}: error events {errors:?}");
    }
    eprintln!(
        "{what}: {KILLS_3} kills; {} batches posted; {} messages per room in the end; clients \
         back after {}",
        batches.len(),
        read_back[0].len().min(read_back[1].len()),
        percentiles(backs.clone())
    );
    let slowest_back = backs.iter().max().copied().unwrap_or_default();
    assert!(
        slowest_back <= BACK_MAX,
        "{what}: a client was back {slowest_back:?} after the restart began (max {BACK_MAX:?})"
    );
    set_check(what, &batches, &every_conn, &read_back);
    eprintln!("{what}: whole test {:?}", started.elapsed());
}

#[test]
fn ringchat_killed_on_the_embedded_store_clients_resync() {
    let _turn = one_at_a_time();
    ringchat_kill9_and_resync("embedded kill -9", Backend::Embedded);
}

#[test]
fn ringchat_killed_on_redis_and_mysql_clients_resync() {
    let _turn = one_at_a_time();
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    ringchat_kill9_and_resync("redis kill -9", Backend::Redis { redis, mariadb });
}
