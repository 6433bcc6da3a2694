//! What the long-running scenarios (`churn`, `cycles`, `overload`) share: failures sorted by
//! kind, one WebSocket session's life (open, `hello`, frames, close handshake), and watching
//! the server from the outside (resident memory, open descriptors, `GET /metrics`).
//!
//! **Failure kinds.** Every way a connection can go wrong is a [`Fail`] with a short kind
//! (`connect_ConnectionRefused`, `http_503`, `close_1008_before_hello`, `hello_timeout`,
//! `close_timeout`, …), counted in a [`Tally`] and printed as `errors_<kind>=N`, so a script
//! can say *what* failed, not only how often.
//!
//! **The server from the outside.** [`Probe`] reads the server's `VmRSS`, the entries of
//! `/proc/<pid>/fd`, and `ringchat_open_connections` with the accepted / refused / 5xx counters
//! from `/metrics` (its own request's connection is subtracted). [`Sampler`] does that every
//! `--sample-interval` seconds on its own thread, into the `--samples` CSV; [`leak_check`]
//! waits at the end for descriptors and connections to come back to the baseline taken before
//! the first connection.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;

use super::*;

/// Read buffer reserved per session.
const SESSION_READ_RESERVE_BYTES: usize = 8 * 1024;
/// How long one `/metrics` request may take.
const METRICS_TIMEOUT_MS: u64 = 2_000;
/// How often the leak check looks again.
const LEAK_POLL_MS: u64 = 200;

/// A failure of a known kind (see the module doc).
#[derive(Debug)]
pub struct Fail {
    pub kind: String,
    pub detail: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Fail {}

pub fn fail(kind: impl Into<String>, detail: impl Into<String>) -> anyhow::Error {
    Fail {
        kind: kind.into(),
        detail: detail.into(),
    }
    .into()
}

/// The kind of an error: a [`Fail`]'s own, `io_<kind>` for an I/O error, else `other`.
pub fn kind_of(e: &anyhow::Error) -> String {
    if let Some(f) = e.downcast_ref::<Fail>() {
        f.kind.clone()
    } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
        format!("io_{:?}", io.kind())
    } else {
        "other".to_string()
    }
}

/// What an error says besides its kind.
pub fn detail_of(e: &anyhow::Error) -> String {
    match e.downcast_ref::<Fail>() {
        Some(f) => f.detail.clone(),
        None => format!("{e:#}"),
    }
}

/// Counts by kind, with the first few details kept for the report.
#[derive(Default)]
pub struct Tally {
    pub counts: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

/// Details kept per tally.
const TALLY_EXAMPLES_MAX: usize = 5;

impl Tally {
    pub fn add(&mut self, kind: &str, detail: impl FnOnce() -> String) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
        if self.examples.len() < TALLY_EXAMPLES_MAX {
            let detail = detail().replace('\n', " ");
            self.examples.push(format!("{kind}: {detail}"));
        }
    }

    pub fn add_error(&mut self, e: &anyhow::Error) {
        self.add(&kind_of(e), || detail_of(e));
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `<prefix>_total=N`, `<prefix>_<kind>=N` per kind, `<prefix>_example<i>=…`.
    pub fn print(&self, prefix: &str) {
        println!("{prefix}_total={}", self.total());
        for (kind, n) in &self.counts {
            println!("{prefix}_{kind}={n}");
        }
        for (i, e) in self.examples.iter().enumerate() {
            println!("{prefix}_example{i}={e}");
        }
    }
}

/// The `id` of an `error` event (`{"type":"error","payload":{"id":"…"`), or None for any other
/// text.
pub fn error_event_id(text: &[u8]) -> Option<String> {
    if !text.starts_with(br#"{"type":"error""#) {
        return None;
    }
    let Some(i) = find(text, br#""id":""#, 0) else {
        return Some("unknown".to_string());
    };
    let end = find(text, b"\"", i + 6).unwrap_or(text.len());
    Some(String::from_utf8_lossy(&text[i + 6..end]).into_owned())
}

/// One frame from the server, as [`Ws::next_frame`] gives it.
pub enum Incoming<'a> {
    /// A whole text (or binary) message, reassembled if it came in fragments.
    Text(&'a [u8]),
    /// A close frame, with its code (1005 when it had none).
    Close(u16),
}

/// One authenticated chat connection: the socket, what has been read of it, and a dup of it
/// for writes (control frames here, posts from the sender thread).
pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start.
    start: usize,
    fragments: Vec<u8>,
    /// The opcode of the fragmented message being reassembled (0: none).
    fragment_opcode: u8,
    pub writer: Arc<Writer>,
}

