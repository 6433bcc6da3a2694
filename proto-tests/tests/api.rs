//! The REST API of accounts and sessions (shared/spec/compat.md, "HTTP" and "Rate limits"),
//! against the real binary over real sockets, with a plain HTTP/1.1 client written here.
//!
//! One scenario ([`scenario`]) runs against both storage configurations: the embedded store
//! alone, and MariaDB for users plus Redis for sessions (both started on private ports). It
//! covers every validation rule and message with its boundaries (byte lengths, multibyte UTF-8),
//! the validation order, duplicates (case-insensitive), the cookie's exact attributes, sessions
//! (a new one per login, logout ending only its own), `/api/me`, 404/405/413, and a user created
//! by the reference (a `$scrypt$` hash) logging in and being upgraded to argon2id.
//!
//! The embedded store only, because they do not depend on storage: rate limits (failed logins
//! per address and per email, sign-ups per address; tripping and recovering), the hashing pool's
//! 503 when its queue is full, and a login storm during which `/healthz` must stay fast, which
//! shows that password hashing does not run on the core's event loop.
//!
//! Rate limits are kept per core, so those tests run the server with `--threads 1`; clients bind
//! to different 127.0.0.x source addresses to tell the per-address and per-email buckets apart.
//!
//! Not here: the WebSocket, static files (tests/http.rs in the root crate), store internals
//! (mysql_store.rs, redis_store.rs).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64ct::{Base64Unpadded, Encoding};
use ringchat_proto_tests::{MariaDb, Redis, Ringchat};

/// How long one request may take, hashing queue included.
const IO_DEADLINE: Duration = Duration::from_secs(30);
/// Concurrent sign-ups racing for one username or one email.
const RACERS: usize = 8;
/// The attributes after `sid=<token>` on a session cookie (compat.md, plus `Path=/`).
const COOKIE_ATTRIBUTES: &str = "HttpOnly; Max-Age=604800; SameSite=Strict; Path=/";
/// The attributes on the cookie that logout sends to expire the session cookie.
const EXPIRED_COOKIE_ATTRIBUTES: &str = "HttpOnly; Max-Age=0; SameSite=Strict; Path=/";
/// What every new password hash starts with: argon2id, OWASP's parameters.
const ARGON2ID_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

// ---------------------------------------------------------------------------------------------
// Tests that measure latency run alone: every other test holds the shared side of this lock for
// its whole run (servers included), the storm test the exclusive side.

static QUIET: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    QUIET.write().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one request per connection (`Connection: close`), read to EOF.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let mut all = self.all(name).into_iter();
        let first = all.next();
        assert!(all.next().is_none(), "more than one {name}: {self:?}");
        first
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    fn retry_after_s(&self) -> u64 {
        let value = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not delta-seconds: {value:?}"))
    }
}

/// Parses one response; `buf` holds everything the server sent before closing.
fn parse_reply(buf: &[u8], head_request: bool) -> Reply {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let body = buf[end + 4..].to_vec();
    let reply = Reply {
        status,
        headers,
        body,
    };
    if head_request || status == 204 {
        assert!(reply.body.is_empty(), "unexpected body: {reply:?}");
    } else if let Some(len) = reply.header("content-length") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(reply.body.len()),
            "Content-Length disagrees with the body: {reply:?}"
        );
    }
    reply
}

/// Where requests go and where they come from (a 127.0.0.x source address).
#[derive(Debug, Clone, Copy)]
struct Client {
    addr: SocketAddr,
    from: Ipv4Addr,
}

impl Client {
    fn new(server: &Ringchat) -> Client {
        Client {
            addr: server.addr,
            from: Ipv4Addr::LOCALHOST,
        }
    }

    /// The same server, from source address 127.0.0.`last`.
    fn from(self, last: u8) -> Client {
        Client {
            from: Ipv4Addr::new(127, 0, 0, last),
            ..self
        }
    }

    fn connect(&self) -> TcpStream {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(self.from, 0)).into())
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.from));
        socket
            .connect_timeout(&self.addr.into(), IO_DEADLINE)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_DEADLINE)).expect("timeout");
        stream
            .set_write_timeout(Some(IO_DEADLINE))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        stream
    }

    /// Sends `raw` (a whole request) on a new connection and reads until the server closes.
    fn exchange(&self, raw: &[u8], head_request: bool) -> Reply {
        let mut s = self.connect();
        s.write_all(raw).expect("write request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .unwrap_or_else(|e| panic!("read response: {e} after {buf:?}"));
        parse_reply(&buf, head_request)
    }

    /// `method path` with `headers` and, for POST/PUT, `body` with its Content-Length.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.exchange(&raw, method == "HEAD")
    }

    fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| ("Content-Type", c))
            .into_iter()
            .collect();
        self.send("POST", path, &headers, body)
    }

    fn post_json(&self, path: &str, body: &str) -> Reply {
        self.post(path, Some("application/json"), body.as_bytes())
    }

    fn create(&self, username: &str, email: &str, password: &str) -> Reply {
        self.post_json(
            "/api/create-account",
            &create_body(username, email, password),
        )
    }

    fn login(&self, email: &str, password: &str) -> Reply {
        self.post_json("/api/login", &login_body(email, password))
    }

    fn me_with(&self, cookie: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        self.send("GET", "/api/me", &headers, b"")
    }

    fn me(&self, sid: &str) -> Reply {
        self.me_with(Some(&format!("sid={sid}")))
    }

    fn logout(&self, sid: Option<&str>) -> Reply {
        let cookie = sid.map(|s| format!("sid={s}"));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        self.send("POST", "/api/logout", &headers, b"")
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn create_body(username: &str, email: &str, password: &str) -> String {
    format!(
        "{{\"username\":{},\"email\":{},\"password\":{}}}",
        json_string(username),
        json_string(email),
        json_string(password)
    )
}

fn login_body(email: &str, password: &str) -> String {
    format!(
        "{{\"email\":{},\"password\":{}}}",
        json_string(email),
        json_string(password)
    )
}

// ---------------------------------------------------------------------------------------------
// Assertions on answers.

/// An error answer: status, `Content-Type: application/json`, and exactly
/// `{"id":"<id>","message":"<message>"}` (keys in that order).
#[track_caller]
fn assert_error(reply: &Reply, status: u16, id: &str, message: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{reply:?}"
    );
    assert_eq!(
        reply.text(),
        format!("{{\"id\":\"{id}\",\"message\":\"{message}\"}}"),
        "status {status}"
    );
}

#[track_caller]
fn assert_bad_request(reply: &Reply, message: &str) {
    assert_error(reply, 400, "BAD_REQUEST", message);
}

