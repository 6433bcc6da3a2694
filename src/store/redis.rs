//! Sessions and room messages in Redis, over one pipelined connection per core.
//!
//! The data model is the reference server's (shared/spec/compat.md): one stream per room, key =
//! room id, entries `payload <json>`; sessions under `session_<sid>` holding the decimal user id.
//!
//! **One connection per core, pipelined.** A [`RedisStore`] is a cheap `Rc` handle; all its
//! clones on a core share one connection, driven by one task spawned by
//! [`RedisStore::connect`]. The protocol is the sans-I/O engine
//! [`crate::proto::resp::RespConnection`], which does the handshake (`HELLO 3`, falling back to
//! RESP2 with `AUTH`, then `SELECT`) and matches replies to commands in order. A caller encodes
//! its command, queues it in the engine with a `oneshot` sender as its token, wakes the
//! connection's writer and awaits the receiver. The writer, once woken, yields one scheduling
//! round so that every task runnable in this loop turn gets to queue its command too, then hands
//! everything queued to one `write_all`: **the commands of one loop turn leave in one write.**
//! The reader reads whatever arrived, lets the engine decode the whole replies, and sends each
//! reply to its token's waiter, in order.
//!
//! **Every call ends within the configured timeout.** A caller waits on its receiver under
//! `timeout`; when it passes, the caller gets [`StoreError::Timeout`] and drops its receiver, so
//! the late reply is still consumed in its place in the pipeline and then discarded: later
//! replies keep their order. A connection on which commands wait and nothing has arrived for
//! [`REDIS_STALL_TIMEOUTS`] timeouts is considered dead (a peer that vanished without a reset,
//! a server that hangs) and is closed through the runtime's connection deadline.
//!
//! **Failures answer every waiter.** When the connection fails (reset, end of stream, write
//! error, a reply that does not decode, a refused handshake), every command not answered yet
//! fails with [`StoreError::Unavailable`], first those the engine answered with its error, then
//! the rest as their senders are dropped. Such a command may or may not have run: an `XADD` in
//! that state may have been stored although its caller was told it failed. From the caller's
//! view the store is at-most-once: it does not broadcast a message it got no id for, and never
//! retries one.
//!
//! While the connection is down, the driver waits before the next attempt (exponential backoff
//! from [`REDIS_BACKOFF_MS_MIN`] to [`REDIS_BACKOFF_MS_MAX`], with jitter, reset once a
//! handshake succeeds), and calls made meanwhile fail at once with [`StoreError::Unavailable`]
//! naming the last error, so callers answer 503 quickly instead of queueing. Calls made while
//! a connection is being opened wait for it, within their timeout. At most
//! [`REDIS_COMMANDS_IN_FLIGHT_MAX`] commands wait per core; one more fails at once.
//!
//! **Several messages are stored all or none.** [`RedisStore::append_messages`] sends one
//! `XADD` per message, queued together; more than one are wrapped in `MULTI`/`EXEC`, so no other
//! entry comes between them and the ids it returns are consecutive in the stream. Redis does not
//! roll back a transaction whose commands fail when run, but the `XADD`s of one call all name
//! the same stream with well-formed arguments, so they succeed or fail (`WRONGTYPE`) alike. The
//! queue checks a whole group against the limits before queueing any of it, so a `MULTI` is
//! never left open on the shared connection.
//!
//! History entries whose `payload` field is missing or is not the reference JSON (written by
//! something else) are skipped and logged, not reported as an error: one foreign entry must not
//! make a room's history unreadable. A page may therefore hold fewer entries than asked for; a
//! page of only foreign entries reads as empty. Replies of the wrong shape are
//! [`StoreError::Corrupt`]; so is a `WRONGTYPE` error (the room's key is not a stream) and a
//! session value that is not a decimal user id.
//!
//! Not here: TLS (`rediss://`), Sentinel and Cluster, Unix sockets, subscriptions, retries of
//! failed commands. The host name is resolved with the system resolver at each connection
//! attempt, which blocks the core for as long as it takes: give an IP address, or a name
//! `/etc/hosts` answers.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::{
    HISTORY_PAGE_MESSAGES_MAX, MessageId, NewMessage, Side, StoreError, StoredMessage, UserId,
    decode_payload, encode_payload,
};
use crate::proto::resp::{
    Credentials, Options, Phase, RESP_PIPELINE_BYTES_MAX, RESP_PIPELINE_COMMANDS_MAX,
    RespConnection, RespError, Value, encode_command, encode_del, encode_get, encode_set_nx_ex,
    encode_xadd, encode_xrange_after, encode_xrevrange_before, encode_xrevrange_newest,
};
use crate::rt::{self, Conn};

/// Port of a `redis://` URL that names none.
pub const REDIS_PORT_DEFAULT: u16 = 6379;
/// How long one request may take unless configured otherwise (`--redis-timeout`).
pub const REDIS_TIMEOUT_MS_DEFAULT: u64 = 2000;
/// First wait before reconnecting after a failure.
pub const REDIS_BACKOFF_MS_MIN: u64 = 50;
/// Largest wait between connection attempts while the server is down.
pub const REDIS_BACKOFF_MS_MAX: u64 = 2000;
/// Commands queued or sent on one core's connection and not answered yet. One more fails at
/// once with [`StoreError::Unavailable`]. It is the engine's own limit,
/// [`RESP_PIPELINE_COMMANDS_MAX`]: a larger one could never be reached.
pub const REDIS_COMMANDS_IN_FLIGHT_MAX: usize = RESP_PIPELINE_COMMANDS_MAX;
/// Messages one [`RedisStore::append_messages`] call may carry; more is refused at once.
pub const REDIS_APPEND_MESSAGES_MAX: usize = 1024;
/// A connection on which commands wait and nothing has been read for this many timeouts is
/// closed and opened again. More than one, so that a reply that is merely late (its caller has
/// already timed out) does not cost every other waiter a reconnection.
pub const REDIS_STALL_TIMEOUTS: u32 = 2;
/// Read buffer growth step.
pub const REDIS_READ_CHUNK_BYTES: usize = 16 * 1024;
/// A read or write buffer left larger than this by a burst is released once it is empty.
pub const REDIS_BUFFER_KEEP_BYTES: usize = 1024 * 1024;

