//! The embedded store through its public, async API, on a current-thread runtime like a core's:
//! users, sessions with expiry and the sweep, message ids and history paging, reopening, the
//! bounded queue, corrupt rows, and durability under kill -9.
//!
//! The kill -9 test re-executes this test binary as a child that runs `kill9_appender` with
//! `RINGCHAT_KILL9_DIR` set: it appends as fast as it can and prints every acknowledged id; the
//! parent kills it mid-flight and checks the reopened store against what was acknowledged. Run
//! without that variable, `kill9_appender` checks the same appender on a short, bounded run.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringchat::store::embedded::{
    APPEND_MESSAGES_MAX, DATABASE_FILE, EmbeddedOptions, EmbeddedStore,
};
use ringchat::store::{
    CreateUser, HISTORY_PAGE_MESSAGES_MAX, MessageId, NewMessage, NewUser, Side, StoreError,
    StoredMessage, User,
};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

fn new_user(username: &str, email: &str) -> NewUser {
    NewUser {
        username: username.into(),
        email: email.into(),
        password_hash: format!("hash-of-{username}"),
    }
}

fn message(content: &str, user_id: i64, timestamp_ms: u64) -> NewMessage {
    NewMessage {
        content: content.into(),
        user_id,
        timestamp_ms,
        guest: None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn is_unavailable<T>(result: &Result<T, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Unavailable {
            side: Side::Embedded,
            ..
        })
    )
}

/// Polls `check` every 20 ms until it holds; fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of a room, oldest first, read page by page with `messages_after`.
async fn all_messages(store: &EmbeddedStore, room: &str) -> Vec<StoredMessage> {
    let mut out: Vec<StoredMessage> = Vec::new();
    let mut from = MessageId { ms: 0, seq: 0 };
    loop {
        let page = store
            .messages_after(room, from, HISTORY_PAGE_MESSAGES_MAX)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        from = last.id;
        out.extend(page);
    }
    out
}

#[test]
fn users_create_find_and_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        let Ok(CreateUser::Created(alice)) = store.create_user(new_user("alice", "a@x.io")).await
        else {
            panic!("alice not created")
        };
        let Ok(CreateUser::Created(bob)) = store.create_user(new_user("bob", "b@x.io")).await
        else {
            panic!("bob not created")
        };
        assert!(bob > alice);

        // Duplicates are decided by the data; the username wins when both are taken.
        let dup = |u: &str, e: &str| store.create_user(new_user(u, e));
        assert_eq!(
            dup("alice", "new@x.io").await,
            Ok(CreateUser::UsernameExists)
        );
        assert_eq!(dup("carol", "a@x.io").await, Ok(CreateUser::EmailExists));
        assert_eq!(dup("alice", "a@x.io").await, Ok(CreateUser::UsernameExists));
        // Both taken, by two different users.
        assert_eq!(dup("alice", "b@x.io").await, Ok(CreateUser::UsernameExists));
        assert_eq!(dup("bob", "a@x.io").await, Ok(CreateUser::UsernameExists));
        // Case-insensitive for ASCII, as under MySQL's default collation.
        assert_eq!(dup("ALICE", "c@x.io").await, Ok(CreateUser::UsernameExists));
        assert_eq!(dup("carol", "A@X.IO").await, Ok(CreateUser::EmailExists));
        // UTF-8 welcome.
        let Ok(CreateUser::Created(ny)) = dup("ñandú 🦤", "ñ@example.com").await else {
            panic!("UTF-8 user not created")
        };

        let credentials = store.credentials_by_email("a@x.io").await.unwrap().unwrap();
        assert_eq!(credentials.id, alice);
        assert_eq!(credentials.password_hash, "hash-of-alice");
        assert_eq!(
            store
                .credentials_by_email("A@x.IO")
                .await
                .unwrap()
                .map(|c| c.id),
            Some(alice)
        );
        assert_eq!(store.credentials_by_email("zz@x.io").await, Ok(None));

        let user = |id, name: &str| User {
            id,
            username: name.into(),
        };
        assert_eq!(store.user_by_id(bob).await, Ok(Some(user(bob, "bob"))));
        assert_eq!(store.user_by_id(9999).await, Ok(None));
        assert_eq!(
            store.users_by_ids(&[ny, bob, alice, bob, 9999]).await,
            Ok(vec![
                user(alice, "alice"),
                user(bob, "bob"),
                user(ny, "ñandú 🦤")
            ])
        );
        assert_eq!(store.users_by_ids(&[]).await, Ok(vec![]));

        // The upgrade to a stronger hash at login.
        store
            .set_password_hash(alice, "$argon2id$v=19$new".into())
            .await
            .unwrap();
        let credentials = store.credentials_by_email("a@x.io").await.unwrap().unwrap();
        assert_eq!(credentials.password_hash, "$argon2id$v=19$new");
        assert_eq!(store.set_password_hash(9999, "x".into()).await, Ok(()));
    });
    store.close().unwrap();
}