const INVALID_BODY: &str = "Invalid body provided";
const USERNAME_SIZE: &str = "username: invalid size";
const EMAIL_TOO_LONG: &str = "email: too long";
const EMAIL_FORMAT: &str = "email: invalid format";
const PASSWORD_SIZE: &str = "password: invalid size";

#[track_caller]
fn assert_login_failed(reply: &Reply) {
    assert_error(reply, 400, "LOGIN_FAILED", "Login failed");
}

#[track_caller]
fn assert_rate_limited(reply: &Reply) -> u64 {
    assert_error(
        reply,
        429,
        "RATE_LIMITED",
        "too many attempts; try again later",
    );
    let seconds = reply.retry_after_s();
    assert!(seconds >= 1, "Retry-After {seconds}");
    seconds
}

#[track_caller]
fn assert_unauthorized(reply: &Reply) {
    assert_error(reply, 401, "UNAUTHORIZED", "no valid session");
}

/// A 204 that sets a session cookie with exactly the expected attributes; returns the token.
#[track_caller]
fn session_cookie(reply: &Reply, secure: bool) -> String {
    assert_eq!(
        reply.status,
        204,
        "{reply:?} ({})",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.is_empty());
    let cookies = reply.all("set-cookie");
    assert_eq!(cookies.len(), 1, "{reply:?}");
    let (pair, attributes) = cookies[0]
        .split_once("; ")
        .unwrap_or_else(|| panic!("no attributes: {}", cookies[0]));
    let expected = if secure {
        format!("{COOKIE_ATTRIBUTES}; Secure")
    } else {
        COOKIE_ATTRIBUTES.to_string()
    };
    assert_eq!(attributes, expected);
    let sid = pair
        .strip_prefix("sid=")
        .unwrap_or_else(|| panic!("not the sid cookie: {pair}"));
    // 16 random bytes in standard base64 with padding (compat.md, "Redis data model").
    assert_eq!(sid.len(), 24, "{sid}");
    assert!(sid.ends_with("=="), "{sid}");
    assert!(
        sid[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        "{sid}"
    );
    sid.to_string()
}

/// The answer to logout: 204 expiring the cookie.
#[track_caller]
fn assert_logged_out(reply: &Reply, secure: bool) {
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.body.is_empty());
    let expected = if secure {
        format!("sid=; {EXPIRED_COOKIE_ATTRIBUTES}; Secure")
    } else {
        format!("sid=; {EXPIRED_COOKIE_ATTRIBUTES}")
    };
    assert_eq!(reply.all("set-cookie"), [expected.as_str()], "{reply:?}");
}

/// `/api/me` answered 200 for `username`; returns the user id.
#[track_caller]
fn assert_me(reply: &Reply, username: &str) -> i64 {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let text = reply.text();
    let rest = text
        .strip_prefix("{\"id\":")
        .unwrap_or_else(|| panic!("{text}"));
    let (id, rest) = rest.split_once(',').unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        rest,
        format!("\"username\":{}}}", json_string(username)),
        "{text}"
    );
    let id: i64 = id.parse().unwrap_or_else(|_| panic!("id in {text}"));
    assert!(id > 0, "{text}");
    id
}

// ---------------------------------------------------------------------------------------------
// Legacy (reference) password hashes.

/// scrypt as the reference stores it: `$scrypt$ln=<log_n>,r=8,p=1$<salt>$<hash>`.
fn scrypt_phc(password: &[u8], salt: &[u8], log_n: u8) -> String {
    let params = scrypt::Params::new(log_n, 8, 1).expect("scrypt params");
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).expect("scrypt");
    format!(
        "$scrypt$ln={log_n},r=8,p=1${}${}",
        Base64Unpadded::encode_string(salt),
        Base64Unpadded::encode_string(&key)
    )
}

#[test]
fn scrypt_helper_matches_the_spec_vector() {
    // compat.md, "MySQL data model": the test vector, so the legacy hashes below are the
    // reference's and not just this file's idea of them.
    let salt: Vec<u8> = (0..32).collect();
    let phc = scrypt_phc(b"p!ass\0word\xc3\xb1", &salt, 13);
    let key_b64 = phc.rsplit('$').next().unwrap();
    let key = Base64Unpadded::decode_vec(key_b64).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "7f436ea391a3c97e2765e0d371a059f2c0bf25701346a749a89e4a47dbc30555"
    );
    assert!(phc.starts_with("$scrypt$ln=13,r=8,p=1$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8$"));
}

// ---------------------------------------------------------------------------------------------
// The two storage configurations.

enum Backend {
    /// `--data-dir` only: users and sessions in `<data-dir>/ringchat.sqlite3`.
    Embedded,
    /// `--mysql` (MariaDB) for users, `--redis` for sessions.
    External { mariadb: MariaDb, redis: Redis },
}

struct Setup {
    // Fields drop in order: the server before the peers it uses.
    server: Ringchat,
    backend: Backend,
    secure_cookies: bool,
}

impl Setup {
    fn embedded() -> Setup {
        Setup {
            server: Ringchat::start(&[]),
            backend: Backend::Embedded,
            secure_cookies: false,
        }
    }

    fn redis_mariadb() -> Setup {
        let mariadb = MariaDb::start();
        let redis = Redis::start();
        let (mysql_url, redis_url) = (mariadb.url(), redis.url());
        let server = Ringchat::start(&[
            "--mysql",
            &mysql_url,
            "--redis",
            &redis_url,
            "--secure-cookies",
        ]);
        Setup {
            server,
            backend: Backend::External { mariadb, redis },
            secure_cookies: true,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.server)
    }

    /// Runs `f` on the embedded database with the server stopped (it holds an exclusive lock),
    /// then starts the server again.
    fn with_sqlite<T>(&mut self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        self.server.stop();
        let path = self.server.data_dir().join("ringchat.sqlite3");
        let out = {
            let db = rusqlite::Connection::open(&path).expect("open the embedded database");
            f(&db)
        };
        self.server.restart();
        out
    }

    /// Deletes a user behind the server's back (its sessions stay).
    fn delete_user(&mut self, email: &str) {
        match &self.backend {
            Backend::External { mariadb, .. } => {
                mariadb.root_sql(&format!(
                    "DELETE FROM servertech_chat.users WHERE email = '{email}'"
                ));
            }
            Backend::Embedded => self.with_sqlite(|db| {
                let rows = db
                    .execute("DELETE FROM users WHERE email = ?1", [email])
                    .expect("delete a user");
                assert_eq!(rows, 1);
            }),
        }
    }

    /// The stored password hash of `email`.
    fn password_hash(&mut self, email: &str) -> String {
        match &self.backend {
            Backend::External { mariadb, .. } => mariadb
                .root_sql(&format!(
                    "SELECT password FROM servertech_chat.users WHERE email = '{email}'"
                ))
                .trim_end()
                .to_string(),
            Backend::Embedded => self.with_sqlite(|db| {
                db.query_row(
                    "SELECT password FROM users WHERE email = ?1",
                    [email],
                    |r| r.get(0),
                )
                .expect("user row")
            }),
        }
    }