/// Commands that would change the state of the shared connection for every caller on the core
/// (a transaction, another database or protocol, subscriptions); refused by
/// [`RedisStore::command`], as is `CLIENT REPLY` (silenced replies would shift every later reply
/// onto the wrong caller).
const CONNECTION_STATE_COMMANDS: [&str; 16] = [
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SELECT",
    "HELLO",
    "AUTH",
    "RESET",
    "QUIT",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "MONITOR",
];

/// Where and how to connect, from `--redis redis://[user:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    /// An ACL user; `None` is Redis's `default` user.
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// How long one request may take, from the call to the reply, connecting included.
    pub timeout: Duration,
    /// Messages kept per room stream (`XADD … MAXLEN ~ N`); `None` keeps them all.
    pub room_retention: Option<u64>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        let login = match (&self.user, &self.password) {
            (Some(user), _) => format!("{user}:<hidden>@"),
            (None, Some(_)) => ":<hidden>@".to_string(),
            (None, None) => String::new(),
        };
        write!(
            f,
            "redis://{login}{}:{}/{} (timeout {:?})",
            self.host, self.port, self.db, self.timeout
        )
    }
}

impl RedisConfig {
    /// Parses `redis://[[user]:password@]host[:port][/db]`. User and password may be
    /// percent-encoded; `:password@` logs in as the `default` user. An IPv6 address is written
    /// in brackets. The timeout gets [`REDIS_TIMEOUT_MS_DEFAULT`], to adjust afterwards.
    pub fn from_url(url: &str) -> Result<RedisConfig, String> {
        if url.starts_with("rediss://") {
            return Err("rediss:// (TLS) is not supported; use redis://".into());
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or("a Redis URL starts with redis://")?;
        if rest.contains(['?', '#']) {
            return Err("a Redis URL takes no query or fragment".into());
        }
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hostport, "")) => (hostport, 0),
            Some((hostport, db)) => {
                let db = db
                    .parse::<u32>()
                    .ok()
                    .filter(|_| db.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("the database in a Redis URL is a number, not {db}"))?;
                (hostport, db)
            }
            None => (rest, 0),
        };
        let (host, port) = super::split_host_port(hostport, REDIS_PORT_DEFAULT)?;
        let decode = |s: &str, what: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("the {what} in a Redis URL is not UTF-8"))
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(auth) => {
                let (user, password) = auth.split_once(':').ok_or(
                    "a Redis URL with a user needs its password too: redis://user:password@host",
                )?;
                let user = (!user.is_empty())
                    .then(|| decode(user, "user"))
                    .transpose()?;
                match (user, decode(password, "password")?) {
                    // `redis://:@host`: no login at all.
                    (None, password) if password.is_empty() => (None, None),
                    (user, password) => (user, Some(password)),
                }
            }
        };
        Ok(RedisConfig {
            host,
            port,
            user,
            password,
            db,
            timeout: Duration::from_millis(REDIS_TIMEOUT_MS_DEFAULT),
            room_retention: None,
        })
    }

    fn address(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {}", self.host))
    }

    pub(super) fn options(&self) -> Options {
        Options {
            credentials: self.password.as_ref().map(|password| Credentials {
                user: self.user.as_ref().map(|u| u.as_bytes().to_vec()),
                password: password.as_bytes().to_vec(),
            }),
            db: self.db,
        }
    }

    /// Without an answer for this long while commands wait, the connection is given up.
    fn stall_timeout(&self) -> Duration {
        self.timeout * REDIS_STALL_TIMEOUTS
    }
}

pub(super) fn unavailable(detail: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        side: Side::Redis,
        detail: detail.into(),
    }
}

pub(super) fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        side: Side::Redis,
        detail: detail.into(),
    }
}

/// Who waits for a command's reply: a caller, or nobody (the `MULTI` and `QUEUED` replies of a
/// transaction, whose outcome is `EXEC`'s reply).
type Token = Option<oneshot::Sender<Result<Value, RespError>>>;

/// The state of a core's connection, as callers see it.
enum Link {
    /// A connection is being opened, logging in, or working: commands go into its engine.
    Open(Box<RespConnection<Token>>),
    /// The connection failed; the next attempt is at `retry_at` (not yet known while the failed
    /// connection is being closed). Calls fail at once.
    Down { retry_at: Option<Instant> },
    /// Every handle was dropped; the driver is gone.
    Closed,
}

/// One core's Redis connection, shared by the handles and the driver task.
struct Shared {
    config: RedisConfig,
    link: RefCell<Link>,
    /// Bytes queued in the engine and not yet handed to the writer: the engine refuses a command
    /// over [`RESP_PIPELINE_BYTES_MAX`], and a transaction must be checked as a whole before its
    /// first command is queued (see [`RedisStore::enqueue`]).
    queued_bytes: Cell<usize>,
    /// A transaction could not be queued whole: its `MULTI` may be in the engine, so the
    /// connection must not be used any further.
    poisoned: Cell<bool>,
    /// Something is queued (or the handshake moved on): the writer has work.
    writer_wake: Notify,
    /// Every handle was dropped.
    closed: Cell<bool>,
    closed_wake: Notify,
    /// Why the last connection or attempt failed, for the errors of calls made meanwhile.
    last_error: RefCell<String>,
    writes: Cell<u64>,
    handshakes: Cell<u64>,
}

impl Shared {
    /// Moves the link to `Down` and fails every command of the connection: the engine's own
    /// error replies first (a refused handshake, an undecodable reply), then every other waiter
    /// as its sender is dropped.
    fn fail_waiters(&self, reason: &str) {
        *self.last_error.borrow_mut() = reason.to_string();
        let old = self.link.replace(Link::Down { retry_at: None });
        if let Link::Open(mut engine) = old {
            dispatch(&mut engine);
            drop(engine);
        }
        self.queued_bytes.set(0);
    }
}

