//! `chat-load`: open-loop fan-out load for ringchat's chat over WebSocket.
//!
//! ```text
//! chat-load --addr 127.0.0.1:PORT[,IP:PORT...] [--conns 1000] [--users 10] [--senders 10]
//!           [--rooms 10] [--rate 200] [--warmup 2] [--duration 10] [--drain 2] [--size 64]
//!           [--server-pid P[,P...]] [--server-cpu 0] [--aux-pid LABEL:PID[,LABEL:PID...]]
//! ```
//!
//! Signs up `--users` accounts (`POST /api/create-account`), opens `--conns` WebSocket
//! connections (`GET /api/ws`, the accounts' cookies spread round-robin), waits for every
//! `hello`, then posts messages on a fixed schedule: message `i` is due at `start + i / rate`,
//! from sender `i % senders`, into that sender's room (`r<sender % rooms>`), so each sender's
//! messages form one room's order. The first `--warmup` seconds are warm-up (checked, not
//! timed); the next `--duration` seconds are measured; then it drains for `--drain` seconds.
//!
//! Open loop: each message carries its *intended* send time (CLOCK_MONOTONIC ns, shared with
//! every recipient on this machine) and is sent then, or at once when the generator is behind,
//! keeping the intended stamp. Every connection is a member of every room, so each message is
//! delivered to every connection; each delivery records `receive − intended` in an
//! HdrHistogram (measured messages only) and is checked:
//!
//! - `lost`: (connection, message) pairs never delivered by the end of the drain;
//! - `duplicated`: a message delivered twice to one connection;
//! - `out_of_order`: a sender's sequence number going backwards on a connection, or a room's
//!   message id (`<ms>-<seq>`) not strictly increasing on a connection;
//! - `room_order_mismatch`: (connection, room) pairs whose whole sequence of ids differs from
//!   connection 0's (a rolling hash), i.e. the room's order was not the same for everyone.
//!
//! The receiving side is one thread (a current-thread tokio runtime reading every connection);
//! the schedule runs on a second thread sleeping in `clock_nanosleep(TIMER_ABSTIME)` (ns
//! precision, not tokio's 1 ms timer wheel, and not held up behind a turn of the readers' loop),
//! writing on a dup of each sender connection's socket. Pin the process with `taskset` to one
//! core the server does not use; both threads share it. Given `--server-pid`, it reads the server's
//! `utime + stime` (all threads) at the start and end of the measured window; given
//! `--server-cpu`, also how busy that core was in total (`/proc/stat`), so `other %` shows
//! anything else that ran there.
//!
//! **Several instances** (scale-out: ringchat instances sharing one Redis and one MySQL):
//! `--addr` takes a comma-separated list. Connection `c` goes to address `c % N`, sign-ups all
//! go to the first (sessions are shared, so a cookie works on every instance), and sender `s`
//! uses a connection on address `s % N`, so the senders are spread too. `--server-pid` then
//! takes every instance's pid: the server CPU time is their sum (and `idle`'s resident memory
//! too). Each measured delivery is also sorted by whether the receiving connection is on the
//! sender's instance or another one, into `same_*` and `cross_*` latency figures (printed only
//! with more than one address). `--aux-pid redis:P,mariadb:Q` reports each such process's CPU
//! over the same window as `<label>_cpu_seconds`, apart from the server's.
//!
//! **Protocols** (`--proto`): `ringchat` is the real protocol above (accounts, cookie, hello,
//! `clientMessages` → `serverMessages`, persisted). `room` is the peers' minimal room protocol
//! (bench/peers/README.md): `GET /ws?rooms=r0,...,r<R-1>` (every connection in every room, as
//! in ringchat), frames `r<k>\n<content>` broadcast unchanged; there are no ids, so the room
//! order is checked on (sender, sequence) only.
//!
//! **Scenarios** (`--scenario`):
//! - `fanout` (default): the open-loop schedule above.
//! - `burst`: closed loop, the most deliveries per second: each sender keeps `--window`
//!   messages in flight, posting the next when its own connection receives one of its own; the
//!   window counts are the same checks as `fanout`; latency is receive − actual send.
//! - `idle`: opens `--conns` connections (authenticated, each with its hello, for `ringchat`),
//!   waits `--settle` seconds, and reports the server's resident memory (`VmRSS` of
//!   `--server-pid`) before and after, per connection. With `--source-ips N` the client side
//!   binds to 127.0.0.1 … 127.0.0.N round-robin, so more than one address's ephemeral ports
//!   (~28k) can be used.
//! - `login`: `--clients` keep-alive HTTP clients post `/api/login` back to back for
//!   `--duration` seconds over `--users` accounts; logins per second and their latency.
//! - `churn` and `overload` (`chat_load/streams.rs`): open-loop posting while connections come
//!   and go: `churn` closes and reopens `--churn-pct` % of the connections per second;
//!   `overload` steps the rate through `--steps` multiples of `--capacity`. Latency and refusals
//!   per `--latency-window`, failures by kind, lost / unstored / out-of-order messages.
//! - `cycles` (`chat_load/cycles.rs`): `--cycles` connect → authenticate → `hello` → close
//!   cycles, `--in-flight` at once, every failure counted by kind.
//!
//!   These three (`chat_load/lifecycle.rs`) also watch the server: with `--samples CSV` its
//!   `VmRSS`, open descriptors and `/metrics` connection counts every `--sample-interval`
//!   seconds, and at the end whether descriptors and connections came back to their baseline.
//!
//! Output: one `key=value` per line on stdout, for scripts (bench/run, bench/chat-fanout.py),
//! including `pct_<quantile>_us` lines for percentile curves.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use ringchat_bench::proc_stat::{decode_clock_ticks_per_second, decode_cpu_ticks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// The crate root's modules would be looked up beside it in src/bin/, where every file is a
// binary of its own; these live in src/bin/chat_load/.
#[path = "chat_load/cycles.rs"]
mod cycles;
#[path = "chat_load/lifecycle.rs"]
mod lifecycle;
#[path = "chat_load/streams.rs"]
mod streams;

const USAGE: &str = "usage: chat-load --addr IP:PORT[,IP:PORT...] [--proto ringchat|room] \
[--scenario fanout|burst|idle|login] [--conns N] [--users N] [--senders N] [--rooms N] \
[--rate MSG_PER_S] [--window N] [--warmup S] [--duration S] [--drain S] [--size BYTES] \
[--settle S] [--source-ips N] [--clients N] [--server-pid P[,P...]] [--server-cpu N] \
[--aux-pid LABEL:PID[,LABEL:PID...]] [--connect-parallel N] \
[--scenario churn|cycles|overload] [--churn-pct P] [--observers K] [--latency-window S] \
[--samples CSV] \
[--sample-interval S] [--cycles K] [--in-flight C] [--capacity MSG_PER_S] \
[--steps MULT:S[,MULT:S...]] [--hello-timeout S] [--close-timeout S] [--leak-timeout S]";

