//! The embedded default store: users, sessions and messages in one SQLite database under the
//! data directory, used when neither Redis nor MySQL is configured.
//!
//! **No core ever touches the disk.** One dedicated storage thread owns the only connection to
//! `<dir>/ringchat.sqlite3`; cores hold cheap clones of an [`EmbeddedStore`] handle and send it
//! requests over a bounded channel. A call queues its request at once and returns a [`Pending`]
//! future that resolves when the storage thread replies (on a `tokio::sync::oneshot`, so the
//! core's task waits without blocking its thread). When the queue is full a call fails at once
//! with [`StoreError::Unavailable`] rather than blocking the core; so does every call once the
//! storage thread is gone.
//!
//! **A message is acknowledged only after the transaction holding it committed.** The storage
//! thread waits for a request, then drains whatever else is queued (up to
//! [`GROUP_COMMIT_REQUESTS_MAX`] requests and about [`GROUP_COMMIT_MESSAGES_MAX`] messages),
//! runs the whole batch in one transaction, commits, and only then replies to any of it: group
//! commit, so one fsync covers every append that arrived together. Reads of the batch are
//! answered in the same pass, after the same commit.
//!
//! Durability: WAL journal with `synchronous=FULL`, which fsyncs the WAL at every commit. The
//! cheaper `NORMAL` survives a kill -9 but may lose the last commits on power loss; with group
//! commit the fsync is paid once per batch rather than once per message, so FULL costs little and
//! an acknowledged message survives anything short of losing the disk. The database is opened
//! with `locking_mode=EXCLUSIVE`: ids are handed out from memory, so a second process writing the
//! same file would break their order, and it is refused at open instead.
//!
//! Message ids have the `<ms>-<seq>` form and order of Redis stream ids: the store remembers the
//! last id it handed out (at open, the greatest stored) and gives each new message
//! `last.next_after(message.timestamp_ms)`, so ids strictly increase, across restarts too, even
//! when the clock steps back. Sessions expire like Redis keys with a TTL: an expired session reads
//! as absent and is deleted when looked up, and a periodic sweep on the storage thread deletes
//! the others, at most [`SESSION_SWEEP_ROWS_MAX`] per pass.
//!
//! Dropping the last handle lets the storage thread finish the queued work, checkpoint the WAL
//! and exit; [`EmbeddedStore::close`] does the same explicitly and waits for it, and
//! [`EmbeddedStore::waiter`] gives a way to wait after the handles are gone.
//!
//! Not here: several processes on one database, replication, backups, schema migrations beyond
//! creating the tables when missing, MySQL's folding of non-ASCII letters (usernames and emails
//! compare case-insensitively for ASCII only), validation of field lengths (the server validates before calling).

mod db;
mod thread;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{
    CreateUser, Credentials, HISTORY_PAGE_MESSAGES_MAX, MessageId, NewMessage, NewUser, Side,
    StoreError, StoredMessage, User, UserId,
};

pub use db::DATABASE_FILE;

/// Requests waiting for the storage thread at most (all cores together). One more fails at once
/// with [`StoreError::Unavailable`]: the disk is not keeping up, and callers answer 503.
pub const EMBEDDED_QUEUE_REQUESTS_MAX: usize = 1024;
/// Requests run in one transaction at most (one group commit).
pub const GROUP_COMMIT_REQUESTS_MAX: usize = 256;
/// A batch stops taking requests once it holds this many messages to append (the request that
/// crosses the mark still joins it), so one commit stays short.
pub const GROUP_COMMIT_MESSAGES_MAX: usize = 4096;
/// Messages one [`EmbeddedStore::append_messages`] call may carry; more is refused at once.
pub const APPEND_MESSAGES_MAX: usize = 1024;
/// Ids one [`EmbeddedStore::users_by_ids`] call may carry (after removing duplicates); more is
/// refused at once.
pub const USERS_BY_IDS_MAX: usize = 4096;
/// How often the storage thread deletes expired sessions.
pub const SESSION_SWEEP_INTERVAL_MS: u64 = 60_000;
/// Expired sessions deleted per sweep at most; when a sweep hits it, the next one runs as soon as
/// the queue is idle, so a backlog is cleared in bounded steps between batches.
pub const SESSION_SWEEP_ROWS_MAX: usize = 1000;