/// Hands every decided reply to its waiter, and drops push frames (ringchat subscribes to
/// nothing; Redis may still push e.g. client-side caching invalidations).
fn dispatch(engine: &mut RespConnection<Token>) {
    while let Some((token, result)) = engine.poll_reply() {
        if let Some(waiter) = token {
            // A waiter that timed out dropped its receiver: the reply is discarded here.
            let _ = waiter.send(result);
        }
    }
    while let Some(push) = engine.poll_push() {
        tracing::debug!(?push, "ignoring a Redis push frame");
    }
}

/// Dropping the last handle stops the core's driver and closes the connection.
struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closed.set(true);
        self.shared.closed_wake.notify_one();
        self.shared.writer_wake.notify_one();
    }
}

/// Why a call failed before it could be turned into a [`StoreError`].
pub(super) enum CallError {
    Store(StoreError),
    /// Redis answered with this error reply.
    Reply(Vec<u8>),
}

impl CallError {
    /// An error reply is the server's refusal: try later (503).
    fn into_unavailable(self) -> StoreError {
        match self {
            CallError::Store(e) => e,
            CallError::Reply(text) => {
                unavailable(format!("Redis error: {}", String::from_utf8_lossy(&text)))
            }
        }
    }

    /// For the typed calls, a `WRONGTYPE` reply means the key holds something ringchat did not
    /// write there.
    pub(super) fn into_store_error(self) -> StoreError {
        match self {
            CallError::Reply(text) if text.starts_with(b"WRONGTYPE") => corrupt(format!(
                "the key holds another type: {}",
                String::from_utf8_lossy(&text)
            )),
            other => other.into_unavailable(),
        }
    }
}

/// One core's sessions and messages in Redis. Cheap to clone; `!Send`.
#[derive(Clone)]
pub struct RedisStore(Rc<Handle>);

impl RedisStore {
    /// Creates this core's connection and spawns its driver task, which connects in the
    /// background. Never blocks and never fails: calls made before the connection is up wait
    /// for it within their timeout; errors come from the calls.
    ///
    /// # Panics
    ///
    /// Outside a ringchat core or [`rt::run_local`] (no local task set to spawn on).
    pub fn connect(config: RedisConfig) -> RedisStore {
        let engine = RespConnection::new(config.options());
        let shared = Rc::new(Shared {
            config,
            link: RefCell::new(Link::Open(Box::new(engine))),
            queued_bytes: Cell::new(0),
            poisoned: Cell::new(false),
            writer_wake: Notify::new(),
            closed: Cell::new(false),
            closed_wake: Notify::new(),
            last_error: RefCell::new("not connected yet".into()),
            writes: Cell::new(0),
            handshakes: Cell::new(0),
        });
        rt::spawn(drive(shared.clone()));
        RedisStore(Rc::new(Handle { shared }))
    }

    fn shared(&self) -> &Shared {
        &self.0.shared
    }

