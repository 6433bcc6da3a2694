//! Real peers for tests: a redis-server or a MariaDB started on a private loopback port with its
//! data in a temp dir, stopped (and its data removed) when dropped.
//!
//! The binaries must be installed (`proto-tests/run` installs them with apt-get); a missing one
//! is a test failure with a message saying what to install, never a skip. Nothing here is a
//! mock: tests talk to the real servers. Readiness is polled with a deadline, never slept for.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Self::spawn(dir.path(), port);
        let mut redis = Redis { port, child, dir };
        redis.wait_ready();
        redis
    }

    fn spawn(dir: &Path, port: u16) -> Child {
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
        self.child = Self::spawn(self.dir.path(), self.port);
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
        let out = Command::new(need("mariadb-install-db", "mariadb-server"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
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
