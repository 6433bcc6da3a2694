//! The SQLite side of the embedded store: opening the file, the schema, and one function per
//! request, all on the single connection the storage thread owns.
//!
//! No threads, channels or clock here: the storage thread decides when transactions begin and
//! commit, and passes the time in (`now_ms`). Every value read from disk is checked on the way
//! out; a row that does not fit (a negative id, text where a number belongs) is
//! [`StoreError::Corrupt`], never a panic.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use super::{Page, corrupt, unavailable};
use crate::store::{
    CreateUser, Credentials, MessageId, NewMessage, NewUser, StoreError, StoredMessage, User,
    UserId,
};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "ringchat.sqlite3";
/// The WAL is truncated back to this size after a checkpoint. Without a limit it keeps the
/// size of its largest burst.
const WAL_BYTES_LIMIT: i64 = 64 * 1024 * 1024;
/// Prepared statements kept per connection; above the number of distinct statements below, so
/// none is ever prepared twice.
const STATEMENT_CACHE_MAX: usize = 32;

/// `users` mirrors the reference MySQL schema (shared/spec/compat.md). Usernames and emails
/// compare case-insensitively (`COLLATE NOCASE`), as they do under MySQL's default `_ci`
/// collations, so `Alice` and `alice` are one name on every backend (SQLite folds ASCII only;
/// MySQL also folds accented letters, and its PAD SPACE collations ignore trailing spaces, so
/// `alice ` is `alice` there and a different name here). Messages are keyed by
/// room then id, so every history page is one range scan of the primary key; `WITHOUT ROWID`
/// stores them in that order once instead of in a table plus an index.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at_ms);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    content TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    guest TEXT,
    PRIMARY KEY (room, ms, seq)
) WITHOUT ROWID;
";

/// Databases made before the line port's guests had no `guest` column: added at open.
const MESSAGES_COLUMNS: &str = "SELECT name FROM pragma_table_info('messages')";
const ADD_GUEST_COLUMN: &str = "ALTER TABLE messages ADD COLUMN guest TEXT";

const USERS_TAKEN: &str =
    "SELECT username = ?1, email = ?2 FROM users WHERE username = ?1 OR email = ?2";
const INSERT_USER: &str = "INSERT INTO users (username, email, password) VALUES (?1, ?2, ?3)";
const CREDENTIALS_BY_EMAIL: &str = "SELECT id, password FROM users WHERE email = ?1";
const USER_BY_ID: &str = "SELECT id, username FROM users WHERE id = ?1";
const SET_PASSWORD: &str = "UPDATE users SET password = ?1 WHERE id = ?2";
const SESSION_BY_SID: &str = "SELECT user_id, expires_at_ms FROM sessions WHERE sid = ?1";
const PUT_SESSION: &str =
    "INSERT OR REPLACE INTO sessions (sid, user_id, expires_at_ms) VALUES (?1, ?2, ?3)";
const DELETE_SESSION: &str = "DELETE FROM sessions WHERE sid = ?1";
const SWEEP_SESSIONS: &str = "DELETE FROM sessions WHERE sid IN \
    (SELECT sid FROM sessions WHERE expires_at_ms <= ?1 LIMIT ?2)";
const INSERT_MESSAGE: &str = "INSERT INTO messages \
    (room, ms, seq, user_id, content, timestamp, guest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const NEWEST_MESSAGES: &str = "SELECT ms, seq, user_id, content, timestamp, guest FROM messages \
    WHERE room = ?1 ORDER BY ms DESC, seq DESC LIMIT ?2";
const MESSAGES_BEFORE: &str = "SELECT ms, seq, user_id, content, timestamp, guest FROM messages \
    WHERE room = ?1 AND (ms, seq) < (?2, ?3) ORDER BY ms DESC, seq DESC LIMIT ?4";
const MESSAGES_AFTER: &str = "SELECT ms, seq, user_id, content, timestamp, guest FROM messages \
    WHERE room = ?1 AND (ms, seq) > (?2, ?3) ORDER BY ms ASC, seq ASC LIMIT ?4";
const COUNT_ROOM: &str = "SELECT count(*) FROM messages WHERE room = ?1";
/// Deletes a room's oldest `?2 + 1` messages: everything up to the one at offset `?2` from the
/// oldest.
const TRIM_ROOM: &str = "DELETE FROM messages WHERE room = ?1 AND (ms, seq) <= \
    (SELECT ms, seq FROM messages WHERE room = ?1 ORDER BY ms ASC, seq ASC LIMIT 1 OFFSET ?2)";