    /// Whether the connection is up and logged in now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.shared().link.borrow(), Link::Open(engine) if engine.phase() == Phase::Ready)
    }

    /// `write_all` calls made on this core's connections so far, handshakes included: pipelining
    /// shows as far fewer writes than commands. Tests only.
    #[doc(hidden)]
    pub fn writes_for_test(&self) -> u64 {
        self.shared().writes.get()
    }

    /// Handshakes completed so far: a reconnection shows as one more. Tests only.
    #[doc(hidden)]
    pub fn handshakes_for_test(&self) -> u64 {
        self.shared().handshakes.get()
    }

    /// Creates a session that expires in `ttl_s` seconds: `SET session_<sid> <user_id> NX EX
    /// <ttl_s>`. False when the sid exists (the caller draws another).
    pub async fn create_session(
        &self,
        sid: &str,
        user_id: UserId,
        ttl_s: u64,
    ) -> Result<bool, StoreError> {
        let mut command = Vec::new();
        let user = itoa::Buffer::new().format(user_id).to_owned();
        encode_set_nx_ex(
            session_key(sid).as_bytes(),
            user.as_bytes(),
            ttl_s,
            &mut command,
        );
        match self.typed_call(&[&command]).await? {
            value if value.as_bytes() == Some(b"OK") => Ok(true),
            Value::Null => Ok(false),
            other => Err(corrupt(format!("unexpected reply to SET NX: {other:?}"))),
        }
    }

    /// The user of a session, `None` when it does not exist or has expired: `GET
    /// session_<sid>`. A value that is not a decimal user id is [`StoreError::Corrupt`].
    pub async fn session_user(&self, sid: &str) -> Result<Option<UserId>, StoreError> {
        let mut command = Vec::new();
        encode_get(session_key(sid).as_bytes(), &mut command);
        decode_session_user(self.typed_call(&[&command]).await?)
    }

    /// Deletes a session; deleting an unknown one is not an error.
    pub async fn delete_session(&self, sid: &str) -> Result<(), StoreError> {
        let mut command = Vec::new();
        encode_del(session_key(sid).as_bytes(), &mut command);
        match self.typed_call(&[&command]).await? {
            Value::Integer(_) => Ok(()),
            other => Err(corrupt(format!("unexpected reply to DEL: {other:?}"))),
        }
    }

    /// Appends messages to a room's stream (`XADD <room> * payload <json>` each, queued
    /// together; in `MULTI`/`EXEC` when more than one, so all or none are stored) and returns
    /// their ids, in order, once Redis has returned them. At most [`REDIS_APPEND_MESSAGES_MAX`]
    /// per call. On an error other than an error reply the messages may or may not be stored
    /// (see the module documentation); the caller must not announce them.
    pub async fn append_messages(
        &self,
        room: &str,
        messages: &[NewMessage],
    ) -> Result<Vec<MessageId>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        if messages.len() > REDIS_APPEND_MESSAGES_MAX {
            return Err(unavailable(format!(
                "{} messages in one append, more than {REDIS_APPEND_MESSAGES_MAX}",
                messages.len()
            )));
        }
        let mut frames = Vec::with_capacity(messages.len() + 2);
        let transaction = messages.len() > 1;
        if transaction {
            frames.push(command_bytes(&[b"MULTI"]));
        }
        for message in messages {
            let mut frame = Vec::new();
            encode_xadd(
                room.as_bytes(),
                self.0.shared.config.room_retention,
                encode_payload(message).as_bytes(),
                &mut frame,
            );
            frames.push(frame);
        }
        if transaction {
            frames.push(command_bytes(&[b"EXEC"]));
        }
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let reply = self.typed_call(&frames).await?;
        decode_appended_ids(reply, messages.len(), transaction)
    }

    /// The newest `count` messages of a room (at most [`HISTORY_PAGE_MESSAGES_MAX`]), newest
    /// first: `XREVRANGE <room> + - COUNT <count>`.
    pub async fn newest_messages(
        &self,
        room: &str,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let count = count.min(HISTORY_PAGE_MESSAGES_MAX);
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut command = Vec::new();
        encode_xrevrange_newest(room.as_bytes(), count, &mut command);
        decode_entries(self.typed_call(&[&command]).await?)
    }

    /// The `count` messages (at most [`HISTORY_PAGE_MESSAGES_MAX`]) older than `id`, newest
    /// first; `id` itself is excluded: `XREVRANGE <room> (<id> - COUNT <count>`.
    pub async fn messages_before(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let count = count.min(HISTORY_PAGE_MESSAGES_MAX);
        // Nothing precedes 0-0, and Redis refuses `(0-0` as an end ("invalid end ID").
        if count == 0 || id == (MessageId { ms: 0, seq: 0 }) {
            return Ok(Vec::new());
        }
        let mut command = Vec::new();
        let id = id.to_string();
        encode_xrevrange_before(room.as_bytes(), id.as_bytes(), count, &mut command);
        decode_entries(self.typed_call(&[&command]).await?)
    }

    /// The `count` messages (at most [`HISTORY_PAGE_MESSAGES_MAX`]) newer than `id`, oldest
    /// first; `id` itself is excluded: `XRANGE <room> (<id> + COUNT <count>`.
    pub async fn messages_after(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let count = count.min(HISTORY_PAGE_MESSAGES_MAX);
        // Nothing follows the largest id, and Redis refuses it as an exclusive start.
        let last = MessageId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        if count == 0 || id == last {
            return Ok(Vec::new());
        }
        let mut command = Vec::new();
        let id = id.to_string();
        encode_xrange_after(room.as_bytes(), id.as_bytes(), count, &mut command);
        decode_entries(self.typed_call(&[&command]).await?)
    }

    /// Runs any command on this core's connection and returns its reply, for tests and tools.
    /// An error reply is [`StoreError::Unavailable`] with its text. Commands that would change
    /// the shared connection's state for everyone (`MULTI`, `SELECT`, `SUBSCRIBE`,
    /// `CLIENT REPLY`, ...) are refused; a blocking command (`BLPOP`) holds up every caller behind it.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Value, StoreError> {
        let Some(name) = args.first() else {
            return Err(unavailable("an empty command"));
        };
        let client_reply = name.eq_ignore_ascii_case(b"CLIENT")
            && args
                .get(1)
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"REPLY"));
        if client_reply
            || CONNECTION_STATE_COMMANDS
                .iter()
                .any(|refused| refused.as_bytes().eq_ignore_ascii_case(name))
        {
            return Err(unavailable(format!(
                "{} would change the shared connection's state; not sent",
                String::from_utf8_lossy(name)
            )));
        }
        let command = command_bytes(args);
        self.call(&[&command])
            .await
            .map_err(CallError::into_unavailable)
    }

    async fn typed_call(&self, frames: &[&[u8]]) -> Result<Value, StoreError> {
        self.call(frames).await.map_err(CallError::into_store_error)
    }

    /// Queues `frames` (encoded commands, back to back) and waits, within the timeout, for the
    /// reply of the last one.
    async fn call(&self, frames: &[&[u8]]) -> Result<Value, CallError> {
        let receiver = self.enqueue(frames).map_err(CallError::Store)?;
        let timeout = self.shared().config.timeout;
        match tokio::time::timeout(timeout, receiver).await {
            Err(_) => Err(CallError::Store(StoreError::Timeout { side: Side::Redis })),
            Ok(Err(_dropped)) => Err(CallError::Store(unavailable(format!(
                "the connection to Redis failed before the reply ({}); the command may or may \
                 not have run",
                self.shared().last_error.borrow()
            )))),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(RespError::Server(text)))) => Err(CallError::Reply(text)),
            Ok(Ok(Err(error @ RespError::Refused(_)))) => {
                Err(CallError::Store(unavailable(error.to_string())))
            }
            Ok(Ok(Err(error))) => Err(CallError::Store(unavailable(format!(
                "{error}; the command may or may not have run"
            )))),
        }
    }

    /// Puts `frames` into the engine's queue as one unit (no other caller's command can come
    /// between them: nothing here awaits) and wakes the writer. The reply of the last frame goes
    /// to the returned receiver; the others' replies are discarded.
    fn enqueue(
        &self,
        frames: &[&[u8]],
    ) -> Result<oneshot::Receiver<Result<Value, RespError>>, StoreError> {
        let shared = self.shared();
        let mut link = shared.link.borrow_mut();
        let refusal = match &*link {
            Link::Open(engine) if engine.phase() == Phase::Failed || shared.poisoned.get() => {
                let why = engine
                    .error()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "a command group was refused halfway".into());
                Some(format!("the connection to Redis failed: {why}"))
            }
            Link::Open(_) => None,
            Link::Down { retry_at } => {
                let next = match retry_at {
                    Some(at) => format!(
                        "next attempt in {} ms",
                        at.saturating_duration_since(Instant::now()).as_millis()
                    ),
                    None => "reconnecting".to_string(),
                };
                Some(format!(
                    "Redis is unreachable ({}); {next}",
                    shared.last_error.borrow()
                ))
            }
            Link::Closed => Some("the Redis store was closed".into()),
        };
        if let Some(refusal) = refusal {
            return Err(unavailable(refusal));
        }
        let Link::Open(engine) = &mut *link else {
            unreachable!("refused above unless open");
        };
        // Checked for the whole group before any of it is queued: a transaction cut short after
        // its MULTI would swallow other callers' commands.
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        if engine.commands_pending() + frames.len() > REDIS_COMMANDS_IN_FLIGHT_MAX
            || shared.queued_bytes.get() + bytes > RESP_PIPELINE_BYTES_MAX
        {
            return Err(unavailable(format!(
                "too many Redis commands waiting on this core (limit \
                 REDIS_COMMANDS_IN_FLIGHT_MAX = {REDIS_COMMANDS_IN_FLIGHT_MAX}, \
                 RESP_PIPELINE_BYTES_MAX = {RESP_PIPELINE_BYTES_MAX})"
            )));
        }
        let (sender, receiver) = oneshot::channel();
        let mut sender = Some(sender);
        let last = frames.len() - 1;
        for (i, frame) in frames.iter().enumerate() {
            let token = if i == last { sender.take() } else { None };
            if let Err(error) = engine.queue(token, frame) {
                if i > 0 {
                    // Cannot happen after the checks above; if it did, the rest of the
                    // connection's traffic would be inside a transaction. Give it up.
                    tracing::error!("a Redis command group was refused halfway: {error}");
                    shared.poisoned.set(true);
                    shared.writer_wake.notify_one();
                }
                return Err(unavailable(format!("command not queued: {error}")));
            }
        }
        shared.queued_bytes.set(shared.queued_bytes.get() + bytes);
        shared.writer_wake.notify_one();
        Ok(receiver)
    }
}