    /// Inserts users the way the reference would have (straight into the users table):
    /// `(username, email, password hash)`, none of which may hold a `'`.
    fn insert_users(&mut self, users: &[(&str, &str, &str)]) {
        match &self.backend {
            Backend::External { mariadb, .. } => {
                for (username, email, password_hash) in users {
                    assert!(!format!("{username}{email}{password_hash}").contains('\''));
                    mariadb.root_sql(&format!(
                        "INSERT INTO servertech_chat.users (username, email, password) \
                         VALUES ('{username}', '{email}', '{password_hash}')"
                    ));
                }
            }
            Backend::Embedded => self.with_sqlite(|db| {
                for &(username, email, password_hash) in users {
                    let rows = db
                        .execute(
                            "INSERT INTO users (username, email, password) VALUES (?1, ?2, ?3)",
                            [username, email, password_hash],
                        )
                        .expect("insert a user");
                    assert_eq!(rows, 1);
                }
            }),
        }
    }

    /// The user id a session key holds in Redis (None when absent), for the external backend.
    fn redis_session(&self, sid: &str) -> Option<Option<String>> {
        let Backend::External { redis, .. } = &self.backend else {
            return None;
        };
        let key = format!("session_{sid}");
        let reply = redis.raw_args(&[b"GET", key.as_bytes()]);
        let text = String::from_utf8(reply).expect("RESP reply");
        Some(if text == "$-1\r\n" || text == "_\r\n" {
            None
        } else {
            let value = text
                .split("\r\n")
                .nth(1)
                .unwrap_or_else(|| panic!("GET reply {text:?}"));
            Some(value.to_string())
        })
    }