#[test]
fn sessions_collide_expire_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        assert_eq!(store.create_session("s1", 7, 3600).await, Ok(true));
        // Like SET NX: a live sid is not overwritten.
        assert_eq!(store.create_session("s1", 8, 3600).await, Ok(false));
        assert_eq!(store.session_user("s1").await, Ok(Some(7)));
        assert_eq!(store.session_user("nope").await, Ok(None));

        store.delete_session("s1").await.unwrap();
        assert_eq!(store.session_user("s1").await, Ok(None));
        store.delete_session("s1").await.unwrap();
        assert_eq!(store.create_session("s1", 8, 3600).await, Ok(true));
        assert_eq!(store.session_user("s1").await, Ok(Some(8)));

        // A one-second TTL: live at first, then gone; its sid can then be taken again.
        assert_eq!(store.create_session("short", 9, 1).await, Ok(true));
        assert_eq!(store.session_user("short").await, Ok(Some(9)));
        eventually(Duration::from_secs(5), "the session to expire", || async {
            store.session_user("short").await.unwrap().is_none()
        })
        .await;
        assert_eq!(store.create_session("short", 10, 3600).await, Ok(true));
        assert_eq!(store.session_user("short").await, Ok(Some(10)));
        assert_eq!(store.session_user("s1").await, Ok(Some(8)));
    });
    store.close().unwrap();
}

#[test]
fn the_sweep_deletes_expired_sessions_nobody_looks_up() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        session_sweep_interval_ms: 50,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::with_options(dir.path(), options).unwrap();
    block_on(async {
        for sid in ["a", "b", "c"] {
            assert_eq!(store.create_session(sid, 1, 1).await, Ok(true));
        }
        assert_eq!(store.create_session("long", 1, 3600).await, Ok(true));
        assert_eq!(store.session_rows_for_test().await, Ok(4));
        eventually(Duration::from_secs(5), "the sweep", || async {
            store.session_rows_for_test().await.unwrap() == 1
        })
        .await;
        assert_eq!(store.session_user("long").await, Ok(Some(1)));
    });
    store.close().unwrap();
}