fn session_key(sid: &str) -> String {
    format!("session_{sid}")
}

fn command_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut command = Vec::new();
    encode_command(args, &mut command);
    command
}

// ---------------------------------------------------------------------------------------------
// The driver: one task per core owns the socket
// ---------------------------------------------------------------------------------------------

/// The wait between connection attempts: exponential from [`REDIS_BACKOFF_MS_MIN`] to
/// [`REDIS_BACKOFF_MS_MAX`], with jitter, started over once a connection worked. Shared by the
/// pipelined connection and [`super::redis_reader::StreamReader`].
pub(super) struct Backoff {
    next_ms: u64,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            next_ms: REDIS_BACKOFF_MS_MIN,
        }
    }

    /// A connection worked: the server is back, start the backoff over.
    pub(super) fn reset(&mut self) {
        self.next_ms = REDIS_BACKOFF_MS_MIN;
    }

    /// How long to wait before the next attempt; the one after waits twice as long.
    pub(super) fn next_delay(&mut self) -> Duration {
        let backoff_ms = self.next_ms;
        self.next_ms = (backoff_ms * 2).min(REDIS_BACKOFF_MS_MAX);
        // Uniform in [backoff/2, backoff], so the cores of a restarted server do not all
        // reconnect in the same millisecond.
        let jitter = getrandom::u64().unwrap_or(0) % (backoff_ms / 2 + 1);
        Duration::from_millis(backoff_ms / 2 + jitter)
    }
}

/// Resolves the server's address and opens a TCP connection within the configured timeout;
/// the error says why not. Safe to drop while pending (see [`rt::connect`]).
pub(super) async fn open_socket(config: &RedisConfig) -> Result<Conn, String> {
    let addr = config.address()?;
    match tokio::time::timeout(config.timeout, rt::connect(addr)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!(
            "connect {addr}: no answer within {:?}",
            config.timeout
        )),
    }
}

/// Opens connections one after another until every handle is dropped, with backoff between
/// failed ones.
async fn drive(shared: Rc<Shared>) {
    let mut backoff = Backoff::new();
    while !shared.closed.get() {
        let handshakes = shared.handshakes.get();
        let reason = serve_connection(&shared).await;
        shared.fail_waiters(&reason);
        if shared.closed.get() {
            break;
        }
        if shared.handshakes.get() > handshakes {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            "Redis connection failed: {reason}; retrying in {} ms",
            delay.as_millis()
        );
        *shared.link.borrow_mut() = Link::Down {
            retry_at: Some(Instant::now() + delay),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.closed_wake.notified() => break,
        }
        if shared.closed.get() {
            break;
        }
        *shared.link.borrow_mut() =
            Link::Open(Box::new(RespConnection::new(shared.config.options())));
        shared.queued_bytes.set(0);
        shared.poisoned.set(false);
    }
    // Waiters of a connection being opened when the last handle went away get their error.
    shared.fail_waiters("the Redis store was closed");
    *shared.link.borrow_mut() = Link::Closed;
}

/// Connects, then runs the reader and the writer until one of them fails or the store is
/// dropped; returns why the connection ended. Waiters are failed before the socket is closed.
async fn serve_connection(shared: &Shared) -> String {
    let config = &shared.config;
    let conn = tokio::select! {
        connected = open_socket(config) => match connected {
            Ok(conn) => conn,
            Err(reason) => return reason,
        },
        _ = shared.closed_wake.notified() => return "the Redis store was closed".into(),
    };
    // The handshake must be answered like any command.
    conn.set_timeout(config.stall_timeout());
    let armed = Cell::new(true);
    let stopping = Cell::new(false);
    let reader = read_loop(shared, &conn, &armed, &stopping);
    let writer = write_loop(shared, &conn, &armed, &stopping);
    tokio::pin!(reader, writer);
    let (mut reader_done, mut writer_done) = (false, false);
    let reason = tokio::select! {
        reason = &mut reader => { reader_done = true; reason }
        reason = &mut writer => { writer_done = true; reason }
        _ = shared.closed_wake.notified() => "the Redis store was closed".to_string(),
    };
    shared.fail_waiters(&reason);
    // Every waiter was just told its command failed: a command still in the kernel's send
    // queue (Redis stopped acknowledging, say) must not reach Redis when the path comes back,
    // so the close resets the connection and discards it. (A command Redis already received
    // whose reply was lost cannot be taken back; see the module documentation.)
    conn.discard_unsent_on_close();
    // Close without abandoning an operation in flight: under io_uring a dropped read is not
    // cancelled, and it would hold the socket open. Shutting the socket down (the sweeper does
    // it at the deadline, within SWEEP_INTERVAL_MS) completes any pending read or write.
    stopping.set(true);
    conn.shutdown_write();
    conn.set_deadline(Some(Instant::now()));
    shared.writer_wake.notify_one();
    if !reader_done {
        reader.await;
    }
    if !writer_done {
        writer.await;
    }
    reason
}

