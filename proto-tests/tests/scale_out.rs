//! Scale-out (issue 9): several ringchat instances on one Redis and one MariaDB behave as one
//! chat. Each instance reads the room streams back from Redis (`XREAD BLOCK`) and delivers what
//! it reads, its own messages included, in stream-id order; so every WebSocket subscriber on
//! every instance sees each room's messages exactly once and in the same order, whichever
//! instance they were posted on. Three scenarios, each against three real ringchat binaries
//! (`--threads 2`, distinct data dirs) on a private redis-server and MariaDB:
//!
//! 1. steady traffic: 30 clients round-robin over the instances post 1,000 messages to each of
//!    two rooms; all 30 receive all 2,000 in identical per-room order, and a fresh client on any
//!    instance gets the tail of that order in its `hello`;
//! 2. kill -9 of one instance mid-traffic: clients on the others keep posting and receiving,
//!    and the dead instance's clients reconnect elsewhere and catch up (`hello`, then
//!    `requestRoomHistory` pages) with no hole and no duplicate;
//! 3. Redis stopped gracefully for ~2 s mid-traffic, then started again on the same port and
//!    data (`appendfsync always`): posts in the outage get error events; every acknowledged
//!    message reaches every connected client once, in order; posting works again within
//!    seconds.
//!
//! A message is *acknowledged* when its sender sees it come back in `serverMessages`. Every test
//! ends by comparing each client's sequences with the streams as Redis holds them (XRANGE).
//! Timings are printed (`cargo test --test scale_out -- --nocapture`). The tests take turns
//! (each loads both cores with three servers and dozens of clients).
//!
//!
//! The clients are `ringchat_proto_tests::chat_clients`, shared with tests/durability.rs:
//! blocking sockets with a reader thread each (pings answered, events recorded) and a poster
//! thread that keeps one batch in flight and waits for its acknowledgement or an error event
//! before the next.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ringchat_proto_tests::chat_clients::{
    Batch, Client, Conn, Msg, Outcome, PAGE, Pace, Poster, QUIET, ROOMS, ack_latencies,
    assert_matches_store, assert_no_surprises, assert_none_refused, assert_only_store_unavailable,
    catch_up, check_sequence, hello_rooms, one_at_a_time, parse_content, percentiles, settle,
    settle_and_check, sign_up, start_ringchat, stream, stream_lengths,
};
use ringchat_proto_tests::{MariaDb, PEER_START_DEADLINE, Redis, Ringchat, free_port};

const INSTANCES: usize = 3;

/// A killed instance's connections ending.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);
/// Everything posted has reached every client.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Set-up: the servers.

/// Three instances on the same Redis and MySQL, with the same rooms.
fn start_instances(redis_url: &str, mysql_url: &str) -> Vec<Option<Ringchat>> {
    (0..INSTANCES)
        .map(|_| {
            Some(start_ringchat(&[
                "--redis", redis_url, "--mysql", mysql_url,
            ]))
        })
        .collect()
}

fn addrs(instances: &[Option<Ringchat>]) -> Vec<SocketAddr> {
    instances
        .iter()
        .map(|i| i.as_ref().expect("running").addr)
        .collect()
}

