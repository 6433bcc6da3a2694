//! Real peers for tests: a redis-server or a MariaDB started on a private loopback port with its
//! data in a temp dir, stopped (and its data removed) when dropped; and [`Ringchat`], the server
//! binary itself on an ephemeral port, for tests that speak HTTP to it.
//!
//! The binaries must be installed (`proto-tests/run` installs them with apt-get); a missing one
//! is a test failure with a message saying what to install, never a skip. Nothing here is a
//! mock: tests talk to the real servers. Readiness is polled with a deadline, never slept for.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::Poll;
use std::time::{Duration, Instant};

pub mod chat_clients;
pub mod crash;
pub mod ledger;
pub mod netns;
pub mod timing;

/// How long a peer may take to start answering.
pub const PEER_START_DEADLINE: Duration = Duration::from_secs(60);

/// A port nobody listens on right now (the peer binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn need(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{binary} is not installed: run proto-tests/run (it installs `{package}`), or apt-get install {package}"
    );
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + PEER_START_DEADLINE;
    loop {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited with {status} before it was ready:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {PEER_START_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server with `appendonly yes`, as the reference deployment runs it.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    /// Arguments added to the command line (see [`Redis::start_with`]), kept for restarts.
    extra: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    /// Like [`Redis::start`], with more command-line arguments after the usual ones, e.g.
    /// `["--rename-command", "HELLO", ""]`; [`Redis::restart`] passes them again.
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = Self::spawn(dir.path(), port, &extra);
        let mut redis = Redis {
            port,
            child,
            dir,
            extra,
        };
        redis.wait_ready();
        redis
    }

    fn spawn(dir: &Path, port: u16, extra: &[String]) -> Child {
        Command::new(need("redis-server", "redis-server"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server")
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        let log = self.dir.path().join("redis.log");
        wait_until("redis-server", || self_ping(port), &mut self.child, &log);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port with the same data (after [`Redis::kill9`]).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port, &self.extra);
        self.wait_ready();
    }

    /// Runs one command (inline form) and returns the raw reply, for checks from the outside.
    pub fn raw(&self, command: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0; 64 * 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    /// Like [`Redis::raw`], but sends the command as a RESP array, so arguments may hold
    /// spaces, quotes or any bytes.
    pub fn raw_args(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = self.send_array(args);
        let mut buf = vec![0; 64 * 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }
}

impl Redis {
    /// A new connection that has sent one command as a RESP array; the reply is the caller's
    /// to read (within 5 s).
    fn send_array(&self, args: &[&[u8]]) -> TcpStream {
        let mut command = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            command.extend_from_slice(arg);
            command.extend_from_slice(b"\r\n");
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&command).unwrap();
        s
    }

    /// Runs one command, sent as a RESP array (arguments may hold any bytes), and returns its
    /// reply flattened: every bulk and simple string, and every integer as decimal text, in
    /// order; nils are left out. Unlike [`Redis::raw_args`] it reads until the reply is whole,
    /// however long. An error reply panics.
    pub fn strings(&self, args: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = self.send_array(args);
        let mut reply = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let mut strings = Vec::new();
            if flatten_resp(&reply, &mut strings).is_some() {
                return strings;
            }
            let n = s.read(&mut chunk).expect("read a Redis reply");
            assert!(
                n > 0,
                "Redis closed after {:?}",
                String::from_utf8_lossy(&reply)
            );
            reply.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Parses the RESP2 reply at the start of `buf`, pushing its strings onto `out` (see
/// [`Redis::strings`]); the bytes it took, or `None` when `buf` holds only part of it.
fn flatten_resp(buf: &[u8], out: &mut Vec<Vec<u8>>) -> Option<usize> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let (line, rest) = (&buf[..end], end + 2);
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || -> i64 {
        std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad Redis reply line {:?}", text()))
    };
    match line.first() {
        Some(b'+' | b':') => {
            out.push(line[1..].to_vec());
            Some(rest)
        }
        Some(b'-') => panic!("Redis error: {}", text()),
        Some(b'$') => {
            let Ok(len) = usize::try_from(number()) else {
                return Some(rest);
            };
            let bytes = buf.get(rest..rest + len + 2)?;
            out.push(bytes[..len].to_vec());
            Some(rest + len + 2)
        }
        Some(b'*') => {
            let mut at = rest;
            for _ in 0..number().max(0) {
                at += flatten_resp(&buf[at..], out)?;
            }
            Some(at)
        }
        _ => panic!("unexpected Redis reply line {:?}", text()),
    }
}

/// Runs `futures` concurrently on the current task and returns their outputs in order. Each is
/// first polled in order, in one pass, so whatever they do before their first wait (queueing a
/// command, say) happens in that order and within one loop turn.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn self_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A MariaDB server with a `servertech_chat` database and a `servertech_user` (password
/// [`MariaDb::PASSWORD`], mysql_native_password), as the reference deployment has.
pub struct MariaDb {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl MariaDb {
    pub const USER: &'static str = "servertech_user";
    pub const PASSWORD: &'static str = "servertech_password";
    pub const DATABASE: &'static str = "servertech_chat";

    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // A private tmpdir: with the shared /tmp, bootstraps running in parallel (tests, other
        // checkouts) have been seen to trip over each other's temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
        let out = Command::new(need("mariadb-install-db", "mariadb-server"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Self::spawn(dir.path(), port);
        let mut db = MariaDb { port, child, dir };
        db.wait_ready();
        db.root_sql(&format!(
            "CREATE DATABASE {db}; CREATE USER '{u}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{p}'); \
             GRANT ALL ON {db}.* TO '{u}'@'%'; FLUSH PRIVILEGES;",
            db = Self::DATABASE,
            u = Self::USER,
            p = Self::PASSWORD
        ));
        db
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        Command::new(need("mariadbd", "mariadb-server"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--user=root",
            ])
            .args([
                "--innodb-flush-log-at-trx-commit=1",
                "--innodb-buffer-pool-size=32M",
            ])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd")
    }

    fn wait_ready(&mut self) {
        let sock = self.dir.path().join("sock");
        let log = self.dir.path().join("err.log");
        wait_until(
            "mariadbd",
            || {
                Command::new("mariadb")
                    .args(["--no-defaults", "-uroot", "-e", "SELECT 1"])
                    .arg(format!("--socket={}", sock.display()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
            &mut self.child,
            &log,
        );
    }

    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            Self::USER,
            Self::PASSWORD,
            self.port,
            Self::DATABASE
        )
    }

    /// Runs SQL as root over the server's socket and returns its tab-separated output.
    pub fn root_sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                sql,
            ])
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .output()
            .expect("run mariadb client");
        assert!(
            out.status.success(),
            "SQL failed: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port with the same data (after [`MariaDb::kill9`]).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port);
        self.wait_ready();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How long the ringchat binary may take to log that it is listening.
pub const RINGCHAT_START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopped (SIGTERM) ringchat may take to exit.
pub const RINGCHAT_STOP_DEADLINE: Duration = Duration::from_secs(15);

/// The ringchat binary under test: `RINGCHAT_BIN` when set, else `<target>/debug/ringchat`
/// (`CARGO_TARGET_DIR` respected), built with `cargo build --bin ringchat` once when missing.
/// It is not rebuilt when present: run `cargo build --bin ringchat` before the tests.
pub fn ringchat_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("RINGCHAT_BIN") {
                let bin = PathBuf::from(bin);
                assert!(
                    bin.exists(),
                    "RINGCHAT_BIN={} does not exist",
                    bin.display()
                );
                return bin;
            }
            let bin = target_dir().join("debug").join("ringchat");
            if !bin.exists() {
                cargo_build(&["build", "--bin", "ringchat"], &bin);
            }
            bin
        })
        .clone()
}

/// The workspace's root.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto-tests sits in the workspace root")
        .to_path_buf()
}

/// The workspace's target directory (`CARGO_TARGET_DIR` respected).
fn target_dir() -> PathBuf {
    let workspace = workspace_dir();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| workspace.join("target"), |t| workspace.join(t))
}

/// Runs cargo with `args` in the workspace; `built` must exist afterwards.
fn cargo_build(args: &[&str], built: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command = format!("cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace_dir())
        .status()
        .unwrap_or_else(|e| panic!("run {command}: {e}"));
    assert!(status.success(), "{command} failed");
    assert!(
        built.exists(),
        "{} missing after {command}",
        built.display()
    );
}

/// The release build, `<target>/release/ringchat`, for the tests whose figures are a release
/// build's (hundreds of requests at once on two cores, which a debug build answers several
/// times slower): `cargo build --release --bin ringchat` is run first, once per test process,
/// which costs a second when the build is fresh, as in CI (proto-tests/run builds the workspace
/// in release before `cargo test`), and rebuilds it when the sources changed. `RINGCHAT_BIN`,
/// when set, wins here too.
pub fn ringchat_release_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if std::env::var_os("RINGCHAT_BIN").is_some() {
                return ringchat_binary();
            }
            let bin = target_dir().join("release").join("ringchat");
            cargo_build(&["build", "--release", "--bin", "ringchat"], &bin);
            bin
        })
        .clone()
}