#[test]
fn message_ids_increase_and_pages_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        // Timestamps that repeat and step back must still give increasing ids.
        let base = 1_700_000_000_000;
        let mut ids: Vec<MessageId> = Vec::new();
        let mut sent: Vec<NewMessage> = Vec::new();
        let mut n = 0u64;
        for batch in [1, 7, 1, 30, 50, 2, 100, 59] {
            let messages: Vec<NewMessage> = (0..batch)
                .map(|_| {
                    n += 1;
                    let timestamp = base + n / 3 - if n.is_multiple_of(10) { 5 } else { 0 };
                    message(&format!("m{n}"), (n % 4) as i64, timestamp)
                })
                .collect();
            sent.extend(messages.clone());
            ids.extend(store.append_messages("a", messages).await.unwrap());
        }
        assert_eq!(ids.len(), 250);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must increase");
        assert_eq!(ids[0], MessageId { ms: base, seq: 0 });
        for id in &ids {
            assert_eq!(id.to_string().parse::<MessageId>(), Ok(*id));
        }
        let stored = |i: usize| StoredMessage {
            id: ids[i],
            content: sent[i].content.clone(),
            user_id: sent[i].user_id,
            timestamp_ms: sent[i].timestamp_ms,
            guest: None,
        };
        let newest_first = |range: std::ops::Range<usize>| -> Vec<StoredMessage> {
            range.rev().map(stored).collect()
        };
        let oldest_first =
            |range: std::ops::Range<usize>| -> Vec<StoredMessage> { range.map(stored).collect() };

        let page = store.newest_messages("a", 100).await.unwrap();
        assert_eq!(page, newest_first(150..250));
        // Pages are capped, and exclusive of the id given.
        let page = store.newest_messages("a", 1000).await.unwrap();
        assert_eq!(page.len(), HISTORY_PAGE_MESSAGES_MAX);
        let page = store.messages_before("a", ids[150], 100).await.unwrap();
        assert_eq!(page, newest_first(50..150));
        let page = store.messages_before("a", ids[30], 100).await.unwrap();
        assert_eq!(page, newest_first(0..30));
        assert_eq!(store.messages_before("a", ids[0], 100).await, Ok(vec![]));
        let page = store.messages_after("a", ids[10], 5).await.unwrap();
        assert_eq!(page, oldest_first(11..16));
        let page = store.messages_after("a", ids[200], 100).await.unwrap();
        assert_eq!(page, oldest_first(201..250));
        assert_eq!(store.messages_after("a", ids[249], 100).await, Ok(vec![]));
        assert_eq!(store.newest_messages("a", 0).await, Ok(vec![]));
        // Ids between stored ones, and at the extremes of the id space.
        let between = MessageId {
            ms: ids[100].ms,
            seq: ids[100].seq + 1,
        };
        let page = store.messages_before("a", between, 2).await.unwrap();
        assert_eq!(page, newest_first(99..101));
        let top = MessageId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        let page = store.messages_before("a", top, 3).await.unwrap();
        assert_eq!(page, newest_first(247..250));
        assert_eq!(store.messages_after("a", top, 3).await, Ok(vec![]));
        let page = store
            .messages_after("a", MessageId { ms: 0, seq: 0 }, 2)
            .await
            .unwrap();
        assert_eq!(page, oldest_first(0..2));

        // Rooms are independent; a room nobody wrote to is empty.
        let big = "ü".repeat(512 * 1024) + "🦀";
        let b_ids = store
            .append_messages(
                "b",
                vec![
                    message("héllo \"wörld\" 🌍\n\t<>&", 1, base),
                    message(&big, 2, base),
                    message("", 3, base),
                ],
            )
            .await
            .unwrap();
        assert!(b_ids[0] > ids[249], "one id sequence per store");
        let page = store.newest_messages("b", 100).await.unwrap();
        let contents: Vec<&str> = page.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["", big.as_str(), "héllo \"wörld\" 🌍\n\t<>&"]);
        assert_eq!(store.newest_messages("a", 1).await.unwrap()[0].id, ids[249]);
        assert_eq!(store.newest_messages("c", 100).await, Ok(vec![]));
        assert_eq!(store.append_messages("c", vec![]).await, Ok(vec![]));

        let too_many = vec![message("x", 1, base); APPEND_MESSAGES_MAX + 1];
        let start = Instant::now();
        assert!(is_unavailable(&store.append_messages("a", too_many).await));
        assert!(start.elapsed() < Duration::from_secs(1));
    });
    store.close().unwrap();
}

#[test]
fn reopening_keeps_everything_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let future = now_ms() + 3_600_000;
    let (alice, last) = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let result = block_on(async {
            let Ok(CreateUser::Created(alice)) = store.create_user(new_user("alice", "a@x")).await
            else {
                panic!("not created")
            };
            assert_eq!(store.create_session("sid", alice, 3600).await, Ok(true));
            // Stamped an hour ahead: after the restart the clock is "behind" the newest id.
            store
                .append_messages("r", vec![message("one", alice, 5)])
                .await
                .unwrap();
            let ids = store
                .append_messages("s", vec![message("two", alice, future)])
                .await
                .unwrap();
            (alice, ids[0])
        });
        store.close().unwrap();
        result
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        assert_eq!(
            store.credentials_by_email("a@x").await.unwrap().unwrap().id,
            alice
        );
        assert_eq!(store.session_user("sid").await, Ok(Some(alice)));
        assert_eq!(
            store.newest_messages("s", 10).await.unwrap()[0].content,
            "two"
        );
        assert_eq!(store.newest_messages("r", 10).await.unwrap().len(), 1);
        // The greatest id of all rooms is remembered, whatever the new message's timestamp.
        let next = store
            .append_messages("r", vec![message("three", alice, now_ms())])
            .await
            .unwrap();
        assert_eq!(
            next[0],
            MessageId {
                ms: last.ms,
                seq: last.seq + 1
            }
        );
        // A duplicate after the restart is still a duplicate.
        assert_eq!(
            store.create_user(new_user("alice", "other@x")).await,
            Ok(CreateUser::UsernameExists)
        );
    });
    // Dropping the last handle also shuts the thread down cleanly.
    let waiter = store.waiter();
    drop(store);
    waiter.join().unwrap();
    // Nothing left to replay: the final checkpoint emptied the WAL.
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0));
}

