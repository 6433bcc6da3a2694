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
//! **The set check** (RELIABILITY.md's habit): a message is *attempted* when a client wrote it
//! in a `clientMessages` event; *acknowledged* when it came back to any client in
//! `serverMessages` (the sender's copy is its acknowledgement; an error event refuses a
//! batch); *read back* is the store's content at the end, read from the outside (`XRANGE`, or
//! the embedded SQLite file with the server stopped). lost = acknowledged − read back,
//! unexpected = read back − attempted, duplicates = contents read back twice: all zero. A
//! refused or unanswered message that was stored anyway is attempted, so it is not unexpected.
//!
//! Figures are printed (`cargo test --test durability -- --nocapture`). The tests take turns:
//! each loads both cores with the server, the peers and a dozen client threads. The time
//! bounds are RELIABILITY.md's, asserted as they are (only the p99 comparison has a slack); a
//! peer "answers again" when it answers the harness's readiness probe, polled every 20 ms.
//!
//! The clients are the ones of tests/scale_out.rs (blocking sockets, a reader thread per
//! connection that answers pings and records events, a poster thread per client with one batch
//! in flight), with paced posting, and a connection attempt that fails instead of panicking
//! (reconnecting after a kill). Sign-up, the upgrade and the frames are the root crate's
//! tests/common/chat_client.rs; killing and restarting ringchat on its own address is
//! `ringchat_proto_tests::crash`.

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chat_client::{
    PASSWORD, id_key, masked_frame, post_json, read_frame, read_head, sign_up, upgrade_request,
};
use ringchat_proto_tests::{MariaDb, Redis, Ringchat};

const ROOMS: [&str; 2] = ["a", "b"];
const ROOMS_FLAG: &str = "a:A,b:B";

/// Connecting, the upgrade, the `hello`, a `roomHistory` page, a Redis reply.
const IO_DEADLINE: Duration = Duration::from_secs(10);
/// One batch's acknowledgement or error event (the server's `--redis-timeout` is 2 s).
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);
/// Everything stored has reached every client; a recovery that should take seconds.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);
/// After every client has all it should, a pause in which a duplicate would show up.
const QUIET: Duration = Duration::from_millis(300);
/// What `hello` and one `roomHistory` page hold.
const PAGE: usize = 100;
/// A client waits this long between failed connection attempts (a web client retries at once;
/// this only keeps the refused attempts from filling the log).
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// Set-up.

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for a test's whole run, its peers' start included: a MariaDB bootstrap takes a core
/// for a second or so, which would show in another test's latencies.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// One instance with the test rooms on two cores; `store` selects the backend (nothing: the
/// embedded store in the harness's `--data-dir`).
fn start_ringchat(store: &[&str]) -> Ringchat {
    let mut args = vec![
        "--rooms",
        ROOMS_FLAG,
        "--threads",
        "2",
        // All sign-ups come from 127.0.0.1.
        "--signups-per-hour",
        "1000",
    ];
    args.extend_from_slice(store);
    Ringchat::start(&args)
}

// ---------------------------------------------------------------------------------------------
// Redis from the outside: a few commands over RESP2, for the streams as Redis holds them.

#[derive(Debug)]
enum Resp {
    Text(Vec<u8>),
    Integer(i64),
    Nil,
    Array(Vec<Resp>),
}

fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read a Redis reply");
    let text = String::from_utf8_lossy(&line);
    let body = text
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("truncated Redis reply {text:?}"));
    let number = || -> i64 {
        body[1..]
            .parse()
            .unwrap_or_else(|_| panic!("bad Redis reply {text:?}"))
    };
    match body.as_bytes().first() {
        Some(b'+') => Resp::Text(body.as_bytes()[1..].to_vec()),
        Some(b'-') => panic!("Redis error: {body}"),
        Some(b':') => Resp::Integer(number()),
        Some(b'$') if number() < 0 => Resp::Nil,
        Some(b'$') => {
            let mut bytes = vec![0u8; number() as usize + 2];
            r.read_exact(&mut bytes).expect("read a bulk string");
            bytes.truncate(bytes.len() - 2);
            Resp::Text(bytes)
        }
        Some(b'*') if number() < 0 => Resp::Nil,
        Some(b'*') => Resp::Array((0..number()).map(|_| read_resp(r)).collect()),
        _ => panic!("unexpected Redis reply {text:?}"),
    }
}

fn redis_command(port: u16, args: &[&str]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    s.write_all(command.as_bytes()).unwrap();
    read_resp(&mut BufReader::new(s))
}