/// Settings of an [`EmbeddedStore`]; [`Default`] gives the named limits above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Capacity of the request queue; at least 1.
    pub queue_requests_max: usize,
    /// Period of the expired-session sweep.
    pub session_sweep_interval_ms: u64,
    /// Messages kept per room: each append deletes the room's oldest messages beyond it, in
    /// the same transaction. `None` keeps them all.
    pub room_retention: Option<u64>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            queue_requests_max: EMBEDDED_QUEUE_REQUESTS_MAX,
            session_sweep_interval_ms: SESSION_SWEEP_INTERVAL_MS,
            room_retention: None,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Which page of a room's history a read asks for.
#[derive(Debug, Clone, Copy)]
enum Page {
    /// The newest messages, newest first.
    Newest,
    /// Messages older than the id (exclusive), newest first.
    Before(MessageId),
    /// Messages newer than the id (exclusive), oldest first.
    After(MessageId),
}

/// One unit of work for the storage thread, with the channel its answer goes back on.
enum Op {
    CreateUser {
        new: NewUser,
        reply: Reply<CreateUser>,
    },
    CredentialsByEmail {
        email: String,
        reply: Reply<Option<Credentials>>,
    },
    UserById {
        id: UserId,
        reply: Reply<Option<User>>,
    },
    UsersByIds {
        ids: Vec<UserId>,
        reply: Reply<Vec<User>>,
    },
    SetPasswordHash {
        id: UserId,
        password_hash: String,
        reply: Reply<()>,
    },
    CreateSession {
        sid: String,
        user_id: UserId,
        ttl_s: u64,
        reply: Reply<bool>,
    },
    SessionUser {
        sid: String,
        reply: Reply<Option<UserId>>,
    },
    DeleteSession {
        sid: String,
        reply: Reply<()>,
    },
    AppendMessages {
        room: String,
        messages: Vec<NewMessage>,
        reply: Reply<Vec<MessageId>>,
    },
    Messages {
        room: String,
        page: Page,
        count: usize,
        reply: Reply<Vec<StoredMessage>>,
    },
    SessionRows {
        reply: Reply<u64>,
    },
}

enum Request {
    Op(Op),
    /// Test hook: the storage thread reports on `held`, then blocks until `release` is dropped.
    Hold {
        held: Reply<()>,
        release: mpsc::Receiver<()>,
    },
    /// Finish the current batch, then stop.
    Close,
}

/// How a storage thread ended: `Ok` after a clean checkpoint.
type ThreadResult = Result<(), StoreError>;

/// A handle to the embedded store. Cheap to clone; each core keeps its own clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    requests: SyncSender<Request>,
    /// Taken once, by whoever waits for the thread to exit. Only shutdown touches this mutex;
    /// no core locks it while serving.
    thread: Arc<Mutex<Option<JoinHandle<ThreadResult>>>>,
}

