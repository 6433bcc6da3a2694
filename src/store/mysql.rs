//! Users in MySQL or MariaDB, over each core's own pool of connections.
//!
//! Speaks the wire protocol through the sans-I/O engine in [`crate::proto::mysql`] on
//! connections opened with [`crate::rt::connect`]. One command is in flight per connection: a
//! caller checks a connection out of its core's pool, runs its statement under the query
//! timeout, and returns it. User input only ever travels as bound values of prepared statements
//! (cached per connection), never in SQL text.
//!
//! The pool (per core, nothing shared between cores) keeps at least `min` and at most `max`
//! connections. Acquiring waits at most the acquire timeout for a free one, then fails with
//! [`StoreError::Timeout`]. While the server cannot be reached, new connections are attempted at
//! most once per backoff interval (doubling up to [`MYSQL_BACKOFF_MS_MAX`], with jitter) and
//! calls in between fail at once with [`StoreError::Unavailable`], so callers answer 503
//! quickly instead of queueing. A connection that errs at the protocol level, times out, or has
//! been idle longer than [`MYSQL_IDLE_CHECK_MS`] without a successful ping is not reused.
//!
//! The schema of shared/spec/compat.md is created when missing (`CREATE TABLE IF NOT EXISTS`)
//! by the first connection each core opens, with `DEFAULT CHARSET=utf8mb4`: without it the table
//! takes the server's default (latin1 on a stock MariaDB) and usernames outside it, emoji
//! included, are refused. An existing table is used as it is. Duplicate usernames and emails are told apart by
//! looking at the data after the server reports a duplicate key, never by parsing its message.
//!
//! Not here: TLS, transactions spanning calls, migrations beyond creating the table.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CreateUser, Credentials, NewUser, Side, StoreError, User, UserId};
use crate::proto::mysql::{Command, Connection, Event, Options, QueryResult, Statement, Value};
use crate::rt::{self, Conn};

/// Error code of a duplicate key (ER_DUP_ENTRY), the same in MySQL and MariaDB.
pub const ER_DUP_ENTRY: u16 = 1062;
/// Largest backoff between connection attempts while the server is down.
pub const MYSQL_BACKOFF_MS_MAX: u64 = 1000;
/// First backoff after a failed connection attempt.
pub const MYSQL_BACKOFF_MS_MIN: u64 = 50;
/// A pooled connection idle longer than this is pinged before it is handed out.
pub const MYSQL_IDLE_CHECK_MS: u64 = 30_000;
/// Read buffer growth step for a connection.
pub const MYSQL_READ_CHUNK_BYTES: usize = 16 * 1024;
/// Ids looked up per statement by [`MysqlStore::users_by_ids`]; larger sets are split. Lists are
/// padded to one of a few sizes so each connection prepares at most a handful of statements.
pub const MYSQL_IDS_PER_QUERY_MAX: usize = 100;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (\
    id BIGINT PRIMARY KEY AUTO_INCREMENT, \
    username VARCHAR(100) NOT NULL, \
    email VARCHAR(100) NOT NULL, \
    password TEXT NOT NULL, \
    UNIQUE (username), \
    UNIQUE (email)) DEFAULT CHARSET=utf8mb4";
const INSERT_USER: &str = "INSERT INTO users (username, email, password) VALUES (?, ?, ?)";
const WHICH_DUPLICATE: &str =
    "SELECT username = ?, email = ? FROM users WHERE username = ? OR email = ?";
const CREDENTIALS_BY_EMAIL: &str = "SELECT id, password FROM users WHERE email = ?";
const USER_BY_ID: &str = "SELECT id, username FROM users WHERE id = ?";
const SET_PASSWORD: &str = "UPDATE users SET password = ? WHERE id = ?";
const ID_LIST_SIZES: [usize; 4] = [1, 8, 32, MYSQL_IDS_PER_QUERY_MAX];