/// The ringchat binary, started on `127.0.0.1:0` with its own static root and data directory
/// (both temp dirs) and killed when dropped. The bound address is read from its `listening`
/// log line; its log is echoed to stderr with a `[ringchat]` prefix.
pub struct Ringchat {
    pub addr: SocketAddr,
    child: Child,
    /// The executable it runs, also after a restart.
    binary: PathBuf,
    args: Vec<String>,
    static_dir: tempfile::TempDir,
    data_dir: tempfile::TempDir,
}

impl Ringchat {
    /// `--listen`'s address for an ephemeral port on loopback.
    const EPHEMERAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

    /// Starts with `--listen 127.0.0.1:0 --threads 2 --data-dir <temp> --static <temp>` and
    /// `extra` (which may give its own `--threads`).
    pub fn start(extra: &[&str]) -> Ringchat {
        Self::start_binary(ringchat_binary(), extra)
    }

    /// Like [`Ringchat::start`], running `binary` (and running it again on every restart), e.g.
    /// [`ringchat_release_binary`].
    pub fn start_binary(binary: PathBuf, extra: &[&str]) -> Ringchat {
        let static_dir = tempfile::tempdir().expect("static tempdir");
        std::fs::write(
            static_dir.path().join("index.html"),
            "<!doctype html>ringchat\n",
        )
        .expect("write index.html");
        let data_dir = tempfile::tempdir().expect("data tempdir");
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        if !args.iter().any(|a| a == "--threads") {
            args.extend(["--threads".to_string(), "2".to_string()]);
        }
        let (child, addr) = Self::spawn(
            &binary,
            Self::EPHEMERAL,
            static_dir.path(),
            data_dir.path(),
            &args,
        );
        Ringchat {
            addr,
            child,
            binary,
            args,
            static_dir,
            data_dir,
        }
    }