impl EmbeddedStore {
    /// Opens (creating when missing) `dir/ringchat.sqlite3` with the default options and starts
    /// the storage thread. Blocks on the disk: call it at start-up, not from a core's task.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::with_options(dir, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with explicit settings.
    pub fn with_options(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        let mut db = db::Db::open(dir)?;
        db.set_retention(options.room_retention);
        let (requests, queue) = mpsc::sync_channel(options.queue_requests_max.max(1));
        let thread = std::thread::Builder::new()
            .name("ringchat-store".into())
            .spawn(move || thread::run(db, queue, options))
            .map_err(|e| unavailable(format!("cannot start the storage thread: {e}")))?;
        Ok(EmbeddedStore {
            requests,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues `make(reply)`; refused at once when the queue is full or the thread is gone.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Pending<T> {
        let (reply, answer) = oneshot::channel();
        self.queue(Request::Op(make(reply)), answer)
    }

    fn queue<T>(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Pending<T> {
        match self.requests.try_send(request) {
            Ok(()) => Pending::queued(answer),
            Err(TrySendError::Full(_)) => {
                Pending::refused(unavailable("the storage queue is full"))
            }
            Err(TrySendError::Disconnected(_)) => Pending::refused(stopped()),
        }
    }

    /// Creates a user unless the username or the email is taken, decided by looking at the data
    /// in the same transaction as the insert (username first when both are).
    pub fn create_user(&self, new: NewUser) -> Pending<CreateUser> {
        self.call(|reply| Op::CreateUser { new, reply })
    }

    /// The id and password hash of the user with this email.
    pub fn credentials_by_email(&self, email: &str) -> Pending<Option<Credentials>> {
        let email = email.to_string();
        self.call(|reply| Op::CredentialsByEmail { email, reply })
    }

    pub fn user_by_id(&self, id: UserId) -> Pending<Option<User>> {
        self.call(|reply| Op::UserById { id, reply })
    }

    /// The users among `ids` that exist, by increasing id, each once. At most
    /// [`USERS_BY_IDS_MAX`] distinct ids.
    pub fn users_by_ids(&self, ids: &[UserId]) -> Pending<Vec<User>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > USERS_BY_IDS_MAX {
            return Pending::refused(unavailable(format!(
                "{} ids in one lookup, more than {USERS_BY_IDS_MAX}",
                ids.len()
            )));
        }
        self.call(|reply| Op::UsersByIds { ids, reply })
    }

    /// Replaces a user's password hash (the upgrade to a stronger scheme at login). An unknown
    /// id changes nothing.
    pub fn set_password_hash(&self, id: UserId, password_hash: String) -> Pending<()> {
        self.call(|reply| Op::SetPasswordHash {
            id,
            password_hash,
            reply,
        })
    }

    /// Creates a session that expires `ttl_s` seconds from now, like `SET NX EX`: false when the
    /// sid exists and has not expired (the caller draws another).
    pub fn create_session(&self, sid: &str, user_id: UserId, ttl_s: u64) -> Pending<bool> {
        let sid = sid.to_string();
        self.call(|reply| Op::CreateSession {
            sid,
            user_id,
            ttl_s,
            reply,
        })
    }

    /// The user of an unexpired session; an expired one reads as `None` and is deleted.
    pub fn session_user(&self, sid: &str) -> Pending<Option<UserId>> {
        let sid = sid.to_string();
        self.call(|reply| Op::SessionUser { sid, reply })
    }

    /// Deletes a session; deleting an unknown one is not an error.
    pub fn delete_session(&self, sid: &str) -> Pending<()> {
        let sid = sid.to_string();
        self.call(|reply| Op::DeleteSession { sid, reply })
    }

    /// Appends messages to a room in order and returns their ids once the transaction holding
    /// them committed: all of them are stored, or (on an error) none. At most
    /// [`APPEND_MESSAGES_MAX`] messages per call.
    pub fn append_messages(
        &self,
        room: &str,
        messages: Vec<NewMessage>,
    ) -> Pending<Vec<MessageId>> {
        if messages.len() > APPEND_MESSAGES_MAX {
            return Pending::refused(unavailable(format!(
                "{} messages in one append, more than {APPEND_MESSAGES_MAX}",
                messages.len()
            )));
        }
        let room = room.to_string();
        self.call(|reply| Op::AppendMessages {
            room,
            messages,
            reply,
        })
    }

    /// The newest `count` messages of a room (at most [`HISTORY_PAGE_MESSAGES_MAX`]), newest
    /// first.
    pub fn newest_messages(&self, room: &str, count: usize) -> Pending<Vec<StoredMessage>> {
        self.messages(room, Page::Newest, count)
    }

    /// The `count` messages (at most [`HISTORY_PAGE_MESSAGES_MAX`]) older than `id`, newest
    /// first; `id` itself is not included (`XREVRANGE room (id - COUNT count`).
    pub fn messages_before(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Pending<Vec<StoredMessage>> {
        self.messages(room, Page::Before(id), count)
    }

    /// The `count` messages (at most [`HISTORY_PAGE_MESSAGES_MAX`]) newer than `id`, oldest
    /// first; `id` itself is not included (`XRANGE room (id + COUNT count`).
    pub fn messages_after(
        &self,
        room: &str,
        id: MessageId,
        count: usize,
    ) -> Pending<Vec<StoredMessage>> {
        self.messages(room, Page::After(id), count)
    }

    fn messages(&self, room: &str, page: Page, count: usize) -> Pending<Vec<StoredMessage>> {
        let room = room.to_string();
        let count = count.min(HISTORY_PAGE_MESSAGES_MAX);
        self.call(|reply| Op::Messages {
            room,
            page,
            count,
            reply,
        })
    }

    /// Session rows on disk, expired or not, to observe the sweep. Tests only.
    #[doc(hidden)]
    pub fn session_rows_for_test(&self) -> Pending<u64> {
        self.call(|reply| Op::SessionRows { reply })
    }

    /// Stalls the storage thread, to fill its queue. The future resolves once the thread is
    /// stalled; it resumes when the returned guard is dropped. Tests only.
    #[doc(hidden)]
    pub fn hold_for_test(&self) -> (Pending<()>, HoldGuard) {
        let (held, answer) = oneshot::channel();
        let (guard, release) = mpsc::channel();
        let pending = self.queue(Request::Hold { held, release }, answer);
        (pending, HoldGuard { _release: guard })
    }

    /// Something to wait on for the storage thread's exit once the handles are gone.
    pub fn waiter(&self) -> StorageWaiter {
        StorageWaiter {
            thread: Arc::clone(&self.thread),
        }
    }

    /// Stops the storage thread after the batch it is running and the requests queued before
    /// this call, checkpoints the WAL and waits for the thread to exit. Later calls through any
    /// clone fail with [`StoreError::Unavailable`]. Blocks (waits for room in the queue, then for
    /// the thread): call it at shutdown, not from a core's task.
    pub fn close(self) -> Result<(), StoreError> {
        let waiter = self.waiter();
        // A thread already gone refuses the request; `join` then reports how it ended.
        let _ = self.requests.send(Request::Close);
        drop(self);
        waiter.join()
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// Waits for the storage thread to exit: after [`EmbeddedStore::close`], or once every handle is
/// dropped and the queued work is done.
pub struct StorageWaiter {
    thread: Arc<Mutex<Option<JoinHandle<ThreadResult>>>>,
}

impl StorageWaiter {
    /// Blocks until the thread exited and reports how it ended (an error when the final
    /// checkpoint failed). `Ok` at once when another caller already waited for it.
    pub fn join(self) -> Result<(), StoreError> {
        // A poisoned lock only means another joiner panicked; the handle inside is still whole.
        let handle = match self.thread.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match handle {
            None => Ok(()),
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(unavailable("the storage thread panicked"))),
        }
    }
}

/// Keeps the storage thread stalled while alive (see [`EmbeddedStore::hold_for_test`]).
#[doc(hidden)]
pub struct HoldGuard {
    _release: mpsc::Sender<()>,
}

/// The answer to one request: a future that resolves once the storage thread replied. The
/// request was queued (or refused) when the method returned, not when this is first polled;
/// dropping it does not cancel the work, only the wait.
#[must_use = "the request runs anyway; await it to learn the outcome"]
pub struct Pending<T>(PendingState<T>);

enum PendingState<T> {
    Queued(oneshot::Receiver<Result<T, StoreError>>),
    /// Refused before queueing; `None` once the error was returned.
    Refused(Option<StoreError>),
}

impl<T> Pending<T> {
    fn queued(answer: oneshot::Receiver<Result<T, StoreError>>) -> Pending<T> {
        Pending(PendingState::Queued(answer))
    }

    fn refused(error: StoreError) -> Pending<T> {
        Pending(PendingState::Refused(Some(error)))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            PendingState::Queued(answer) => Pin::new(answer)
                .poll(cx)
                .map(|answer| answer.unwrap_or_else(|_| Err(stopped()))),
            PendingState::Refused(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| unavailable("polled after it completed")))),
        }
    }
}

fn unavailable(detail: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        side: Side::Embedded,
        detail: detail.into(),
    }
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        side: Side::Embedded,
        detail: detail.into(),
    }
}

/// The storage thread is gone (closed, or it failed) and answered nothing.
fn stopped() -> StoreError {
    unavailable("the storage thread has stopped")
}