/// Where and how to connect, from `--mysql mysql://user:pass@host:port/db`.
#[derive(Clone)]
pub struct MysqlConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub pool_min: usize,
    pub pool_max: usize,
    pub acquire_timeout: Duration,
    pub query_timeout: Duration,
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(
            f,
            "mysql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

impl MysqlConfig {
    /// Parses `mysql://user[:password]@host[:port]/database`; user and password may be
    /// percent-encoded. Pool and timeout settings get defaults to adjust afterwards.
    pub fn from_url(url: &str) -> Result<MysqlConfig, String> {
        let rest = url
            .strip_prefix("mysql://")
            .ok_or("a MySQL URL starts with mysql://")?;
        let (auth, rest) = rest.rsplit_once('@').ok_or("a MySQL URL needs user@host")?;
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, database) = rest.split_once('/').ok_or("a MySQL URL needs /database")?;
        if database.is_empty() || database.contains(['/', '?']) {
            return Err("a MySQL URL needs one database name after the host".into());
        }
        let (host, port) = super::split_host_port(hostport, 3306)?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
        };
        Ok(MysqlConfig {
            host,
            port,
            user: decode(user).map_err(|_| "user is not UTF-8")?,
            password: decode(password).map_err(|_| "password is not UTF-8")?,
            database: database.to_string(),
            pool_min: 1,
            pool_max: 8,
            acquire_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(2),
        })
    }

    fn address(&self) -> Result<SocketAddr, StoreError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| unavailable(format!("cannot resolve {}", self.host)))
    }
}

/// The refusal while the pool backs off from a server that did not answer.
const UNREACHABLE_BACKING_OFF: &str = "MySQL is unreachable; retrying with backoff";

fn unavailable(detail: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        side: Side::Mysql,
        detail: detail.into(),
    }
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        side: Side::Mysql,
        detail: detail.into(),
    }
}

/// One logged-in connection.
pub struct MysqlConnection {
    conn: Conn,
    engine: Connection,
    input: Vec<u8>,
    output: Vec<u8>,
    statements: HashMap<String, Statement>,
    last_used: Instant,
    /// False once anything went wrong: the pool drops it instead of reusing it.
    healthy: bool,
}

/// What one command came back as.
enum Outcome {
    Done(QueryResult),
    ServerError { code: u16, message: String },
}