/// Reads replies and hands them to their waiters until the connection fails.
async fn read_loop(
    shared: &Shared,
    conn: &Conn,
    armed: &Cell<bool>,
    stopping: &Cell<bool>,
) -> String {
    let stall = shared.config.stall_timeout();
    let mut input: Vec<u8> = Vec::with_capacity(REDIS_READ_CHUNK_BYTES);
    loop {
        if input.is_empty() && input.capacity() > REDIS_BUFFER_KEEP_BYTES {
            input = Vec::with_capacity(REDIS_READ_CHUNK_BYTES);
        }
        if input.capacity() - input.len() < REDIS_READ_CHUNK_BYTES / 2 {
            input.reserve(REDIS_READ_CHUNK_BYTES);
        }
        let (result, buf) = conn.read(std::mem::take(&mut input)).await;
        input = buf;
        if stopping.get() {
            return "closing".into();
        }
        match result {
            Ok(0) if conn.timed_out() => {
                return format!("no reply from Redis within {stall:?}");
            }
            Ok(0) => return "Redis closed the connection".into(),
            Err(e) => return format!("read: {e}"),
            Ok(_) => {}
        }
        let mut link = shared.link.borrow_mut();
        let Link::Open(engine) = &mut *link else {
            return "the connection was given up".into();
        };
        let before = engine.phase();
        let outcome = engine.handle_input(&input);
        dispatch(engine);
        match outcome {
            Ok(consumed) => {
                input.drain(..consumed);
            }
            Err(error) => return format!("{error}"),
        }
        let after = engine.phase();
        if after != before {
            // The handshake moved on: its next command, or the commands waiting for it, can go.
            shared.writer_wake.notify_one();
            if after == Phase::Ready {
                shared.handshakes.set(shared.handshakes.get() + 1);
                tracing::info!(
                    protocol = ?engine.protocol(),
                    version = %String::from_utf8_lossy(engine.server_version().unwrap_or(b"?")),
                    "connected to Redis at {}:{}",
                    shared.config.host,
                    shared.config.port
                );
            }
        }
        // Bytes arrived: the stall deadline starts over while anything still waits.
        if after == Phase::Ready && engine.commands_pending() == 0 {
            conn.set_deadline(None);
            armed.set(false);
        } else {
            conn.set_timeout(stall);
            armed.set(true);
        }
    }
}