fn text(value: &Resp) -> String {
    match value {
        Resp::Text(bytes) => String::from_utf8(bytes.clone()).expect("UTF-8"),
        other => panic!("not a string: {other:?}"),
    }
}

/// A room as the store holds it: (message id, content), oldest first.
type Room = Vec<(String, String)>;

/// A room's stream, read with XRANGE.
fn stream(port: u16, room: usize) -> Room {
    let Resp::Array(entries) = redis_command(port, &["XRANGE", ROOMS[room], "-", "+"]) else {
        panic!("XRANGE did not answer an array");
    };
    entries
        .iter()
        .map(|entry| {
            let Resp::Array(parts) = entry else {
                panic!("bad entry {entry:?}")
            };
            let Resp::Array(fields) = &parts[1] else {
                panic!("bad entry {entry:?}")
            };
            assert_eq!(text(&fields[0]), "payload", "{entry:?}");
            let payload: Value = serde_json::from_str(&text(&fields[1])).expect("payload JSON");
            let content = payload["content"].as_str().expect("content").to_string();
            (text(&parts[0]), content)
        })
        .collect()
}

fn stream_lengths(port: u16) -> [usize; 2] {
    [0, 1].map(|room| match redis_command(port, &["XLEN", ROOMS[room]]) {
        Resp::Integer(n) => n as usize,
        other => panic!("XLEN: {other:?}"),
    })
}

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

// ---------------------------------------------------------------------------------------------
// The set check.

/// lost = acknowledged − read back, unexpected = read back − attempted, duplicates = read back
/// more than once: prints the figures and asserts all three are empty.
fn set_check(
    what: &str,
    attempted: &HashSet<String>,
    acknowledged: &HashSet<String>,
    read_back: &[Room; 2],
) {
    let mut stored: HashSet<&str> = HashSet::new();
    let mut duplicates: Vec<&str> = Vec::new();
    for (_, content) in read_back.iter().flatten() {
        if !stored.insert(content) {
            duplicates.push(content);
        }
    }
    let mut lost: Vec<&str> = acknowledged
        .iter()
        .map(String::as_str)
        .filter(|c| !stored.contains(c))
        .collect();
    let mut unexpected: Vec<&str> = stored
        .iter()
        .copied()
        .filter(|c| !attempted.contains(*c))
        .collect();
    lost.sort();
    unexpected.sort();
    let stored_unacknowledged = stored
        .iter()
        .filter(|c| !acknowledged.contains(**c))
        .count();
    eprintln!(
        "{what}: attempted {}, acknowledged {}, read back {} ({stored_unacknowledged} of them \
         never acknowledged): lost {}, unexpected {}, duplicates {}",
        attempted.len(),
        acknowledged.len(),
        stored.len() + duplicates.len(),
        lost.len(),
        unexpected.len(),
        duplicates.len()
    );
    assert!(
        lost.is_empty() && unexpected.is_empty() && duplicates.is_empty(),
        "{what}: lost {} (first {:?}), unexpected {} (first {:?}), duplicates {} (first {:?})",
        lost.len(),
        &lost[..lost.len().min(5)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)],
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket chat connections.

/// A chat message as a client shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    id: String,
    user: String,
    content: String,
}

fn message(v: &Value) -> Msg {
    Msg {
        id: v["id"].as_str().unwrap_or_else(|| panic!("id: {v}")).into(),
        user: v["user"]["username"]
            .as_str()
            .unwrap_or_else(|| panic!("username: {v}"))
            .into(),
        content: v["content"]
            .as_str()
            .unwrap_or_else(|| panic!("content: {v}"))
            .into(),
    }
}

fn room_index(id: &Value) -> Option<usize> {
    ROOMS.iter().position(|r| id.as_str() == Some(r))
}

/// One whole, masked frame.
fn write_frame(s: &mut TcpStream, opcode: u8, payload: &[u8]) -> io::Result<()> {
    s.write_all(&masked_frame(true, opcode, payload))
}

/// One whole frame: (opcode, payload). The server sends every event as one unfragmented frame.
fn read_whole_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let (fin, opcode, payload) = read_frame(r)?;
    if !fin || opcode == 0 {
        return Err(io::Error::other("a fragmented frame from the server"));
    }
    Ok((opcode, payload))
}

/// What one connection received after its `hello`.
#[derive(Default)]
struct Seen {
    /// `serverMessages`, per room, in arrival order.
    rooms: [Vec<Msg>; 2],
    /// When each of `rooms`' messages arrived.
    arrived: [Vec<Instant>; 2],
    /// Every content in `rooms`: what this connection acknowledges.
    contents: HashSet<String>,
    /// Error events and when they came.
    errors: Vec<(Instant, Value)>,
    /// `roomHistory` payloads, in arrival order.
    histories: Vec<Value>,
    /// Anything else (a second `hello`, an unknown event, a bad frame).
    unexpected: Vec<String>,
    /// Why the connection ended, once it has, and when.
    closed: Option<(Instant, String)>,
}

