//! Test harness: starts the real `ringchat` binary on an ephemeral port and speaks raw HTTP/1.1
//! to it over sockets. No sleeps for readiness: every wait polls with a deadline.
//!
//! Each test crate uses part of it (`mod common;`), hence the crate-wide `dead_code` allowance.
//! [`chat_client`] is shared with proto-tests, so it knows nothing of [`Server`]; the
//! [`chat_client::Endpoint`] implementation below connects the two.
#![allow(dead_code)]

pub mod chat_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const START_DEADLINE: Duration = Duration::from_secs(20);
pub const IO_DEADLINE: Duration = Duration::from_secs(10);

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The line port (docs/line-chat.md), when started with `--line-port`.
    pub line_addr: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
    pub static_dir: tempfile::TempDir,
    /// The embedded store's directory, private to this server.
    pub data_dir: tempfile::TempDir,
}

/// A static root with the files the tests expect.
pub fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>ringchat</title>hello\n",
    )
    .unwrap();
    std::fs::write(
        root.join("chat.html"),
        "<!doctype html><title>chat</title>\n",
    )
    .unwrap();
    std::fs::write(root.join("style.css"), "body{color:red}\n").unwrap();
    std::fs::write(root.join(".secret"), "hidden\n").unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 3 * 1024 * 1024 / 2]).unwrap();
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/index.html"), "docs\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("host.txt")).unwrap();
    dir
}

impl Server {
    pub fn start(io: &str, extra: &[&str]) -> Server {
        Server::start_with_env(io, extra, &[])
    }

    /// Starts with extra `RINGCHAT_*` environment variables.
    pub fn start_with_env(io: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let static_dir = fixture();
        let data_dir = tempfile::tempdir().expect("data tempdir");
        // The harness's defaults, each left out when the test gives the flag itself.
        let data = data_dir
            .path()
            .to_str()
            .expect("UTF-8 temp path")
            .to_string();
        let statics = static_dir
            .path()
            .to_str()
            .expect("UTF-8 temp path")
            .to_string();
        let defaults: [(&str, &str); 6] = [
            ("--listen", "127.0.0.1:0"),
            ("--threads", "2"),
            ("--io", io),
            ("--log-level", "info"),
            ("--static", &statics),
            ("--data-dir", &data),
        ];
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringchat"))
            .args(
                defaults
                    .iter()
                    .filter(|(flag, _)| !extra.contains(flag))
                    .flat_map(|(flag, value)| [*flag, *value]),
            )
            .args(extra)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringchat");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[ringchat] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        // `listening addr=127.0.0.1:P [line=127.0.0.1:Q] cores=…`: fields are whole words, so
        // `addr=` is never read out of another field that ends in it.
        let (addr, line_addr) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("ringchat did not report listening in time");
            if !line.contains("listening") {
                continue;
            }
            let field = |name: &str| -> Option<SocketAddr> {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name))
                    .map(|v| {
                        v.parse()
                            .unwrap_or_else(|e| panic!("{name}{v} in {line:?}: {e}"))
                    })
            };
            if let Some(addr) = field("addr=") {
                break (addr, field("line="));
            }
        };
        Server {
            child,
            addr,
            line_addr,
            log: rx,
            static_dir,
            data_dir,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    pub fn root(&self) -> &Path {
        self.static_dir.path()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit, returning its exit code and how long it took.
    pub fn wait_exit(&mut self, deadline: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < deadline,
                "ringchat did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// GET a path on a fresh connection.
    pub fn get(&self, path: &str) -> Resp {
        let mut s = self.connect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s, false).expect("response")
    }

    /// A `kB` field of the server's `/proc/PID/status` (see [`proc_status_kib`]).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.child.id(), field)
    }

    /// The server's resident memory now, in KiB.
    pub fn resident_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS")
    }

    /// CPU time the server process has used so far, user and system, all threads (`utime` and
    /// `stime` of `/proc/PID/stat`; the kernel counts them in clock ticks, 10 ms on most
    /// systems, so compare differences over enough work to span many ticks).
    pub fn cpu_time(&self) -> Duration {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // The command name (field 2) is in parentheses and may hold spaces; count from after it.
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after it.
        let after_name = &stat[stat.rfind(')').expect("a /proc stat line") + 1..];
        let ticks: u64 = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|t| t.parse::<u64>().expect("a tick count"))
            .sum();
        // SAFETY: sysconf(3) reads a constant of the system; no memory is involved.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert!(per_second > 0, "sysconf(_SC_CLK_TCK)");
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// The log lines that arrived so far and say something panicked (the standard panic hook
    /// writes `thread '…' panicked at …` to stderr). Consumes the lines it reads.
    pub fn panics_logged(&self) -> Vec<String> {
        self.log
            .try_iter()
            .filter(|line| line.contains("panicked"))
            .collect()
    }

    /// The value of one metric line, e.g. `ringchat_accepted_connections_total{core="0"}`.
    pub fn metric(&self, key: &str) -> u64 {
        let body = self.get("/metrics").text();
        body.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("metric {key} missing from:\n{body}"))
    }
}

/// The shared chat client reaches this server with [`Server::connect`]'s deadlines.
impl chat_client::Endpoint for Server {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn connect(&self) -> TcpStream {
        Server::connect(self)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `head_request` means no body follows whatever Content-Length says.
/// Reads from a socket, or from a byte slice holding what one sent (which it advances).
pub fn read_response(s: &mut impl Read, head_request: bool) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("eof after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![
        0;
        if head_request || status == 304 || status < 200 {
            0
        } else {
            len
        }
    ];
    s.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Reads until EOF (or error); returns the bytes and whether EOF was clean.
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (all, false),
        }
    }
}

pub fn path(p: &Path) -> PathBuf {
    p.to_path_buf()
}

/// A `kB` field of `/proc/PID/status`, e.g. `VmRSS` (resident memory now) or `VmHWM` (its
/// peak). Free of [`Server`], so a sampling thread can take the pid alone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let prefix = format!("{field}:");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}