#[test]
fn a_second_process_cannot_open_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    // Another connection stands for another process: the lock is the file's, not the thread's.
    let second = EmbeddedStore::open(dir.path());
    assert!(is_unavailable(&second), "{:?}", second.map(|_| ()));
    store.close().unwrap();
    EmbeddedStore::open(dir.path()).unwrap().close().unwrap();
}

#[test]
fn a_full_queue_refuses_at_once_and_a_closed_store_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        queue_requests_max: 4,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::with_options(dir.path(), options).unwrap();
    block_on(async {
        let (held, guard) = store.hold_for_test();
        held.await.unwrap();
        // The thread is stalled and the queue empty: four requests fit, the fifth does not.
        let queued: Vec<_> = (0..4)
            .map(|i| store.append_messages("q", vec![message(&format!("{i}"), 1, 1)]))
            .collect();
        let refused = tokio::time::timeout(
            Duration::from_secs(5),
            store.append_messages("q", vec![message("late", 1, 1)]),
        )
        .await
        .expect("a full queue must answer at once, not wait for room");
        assert!(is_unavailable(&refused), "{refused:?}");
        assert!(is_unavailable(&store.session_user("x").await));
        drop(guard);
        for pending in queued {
            assert_eq!(pending.await.unwrap().len(), 1);
        }
        let contents: Vec<String> = all_messages(&store, "q")
            .await
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(contents, ["0", "1", "2", "3"]);
    });
    let other = store.clone();
    store.close().unwrap();
    block_on(async {
        assert!(is_unavailable(&other.session_user("x").await));
        assert!(is_unavailable(&other.append_messages("q", vec![]).await));
    });
    // The thread was already joined by close.
    other.waiter().join().unwrap();
}

#[test]
fn requests_queued_together_commit_together_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        // Stall the thread so the next requests are taken as one batch.
        let (held, guard) = store.hold_for_test();
        held.await.unwrap();
        let first = store.append_messages("g", vec![message("first", 1, 100)]);
        let user = store.create_user(new_user("gina", "g@x"));
        // An id past what SQLite can store: this request fails, and only this one.
        let bad = store.append_messages("g", vec![message("bad", 1, u64::MAX)]);
        let session = store.create_session("sid", 1, 60);
        let last = store.append_messages("g", vec![message("last", 1, 100)]);
        let read = store.newest_messages("g", 10);
        drop(guard);
        assert_eq!(first.await, Ok(vec![MessageId { ms: 100, seq: 0 }]));
        assert!(matches!(user.await, Ok(CreateUser::Created(_))));
        assert!(matches!(bad.await, Err(StoreError::Corrupt { .. })));
        assert_eq!(session.await, Ok(true));
        assert_eq!(last.await.unwrap().len(), 1);
        // A read in the batch sees the writes queued before it.
        let contents: Vec<String> = read.await.unwrap().into_iter().map(|m| m.content).collect();
        assert_eq!(contents, ["last", "first"]);
    });
    store.close().unwrap();
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedStore::open(dir.path()).unwrap().close().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "INSERT INTO messages VALUES ('bad', 1, 0, 1, x'ff00', 1, NULL);
         INSERT INTO messages VALUES ('bad', 2, 0, 'one', 'text', -5, NULL);
         INSERT INTO users (username, email, password) VALUES ('u', 'e', 'p');
         UPDATE users SET username = x'ff' WHERE email = 'e';",
    )
    .unwrap();
    drop(raw);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        fn corrupt<T>(r: &Result<T, StoreError>) -> bool {
            matches!(
                r,
                Err(StoreError::Corrupt {
                    side: Side::Embedded,
                    ..
                })
            )
        }
        let newest = store.newest_messages("bad", 10).await;
        assert!(corrupt(&newest), "{newest:?}");
        let first = store
            .messages_after("bad", MessageId { ms: 0, seq: 0 }, 1)
            .await;
        assert!(corrupt(&first), "{first:?}");
        let user = store.credentials_by_email("e").await.unwrap().unwrap();
        let by_id = store.user_by_id(user.id).await;
        assert!(corrupt(&by_id), "{by_id:?}");
        // The failure stays with its request; the store goes on.
        assert_eq!(store.create_session("s", 1, 60).await, Ok(true));
    });
    store.close().unwrap();

    // A negative id cannot be the greatest id: opening refuses rather than guess.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO messages VALUES ('neg', -1, 0, 1, 'x', 1, NULL)",
        [],
    )
    .unwrap();
    drop(raw);
    let reopened = EmbeddedStore::open(dir.path());
    assert!(
        matches!(reopened, Err(StoreError::Corrupt { .. })),
        "{:?}",
        reopened.map(|_| ())
    );
}