impl Seen {
    fn counts(&self) -> [usize; 2] {
        [self.rooms[0].len(), self.rooms[1].len()]
    }
}

/// A chat WebSocket with a reader thread; the socket is shut down when dropped.
struct Conn {
    hello: Value,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    writer: Arc<Mutex<TcpStream>>,
}

impl Conn {
    /// Upgrades with the session cookie and reads the `hello`.
    fn open(addr: SocketAddr, cookie: &str) -> Arc<Conn> {
        Self::try_open(addr, cookie).unwrap_or_else(|e| panic!("{addr}: {e}"))
    }

    /// Like [`Conn::open`], but a refused connection, a failed upgrade or a close instead of
    /// `hello` is an error: what a reconnecting client sees while the server is down.
    fn try_open(addr: SocketAddr, cookie: &str) -> io::Result<Arc<Conn>> {
        let mut s = TcpStream::connect_timeout(&addr, IO_DEADLINE)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_DEADLINE))?;
        s.set_write_timeout(Some(IO_DEADLINE))?;
        let request = upgrade_request(addr, "/api/ws", &format!("Cookie: {cookie}\r\n"));
        s.write_all(request.as_bytes())?;
        let head = read_head(&mut s)?;
        if !head.starts_with("HTTP/1.1 101 ") {
            return Err(io::Error::other(format!("upgrade refused: {head}")));
        }
        let mut reader = BufReader::new(s.try_clone()?);
        let hello: Value = loop {
            let (op, payload) = read_whole_frame(&mut reader)?;
            match op {
                9 => write_frame(&mut s, 10, &payload)?,
                1 => break serde_json::from_slice(&payload).map_err(io::Error::other)?,
                _ => {
                    return Err(io::Error::other(format!(
                        "expected hello, got opcode {op}: {}",
                        String::from_utf8_lossy(&payload)
                    )));
                }
            }
        };
        if hello["type"] != "hello" {
            return Err(io::Error::other(format!("expected hello, got {hello}")));
        }
        // The reader blocks until the server or `Drop` ends the connection.
        s.set_read_timeout(None)?;
        let writer = Arc::new(Mutex::new(s));
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let (w, r) = (writer.clone(), seen.clone());
        thread::spawn(move || read_events(reader, &w, &r));
        Ok(Arc::new(Conn {
            hello,
            seen,
            writer,
        }))
    }

    /// Connection attempts every [`RECONNECT_PAUSE`] until one gets its `hello`, or
    /// `deadline`; the connection and how many attempts failed.
    fn reconnect(addr: SocketAddr, cookie: &str, deadline: Instant) -> (Arc<Conn>, usize) {
        let mut failed = 0;
        loop {
            match Self::try_open(addr, cookie) {
                Ok(conn) => return (conn, failed),
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "{addr}: no connection by the deadline ({failed} attempts): {e}"
                    );
                    failed += 1;
                    thread::sleep(RECONNECT_PAUSE);
                }
            }
        }
    }

    fn send(&self, text: &str) -> io::Result<()> {
        write_frame(&mut self.writer.lock().unwrap(), 1, text.as_bytes())
    }

    fn post(&self, room: usize, contents: &[String]) -> io::Result<()> {
        let messages: Vec<Value> = contents.iter().map(|c| json!({ "content": c })).collect();
        self.send(
            &json!({"type": "clientMessages",
                    "payload": {"roomId": ROOMS[room], "messages": messages}})
            .to_string(),
        )
    }

    fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.0.lock().unwrap())
    }

    /// Waits until `ready` says something, or `deadline`.
    fn wait_for<T>(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&Seen) -> Option<T>,
    ) -> Option<T> {
        let (lock, changed) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            if let Some(value) = ready(&seen) {
                return Some(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            seen = changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    /// Waits until it holds at least `at_least` messages per room, or `deadline`; whether it does.
    fn wait_for_counts(&self, deadline: Instant, at_least: [usize; 2]) -> bool {
        self.wait_for(deadline, |s| {
            let c = s.counts();
            (c[0] >= at_least[0] && c[1] >= at_least[1]).then_some(())
        })
        .is_some()
    }

    /// `requestRoomHistory` before `first_id`: the page (newest first) and `hasMoreMessages`.
    fn history(&self, room: usize, first_id: &str) -> (Vec<Msg>, bool) {
        let asked = self.with(|s| s.histories.len());
        self.send(
            &json!({"type": "requestRoomHistory",
                    "payload": {"roomId": ROOMS[room], "firstMessageId": first_id}})
            .to_string(),
        )
        .expect("send requestRoomHistory");
        let page = self
            .wait_for(Instant::now() + IO_DEADLINE, |s| {
                s.histories.get(asked).cloned()
            })
            .unwrap_or_else(|| panic!("no roomHistory for {} before {first_id}", ROOMS[room]));
        assert_eq!(page["roomId"], ROOMS[room], "{page}");
        let messages = page["messages"].as_array().expect("messages");
        (
            messages.iter().map(message).collect(),
            page["hasMoreMessages"].as_bool().expect("hasMoreMessages"),
        )
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(s) = self.writer.lock() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The reader thread: records events, answers pings, ends with the connection.
fn read_events(
    mut reader: BufReader<TcpStream>,
    writer: &Mutex<TcpStream>,
    seen: &(Mutex<Seen>, Condvar),
) {
    let (lock, changed) = seen;
    let why = loop {
        let (op, payload) = match read_whole_frame(&mut reader) {
            Ok(frame) => frame,
            Err(e) => break format!("read: {e}"),
        };
        match op {
            1 => {}
            8 => {
                let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                break format!(
                    "close frame {code:?} {}",
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                );
            }
            9 => {
                let _ = write_frame(&mut writer.lock().unwrap(), 10, &payload);
                continue;
            }
            10 => continue,
            _ => {
                lock.lock().unwrap().unexpected.push(format!("opcode {op}"));
                continue;
            }
        }
        let now = Instant::now();
        let text = String::from_utf8_lossy(&payload).into_owned();
        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut s = lock.lock().unwrap();
        let room = room_index(&event["payload"]["roomId"]);
        match (event["type"].as_str(), room) {
            (Some("serverMessages"), Some(room)) => {
                for m in event["payload"]["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let m = message(m);
                    s.contents.insert(m.content.clone());
                    s.rooms[room].push(m);
                    s.arrived[room].push(now);
                }
            }
            (Some("roomHistory"), _) => s.histories.push(event["payload"].clone()),
            (Some("error"), _) => s.errors.push((now, event["payload"].clone())),
            _ => s.unexpected.push(text),
        }
        changed.notify_all();
    };
    lock.lock().unwrap().closed = Some((Instant::now(), why));
    changed.notify_all();
}

/// `hello`'s rooms: (id, messages newest first, hasMoreMessages).
fn hello_rooms(hello: &Value) -> Vec<(String, Vec<Msg>, bool)> {
    hello["payload"]["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("hello without rooms: {hello}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("room id").to_string(),
                r["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(message)
                    .collect(),
                r["hasMoreMessages"].as_bool().expect("hasMoreMessages"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Posting.

/// An account and the batches it posted so far (their numbers make contents unique).
struct Client {
    name: String,
    cookie: String,
    batches: AtomicU64,
}

impl Client {
    /// Signs up every name, all at once.
    fn sign_up_all(addr: SocketAddr, names: &[String]) -> Vec<Arc<Client>> {
        thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| scope.spawn(move || sign_up(addr, name)))
                .collect();
            handles
                .into_iter()
                .zip(names)
                .map(|(h, name)| {
                    Arc::new(Client {
                        name: name.clone(),
                        cookie: h.join().expect("sign-up"),
                        batches: AtomicU64::new(0),
                    })
                })
                .collect()
        })
    }

    /// The next batch: rooms alternate, 1 to `size_max` messages, each content
    /// `<name> <room> <batch>.<index>`.
    fn next_batch(&self, size_max: usize) -> (usize, Vec<String>) {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        let room = (n % 2) as usize;
        let size = 1 + (n / 2) as usize % size_max;
        let contents = (0..size)
            .map(|j| format!("{} {} {n}.{j}", self.name, ROOMS[room]))
            .collect();
        (room, contents)
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// Every message came back in `serverMessages` (the last one at this instant).
    Acked(Instant),
    /// An error event came first (at this instant).
    Refused(Instant),
    /// Neither within [`ANSWER_DEADLINE`].
    Unanswered,
    /// The connection ended first (the batch may have been stored or not).
    Lost,
}

#[derive(Clone, Debug)]
struct Batch {
    contents: Vec<String>,
    sent: Instant,
    outcome: Outcome,
}

impl Batch {
    /// When the answer came: an acknowledgement or an error event.
    fn answered(&self) -> Option<Instant> {
        match self.outcome {
            Outcome::Acked(at) | Outcome::Refused(at) => Some(at),
            Outcome::Unanswered | Outcome::Lost => None,
        }
    }
}

/// Sends one `clientMessages` event and waits for what answers it.
fn post_batch(conn: &Conn, room: usize, contents: Vec<String>) -> Batch {
    let errors_before = conn.with(|s| s.errors.len());
    let sent = Instant::now();
    if conn.post(room, &contents).is_err() {
        return Batch {
            contents,
            sent,
            outcome: Outcome::Lost,
        };
    }
    let outcome = conn
        .wait_for(sent + ANSWER_DEADLINE, |s| {
            if contents.iter().all(|c| s.contents.contains(c)) {
                Some(Outcome::Acked(Instant::now()))
            } else if let Some((at, _)) = s.errors.get(errors_before) {
                Some(Outcome::Refused(*at))
            } else {
                s.closed.as_ref().map(|_| Outcome::Lost)
            }
        })
        .unwrap_or(Outcome::Unanswered);
    Batch {
        contents,
        sent,
        outcome,
    }
}

/// A thread posting for one connection, one batch in flight, a batch every `interval` at most
/// (the next waits for the answer to the last), until stopped or the connection ends.
struct Poster {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Batch>>>,
    thread: Option<JoinHandle<()>>,
}

impl Poster {
    fn paced(client: &Arc<Client>, conn: &Arc<Conn>, interval: Duration, size_max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (client, conn, stopped, logged) =
            (client.clone(), conn.clone(), stop.clone(), log.clone());
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let (room, contents) = client.next_batch(size_max);
                let batch = post_batch(&conn, room, contents);
                let next = batch.sent + interval;
                let lost = matches!(batch.outcome, Outcome::Lost);
                logged.lock().unwrap().push(batch);
                if lost {
                    break;
                }
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Poster {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// The first acknowledgement of a batch sent at or after `since`.
    fn first_ack_since(&self, since: Instant) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.sent >= since)
            .find_map(|b| match b.outcome {
                Outcome::Acked(at) => Some(at),
                _ => None,
            })
    }

    /// Stops after the batch in flight (or when its connection ended); everything it posted.
    fn finish(mut self) -> Vec<Batch> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("poster thread");
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Poster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every content the batches wrote, whatever answered them.
fn attempted<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> HashSet<String> {
    batches
        .into_iter()
        .flat_map(|b| b.contents.iter().cloned())
        .collect()
}

/// Every content that came back in `serverMessages` to any of `conns`.
fn acknowledged<'a>(conns: impl IntoIterator<Item = &'a Arc<Conn>>) -> HashSet<String> {
    let mut all = HashSet::new();
    for conn in conns {
        conn.with(|s| all.extend(s.contents.iter().cloned()));
    }
    all
}

/// Durations at the 50th, 99th percentile and the largest, for printing.
fn percentiles(mut durations: Vec<Duration>) -> String {
    if durations.is_empty() {
        return "none".into();
    }
    durations.sort();
    format!(
        "p50 {:?}, p99 {:?}, max {:?} (n={})",
        percentile(&durations, 50),
        percentile(&durations, 99),
        durations[durations.len() - 1],
        durations.len()
    )
}

/// The `p`th percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Sent to acknowledged, of the acknowledged batches sent in `[from, to)`, sorted.
fn ack_latencies(batches: &[&Batch], from: Instant, to: Instant) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = batches
        .iter()
        .filter(|b| b.sent >= from && b.sent < to)
        .filter_map(|b| match b.outcome {
            Outcome::Acked(at) => Some(at - b.sent),
            _ => None,
        })
        .collect();
    latencies.sort();
    latencies
}

/// Polls `ready` every 5 ms until it holds or `deadline`; whether it held.
fn poll_until(deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of what clients saw.

/// A content's parts: (sender, room, the sender's own order key).
fn parse_content(content: &str) -> (&str, &str, (u64, u64)) {
    let mut parts = content.split(' ');
    let (Some(user), Some(room), Some(order), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("a content this test did not post: {content:?}");
    };
    let (n, j) = order.split_once('.').unwrap_or((order, "0"));
    let key = (
        n.parse()
            .unwrap_or_else(|_| panic!("bad content {content:?}")),
        j.parse()
            .unwrap_or_else(|_| panic!("bad content {content:?}")),
    );
    (user, room, key)
}

/// One room as one client saw it: ids strictly increasing (so none twice), each content once,
/// shown with its sender's name, in its room, and each sender's messages in the order it sent
/// them (a sender has one batch in flight at a time).
fn check_sequence(who: &str, room: usize, messages: &[Msg]) {
    for pair in messages.windows(2) {
        assert!(
            id_key(&pair[0].id) < id_key(&pair[1].id),
            "{who}, room {}: id {} then {} ({:?} then {:?})",
            ROOMS[room],
            pair[0].id,
            pair[1].id,
            pair[0].content,
            pair[1].content
        );
    }
    let mut contents = HashSet::new();
    let mut last_by_sender: HashMap<&str, (u64, u64)> = HashMap::new();
    for m in messages {
        assert!(
            contents.insert(m.content.as_str()),
            "{who}, room {}: {:?} twice",
            ROOMS[room],
            m.content
        );
        let (user, in_room, key) = parse_content(&m.content);
        assert_eq!(m.user, user, "{who}: {m:?} shown under another name");
        assert_eq!(in_room, ROOMS[room], "{who}: {m:?} in the wrong room");
        if let Some(before) = last_by_sender.insert(user, key) {
            assert!(
                before < key,
                "{who}, room {}: {user}'s messages out of the order sent: {before:?} then {m:?}",
                ROOMS[room]
            );
        }
    }
}

/// A client's room equals the store's: same ids, same contents, same order (no gap, no
/// duplicate).
fn assert_matches_store(who: &str, room: usize, messages: &[Msg], stored: &Room) {
    let got: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m.id.as_str(), m.content.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = stored
        .iter()
        .map(|(id, content)| (id.as_str(), content.as_str()))
        .collect();
    if got != want {
        let at = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{who}, room {}: {} messages, the store {}; first difference at {at}: got {:?}, \
             stored {:?}",
            ROOMS[room],
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

fn assert_no_surprises(who: &str, conn: &Conn, histories_asked: bool) {
    conn.with(|s| {
        assert!(
            s.unexpected.is_empty(),
            "{who}: unexpected events {:?}",
            s.unexpected
        );
        assert!(
            histories_asked || s.histories.is_empty(),
            "{who}: unrequested roomHistory"
        );
    });
}

/// Catches a reconnected client up on one room: `hello`'s page, then older pages until they
/// reach the last message it had; returns what it missed (oldest first) and the pages asked.
/// The pages must contain that last message (else there would be a hole) and agree with what it
/// had where they overlap.
fn catch_up(who: &str, conn: &Conn, room: usize, had: &[Msg]) -> (Vec<Msg>, usize) {
    let (id, mut page, mut more) = hello_rooms(&conn.hello).swap_remove(room);
    assert_eq!(id, ROOMS[room]);
    page.reverse();
    let mut fetched = page; // oldest first
    let last = had.last().map(|m| id_key(&m.id));
    assert!(
        last.is_some(),
        "{who}: had nothing before, so nothing to resume from"
    );
    let mut pages = 0;
    while more && fetched.first().map(|m| id_key(&m.id)) > last {
        let (mut older, has_more) = conn.history(room, &fetched[0].id);
        pages += 1;
        assert!(
            older.len() == PAGE || !has_more,
            "{who}: a short page ({}) with more to come",
            older.len()
        );
        older.reverse();
        older.append(&mut fetched);
        fetched = older;
        more = has_more;
    }
    let at = fetched
        .iter()
        .position(|m| Some(id_key(&m.id)) == last)
        .unwrap_or_else(|| {
            panic!(
                "{who}, room {}: the last message it had ({last:?}) is not in the history \
                 (oldest fetched {:?}): a hole",
                ROOMS[room],
                fetched.first()
            )
        });
    let overlap = (at + 1).min(had.len());
    assert_eq!(
        &fetched[at + 1 - overlap..=at],
        &had[had.len() - overlap..],
        "{who}, room {}: history disagrees with what it received",
        ROOMS[room]
    );
    (fetched[at + 1..].to_vec(), pages)
}

/// Waits until each connection holds, per room, as many messages as the stream, then through a
/// quiet period in which nothing more may arrive; returns the streams. Posting must have
/// stopped.
fn settle_on_streams(redis_port: u16, conns: &[(&str, &Arc<Conn>)]) -> [Room; 2] {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let lengths = stream_lengths(redis_port);
        for (who, conn) in conns {
            if !conn.wait_for_counts(deadline, lengths) {
                let (counts, closed) = conn.with(|s| (s.counts(), s.closed.clone()));
                panic!(
                    "{who}: {counts:?} messages per room after {DELIVERY_DEADLINE:?}, the \
                     streams hold {lengths:?}; connection ended: {closed:?}"
                );
            }
        }
        thread::sleep(QUIET);
        // Nothing may have been stored meanwhile: posting has stopped.
        if stream_lengths(redis_port) == lengths {
            return [0, 1].map(|r| stream(redis_port, r));
        }
        assert!(Instant::now() < deadline, "the streams keep growing");
    }
}

/// Refused batches' error events all say the store is unavailable.
fn assert_only_store_unavailable(conns: &[Arc<Conn>]) -> HashMap<String, usize> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for conn in conns {
        conn.with(|s| {
            for (_, e) in &s.errors {
                let id = e["id"].as_str().unwrap_or("(no id)").to_string();
                *ids.entry(id).or_default() += 1;
            }
        });
    }
    for id in ids.keys() {
        assert_eq!(id, "STORE_UNAVAILABLE", "error events: {ids:?}");
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of redis-server, ten times, at about 1,000 messages/s.

const KILLS: usize = 10;
/// Between the kill and the restart: a short pause, as a supervisor's restart would take.
const REDIS_DOWN: Duration = Duration::from_millis(300);
/// Steady traffic between one recovery and the next kill.
const REDIS_UP: Duration = Duration::from_millis(700);
const SENDERS_1: usize = 8;
/// 8 senders, a batch of 1 to 4 messages (2.5 on average) every 20 ms each: 1,000 messages/s
/// offered, when the acknowledgements keep up.
const INTERVAL_1: Duration = Duration::from_millis(20);
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
    let clients = Client::sign_up_all(addr, &names);
    let conns: Vec<Arc<Conn>> = clients
        .iter()
        .map(|c| Conn::open(addr, &c.cookie))
        .collect();
    let posters: Vec<Poster> = clients
        .iter()
        .zip(&conns)
        .map(|(client, conn)| Poster::paced(client, conn, INTERVAL_1, BATCH_MAX_1))
        .collect();
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
                let mut first = None;
                poll_until(up + DELIVERY_DEADLINE, || {
                    first = poster.first_ack_since(up);
                    first.is_some()
                });
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
    let watched: Vec<(&str, &Arc<Conn>)> = names.iter().map(String::as_str).zip(&conns).collect();
    let streams = settle_on_streams(redis.port, &watched);
    for (name, conn) in &watched {
        let (rooms, closed) = conn.with(|s| (s.rooms.clone(), s.closed.clone()));
        assert!(closed.is_none(), "{name}: disconnected: {closed:?}");
        for room in 0..2 {
            check_sequence(name, room, &rooms[room]);
            assert_matches_store(name, room, &rooms[room], &streams[room]);
        }
        assert_no_surprises(name, conn, false);
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
        percentiles(ack_latencies(&between, loading, Instant::now()))
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
        &attempted(batches.iter().copied()),
        &acknowledged(&conns),
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
const INTERVAL_2: Duration = Duration::from_millis(20);
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
    let started = Instant::now();
    let _turn = one_at_a_time();
    let mut mariadb = MariaDb::start();
    let redis = Redis::start();
    let ringchat = start_ringchat(&["--redis", &redis.url(), "--mysql", &mariadb.url()]);
    let addr = ringchat.addr;

    let names: Vec<String> = (0..SENDERS_2).map(|i| format!("maria{i:02}")).collect();
    let clients = Client::sign_up_all(addr, &names);
    sign_up(addr, "marialogin");
    assert_eq!(login(addr, "marialogin").0, 204, "login before the outage");
    let conns: Vec<Arc<Conn>> = clients
        .iter()
        .map(|c| Conn::open(addr, &c.cookie))
        .collect();
    let posters: Vec<Poster> = clients
        .iter()
        .zip(&conns)
        .map(|(client, conn)| Poster::paced(client, conn, INTERVAL_2, 3))
        .collect();
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
    // Logins and sign-ups, alternating, until each has succeeded RECOVERED_IN_A_ROW times in
    // a row: each request lands on either core (a new connection each), and each core has its
    // own pool and backoff, so one success does not show both recovered.
    let mut after: Vec<(&str, u16, Duration)> = Vec::new();
    let mut in_a_row = [0usize; 2];
    let mut k = 0;
    while in_a_row.iter().any(|&n| n < RECOVERED_IN_A_ROW) {
        assert!(
            up.elapsed() < DELIVERY_DEADLINE,
            "accounts not back {DELIVERY_DEADLINE:?} after MariaDB answered again: {after:?}"
        );
        let (kind, (status, _)) = if k % 2 == 0 {
            ("login", login(addr, "marialogin"))
        } else {
            ("sign-up", create_account(addr, &format!("mariaup{k:02}")))
        };
        in_a_row[k % 2] = if status == 204 {
            in_a_row[k % 2] + 1
        } else {
            0
        };
        after.push((kind, status, up.elapsed()));
        k += 1;
    }
    let all: Vec<Vec<Batch>> = posters.into_iter().map(Poster::finish).collect();
    let batches: Vec<&Batch> = all.iter().flatten().collect();

    let last_failure = after.iter().rev().find(|a| a.1 != 204);
    eprintln!(
        "mariadb: down {:?} (kill -9), answering {:?} after the restart began; in the outage \
         (kind, status, time to answer) {answers:?}; after it (kind, status, answered after \
         MariaDB answered) {after:?}",
        restarting - killed,
        up - restarting,
    );
    for (kind, status, took) in &answers {
        assert_eq!(*status, 503, "{kind} while MariaDB was down: {answers:?}");
        assert!(
            *took <= ACCOUNT_ANSWER_MAX,
            "{kind} answered 503 after {took:?} (max {ACCOUNT_ANSWER_MAX:?})"
        );
    }
    assert!(
        answers.iter().filter(|a| a.0 == "login").count() >= 5
            && answers.iter().filter(|a| a.0 == "sign-up").count() >= 5,
        "too few requests in the outage: {answers:?}"
    );
    for (kind, status, _) in &after {
        assert!(
            [204, 503].contains(status),
            "{kind} after the outage answered {status}: {after:?}"
        );
    }
    if let Some((kind, _, at)) = last_failure {
        assert!(
            *at <= RECOVERY_MAX,
            "a {kind} failed {at:?} after MariaDB answered again (max {RECOVERY_MAX:?}): \
             {after:?}"
        );
    }

    // The chat kept flowing through the outage: everything acknowledged, at a comparable p99.
    for b in &batches {
        assert!(
            matches!(b.outcome, Outcome::Acked(_)),
            "a batch got {:?} (sent {:?} after the kill): {:?}",
            b.outcome,
            b.sent.checked_duration_since(killed),
            b.contents
        );
    }
    let before = ack_latencies(&batches, baseline_from, killed);
    let during = ack_latencies(&batches, killed, restarting);
    let acked_during: usize = batches
        .iter()
        .filter(|b| b.sent >= killed && b.sent < restarting)
        .map(|b| b.contents.len())
        .sum();
    eprintln!(
        "mariadb: chat acknowledgement latency before the outage {}, during it {} \
         ({acked_during} messages acknowledged while MariaDB was down)",
        percentiles(before.clone()),
        percentiles(during.clone())
    );
    assert!(
        during.len() * 2
            >= before.len() * MARIADB_DOWN.as_millis() as usize / BASELINE.as_millis() as usize,
        "the chat slowed down in the outage: {} batches in {MARIADB_DOWN:?}, {} in \
         {BASELINE:?} before",
        during.len(),
        before.len()
    );
    let (p99_before, p99_during) = (percentile(&before, 99), percentile(&during, 99));
    assert!(
        p99_during <= p99_before * 2 + P99_SLACK,
        "acknowledgement p99 {p99_during:?} in the outage, {p99_before:?} before"
    );

    let watched: Vec<(&str, &Arc<Conn>)> = names.iter().map(String::as_str).zip(&conns).collect();
    let streams = settle_on_streams(redis.port, &watched);
    for (name, conn) in &watched {
        let rooms = conn.with(|s| s.rooms.clone());
        for room in 0..2 {
            check_sequence(name, room, &rooms[room]);
            assert_matches_store(name, room, &rooms[room], &streams[room]);
        }
        assert_no_surprises(name, conn, false);
    }
    set_check(
        "mariadb down",
        &attempted(batches.iter().copied()),
        &acknowledged(&conns),
        &streams,
    );
    eprintln!("mariadb: whole test {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 of ringchat mid-load.

const SENDERS_3: usize = 6;
/// The last clients come back only after more than a page per room went by without them.
const LATE_3: usize = 2;
const INTERVAL_3: Duration = Duration::from_millis(20);
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
    let clients = Client::sign_up_all(addr, &names);
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
        .map(|u| Poster::paced(&u.client, &u.conn, INTERVAL_3, 3))
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
            let closed = u.conn.wait_for(killing + IO_DEADLINE, |s| s.closed.clone());
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
            posters.push(Poster::paced(&u.client, &u.conn, INTERVAL_3, 3));
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
            posters.push(Poster::paced(&u.client, &u.conn, INTERVAL_3, 3));
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
    for b in &batches {
        assert!(
            !matches!(b.outcome, Outcome::Unanswered | Outcome::Refused(_)),
            "{what}: a batch got {:?}: {:?}",
            b.outcome,
            b.contents
        );
    }

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
    set_check(
        what,
        &attempted(&batches),
        &acknowledged(&every_conn),
        &read_back,
    );
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