    /// The TTL of a session key in Redis, for the external backend.
    fn redis_ttl(&self, sid: &str) -> Option<i64> {
        let Backend::External { redis, .. } = &self.backend else {
            return None;
        };
        let key = format!("session_{sid}");
        let reply = String::from_utf8(redis.raw_args(&[b"TTL", key.as_bytes()])).unwrap();
        Some(
            reply
                .strip_prefix(':')
                .and_then(|r| r.trim_end().parse().ok())
                .unwrap_or_else(|| panic!("TTL reply {reply:?}")),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario, on both configurations. The server runs with the default rate limits (10 failed
// logins a minute, 30 sign-ups an hour, per core): the scenario stays within them, as the
// reference's integration suite must (compat.md, "Rate limits"): 24 sign-ups, 7 failed logins.

#[test]
fn api_scenario_embedded() {
    let _quiet = shared();
    scenario(Setup::embedded());
}

#[test]
fn api_scenario_redis_mariadb() {
    let _quiet = shared();
    scenario(Setup::redis_mariadb());
}

fn scenario(mut setup: Setup) {
    let secure = setup.secure_cookies;
    let c = setup.client();

    body_checks(c);
    let mut signups = 0;
    signups += size_and_format_checks(c, secure);
    validation_order(c);

    // Extra keys are ignored, on both endpoints.
    let extra = "{\"username\":\"extra-keys\",\"email\":\"extra@example.com\",\
                 \"password\":\"extra password\",\"admin\":true,\"id\":7,\"nested\":{\"a\":[1,null]}}";
    session_cookie(&c.post_json("/api/create-account", extra), secure);
    signups += 1;
    let extra_login = "{\"username\":\"someone-else\",\"email\":\"extra@example.com\",\
                       \"password\":\"extra password\",\"remember\":false}";
    session_cookie(&c.post_json("/api/login", extra_login), secure);

    // --- The main user, duplicates. ---
    let created = c.create("alice", "alice@example.com", "correct horse");
    let sid0 = session_cookie(&created, secure);
    signups += 1;
    // Creating an account logs in.
    let alice = assert_me(&c.me(&sid0), "alice");
    let hash = setup.password_hash("alice@example.com");
    assert!(
        hash.starts_with(ARGON2ID_PREFIX),
        "new hashes are argon2id: {hash}"
    );
    // (The embedded backend restarted the server to read that; the address changed.)
    let c = setup.client();
    assert_me(&c.me(&sid0), "alice");

    let duplicates = [
        ("alice", "other@example.com", "USERNAME_EXISTS"),
        ("bobby", "alice@example.com", "EMAIL_EXISTS"),
        ("alice", "alice@example.com", "USERNAME_EXISTS"),
        // Case-insensitive, as under MySQL's default collations.
        ("Alice", "other@example.com", "USERNAME_EXISTS"),
        ("ALICE", "other2@example.com", "USERNAME_EXISTS"),
        ("bobby", "ALICE@Example.COM", "EMAIL_EXISTS"),
        ("Alice", "Alice@example.com", "USERNAME_EXISTS"),
    ];
    for (username, email, id) in duplicates {
        let reply = c.create(username, email, "another password");
        assert_error(&reply, 400, id, "");
        assert!(reply.all("set-cookie").is_empty(), "{reply:?}");
    }
    // None of them created anything: both names are still free.
    let bobby_sid = session_cookie(
        &c.create("bobby", "other@example.com", "bobby's password"),
        secure,
    );
    signups += 1;
    assert_me(&c.me(&bobby_sid), "bobby");

    // Racing sign-ups for one name (or one email): exactly one wins, the others are told why.
    for (same_username, expected) in [(true, "USERNAME_EXISTS"), (false, "EMAIL_EXISTS")] {
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (username, email) = if same_username {
                    ("racer".to_string(), format!("racer{i}@example.com"))
                } else {
                    (format!("racer-{i}"), "race@example.com".to_string())
                };
                std::thread::spawn(move || c.create(&username, &email, "racing password"))
            })
            .collect();
        let replies: Vec<Reply> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = replies.iter().filter(|r| r.status == 204).count();
        assert_eq!(winners, 1, "{replies:?}");
        for reply in replies.iter().filter(|r| r.status != 204) {
            assert_error(reply, 400, expected, "");
        }
        signups += 1;
    }

    // A user that no longer exists has no session.
    setup.delete_user("other@example.com");
    let c = setup.client();
    assert_unauthorized(&c.me(&bobby_sid));
    assert_login_failed(&c.login("other@example.com", "bobby's password"));

    // --- Sessions. ---
    let sid1 = session_cookie(&c.login("alice@example.com", "correct horse"), secure);
    let sid2 = session_cookie(&c.login("alice@example.com", "correct horse"), secure);
    // The lookup is case-insensitive like the uniqueness, on every backend.
    let sid3 = session_cookie(&c.login("ALICE@example.COM", "correct horse"), secure);
    let sids = [&sid0, &sid1, &sid2, &sid3];
    for (i, a) in sids.iter().enumerate() {
        for b in &sids[i + 1..] {
            assert_ne!(a, b, "every login issues a new session");
        }
    }
    for sid in sids {
        assert_eq!(assert_me(&c.me(sid), "alice"), alice);
    }
    if let Some(value) = setup.redis_session(&sid1) {
        // The reference's data model: `session_<sid>` holds the decimal user id, 7 days.
        assert_eq!(value, Some(alice.to_string()));
        let ttl = setup.redis_ttl(&sid1).unwrap();
        assert!((604_700..=604_800).contains(&ttl), "TTL {ttl}");
    }
    // Logout ends that session only, and expires the cookie.
    assert_logged_out(&c.logout(Some(&sid1)), secure);
    assert_unauthorized(&c.me(&sid1));
    for sid in [&sid0, &sid2, &sid3] {
        assert_me(&c.me(sid), "alice");
    }
    if let Some(value) = setup.redis_session(&sid1) {
        assert_eq!(value, None, "logout deletes session_<sid>");
    }
    // Logging out again, or without a session, still answers 204 and expires the cookie.
    assert_logged_out(&c.logout(Some(&sid1)), secure);
    assert_logged_out(&c.logout(None), secure);
    assert_logged_out(&c.logout(Some("not-a-session")), secure);
    assert_me(&c.me(&sid2), "alice");

    // Failed logins: a wrong password and an unknown email get the same answer.
    let wrong = c.login("alice@example.com", "wrong horse!");
    assert_login_failed(&wrong);
    assert!(wrong.all("set-cookie").is_empty());
    assert_login_failed(&c.login("nobody@example.com", "correct horse"));

    // /api/me without a usable session.
    assert_unauthorized(&c.me_with(None));
    for cookie in [
        "sid=".to_string(),
        "sid=garbage".to_string(),
        "sid=AAAAAAAAAAAAAAAAAAAAAA==".to_string(),
        "sid=a,b".to_string(),
        format!("other={sid0}"),
        format!("SID={sid0}"),
        format!("xsid={sid0}"),
        format!("sid={}", &sid0[..23]),
        format!("sid={sid0}x"),
    ] {
        assert_unauthorized(&c.me_with(Some(&cookie)));
    }
    assert_me(
        &c.me_with(Some(&format!("theme=dark; sid={sid0}; lang=en"))),
        "alice",
    );
    assert_me(&c.me_with(Some(&format!("sid=\"{sid0}\""))), "alice");
    let head = c.send(
        "HEAD",
        "/api/me",
        &[("Cookie", &format!("sid={sid0}"))],
        b"",
    );
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("application/json"));
    let get = c.me(&sid0);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str()),
        "HEAD has GET's headers"
    );
    // Browsers send one Cookie field; proxies may split it into several.
    let split = c.send(
        "GET",
        "/api/me",
        &[("Cookie", "theme=dark"), ("Cookie", &format!("sid={sid0}"))],
        b"",
    );
    assert_me(&split, "alice");

    keep_alive(c, &sid0, secure);
    routes(c);
    body_limit(c);

    // --- A user the reference created: scrypt hash, upgraded to argon2id on login. ---
    let legacy_password = "legacy pässword";
    let salt: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let legacy_hash = scrypt_phc(legacy_password.as_bytes(), &salt, 14);
    assert!(legacy_hash.starts_with("$scrypt$ln=14,r=8,p=1$"));
    // And users whose stored hash cannot be used: a login failure, never a 500 or a hang
    // (a hostile row must not make a worker allocate gigabytes).
    let key = Base64Unpadded::encode_string(&[7u8; 32]);
    let salt_b64 = Base64Unpadded::encode_string(&salt);
    let huge_scrypt = format!("$scrypt$ln=40,r=8,p=1${salt_b64}${key}");
    let huge_argon2 = format!("$argon2id$v=19$m=4194304,t=2,p=1${salt_b64}${key}");
    setup.insert_users(&[
        ("legacy", "legacy@example.com", &legacy_hash),
        ("corrupt1", "corrupt1@example.com", "not a password hash"),
        ("corrupt2", "corrupt2@example.com", &huge_scrypt),
        ("corrupt3", "corrupt3@example.com", &huge_argon2),
    ]);
    assert_eq!(setup.password_hash("legacy@example.com"), legacy_hash);
    let c = setup.client();
    let sid = session_cookie(&c.login("legacy@example.com", legacy_password), secure);
    assert_me(&c.me(&sid), "legacy");
    let upgraded = setup.password_hash("legacy@example.com");
    assert!(
        upgraded.starts_with(ARGON2ID_PREFIX),
        "the scrypt hash is replaced by argon2id at login: {upgraded}"
    );
    let c = setup.client();
    let sid = session_cookie(&c.login("legacy@example.com", legacy_password), secure);
    assert_me(&c.me(&sid), "legacy");
    assert_login_failed(&c.login("legacy@example.com", "legacy password"));
    for i in 1..=3 {
        let started = Instant::now();
        assert_login_failed(&c.login(&format!("corrupt{i}@example.com"), "any password"));
        assert!(started.elapsed() < Duration::from_secs(5), "corrupt{i}");
    }
    assert_eq!(
        setup.password_hash("legacy@example.com"),
        upgraded,
        "no second upgrade"
    );
    // Sessions survived the restarts (embedded) and the other users are intact.
    let c = setup.client();
    assert_me(&c.me(&sid0), "alice");

    assert_eq!(
        signups, 24,
        "the scenario's count of successful sign-ups (see above)"
    );
}