// --- kill -9 -----------------------------------------------------------------------------------

const KILL9_DIR_ENV: &str = "RINGCHAT_KILL9_DIR";
const KILL9_ROOM: &str = "durable";
const KILL9_TASKS: usize = 8;
const KILL9_RUNS: usize = 3;
/// How long the child appends before the parent kills it.
const KILL9_APPEND_MS: u64 = 1000;

/// Messages per append for each appender task: single messages and batches side by side.
fn kill9_batch_size(task: usize) -> usize {
    [1, 4, 16, 2][task % 4]
}

/// `task` appends batch after batch (one in flight), each message's content naming its task,
/// batch and place; `ack` hears of each message once its append returned. `batches_max` bounds
/// the run; `None` runs until the process is killed.
async fn kill9_appender_task(
    store: EmbeddedStore,
    task: usize,
    batches_max: Option<usize>,
    mut ack: impl FnMut(MessageId, &str),
) {
    let size = kill9_batch_size(task);
    for batch in 0.. {
        if batches_max.is_some_and(|max| batch >= max) {
            break;
        }
        let messages: Vec<NewMessage> = (0..size)
            .map(|i| message(&format!("t{task} b{batch} m{i}"), task as i64, now_ms()))
            .collect();
        let contents: Vec<String> = messages.iter().map(|m| m.content.clone()).collect();
        let ids = store.append_messages(KILL9_ROOM, messages).await.unwrap();
        for (id, content) in ids.into_iter().zip(&contents) {
            ack(id, content);
        }
    }
}

/// Parses `t{task} b{batch} m{i}`.
fn kill9_parse(content: &str) -> Option<(usize, usize, usize)> {
    let mut parts = content.split(' ');
    let task = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let batch = parts.next()?.strip_prefix('b')?.parse().ok()?;
    let i = parts.next()?.strip_prefix('m')?.parse().ok()?;
    (parts.next().is_none()).then_some((task, batch, i))
}

