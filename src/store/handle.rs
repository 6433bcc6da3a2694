//! [`Store`]: the one storage interface the server uses, whatever the backends.
//!
//! Users live in MySQL when `--mysql` is given, sessions and messages in Redis when `--redis` is
//! given, and whatever is left in the embedded SQLite store under `--data-dir` (so `--redis`
//! alone keeps users on local disk, and neither flag keeps everything there). [`StoreSetup`] is
//! built once on the main thread from the configuration: it opens the embedded database when one
//! is needed (the only blocking disk work, done before any core starts) and checks that the
//! network backends answer. Each core then calls [`StoreSetup::for_core`] for its own
//! [`Store`]: its own MySQL pool and its own Redis connection, nothing shared with other cores
//! but the embedded store's request channel.
//!
//! Every method answers with the backend's [`StoreError`] instead of waiting without bound: the
//! Redis timeout, the MySQL acquire and query timeouts and the embedded queue limit all end in an
//! error the caller turns into a 503 or an error event. The facade adds what every backend must
//! agree on: `users_by_ids` by increasing id, each once; sessions as
//! [`SESSION_ID_BYTES`] random bytes in standard base64 with padding, drawn again on the rare
//! collision.
//!
//! Not here: validation of names, lengths and room ids (the API layer does it before calling),
//! caching, and moving data between backends.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::embedded::{EmbeddedOptions, EmbeddedStore};
use super::mysql::{MysqlConfig, MysqlStore};
use super::redis::{RedisConfig, RedisStore};
use super::{
    CreateUser, Credentials, MessageId, NewMessage, NewUser, Side, StoreError, StoredMessage, User,
    UserId,
};

/// Random bytes in a session id (the reference's 16, 24 base64 characters).
pub const SESSION_ID_BYTES: usize = 16;
/// Session ids drawn at most before giving up: a collision among 2^128 values means the random
/// source is broken, so the second one is already suspicious.
pub const SESSION_ID_DRAWS_MAX: usize = 4;
/// How often the start-up check retries a backend that does not answer yet.
pub const STARTUP_RETRY_MS: u64 = 250;

/// Which backends to use, from the command line.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub mysql: Option<MysqlConfig>,
    pub redis: Option<RedisConfig>,
    /// Where the embedded database lives when a part of the data has no network backend.
    pub data_dir: PathBuf,
    /// Messages kept per room in the embedded store; `None` keeps them all. (Redis's is in
    /// `redis`, with its other settings.)
    pub room_retention: Option<u64>,
    /// How long a new session lives, in seconds.
    pub session_ttl_s: u64,
}

/// The storage wiring built once at start-up; each core takes its [`Store`] from it.
pub struct StoreSetup {
    mysql: Option<MysqlConfig>,
    redis: Option<RedisConfig>,
    embedded: Option<EmbeddedStore>,
    session_ttl_s: u64,
}

impl StoreSetup {
    /// Opens the embedded database when users or messages have no network backend. Blocks on the
    /// disk: call it before the cores start.
    pub fn open(options: &StoreOptions) -> Result<StoreSetup, StoreError> {
        let embedded = if options.mysql.is_none() || options.redis.is_none() {
            std::fs::create_dir_all(&options.data_dir).map_err(|e| StoreError::Unavailable {
                side: Side::Embedded,
                detail: format!("cannot create {}: {e}", options.data_dir.display()),
            })?;
            Some(EmbeddedStore::with_options(
                &options.data_dir,
                EmbeddedOptions {
                    room_retention: options.room_retention,
                    ..EmbeddedOptions::default()
                },
            )?)
        } else {
            None
        };
        Ok(StoreSetup {
            mysql: options.mysql.clone(),
            redis: options.redis.clone(),
            embedded,
            session_ttl_s: options.session_ttl_s.max(1),
        })
    }

    /// One line for the start-up log: where users, sessions and messages live.
    pub fn describe(&self) -> String {
        let users = match &self.mysql {
            Some(m) => format!("{m:?}"),
            None => "embedded".to_string(),
        };
        let rest = match &self.redis {
            Some(r) => format!("{r:?}"),
            None => "embedded".to_string(),
        };
        format!("users: {users}; sessions and messages: {rest}")
    }