impl MysqlConnection {
    async fn open(config: &MysqlConfig) -> Result<MysqlConnection, StoreError> {
        let addr = config.address()?;
        let conn = tokio::time::timeout(config.query_timeout, rt::connect(addr))
            .await
            .map_err(|_| StoreError::Timeout { side: Side::Mysql })?
            .map_err(|e| unavailable(format!("connect {addr}: {e}")))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| unavailable(format!("no OS randomness: {e}")))?;
        let options = Options::new(
            config.user.clone(),
            config.password.clone().into_bytes(),
            seed,
        )
        .database(config.database.clone());
        let engine = Connection::new(&options).map_err(|e| unavailable(format!("{e:?}")))?;
        let mut c = MysqlConnection {
            conn,
            engine,
            input: Vec::with_capacity(MYSQL_READ_CHUNK_BYTES),
            output: Vec::new(),
            statements: HashMap::new(),
            last_used: Instant::now(),
            healthy: true,
        };
        c.conn.set_timeout(config.query_timeout);
        match c.next_event().await? {
            Event::HandshakeDone(_) => {}
            other => {
                return Err(corrupt(format!(
                    "expected the handshake to finish, got {other:?}"
                )));
            }
        }
        c.conn.set_deadline(None);
        Ok(c)
    }

    /// Writes what the engine has to send, then reads until it reports an event.
    async fn next_event(&mut self) -> Result<Event, StoreError> {
        loop {
            self.flush().await?;
            if let Some(event) = self.engine.poll_event() {
                return Ok(event);
            }
            if self.input.capacity() - self.input.len() < MYSQL_READ_CHUNK_BYTES / 2 {
                self.input.reserve(MYSQL_READ_CHUNK_BYTES);
            }
            let (result, buf) = self.conn.read(std::mem::take(&mut self.input)).await;
            self.input = buf;
            match result {
                Ok(0) if self.conn.timed_out() => {
                    return Err(self.fail(StoreError::Timeout { side: Side::Mysql }));
                }
                Ok(0) => return Err(self.fail(unavailable("server closed the connection"))),
                Err(e) => return Err(self.fail(unavailable(format!("read: {e}")))),
                Ok(_) => {}
            }
            let consumed = match self.engine.handle_input(&self.input) {
                Ok(n) => n,
                Err(crate::proto::mysql::MysqlError::Server(e)) => {
                    return Err(self.fail(unavailable(format!(
                        "server refused the login: {} {}",
                        e.code, e.message
                    ))));
                }
                Err(e) => return Err(self.fail(corrupt(format!("{e:?}")))),
            };
            self.input.drain(..consumed);
        }
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.output.clear();
        if self.engine.poll_transmit(&mut self.output) == 0 {
            return Ok(());
        }
        let (result, buf) = self.conn.write_all(std::mem::take(&mut self.output)).await;
        self.output = buf;
        result.map_err(|e| self.fail(unavailable(format!("write: {e}"))))
    }

    fn fail(&mut self, error: StoreError) -> StoreError {
        self.healthy = false;
        error
    }

    async fn run(&mut self, command: Command, timeout: Duration) -> Result<Event, StoreError> {
        self.engine
            .queue(command)
            .map_err(|e| self.fail(corrupt(format!("queue: {e:?}"))))?;
        self.conn.set_timeout(timeout);
        let event = self.next_event().await;
        self.conn.set_deadline(None);
        self.last_used = Instant::now();
        event
    }

    /// Runs a prepared statement (preparing it on first use) with `params` bound.
    async fn execute(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        timeout: Duration,
    ) -> Result<Outcome, StoreError> {
        let statement = match self.statements.get(sql) {
            Some(s) => *s,
            None => match self.run(Command::Prepare(sql.to_string()), timeout).await? {
                Event::Prepared(p) => {
                    self.statements.insert(sql.to_string(), p.statement);
                    p.statement
                }
                Event::Error(e) => {
                    return Err(corrupt(format!("prepare failed: {} {}", e.code, e.message)));
                }
                other => {
                    return Err(
                        self.fail(corrupt(format!("unexpected answer to prepare: {other:?}")))
                    );
                }
            },
        };
        match self
            .run(Command::Execute { statement, params }, timeout)
            .await?
        {
            Event::QueryResult(r) => Ok(Outcome::Done(r)),
            Event::Error(e) => Ok(Outcome::ServerError {
                code: e.code,
                message: e.message,
            }),
            Event::ResultTooLarge(limit) => {
                Err(corrupt(format!("result over the {limit:?} limit")))
            }
            other => Err(self.fail(corrupt(format!("unexpected answer to execute: {other:?}")))),
        }
    }

    async fn query_text(&mut self, sql: &str, timeout: Duration) -> Result<Outcome, StoreError> {
        match self.run(Command::Query(sql.to_string()), timeout).await? {
            Event::QueryResult(r) => Ok(Outcome::Done(r)),
            Event::Error(e) => Ok(Outcome::ServerError {
                code: e.code,
                message: e.message,
            }),
            other => Err(self.fail(corrupt(format!("unexpected answer to query: {other:?}")))),
        }
    }

    async fn ping(&mut self, timeout: Duration) -> bool {
        matches!(self.run(Command::Ping, timeout).await, Ok(Event::Pong))
    }
}

struct Pool {
    config: MysqlConfig,
    idle: RefCell<Vec<MysqlConnection>>,
    /// Connections open or being opened (idle + checked out + connecting).
    total: Cell<usize>,
    released: tokio::sync::Notify,
    /// No connection attempt before this instant (backoff while the server is down).
    retry_at: Cell<Option<Instant>>,
    backoff_ms: Cell<u64>,
    schema_ready: Cell<bool>,
}

impl Pool {
    /// The last connect failed and its backoff is not over: no new connection is tried yet.
    fn backing_off(&self) -> bool {
        self.retry_at.get().is_some_and(|at| Instant::now() < at)
    }
}

/// A connection checked out of the pool; it goes back when dropped (if still healthy).
pub struct PooledConnection {
    pool: Rc<Pool>,
    connection: Option<MysqlConnection>,
}