impl Ws {
    /// Connects connection `c` and upgrades `/api/ws` with session cookie `cookie`.
    pub async fn open(args: &Args, c: usize, cookie: &str) -> Result<Ws> {
        let (stream, buf) = ws_connect(
            args,
            c,
            "/api/ws",
            &format!("Cookie: sid={cookie}\r\n"),
            SESSION_READ_RESERVE_BYTES,
        )
        .await?;
        // SAFETY: dup of a valid socket; the copy is owned by the Writer.
        let wfd = unsafe { libc::dup(stream.as_raw_fd()) };
        if wfd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Ws {
            stream,
            buf,
            start: 0,
            fragments: Vec::new(),
            fragment_opcode: 0,
            // SAFETY: a fresh descriptor we own.
            writer: Arc::new(Writer {
                fd: unsafe { OwnedFd::from_raw_fd(wfd) },
                lock: Mutex::new(()),
            }),
        })
    }

    /// The next whole message or close frame already read, answering pings on the way; None
    /// when more must be read ([`Ws::fill`]).
    pub fn next_frame(&mut self) -> Result<Option<Incoming<'_>>> {
        loop {
            let Some((fin, opcode, range, len)) = parse_frame(&self.buf[self.start..])? else {
                return Ok(None);
            };
            let payload = self.start + range.start..self.start + range.end;
            self.start += len;
            match opcode {
                0x1 | 0x2 if fin => return Ok(Some(Incoming::Text(&self.buf[payload]))),
                0x1 | 0x2 => {
                    self.fragment_opcode = opcode;
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&self.buf[payload]);
                }
                0x0 => {
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    if fin && self.fragment_opcode != 0 {
                        self.fragment_opcode = 0;
                        return Ok(Some(Incoming::Text(&self.fragments)));
                    }
                }
                0x8 => {
                    let p = &self.buf[payload];
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        1005
                    };
                    return Ok(Some(Incoming::Close(code)));
                }
                0x9 => self
                    .writer
                    .write_all(&client_frame(0xA, &self.buf[payload]))?,
                _ => {}
            }
        }
    }

    /// Reads more from the socket; false at the end of the stream.
    pub async fn fill(&mut self) -> Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < SESSION_READ_RESERVE_BYTES / 4 {
            self.buf.reserve(SESSION_READ_RESERVE_BYTES);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads until the `hello`. An error event, a close or the end of the stream before it is a
    /// failure of its own kind.
    pub async fn hello(&mut self) -> Result<()> {
        loop {
            match self.next_frame()? {
                Some(Incoming::Text(t)) if t.starts_with(br#"{"type":"hello""#) => return Ok(()),
                Some(Incoming::Text(t)) => {
                    if let Some(id) = error_event_id(t) {
                        return Err(fail(
                            format!("error_{id}_before_hello"),
                            String::from_utf8_lossy(t),
                        ));
                    }
                }
                Some(Incoming::Close(code)) => {
                    return Err(fail(
                        format!("close_{code}_before_hello"),
                        "server closed before the hello",
                    ));
                }
                None => {
                    if !self.fill().await? {
                        return Err(fail("eof_before_hello", "server hung up before the hello"));
                    }
                }
            }
        }
    }

    /// The close handshake from our side: sends close 1000, then reads (discarding messages)
    /// until the server's close frame and the end of the stream, within `timeout_s`.
    pub async fn close(mut self, timeout_s: f64) -> Result<()> {
        self.writer
            .write_all(&client_frame(0x8, &1000u16.to_be_bytes()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout_s);
        let mut answered = false;
        loop {
            while let Some(frame) = self.next_frame()? {
                if let Incoming::Close(_) = frame {
                    answered = true;
                }
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) if answered => return Ok(()),
                Ok(Ok(false)) => {
                    return Err(fail("close_unanswered", "hung up without a close frame"));
                }
                Ok(Err(e)) => return Err(e),
                Err(_) if answered => {
                    return Err(fail("close_no_hangup", "close answered, socket left open"));
                }
                Err(_) => return Err(fail("close_timeout", "no answer to our close")),
            }
        }
    }
}

/// One reading of the server from the outside.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    pub rss_kib: u64,
    pub fds: u64,
    /// `ringchat_open_connections`, this request's own connection excluded; -1 when /metrics
    /// did not answer.
    pub open_connections: i64,
    /// `ringchat_chat_connections`: chat connections registered in the rooms (the hub's
    /// entries and their subscriptions); -1 when /metrics did not answer.
    pub chat_connections: i64,
    pub accepted_total: u64,
    pub refused_total: u64,
    pub http_5xx_total: u64,
}