    /// Waits until every configured network backend answers (MySQL: a connection that has
    /// created the schema when missing; Redis: PING), retrying for at most `wait`. Run on a
    /// short-lived runtime at start-up, so a wrong address or password stops the server with a
    /// clear message instead of turning every request into a 503.
    pub async fn check(&self, wait: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + wait;
        let store = self.for_core();
        loop {
            let outcome = store.ping().await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!("store not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(STARTUP_RETRY_MS)).await;
                }
            }
        }
    }

    /// This core's handle. Call it on the core: it opens no connection itself, but the Redis
    /// connection's driver task is spawned on the calling core.
    pub fn for_core(&self) -> Store {
        let users = match (&self.mysql, &self.embedded) {
            (Some(config), _) => Users::Mysql(MysqlStore::new(config.clone())),
            (None, Some(embedded)) => Users::Embedded(embedded.clone()),
            (None, None) => unreachable!("open() keeps an embedded store when MySQL is absent"),
        };
        let streams = match (&self.redis, &self.embedded) {
            (Some(config), _) => Streams::Redis(RedisStore::connect(config.clone())),
            (None, Some(embedded)) => Streams::Embedded(embedded.clone()),
            (None, None) => unreachable!("open() keeps an embedded store when Redis is absent"),
        };
        Store {
            users,
            streams,
            bus: self.redis.clone(),
            session_ttl_s: self.session_ttl_s,
        }
    }

    /// Lets the embedded store finish queued work and checkpoint; call after the cores stopped.
    pub fn close(self) -> Result<(), StoreError> {
        match self.embedded {
            Some(embedded) => embedded.close(),
            None => Ok(()),
        }
    }
}

#[derive(Clone)]
enum Users {
    Mysql(MysqlStore),
    Embedded(EmbeddedStore),
}

#[derive(Clone)]
enum Streams {
    Redis(RedisStore),
    Embedded(EmbeddedStore),
}

/// One core's storage. Cheap to clone; never leaves its core.
#[derive(Clone)]
pub struct Store {
    users: Users,
    streams: Streams,
    /// With Redis, the room streams are the bus between instances (see `bus`).
    bus: Option<RedisConfig>,
    /// How long a new session lives, in seconds (`--session-ttl`).
    session_ttl_s: u64,
}

impl Store {
    /// The Redis whose room streams carry every instance's messages to every instance, when
    /// messages live in Redis (`--redis`); `None` with the embedded store (one instance).
    pub fn bus(&self) -> Option<&RedisConfig> {
        self.bus.as_ref()
    }

    /// Creates a user unless the username or the email is taken (the username is reported when
    /// both are), decided by the data.
    pub async fn create_user(&self, new: NewUser) -> Result<CreateUser, StoreError> {
        match &self.users {
            Users::Mysql(m) => m.create_user(new).await,
            Users::Embedded(e) => e.create_user(new).await,
        }
    }

    /// An error when the users' backend is known to be down right now (MySQL backing off
    /// after a failed connect), so that work whose only use is a users query can be skipped;
    /// `Ok` means only "not known to be down". Costs no I/O.
    pub fn users_known_unreachable(&self) -> Result<(), StoreError> {
        match &self.users {
            Users::Mysql(m) => m.known_unreachable(),
            Users::Embedded(_) => Ok(()),
        }
    }

    /// The id and password hash of the user with this email.
    pub async fn credentials_by_email(
        &self,
        email: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        match &self.users {
            Users::Mysql(m) => m.credentials_by_email(email).await,
            Users::Embedded(e) => e.credentials_by_email(email).await,
        }
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match &self.users {
            Users::Mysql(m) => m.user_by_id(id).await,
            Users::Embedded(e) => e.user_by_id(id).await,
        }
    }