impl PooledConnection {
    fn get(&mut self) -> &mut MysqlConnection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(c) = self.connection.take() {
            if c.healthy {
                self.pool.idle.borrow_mut().push(c);
            } else {
                self.pool.total.set(self.pool.total.get() - 1);
            }
            self.pool.released.notify_one();
        }
    }
}

/// One core's users store over MySQL/MariaDB. Cheap to clone; `!Send`.
#[derive(Clone)]
pub struct MysqlStore {
    pool: Rc<Pool>,
}

impl MysqlStore {
    /// Creates the pool without connecting: the first call opens the first connection (and
    /// creates the schema if missing). What each core does at start-up, so a core never waits
    /// on the database before it serves.
    pub fn new(config: MysqlConfig) -> MysqlStore {
        MysqlStore {
            pool: Rc::new(Pool {
                config,
                idle: RefCell::new(Vec::new()),
                total: Cell::new(0),
                released: tokio::sync::Notify::new(),
                retry_at: Cell::new(None),
                backoff_ms: Cell::new(MYSQL_BACKOFF_MS_MIN),
                schema_ready: Cell::new(false),
            }),
        }
    }

    /// Creates the pool and opens its `pool_min` connections (creating the schema if missing).
    pub async fn connect(config: MysqlConfig) -> Result<MysqlStore, StoreError> {
        let store = MysqlStore::new(config);
        let mut warm = Vec::new();
        for _ in 0..store.pool.config.pool_min.max(1) {
            warm.push(store.acquire().await?);
        }
        drop(warm);
        Ok(store)
    }

    /// The error [`MysqlStore::acquire`] would answer at once, without waiting, because the
    /// server is known to be down: no idle connection, room for a new one, and the backoff
    /// after the last failed connect not over. Lets a caller refuse before costly work (a
    /// sign-up's password hash) that could only end in that error.
    pub fn known_unreachable(&self) -> Result<(), StoreError> {
        let pool = &self.pool;
        if pool.backing_off()
            && pool.idle.borrow().is_empty()
            && pool.total.get() < pool.config.pool_max
        {
            return Err(unavailable(UNREACHABLE_BACKING_OFF));
        }
        Ok(())
    }