/// Writes whatever the engine has queued, in one write per wake-up, until the connection fails.
async fn write_loop(
    shared: &Shared,
    conn: &Conn,
    armed: &Cell<bool>,
    stopping: &Cell<bool>,
) -> String {
    let stall = shared.config.stall_timeout();
    let mut output: Vec<u8> = Vec::new();
    loop {
        if stopping.get() {
            return "closing".into();
        }
        if shared.poisoned.get() {
            return "a command group was refused halfway".into();
        }
        let ready = {
            let mut link = shared.link.borrow_mut();
            let Link::Open(engine) = &mut *link else {
                return "the connection was given up".into();
            };
            let ready = engine.poll_transmit(&mut output);
            if engine.phase() == Phase::Ready {
                // poll_transmit took every queued command.
                shared.queued_bytes.set(0);
            }
            ready
        };
        if ready == 0 {
            shared.writer_wake.notified().await;
            // Every task made runnable in this loop turn runs before this one continues, so
            // the commands they queue leave in this same write.
            tokio::task::yield_now().await;
            continue;
        }
        let (result, buf) = conn.write_all(std::mem::take(&mut output)).await;
        output = buf;
        output.clear();
        if output.capacity() > REDIS_BUFFER_KEEP_BYTES {
            output = Vec::new();
        }
        if let Err(e) = result {
            return format!("write: {e}");
        }
        shared.writes.set(shared.writes.get() + 1);
        // Armed only while something still waits for a reply: the replies to this write may
        // already have been read (the reader disarmed), and a deadline armed now would then
        // fire on an idle connection and drop it.
        let waiting = match &*shared.link.borrow() {
            Link::Open(engine) => engine.phase() != Phase::Ready || engine.commands_pending() > 0,
            _ => false,
        };
        if waiting && !armed.get() {
            conn.set_timeout(stall);
            armed.set(true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// `GET session_<sid>`: null, or the decimal user id.
fn decode_session_user(reply: Value) -> Result<Option<UserId>, StoreError> {
    if reply.is_null() {
        return Ok(None);
    }
    let bytes = reply
        .as_bytes()
        .ok_or_else(|| corrupt(format!("unexpected reply to GET: {reply:?}")))?;
    let digits = !bytes.is_empty() && bytes.len() <= 19 && bytes.iter().all(u8::is_ascii_digit);
    std::str::from_utf8(bytes)
        .ok()
        .filter(|_| digits)
        .and_then(|s| s.parse::<UserId>().ok())
        .map(Some)
        .ok_or_else(|| {
            corrupt(format!(
                "session value is not a user id: {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

/// `XADD`'s reply (one id), or `EXEC`'s (an array of `count` ids).
fn decode_appended_ids(
    reply: Value,
    count: usize,
    transaction: bool,
) -> Result<Vec<MessageId>, StoreError> {
    if !transaction {
        return Ok(vec![decode_id(&reply)?]);
    }
    let items = match reply {
        // EXEC answers null when a WATCHed key changed; ringchat watches nothing.
        Value::Null => return Err(unavailable("Redis aborted the transaction")),
        other => other
            .into_array()
            .ok_or_else(|| corrupt("EXEC did not answer an array"))?,
    };
    if items.len() != count {
        return Err(corrupt(format!(
            "EXEC answered {} replies for {count} XADDs",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match item {
            // Every XADD of the transaction names the same stream, so they all fail alike.
            Value::Error(text) => Err(CallError::Reply(text.clone()).into_store_error()),
            item => decode_id(item),
        })
        .collect()
}

fn decode_id(value: &Value) -> Result<MessageId, StoreError> {
    value
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(format!("not a stream entry id: {value:?}")))
}

/// An `XRANGE`/`XREVRANGE` reply, in its order. RESP2 and RESP3 (Redis 7) send an array of
/// `[id, [field, value, ...]]`; the fields may also come as a map, and the entries as a map of
/// id to fields, which some servers send in RESP3. Null (`COUNT 0` on some versions) is no
/// entries. Entries without a readable payload are skipped and logged (see the module docs).
fn decode_entries(reply: Value) -> Result<Vec<StoredMessage>, StoreError> {
    decode_entry_list(reply, "XRANGE").map(|(messages, _last)| messages)
}

/// The entries of one stream in a reply of `command` (`XRANGE`, `XREVRANGE`, one stream's part
/// of `XREAD`), as [`decode_entries`] reads them, and the id of the last entry in reply order,
/// skipped ones included: a reader resuming after it must not read a foreign entry again.
pub(super) fn decode_entry_list(
    reply: Value,
    command: &str,
) -> Result<(Vec<StoredMessage>, Option<MessageId>), StoreError> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Null => return Ok((Vec::new(), None)),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|entry| match entry.into_array() {
                Some(parts) if parts.len() == 2 => {
                    let mut parts = parts.into_iter();
                    let id = parts.next().expect("two parts");
                    let fields = parts.next().expect("two parts");
                    Ok((id, fields))
                }
                other => Err(corrupt(format!(
                    "a stream entry is not [id, fields]: {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(corrupt(format!("unexpected reply to {command}: {other:?}"))),
    };
    let mut messages = Vec::with_capacity(pairs.len());
    let mut skipped: Option<(usize, MessageId, String)> = None;
    let mut last = None;
    for (id, fields) in pairs {
        let id = decode_id(&id)?;
        last = Some(id);
        match payload_of(&fields).and_then(|payload| decode_payload(id, payload)) {
            Ok(message) => messages.push(message),
            Err(why) => {
                let entry = skipped.get_or_insert((0, id, why));
                entry.0 += 1;
            }
        }
    }
    if let Some((count, first, why)) = skipped {
        tracing::warn!(
            "skipped {count} stream entries not written by ringchat (first {first}: {why})"
        );
    }
    Ok((messages, last))
}

/// The value of an entry's `payload` field.
fn payload_of(fields: &Value) -> Result<&[u8], String> {
    let found = match fields {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(name, _)| name.as_bytes() == Some(b"payload"))
            .map(|(_, value)| value),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(format!("odd number of field items ({})", items.len()));
            }
            items
                .chunks_exact(2)
                .find(|pair| pair[0].as_bytes() == Some(b"payload"))
                .map(|pair| &pair[1])
        }
        other => return Err(format!("fields are not an array or a map: {other:?}")),
    };
    found
        .ok_or_else(|| "no payload field".to_string())?
        .as_bytes()
        .ok_or_else(|| "the payload is not a string".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    const PAYLOAD: &str = r#"{"content":"hi","timestamp":1700000000000,"user_id":7}"#;

    #[test]
    fn parses_urls_and_hides_the_password() {
        let c = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, &c.user, &c.password),
            ("127.0.0.1", 6379, 0, &None, &None)
        );
        assert_eq!(c.timeout, Duration::from_secs(2));
        let c = RedisConfig::from_url("redis://alice:p%40ss%3Aw@cache.local:6380/3").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("cache.local", 6380, 3));
        assert_eq!(
            (c.user.as_deref(), c.password.as_deref()),
            (Some("alice"), Some("p@ss:w"))
        );
        assert!(!format!("{c:?}").contains("p@ss"), "{c:?}");
        assert!(format!("{c:?}").contains("alice"), "{c:?}");
        // A password alone logs in as the default user.
        let c = RedisConfig::from_url("redis://:secret@h/").unwrap();
        assert_eq!(
            (c.user, c.password.as_deref(), c.db),
            (None, Some("secret"), 0)
        );
        let c = RedisConfig::from_url("redis://:@h").unwrap();
        assert_eq!((c.user, c.password), (None, None));
        // An unencoded @ in the password: the last @ separates the host.
        let c = RedisConfig::from_url("redis://:a@b@h:1").unwrap();
        assert_eq!(
            (c.password.as_deref(), c.host.as_str(), c.port),
            (Some("a@b"), "h", 1)
        );
        let c = RedisConfig::from_url("redis://[::1]:7000/15").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("::1", 7000, 15));
        let c = RedisConfig::from_url("redis://[::1]").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 6379));
        for bad in [
            "",
            "127.0.0.1:6379",
            "http://h",
            "rediss://h",
            "redis://",
            "redis://h:0",
            "redis://h:x",
            "redis://h/x",
            "redis://h/-1",
            "redis://h/+1",
            "redis://h/1/2",
            "redis://h/99999999999",
            "redis://user@h",
            "redis://u:p@",
            "redis://h?db=1",
            "redis://u:%ff@h",
            "redis://[::1",
        ] {
            assert!(RedisConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_carry_the_login_and_database() {
        let c = RedisConfig::from_url("redis://alice:pw@h/2").unwrap();
        let o = c.options();
        let login = o.credentials.unwrap();
        assert_eq!(
            (login.user.as_deref(), login.password.as_slice(), o.db),
            (Some(&b"alice"[..]), &b"pw"[..], 2)
        );
        let o = RedisConfig::from_url("redis://h").unwrap().options();
        assert!(o.credentials.is_none());
    }

    /// A RESP2 XRANGE reply and the RESP3 one Redis 7 sends are the same arrays.
    #[test]
    fn decodes_xrange_arrays() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1700000000000-0"),
                Value::Array(vec![bulk("payload"), bulk(PAYLOAD)]),
            ]),
            Value::Array(vec![
                bulk("1700000000000-1"),
                Value::Array(vec![
                    bulk("other"),
                    bulk("x"),
                    bulk("payload"),
                    bulk(PAYLOAD),
                ]),
            ]),
        ]);
        let messages = decode_entries(reply).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0].id,
            MessageId {
                ms: 1_700_000_000_000,
                seq: 0
            }
        );
        assert_eq!(
            messages[1].id,
            MessageId {
                ms: 1_700_000_000_000,
                seq: 1
            }
        );
        assert_eq!(
            (
                messages[1].content.as_str(),
                messages[1].user_id,
                messages[1].timestamp_ms
            ),
            ("hi", 7, 1_700_000_000_000)
        );
    }

    #[test]
    fn decodes_xrange_maps() {
        // Fields as a RESP3 map.
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("5-0"),
            Value::Map(vec![(bulk("payload"), bulk(PAYLOAD))]),
        ])]);
        assert_eq!(
            decode_entries(reply).unwrap()[0].id,
            MessageId { ms: 5, seq: 0 }
        );
        // Entries as a map of id to fields.
        let reply = Value::Map(vec![
            (
                bulk("5-0"),
                Value::Array(vec![bulk("payload"), bulk(PAYLOAD)]),
            ),
            (
                bulk("6-0"),
                Value::Map(vec![(bulk("payload"), bulk(PAYLOAD))]),
            ),
        ]);
        let ids: Vec<MessageId> = decode_entries(reply)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(
            ids,
            [MessageId { ms: 5, seq: 0 }, MessageId { ms: 6, seq: 0 }]
        );
    }

    #[test]
    fn empty_and_null_replies_are_no_entries() {
        assert!(decode_entries(Value::Null).unwrap().is_empty());
        assert!(decode_entries(Value::Array(vec![])).unwrap().is_empty());
    }

    #[test]
    fn foreign_entries_are_skipped() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("text"), bulk("hello")]),
            ]),
            Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("payload"), bulk("not json")]),
            ]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("payload"), bulk("{}")]),
            ]),
            Value::Array(vec![bulk("4-0"), Value::Array(vec![bulk("payload")])]),
            Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("payload"), Value::Integer(1)]),
            ]),
            Value::Array(vec![bulk("6-0"), Value::Null]),
            Value::Array(vec![
                bulk("7-0"),
                Value::Array(vec![bulk("payload"), bulk(PAYLOAD)]),
            ]),
        ]);
        let messages = decode_entries(reply).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].id, MessageId { ms: 7, seq: 0 });
    }

    #[test]
    fn malformed_replies_are_corrupt() {
        let corrupt_reply = |reply: Value| {
            assert!(
                matches!(
                    decode_entries(reply.clone()),
                    Err(StoreError::Corrupt {
                        side: Side::Redis,
                        ..
                    })
                ),
                "{reply:?}"
            );
        };
        corrupt_reply(Value::Integer(3));
        corrupt_reply(bulk("x"));
        corrupt_reply(Value::Array(vec![bulk("1-0")]));
        corrupt_reply(Value::Array(vec![Value::Array(vec![bulk("1-0")])]));
        corrupt_reply(Value::Array(vec![Value::Array(vec![
            bulk("not-an-id"),
            Value::Array(vec![bulk("payload"), bulk(PAYLOAD)]),
        ])]));
        corrupt_reply(Value::Array(vec![Value::Array(vec![
            Value::Integer(1),
            Value::Array(vec![bulk("payload"), bulk(PAYLOAD)]),
        ])]));
    }

    #[test]
    fn decodes_session_values() {
        assert_eq!(decode_session_user(Value::Null).unwrap(), None);
        assert_eq!(decode_session_user(bulk("42")).unwrap(), Some(42));
        assert_eq!(
            decode_session_user(bulk("9223372036854775807")).unwrap(),
            Some(i64::MAX)
        );
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            " 1",
            "1.0",
            "9223372036854775808",
            "00000000000000000001",
        ] {
            assert!(
                matches!(
                    decode_session_user(bulk(bad)),
                    Err(StoreError::Corrupt { .. })
                ),
                "{bad}"
            );
        }
        assert!(decode_session_user(Value::Integer(42)).is_err());
    }

    #[test]
    fn decodes_appended_ids() {
        assert_eq!(
            decode_appended_ids(bulk("9-1"), 1, false).unwrap(),
            [MessageId { ms: 9, seq: 1 }]
        );
        let exec = Value::Array(vec![bulk("9-1"), bulk("9-2")]);
        assert_eq!(
            decode_appended_ids(exec, 2, true).unwrap(),
            [MessageId { ms: 9, seq: 1 }, MessageId { ms: 9, seq: 2 }]
        );
        assert!(matches!(
            decode_appended_ids(Value::Null, 2, true),
            Err(StoreError::Unavailable { .. })
        ));
        assert!(matches!(
            decode_appended_ids(Value::Array(vec![bulk("9-1")]), 2, true),
            Err(StoreError::Corrupt { .. })
        ));
        let failed = Value::Array(vec![bulk("9-1"), Value::Error(b"ERR oops".to_vec())]);
        assert!(matches!(
            decode_appended_ids(failed, 2, true),
            Err(StoreError::Unavailable { detail, .. }) if detail.contains("ERR oops")
        ));
        let wrongtype = Value::Array(vec![
            Value::Error(b"WRONGTYPE Operation against a key".to_vec()),
            Value::Error(b"WRONGTYPE Operation against a key".to_vec()),
        ]);
        assert!(matches!(
            decode_appended_ids(wrongtype, 2, true),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_appended_ids(Value::SimpleString(b"OK".to_vec()), 1, false),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn error_replies_map_to_store_errors() {
        let wrongtype = CallError::Reply(
            b"WRONGTYPE Operation against a key holding the wrong kind of value".to_vec(),
        );
        assert!(matches!(
            wrongtype.into_store_error(),
            StoreError::Corrupt { .. }
        ));
        let wrongtype = CallError::Reply(b"WRONGTYPE x".to_vec());
        assert!(matches!(
            wrongtype.into_unavailable(),
            StoreError::Unavailable { detail, .. } if detail == "Redis error: WRONGTYPE x"
        ));
        let oom = CallError::Reply(b"OOM command not allowed".to_vec());
        assert!(matches!(
            oom.into_store_error(),
            StoreError::Unavailable { detail, .. } if detail.contains("OOM")
        ));
    }
}