impl Sample {
    /// `<prefix>_rss_kib`, `_fds`, `_open_connections` and `_chat_connections` lines.
    fn print(&self, prefix: &str) {
        println!("{prefix}_rss_kib={}", self.rss_kib);
        println!("{prefix}_fds={}", self.fds);
        println!("{prefix}_open_connections={}", self.open_connections);
        println!("{prefix}_chat_connections={}", self.chat_connections);
    }
}

/// Reads the server process `pid`, listening at `addr`.
#[derive(Clone)]
pub struct Probe {
    pub pid: u32,
    pub addr: String,
}

impl Probe {
    /// The probe of `--server-pid` (the first) at `--addr`; None without a pid.
    pub fn of(args: &Args) -> Option<Probe> {
        Some(Probe {
            pid: *args.server_pids.first()?,
            addr: args.addrs[0].clone(),
        })
    }

    pub fn sample(&self) -> Result<Sample> {
        // Descriptors first: the /metrics request below opens one more.
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .context("reading the server's /proc/<pid>/fd")?
            .count() as u64;
        let rss_kib = rss_kib(self.pid)?;
        let mut sample = Sample {
            rss_kib,
            fds,
            open_connections: -1,
            chat_connections: -1,
            ..Sample::default()
        };
        if let Ok(text) = self.metrics() {
            let all = |name: &str| -> Option<u64> {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(name) && l.contains(r#"core="all""#))?;
                line.rsplit(' ').next()?.trim().parse().ok()
            };
            if let Some(open) = all("ringchat_open_connections{") {
                sample.open_connections = open as i64 - 1;
            }
            if let Some(chat) = all("ringchat_chat_connections{") {
                sample.chat_connections = chat as i64;
            }
            sample.accepted_total = all("ringchat_accepted_connections_total{").unwrap_or(0);
            sample.refused_total = all("ringchat_refused_connections_total{").unwrap_or(0);
            sample.http_5xx_total = text
                .lines()
                .find(|l| {
                    l.starts_with("ringchat_http_responses_total{")
                        && l.contains(r#"core="all",class="5xx""#)
                })
                .and_then(|l| l.rsplit(' ').next()?.trim().parse().ok())
                .unwrap_or(0);
        }
        Ok(sample)
    }

    fn metrics(&self) -> Result<String> {
        let timeout = Duration::from_millis(METRICS_TIMEOUT_MS);
        let addr: std::net::SocketAddr = self.addr.parse()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("/metrics answered {:?}", response.lines().next());
        }
        Ok(response)
    }
}

/// Samples the server every `--sample-interval` seconds on its own thread, writing the
/// `--samples` CSV as it goes (t_s counted from `origin_ns`), until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Sampler {
    /// `progress` is the scenario's own counter (cycles done, deliveries), one CSV column.
    pub fn start(
        args: &Args,
        probe: Probe,
        origin_ns: u64,
        progress: Arc<AtomicU64>,
    ) -> Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut out: Option<std::io::BufWriter<std::fs::File>> = match &args.samples {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {path}"))?,
            )),
            None => None,
        };
        let interval_ns = (args.sample_interval * 1e9) as u64;
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || -> Result<()> {
            if let Some(out) = &mut out {
                writeln!(
                    out,
                    "t_s,rss_kib,fds,open_connections,chat_connections,accepted_total,refused_total,http_5xx_total,progress"
                )?;
            }
            let mut next = now_ns();
            while !stopped.load(Ordering::Relaxed) {
                let s = probe.sample()?;
                if let Some(out) = &mut out {
                    writeln!(
                        out,
                        "{:.3},{},{},{},{},{},{},{},{}",
                        (now_ns() - origin_ns) as f64 / 1e9,
                        s.rss_kib,
                        s.fds,
                        s.open_connections,
                        s.chat_connections,
                        s.accepted_total,
                        s.refused_total,
                        s.http_5xx_total,
                        progress.load(Ordering::Relaxed)
                    )?;
                    out.flush()?;
                }
                next += interval_ns;
                // Short sleeps, so that stop() is prompt.
                while now_ns() < next && !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(())
        });
        Ok(Sampler { stop, thread })
    }

    pub fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("sampler thread panicked"))?
    }
}