/// Quantiles printed as `pct_<q>_us`, for latency percentile curves.
const CURVE_QUANTILES: [f64; 12] = [
    0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 1.0,
];
/// Read buffer reserved per connection when messages flow, and when idle.
const READ_RESERVE_BYTES: usize = 64 * 1024;
const IDLE_READ_RESERVE_BYTES: usize = 2 * 1024;
/// Most client source addresses (127.0.0.1 … 127.0.0.N).
const SOURCE_IPS_MAX: usize = 250;
/// How long every connection has to be upgraded and get its hello (18,000 take about 6 s).
const READY_TIMEOUT_NS: u64 = 300_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Ringchat,
    Room,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Fanout,
    Burst,
    Idle,
    Login,
    Churn,
    Cycles,
    Overload,
}

#[derive(Clone)]
struct Args {
    proto: Proto,
    scenario: Scenario,
    window: usize,
    settle: f64,
    source_ips: usize,
    clients: usize,
    /// Every server instance's address; connection `c` uses `addrs[c % addrs.len()]`.
    addrs: Vec<String>,
    conns: usize,
    users: usize,
    senders: usize,
    rooms: usize,
    rate: f64,
    warmup: f64,
    duration: f64,
    drain: f64,
    size: usize,
    /// Every server process; CPU time and resident memory are summed over them.
    server_pids: Vec<u32>,
    server_cpu: Option<usize>,
    /// Other processes (Redis, MySQL) whose CPU over the window is reported apart.
    aux_pids: Vec<(String, u32)>,
    connect_parallel: usize,
    /// `churn`: percent of the connections closed and reopened per second.
    churn_pct: f64,
    /// `churn`, `overload`: latency window, seconds (None: 10 for churn, 1 for overload).
    latency_window: Option<f64>,
    /// `churn`, `cycles`, `overload`: CSV of server samples (RSS, fds, open connections).
    samples: Option<String>,
    sample_interval: f64,
    /// `churn`, `overload`: how many connections are observed (0: all; see streams.rs).
    observers: usize,
    /// `cycles`: how many, and how many at once.
    cycles: u64,
    in_flight: usize,
    /// `overload`: (multiple of capacity, seconds) steps, and the capacity in messages/s.
    steps: Vec<(f64, f64)>,
    capacity: f64,
    /// Seconds for a hello, for the server's answer to our close, and for the server's
    /// descriptors and connection count to come back to their baseline at the end.
    hello_timeout: f64,
    close_timeout: f64,
    leak_timeout: f64,
}

impl Args {
    /// The address connection `c` uses.
    fn addr_of(&self, c: usize) -> &str {
        &self.addrs[c % self.addrs.len()]
    }

    /// Sender `s`'s connection: the first of its share of the connections (`conns / senders`
    /// each) that is on instance `s % instances`, so the senders are spread over the
    /// instances as they are over the accounts. With one address, the first of its share.
    fn sender_conn(&self, s: usize) -> usize {
        let n = self.addrs.len();
        let base = s * (self.conns / self.senders);
        base + (s % n + n - base % n) % n
    }
}

fn parse_args() -> Result<Option<Args>> {
    let mut a = Args {
        proto: Proto::Ringchat,
        scenario: Scenario::Fanout,
        window: 4,
        settle: 2.0,
        source_ips: 1,
        clients: 8,
        addrs: Vec::new(),
        conns: 1000,
        users: 10,
        senders: 10,
        rooms: 10,
        rate: 200.0,
        warmup: 2.0,
        duration: 10.0,
        drain: 2.0,
        size: 64,
        server_pids: Vec::new(),
        server_cpu: None,
        aux_pids: Vec::new(),
        connect_parallel: 64,
        churn_pct: 2.0,
        observers: 0,
        latency_window: None,
        samples: None,
        sample_interval: 2.0,
        cycles: 100_000,
        in_flight: 32,
        steps: vec![(0.5, 10.0), (2.0, 60.0), (0.5, 20.0)],
        capacity: 0.0,
        hello_timeout: 30.0,
        close_timeout: 5.0,
        leak_timeout: 15.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--addr" => {
                a.addrs = value.split(',').map(|v| v.trim().to_string()).collect();
                if a.addrs.iter().any(|v| v.is_empty()) {
                    bail!("{}", bad());
                }
            }
            "--proto" => {
                a.proto = match value.as_str() {
                    "ringchat" => Proto::Ringchat,
                    "room" => Proto::Room,
                    _ => bail!("{}", bad()),
                }
            }
            "--scenario" => {
                a.scenario = match value.as_str() {
                    "fanout" => Scenario::Fanout,
                    "burst" => Scenario::Burst,
                    "idle" => Scenario::Idle,
                    "login" => Scenario::Login,
                    "churn" => Scenario::Churn,
                    "cycles" => Scenario::Cycles,
                    "overload" => Scenario::Overload,
                    _ => bail!("{}", bad()),
                }
            }
            "--window" => a.window = value.parse().with_context(bad)?,
            "--settle" => a.settle = value.parse().with_context(bad)?,
            "--source-ips" => a.source_ips = value.parse().with_context(bad)?,
            "--clients" => a.clients = value.parse().with_context(bad)?,
            "--conns" => a.conns = value.parse().with_context(bad)?,
            "--users" => a.users = value.parse().with_context(bad)?,
            "--senders" => a.senders = value.parse().with_context(bad)?,
            "--rooms" => a.rooms = value.parse().with_context(bad)?,
            "--rate" => a.rate = value.parse().with_context(bad)?,
            "--warmup" => a.warmup = value.parse().with_context(bad)?,
            "--duration" => a.duration = value.parse().with_context(bad)?,
            "--drain" => a.drain = value.parse().with_context(bad)?,
            "--size" => a.size = value.parse().with_context(bad)?,
            "--server-pid" => {
                a.server_pids = value
                    .split(',')
                    .map(|v| v.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(bad)?
            }
            "--aux-pid" => {
                for item in value.split(',') {
                    let (label, pid) = item.split_once(':').with_context(bad)?;
                    let ok = !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        bail!("{}", bad());
                    }
                    a.aux_pids
                        .push((label.to_string(), pid.trim().parse().with_context(bad)?));
                }
            }
            "--server-cpu" => a.server_cpu = Some(value.parse().with_context(bad)?),
            "--connect-parallel" => a.connect_parallel = value.parse().with_context(bad)?,
            "--churn-pct" => a.churn_pct = value.parse().with_context(bad)?,
            "--observers" => a.observers = value.parse().with_context(bad)?,
            "--latency-window" => a.latency_window = Some(value.parse().with_context(bad)?),
            "--samples" => a.samples = Some(value),
            "--sample-interval" => a.sample_interval = value.parse().with_context(bad)?,
            "--cycles" => a.cycles = value.parse().with_context(bad)?,
            "--in-flight" => a.in_flight = value.parse().with_context(bad)?,
            "--capacity" => a.capacity = value.parse().with_context(bad)?,
            "--steps" => {
                a.steps = value
                    .split(',')
                    .map(|step| {
                        let (m, secs) = step.split_once(':')?;
                        Some((m.trim().parse().ok()?, secs.trim().parse().ok()?))
                    })
                    .collect::<Option<_>>()
                    .with_context(bad)?
            }
            "--hello-timeout" => a.hello_timeout = value.parse().with_context(bad)?,
            "--close-timeout" => a.close_timeout = value.parse().with_context(bad)?,
            "--leak-timeout" => a.leak_timeout = value.parse().with_context(bad)?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.addrs.is_empty() {
        bail!("--addr is required");
    }
    if a.conns == 0 || a.users == 0 || a.senders == 0 || a.rooms == 0 || a.rate <= 0.0 {
        bail!("--conns, --users, --senders, --rooms and --rate must be positive");
    }
    if a.senders > a.conns {
        bail!("--senders must not exceed --conns");
    }
    if a.conns / a.senders < a.addrs.len() {
        bail!("each sender needs a connection on every address: --conns >= --senders x addresses");
    }
    if a.source_ips == 0 || a.source_ips > SOURCE_IPS_MAX {
        bail!("--source-ips must be 1..={SOURCE_IPS_MAX}");
    }
    if a.window == 0 || a.clients == 0 {
        bail!("--window and --clients must be positive");
    }
    if a.proto == Proto::Room && a.scenario == Scenario::Login {
        bail!("--scenario login needs --proto ringchat");
    }
    let lifecycle = matches!(
        a.scenario,
        Scenario::Churn | Scenario::Cycles | Scenario::Overload
    );
    if lifecycle && a.proto != Proto::Ringchat {
        bail!("--scenario churn, cycles and overload need --proto ringchat");
    }
    if lifecycle && a.addrs.len() != 1 {
        bail!("--scenario churn, cycles and overload measure one server: one --addr");
    }
    if !(0.0..=50.0).contains(&a.churn_pct) || a.in_flight == 0 || a.sample_interval <= 0.0 {
        bail!("--churn-pct must be 0..=50, --in-flight and --sample-interval positive");
    }
    if a.latency_window.is_some_and(|w| w <= 0.0) {
        bail!("--latency-window must be positive");
    }
    if a.steps.is_empty()
        || a.steps.len() > streams::STEPS_MAX
        || a.steps.iter().any(|&(m, secs)| m <= 0.0 || secs <= 0.0)
    {
        bail!(
            "--steps takes 1 to {} MULTIPLE:SECONDS pairs, both positive",
            streams::STEPS_MAX
        );
    }
    if a.size > 4000 {
        bail!("--size must be at most 4000 (the server's limit is 4096 characters)");
    }
    Ok(Some(a))
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------------
// Sign-up over plain blocking HTTP/1.1.

fn sign_up(addr: &str, username: &str) -> Result<String> {
    let body = format!(
        r#"{{"username":"{username}","email":"{username}@bench.example","password":"{BENCH_PASSWORD}"}}"#
    );
    post_for_cookie(addr, "/api/create-account", &body)
        .with_context(|| format!("create-account for {username}"))
}

/// Logs in as the account `sign_up(addr, username)` made; returns the new session's cookie.
fn log_in(addr: &str, username: &str) -> Result<String> {
    let body = format!(r#"{{"email":"{username}@bench.example","password":"{BENCH_PASSWORD}"}}"#);
    post_for_cookie(addr, "/api/login", &body).with_context(|| format!("login for {username}"))
}

/// Every bench account's password.
const BENCH_PASSWORD: &str = "benchpassword-1234";

/// Posts a JSON `body` to `path` on a fresh connection and returns the `sid` cookie it sets.
fn post_for_cookie(addr: &str, path: &str, body: &str) -> Result<String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or("");
    if !status.contains(" 204") && !status.contains(" 200") {
        bail!("{status:?}\n{text}");
    }
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("set-cookie:") {
            let rest_orig = &line[line.len() - rest.len()..];
            let rest_orig = rest_orig.trim();
            if let Some(v) = rest_orig.strip_prefix("sid=") {
                return Ok(v.split(';').next().unwrap_or("").to_string());
            }
        }
    }
    bail!("no sid cookie in\n{text}")
}