/// Bodies that are not JSON objects with string members, and wrong Content-Types: all
/// `Invalid body provided`, on both endpoints.
fn body_checks(c: Client) {
    let deep = format!(
        "{{\"x\":{}{},\"username\":\"alice\",\"email\":\"a@example.com\",\"password\":\"0123456789\"}}",
        "[".repeat(8000),
        "]".repeat(8000)
    );
    let not_objects: [&[u8]; 13] = [
        // Nested far deeper than any parser should follow (still under 16 KiB).
        deep.as_bytes(),
        // A lone surrogate escape is no Unicode string.
        br#"{"username":"\ud800abc","email":"a@example.com","password":"0123456789"}"#,
        b"",
        b"{",
        b"not json",
        b"[]",
        b"\"alice\"",
        b"null",
        b"42",
        b"{\"username\":\"alice\",\"email\":\"a@example.com\",\"password\":\"0123456789\"} x",
        b"{\"username\":\"alice\" \"email\":\"a@example.com\",\"password\":\"0123456789\"}",
        b"username=alice&email=a%40example.com&password=0123456789",
        // Invalid UTF-8 inside a string.
        b"{\"username\":\"al\xffce\",\"email\":\"a@example.com\",\"password\":\"0123456789\"}",
    ];
    for body in not_objects {
        assert_bad_request(
            &c.post("/api/create-account", Some("application/json"), body),
            INVALID_BODY,
        );
        assert_bad_request(
            &c.post("/api/login", Some("application/json"), body),
            INVALID_BODY,
        );
    }
    let create_bodies = [
        // A member missing.
        r#"{"email":"a@example.com","password":"0123456789"}"#,
        r#"{"username":"alice","password":"0123456789"}"#,
        r#"{"username":"alice","email":"a@example.com"}"#,
        r#"{}"#,
        // A member that is not a string.
        r#"{"username":1234,"email":"a@example.com","password":"0123456789"}"#,
        r#"{"username":null,"email":"a@example.com","password":"0123456789"}"#,
        r#"{"username":"alice","email":["a@example.com"],"password":"0123456789"}"#,
        r#"{"username":"alice","email":"a@example.com","password":1234567890}"#,
        r#"{"username":"alice","email":"a@example.com","password":{"p":"0123456789"}}"#,
        r#"{"username":"alice","email":"a@example.com","password":true}"#,
        // Case matters in member names.
        r#"{"Username":"alice","email":"a@example.com","password":"0123456789"}"#,
    ];
    for body in create_bodies {
        assert_bad_request(&c.post_json("/api/create-account", body), INVALID_BODY);
    }
    let login_bodies = [
        r#"{"password":"0123456789"}"#,
        r#"{"email":"a@example.com"}"#,
        r#"{"email":7,"password":"0123456789"}"#,
        r#"{"email":"a@example.com","password":null}"#,
        r#"{"email":"a@example.com","password":["0123456789"]}"#,
    ];
    for body in login_bodies {
        assert_bad_request(&c.post_json("/api/login", body), INVALID_BODY);
    }
    // Valid bodies with a wrong or missing Content-Type.
    let create = create_body("ctuser", "ct@example.com", "0123456789");
    let login = login_body("ct@example.com", "0123456789");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("text/json"),
        Some("application/jsonx"),
        Some("application/json+x"),
        Some(""),
    ] {
        assert_bad_request(
            &c.post("/api/create-account", content_type, create.as_bytes()),
            INVALID_BODY,
        );
        assert_bad_request(
            &c.post("/api/login", content_type, login.as_bytes()),
            INVALID_BODY,
        );
    }
}

