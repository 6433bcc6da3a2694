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
//! The clients here are blocking sockets with a reader thread each (pings answered, events
//! recorded) and a poster thread that keeps one batch in flight and waits for its
//! acknowledgement or an error event before the next. Sign-up, the upgrade and the frames are
//! the root crate's tests/common/chat_client.rs.

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chat_client::{Ws, id_key, masked_frame, read_frame, sign_up};
use ringchat_proto_tests::{MariaDb, PEER_START_DEADLINE, Redis, Ringchat, free_port};

const ROOMS: [&str; 2] = ["a", "b"];
const ROOMS_FLAG: &str = "a:A,b:B";
const INSTANCES: usize = 3;

/// A Redis reply, a `roomHistory` page, a killed instance's connections ending (connecting, the
/// upgrade and the `hello` have [`chat_client::SOCKET_DEADLINE`]).
const IO_DEADLINE: Duration = Duration::from_secs(30);
/// One batch's acknowledgement or error event (the server's `--redis-timeout` is 2 s).
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);
/// Everything posted has reached every client.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
/// After every client has all it should, a pause in which a duplicate would show up.
const QUIET: Duration = Duration::from_millis(300);
/// What `hello` and one `roomHistory` page hold.
const PAGE: usize = 100;

// ---------------------------------------------------------------------------------------------
// Set-up: the servers.

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for a test's whole run (taken after its MariaDB started, which may overlap).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three instances on the same Redis and MySQL, with the same rooms.
fn start_instances(redis_url: &str, mysql_url: &str) -> Vec<Option<Ringchat>> {
    (0..INSTANCES)
        .map(|_| {
            Some(Ringchat::start(&[
                "--redis",
                redis_url,
                "--mysql",
                mysql_url,
                "--rooms",
                ROOMS_FLAG,
                "--threads",
                "2",
                // All sign-ups come from 127.0.0.1.
                "--signups-per-hour",
                "1000",
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

// ---------------------------------------------------------------------------------------------
// Redis from the outside: a few commands over RESP2, for the streams as Redis holds them.

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

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

/// A room's stream: (entry id, content), oldest first.
fn stream(port: u16, room: usize) -> Vec<(String, String)> {
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
    /// Every content in `rooms`, for acknowledgements.
    contents: HashSet<String>,
    /// Error events and when they came.
    errors: Vec<(Instant, Value)>,
    /// `roomHistory` payloads, in arrival order.
    histories: Vec<Value>,
    /// Anything else (a second `hello`, an unknown event, a bad frame).
    unexpected: Vec<String>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

impl Seen {
    fn counts(&self) -> [usize; 2] {
        [self.rooms[0].len(), self.rooms[1].len()]
    }
}

/// A chat WebSocket with a reader thread; the socket is shut down when dropped.
struct Conn {
    instance: usize,
    hello: Value,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    writer: Arc<Mutex<TcpStream>>,
}

impl Conn {
    /// Upgrades with the session cookie and reads the `hello`.
    fn open(addr: SocketAddr, instance: usize, cookie: &str) -> Arc<Conn> {
        let Ws { mut s } = Ws::open(addr, Some(cookie));
        let mut reader = BufReader::new(s.try_clone().expect("clone the socket"));
        let hello: Value = loop {
            let (op, payload) =
                read_whole_frame(&mut reader).unwrap_or_else(|e| panic!("{addr}: no hello: {e}"));
            match op {
                9 => write_frame(&mut s, 10, &payload).expect("pong"),
                1 => break serde_json::from_slice(&payload).expect("hello is JSON"),
                _ => panic!(
                    "{addr}: expected hello, got opcode {op}: {}",
                    String::from_utf8_lossy(&payload)
                ),
            }
        };
        assert_eq!(hello["type"], "hello", "{addr}: {hello}");
        // The reader blocks until the server or `Drop` ends the connection.
        s.set_read_timeout(None).unwrap();
        let writer = Arc::new(Mutex::new(s));
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let (w, r) = (writer.clone(), seen.clone());
        thread::spawn(move || read_events(reader, &w, &r));
        Arc::new(Conn {
            instance,
            hello,
            seen,
            writer,
        })
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
    lock.lock().unwrap().closed = Some(why);
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
    /// Signs up every name, name `i` on instance `i % addrs.len()`, all at once.
    fn sign_up_all(addrs: &[SocketAddr], names: &[String]) -> Vec<Arc<Client>> {
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

    /// A connection for each client, client `i` on instance `i % INSTANCES`.
    fn open_all(addrs: &[SocketAddr], clients: &[Arc<Client>]) -> Vec<Arc<Conn>> {
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| Conn::open(addrs[i % INSTANCES], i % INSTANCES, &c.cookie))
            .collect()
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
    /// The connection ended first.
    Lost,
}

#[derive(Clone, Debug)]
struct Batch {
    contents: Vec<String>,
    sent: Instant,
    outcome: Outcome,
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
            } else if s.closed.is_some() {
                Some(Outcome::Lost)
            } else {
                None
            }
        })
        .unwrap_or(Outcome::Unanswered);
    Batch {
        contents,
        sent,
        outcome,
    }
}

/// A thread posting for one connection, one batch in flight, until stopped, its plan is done,
/// or the connection ends.
struct Poster {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Batch>>>,
    thread: Option<JoinHandle<()>>,
}

impl Poster {
    /// Posts [`Client::next_batch`]es (up to 3 messages) with `pause` between them.
    fn steady(client: &Arc<Client>, conn: &Arc<Conn>, pause: Duration) -> Poster {
        let client = client.clone();
        let batches = std::iter::from_fn(move || Some(client.next_batch(3)));
        Self::spawn(conn, batches, pause)
    }

    /// Posts `plan`'s batches back to back.
    fn planned(conn: &Arc<Conn>, plan: Vec<(usize, Vec<String>)>) -> Poster {
        Self::spawn(conn, plan.into_iter(), Duration::ZERO)
    }

    fn spawn(
        conn: &Arc<Conn>,
        mut batches: impl Iterator<Item = (usize, Vec<String>)> + Send + 'static,
        pause: Duration,
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

    fn batches(&self) -> Vec<Batch> {
        self.log.lock().unwrap().clone()
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

    /// Stops after the batch in flight; everything it posted.
    fn finish(self) -> Vec<Batch> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until its plan is done (or its connection ended); everything it posted.
    fn join(mut self) -> Vec<Batch> {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("poster thread");
        }
        self.batches()
    }
}

impl Drop for Poster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every message of an acknowledged batch, by content.
fn acked_contents<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> HashSet<String> {
    batches
        .into_iter()
        .filter(|b| matches!(b.outcome, Outcome::Acked(_)))
        .flat_map(|b| b.contents.iter().cloned())
        .collect()
}

/// Durations at the 50th, 99th percentile and the largest, for printing.
fn percentiles(mut durations: Vec<Duration>) -> String {
    if durations.is_empty() {
        return "none".into();
    }
    durations.sort();
    let at = |p: usize| durations[(durations.len() * p / 100).min(durations.len() - 1)];
    format!(
        "p50 {:?}, p99 {:?}, max {:?} (n={})",
        at(50),
        at(99),
        durations[durations.len() - 1],
        durations.len()
    )
}

fn ack_latencies(batches: &[Batch]) -> Vec<Duration> {
    batches
        .iter()
        .filter_map(|b| match b.outcome {
            Outcome::Acked(at) => Some(at - b.sent),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks.

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

/// A client's room equals the stream: same ids, same contents, same order.
fn assert_matches_stream(who: &str, room: usize, messages: &[Msg], stream: &[(String, String)]) {
    let got: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m.id.as_str(), m.content.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = stream
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
            "{who}, room {}: {} messages, the stream {}; first difference at {at}: got {:?}, \
             stream {:?}",
            ROOMS[room],
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

/// Waits until each connection holds, per room, as many messages as the stream (less what it
/// already had from an earlier connection, `before`), then through a quiet period in which
/// nothing more may arrive; returns the streams. Posting must have stopped.
fn settle(redis_port: u16, conns: &[(&str, &Conn, [usize; 2])]) -> [Vec<(String, String)>; 2] {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let lengths = stream_lengths(redis_port);
        for (who, conn, before) in conns {
            let want = [0, 1].map(|r| lengths[r].saturating_sub(before[r]));
            if !conn.wait_for_counts(deadline, want) {
                let (counts, closed) = conn.with(|s| (s.counts(), s.closed.clone()));
                panic!(
                    "{who} on instance {}: {counts:?} messages per room after \
                     {DELIVERY_DEADLINE:?}, the streams hold {lengths:?} ({before:?} known \
                     before); connection ended: {closed:?}",
                    conn.instance + 1
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

/// Polls `ready` every 10 ms until it holds or `deadline`.
fn poll_until(deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn assert_no_surprises(who: &str, conn: &Conn) {
    conn.with(|s| {
        assert!(
            s.unexpected.is_empty(),
            "{who}: unexpected events {:?}",
            s.unexpected
        );
        assert!(s.histories.is_empty(), "{who}: unrequested roomHistory");
    });
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
                .map(|(c, n)| format!("{n}@{}: {:?}", c.instance + 1, c.with(|s| s.counts())))
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
        let fresh = Conn::open(*addr, instance, &late);
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
        assert_matches_stream(&names[0], room, &reference[room], &streams[room]);
    }
    for (conn, name) in conns.iter().zip(&names) {
        conn.with(|s| {
            assert!(s.errors.is_empty(), "{name}: error events {:?}", s.errors);
            for room in 0..2 {
                assert_eq!(
                    s.rooms[room],
                    reference[room],
                    "{name} (instance {}) and {} (instance 1), room {}: different sequences",
                    conn.instance + 1,
                    names[0],
                    ROOMS[room]
                );
            }
        });
        assert_no_surprises(name, conn);
    }
    eprintln!("scale-out 1: whole test {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 of an instance.

const CLIENTS_2: usize = 12;
const KILLED: usize = 1;
/// Between two batches of a steady poster.
const PAUSE: Duration = Duration::from_millis(40);

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
    let mut posters: Vec<Option<Poster>> = clients
        .iter()
        .zip(&conns)
        .map(|(client, conn)| Some(Poster::steady(client, conn, PAUSE)))
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
        let closed = conns[i].wait_for(killed_at + IO_DEADLINE, |s| s.closed.clone());
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
        let conn = Conn::open(addrs[instance], instance, &clients[i].cookie);
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
        posters[i] = Some(Poster::steady(&clients[i], &conn, PAUSE));
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
    let streams = settle(redis.port, &watched);
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
            assert_matches_stream(&names[i], room, &whole[room], &streams[room]);
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
    for b in &every_batch {
        assert!(
            !matches!(b.outcome, Outcome::Unanswered | Outcome::Refused(_)),
            "a post was answered with {:?}: {:?}",
            b.outcome,
            b.contents
        );
    }
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
        percentiles(ack_latencies(
            &all.iter()
                .flat_map(|(_, b)| b.iter().cloned())
                .collect::<Vec<_>>()
        ))
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
    let posters: Vec<Poster> = clients
        .iter()
        .zip(&conns)
        .map(|(client, conn)| Poster::steady(client, conn, PAUSE))
        .collect();

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
        let mut first = None;
        poll_until(up + POSTING_RESUMES_MAX, || {
            first = poster.first_ack_since(up);
            first.is_some()
        });
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
    let watched: Vec<(&str, &Conn, [usize; 2])> = connected
        .iter()
        .map(|&i| (names[i].as_str(), &*conns[i], [0, 0]))
        .collect();
    let streams = settle(redis.port, &watched);
    for &i in &connected {
        let rooms = conns[i].with(|s| s.rooms.clone());
        for room in 0..2 {
            check_sequence(&names[i], room, &rooms[room]);
            assert_matches_stream(&names[i], room, &rooms[room], &streams[room]);
        }
        assert_no_surprises(&names[i], &conns[i]);
    }

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
    let mut error_ids: HashMap<String, usize> = HashMap::new();
    for conn in &conns {
        conn.with(|s| {
            for (_, e) in &s.errors {
                let id = e["id"].as_str().unwrap_or("(no id)").to_string();
                *error_ids.entry(id).or_default() += 1;
            }
        });
    }
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
    for id in error_ids.keys() {
        assert_eq!(id, "STORE_UNAVAILABLE", "error events: {error_ids:?}");
    }
}