// ---------------------------------------------------------------------------------------------
// WebSocket client frames (masked) and server frames (unmasked).

fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = [0x5a, 0x17, 0xc3, 0x9e];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

/// One complete server frame at the start of `buf`: (fin, opcode, payload range, frame length).
/// A parsed server frame: fin, opcode, where its payload lies, and its whole length.
type ParsedFrame = (bool, u8, std::ops::Range<usize>, usize);

fn parse_frame(buf: &[u8]) -> Result<Option<ParsedFrame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 != 0 {
        bail!("server frame is masked");
    }
    let (len, head) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some((fin, opcode, head..head + len, head + len)))
}

// ---------------------------------------------------------------------------------------------
// Writes: a dup of the socket, shared by the reader (pongs, close) and the sender thread.

struct Writer {
    fd: OwnedFd,
    lock: Mutex<()>,
}

impl Writer {
    /// Writes the whole frame, waiting in poll(2) when the (non-blocking) socket is full.
    fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        let _g = self.lock.lock().unwrap();
        let fd = self.fd.as_raw_fd();
        while !buf.is_empty() {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                buf = &buf[n as usize..];
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 100) };
                }
                _ => return Err(e),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving state (the reader thread only, so Rc<RefCell>).

struct ConnState {
    /// Per sender: bitset of sequence numbers received.
    seen: Vec<Vec<u64>>,
    /// Per sender: distinct messages received.
    distinct: Vec<u64>,
    /// Per sender: last sequence number received (or -1).
    last_seq: Vec<i64>,
    /// Per room: last message id (ms, seq) received.
    last_id: Vec<(u64, u64)>,
    /// Per room: rolling hash of the ids in arrival order.
    order_hash: Vec<u64>,
}

/// The closed loop of `--scenario burst`: who sends next, driven by the reader thread.
struct Burst {
    /// Sender s's connection index and writer.
    conn_of: Vec<usize>,
    writers: Vec<Arc<Writer>>,
    sent_per_sender: Vec<u64>,
    /// Messages in the measured window carry phase `m`.
    measuring: bool,
    /// Set at the end: received own messages no longer trigger sends.
    stopped: bool,
    args: Args,
}

impl Burst {
    fn send(&mut self, s: usize, nonce: &str) -> std::io::Result<()> {
        let seq = self.sent_per_sender[s];
        self.sent_per_sender[s] += 1;
        let phase = if self.measuring { 'm' } else { 'w' };
        let frame = message_frame(&self.args, nonce, s, seq, now_ns(), phase);
        self.writers[s].write_all(&frame)
    }
}

/// The client frame posting sender `s`'s message `seq`, stamped `intended` (ns).
fn message_frame(
    args: &Args,
    nonce: &str,
    s: usize,
    seq: u64,
    intended: u64,
    phase: char,
) -> Vec<u8> {
    let mut content = format!("{nonce}|{s}|{seq}|{intended}|{phase}|");
    while content.len() < args.size {
        content.push('x');
    }
    let room = s % args.rooms;
    let text = match args.proto {
        Proto::Ringchat => format!(
            r#"{{"type":"clientMessages","payload":{{"roomId":"r{room}","messages":[{{"content":"{content}"}}]}}}}"#
        ),
        Proto::Room => format!("r{room}\n{content}"),
    };
    client_frame(0x1, text.as_bytes())
}