/// Sizes (UTF-8 bytes, not characters) and the email grammar. Returns the sign-ups made.
fn size_and_format_checks(c: Client, secure: bool) -> usize {
    // ringchat accepts parameters on the media type (the reference takes only the exact string).
    let body = create_body("charset", "charset@example.com", "0123456789");
    let reply = c.post(
        "/api/create-account",
        Some("application/json; charset=utf-8"),
        body.as_bytes(),
    );
    assert_me(&c.me(&session_cookie(&reply, secure)), "charset");
    let signups = std::cell::Cell::new(1);
    let login = login_body("charset@example.com", "0123456789");
    session_cookie(
        &c.post(
            "/api/login",
            Some("application/json;charset=UTF-8"),
            login.as_bytes(),
        ),
        secure,
    );
    session_cookie(
        &c.post("/api/login", Some("Application/JSON"), login.as_bytes()),
        secure,
    );
    // A chunked body, split inside a string.
    let (first, second) = login.split_at(10);
    let chunked = format!(
        "POST /api/login HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    session_cookie(&c.exchange(chunked.as_bytes(), false), secure);
    // Whitespace around the document is fine.
    let spaced = format!(" \r\n\t{login}\n ");
    session_cookie(&c.post_json("/api/login", &spaced), secure);

    let created = |c: Client, username: &str, email: &str, password: &str| {
        let sid = session_cookie(&c.create(username, email, password), secure);
        assert_me(&c.me(&sid), username);
        signups.set(signups.get() + 1);
    };

    // Username: 4..=100 bytes.
    for username in [
        "",
        "abc",
        "ñb", // 3 bytes, 2 characters
        &"u".repeat(101),
        &format!("{}a", "ñ".repeat(50)), // 101 bytes, 51 characters
    ] {
        assert_bad_request(
            &c.create(username, "size@example.com", "0123456789"),
            USERNAME_SIZE,
        );
    }
    created(c, "abcd", "u4@example.com", "0123456789");
    created(c, "ñab", "u4b@example.com", "0123456789"); // 4 bytes, 3 characters
    created(c, &"u".repeat(100), "u100@example.com", "0123456789");
    created(c, &"ñ".repeat(50), "u100b@example.com", "0123456789"); // 100 bytes, 50 characters
    // Escapes are decoded before sizes and names are checked: U+1F600 is 4 bytes, 1 character.
    let emoji = c.post_json(
        "/api/create-account",
        r#"{"username":"\ud83d\ude00","email":"emoji@example.com","password":"0123456789"}"#,
    );
    assert_me(&c.me(&session_cookie(&emoji, secure)), "\u{1f600}");
    signups.set(signups.get() + 1);
    let escaped = c.post_json(
        "/api/create-account",
        r#"{"username":"\u00f1ab","email":"esc@example.com","password":"0123456789"}"#,
    );
    assert_error(&escaped, 400, "USERNAME_EXISTS", "");
    // A name that JSON must escape on the way out (/api/me).
    created(c, "quote\"back\\slash", "quote@example.com", "0123456789");

    // Email: at most 100 bytes.
    let local_88 = "e".repeat(88);
    created(
        c,
        "email100",
        &format!("{local_88}@example.com"),
        "0123456789",
    );
    created(
        c,
        "email100b",
        &format!("{}@example.com", "ñ".repeat(44)),
        "0123456789",
    );
    for email in [
        format!("{local_88}x@example.com"),
        format!("{}x@example.com", "ñ".repeat(44)), // 101 bytes, 57 characters
        format!("{local_88}@example..com"),         // too long is checked before the format
    ] {
        assert_eq!(email.len(), 101);
        assert_bad_request(&c.create("longmail", &email, "0123456789"), EMAIL_TOO_LONG);
        assert_bad_request(&c.login(&email, "0123456789"), EMAIL_TOO_LONG);
    }
    assert_bad_request(
        &c.create("longmail", &"x".repeat(1000), "0123456789"),
        EMAIL_TOO_LONG,
    );

    // Email format: the spec's examples.
    let valid = [
        "email@example.com",
        "\"email\"@example.com",
        "_______@example.com",
        "ñ@example.com",
        "email@example.co.jp",
        "firstname+lastname@example.com",
    ];
    for (i, email) in valid.into_iter().enumerate() {
        created(c, &format!("valid-{i}"), email, "0123456789");
        session_cookie(&c.login(email, "0123456789"), secure);
    }
    let invalid = [
        "plainaddress",
        "@example.com",
        "email@example",
        "email..email@example.com",
        ".email@example.com",
        "email.@example.com",
        "email@example..com",
        "email@example.com (Joe Smith)",
        "",
    ];
    for email in invalid {
        assert_bad_request(&c.create("badmail", email, "0123456789"), EMAIL_FORMAT);
        assert_bad_request(&c.login(email, "0123456789"), EMAIL_FORMAT);
    }

    // Password: 10..=100 bytes, on both endpoints.
    for password in [
        "p".repeat(9),
        "ñ".repeat(4) + "p", // 9 bytes, 5 characters
        "p".repeat(101),
        "ñ".repeat(50) + "p", // 101 bytes, 51 characters
        String::new(),
    ] {
        assert_bad_request(
            &c.create("pwsize", "pw@example.com", &password),
            PASSWORD_SIZE,
        );
        assert_bad_request(&c.login("pw@example.com", &password), PASSWORD_SIZE);
    }
    for (i, password) in [
        "p".repeat(10),
        "p".repeat(100),
        "ñ".repeat(5),  // 10 bytes, 5 characters
        "ñ".repeat(50), // 100 bytes
    ]
    .iter()
    .enumerate()
    {
        let email = format!("pw{i}@example.com");
        created(c, &format!("pwuser{i}"), &email, password);
        session_cookie(&c.login(&email, password), secure);
    }
    signups.get()
}

/// The reference's order of checks: the first failing check names the message.
fn validation_order(c: Client) {
    let long_bad_email = format!("{}@example..com", "e".repeat(88));
    let bad_format = "email..email@example.com";
    let short_password = "short";
    // create-account: body → username → email length → email format → password.
    let create = [
        (
            "abc",
            long_bad_email.as_str(),
            short_password,
            USERNAME_SIZE,
        ),
        ("abc", bad_format, short_password, USERNAME_SIZE),
        ("abc", "ok@example.com", short_password, USERNAME_SIZE),
        (
            "orderuser",
            long_bad_email.as_str(),
            short_password,
            EMAIL_TOO_LONG,
        ),
        ("orderuser", bad_format, short_password, EMAIL_FORMAT),
        ("orderuser", "ok@example.com", short_password, PASSWORD_SIZE),
    ];
    for (username, email, password, message) in create {
        assert_bad_request(&c.create(username, email, password), message);
    }
    // The body check comes first: a bad username with a missing or non-string member.
    assert_bad_request(
        &c.post_json("/api/create-account", r#"{"username":"ab","email":"bad"}"#),
        INVALID_BODY,
    );
    assert_bad_request(
        &c.post_json(
            "/api/create-account",
            r#"{"username":"ab","email":"bad","password":5}"#,
        ),
        INVALID_BODY,
    );
    let all_bad = create_body("ab", "bad", "short");
    assert_bad_request(
        &c.post(
            "/api/create-account",
            Some("text/plain"),
            all_bad.as_bytes(),
        ),
        INVALID_BODY,
    );
    // login: body → email length → email format → password.
    let login = [
        (long_bad_email.as_str(), short_password, EMAIL_TOO_LONG),
        (bad_format, short_password, EMAIL_FORMAT),
        ("ok@example.com", short_password, PASSWORD_SIZE),
    ];
    for (email, password, message) in login {
        assert_bad_request(&c.login(email, password), message);
    }
    assert_bad_request(
        &c.post_json("/api/login", r#"{"email":"bad","password":1}"#),
        INVALID_BODY,
    );
    let login_bad = login_body("bad", "short");
    assert_bad_request(
        &c.post("/api/login", None, login_bad.as_bytes()),
        INVALID_BODY,
    );
}

/// Several API requests on one connection: answers are framed so that the next one follows,
/// and errors do not end the connection.
fn keep_alive(c: Client, sid: &str, secure: bool) {
    let mut s = c.connect();
    let mut ask = |raw: String| {
        s.write_all(raw.as_bytes()).expect("write");
        read_keep_alive_reply(&mut s)
    };
    let login = login_body("alice@example.com", "correct horse");
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let me = |sid: &str| format!("GET /api/me HTTP/1.1\r\nHost: test\r\nCookie: sid={sid}\r\n\r\n");
    let fresh = session_cookie(&ask(post("/api/login", &login)), secure);
    assert_me(&ask(me(&fresh)), "alice");
    assert_bad_request(&ask(post("/api/login", "{")), INVALID_BODY);
    assert_unauthorized(&ask(me("unknown")));
    assert_error(
        &ask("GET /api/login HTTP/1.1\r\nHost: test\r\n\r\n".to_string()),
        405,
        "METHOD_NOT_ALLOWED",
        "method not allowed",
    );
    let logout = format!(
        "POST /api/logout HTTP/1.1\r\nHost: test\r\nCookie: sid={fresh}\r\nContent-Length: 0\r\n\r\n"
    );
    assert_logged_out(&ask(logout), secure);
    assert_unauthorized(&ask(me(&fresh)));
    assert_me(&ask(me(sid)), "alice");
}

/// Unknown paths under /api/ are 404, known paths with a wrong method 405 with Allow.
fn routes(c: Client) {
    for (method, path) in [
        ("GET", "/api/nope"),
        ("POST", "/api/nope"),
        ("GET", "/api/"),
        ("POST", "/api/login/"),
        ("POST", "/api/Login"),
        ("POST", "/api/create-account/x"),
        ("GET", "/api/me/"),
    ] {
        let reply = c.send(method, path, &[("Content-Type", "application/json")], b"");
        assert_error(&reply, 404, "NOT_FOUND", "no such API endpoint");
    }
    for (method, path, allow) in [
        ("GET", "/api/login", "POST"),
        ("PUT", "/api/login", "POST"),
        ("GET", "/api/create-account", "POST"),
        ("DELETE", "/api/create-account", "POST"),
        ("GET", "/api/logout", "POST"),
        ("POST", "/api/me", "GET, HEAD"),
        ("DELETE", "/api/me", "GET, HEAD"),
        ("POST", "/api/limits", "GET, HEAD"),
    ] {
        let reply = c.send(method, path, &[("Content-Type", "application/json")], b"");
        assert_error(&reply, 405, "METHOD_NOT_ALLOWED", "method not allowed");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    // A query string does not change the route.
    assert_bad_request(&c.post_json("/api/login?next=/chat", "{}"), INVALID_BODY);
}

/// `GET /api/limits` publishes the validation limits and `--max-message-chars`, which the web
/// client's forms and message counter use.
#[test]
fn limits_follow_the_configuration() {
    let _guard = shared();
    for (args, chars) in [(&[][..], 4096), (&["--max-message-chars", "300"][..], 300)] {
        let server = Ringchat::start(args);
        let c = Client::new(&server);
        let reply = c.send("GET", "/api/limits", &[], b"");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON body");
        assert_eq!(
            v,
            serde_json::json!({
                "usernameBytesMin": 4, "usernameBytesMax": 100, "emailBytesMax": 100,
                "passwordBytesMin": 10, "passwordBytesMax": 100, "messageCharsMax": chars,
            })
        );
        let head = c.send("HEAD", "/api/limits", &[], b"");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
}

/// API bodies are at most 16 KiB; larger ones get 413 before they are read.
fn body_limit(c: Client) {
    const LIMIT: usize = 16 * 1024;
    // Exactly at the limit: read and validated (a too-short username, so nothing is created).
    let mut body = create_body("ab", "limit@example.com", "0123456789").into_bytes();
    body.resize(LIMIT, b' ');
    assert_bad_request(
        &c.post("/api/create-account", Some("application/json"), &body),
        USERNAME_SIZE,
    );
    for size in [LIMIT + 1, 17 * 1024] {
        let mut body = create_body("limituser", "limit@example.com", "0123456789").into_bytes();
        body.resize(size, b' ');
        for path in ["/api/create-account", "/api/login"] {
            let reply = c.post(path, Some("application/json"), &body);
            assert_eq!(reply.status, 413, "{size} bytes to {path}: {reply:?}");
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert!(
                reply
                    .text()
                    .starts_with("{\"id\":\"PAYLOAD_TOO_LARGE\",\"message\":\""),
                "{}",
                reply.text()
            );
        }
    }
    // The 16 KiB cap is the endpoints' own: elsewhere under /api/ the server-wide limit
    // applies, the body is read, and the answer is the route's (404).
    let big = vec![b'x'; 20 * 1024];
    assert_eq!(
        c.post("/api/upload", Some("application/octet-stream"), &big)
            .status,
        404
    );
    // Nothing was created by the refused bodies.
    assert_bad_request(&c.login("limit@example.com", "0123"), PASSWORD_SIZE);
}

// ---------------------------------------------------------------------------------------------
// Rate limits (embedded; in memory, per core, so one core).

#[test]
fn failed_logins_are_limited_per_address_and_per_email() {
    let _quiet = shared();
    let server = Ringchat::start(&["--threads", "1", "--login-failures-per-minute", "3"]);
    let c = Client::new(&server);
    let victim = ("victim@example.com", "victim password");
    let other = ("other@example.com", "other password");
    session_cookie(&c.create("victim", victim.0, victim.1), false);
    session_cookie(&c.create("other", other.0, other.1), false);

    // From 127.0.0.2: validation failures are not counted...
    let a = c.from(2);
    for _ in 0..5 {
        assert_bad_request(
            &a.login("victim@@example.com", "wrong password"),
            EMAIL_FORMAT,
        );
        assert_bad_request(&a.login(victim.0, "short"), PASSWORD_SIZE);
        assert_bad_request(&a.post_json("/api/login", "{"), INVALID_BODY);
    }
    // ...failed credential checks are: 3 a minute.
    for _ in 0..3 {
        assert_login_failed(&a.login(victim.0, "wrong password"));
    }
    let retry = assert_rate_limited(&a.login(victim.0, "wrong password"));
    // 3 a minute refill one every 20 s.
    assert!(retry <= 20, "Retry-After {retry}");
    // While limited, the right password is refused too, from that address and for that email;
    let limited = a.login(victim.0, victim.1);
    assert_rate_limited(&limited);
    assert!(limited.all("set-cookie").is_empty());
    // validation still answers first;
    assert_bad_request(&a.login("victim@@example.com", victim.1), EMAIL_FORMAT);
    // another account from the same address is refused (per address);
    assert_rate_limited(&a.login(other.0, other.1));
    // the same account from another address is refused (per email, any case);
    let b = c.from(3);
    assert_rate_limited(&b.login(victim.0, victim.1));
    assert_rate_limited(&b.login("VICTIM@Example.com", victim.1));
    // and another account from another address is not.
    session_cookie(&b.login(other.0, other.1), false);

    // Per address across emails: 3 failures on 3 unknown emails from 127.0.0.4, then a fourth
    // unknown email is refused, while 127.0.0.5 still gets in.
    let d = c.from(4);
    for i in 0..3 {
        assert_login_failed(&d.login(&format!("unknown{i}@example.com"), "some password"));
    }
    assert_rate_limited(&d.login("unknown9@example.com", "some password"));
    assert_rate_limited(&d.login(other.0, other.1));
    session_cookie(&c.from(5).login(other.0, other.1), false);
    // Sessions are not rate limited.
    let sid = session_cookie(&c.from(6).login(other.0, other.1), false);
    for _ in 0..10 {
        assert_me(&a.me(&sid), "other");
    }
}

#[test]
fn failed_logins_recover_after_retry_after() {
    let _quiet = shared();
    // 20 a minute: one token every 3 s.
    let server = Ringchat::start(&["--threads", "1", "--login-failures-per-minute", "20"]);
    let c = Client::new(&server);
    session_cookie(
        &c.create("recover", "recover@example.com", "right password"),
        false,
    );
    let start = Instant::now();
    let mut failures = 0;
    let retry = loop {
        let reply = c.login("recover@example.com", "wrong password");
        if reply.status == 429 {
            break assert_rate_limited(&reply);
        }
        assert_login_failed(&reply);
        failures += 1;
        assert!(failures <= 40, "never limited");
    };
    let refilled = (start.elapsed().as_secs_f64() / 3.0).floor() as usize;
    assert!(
        (20..=20 + refilled).contains(&failures),
        "{failures} failures allowed in {:?}",
        start.elapsed()
    );
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert_rate_limited(&c.login("recover@example.com", "right password"));
    // Retry-After is enough: after it, the right password works...
    std::thread::sleep(Duration::from_secs(retry));
    let sid = session_cookie(&c.login("recover@example.com", "right password"), false);
    assert_me(&c.me(&sid), "recover");
    // ...and one token came back, not the whole burst.
    assert_login_failed(&c.login("recover@example.com", "wrong password"));
    assert_rate_limited(&c.login("recover@example.com", "wrong password"));
}

#[test]
fn signups_are_limited_per_address() {
    let _quiet = shared();
    let server = Ringchat::start(&["--threads", "1", "--signups-per-hour", "2"]);
    let c = Client::new(&server).from(2);
    // Requests refused by validation, and duplicates, are not counted.
    for _ in 0..5 {
        assert_bad_request(
            &c.create("ab", "s@example.com", "0123456789"),
            USERNAME_SIZE,
        );
        assert_bad_request(&c.create("signup", "s@", "0123456789"), EMAIL_FORMAT);
        assert_bad_request(&c.create("signup", "s@example.com", "short"), PASSWORD_SIZE);
    }
    session_cookie(&c.create("signup1", "s1@example.com", "0123456789"), false);
    for _ in 0..3 {
        assert_error(
            &c.create("signup1", "s9@example.com", "0123456789"),
            400,
            "USERNAME_EXISTS",
            "",
        );
    }
    session_cookie(&c.create("signup2", "s2@example.com", "0123456789"), false);
    // The third successful sign-up in the hour is refused; 2 an hour refill one every 30 min.
    let retry = assert_rate_limited(&c.create("signup3", "s3@example.com", "0123456789"));
    assert!((1..=1800).contains(&retry), "Retry-After {retry}");
    assert_bad_request(
        &c.create("ab", "s3@example.com", "0123456789"),
        USERNAME_SIZE,
    );
    // Logins from that address are not affected; another address may sign up.
    session_cookie(&c.login("s1@example.com", "0123456789"), false);
    let b = Client::new(&server).from(3);
    session_cookie(&b.create("signup3", "s3@example.com", "0123456789"), false);
    // The refused sign-up created nothing: signup3 exists once, from 127.0.0.3.
    assert_error(
        &b.create("signup3", "s4@example.com", "0123456789"),
        400,
        "USERNAME_EXISTS",
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// The hashing pool.

#[test]
fn full_hashing_queue_answers_503() {
    let _quiet = shared();
    const CLIENTS: usize = 30;
    let server = Ringchat::start(&[
        "--threads",
        "1",
        "--hash-threads",
        "1",
        "--hash-queue",
        "1",
        "--signups-per-hour",
        "1000",
    ]);
    let c = Client::new(&server);
    // Connect everything first, then send all requests at once.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = c.connect();
                let body = create_body(
                    &format!("pool{i}"),
                    &format!("pool{i}@example.com"),
                    "pool password",
                );
                let raw = format!(
                    "POST /api/create-account HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                barrier.wait();
                s.write_all(raw.as_bytes()).expect("write");
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).expect("read");
                parse_reply(&buf, false)
            })
        })
        .collect();
    let replies: Vec<Reply> = threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        match reply.status {
            204 => {
                session_cookie(reply, false);
                created.push(i);
            }
            503 => {
                assert_error(
                    reply,
                    503,
                    "SERVICE_UNAVAILABLE",
                    "the server is busy hashing passwords",
                );
                assert_eq!(reply.retry_after_s(), 1);
                refused.push(i);
            }
            _ => panic!("client {i}: only 204 or 503 expected: {reply:?}"),
        }
    }
    eprintln!(
        "hashing pool: {} created, {} refused with 503",
        created.len(),
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "30 sign-ups at once never filled a queue of 1"
    );
    assert!(
        !created.is_empty(),
        "the first sign-up must get the idle hashing thread"
    );
    // Every 204 is a real account; every 503 created nothing (one at a time, all get through).
    for i in created {
        let sid = session_cookie(
            &c.login(&format!("pool{i}@example.com"), "pool password"),
            false,
        );
        assert_me(&c.me(&sid), &format!("pool{i}"));
    }
    for i in refused {
        let reply = c.create(
            &format!("pool{i}"),
            &format!("pool{i}@example.com"),
            "pool password",
        );
        session_cookie(&reply, false);
    }
}

// ---------------------------------------------------------------------------------------------
// A login storm must not slow the event loop: hashing runs on the pool.

/// How long the storm lasts.
const STORM: Duration = Duration::from_secs(3);
/// Clients logging in at once during the storm.
const STORM_CLIENTS: usize = 16;

#[test]
fn login_storm_does_not_stall_the_event_loop() {
    let _quiet = exclusive();
    let server = Ringchat::start(&[
        "--threads",
        "1",
        "--hash-threads",
        "1",
        "--login-failures-per-minute",
        "100000",
        "--keep-alive-max",
        "1000000",
        "--keep-alive-timeout",
        "60",
    ]);
    let c = Client::new(&server);
    session_cookie(
        &c.create("storm", "storm@example.com", "storm password"),
        false,
    );

    // /healthz on one keep-alive connection, before the storm (baseline) and during it.
    let mut probe = c.connect();
    let mut healthz = move || {
        let start = Instant::now();
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("write /healthz");
        let reply = read_keep_alive_reply(&mut probe);
        let took = start.elapsed();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, b"{\"status\":\"ok\"}");
        took
    };
    let mut baseline = Vec::new();
    for _ in 0..200 {
        baseline.push(healthz());
        std::thread::sleep(Duration::from_millis(1));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(0));
    let hammers: Vec<_> = (0..STORM_CLIENTS)
        .map(|t| {
            let (stop, logins) = (stop.clone(), logins.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    match i % 3 {
                        0 => {
                            session_cookie(&c.login("storm@example.com", "storm password"), false);
                        }
                        1 => assert_login_failed(&c.login("storm@example.com", "wrong password")),
                        _ => assert_login_failed(
                            &c.login(&format!("nobody{t}@example.com"), "storm password"),
                        ),
                    }
                    logins.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // Let every hammer get its first request queued before measuring.
    let ramp = Instant::now();
    while logins.load(Ordering::Relaxed) < 2 && ramp.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let counted_from = logins.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut during = Vec::new();
    while start.elapsed() < STORM {
        during.push(healthz());
        std::thread::sleep(Duration::from_millis(1));
    }
    let window = start.elapsed();
    let hashed = logins.load(Ordering::Relaxed) - counted_from;
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.join().expect("storm client");
    }

    let (b50, b99, bmax) = percentiles(&mut baseline);
    let (p50, p99, max) = percentiles(&mut during);
    let per_hash = window / (hashed.max(1) as u32);
    eprintln!(
        "login storm: {STORM_CLIENTS} clients, {hashed} logins in {window:?} ({per_hash:?} per \
         hash on 1 hashing thread); /healthz baseline p50 {b50:?} p99 {b99:?} max {bmax:?}; \
         during the storm ({} probes) p50 {p50:?} p99 {p99:?} max {max:?}",
        during.len()
    );
    // The storm really kept the hashing thread busy the whole window...
    assert!(hashed >= 20, "only {hashed} logins in {window:?}");
    // ...while the event loop answered within far less than one hash.
    assert!(p99 < Duration::from_millis(15), "p99 {p99:?}");
    assert!(max < Duration::from_millis(100), "max {max:?}");
    assert!(
        p99 < per_hash,
        "p99 {p99:?} not below one hash ({per_hash:?})"
    );
}

/// Reads one response from a keep-alive connection (Content-Length framing).
fn read_keep_alive_reply(s: &mut TcpStream) -> Reply {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).expect("read keep-alive reply");
        assert!(n > 0, "connection closed after {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                assert_eq!(buf.len(), end + 4 + len, "more than one response");
                return parse_reply(&buf, false);
            }
        }
    }
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}