const FIRST_ROOM: &str = "SELECT room FROM messages ORDER BY room LIMIT 1";
const NEXT_ROOM: &str = "SELECT room FROM messages WHERE room > ?1 ORDER BY room LIMIT 1";
const NEWEST_IN_ROOM: &str =
    "SELECT ms, seq FROM messages WHERE room = ?1 ORDER BY ms DESC, seq DESC LIMIT 1";

/// Rooms whose row count is remembered at most (for `--room-retention`); past it the counts
/// are forgotten and taken again from the table when needed.
const ROOMS_COUNTED_MAX: usize = 4096;

/// The greatest id SQLite's signed 64-bit integers can hold.
const ID_STORABLE_MAX: MessageId = MessageId {
    ms: i64::MAX as u64,
    seq: i64::MAX as u64,
};

/// The connection and what the store keeps in memory beside it.
pub(super) struct Db {
    conn: Connection,
    /// The greatest message id handed out so far; the next is `last.next_after(timestamp)`.
    last: MessageId,
    /// Messages kept per room (`--room-retention`); `None` keeps them all.
    retention: Option<u64>,
    /// Rows per room as of the open transaction, for the rooms appended to since they were last
    /// counted; emptied on rollback (counted again from the table when next needed) and when
    /// it would pass [`ROOMS_COUNTED_MAX`].
    room_rows: HashMap<String, u64>,
}

