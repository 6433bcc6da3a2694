//! The MySQL users store against a real MariaDB: schema creation, users, duplicates decided by
//! the data, concurrency, injection strings, pool exhaustion, and an outage with recovery.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringchat::rt::{self, Backend};
use ringchat::store::mysql::{MysqlConfig, MysqlStore};
use ringchat::store::{CreateUser, NewUser, StoreError};
use ringchat_proto_tests::MariaDb;

fn config(db: &MariaDb) -> MysqlConfig {
    let mut c = MysqlConfig::from_url(&db.url()).unwrap();
    c.acquire_timeout = Duration::from_secs(5);
    c
}

fn new_user(name: &str, email: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: email.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$hash-of-{name}"),
    }
}

fn users_and_duplicates(backend: Backend) {
    let db = MariaDb::start();
    let cfg = config(&db);
    rt::run_local(backend, async move {
        let store = MysqlStore::connect(cfg).await.unwrap();
        let alice = match store
            .create_user(new_user("alice", "alice@example.com"))
            .await
            .unwrap()
        {
            CreateUser::Created(id) => id,
            other => panic!("{other:?}"),
        };
        let crab = match store
            .create_user(new_user("ñandú 🦀", "ñ@example.com"))
            .await
            .unwrap()
        {
            CreateUser::Created(id) => id,
            other => panic!("{other:?}"),
        };
        assert_ne!(alice, crab);
        assert_eq!(
            store
                .create_user(new_user("alice", "other@example.com"))
                .await
                .unwrap(),
            CreateUser::UsernameExists
        );
        assert_eq!(
            store
                .create_user(new_user("bob", "alice@example.com"))
                .await
                .unwrap(),
            CreateUser::EmailExists
        );
        assert_eq!(
            store
                .create_user(new_user("alice", "alice@example.com"))
                .await
                .unwrap(),
            CreateUser::UsernameExists
        );

        // The table's default collation compares case-insensitively; the duplicate check by
        // data must agree with the unique index about that.
        assert_eq!(
            store
                .create_user(new_user("ALICE", "a2@example.com"))
                .await
                .unwrap(),
            CreateUser::UsernameExists
        );
        assert_eq!(
            store
                .create_user(new_user("bob", "Alice@Example.com"))
                .await
                .unwrap(),
            CreateUser::EmailExists
        );

        let creds = store
            .credentials_by_email("alice@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.id, alice);
        assert!(creds.password_hash.contains("hash-of-alice"));
        assert!(
            store
                .credentials_by_email("nobody@example.com")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.user_by_id(crab).await.unwrap().unwrap().username,
            "ñandú 🦀"
        );
        assert!(store.user_by_id(999_999).await.unwrap().is_none());

        // A large hash (TEXT) and an upgrade.
        let big = "x".repeat(60_000);
        store.set_password_hash(alice, &big).await.unwrap();
        assert_eq!(
            store
                .credentials_by_email("alice@example.com")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            big
        );

        // Injection strings are data.
        let evil = "'; DROP TABLE users; --";
        assert!(matches!(
            store
                .create_user(new_user(evil, "evil\"@example.com"))
                .await
                .unwrap(),
            CreateUser::Created(_)
        ));
        assert!(
            store
                .credentials_by_email("' OR '1'='1")
                .await
                .unwrap()
                .is_none()
        );

        // Many ids: padded, split, deduplicated; unknown ids are skipped.
        let mut ids = vec![alice, crab, alice];
        for i in 0..150 {
            if let CreateUser::Created(id) = store
                .create_user(new_user(&format!("user{i}"), &format!("u{i}@example.com")))
                .await
                .unwrap()
            {
                ids.push(id);
            }
        }
        ids.push(424_242);
        let users = store.users_by_ids(&ids).await.unwrap();
        assert_eq!(users.len(), 152);
        assert!(store.users_by_ids(&[]).await.unwrap().is_empty());
    })
    .unwrap();
    let table = db.root_sql("SHOW CREATE TABLE servertech_chat.users");
    assert!(
        table.contains("UNIQUE KEY `username`") && table.contains("UNIQUE KEY `email`"),
        "{table}"
    );
    assert_eq!(
        db.root_sql("SELECT COUNT(*) FROM servertech_chat.users")
            .trim(),
        "153"
    );
}

#[test]
fn users_and_duplicates_uring() {
    users_and_duplicates(Backend::Uring);
}

#[test]
fn users_and_duplicates_epoll() {
    users_and_duplicates(Backend::Epoll);
}

#[test]
fn one_winner_among_100_concurrent_signups() {
    let db = MariaDb::start();
    let cfg = config(&db);
    let outcomes = rt::run_local(Backend::Uring, async move {
        let store = Rc::new(MysqlStore::connect(cfg).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = store.clone();
            tasks.push(tokio::task::spawn_local(async move {
                store
                    .create_user(new_user("popular", &format!("p{i}@example.com")))
                    .await
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().unwrap());
        }
        assert!(store.open_connections() <= 8, "pool grew past its max");
        outcomes
    })
    .unwrap();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, CreateUser::Created(_)))
        .count();
    let taken = outcomes
        .iter()
        .filter(|o| **o == CreateUser::UsernameExists)
        .count();
    assert_eq!((created, taken), (1, 99));
}

#[test]
fn pool_exhaustion_times_out_then_recovers() {
    let db = MariaDb::start();
    let mut cfg = config(&db);
    cfg.pool_max = 2;
    cfg.acquire_timeout = Duration::from_millis(300);
    rt::run_local(Backend::Uring, async move {
        let store = MysqlStore::connect(cfg).await.unwrap();
        let a = store.acquire().await.unwrap();
        let b = store.acquire().await.unwrap();
        let start = Instant::now();
        let err = store.user_by_id(1).await.unwrap_err();
        let waited = start.elapsed();
        assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
        // A connection released while someone waits is handed over.
        let waiter = {
            let store = store.clone();
            tokio::task::spawn_local(async move { store.user_by_id(1).await })
        };
        drop(a);
        assert!(waiter.await.unwrap().is_ok());
        drop(b);
        assert_eq!(store.open_connections(), 2);
    })
    .unwrap();
}

#[test]
fn outage_fails_fast_and_recovers() {
    let mut db = MariaDb::start();
    let cfg = config(&db);
    let (to_test, from_test) = std::sync::mpsc::channel::<&'static str>();
    let (to_db, from_db) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        rt::run_local(Backend::Uring, async move {
            let store = MysqlStore::connect(cfg).await.unwrap();
            store.user_by_id(1).await.unwrap();
            to_test.send("kill").unwrap();
            from_db.recv().unwrap();
            // Down: every call answers with an error within 2 s.
            for _ in 0..5 {
                let start = Instant::now();
                assert!(store.user_by_id(1).await.is_err());
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "{:?}",
                    start.elapsed()
                );
            }
            to_test.send("restart").unwrap();
            from_db.recv().unwrap();
            // Back: a call succeeds within 2 s of the server's return.
            let start = Instant::now();
            while store.user_by_id(1).await.is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "not recovered after {:?}",
                    start.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .unwrap();
    });
    assert_eq!(from_test.recv().unwrap(), "kill");
    db.kill9();
    to_db.send(()).unwrap();
    assert_eq!(from_test.recv().unwrap(), "restart");
    db.restart();
    to_db.send(()).unwrap();
    worker.join().unwrap();
}