/// Several server instances (`--addr A,B,...`): which one each sender is on, and the latency
/// split by where the receiver is.
struct Instances {
    /// How many addresses; connection `c` is on instance `c % count`.
    count: usize,
    /// Sender `s`'s instance (`sender_conn(s) % count`).
    of_sender: Vec<usize>,
    /// Measured deliveries to a connection on the sender's instance.
    same: Histogram<u64>,
    /// Measured deliveries to a connection on another instance.
    cross: Histogram<u64>,
}

struct Shared {
    proto: Proto,
    burst: Option<Burst>,
    nonce: String,
    rooms: usize,
    senders: usize,
    conns: Vec<ConnState>,
    hist: Histogram<u64>,
    /// With several addresses, the latency split by instance; None with one.
    instances: Option<Instances>,
    hellos: usize,
    /// Read by the sender thread at the window's edges.
    deliveries_total: Arc<AtomicU64>,
    deliveries_measured: u64,
    duplicated: u64,
    out_of_order_sender: u64,
    out_of_order_room: u64,
    foreign: u64,
    closed_early: usize,
    errors: Vec<String>,
    pings: u64,
    error_events: u64,
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + needle.len() <= hay.len() {
        i += hay[i..].iter().position(|&b| b == needle[0])?;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Calls `each(room, id, content)` for every message of a `serverMessages` event, in order
/// (`id` is the server's `<ms>-<seq>`); does nothing for any other text. A malformed message
/// ends the walk.
fn each_server_message(text: &[u8], mut each: impl FnMut(&[u8], (u64, u64), &[u8])) {
    if !text.starts_with(br#"{"type":"serverMessages""#) {
        return;
    }
    let Some(r) = find(text, br#""roomId":""#, 0) else {
        return;
    };
    let rs = r + 10;
    let Some(re) = find(text, b"\"", rs) else {
        return;
    };
    let room_name = &text[rs..re];
    let mut pos = re;
    while let Some(i) = find(text, br#"{"id":""#, pos) {
        let is = i + 7;
        let Some(ie) = find(text, b"\"", is) else {
            break;
        };
        let id = &text[is..ie];
        let Some(dash) = id.iter().position(|&b| b == b'-') else {
            break;
        };
        let (Some(ms), Some(seq)) = (parse_u64(&id[..dash]), parse_u64(&id[dash + 1..])) else {
            break;
        };
        let cs = ie + 13; // `","content":"`
        if text.get(ie..cs) != Some(br#"","content":""#.as_slice()) {
            break;
        }
        let Some(ce) = find(text, b"\"", cs) else {
            break;
        };
        pos = ce;
        each(room_name, (ms, seq), &text[cs..ce]);
    }
}

/// What a generated message's content says: `<nonce>|<sender>|<seq>|<intended ns>|<phase>|…`.
struct Content<'a> {
    sender: usize,
    seq: u64,
    intended: u64,
    /// `w` (warm-up) or `m` (measured).
    phase: &'a [u8],
}

impl<'a> Content<'a> {
    /// None for another run's message (nonce), a sender out of range, or anything malformed.
    fn parse(content: &'a [u8], nonce: &str, senders: usize) -> Option<Content<'a>> {
        let mut parts = content.split(|&b| b == b'|');
        if parts.next()? != nonce.as_bytes() {
            return None;
        }
        let sender = parts.next().and_then(parse_u64)? as usize;
        let seq = parts.next().and_then(parse_u64)?;
        let intended = parts.next().and_then(parse_u64)?;
        let phase = parts.next()?;
        (sender < senders).then_some(Content {
            sender,
            seq,
            intended,
            phase,
        })
    }
}

impl Shared {
    /// One text message from the server on connection `c`, received at `t` ns.
    fn on_text(&mut self, c: usize, text: &[u8], t: u64) {
        if self.proto == Proto::Room {
            // `r<k>\n<content>`, the whole frame as a sender wrote it.
            let Some(nl) = text.iter().position(|&b| b == b'\n') else {
                self.foreign += 1;
                return;
            };
            match text[..nl].strip_prefix(b"r").and_then(parse_u64) {
                Some(n) if (n as usize) < self.rooms => {
                    self.on_message(c, n as usize, None, &text[nl + 1..], t)
                }
                _ => self.foreign += 1,
            }
            return;
        }
        if text.starts_with(br#"{"type":"hello""#) {
            self.hellos += 1;
            return;
        }
        if text.starts_with(br#"{"type":"error""#) {
            self.error_events += 1;
            if self.errors.len() < 5 {
                self.errors.push(String::from_utf8_lossy(text).into_owned());
            }
            return;
        }
        let mut foreign = 0;
        let rooms = self.rooms;
        each_server_message(text, |room_name, id, content| {
            match room_name.strip_prefix(b"r").and_then(parse_u64) {
                Some(n) if (n as usize) < rooms => {
                    self.on_message(c, n as usize, Some(id), content, t)
                }
                _ => foreign += 1,
            }
        });
        self.foreign += foreign;
    }