    /// Checks a connection out of the pool, opening one if the pool is below its maximum, or
    /// waiting up to the acquire timeout for one to come back.
    pub async fn acquire(&self) -> Result<PooledConnection, StoreError> {
        let pool = &self.pool;
        let deadline = Instant::now() + pool.config.acquire_timeout;
        loop {
            let candidate = pool.idle.borrow_mut().pop();
            if let Some(mut c) = candidate {
                if c.last_used.elapsed() < Duration::from_millis(MYSQL_IDLE_CHECK_MS)
                    || c.ping(pool.config.query_timeout).await
                {
                    return Ok(PooledConnection {
                        pool: pool.clone(),
                        connection: Some(c),
                    });
                }
                pool.total.set(pool.total.get() - 1);
                continue;
            }
            if pool.total.get() < pool.config.pool_max {
                if pool.backing_off() {
                    return Err(unavailable(UNREACHABLE_BACKING_OFF));
                }
                pool.total.set(pool.total.get() + 1);
                match self.open().await {
                    Ok(c) => {
                        pool.retry_at.set(None);
                        pool.backoff_ms.set(MYSQL_BACKOFF_MS_MIN);
                        return Ok(PooledConnection {
                            pool: pool.clone(),
                            connection: Some(c),
                        });
                    }
                    Err(e) => {
                        pool.total.set(pool.total.get() - 1);
                        let backoff = pool.backoff_ms.get();
                        let jitter = getrandom::u64().unwrap_or(0) % (backoff / 2 + 1);
                        pool.retry_at.set(Some(
                            Instant::now() + Duration::from_millis(backoff / 2 + jitter),
                        ));
                        pool.backoff_ms.set((backoff * 2).min(MYSQL_BACKOFF_MS_MAX));
                        return Err(e);
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || tokio::time::timeout(left, pool.released.notified())
                    .await
                    .is_err()
            {
                return Err(StoreError::Timeout { side: Side::Mysql });
            }
        }
    }

    async fn open(&self) -> Result<MysqlConnection, StoreError> {
        let config = &self.pool.config;
        let mut c = MysqlConnection::open(config).await?;
        if !self.pool.schema_ready.get() {
            match c.query_text(SCHEMA, config.query_timeout).await? {
                Outcome::Done(_) => self.pool.schema_ready.set(true),
                Outcome::ServerError { code, message } => {
                    return Err(unavailable(format!(
                        "cannot create the users table: {code} {message}"
                    )));
                }
            }
        }
        Ok(c)
    }

    fn timeout(&self) -> Duration {
        self.pool.config.query_timeout
    }

    pub async fn create_user(&self, new: NewUser) -> Result<CreateUser, StoreError> {
        let mut pooled = self.acquire().await?;
        let c = pooled.get();
        let params = vec![
            Value::from(new.username.as_str()),
            Value::from(new.email.as_str()),
            Value::from(new.password_hash.as_str()),
        ];
        match c.execute(INSERT_USER, params, self.timeout()).await? {
            Outcome::Done(r) => {
                let id = i64::try_from(r.last_insert_id)
                    .map_err(|_| corrupt("insert id out of range"))?;
                Ok(CreateUser::Created(id))
            }
            Outcome::ServerError {
                code: ER_DUP_ENTRY, ..
            } => {
                let params = vec![
                    Value::from(new.username.as_str()),
                    Value::from(new.email.as_str()),
                    Value::from(new.username.as_str()),
                    Value::from(new.email.as_str()),
                ];
                let rows = rows(c.execute(WHICH_DUPLICATE, params, self.timeout()).await?)?;
                let username_taken = rows.iter().any(|r| r.first().and_then(as_i64) == Some(1));
                let email_taken = rows.iter().any(|r| r.get(1).and_then(as_i64) == Some(1));
                match (username_taken, email_taken) {
                    (true, _) => Ok(CreateUser::UsernameExists),
                    (false, true) => Ok(CreateUser::EmailExists),
                    // The conflicting row went away between the two statements: report the
                    // duplicate the server saw rather than retry into a loop.
                    (false, false) => Ok(CreateUser::EmailExists),
                }
            }
            Outcome::ServerError { code, message } => {
                Err(corrupt(format!("insert failed: {code} {message}")))
            }
        }
    }

    pub async fn credentials_by_email(
        &self,
        email: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        let mut pooled = self.acquire().await?;
        let rows = rows(
            pooled
                .get()
                .execute(
                    CREDENTIALS_BY_EMAIL,
                    vec![Value::from(email)],
                    self.timeout(),
                )
                .await?,
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let id = row
            .first()
            .and_then(as_i64)
            .ok_or_else(|| corrupt("users.id is not an integer"))?;
        let password_hash = row
            .get(1)
            .and_then(as_string)
            .ok_or_else(|| corrupt("users.password is not text"))?;
        Ok(Some(Credentials { id, password_hash }))
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let mut pooled = self.acquire().await?;
        let rows = rows(
            pooled
                .get()
                .execute(USER_BY_ID, vec![Value::Int(id)], self.timeout())
                .await?,
        )?;
        rows.first().map(|r| user_from_row(r)).transpose()
    }

    /// The users among `ids` that exist, in no particular order.
    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let mut unique: Vec<UserId> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut users = Vec::with_capacity(unique.len());
        if unique.is_empty() {
            return Ok(users);
        }
        let mut pooled = self.acquire().await?;
        for chunk in unique.chunks(MYSQL_IDS_PER_QUERY_MAX) {
            let size = ID_LIST_SIZES
                .into_iter()
                .find(|&n| n >= chunk.len())
                .unwrap_or(MYSQL_IDS_PER_QUERY_MAX);
            let sql = format!(
                "SELECT id, username FROM users WHERE id IN ({})",
                vec!["?"; size].join(", ")
            );
            // Pad with the last id: the same set, one of a few statement shapes.
            let last = *chunk.last().expect("chunks are non-empty");
            let params = chunk
                .iter()
                .copied()
                .chain(std::iter::repeat(last))
                .take(size)
                .map(Value::Int)
                .collect();
            for row in rows(pooled.get().execute(&sql, params, self.timeout()).await?)? {
                users.push(user_from_row(&row)?);
            }
        }
        Ok(users)
    }

    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut pooled = self.acquire().await?;
        match pooled
            .get()
            .execute(
                SET_PASSWORD,
                vec![Value::from(password_hash), Value::Int(id)],
                self.timeout(),
            )
            .await?
        {
            Outcome::Done(_) => Ok(()),
            Outcome::ServerError { code, message } => {
                Err(corrupt(format!("update failed: {code} {message}")))
            }
        }
    }

    /// Connections open now (idle and checked out), for metrics and tests.
    pub fn open_connections(&self) -> usize {
        self.pool.total.get()
    }
}

fn rows(outcome: Outcome) -> Result<Vec<Vec<Value>>, StoreError> {
    match outcome {
        Outcome::Done(r) => Ok(r.rows),
        Outcome::ServerError { code, message } => {
            Err(corrupt(format!("query failed: {code} {message}")))
        }
    }
}

fn user_from_row(row: &[Value]) -> Result<User, StoreError> {
    let id = row
        .first()
        .and_then(as_i64)
        .ok_or_else(|| corrupt("users.id is not an integer"))?;
    let username = row
        .get(1)
        .and_then(as_string)
        .ok_or_else(|| corrupt("users.username is not text"))?;
    Ok(User { id, username })
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_the_password() {
        let c =
            MysqlConfig::from_url("mysql://servertech_user:p%40ss@db.local:3307/servertech_chat")
                .unwrap();
        assert_eq!(
            (
                c.user.as_str(),
                c.password.as_str(),
                c.host.as_str(),
                c.port
            ),
            ("servertech_user", "p@ss", "db.local", 3307)
        );
        assert_eq!(c.database, "servertech_chat");
        assert!(!format!("{c:?}").contains("p@ss"));
        let c = MysqlConfig::from_url("mysql://u@[::1]/db").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.password.as_str()),
            ("::1", 3306, "")
        );
        for bad in [
            "redis://u@h/db",
            "mysql://h/db",
            "mysql://u@h",
            "mysql://u@h:x/db",
            "mysql://u@h/",
            "mysql://u@h/a/b",
        ] {
            assert!(MysqlConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_convert() {
        assert_eq!(as_i64(&Value::Int(5)), Some(5));
        assert_eq!(as_i64(&Value::UInt(5)), Some(5));
        assert_eq!(as_i64(&Value::UInt(u64::MAX)), None);
        assert_eq!(as_i64(&Value::Bytes(b"42".to_vec())), Some(42));
        assert_eq!(
            as_string(&Value::Bytes("ñ".as_bytes().to_vec())),
            Some("ñ".into())
        );
        assert_eq!(as_string(&Value::Bytes(vec![0xff])), None);
        assert_eq!(as_string(&Value::NULL), None);
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;
    use crate::rt::{Backend, run_local};

    /// A port nothing listens on: bound, then closed.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn a_failed_connect_makes_the_store_known_unreachable_until_the_backoff_ends() {
        let mut config =
            MysqlConfig::from_url(&format!("mysql://u@127.0.0.1:{}/db", closed_port())).unwrap();
        config.acquire_timeout = Duration::from_millis(200);
        run_local(Backend::Epoll, async move {
            let store = MysqlStore::new(config);
            // Nothing tried yet: not known to be down.
            assert!(store.known_unreachable().is_ok());
            assert!(store.acquire().await.is_err(), "nothing listens there");
            let known = store
                .known_unreachable()
                .expect_err("backing off after the failure");
            assert!(
                format!("{known}").contains(UNREACHABLE_BACKING_OFF),
                "{known}"
            );
            // What acquire answers now is that same refusal, at once.
            let started = Instant::now();
            let again = store.acquire().await.err().expect("still backing off");
            assert!(started.elapsed() < Duration::from_millis(50));
            assert_eq!(format!("{again}"), format!("{known}"));
            // The backoff is at most MYSQL_BACKOFF_MS_MIN at first: then a connect is tried.
            tokio::time::sleep(Duration::from_millis(MYSQL_BACKOFF_MS_MIN + 10)).await;
            assert!(store.known_unreachable().is_ok(), "the backoff is over");
        })
        .unwrap();
    }
}