    /// The users among `ids` that exist, by increasing id, each once.
    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let mut users = match &self.users {
            Users::Mysql(m) => m.users_by_ids(ids).await?,
            Users::Embedded(e) => e.users_by_ids(ids).await?,
        };
        users.sort_unstable_by_key(|u| u.id);
        users.dedup_by_key(|u| u.id);
        Ok(users)
    }

    /// Replaces a user's password hash (the upgrade to a stronger scheme at login).
    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: String,
    ) -> Result<(), StoreError> {
        match &self.users {
            Users::Mysql(m) => m.set_password_hash(id, &password_hash).await,
            Users::Embedded(e) => e.set_password_hash(id, password_hash).await,
        }
    }

    /// How long a new session lives, in seconds: the cookie's Max-Age.
    pub fn session_ttl_s(&self) -> u64 {
        self.session_ttl_s
    }

    /// Starts a session for `user_id` that lives [`Store::session_ttl_s`] seconds (by default
    /// [`SESSION_TTL_S`](super::SESSION_TTL_S)) and returns its id.
    pub async fn new_session(&self, user_id: UserId) -> Result<String, StoreError> {
        for _ in 0..SESSION_ID_DRAWS_MAX {
            let sid = draw_session_id().map_err(|detail| StoreError::Unavailable {
                side: self.streams_side(),
                detail,
            })?;
            if self
                .create_session(&sid, user_id, self.session_ttl_s)
                .await?
            {
                return Ok(sid);
            }
        }
        Err(StoreError::Corrupt {
            side: self.streams_side(),
            detail: format!("{SESSION_ID_DRAWS_MAX} random session ids in a row already existed"),
        })
    }

    /// Creates session `sid` unless it exists (`SET NX EX`); false when it did.
    pub async fn create_session(
        &self,
        sid: &str,
        user_id: UserId,
        ttl_s: u64,
    ) -> Result<bool, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.create_session(sid, user_id, ttl_s).await,
            Streams::Embedded(e) => e.create_session(sid, user_id, ttl_s).await,
        }
    }

    /// The user of an unexpired session.
    pub async fn session_user(&self, sid: &str) -> Result<Option<UserId>, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.session_user(sid).await,
            Streams::Embedded(e) => e.session_user(sid).await,
        }
    }

    /// Ends a session; ending an unknown one is not an error.
    pub async fn delete_session(&self, sid: &str) -> Result<(), StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.delete_session(sid).await,
            Streams::Embedded(e) => e.delete_session(sid).await,
        }
    }

    /// Appends messages to a room, all or none, and returns their ids in order once the backend
    /// stored them: only then may they be acknowledged or broadcast.
    pub async fn append_messages(
        &self,
        room: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<MessageId>, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.append_messages(room, &messages).await,
            Streams::Embedded(e) => e.append_messages(room, messages).await,
        }
    }

    /// The newest `count` messages of a room (at most 100), newest first.
    pub async fn newest_messages(
        &self,
        room: &str,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.newest_messages(room, count).await,
            Streams::Embedded(e) => e.newest_messages(room, count).await,
        }
    }

    /// The `count` messages (at most 100) older than `id`, newest first.
    pub async fn messages_before(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.messages_before(room, id, count).await,
            Streams::Embedded(e) => e.messages_before(room, id, count).await,
        }
    }

    /// The `count` messages (at most 100) newer than `id`, oldest first.
    pub async fn messages_after(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match &self.streams {
            Streams::Redis(r) => r.messages_after(room, id, count).await,
            Streams::Embedded(e) => e.messages_after(room, id, count).await,
        }
    }

    /// Succeeds when every backend this core uses answers: a user lookup (MySQL: through a
    /// pooled connection, creating the schema when missing) and a Redis PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.user_by_id(0).await?;
        match &self.streams {
            Streams::Redis(r) => r.command(&[b"PING"]).await.map(drop),
            Streams::Embedded(e) => e.session_user("").await.map(drop),
        }
    }

    fn streams_side(&self) -> Side {
        match self.streams {
            Streams::Redis(_) => Side::Redis,
            Streams::Embedded(_) => Side::Embedded,
        }
    }
}

/// [`SESSION_ID_BYTES`] bytes from the OS CSPRNG in standard base64 with padding.
pub fn draw_session_id() -> Result<String, String> {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a session id: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_look_like_the_reference() {
        let a = draw_session_id().unwrap();
        let b = draw_session_id().unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.ends_with("=="));
        assert_ne!(a, b);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(decoded.len(), SESSION_ID_BYTES);
    }

    /// RELIABILITY.md, "Accounts": 10^6 session tokens, no duplicates, 128 bits from the OS
    /// CSPRNG. All draws go through the real [`draw_session_id`] (`getrandom::fill`, the OS
    /// CSPRNG: getrandom(2) on Linux). The set holds the 24 base64 characters, a bijection of the
    /// 16 bytes, so no draw is decoded for it. Besides the set, each of the 128 bits must be set
    /// in half of the first [`BIT_DRAWS`] draws, ± 0.01 (6 standard deviations at 10^5 draws): a
    /// source that fixed or repeated part of the bytes (64 random bits padded to 16 bytes, say)
    /// would pass the set check but not this one. Debug builds take about 3 s.
    #[test]
    fn a_million_session_ids_are_distinct_and_use_all_128_bits() {
        const DRAWS: usize = 1_000_000;
        const BIT_DRAWS: usize = 100_000;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut seen: std::collections::HashSet<[u8; 24]> =
            std::collections::HashSet::with_capacity(DRAWS);
        let mut ones = [0u32; SESSION_ID_BYTES * 8];
        let mut decoded = [0u8; SESSION_ID_BYTES + 2];
        for i in 0..DRAWS {
            let sid = draw_session_id().expect("the OS CSPRNG answers");
            let chars: [u8; 24] = sid
                .as_bytes()
                .try_into()
                .unwrap_or_else(|_| panic!("not 24 characters: {sid}"));
            assert!(seen.insert(chars), "session id {sid} drawn twice");
            if i < BIT_DRAWS {
                let n = engine
                    .decode_slice(chars, &mut decoded)
                    .expect("standard base64");
                assert_eq!(n, SESSION_ID_BYTES, "{sid}");
                for (bit, count) in ones.iter_mut().enumerate() {
                    *count += u32::from(decoded[bit / 8] >> (bit % 8) & 1);
                }
            }
        }
        assert_eq!(seen.len(), DRAWS);
        for (bit, &n) in ones.iter().enumerate() {
            let share = f64::from(n) / BIT_DRAWS as f64;
            assert!(
                (share - 0.5).abs() < 0.01,
                "bit {bit} set in {share:.4} of {BIT_DRAWS} session ids"
            );
        }
    }
}
