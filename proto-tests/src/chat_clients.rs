//! The chat clients of the tests that load ringchat with many WebSocket clients at once while
//! something fails (tests/scale_out.rs: several instances on one Redis; tests/durability.rs:
//! the stores or the server itself killed), and the checks they share on what the clients saw.
//!
//! Blocking sockets: each [`Conn`] has a reader thread that answers pings and records every
//! event in [`Seen`]; each [`Poster`] is a thread that keeps one batch in flight and waits for
//! its acknowledgement (its messages coming back in `serverMessages`) or an error event before
//! the next. Sign-up, the upgrade request and the frames are the root crate's
//! tests/common/chat_client.rs, included here. The streams as Redis holds them are read from the
//! outside (`XRANGE`, `XLEN` over RESP2), for comparing with what the clients saw.
//!
//! Not here: the peers and the server themselves (the crate root, [`crate::crash`]), and what a
//! single test checks on its own.

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use chat_client::{PASSWORD, id_key, masked_frame, post_json, sign_up};
use chat_client::{SOCKET_DEADLINE, read_frame, read_head, upgrade_request};

use crate::Ringchat;
use crate::timing::Failures;

/// The test rooms, by index; [`ROOMS_FLAG`] configures them.
pub const ROOMS: [&str; 2] = ["a", "b"];
pub const ROOMS_FLAG: &str = "a:A,b:B";