    /// Starts the binary listening on `listen` (port 0: an ephemeral one) with the static root,
    /// data directory and flags given; returns once it logs `listening`, with the address that
    /// line names.
    fn spawn(
        binary: &Path,
        listen: SocketAddr,
        static_dir: &Path,
        data_dir: &Path,
        args: &[String],
    ) -> (Child, SocketAddr) {
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg(listen.to_string())
            .args(["--log-level", "info", "--static"])
            .arg(static_dir)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringchat");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[ringchat] {line}");
                // The receiver goes away once the address is known; keep echoing.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + RINGCHAT_START_DEADLINE;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let status = child.try_wait();
                    let _ = child.kill();
                    panic!(
                        "ringchat did not log `listening` on {listen} ({e}); exit status {status:?}"
                    );
                }
            };
            if line.contains("listening")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr
                    .parse()
                    .unwrap_or_else(|_| panic!("bad addr in log line: {line}"));
            }
        };
        (child, addr)
    }

    /// The embedded store's directory (`<dir>/ringchat.sqlite3`).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the server with SIGTERM and waits for it to exit (the embedded store checkpoints
    /// and releases its lock). [`Ringchat::restart`] starts it again on the same directories.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + RINGCHAT_STOP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for ringchat") {
                assert!(
                    status.success(),
                    "ringchat exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ringchat did not exit within {RINGCHAT_STOP_DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts again (after [`Ringchat::stop`]) with the same flags and directories; the
    /// address changes.
    pub fn restart(&mut self) {
        self.stop();
        let (child, addr) = Self::spawn(
            &self.binary,
            Self::EPHEMERAL,
            self.static_dir.path(),
            self.data_dir.path(),
            &self.args,
        );
        self.child = child;
        self.addr = addr;
    }
}

impl Ringchat {
    /// The server process's id, for reading `/proc/<pid>/...` from the outside.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of `/proc/<pid>/status` in KiB: `VmRSS` (resident now), `VmHWM` (the
    /// resident peak so far), `VmSize`...
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .strip_suffix(" kB")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Each of the server's threads, by name (`/proc/<pid>/task/<tid>/comm`), with the CPU time
    /// it has used so far, user and system (`utime` + `stime`, in clock ticks of 10 ms).
    pub fn thread_cpu_times(&self) -> Vec<(String, Duration)> {
        /// `USER_HZ`, the unit of `/proc`'s times: 100 on every Linux architecture.
        const TICKS_PER_SECOND: u64 = 100;
        let tasks = format!("/proc/{}/task", self.pid());
        let entries = std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("read {tasks}: {e}"));
        entries
            .filter_map(|entry| {
                // A thread may end between the listing and the reads.
                let dir = entry.ok()?.path();
                let name = std::fs::read_to_string(dir.join("comm")).ok()?;
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                // The fields after the name, which is in parentheses and may hold spaces:
                // state is the 3rd field of the line, utime the 14th, stime the 15th.
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks: u64 =
                    fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
                Some((
                    name.trim_end().to_string(),
                    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
                ))
            })
            .collect()
    }
}

impl Drop for Ringchat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