/// Checks the store against what was acknowledged: every acknowledged message present with its
/// content; nothing but whole batches the appenders attempted (for each task, its batches from
/// the first on, at most one more than it saw acknowledged); no duplicates. Returns the number of
/// messages stored.
fn kill9_verify(dir: &Path, acked: &HashMap<MessageId, String>) -> usize {
    let store = EmbeddedStore::open(dir).unwrap();
    let stored = block_on(all_messages(&store, KILL9_ROOM));
    store.close().unwrap();

    let by_id: HashMap<MessageId, &str> =
        stored.iter().map(|m| (m.id, m.content.as_str())).collect();
    assert_eq!(by_id.len(), stored.len(), "duplicate ids");
    let lost: Vec<_> = acked
        .iter()
        .filter(|(id, content)| by_id.get(id) != Some(&content.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );

    let mut contents = HashSet::new();
    let mut per_task: Vec<HashMap<usize, usize>> = vec![HashMap::new(); KILL9_TASKS];
    for m in &stored {
        let (task, batch, i) = kill9_parse(&m.content)
            .unwrap_or_else(|| panic!("a message nobody sent: {:?}", m.content));
        assert!(
            task < KILL9_TASKS && i < kill9_batch_size(task),
            "{}",
            m.content
        );
        assert_eq!(m.user_id, task as i64);
        assert!(
            contents.insert(m.content.as_str()),
            "stored twice: {}",
            m.content
        );
        *per_task[task].entry(batch).or_default() += 1;
    }
    let mut acked_batches = [0usize; KILL9_TASKS];
    for content in acked.values() {
        let (task, batch, _) = kill9_parse(content).expect("acknowledged content parses");
        acked_batches[task] = acked_batches[task].max(batch + 1);
    }
    for (task, batches) in per_task.iter().enumerate() {
        let n = batches.len();
        assert!(
            (0..n).all(|b| batches.get(&b) == Some(&kill9_batch_size(task))),
            "task {task}: stored batches are not whole and contiguous from 0: {batches:?}"
        );
        assert!(
            n == acked_batches[task] || n == acked_batches[task] + 1,
            "task {task}: {n} batches stored, {} acknowledged",
            acked_batches[task]
        );
    }
    stored.len()
}

/// In a child (`RINGCHAT_KILL9_DIR` set): append until killed, printing `ack <id> <content>`
/// for every acknowledged message. Otherwise: a short bounded run of the same appenders,
/// checked like the parent checks the child.
#[test]
fn kill9_appender() {
    if let Some(dir) = std::env::var_os(KILL9_DIR_ENV) {
        let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
        block_on(async {
            let tasks: Vec<_> = (0..KILL9_TASKS)
                .map(|task| {
                    tokio::spawn(kill9_appender_task(store.clone(), task, None, |id, c| {
                        // A line reaches the pipe in one write, as soon as it is complete.
                        writeln!(std::io::stdout(), "ack {id} {c}").unwrap();
                    }))
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        unreachable!("the appenders run until the process is killed");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    block_on(async {
        let tasks: Vec<_> = (0..KILL9_TASKS)
            .map(|task| {
                let tx = tx.clone();
                tokio::spawn(kill9_appender_task(
                    store.clone(),
                    task,
                    Some(5),
                    move |id, c| {
                        tx.send((id, c.to_string())).unwrap();
                    },
                ))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    store.close().unwrap();
    drop(tx);
    let acked: HashMap<MessageId, String> = rx.into_iter().collect();
    let expected: usize = (0..KILL9_TASKS).map(|t| 5 * kill9_batch_size(t)).sum();
    assert_eq!(acked.len(), expected);
    assert_eq!(kill9_verify(dir.path(), &acked), expected);
}

#[test]
fn kill9_loses_no_acknowledged_message() {
    for run in 0..KILL9_RUNS {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill9_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL9_DIR_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, acks) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            // A line cut short by the kill was never completely printed: ignore it.
            while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                let _ = lines.send(std::mem::take(&mut line));
            }
        });

        let mut acked: HashMap<MessageId, String> = HashMap::new();
        let mut record = |line: String| {
            let Some(rest) = line.trim_end_matches('\n').strip_prefix("ack ") else {
                return;
            };
            let (id, content) = rest.split_once(' ').expect("ack <id> <content>");
            let id: MessageId = id.parse().expect("acknowledged ids parse");
            assert!(
                acked.insert(id, content.to_string()).is_none(),
                "id {id} acknowledged twice"
            );
        };
        // Wait for the child's first acknowledgement, then let it append for a while.
        let first = acks
            .recv_timeout(Duration::from_secs(30))
            .expect("the child acknowledges within 30 s");
        record(first);
        let kill_at = Instant::now() + Duration::from_millis(KILL9_APPEND_MS);
        while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
            match acks.recv_timeout(left) {
                Ok(line) => record(line),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the child exited early"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines already in the pipe were acknowledged before the kill.
        for line in acks.try_iter() {
            record(line);
        }
        assert!(
            acked.len() > 10,
            "run {run}: only {} acknowledged",
            acked.len()
        );
        let stored = kill9_verify(dir.path(), &acked);
        eprintln!(
            "kill -9 run {run}: {} acknowledged, {stored} stored, 0 lost",
            acked.len()
        );
    }
}

/// A database made before guests existed (no `guest` column) is upgraded at open: its messages
/// read as accounts' messages, and guests' messages can be stored and read back.
#[test]
fn a_database_without_the_guest_column_is_upgraded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TABLE messages (room TEXT NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,
             user_id INTEGER NOT NULL, content TEXT NOT NULL, timestamp INTEGER NOT NULL,
             PRIMARY KEY (room, ms, seq)) WITHOUT ROWID;
         INSERT INTO messages VALUES ('a', 5, 0, 3, 'old', 5);",
    )
    .unwrap();
    drop(raw);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        let old = store.newest_messages("a", 10).await.unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (
                old[0].content.as_str(),
                old[0].user_id,
                old[0].guest.as_deref()
            ),
            ("old", 3, None)
        );
        let guest = NewMessage {
            guest: Some("bob".into()),
            ..message("from a guest", 0, now_ms())
        };
        store.append_messages("a", vec![guest]).await.unwrap();
        let page = store.newest_messages("a", 10).await.unwrap();
        assert_eq!(
            (page[0].user_id, page[0].guest.as_deref()),
            (0, Some("bob"))
        );
    });
    store.close().unwrap();
    // Opening it again finds the column there and leaves it alone.
    let store = EmbeddedStore::open(dir.path()).unwrap();
    block_on(async {
        assert_eq!(store.newest_messages("a", 10).await.unwrap().len(), 2);
    });
    store.close().unwrap();
}

/// `--room-retention`: a room fed 10^6 messages holds exactly the newest `KEEP` after every
/// append, a room under the limit is untouched, the kept messages page back in order down to the
/// oldest kept one and no further, and a reopened store (which counts the room again) goes on
/// trimming.
#[test]
fn a_room_fed_a_million_messages_keeps_its_retention() {
    const KEEP: u64 = 10_000;
    const FED: usize = 1_000_000;
    /// Appends in flight at once, so group commit packs many into one transaction.
    const IN_FLIGHT: usize = 32;
    const CHECK_EVERY: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        room_retention: Some(KEEP),
        ..EmbeddedOptions::default()
    };
    let started = Instant::now();
    let store = EmbeddedStore::with_options(dir.path(), options.clone()).unwrap();
    let mut ids: Vec<MessageId> = Vec::with_capacity(FED);
    block_on(async {
        let small: Vec<NewMessage> = (0..500)
            .map(|i| message(&format!("s{i}"), 2, now_ms()))
            .collect();
        store.append_messages("small", small).await.unwrap();
        let mut fed = 0;
        while fed < FED {
            let mut pending = Vec::with_capacity(IN_FLIGHT);
            for _ in 0..IN_FLIGHT {
                let n = APPEND_MESSAGES_MAX.min(FED - fed);
                if n == 0 {
                    break;
                }
                let batch = (fed..fed + n)
                    .map(|i| message(&format!("m{i}"), 1, now_ms()))
                    .collect();
                pending.push(store.append_messages("big", batch));
                fed += n;
            }
            for p in pending {
                ids.extend(p.await.unwrap());
            }
            if ids.len() % CHECK_EVERY < IN_FLIGHT * APPEND_MESSAGES_MAX || ids.len() == FED {
                // The oldest kept message is ids[len - KEEP]; nothing older is left.
                let oldest_kept = ids.len() - KEEP as usize;
                let older = store
                    .messages_before("big", ids[oldest_kept], 1)
                    .await
                    .unwrap();
                assert!(older.is_empty(), "after {}: {older:?} kept", ids.len());
                let kept = store
                    .messages_before("big", ids[oldest_kept + 1], 1)
                    .await
                    .unwrap();
                assert_eq!(
                    kept.len(),
                    1,
                    "after {}: the oldest kept is gone",
                    ids.len()
                );
                assert_eq!(kept[0].content, format!("m{oldest_kept}"));
            }
        }
    });
    store.close().unwrap();
    let fed_in = started.elapsed();
    let raw = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let rows = |room: &str| -> i64 {
        raw.query_row(
            "SELECT count(*) FROM messages WHERE room = ?1",
            [room],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert_eq!(rows("big"), KEEP as i64);
    assert_eq!(rows("small"), 500);
    drop(raw);

    let store = EmbeddedStore::with_options(dir.path(), options).unwrap();
    block_on(async {
        // The kept messages, newest first, page by page, then nothing.
        let mut before = MessageId {
            ms: u64::MAX / 2,
            seq: 0,
        };
        let mut seen = Vec::new();
        loop {
            let page = store
                .messages_before("big", before, HISTORY_PAGE_MESSAGES_MAX)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before = last.id;
            seen.extend(page.into_iter().map(|m| m.content));
        }
        let expected: Vec<String> = (FED - KEEP as usize..FED)
            .rev()
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(seen, expected);
        // Reopened: the room is counted again and trimmed on the next append.
        let more = (0..10)
            .map(|i| message(&format!("n{i}"), 1, now_ms()))
            .collect();
        store.append_messages("big", more).await.unwrap();
        let oldest = store
            .messages_before("big", ids[FED - KEEP as usize + 10], 2)
            .await
            .unwrap();
        assert!(oldest.is_empty(), "reopened store did not trim: {oldest:?}");
    });
    store.close().unwrap();
    eprintln!("fed {FED} messages with retention {KEEP} in {fed_in:?}");
}