/// Connecting, the upgrade, the `hello`, a `roomHistory` page, a Redis reply: the shared
/// client's socket deadline (the servers share the machine with redis-server and MariaDB).
pub const IO_DEADLINE: Duration = SOCKET_DEADLINE;
/// One batch's acknowledgement or error event (the server's `--redis-timeout` is 2 s).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(20);
/// After every client has all it should, a pause in which a duplicate would show up.
pub const QUIET: Duration = Duration::from_millis(300);
/// What `hello` and one `roomHistory` page hold.
pub const PAGE: usize = 100;
/// A client waits this long between failed connection attempts (a web client retries at once;
/// this only keeps the refused attempts from filling the log).
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// The server.

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for a test's whole run: each loads both cores with servers, peers and a dozen client
/// threads or more, which would show in another test's latencies.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// An instance with the test rooms on two cores; `store` selects the backend (nothing: the
/// embedded store in the harness's `--data-dir`).
pub fn start_ringchat(store: &[&str]) -> Ringchat {
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
pub type Room = Vec<(String, String)>;

/// A room's stream, read with XRANGE.
pub fn stream(port: u16, room: usize) -> Room {
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

/// Each room's stream length (XLEN).
pub fn stream_lengths(port: u16) -> [usize; 2] {
    [0, 1].map(|room| match redis_command(port, &["XLEN", ROOMS[room]]) {
        Resp::Integer(n) => n as usize,
        other => panic!("XLEN: {other:?}"),
    })
}

// ---------------------------------------------------------------------------------------------
// WebSocket chat connections.

/// A chat message as a client shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    pub user: String,
    pub content: String,
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
pub fn write_frame(s: &mut TcpStream, opcode: u8, payload: &[u8]) -> io::Result<()> {
    s.write_all(&masked_frame(true, opcode, payload))
}

/// One whole frame: (opcode, payload). The server sends every event as one unfragmented frame.
pub fn read_whole_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let (fin, opcode, payload) = read_frame(r)?;
    if !fin || opcode == 0 {
        return Err(io::Error::other("a fragmented frame from the server"));
    }
    Ok((opcode, payload))
}

/// The size on the wire of an unmasked server frame with a `payload`-byte payload (RFC 6455
/// §5.2: a 2-byte header, plus 2 or 8 bytes of extended length).
pub fn server_frame_bytes(payload: usize) -> usize {
    payload
        + match payload {
            0..126 => 2,
            126..=65535 => 4,
            _ => 10,
        }
}

/// What one connection received after its `hello`.
#[derive(Default)]
pub struct Seen {
    /// `serverMessages`, per room, in arrival order.
    pub rooms: [Vec<Msg>; 2],
    /// When each of `rooms`' messages arrived.
    pub arrived: [Vec<Instant>; 2],
    /// Each `serverMessages` frame as it arrived: when, and its size on the wire (header and
    /// payload), which is what the server queued for every connection in the room.
    pub frames: Vec<(Instant, usize)>,
    /// Every content in `rooms`: what this connection acknowledges.
    pub contents: HashSet<String>,
    /// Error events and when they came.
    pub errors: Vec<(Instant, Value)>,
    /// `roomHistory` payloads, in arrival order.
    pub histories: Vec<Value>,
    /// Anything else (a second `hello`, an unknown event, a bad frame).
    pub unexpected: Vec<String>,
    /// Why the connection ended, once it has, and when.
    pub closed: Option<(Instant, String)>,
}

impl Seen {
    pub fn counts(&self) -> [usize; 2] {
        [self.rooms[0].len(), self.rooms[1].len()]
    }
}

/// A chat WebSocket with a reader thread; the socket is shut down when dropped.
pub struct Conn {
    /// The server it connected to.
    pub addr: SocketAddr,
    pub hello: Value,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    writer: Arc<Mutex<TcpStream>>,
}

impl Conn {
    /// Upgrades with the session cookie and reads the `hello`.
    pub fn open(addr: SocketAddr, cookie: &str) -> Arc<Conn> {
        Self::try_open(addr, cookie).unwrap_or_else(|e| panic!("{addr}: {e}"))
    }

    /// Like [`Conn::open`], but a refused connection, a failed upgrade or a close instead of
    /// `hello` is an error: what a reconnecting client sees while the server is down.
    pub fn try_open(addr: SocketAddr, cookie: &str) -> io::Result<Arc<Conn>> {
        let s = TcpStream::connect_timeout(&addr, IO_DEADLINE)?;
        let (s, reader, hello) = upgrade_to_hello(s, addr, cookie)?;
        // The reader blocks until the server or `Drop` ends the connection.
        s.set_read_timeout(None)?;
        let writer = Arc::new(Mutex::new(s));
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let (w, r) = (writer.clone(), seen.clone());
        thread::spawn(move || read_events(reader, &w, &r));
        Ok(Arc::new(Conn {
            addr,
            hello,
            seen,
            writer,
        }))
    }

    /// Connection attempts every [`RECONNECT_PAUSE`] until one gets its `hello`, or
    /// `deadline`; the connection and how many attempts failed.
    pub fn reconnect(addr: SocketAddr, cookie: &str, deadline: Instant) -> (Arc<Conn>, usize) {
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

    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.0.lock().unwrap())
    }

    /// Waits until `ready` says something, or `deadline`.
    pub fn wait_for<T>(
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
    pub fn wait_for_counts(&self, deadline: Instant, at_least: [usize; 2]) -> bool {
        self.wait_for(deadline, |s| {
            let c = s.counts();
            (c[0] >= at_least[0] && c[1] >= at_least[1]).then_some(())
        })
        .is_some()
    }

    /// `requestRoomHistory` before `first_id`: the page (newest first) and `hasMoreMessages`.
    pub fn history(&self, room: usize, first_id: &str) -> (Vec<Msg>, bool) {
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

/// Upgrades `s`, connected to `addr`, to a chat WebSocket with the session `cookie`, and reads
/// up to its `hello`, answering pings: the socket (with [`IO_DEADLINE`] for reads and writes),
/// a buffered reader on a clone of it (which may already hold frames that came after the
/// `hello`), and the `hello`. For connections a test drives itself, without a reader thread
/// (clients that stop reading, thousands of idle ones); [`Conn::try_open`] adds the thread. A
/// refused upgrade or a close instead of `hello` is an error.
pub fn upgrade_to_hello(
    mut s: TcpStream,
    addr: SocketAddr,
    cookie: &str,
) -> io::Result<(TcpStream, BufReader<TcpStream>, Value)> {
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
    Ok((s, reader, hello))
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
                s.frames.push((now, server_frame_bytes(payload.len())));
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
pub fn hello_rooms(hello: &Value) -> Vec<(String, Vec<Msg>, bool)> {
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
pub struct Client {
    pub name: String,
    pub cookie: String,
    batches: AtomicU64,
}

impl Client {
    /// Signs up every name, name `i` on server `i % addrs.len()`, all at once.
    pub fn sign_up_all(addrs: &[SocketAddr], names: &[String]) -> Vec<Arc<Client>> {
        thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(i, name)| scope.spawn(move || sign_up(addrs[i % addrs.len()], name)))
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

    /// A connection for each client, client `i` on server `i % addrs.len()`.
    pub fn open_all(addrs: &[SocketAddr], clients: &[Arc<Client>]) -> Vec<Arc<Conn>> {
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| Conn::open(addrs[i % addrs.len()], &c.cookie))
            .collect()
    }

    /// The next batch: rooms alternate, 1 to `size_max` messages, each content
    /// `<name> <room> <batch>.<index>`.
    fn next_batch(&self, size_max: usize) -> (usize, Vec<String>) {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        let room = (n % 2) as usize;
        (
            room,
            self.contents(n, room, 1 + (n / 2) as usize % size_max, 0),
        )
    }

    /// Like [`Client::next_batch`], every batch in `room`: 1 to `size_max` messages, cycling;
    /// the batch number is written with leading zeros to `digits` digits (a larger message,
    /// still one [`parse_content`] reads).
    fn next_batch_in(&self, room: usize, size_max: usize, digits: usize) -> (usize, Vec<String>) {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        (
            room,
            self.contents(n, room, 1 + n as usize % size_max, digits),
        )
    }

    /// Batch `n`'s `size` contents, `<name> <room> <n>.<index>`, `n` zero-padded to `digits`.
    fn contents(&self, n: u64, room: usize, size: usize, digits: usize) -> Vec<String> {
        (0..size)
            .map(|j| format!("{} {} {n:0digits$}.{j}", self.name, ROOMS[room]))
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Outcome {
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
pub struct Batch {
    pub contents: Vec<String>,
    pub sent: Instant,
    pub outcome: Outcome,
}

impl Batch {
    /// When the answer came: an acknowledgement or an error event.
    pub fn answered(&self) -> Option<Instant> {
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

/// How a [`Poster`] spaces its batches; either way the next waits for the answer to the last.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// This long after each answer.
    Pause(Duration),
    /// A batch every this long at most.
    Interval(Duration),
}

/// A thread posting for one connection, one batch in flight, until stopped, its plan is done,
/// or the connection ends.
pub struct Poster {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Batch>>>,
    thread: Option<JoinHandle<()>>,
}

impl Poster {
    /// Posts [`Client`]'s next batches (1 to `size_max` messages, rooms alternating) at `pace`.
    pub fn start(client: &Arc<Client>, conn: &Arc<Conn>, pace: Pace, size_max: usize) -> Poster {
        let client = client.clone();
        let batches = std::iter::from_fn(move || Some(client.next_batch(size_max)));
        Self::spawn(conn, batches, pace)
    }

    /// [`Poster::start`] for each client on its connection.
    pub fn start_all(
        clients: &[Arc<Client>],
        conns: &[Arc<Conn>],
        pace: Pace,
        size_max: usize,
    ) -> Vec<Poster> {
        clients
            .iter()
            .zip(conns)
            .map(|(client, conn)| Self::start(client, conn, pace, size_max))
            .collect()
    }

    /// Like [`Poster::start`], but every batch in `room` (one room's rate is all of it), and
    /// each message's batch number zero-padded to `digits` digits, so a test chooses the bytes
    /// per message.
    pub fn start_in_room(
        client: &Arc<Client>,
        conn: &Arc<Conn>,
        room: usize,
        pace: Pace,
        size_max: usize,
        digits: usize,
    ) -> Poster {
        let client = client.clone();
        let batches =
            std::iter::from_fn(move || Some(client.next_batch_in(room, size_max, digits)));
        Self::spawn(conn, batches, pace)
    }

    /// Posts `plan`'s batches back to back.
    pub fn planned(conn: &Arc<Conn>, plan: Vec<(usize, Vec<String>)>) -> Poster {
        Self::spawn(conn, plan.into_iter(), Pace::Pause(Duration::ZERO))
    }

    fn spawn(
        conn: &Arc<Conn>,
        mut batches: impl Iterator<Item = (usize, Vec<String>)> + Send + 'static,
        pace: Pace,
    ) -> Poster {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (conn, stopped, logged) = (conn.clone(), stop.clone(), log.clone());
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Some((room, contents)) = batches.next() else {
                    break;
                };
                let batch = post_batch(&conn, room, contents);
                let pause = match pace {
                    Pace::Pause(pause) => pause,
                    Pace::Interval(interval) => {
                        (batch.sent + interval).saturating_duration_since(Instant::now())
                    }
                };
                let lost = matches!(batch.outcome, Outcome::Lost);
                logged.lock().unwrap().push(batch);
                if lost {
                    break;
                }
                thread::sleep(pause);
            }
        });
        Poster {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// The first acknowledgement of a batch sent at or after `since`, polled for every 5 ms
    /// until `deadline`.
    pub fn first_ack_since(&self, since: Instant, deadline: Instant) -> Option<Instant> {
        loop {
            let first = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|b| b.sent >= since)
                .find_map(|b| match b.outcome {
                    Outcome::Acked(at) => Some(at),
                    _ => None,
                });
            if first.is_some() || Instant::now() >= deadline {
                return first;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops after the batch in flight (or when its connection ended); everything it posted.
    pub fn finish(self) -> Vec<Batch> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until its plan is done (or its connection ended); everything it posted.
    pub fn join(mut self) -> Vec<Batch> {
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

/// Every batch was acknowledged or ended with its connection: none refused, none unanswered.
pub fn assert_none_refused<'a>(what: &str, batches: impl IntoIterator<Item = &'a Batch>) {
    for b in batches {
        assert!(
            !matches!(b.outcome, Outcome::Unanswered | Outcome::Refused(_)),
            "{what}: a batch got {:?}: {:?}",
            b.outcome,
            b.contents
        );
    }
}

/// Sent to acknowledged, of the acknowledged batches, sorted.
pub fn ack_latencies<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = batches
        .into_iter()
        .filter_map(|b| match b.outcome {
            Outcome::Acked(at) => Some(at - b.sent),
            _ => None,
        })
        .collect();
    latencies.sort();
    latencies
}

/// Durations at the 50th, 99th percentile and the largest, for printing.
pub fn percentiles(mut durations: Vec<Duration>) -> String {
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
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Checks of what clients saw.

/// A content's parts: (sender, room, the sender's own order key).
pub fn parse_content(content: &str) -> (&str, &str, (u64, u64)) {
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
pub fn check_sequence(who: &str, room: usize, messages: &[Msg]) {
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
pub fn assert_matches_store(who: &str, room: usize, messages: &[Msg], stored: &Room) {
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

/// No unknown event, and no `roomHistory` unless the client asked for one.
pub fn assert_no_surprises(who: &str, conn: &Conn, histories_asked: bool) {
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

/// Refused batches' error events all say the store is unavailable; their ids, counted.
pub fn assert_only_store_unavailable(conns: &[Arc<Conn>]) -> HashMap<String, usize> {
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

/// Catches a reconnected client up on one room: `hello`'s page, then older pages until they
/// reach the last message it had (all of them when it had none); returns what it missed
/// (oldest first) and the pages asked. The pages must contain that last message (else there
/// would be a hole) and agree with what it had where they overlap.
pub fn catch_up(who: &str, conn: &Conn, room: usize, had: &[Msg]) -> (Vec<Msg>, usize) {
    let (id, mut page, mut more) = hello_rooms(&conn.hello).swap_remove(room);
    assert_eq!(id, ROOMS[room]);
    page.reverse();
    let mut fetched = page; // oldest first
    let last = had.last().map(|m| id_key(&m.id));
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
    let Some(last) = last else {
        return (fetched, pages);
    };
    let at = fetched
        .iter()
        .position(|m| id_key(&m.id) == last)
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

/// After a MySQL outage: logins and sign-ups, alternating (`request(k)` makes request `k`, a
/// login when `k` is even, and returns its kind and status), until each kind has succeeded
/// `in_a_row` times in a row. Each request lands on either core (a new connection each), and
/// each core has its own pool and backoff, so one success does not show both recovered.
/// Returns every (kind, status, time since `up`); panics when `within` of `up` passes first.
pub fn accounts_until_recovered(
    what: &str,
    up: Instant,
    within: Duration,
    in_a_row: usize,
    mut request: impl FnMut(usize) -> (&'static str, u16),
) -> Vec<(&'static str, u16, Duration)> {
    let mut after = Vec::new();
    let mut streak = [0usize; 2];
    let mut k = 0;
    while streak.iter().any(|&n| n < in_a_row) {
        assert!(
            up.elapsed() < within,
            "{what}: accounts not back {within:?} after the backend returned: {after:?}"
        );
        let (kind, status) = request(k);
        streak[k % 2] = if status == 204 { streak[k % 2] + 1 } else { 0 };
        after.push((kind, status, up.elapsed()));
        k += 1;
    }
    after
}

/// What a MySQL outage test saw of the account requests: each one during the outage (kind,
/// status, time to answer) and [`accounts_until_recovered`]'s after it.
pub struct AccountsInOutage<'a> {
    pub test: &'a str,
    pub during: &'a [(&'static str, u16, Duration)],
    pub after: &'a [(&'static str, u16, Duration)],
    /// Requests of each kind the outage must have seen at least.
    pub each_kind_min: usize,
    /// Every request in the outage answered 503 within this.
    pub answer_max: Duration,
    /// No request failed later than this after the peer answered again.
    pub recovery_max: Duration,
}

/// The checks of [`AccountsInOutage`] (all hard): every request in the outage answered 503
/// within `answer_max`, enough of each kind, only 204 or 503 after it, none failed later than
/// `recovery_max` after the peer answered again.
pub fn check_accounts_in_outage(failures: &mut Failures, o: &AccountsInOutage<'_>) {
    let (test, during, after) = (o.test, o.during, o.after);
    for (kind, status, took) in during {
        failures.check(*status == 503, || {
            format!("{test}: {kind} in the outage answered {status}: {during:?}")
        });
        failures.check(*took <= o.answer_max, || {
            format!(
                "{test}: {kind} answered 503 after {took:?} (max {:?})",
                o.answer_max
            )
        });
    }
    for kind in ["login", "sign-up"] {
        failures.check(
            during.iter().filter(|a| a.0 == kind).count() >= o.each_kind_min,
            || format!("{test}: too few {kind}s in the outage: {during:?}"),
        );
    }
    for (kind, status, _) in after {
        failures.check([204, 503].contains(status), || {
            format!("{test}: {kind} after the outage answered {status}: {after:?}")
        });
    }
    if let Some((kind, _, at)) = after.iter().rev().find(|a| a.1 != 204) {
        failures.check(*at <= o.recovery_max, || {
            format!(
                "{test}: a {kind} failed {at:?} after the peer answered again (max {:?}): \
                 {after:?}",
                o.recovery_max
            )
        });
    }
}

/// The chat through an outage of a peer it does not need, for the batches sent from
/// `baseline_from` to the outage's start (the baseline) and in `outage` (`[start, end)`): every
/// batch acknowledged (hard); as timing checks, at least half the baseline's batches per
/// second during the outage, and the p99 during it at most twice the one before plus
/// `p99_slack`. Prints both latencies.
pub fn check_chat_through_outage(
    failures: &mut Failures,
    test: &str,
    batches: &[&Batch],
    baseline_from: Instant,
    outage: (Instant, Instant),
    p99_slack: Duration,
) {
    let (start, end) = outage;
    for b in batches {
        failures.check(matches!(b.outcome, Outcome::Acked(_)), || {
            format!(
                "{test}: a batch got {:?} (sent {:?} after the outage began): {:?}",
                b.outcome,
                b.sent.checked_duration_since(start),
                b.contents
            )
        });
    }
    let between = |from: Instant, to: Instant| {
        ack_latencies(
            batches
                .iter()
                .copied()
                .filter(|b| b.sent >= from && b.sent < to),
        )
    };
    let (before, during) = (between(baseline_from, start), between(start, end));
    eprintln!(
        "{test}: chat acknowledgement latency before the outage {}, during it {}",
        percentiles(before.clone()),
        percentiles(during.clone())
    );
    let (baseline_len, outage_len) = (start - baseline_from, end - start);
    failures.check_timing(
        during.len() as u128 * baseline_len.as_millis() * 2
            >= before.len() as u128 * outage_len.as_millis(),
        || {
            format!(
                "{test}: the chat slowed down in the outage: {} batches in {outage_len:?}, {} \
                 in {baseline_len:?} before",
                during.len(),
                before.len(),
            )
        },
    );
    let (p99_before, p99_during) = (percentile(&before, 99), percentile(&during, 99));
    failures.check_timing(p99_during <= p99_before * 2 + p99_slack, || {
        format!("{test}: acknowledgement p99 {p99_during:?} in the outage, {p99_before:?} before")
    });
}

/// Waits until each connection holds, per room, as many messages as the stream (less what it
/// already had from an earlier connection, `before`), then through a quiet period in which
/// nothing more may arrive; returns the streams. Posting must have stopped.
pub fn settle(
    redis_port: u16,
    conns: &[(&str, &Conn, [usize; 2])],
    deadline: Instant,
) -> [Room; 2] {
    loop {
        let lengths = stream_lengths(redis_port);
        for (who, conn, before) in conns {
            let want = [0, 1].map(|r| lengths[r].saturating_sub(before[r]));
            if !conn.wait_for_counts(deadline, want) {
                let (counts, closed) = conn.with(|s| (s.counts(), s.closed.clone()));
                panic!(
                    "{who} on {}: {counts:?} messages per room by the deadline, the streams \
                     hold {lengths:?} ({before:?} known before); connection ended: {closed:?}",
                    conn.addr
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

/// [`settle`] for connections that saw the whole rooms, then each one's rooms checked
/// ([`check_sequence`], [`assert_matches_store`]) and [`assert_no_surprises`] (no history
/// asked); returns the streams.
pub fn settle_and_check(redis_port: u16, conns: &[(&str, &Conn)], deadline: Instant) -> [Room; 2] {
    let watched: Vec<(&str, &Conn, [usize; 2])> = conns
        .iter()
        .map(|&(who, conn)| (who, conn, [0, 0]))
        .collect();
    let streams = settle(redis_port, &watched, deadline);
    for &(who, conn) in conns {
        let rooms = conn.with(|s| s.rooms.clone());
        for room in 0..2 {
            check_sequence(who, room, &rooms[room]);
            assert_matches_store(who, room, &rooms[room], &streams[room]);
        }
        assert_no_surprises(who, conn, false);
    }
    streams
}