impl Db {
    /// Creates `dir` and the database when missing, sets the journal up, creates the schema and
    /// finds the greatest stored message id.
    pub(super) fn open(dir: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(sql)?;
        // Fail at once when another process holds the database rather than wait for it.
        conn.busy_timeout(Duration::ZERO).map_err(sql)?;
        // Before WAL is entered, so no shared-memory index is created and the lock taken by the
        // first write below is held until the connection closes (see the module docs).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(sql)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| in_use(e, &path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(format!(
                "{} stays in journal mode {mode}, not WAL",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "journal_size_limit", WAL_BYTES_LIMIT)
            .map_err(sql)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_MAX);
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(|e| in_use(e, &path))?;
        let has_guest = conn
            .prepare(MESSAGES_COLUMNS)
            .and_then(|mut s| {
                let names = s.query_map([], |row| row.get::<_, String>(0))?;
                names.collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql)?
            .iter()
            .any(|c| c == "guest");
        if !has_guest {
            conn.execute_batch(ADD_GUEST_COLUMN).map_err(sql)?;
        }
        let last = newest_stored_id(&conn)?;
        Ok(Db {
            conn,
            last,
            retention: None,
            room_rows: HashMap::new(),
        })
    }

    /// Starts the transaction of a batch.
    pub(super) fn begin(&self) -> Result<(), StoreError> {
        self.run("BEGIN IMMEDIATE")
    }

    /// Commits the batch; nothing of it may be acknowledged before this returned `Ok`.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        self.run("COMMIT")
    }

    /// Keeps at most `keep` messages per room from now on (the oldest go first); `None` keeps
    /// them all.
    pub(super) fn set_retention(&mut self, keep: Option<u64>) {
        self.retention = keep.filter(|&k| k > 0);
    }

    /// Abandons the batch's transaction, if SQLite has not already done so.
    pub(super) fn rollback(&mut self) {
        self.room_rows.clear();
        if !self.conn.is_autocommit()
            && let Err(e) = self.run("ROLLBACK")
        {
            tracing::warn!("embedded store: rollback failed: {e}");
        }
    }

    /// False once SQLite rolled the batch's transaction back on its own (after an I/O error or a
    /// full disk): statements would then commit one by one, so the batch must stop.
    pub(super) fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs one request inside a savepoint, so its failure undoes its own writes and leaves the
    /// rest of the batch to commit.
    pub(super) fn request<T>(
        &mut self,
        f: impl FnOnce(&mut Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run("SAVEPOINT request")?;
        let result = f(self);
        if result.is_err() && self.in_transaction() {
            self.run("ROLLBACK TO request")?;
        }
        if self.in_transaction() {
            self.run("RELEASE request")?;
        }
        result
    }

    fn run(&self, statement: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(statement)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(sql)
    }

    pub(super) fn create_user(&mut self, new: &NewUser) -> Result<CreateUser, StoreError> {
        let (mut username_taken, mut email_taken) = (false, false);
        {
            let mut taken = self.conn.prepare_cached(USERS_TAKEN).map_err(sql)?;
            let mut rows = taken.query(params![new.username, new.email]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                username_taken |= row.get::<_, bool>(0).map_err(sql)?;
                email_taken |= row.get::<_, bool>(1).map_err(sql)?;
            }
        }
        if username_taken {
            return Ok(CreateUser::UsernameExists);
        }
        if email_taken {
            return Ok(CreateUser::EmailExists);
        }
        self.conn
            .prepare_cached(INSERT_USER)
            .and_then(|mut s| s.execute(params![new.username, new.email, new.password_hash]))
            .map_err(sql)?;
        Ok(CreateUser::Created(self.conn.last_insert_rowid()))
    }

    pub(super) fn credentials_by_email(
        &mut self,
        email: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        self.conn
            .prepare_cached(CREDENTIALS_BY_EMAIL)
            .and_then(|mut s| {
                s.query_row([email], |row| {
                    Ok(Credentials {
                        id: row.get(0)?,
                        password_hash: row.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(sql)
    }

    pub(super) fn user_by_id(&mut self, id: UserId) -> Result<Option<User>, StoreError> {
        self.conn
            .prepare_cached(USER_BY_ID)
            .and_then(|mut s| s.query_row([id], user_from_row).optional())
            .map_err(sql)
    }

    /// `ids` is sorted and without duplicates (the handle sees to it). One indexed lookup each:
    /// in-process, that costs what an `IN (...)` list would.
    pub(super) fn users_by_ids(&mut self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::with_capacity(ids.len());
        for &id in ids {
            users.extend(self.user_by_id(id)?);
        }
        Ok(users)
    }

    pub(super) fn set_password_hash(
        &mut self,
        id: UserId,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(SET_PASSWORD)
            .and_then(|mut s| s.execute(params![password_hash, id]))
            .map(drop)
            .map_err(sql)
    }

    /// `SET sid user_id NX EX ttl_s`: an expired session with the same sid is replaced.
    pub(super) fn create_session(
        &mut self,
        sid: &str,
        user_id: UserId,
        ttl_s: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        if self.live_session(sid, now_ms)?.is_some() {
            return Ok(false);
        }
        let expires_at_ms = now_ms.saturating_add(ttl_s.saturating_mul(1000));
        self.conn
            .prepare_cached(PUT_SESSION)
            .and_then(|mut s| s.execute(params![sid, user_id, stored_i64(expires_at_ms)]))
            .map_err(sql)?;
        Ok(true)
    }

    /// The user of an unexpired session; an expired one is deleted on the way.
    pub(super) fn session_user(
        &mut self,
        sid: &str,
        now_ms: u64,
    ) -> Result<Option<UserId>, StoreError> {
        self.live_session(sid, now_ms)
    }

    fn live_session(&mut self, sid: &str, now_ms: u64) -> Result<Option<UserId>, StoreError> {
        let found = self
            .conn
            .prepare_cached(SESSION_BY_SID)
            .and_then(|mut s| {
                s.query_row([sid], |row| {
                    Ok((row.get::<_, UserId>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(sql)?;
        match found {
            None => Ok(None),
            Some((user_id, expires_at_ms)) if expires_at_ms > stored_i64(now_ms) => {
                Ok(Some(user_id))
            }
            Some(_) => {
                self.delete_session(sid)?;
                Ok(None)
            }
        }
    }

    pub(super) fn delete_session(&mut self, sid: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(DELETE_SESSION)
            .and_then(|mut s| s.execute([sid]))
            .map(drop)
            .map_err(sql)
    }

    /// Deletes at most `rows_max` sessions expired at `now_ms`; returns how many it deleted.
    pub(super) fn sweep_sessions(
        &mut self,
        now_ms: u64,
        rows_max: usize,
    ) -> Result<usize, StoreError> {
        let rows_max = i64::try_from(rows_max).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(SWEEP_SESSIONS)
            .and_then(|mut s| s.execute(params![stored_i64(now_ms), rows_max]))
            .map_err(sql)
    }

    /// Session rows, expired or not (tests observe the sweep through this).
    pub(super) fn session_rows(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
            .map_err(sql)?;
        u64::try_from(n).map_err(|_| corrupt("negative row count"))
    }

    /// Gives each message the next id and inserts it. The ids are only final once the batch
    /// commits; an id handed out to a batch that then failed is never reused, which keeps `last`
    /// a plain counter.
    pub(super) fn append_messages(
        &mut self,
        room: &str,
        messages: &[NewMessage],
    ) -> Result<Vec<MessageId>, StoreError> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut insert = self.conn.prepare_cached(INSERT_MESSAGE).map_err(sql)?;
        for message in messages {
            let id = self.last.next_after(message.timestamp_ms);
            if id > ID_STORABLE_MAX {
                return Err(corrupt(format!("message id {id} does not fit in SQLite")));
            }
            let timestamp = i64::try_from(message.timestamp_ms)
                .map_err(|_| corrupt(format!("timestamp {} too large", message.timestamp_ms)))?;
            insert
                .execute(params![
                    room,
                    stored_i64(id.ms),
                    stored_i64(id.seq),
                    message.user_id,
                    message.content,
                    timestamp,
                    message.guest,
                ])
                .map_err(sql)?;
            self.last = id;
            ids.push(id);
        }
        drop(insert);
        if let Some(keep) = self.retention {
            self.trim_room(room, ids.len() as u64, keep)?;
        }
        Ok(ids)
    }

    /// After `added` rows went into `room`, deletes its oldest rows beyond `keep`, in the same
    /// transaction: a room never holds more than `keep` messages once a batch committed. The
    /// delete walks only the rows it removes (the primary key is in id order per room).
    fn trim_room(&mut self, room: &str, added: u64, keep: u64) -> Result<(), StoreError> {
        let rows = match self.room_rows.get(room) {
            Some(&rows) => rows + added,
            None => {
                let n: i64 = self
                    .conn
                    .prepare_cached(COUNT_ROOM)
                    .and_then(|mut s| s.query_row(params![room], |row| row.get(0)))
                    .map_err(sql)?;
                u64::try_from(n).map_err(|_| corrupt("negative row count"))?
            }
        };
        let rows = if rows > keep {
            let excess = i64::try_from(rows - keep).unwrap_or(i64::MAX);
            let deleted = self
                .conn
                .prepare_cached(TRIM_ROOM)
                .and_then(|mut s| s.execute(params![room, excess - 1]))
                .map_err(sql)?;
            rows - deleted as u64
        } else {
            rows
        };
        if self.room_rows.len() >= ROOMS_COUNTED_MAX && !self.room_rows.contains_key(room) {
            self.room_rows.clear();
        }
        self.room_rows.insert(room.to_string(), rows);
        Ok(())
    }

    /// One page of a room's history; `count` is already capped by the handle.
    pub(super) fn messages(
        &mut self,
        room: &str,
        page: Page,
        count: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let mut out = Vec::with_capacity(count);
        if count == 0 {
            return Ok(out);
        }
        let (sql_text, id) = match page {
            Page::Newest => (NEWEST_MESSAGES, None),
            // Every stored id is below one SQLite cannot hold: all of them are older.
            Page::Before(id) if id > ID_STORABLE_MAX => (NEWEST_MESSAGES, None),
            // No stored seq exceeds i64::MAX, so "before (ms, seq)" is then "before (ms+1, 0)";
            // ms + 1 cannot overflow, since id <= ID_STORABLE_MAX.
            Page::Before(id) if id.seq > ID_STORABLE_MAX.seq => (
                MESSAGES_BEFORE,
                Some(MessageId {
                    ms: id.ms + 1,
                    seq: 0,
                }),
            ),
            Page::Before(id) => (MESSAGES_BEFORE, Some(id)),
            Page::After(id) if id >= ID_STORABLE_MAX => return Ok(out),
            // Saturating seq at i64::MAX below is exact: no stored seq is greater.
            Page::After(id) => (MESSAGES_AFTER, Some(id)),
        };
        let mut statement = self.conn.prepare_cached(sql_text).map_err(sql)?;
        let mut rows = match id {
            None => statement.query(params![room, limit]),
            Some(id) => {
                statement.query(params![room, stored_i64(id.ms), stored_i64(id.seq), limit])
            }
        }
        .map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            out.push(message_from_row(row)?);
        }
        Ok(out)
    }

    /// Copies the WAL into the database and truncates it, so the next open has nothing to
    /// replay; then closes the connection.
    pub(super) fn close(self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(sql)
            .and_then(|busy| match busy {
                0 => Ok(()),
                _ => Err(unavailable("the final checkpoint could not complete")),
            })?;
        self.conn.close().map_err(|(_, e)| sql(e))
    }
}

/// The greatest stored id, found with one index probe per room (rooms are few; messages are
/// many), so opening does not scan the table.
fn newest_stored_id(conn: &Connection) -> Result<MessageId, StoreError> {
    let mut last = MessageId { ms: 0, seq: 0 };
    let mut room: Option<String> = conn
        .query_row(FIRST_ROOM, [], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    while let Some(current) = room {
        let (ms, seq): (i64, i64) = conn
            .query_row(NEWEST_IN_ROOM, [&current], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sql)?;
        last = last.max(id_from_stored(ms, seq)?);
        room = conn
            .query_row(NEXT_ROOM, [&current], |row| row.get(0))
            .optional()
            .map_err(sql)?;
    }
    Ok(last)
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
    })
}

fn message_from_row(row: &Row<'_>) -> Result<StoredMessage, StoreError> {
    let ms: i64 = row.get(0).map_err(sql)?;
    let seq: i64 = row.get(1).map_err(sql)?;
    let timestamp: i64 = row.get(4).map_err(sql)?;
    Ok(StoredMessage {
        id: id_from_stored(ms, seq)?,
        user_id: row.get(2).map_err(sql)?,
        content: row.get(3).map_err(sql)?,
        timestamp_ms: u64::try_from(timestamp)
            .map_err(|_| corrupt(format!("negative message timestamp {timestamp}")))?,
        guest: row.get(5).map_err(sql)?,
    })
}

fn id_from_stored(ms: i64, seq: i64) -> Result<MessageId, StoreError> {
    match (u64::try_from(ms), u64::try_from(seq)) {
        (Ok(ms), Ok(seq)) => Ok(MessageId { ms, seq }),
        _ => Err(corrupt(format!("negative message id {ms}-{seq}"))),
    }
}

/// A time or id part as SQLite stores it. Callers keep values within `i64` (ids are checked
/// against [`ID_STORABLE_MAX`]); clocks past the year 292 million saturate.
fn stored_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Which kind of failure a SQLite error is: data that does not fit is corrupt; a full or failing
/// disk, a lock held elsewhere, or anything else from the engine means try later.
fn sql(error: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &error {
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..)
        | E::InvalidColumnIndex(..) => corrupt(error.to_string()),
        E::SqliteFailure(e, _)
            if matches!(e.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            corrupt(error.to_string())
        }
        _ => unavailable(error.to_string()),
    }
}

/// Errors at open: a busy database means another process has it.
fn in_use(error: rusqlite::Error, path: &Path) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            unavailable(format!("{} is in use by another process", path.display()))
        }
        _ => sql(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str, timestamp_ms: u64) -> NewMessage {
        NewMessage {
            content: content.into(),
            user_id: 1,
            timestamp_ms,
            guest: None,
        }
    }

    #[test]
    fn opens_in_wal_with_full_sync_and_an_exclusive_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let pragma = |name: &str| -> String {
            db.conn
                .query_row(&format!("PRAGMA {name}"), [], |row| {
                    row.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        // 2 is FULL.
        assert_eq!(pragma("synchronous"), "Integer(2)");
        assert_eq!(pragma("locking_mode"), r#"Text("exclusive")"#);
        db.close().unwrap();
    }

    #[test]
    fn a_failed_request_is_undone_alone_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path()).unwrap();
        db.begin().unwrap();
        let first = db
            .request(|db| db.append_messages("r", &[message("kept", 10)]))
            .unwrap();
        // The second message's id cannot be stored: the whole request is undone, the first
        // request and the transaction are not.
        let failed = db.request(|db| {
            db.append_messages("r", &[message("undone", 11), message("bad", u64::MAX)])
        });
        assert!(
            matches!(failed, Err(StoreError::Corrupt { .. })),
            "{failed:?}"
        );
        assert!(db.in_transaction());
        let after = db
            .request(|db| db.append_messages("r", &[message("kept too", 11)]))
            .unwrap();
        db.commit().unwrap();
        let stored = db.messages("r", Page::Newest, 10).unwrap();
        let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["kept too", "kept"]);
        assert_eq!(first[0], MessageId { ms: 10, seq: 0 });
        // The id the undone message had is not handed out again.
        assert_eq!(after[0], MessageId { ms: 11, seq: 1 });
        db.close().unwrap();
    }

    #[test]
    fn sqlite_errors_say_whether_to_retry() {
        use rusqlite::ffi;
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        assert!(matches!(
            sql(failure(ffi::SQLITE_FULL)),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            sql(failure(ffi::SQLITE_IOERR)),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            sql(failure(ffi::SQLITE_CORRUPT)),
            StoreError::Corrupt { .. }
        ));
        let wrong_type =
            rusqlite::Error::InvalidColumnType(0, "content".into(), rusqlite::types::Type::Blob);
        assert!(matches!(sql(wrong_type), StoreError::Corrupt { .. }));
        assert_eq!(id_from_stored(5, 2), Ok(MessageId { ms: 5, seq: 2 }));
        assert!(id_from_stored(-1, 0).is_err() && id_from_stored(0, -1).is_err());
    }
}