/// Waits (up to `--leak-timeout`) for the server's descriptors, open connections and chat
/// connections (the rooms' registrations) to come back to `baseline`, then prints `baseline_*`,
/// `end_*`, `end_wait_s` and `fds_back_to_baseline` / `connections_back_to_baseline` /
/// `chat_connections_back_to_baseline` (1 or 0).
pub async fn leak_check(args: &Args, probe: &Probe, baseline: Sample) -> Result<()> {
    let t0 = now_ns();
    let deadline = t0 + (args.leak_timeout * 1e9) as u64;
    let connections_back =
        |s: &Sample| s.open_connections >= 0 && s.open_connections <= baseline.open_connections;
    let chat_back =
        |s: &Sample| s.chat_connections >= 0 && s.chat_connections <= baseline.chat_connections;
    let back = |s: &Sample| s.fds <= baseline.fds && connections_back(s) && chat_back(s);
    let mut end = probe.sample()?;
    while !back(&end) && now_ns() < deadline {
        tokio::time::sleep(Duration::from_millis(LEAK_POLL_MS)).await;
        end = probe.sample()?;
    }
    baseline.print("baseline");
    end.print("end");
    println!("end_wait_s={:.2}", (now_ns() - t0) as f64 / 1e9);
    println!("fds_back_to_baseline={}", u8::from(end.fds <= baseline.fds));
    println!(
        "connections_back_to_baseline={}",
        u8::from(connections_back(&end))
    );
    println!(
        "chat_connections_back_to_baseline={}",
        u8::from(chat_back(&end))
    );
    println!("end_accepted_total={}", end.accepted_total);
    println!("end_refused_total={}", end.refused_total);
    println!("end_http_5xx_total={}", end.http_5xx_total);
    Ok(())
}

/// `<name>_count`, `<name>_p50_us` … `<name>_max_us` of a histogram in µs.
pub fn print_us_hist(name: &str, h: &Histogram<u64>) {
    println!("{name}_count={}", h.len());
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        println!("{name}_{label}_us={}", h.value_at_quantile(q));
    }
    println!("{name}_max_us={}", h.max());
}