/// A redis-server of this file's own, which a test stops gracefully and starts again on the
/// same port and data: loopback only, `appendonly yes`, `appendfsync always`, no RDB snapshots.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        redis.start_again();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts on the same port and directory (first start, or after [`Self::stop_gracefully`]).
    fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let dir = self.dir.path();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--protected-mode", "no", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn redis-server ({e}): run proto-tests/run, which installs it")
            });
        let deadline = Instant::now() + PEER_START_DEADLINE;
        while !ping(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "redis-server not ready in time");
            thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// SIGTERM (Redis flushes its log and exits) and waits for the exit.
    fn stop_gracefully(&mut self) {
        let mut child = self.child.take().expect("redis-server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM redis-server failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait for redis-server") {
                assert!(status.success(), "redis-server exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a redis-server answers PING on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------------------------
// Reports and checks of this file's own.

/// A connection's instance, numbered from 1 as the messages say.
fn instance(addrs: &[SocketAddr], conn: &Conn) -> usize {
    1 + addrs
        .iter()
        .position(|&a| a == conn.addr)
        .expect("a connection to one of the instances")
}

/// Every message of an acknowledged batch, by content.
fn acked_contents<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> HashSet<String> {
    batches
        .into_iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .flat_map(|b| b.contents.iter().cloned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Steady traffic.

const CLIENTS_1: usize = 30;
const PER_ROOM_1: usize = 1000;

#[test]
fn thirty_clients_on_three_instances_see_one_order() {
    let mariadb = MariaDb::start();
    let _turn = one_at_a_time();
    let redis = Redis::start();
    let instances = start_instances(&redis.url(), &mariadb.url());
    let addrs = addrs(&instances);

    let started = Instant::now();
    let names: Vec<String> = (0..CLIENTS_1).map(|i| format!("one{i:02}")).collect();
    let clients = Client::sign_up_all(&addrs, &names);
    eprintln!(
        "scale-out 1: {CLIENTS_1} sign-ups over {INSTANCES} instances in {:?}",
        started.elapsed()
    );
    let conns = Client::open_all(&addrs, &clients);
    for (conn, name) in conns.iter().zip(&names) {
        assert_eq!(conn.hello["payload"]["me"]["username"], name.as_str());
        let rooms = hello_rooms(&conn.hello);
        let ids: Vec<&str> = rooms.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ROOMS, "{name}: rooms in configured order");
        for (id, messages, more) in &rooms {
            assert!(messages.is_empty() && !more, "{name}: room {id} not empty");
        }
    }

    // Message m of a room is client m % 30's; each client sends its share in batches of 1 to
    // 5 messages, rooms alternating.
    let plans: Vec<Vec<(usize, Vec<String>)>> = (0..CLIENTS_1)
        .map(|c| {
            let mut mine: [Vec<String>; 2] = [0, 1].map(|r| {
                (c..PER_ROOM_1)
                    .step_by(CLIENTS_1)
                    .map(|m| format!("{} {} {m}", names[c], ROOMS[r]))
                    .collect()
            });
            let mut plan = Vec::new();
            for k in 0.. {
                if mine[0].is_empty() && mine[1].is_empty() {
                    break;
                }
                let room = if mine[k % 2].is_empty() {
                    1 - k % 2
                } else {
                    k % 2
                };
                let size = (1 + (c + k) % 5).min(mine[room].len());
                plan.push((room, mine[room].drain(..size).collect()));
            }
            plan
        })
        .collect();

    let posting = Instant::now();
    let posters: Vec<Poster> = conns
        .iter()
        .zip(plans)
        .map(|(conn, plan)| Poster::planned(conn, plan))
        .collect();
    let batches: Vec<Vec<Batch>> = posters.into_iter().map(Poster::join).collect();
    for (name, batches) in names.iter().zip(&batches) {
        for b in batches {
            assert!(
                matches!(b.outcome, Outcome::Acked(_)),
                "{name}: a batch was not acknowledged: {:?} {:?}",
                b.contents,
                b.outcome
            );
        }
    }
    let acked = posting.elapsed();
    for (i, conn) in conns.iter().enumerate() {
        let reached = conn.wait_for(posting + DELIVERY_DEADLINE, |s| {
            (s.counts() == [PER_ROOM_1; 2]).then_some(())
        });
        if reached.is_none() {
            let all: Vec<String> = conns
                .iter()
                .zip(&names)
                .map(|(c, n)| format!("{n}@{}: {:?}", instance(&addrs, c), c.with(|s| s.counts())))
                .collect();
            panic!(
                "{}: {:?} of {PER_ROOM_1} per room after {DELIVERY_DEADLINE:?} (ended: {:?}); \
                 the streams hold {:?}; every client: {}",
                names[i],
                conn.with(|s| s.counts()),
                conn.with(|s| s.closed.clone()),
                stream_lengths(redis.port),
                all.join(", ")
            );
        }
    }
    let delivered = posting.elapsed();
    let all: Vec<Batch> = batches.iter().flatten().cloned().collect();
    eprintln!(
        "scale-out 1: {} messages in {} batches acknowledged in {acked:?}, all delivered to all \
         {CLIENTS_1} clients in {delivered:?} ({:.0} messages/s posted); acknowledgement \
         latency {}",
        2 * PER_ROOM_1,
        all.len(),
        (2 * PER_ROOM_1) as f64 / delivered.as_secs_f64(),
        percentiles(ack_latencies(&all))
    );
    // Delivery latency: from a batch's send to its last message's arrival, at every client.
    let sent_at: HashMap<&str, Instant> = all
        .iter()
        .flat_map(|b| b.contents.iter().map(move |c| (c.as_str(), b.sent)))
        .collect();
    let mut latencies = Vec::new();
    for conn in &conns {
        conn.with(|s| {
            for room in 0..2 {
                for (m, at) in s.rooms[room].iter().zip(&s.arrived[room]) {
                    latencies.push(*at - sent_at[m.content.as_str()]);
                }
            }
        });
    }
    eprintln!(
        "scale-out 1: post-to-delivery latency over every client {}",
        percentiles(latencies)
    );

    // A fresh client on every instance: the newest 100 of each room, newest first.
    let reference: [Vec<Msg>; 2] = conns[0].with(|s| s.rooms.clone());
    let late = sign_up(addrs[1], "onelate");
    for (instance, addr) in addrs.iter().enumerate() {
        let fresh = Conn::open(*addr, &late);
        for (room, (id, page, more)) in hello_rooms(&fresh.hello).into_iter().enumerate() {
            assert_eq!(id, ROOMS[room]);
            let tail: Vec<Msg> = reference[room][PER_ROOM_1 - PAGE..]
                .iter()
                .rev()
                .cloned()
                .collect();
            assert_eq!(
                page,
                tail,
                "fresh hello on instance {}, room {id}: not the newest {PAGE} of the order \
                 everyone saw",
                instance + 1
            );
            assert!(more, "hasMoreMessages with {PER_ROOM_1} in the room");
        }
    }

    // Exactly once, one order, and the stream's: nothing arrived after the 1,000 (the fresh
    // clients took a while), and every client saw what client 0 saw.
    thread::sleep(QUIET);
    let streams = [0, 1].map(|r| stream(redis.port, r));
    for room in 0..2 {
        check_sequence(&names[0], room, &reference[room]);
        let posted: HashSet<String> = all
            .iter()
            .flat_map(|b| b.contents.iter())
            .filter(|c| parse_content(c).1 == ROOMS[room])
            .cloned()
            .collect();
        let got: HashSet<String> = reference[room].iter().map(|m| m.content.clone()).collect();
        assert_eq!(got, posted, "room {}: not what was posted", ROOMS[room]);
        assert_matches_store(&names[0], room, &reference[room], &streams[room]);
    }
    for (conn, name) in conns.iter().zip(&names) {
        conn.with(|s| {
            assert!(s.errors.is_empty(), "{name}: error events {:?}", s.errors);
            for room in 0..2 {
                assert_eq!(
                    s.rooms[room],
                    reference[room],
                    "{name} (instance {}) and {} (instance 1), room {}: different sequences",
                    instance(&addrs, conn),
                    names[0],
                    ROOMS[room]
                );
            }
        });
        assert_no_surprises(name, conn, false);
    }
    eprintln!("scale-out 1: whole test {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 of an instance.

const CLIENTS_2: usize = 12;
const KILLED: usize = 1;
/// Between an answer and a steady poster's next batch.
const STEADY: Pace = Pace::Pause(Duration::from_millis(40));

#[test]
fn kill9_of_an_instance_loses_nothing_acknowledged() {
    let mariadb = MariaDb::start();
    let _turn = one_at_a_time();
    let redis = Redis::start();
    let mut instances = start_instances(&redis.url(), &mariadb.url());
    let addrs = addrs(&instances);

    let names: Vec<String> = (0..CLIENTS_2).map(|i| format!("two{i:02}")).collect();
    let clients = Client::sign_up_all(&addrs, &names);
    let mut conns = Client::open_all(&addrs, &clients);
    let mut posters: Vec<Option<Poster>> = Poster::start_all(&clients, &conns, STEADY, 3)
        .into_iter()
        .map(Some)
        .collect();
    let survivor = 0; // a client on instance 1
    let dead: Vec<usize> = (0..CLIENTS_2).filter(|i| i % INSTANCES == KILLED).collect();

    let warm = Instant::now() + DELIVERY_DEADLINE;
    assert!(
        conns[survivor].wait_for_counts(warm, [150, 150]),
        "no traffic: {:?}",
        conns[survivor].with(|s| s.counts())
    );
    let counts_at_kill = conns[survivor].with(|s| s.counts());
    let killed_at = Instant::now();
    drop(instances[KILLED].take()); // SIGKILL, and reaped
    eprintln!(
        "scale-out 2: instance {} killed (-9) after {counts_at_kill:?} messages per room",
        KILLED + 1
    );
    for &i in &dead {
        let closed = conns[i].wait_for(killed_at + CLOSE_DEADLINE, |s| s.closed.clone());
        assert!(closed.is_some(), "{}: still open after the kill", names[i]);
    }
    eprintln!(
        "scale-out 2: its {} clients saw their connections end within {:?}",
        dead.len(),
        killed_at.elapsed()
    );
    let mut dead_batches = Vec::new();
    let mut had: Vec<[Vec<Msg>; 2]> = Vec::new();
    for &i in &dead {
        let poster = posters[i].take().expect("a poster per client");
        dead_batches.extend(poster.finish());
        had.push(conns[i].with(|s| s.rooms.clone()));
    }

    // The survivors carry on until more than a page per room has gone by the dead clients.
    let most_had = [0, 1].map(|r| had.iter().map(|h| h[r].len()).max().unwrap_or(0));
    let need = [0, 1].map(|r| most_had[r] + PAGE + 50);
    assert!(
        conns[survivor].wait_for_counts(killed_at + DELIVERY_DEADLINE, need),
        "survivors stalled after the kill: {:?}, wanted {need:?}",
        conns[survivor].with(|s| s.counts())
    );

    // The dead instance's clients reconnect to the others and catch up.
    let mut prefixes: Vec<(usize, [Vec<Msg>; 2])> = Vec::new();
    for (k, &i) in dead.iter().enumerate() {
        let instance = if k % 2 == 0 { 0 } else { 2 };
        let reconnecting = Instant::now();
        let conn = Conn::open(addrs[instance], &clients[i].cookie);
        let mut prefix = had[k].clone();
        let mut report = Vec::new();
        for (room, before) in prefix.iter_mut().enumerate() {
            let (missed, pages) = catch_up(&names[i], &conn, room, before);
            assert!(
                missed.len() > PAGE && pages > 0,
                "{}: the test meant to miss more than a page (missed {}, {pages} pages)",
                names[i],
                missed.len()
            );
            report.push(format!(
                "room {}: had {}, missed {} ({pages} pages)",
                ROOMS[room],
                before.len(),
                missed.len()
            ));
            before.extend(missed);
        }
        eprintln!(
            "scale-out 2: {} reconnected to instance {} and caught up in {:?}: {}",
            names[i],
            instance + 1,
            reconnecting.elapsed(),
            report.join("; ")
        );
        posters[i] = Some(Poster::start(&clients[i], &conn, STEADY, 3));
        conns[i] = conn;
        prefixes.push((i, prefix));
    }
    let at_reconnect = conns[survivor].with(|s| s.counts());
    assert!(
        conns[survivor].wait_for_counts(
            Instant::now() + DELIVERY_DEADLINE,
            at_reconnect.map(|n| n + 60)
        ),
        "traffic stalled after the reconnects"
    );
    let all: Vec<(usize, Vec<Batch>)> = posters
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i, p.expect("a poster per client").finish()))
        .collect();

    // Settled: survivors hold the whole streams, reconnected clients the rest after their
    // prefixes (what they had plus what they caught up on).
    let known = |i: usize| {
        prefixes
            .iter()
            .find(|(j, _)| *j == i)
            .map_or([0, 0], |(_, p)| [p[0].len(), p[1].len()])
    };
    let watched: Vec<(&str, &Conn, [usize; 2])> = (0..CLIENTS_2)
        .map(|i| (names[i].as_str(), &*conns[i], known(i)))
        .collect();
    let streams = settle(redis.port, &watched, Instant::now() + DELIVERY_DEADLINE);
    for i in 0..CLIENTS_2 {
        let whole = conns[i].with(|s| {
            assert!(
                s.errors.is_empty(),
                "{}: error events {:?}",
                names[i],
                s.errors
            );
            assert!(s.closed.is_none(), "{}: {:?}", names[i], s.closed);
            let mut whole: [Vec<Msg>; 2] = [Vec::new(), Vec::new()];
            if let Some((_, prefix)) = prefixes.iter().find(|(j, _)| *j == i) {
                whole = prefix.clone();
            }
            for (room, messages) in whole.iter_mut().enumerate() {
                messages.extend(s.rooms[room].iter().cloned());
            }
            whole
        });
        for room in 0..2 {
            check_sequence(&names[i], room, &whole[room]);
            assert_matches_store(&names[i], room, &whole[room], &streams[room]);
        }
        if !dead.contains(&i) {
            let unasked = conns[i].with(|s| s.histories.len());
            assert_eq!(unasked, 0, "{}: unrequested roomHistory", names[i]);
        }
        conns[i].with(|s| assert!(s.unexpected.is_empty(), "{}: {:?}", names[i], s.unexpected));
    }

    // Every acknowledged message is in the streams; no post went unanswered; the survivors'
    // posts kept being acknowledged after the kill.
    let in_streams: HashSet<&str> = streams.iter().flatten().map(|(_, c)| c.as_str()).collect();
    let every_batch: Vec<&Batch> = all
        .iter()
        .flat_map(|(_, b)| b)
        .chain(&dead_batches)
        .collect();
    for content in acked_contents(every_batch.iter().copied()) {
        assert!(
            in_streams.contains(content.as_str()),
            "acknowledged but not stored: {content:?}"
        );
    }
    assert_none_refused("scale-out 2", every_batch.iter().copied());
    for (i, batches) in &all {
        if !dead.contains(i) {
            assert!(
                batches
                    .iter()
                    .any(|b| b.sent > killed_at && matches!(b.outcome, Outcome::Acked(_))),
                "{}: nothing acknowledged after the kill",
                names[*i]
            );
        }
    }
    let lost: Vec<&Batch> = dead_batches
        .iter()
        .filter(|b| matches!(b.outcome, Outcome::Lost))
        .collect();
    let lost_stored = lost
        .iter()
        .flat_map(|b| &b.contents)
        .filter(|c| in_streams.contains(c.as_str()))
        .count();
    eprintln!(
        "scale-out 2: {} messages per room in the end; {} batches in flight on the dead instance \
         ({lost_stored} of their messages were stored anyway); acknowledgement latency {}",
        streams[0].len().min(streams[1].len()),
        lost.len(),
        percentiles(ack_latencies(all.iter().flat_map(|(_, b)| b)))
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Redis restarted mid-traffic.

const CLIENTS_3: usize = 9;
const OUTAGE: Duration = Duration::from_secs(2);
/// Posting must work again this soon after Redis answers again.
const POSTING_RESUMES_MAX: Duration = Duration::from_secs(10);

#[test]
fn redis_restart_mid_traffic_loses_nothing_acknowledged() {
    let mariadb = MariaDb::start();
    let _turn = one_at_a_time();
    let mut redis = PrivateRedis::start();
    let instances = start_instances(&redis.url(), &mariadb.url());
    let addrs = addrs(&instances);

    let names: Vec<String> = (0..CLIENTS_3).map(|i| format!("three{i:02}")).collect();
    let clients = Client::sign_up_all(&addrs, &names);
    let conns = Client::open_all(&addrs, &clients);
    let posters = Poster::start_all(&clients, &conns, STEADY, 3);

    assert!(
        conns[0].wait_for_counts(Instant::now() + DELIVERY_DEADLINE, [100, 100]),
        "no traffic: {:?}",
        conns[0].with(|s| s.counts())
    );
    let stopping = Instant::now();
    redis.stop_gracefully();
    let stopped = Instant::now();
    let counts_down = conns[0].with(|s| s.counts());
    thread::sleep(OUTAGE);
    let restarting = Instant::now();
    redis.start_again();
    let up = Instant::now();
    eprintln!(
        "scale-out 3: Redis stopped (SIGTERM, {:?} to exit) after {counts_down:?} messages per \
         room, down {:?}, answering again {:?} after the restart began",
        stopped - stopping,
        restarting - stopped,
        up - restarting
    );

    // Posting works again: every client gets a batch sent after the restart acknowledged.
    let mut resumed = Vec::new();
    for (poster, name) in posters.iter().zip(&names) {
        let first = poster.first_ack_since(up, up + POSTING_RESUMES_MAX);
        let first = first.unwrap_or_else(|| {
            panic!(
                "{name}: nothing acknowledged within {POSTING_RESUMES_MAX:?} of Redis coming back"
            )
        });
        resumed.push(first - up);
    }
    let deliveries: Vec<Duration> = conns
        .iter()
        .filter_map(|c| {
            c.with(|s| {
                s.arrived
                    .iter()
                    .flatten()
                    .filter(|&&at| at > up)
                    .min()
                    .map(|&at| at - up)
            })
        })
        .collect();
    eprintln!(
        "scale-out 3: after Redis answered again, posting was acknowledged again within {} and \
         delivery resumed within {}",
        percentiles(resumed),
        percentiles(deliveries)
    );
    let counts_up = conns[0].with(|s| s.counts());
    assert!(
        conns[0].wait_for_counts(
            Instant::now() + DELIVERY_DEADLINE,
            counts_up.map(|n| n + 60)
        ),
        "traffic stalled after the restart"
    );
    let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();

    let connected: Vec<usize> = (0..CLIENTS_3)
        .filter(|&i| conns[i].with(|s| s.closed.is_none()))
        .collect();
    for i in (0..CLIENTS_3).filter(|i| !connected.contains(i)) {
        eprintln!(
            "scale-out 3: {} was disconnected: {:?}",
            names[i],
            conns[i].with(|s| s.closed.clone())
        );
    }
    assert!(!connected.is_empty(), "every client was disconnected");
    let watched: Vec<(&str, &Conn)> = connected
        .iter()
        .map(|&i| (names[i].as_str(), &*conns[i]))
        .collect();
    let streams = settle_and_check(redis.port, &watched, Instant::now() + DELIVERY_DEADLINE);

    // Acknowledged means stored; every post got an answer; the outage's posts were refused
    // with error events.
    let in_streams: HashSet<&str> = streams.iter().flatten().map(|(_, c)| c.as_str()).collect();
    let every_batch: Vec<&Batch> = all.iter().flatten().collect();
    for content in acked_contents(every_batch.iter().copied()) {
        assert!(
            in_streams.contains(content.as_str()),
            "acknowledged but not in the stream: {content:?}"
        );
    }
    let mut refused = Vec::new();
    let mut refused_then_stored = 0;
    for b in &every_batch {
        match b.outcome {
            Outcome::Acked(_) => {}
            Outcome::Refused(at) => {
                refused.push(at - b.sent);
                refused_then_stored += b
                    .contents
                    .iter()
                    .filter(|c| in_streams.contains(c.as_str()))
                    .count();
            }
            // Its client was disconnected (reported above).
            Outcome::Lost => {}
            Outcome::Unanswered => {
                panic!("a post got no answer: {:?}", b.contents)
            }
        }
    }
    let error_ids = assert_only_store_unavailable(&conns);
    let in_outage = every_batch
        .iter()
        .filter(|b| b.sent >= stopped && b.sent < restarting)
        .count();
    eprintln!(
        "scale-out 3: {} batches posted, {in_outage} of them while Redis was down; {} \
         refused with error events {error_ids:?}; {refused_then_stored} messages of refused \
         batches were stored (and delivered) anyway; {} messages per room in the end; \
         refusal latency {}",
        every_batch.len(),
        refused.len(),
        streams[0].len().min(streams[1].len()),
        percentiles(refused.clone())
    );
    assert!(
        !refused.is_empty(),
        "no post was refused while Redis was down ({in_outage} batches sent then)"
    );
}