    /// One delivered message. `id` is the server's message id (`ringchat`); without one
    /// (`room`), the room's order is checked on (sender, sequence).
    fn on_message(
        &mut self,
        c: usize,
        room: usize,
        id: Option<(u64, u64)>,
        content: &[u8],
        t: u64,
    ) {
        let Some(Content {
            sender,
            seq,
            intended,
            phase,
        }) = Content::parse(content, &self.nonce, self.senders)
        else {
            self.foreign += 1;
            return;
        };
        let st = &mut self.conns[c];
        // Room order: ids strictly increase, and the rolling hash must match everyone's.
        let id = match id {
            Some(id) => {
                if id <= st.last_id[room] {
                    self.out_of_order_room += 1;
                }
                st.last_id[room] = id;
                id
            }
            None => (sender as u64, seq),
        };
        let h = &mut st.order_hash[room];
        *h = (*h ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id.1).wrapping_mul(0x100_0000_01b3);
        // Sender sequence.
        let bits = &mut st.seen[sender];
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= w {
            bits.resize(w + 1, 0);
        }
        if bits[w] & (1 << b) != 0 {
            self.duplicated += 1;
            return;
        }
        bits[w] |= 1 << b;
        // Counted once it is known not to be a duplicate (the window's figures and the drain's
        // end depend on this count).
        self.deliveries_total.fetch_add(1, Ordering::Relaxed);
        st.distinct[sender] += 1;
        if (seq as i64) < st.last_seq[sender] {
            self.out_of_order_sender += 1;
        } else {
            st.last_seq[sender] = seq as i64;
        }
        if phase == b"m" {
            self.deliveries_measured += 1;
            let lat = t.saturating_sub(intended).max(1);
            self.hist.saturating_record(lat);
            if let Some(inst) = &mut self.instances {
                if c % inst.count == inst.of_sender[sender] {
                    inst.same.saturating_record(lat);
                } else {
                    inst.cross.saturating_record(lat);
                }
            }
        }
        if let Some(burst) = &mut self.burst
            && !burst.stopped
            && burst.conn_of[sender] == c
            && let Err(e) = burst.send(sender, &self.nonce)
            && self.errors.len() < 5
        {
            self.errors.push(format!("burst send: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The WebSocket upgrade, shared by every scenario.

/// Connects connection `c` to its address (from its source address with `--source-ips`), asks
/// to upgrade `target` with `headers` (each line ending in CRLF) and reads the response head.
/// Returns the stream and whatever followed the head, in a buffer of `reserve` bytes. Failures
/// are [`lifecycle::Fail`]s whose kind says where it failed (`connect_<io kind>`,
/// `handshake_eof`, `http_<status>`).
async fn ws_connect(
    args: &Args,
    c: usize,
    target: &str,
    headers: &str,
    reserve: usize,
) -> Result<(TcpStream, Vec<u8>)> {
    use lifecycle::fail;
    let addr = args.addr_of(c);
    let server: std::net::SocketAddr = addr.parse().context("--addr must be IP:PORT")?;
    let socket = if server.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if args.source_ips > 1 && server.ip().is_loopback() && server.is_ipv4() {
        let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + (c % args.source_ips) as u8);
        socket
            .bind((ip, 0).into())
            .map_err(|e| fail(format!("bind_{:?}", e.kind()), e.to_string()))?;
    }
    let mut stream = socket
        .connect(server)
        .await
        .map_err(|e| fail(format!("connect_{:?}", e.kind()), e.to_string()))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(reserve);
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n", 0) {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(fail("handshake_eof", "closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status = head.get(9..12).unwrap_or("???");
        return Err(fail(
            format!("http_{status}"),
            format!("handshake refused: {head}"),
        ));
    }
    buf.drain(..head_end);
    Ok((stream, buf))
}

// ---------------------------------------------------------------------------------------------
// A connection: handshake, then a reader loop; writes go through a channel to a writer task.

async fn connection(
    c: usize,
    args: Rc<Args>,
    cookie: Rc<String>,
    shared: Rc<RefCell<Shared>>,
    gate: Rc<tokio::sync::Semaphore>,
    writer_slot: Rc<RefCell<Vec<Option<Arc<Writer>>>>>,
    stop: Rc<Cell<bool>>,
) {
    if let Err(e) = connection_inner(c, &args, &cookie, &shared, &gate, &writer_slot, &stop).await {
        let mut sh = shared.borrow_mut();
        if !stop.get() {
            sh.closed_early += 1;
            if sh.errors.len() < 5 {
                sh.errors.push(format!("conn {c}: {e:#}"));
            }
        }
    }
}

async fn connection_inner(
    c: usize,
    args: &Args,
    cookie: &str,
    shared: &RefCell<Shared>,
    gate: &tokio::sync::Semaphore,
    writer_slot: &RefCell<Vec<Option<Arc<Writer>>>>,
    stop: &Cell<bool>,
) -> Result<()> {
    let permit = gate.acquire().await?;
    let (target, cookie_line) = match args.proto {
        Proto::Ringchat => ("/api/ws".to_string(), format!("Cookie: sid={cookie}\r\n")),
        Proto::Room => {
            let rooms: Vec<String> = (0..args.rooms).map(|r| format!("r{r}")).collect();
            (format!("/ws?rooms={}", rooms.join(",")), String::new())
        }
    };
    let reserve = if args.scenario == Scenario::Idle {
        IDLE_READ_RESERVE_BYTES
    } else {
        READ_RESERVE_BYTES
    };
    let (mut stream, mut buf) = ws_connect(args, c, &target, &cookie_line, reserve).await?;
    drop(permit);
    if args.proto == Proto::Room {
        // No hello in the room protocol: the connection is ready once upgraded.
        shared.borrow_mut().hellos += 1;
    }

    // A dup of the socket for the sender thread, except when idle: then nothing is sent but
    // pongs (written here), and one descriptor per connection lets twice as many be opened.
    let tx = if args.scenario == Scenario::Idle {
        None
    } else {
        // SAFETY: dup of a valid socket; the copy is owned by the Writer.
        let wfd = unsafe { libc::dup(stream.as_raw_fd()) };
        if wfd < 0 {
            bail!("dup: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let tx = Arc::new(Writer {
            fd: unsafe { OwnedFd::from_raw_fd(wfd) },
            lock: Mutex::new(()),
        });
        writer_slot.borrow_mut()[c] = Some(tx.clone());
        Some(tx)
    };
    let mut pongs: Vec<u8> = Vec::new();
    let rd = &mut stream;

    let mut fragments: Vec<u8> = Vec::new();
    let mut frag_opcode = 0u8;
    let mut start = 0usize;
    loop {
        // Parse every complete frame in the buffer.
        let t = now_ns();
        loop {
            let Some((fin, opcode, range, len)) = parse_frame(&buf[start..])? else {
                break;
            };
            let payload = &buf[start + range.start..start + range.end];
            match opcode {
                0x1 | 0x2 if fin => shared.borrow_mut().on_text(c, payload, t),
                0x1 | 0x2 => {
                    frag_opcode = opcode;
                    fragments.clear();
                    fragments.extend_from_slice(payload);
                }
                0x0 => {
                    fragments.extend_from_slice(payload);
                    if fin && frag_opcode != 0 {
                        shared.borrow_mut().on_text(c, &fragments, t);
                        fragments.clear();
                        frag_opcode = 0;
                    }
                }
                0x8 => {
                    if let Some(tx) = &tx {
                        let _ = tx.write_all(&client_frame(0x8, payload));
                    }
                    if stop.get() {
                        return Ok(());
                    }
                    bail!("server closed: {:?}", String::from_utf8_lossy(payload));
                }
                0x9 => {
                    shared.borrow_mut().pings += 1;
                    match &tx {
                        Some(tx) => {
                            let _ = tx.write_all(&client_frame(0xA, payload));
                        }
                        None => pongs.extend_from_slice(&client_frame(0xA, payload)),
                    }
                }
                _ => {}
            }
            start += len;
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        if !pongs.is_empty() {
            rd.write_all(&pongs).await?;
            pongs.clear();
        }
        if buf.capacity() - buf.len() < reserve / 4 {
            buf.reserve(reserve);
        }
        let n = rd.read_buf(&mut buf).await?;
        if n == 0 {
            if stop.get() {
                return Ok(());
            }
            bail!("connection closed by the server");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sender thread: the open-loop schedule.

fn sleep_until_ns(t_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; EINTR just ends the sleep early, and the loop below re-checks.
    while now_ns() < t_ns {
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
}

struct SendReport {
    total_msgs: u64,
    measured_msgs: u64,
    sent_per_sender: Vec<u64>,
    lag_sum: u64,
    max_lag: u64,
    measure_start_ns: u64,
    end_wall: u64,
    measured_deliveries_at_end: u64,
    /// CPU counters at the start and the end of the measured window.
    before: Snapshot,
    after: Snapshot,
}

fn send_schedule(
    args: Args,
    nonce: String,
    writers: Vec<Arc<Writer>>,
    deliveries: Arc<AtomicU64>,
) -> Result<SendReport> {
    let period_ns = 1e9 / args.rate;
    let warm_msgs = (args.warmup * args.rate).round() as u64;
    let measured_msgs = (args.duration * args.rate).round() as u64;
    let total_msgs = warm_msgs + measured_msgs;
    let mut sent_per_sender = vec![0u64; args.senders];
    let start = now_ns() + 50_000_000;
    let (mut max_lag, mut lag_sum) = (0u64, 0u64);
    let mut before = Snapshot::default();
    let (mut measure_start_ns, mut deliveries_at_start) = (start, 0);
    for i in 0..total_msgs {
        let intended = start + (i as f64 * period_ns) as u64;
        sleep_until_ns(intended);
        if i == warm_msgs {
            before = snapshot(&args)?;
            deliveries_at_start = deliveries.load(Ordering::Relaxed);
            // When the snapshot was taken, not when the message was due: the window's wall
            // time must match its CPU readings.
            measure_start_ns = now_ns();
        }
        let s = (i % args.senders as u64) as usize;
        let seq = sent_per_sender[s];
        sent_per_sender[s] += 1;
        let phase = if i >= warm_msgs { 'm' } else { 'w' };
        let frame = message_frame(&args, &nonce, s, seq, intended, phase);
        if i >= warm_msgs {
            let lag = now_ns().saturating_sub(intended);
            max_lag = max_lag.max(lag);
            lag_sum += lag;
        }
        writers[s].write_all(&frame).context("sending")?;
    }
    let end = start + (total_msgs as f64 * period_ns) as u64;
    sleep_until_ns(end);
    let after = snapshot(&args)?;
    let measured_deliveries_at_end = deliveries.load(Ordering::Relaxed) - deliveries_at_start;
    Ok(SendReport {
        total_msgs,
        measured_msgs,
        sent_per_sender,
        lag_sum,
        max_lag,
        measure_start_ns,
        end_wall: now_ns(),
        measured_deliveries_at_end,
        before,
        after,
    })
}

/// CPU counters read at one edge of the measured window.
#[derive(Default)]
struct Snapshot {
    /// Ticks of every `--server-pid` together (None without one).
    server: Option<u64>,
    /// The server core's (busy, total) ticks.
    core: Option<(u64, u64)>,
    /// This process's CPU ns.
    self_ns: u64,
    /// Ticks of each `--aux-pid`, in order.
    aux: Vec<u64>,
}

fn snapshot(args: &Args) -> Result<Snapshot> {
    let server = if args.server_pids.is_empty() {
        None
    } else {
        let mut sum = 0;
        for &pid in &args.server_pids {
            sum += proc_ticks(pid)?;
        }
        Some(sum)
    };
    Ok(Snapshot {
        server,
        core: args.server_cpu.map(core_ticks).transpose()?,
        self_ns: self_cpu_ns(),
        aux: args
            .aux_pids
            .iter()
            .map(|&(_, pid)| proc_ticks(pid))
            .collect::<Result<_>>()?,
    })
}

/// `<label>_cpu_seconds` of each `--aux-pid` over the window.
fn print_aux_cpu(args: &Args, before: &Snapshot, after: &Snapshot) {
    let ticks = clock_ticks_per_second() as f64;
    for (((label, _), b), a) in args.aux_pids.iter().zip(&before.aux).zip(&after.aux) {
        println!("{label}_cpu_seconds={:.3}", (a - b) as f64 / ticks);
    }
}

/// `--scenario burst`: each sender keeps `--window` messages in flight (the reader thread posts
/// the next one when a sender's own connection receives one of its messages).
async fn burst_run(
    args: &Args,
    shared: &Rc<RefCell<Shared>>,
    writers: &Rc<RefCell<Vec<Option<Arc<Writer>>>>>,
) -> Result<SendReport> {
    let conn_of: Vec<usize> = (0..args.senders).map(|s| args.sender_conn(s)).collect();
    let sender_w = conn_of
        .iter()
        .map(|&c| writers.borrow()[c].clone().context("writer"))
        .collect::<Result<Vec<_>>>()?;
    {
        let mut sh = shared.borrow_mut();
        let nonce = sh.nonce.clone();
        let mut burst = Burst {
            conn_of,
            writers: sender_w,
            sent_per_sender: vec![0; args.senders],
            measuring: false,
            stopped: false,
            args: args.clone(),
        };
        for _ in 0..args.window {
            for s in 0..args.senders {
                burst.send(s, &nonce).context("sending")?;
            }
        }
        sh.burst = Some(burst);
    }
    let deliveries = shared.borrow().deliveries_total.clone();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = snapshot(args)?;
    let deliveries_at_start = deliveries.load(Ordering::Relaxed);
    let measure_start_ns = now_ns();
    let sent_before: u64 = {
        let mut sh = shared.borrow_mut();
        let b = sh.burst.as_mut().expect("burst state");
        b.measuring = true;
        b.sent_per_sender.iter().sum()
    };
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let after = snapshot(args)?;
    let end_wall = now_ns();
    let measured_deliveries_at_end = deliveries.load(Ordering::Relaxed) - deliveries_at_start;
    let mut sh = shared.borrow_mut();
    let b = sh.burst.as_mut().expect("burst state");
    b.stopped = true;
    let total_msgs: u64 = b.sent_per_sender.iter().sum();
    Ok(SendReport {
        total_msgs,
        measured_msgs: total_msgs - sent_before,
        sent_per_sender: b.sent_per_sender.clone(),
        lag_sum: 0,
        max_lag: 0,
        measure_start_ns,
        end_wall,
        measured_deliveries_at_end,
        before,
        after,
    })
}

/// Resident memory of every `--server-pid` together, KiB (None without one).
fn server_rss_kib(args: &Args) -> Result<Option<u64>> {
    if args.server_pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &pid in &args.server_pids {
        sum += rss_kib(pid)?;
    }
    Ok(Some(sum))
}

/// Resident memory of a process, KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// Prints the latency histogram as `pXX_us` lines and `pct_<q>_us` curve points.
fn print_latency(h: &Histogram<u64>) {
    let us = |v: u64| v as f64 / 1e3;
    println!("latency_count={}", h.len());
    println!("p50_us={:.1}", us(h.value_at_quantile(0.50)));
    println!("p90_us={:.1}", us(h.value_at_quantile(0.90)));
    println!("p99_us={:.1}", us(h.value_at_quantile(0.99)));
    println!("p999_us={:.1}", us(h.value_at_quantile(0.999)));
    println!("max_us={:.1}", us(h.max()));
    for q in CURVE_QUANTILES {
        println!("pct_{q}_us={:.1}", us(h.value_at_quantile(q)));
    }
}

/// One part of the latency (`same`: receiver on the sender's instance; `cross`: on another) as
/// `<part>_count` and `<part>_pXX_us` lines.
fn print_latency_split(part: &str, h: &Histogram<u64>) {
    let us = |v: u64| v as f64 / 1e3;
    println!("{part}_count={}", h.len());
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        println!("{part}_{name}_us={:.1}", us(h.value_at_quantile(q)));
    }
    println!("{part}_max_us={:.1}", us(h.max()));
}

// ---------------------------------------------------------------------------------------------
// `--scenario login`: REST logins per second.

/// One keep-alive client posting `/api/login` until `deadline`; latencies of requests started
/// after `measure_from` go to the histogram. Returns (ok, refused) counts in the window.
async fn login_client(
    args: Rc<Args>,
    emails: Rc<Vec<String>>,
    first: usize,
    measure_from: u64,
    deadline: u64,
    hist: Rc<RefCell<Histogram<u64>>>,
) -> Result<(u64, u64)> {
    let (mut ok, mut refused) = (0u64, 0u64);
    let mut i = first;
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    while now_ns() < deadline {
        let email = &emails[i % emails.len()];
        i += 1;
        let body = format!(r#"{{"email":"{email}","password":"{BENCH_PASSWORD}"}}"#);
        let request = format!(
            "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            args.addr_of(first),
            body.len()
        );
        let t0 = now_ns();
        let s = match &mut stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(args.addr_of(first))
                    .await
                    .context("connect")?;
                s.set_nodelay(true)?;
                stream.insert(s)
            }
        };
        s.write_all(request.as_bytes()).await?;
        buf.clear();
        let (status, close) = loop {
            let n = s.read_buf(&mut buf).await?;
            if n == 0 {
                bail!("connection closed before a response");
            }
            if let Some(end) = find(&buf, b"\r\n\r\n", 0) {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status: u16 = head.get(9..12).and_then(|v| v.parse().ok()).unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    if s.read_buf(&mut buf).await? == 0 {
                        bail!("connection closed inside a response body");
                    }
                }
                break (status, head.contains("connection: close"));
            }
        };
        if close {
            stream = None;
        }
        if t0 >= measure_from {
            if status == 204 {
                ok += 1;
                hist.borrow_mut().saturating_record((now_ns() - t0).max(1));
            } else {
                refused += 1;
            }
        }
    }
    Ok((ok, refused))
}

async fn login_run(args: Rc<Args>, nonce: &str) -> Result<()> {
    let mut emails = Vec::new();
    for u in 0..args.users {
        let name = format!("bench{nonce}u{u}");
        sign_up(&args.addrs[0], &name)?;
        emails.push(format!("{name}@bench.example"));
    }
    let emails = Rc::new(emails);
    let hist = Rc::new(RefCell::new(Histogram::new_with_bounds(
        1,
        120_000_000_000,
        3,
    )?));
    let start = now_ns();
    let measure_from = start + (args.warmup * 1e9) as u64;
    let deadline = measure_from + (args.duration * 1e9) as u64;
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        tasks.push(tokio::task::spawn_local(login_client(
            args.clone(),
            emails.clone(),
            c,
            measure_from,
            deadline,
            hist.clone(),
        )));
    }
    while now_ns() < measure_from {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = snapshot(&args)?;
    while now_ns() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = snapshot(&args)?;
    let wall = (now_ns() - measure_from) as f64 / 1e9;
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await??;
        ok += o;
        refused += r;
    }
    println!("scenario=login");
    println!("clients={}", args.clients);
    println!("users={}", args.users);
    println!("measured_seconds={wall:.3}");
    println!("logins={ok}");
    println!("refused={refused}");
    println!("logins_per_s={:.1}", ok as f64 / wall);
    print_latency(&hist.borrow());
    println!(
        "generator_cpu_seconds={:.3}",
        (after.self_ns - before.self_ns) as f64 / 1e9
    );
    if let (Some(b), Some(a)) = (before.server, after.server) {
        let cpu = (a - b) as f64 / clock_ticks_per_second() as f64;
        println!("server_cpu_seconds={cpu:.3}");
        println!(
            "server_cpu_ms_per_login={:.2}",
            cpu * 1e3 / ok.max(1) as f64
        );
    }
    print_aux_cpu(&args, &before, &after);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CPU accounting.

fn clock_ticks_per_second() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|b| decode_clock_ticks_per_second(&b))
        .unwrap_or(100)
}

fn proc_ticks(pid: u32) -> Result<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let line = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    Ok(decode_cpu_ticks(&line)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .total())
}

/// (busy, total) ticks of one CPU from /proc/stat.
fn core_ticks(cpu: usize) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let label = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&label))
        .with_context(|| format!("no {label} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

fn self_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(e) => {
            eprintln!("chat-load: {e:#}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args))
}

async fn run(args: Args) -> Result<()> {
    let args = Rc::new(args);
    let nonce = format!("{:x}", now_ns() ^ (std::process::id() as u64) << 40);
    let nonce = nonce[nonce.len().saturating_sub(8)..].to_string();
    // Two descriptors per connection (one when idle): the server's own helper.
    if let Err(e) = ringchat::rt::raise_open_files_limit() {
        eprintln!("chat-load: cannot raise the open-files limit: {e}");
    }
    match args.scenario {
        Scenario::Login => return login_run(args, &nonce).await,
        Scenario::Churn | Scenario::Overload => return streams::run(args, &nonce).await,
        Scenario::Cycles => return cycles::run(args, &nonce).await,
        _ => {}
    }

    // Accounts (the room protocol has none).
    let t0 = now_ns();
    let mut cookies = Vec::new();
    if args.proto == Proto::Ringchat {
        for u in 0..args.users {
            let name = format!("bench{nonce}u{u}");
            cookies.push(Rc::new(sign_up(&args.addrs[0], &name)?));
        }
    } else {
        cookies.push(Rc::new(String::new()));
    }
    eprintln!(
        "chat-load: {} accounts in {:.2} s",
        cookies.len(),
        (now_ns() - t0) as f64 / 1e9
    );
    let rss_before = server_rss_kib(&args)?;

    let shared = Rc::new(RefCell::new(Shared {
        proto: args.proto,
        burst: None,
        nonce: nonce.clone(),
        rooms: args.rooms,
        senders: args.senders,
        conns: (0..args.conns)
            .map(|_| ConnState {
                seen: vec![Vec::new(); args.senders],
                distinct: vec![0; args.senders],
                last_seq: vec![-1; args.senders],
                last_id: vec![(0, 0); args.rooms],
                order_hash: vec![0xcbf2_9ce4_8422_2325; args.rooms],
            })
            .collect(),
        hist: Histogram::new_with_bounds(1, 120_000_000_000, 3)?,
        instances: if args.addrs.len() > 1 {
            Some(Instances {
                count: args.addrs.len(),
                of_sender: (0..args.senders)
                    .map(|s| args.sender_conn(s) % args.addrs.len())
                    .collect(),
                same: Histogram::new_with_bounds(1, 120_000_000_000, 3)?,
                cross: Histogram::new_with_bounds(1, 120_000_000_000, 3)?,
            })
        } else {
            None
        },
        hellos: 0,
        deliveries_total: Arc::new(AtomicU64::new(0)),
        deliveries_measured: 0,
        duplicated: 0,
        out_of_order_sender: 0,
        out_of_order_room: 0,
        foreign: 0,
        closed_early: 0,
        errors: Vec::new(),
        pings: 0,
        error_events: 0,
    }));
    let gate = Rc::new(tokio::sync::Semaphore::new(args.connect_parallel));
    let writers: Rc<RefCell<Vec<Option<Arc<Writer>>>>> =
        Rc::new(RefCell::new(vec![None; args.conns]));
    let stop = Rc::new(Cell::new(false));

    // Connections.
    let t0 = now_ns();
    for c in 0..args.conns {
        tokio::task::spawn_local(connection(
            c,
            args.clone(),
            cookies[c % cookies.len()].clone(),
            shared.clone(),
            gate.clone(),
            writers.clone(),
            stop.clone(),
        ));
    }
    loop {
        {
            let sh = shared.borrow();
            if sh.hellos >= args.conns {
                break;
            }
            if sh.closed_early > 0 {
                bail!("connections failed while connecting: {:?}", sh.errors);
            }
        }
        if now_ns() - t0 > READY_TIMEOUT_NS {
            bail!(
                "only {} of {} hellos after {} s",
                shared.borrow().hellos,
                args.conns,
                READY_TIMEOUT_NS / 1_000_000_000
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "chat-load: {} connections ready in {:.2} s",
        args.conns,
        (now_ns() - t0) as f64 / 1e9
    );

    if args.scenario == Scenario::Idle {
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let sh = shared.borrow();
        println!("scenario=idle");
        println!("conns={}", args.conns);
        println!("ready={}", sh.hellos);
        println!("closed_early={}", sh.closed_early);
        println!("source_ips={}", args.source_ips);
        if let (Some(before), Some(after)) = (rss_before, server_rss_kib(&args)?) {
            println!("server_rss_before_kib={before}");
            println!("server_rss_after_kib={after}");
            println!(
                "server_rss_per_conn_bytes={:.0}",
                (after.saturating_sub(before) * 1024) as f64 / args.conns as f64
            );
        }
        for (i, e) in sh.errors.iter().enumerate() {
            println!("error{i}={}", e.replace('\n', " "));
        }
        stop.set(true);
        return Ok(());
    }

    // Senders: spread over the connections (and so over the accounts and the addresses). The schedule runs on its
    // own thread (same core, by taskset), sleeping in clock_nanosleep(TIMER_ABSTIME), so a send
    // is not held up behind a turn of the readers' event loop.
    let sender_w: Vec<Arc<Writer>> = (0..args.senders)
        .map(|s| {
            writers.borrow()[args.sender_conn(s)]
                .clone()
                .expect("writer")
        })
        .collect();
    let deliveries = shared.borrow().deliveries_total.clone();
    let sent = if args.scenario == Scenario::Burst {
        drop(sender_w);
        burst_run(&args, &shared, &writers).await?
    } else {
        let sargs = (*args).clone();
        let snonce = nonce.clone();
        let sender = std::thread::spawn(move || send_schedule(sargs, snonce, sender_w, deliveries));
        while !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??
    };
    let SendReport {
        total_msgs,
        measured_msgs,
        sent_per_sender,
        lag_sum,
        max_lag,
        measure_start_ns,
        end_wall,
        measured_deliveries_at_end,
        before,
        after,
    } = sent;
    let ticks = clock_ticks_per_second();

    // Drain.
    let drain_end = now_ns() + (args.drain * 1e9) as u64;
    let expected_total = total_msgs * args.conns as u64;
    loop {
        if shared.borrow().deliveries_total.load(Ordering::Relaxed) >= expected_total {
            break;
        }
        if now_ns() > drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.set(true);

    // Report.
    let sh = shared.borrow();
    let wall = (end_wall - measure_start_ns) as f64 / 1e9;
    let mut lost = 0u64;
    for st in &sh.conns {
        for (sent, seen) in sent_per_sender.iter().zip(&st.distinct).take(args.senders) {
            lost += sent - seen;
        }
    }
    let mut mismatch = 0u64;
    for st in sh.conns.iter().skip(1) {
        for r in 0..args.rooms {
            if st.order_hash[r] != sh.conns[0].order_hash[r] {
                mismatch += 1;
            }
        }
    }
    println!("nonce={nonce}");
    println!(
        "scenario={}",
        if args.scenario == Scenario::Burst {
            "burst"
        } else {
            "fanout"
        }
    );
    println!(
        "proto={}",
        if args.proto == Proto::Room {
            "room"
        } else {
            "ringchat"
        }
    );
    println!("conns={}", args.conns);
    println!("users={}", args.users);
    println!("senders={}", args.senders);
    println!("rooms={}", args.rooms);
    println!("rate={}", args.rate);
    println!("size={}", args.size);
    println!("measured_seconds={wall:.3}");
    println!("messages_sent={total_msgs}");
    println!("messages_measured={measured_msgs}");
    println!("send_rate={:.1}", measured_msgs as f64 / wall);
    println!(
        "send_lag_mean_us={:.1}",
        lag_sum as f64 / measured_msgs.max(1) as f64 / 1e3
    );
    println!("send_lag_max_us={:.1}", max_lag as f64 / 1e3);
    println!("deliveries_expected={expected_total}");
    println!("deliveries={}", sh.deliveries_total.load(Ordering::Relaxed));
    println!("deliveries_measured={}", sh.deliveries_measured);
    println!("deliveries_in_window={measured_deliveries_at_end}");
    println!(
        "deliveries_in_window_per_s={:.1}",
        measured_deliveries_at_end as f64 / wall
    );
    println!(
        "deliveries_per_s={:.1}",
        sh.deliveries_measured as f64 / wall
    );
    println!("lost={lost}");
    println!("duplicated={}", sh.duplicated);
    println!(
        "out_of_order={}",
        sh.out_of_order_sender + sh.out_of_order_room
    );
    println!("out_of_order_sender={}", sh.out_of_order_sender);
    println!("out_of_order_room={}", sh.out_of_order_room);
    println!("room_order_mismatch={mismatch}");
    println!("foreign={}", sh.foreign);
    println!("error_events={}", sh.error_events);
    println!("closed_early={}", sh.closed_early);
    println!("pings={}", sh.pings);
    for (i, e) in sh.errors.iter().enumerate() {
        println!("error{i}={}", e.replace('\n', " "));
    }
    print_latency(&sh.hist);
    if let Some(inst) = &sh.instances {
        println!("instances={}", inst.count);
        print_latency_split("same", &inst.same);
        print_latency_split("cross", &inst.cross);
    }
    println!(
        "generator_cpu_seconds={:.3}",
        (after.self_ns - before.self_ns) as f64 / 1e9
    );
    println!(
        "generator_busy_pct={:.1}",
        (after.self_ns - before.self_ns) as f64 / 1e9 / wall * 100.0
    );
    if let (Some(b), Some(a)) = (before.server, after.server) {
        let cpu = (a - b) as f64 / ticks as f64;
        println!("server_cpu_seconds={cpu:.3}");
        println!("server_busy_pct={:.1}", cpu / wall * 100.0);
        println!(
            "deliveries_per_server_cpu_s={:.0}",
            measured_deliveries_at_end as f64 / cpu.max(1e-9)
        );
        if let (Some((bb, bt)), Some((ab, at))) = (before.core, after.core) {
            let core_busy = (ab - bb) as f64 / ticks as f64;
            let core_total = (at - bt) as f64 / ticks as f64;
            println!(
                "server_core_busy_pct={:.1}",
                core_busy / core_total.max(1e-9) * 100.0
            );
            println!(
                "other_pct={:.1}",
                ((core_busy - cpu) / core_total.max(1e-9) * 100.0).max(0.0)
            );
        }
    }
    print_aux_cpu(&args, &before, &after);
    Ok(())
}
