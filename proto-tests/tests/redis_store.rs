//! The Redis store against a real redis-server: pipelining (10,000 commands from many tasks, in
//! few writes, on both backends), reconnection after kill -9, the reference data model byte for
//! byte, timeouts with late replies and stalled connections, history paging, transactions,
//! AUTH and SELECT from the URL (RESP3, and RESP2 on a server without HELLO), and the in-flight
//! limit. Then the blocking stream reader: entries read in order from several streams,
//! resuming, the count limit, blocking until an append or the end of the block, reconnecting
//! after its connection is killed, the block + timeout deadline, AUTH and SELECT on both
//! protocols.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringchat::proto::resp::Value;
use ringchat::rt::{self, Backend};
use ringchat::store::redis::{
    REDIS_APPEND_MESSAGES_MAX, REDIS_COMMANDS_IN_FLIGHT_MAX, RedisConfig, RedisStore,
};
use ringchat::store::redis_reader::{
    REDIS_READ_ENTRIES_MAX, REDIS_READ_STREAMS_MAX, StreamRead, StreamReader,
};
use ringchat::store::{MessageId, NewMessage, SESSION_TTL_S, StoreError, StoredMessage};
use ringchat_proto_tests::{Redis, join_all};

fn config(url: &str, timeout: Duration) -> RedisConfig {
    let mut c = RedisConfig::from_url(url).unwrap();
    c.timeout = timeout;
    c
}

fn message(i: usize) -> NewMessage {
    NewMessage {
        content: format!("message {i} ✓"),
        user_id: i as i64 % 7 + 1,
        timestamp_ms: 1_700_000_000_000 + i as u64,
        guest: None,
    }
}

fn bulk(value: &Value) -> &[u8] {
    value
        .as_bytes()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

/// `:<n>\r\n` from `Redis::raw`.
fn raw_integer(reply: &[u8]) -> i64 {
    let text = std::str::from_utf8(reply).unwrap();
    text.strip_prefix(':')
        .and_then(|t| t.strip_suffix("\r\n"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {text:?}"))
}

/// Calls `attempt` until it succeeds, for at most `within`.
async fn eventually<T>(
    within: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, StoreError>,
) -> T {
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => assert!(
                start.elapsed() < within,
                "still failing after {within:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pipelines(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(10));
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg);
        assert_eq!(bulk(&store.command(&[b"PING"]).await.unwrap()), b"PONG");
        assert!(store.is_connected());

        // 100 tasks issue 100 RPUSHes each, all at once: 10,000 commands queued in one turn.
        let writes = store.writes_for_test();
        let tasks: Vec<_> = (0..100)
            .map(|t| {
                let store = store.clone();
                tokio::task::spawn_local(async move {
                    let key = format!("list-{t}");
                    let pushes = (0..100).map(|j| {
                        let store = store.clone();
                        let key = key.clone();
                        async move {
                            let item = j.to_string();
                            store
                                .command(&[b"RPUSH", key.as_bytes(), item.as_bytes()])
                                .await
                        }
                    });
                    join_all(pushes.collect()).await
                })
            })
            .collect();
        for (t, task) in tasks.into_iter().enumerate() {
            let replies = task.await.unwrap();
            // RPUSH answers the list's new length: the j-th command issued is the j-th run,
            // and its reply came back to it.
            for (j, reply) in replies.into_iter().enumerate() {
                assert_eq!(reply.unwrap(), Value::Integer(j as i64 + 1), "task {t}");
            }
        }
        let writes = store.writes_for_test() - writes;
        assert!(writes <= 10, "10,000 commands took {writes} writes");
        for t in [0, 57, 99] {
            let key = format!("list-{t}");
            let items = store
                .command(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])
                .await
                .unwrap()
                .into_array()
                .unwrap();
            let items: Vec<String> = items
                .iter()
                .map(|i| String::from_utf8(bulk(i).to_vec()).unwrap())
                .collect();
            let expected: Vec<String> = (0..100).map(|j| j.to_string()).collect();
            assert_eq!(items, expected);
        }

        // 10,000 single-message appends from 10,000 tasks: every caller gets its own id.
        let writes = store.writes_for_test();
        let tasks: Vec<_> = (0..10_000)
            .map(|i| {
                let store = store.clone();
                tokio::task::spawn_local(async move {
                    store.append_messages("busy-room", &[message(i)]).await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            let appended = task.await.unwrap().unwrap();
            assert_eq!(appended.len(), 1);
            ids.push(appended[0]);
        }
        let writes = store.writes_for_test() - writes;
        assert!(writes <= 10, "10,000 appends took {writes} writes");
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10_000);
        assert_eq!(
            store.command(&[b"XLEN", b"busy-room"]).await.unwrap(),
            Value::Integer(10_000)
        );
        // The id each caller got is the entry holding its message.
        for i in [0, 4321, 9999] {
            let id = ids[i];
            let before = MessageId {
                seq: id.seq.wrapping_sub(1),
                ms: if id.seq == 0 { id.ms - 1 } else { id.ms },
            };
            let page = store.messages_after("busy-room", before, 1).await.unwrap();
            let expected = message(i);
            assert_eq!(
                (page[0].id, &page[0].content, page[0].user_id),
                (id, &expected.content, expected.user_id)
            );
        }
        assert_eq!(store.handshakes_for_test(), 1);
    })
    .unwrap();
}

#[test]
fn pipelines_10k_commands_in_few_writes_uring() {
    pipelines(Backend::Uring);
}

#[test]
fn pipelines_10k_commands_in_few_writes_epoll() {
    pipelines(Backend::Epoll);
}

fn reconnects(backend: Backend) {
    // `everysec` (the harness's default) may postpone writing the AOF by up to two seconds while
    // a slow background fsync runs, after the reply went out: a kill -9 then loses acknowledged
    // writes. `always` writes and fsyncs before replying, so what was acknowledged must survive.
    let mut redis = Redis::start_with(&["--appendfsync", "always"]);
    assert!(
        String::from_utf8_lossy(&redis.raw("CONFIG GET appendfsync")).contains("always"),
        "appendfsync was not overridden"
    );
    let timeout = Duration::from_secs(2);
    let cfg = config(&redis.url(), timeout);
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg);
        assert!(store.create_session("before-crash", 11, 60).await.unwrap());
        let ids = store
            .append_messages("survivors", &[message(1), message(2), message(3)])
            .await
            .unwrap();
        assert_eq!(store.handshakes_for_test(), 1);

        redis.kill9();
        // Down: every call ends with an error, well within the timeout.
        let mut unavailable = 0;
        for i in 0..20 {
            let start = Instant::now();
            let outcome = if i % 2 == 0 {
                store.session_user("before-crash").await.map(drop)
            } else {
                store
                    .append_messages("survivors", &[message(9)])
                    .await
                    .map(drop)
            };
            let took = start.elapsed();
            match outcome {
                Err(StoreError::Unavailable { detail, .. }) => {
                    unavailable += 1;
                    assert!(!detail.is_empty());
                }
                other => panic!("call {i} while Redis is down: {other:?}"),
            }
            assert!(took < timeout / 4, "call {i} took {took:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(unavailable, 20);
        assert!(!store.is_connected());

        redis.restart();
        // Back: the store reconnects by itself (backoff at most 2 s).
        let user = eventually(Duration::from_secs(5), async || {
            store.session_user("before-crash").await
        })
        .await;
        assert_eq!(user, Some(11));
        assert!(store.is_connected());
        assert!(store.handshakes_for_test() >= 2);
        let history = store.newest_messages("survivors", 10).await.unwrap();
        let stored: Vec<MessageId> = history.iter().rev().map(|m| m.id).collect();
        // Appends made while Redis was down were refused before reaching it.
        assert_eq!(stored, ids);
    })
    .unwrap();
}

#[test]
fn reconnects_after_kill9_and_keeps_data_uring() {
    reconnects(Backend::Uring);
}

#[test]
fn reconnects_after_kill9_and_keeps_data_epoll() {
    reconnects(Backend::Epoll);
}

#[test]
fn data_model_matches_the_reference() {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    rt::run_local(Backend::Uring, async move {
        let store = RedisStore::connect(cfg);

        // Written by the store, read raw: exactly the reference's entry.
        let written = NewMessage {
            content: "hé \"quoted\" {json}".into(),
            user_id: 42,
            timestamp_ms: 1_700_000_000_123,
            guest: None,
        };
        let id = store
            .append_messages("compat-room", std::slice::from_ref(&written))
            .await
            .unwrap()[0];
        let id_text = id.to_string();
        let json = r#"{"content":"hé \"quoted\" {json}","timestamp":1700000000123,"user_id":42}"#;
        let expected = format!(
            "*1\r\n*2\r\n${}\r\n{id_text}\r\n*2\r\n$7\r\npayload\r\n${}\r\n{json}\r\n",
            id_text.len(),
            json.len()
        );
        assert_eq!(
            String::from_utf8(redis.raw("XREVRANGE compat-room + - COUNT 1")).unwrap(),
            expected
        );

        // Written raw in the reference's format (spaced JSON, keys in another order), read by
        // the store; entries from anything else are skipped.
        let reference = redis.raw_args(&[
            b"XADD",
            b"ref-room",
            b"*",
            b"payload",
            br#"{ "user_id": 3, "content": "from the reference", "timestamp": 5 }"#,
        ]);
        redis.raw_args(&[b"XADD", b"ref-room", b"*", b"text", b"foreign"]);
        redis.raw_args(&[b"XADD", b"ref-room", b"*", b"payload", b"not json"]);
        redis.raw_args(&[
            b"XADD",
            b"ref-room",
            b"*",
            b"payload",
            br#"{"content":"second","timestamp":6,"user_id":4}"#,
        ]);
        let reference_id: MessageId = std::str::from_utf8(&reference)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let history = store.newest_messages("ref-room", 100).await.unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(
            history[1],
            StoredMessage {
                id: reference_id,
                content: "from the reference".into(),
                user_id: 3,
                timestamp_ms: 5,
                guest: None,
            }
        );
        assert_eq!(history[0].content, "second");

        // Sessions: session_<sid> = decimal user id, 7 days, NX.
        let sid = "q1w2e3r4t5y6u7i8o9p0+/==";
        assert!(store.create_session(sid, 42, SESSION_TTL_S).await.unwrap());
        let ttl = raw_integer(&redis.raw(&format!("TTL session_{sid}")));
        assert!((604_790..=604_800).contains(&ttl), "{ttl}");
        assert_eq!(redis.raw(&format!("GET session_{sid}")), b"$2\r\n42\r\n");
        assert!(!store.create_session(sid, 43, SESSION_TTL_S).await.unwrap());
        assert_eq!(store.session_user(sid).await.unwrap(), Some(42));
        assert_eq!(store.session_user("unknown").await.unwrap(), None);
        store.delete_session(sid).await.unwrap();
        assert_eq!(store.session_user(sid).await.unwrap(), None);
        assert_eq!(raw_integer(&redis.raw(&format!("EXISTS session_{sid}"))), 0);
        store.delete_session(sid).await.unwrap();
        // A session written by the reference is read.
        redis.raw("SET session_fromref 77 EX 100");
        assert_eq!(store.session_user("fromref").await.unwrap(), Some(77));

        // Foreign values are Corrupt, and the connection goes on.
        redis.raw("SET session_bad abc");
        assert!(matches!(
            store.session_user("bad").await,
            Err(StoreError::Corrupt { .. })
        ));
        redis.raw("SET not-a-stream x");
        assert!(matches!(
            store.newest_messages("not-a-stream", 10).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.append_messages("not-a-stream", &[message(1)]).await,
            Err(StoreError::Corrupt { .. })
        ));
        // A bad command is the server's error, as Unavailable with its text.
        match store.command(&[b"NOSUCHCOMMAND"]).await {
            Err(StoreError::Unavailable { detail, .. }) => {
                assert!(detail.contains("unknown command"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        // Commands that would change the shared connection are not sent.
        let refused: [&[&[u8]]; 3] = [
            &[b"multi"],
            &[b"SELECT", b"1"],
            &[b"CLIENT", b"REPLY", b"OFF"],
        ];
        for refused in refused {
            assert!(
                matches!(
                    store.command(refused).await,
                    Err(StoreError::Unavailable { .. })
                ),
                "{refused:?}"
            );
        }
        assert_eq!(store.session_user("fromref").await.unwrap(), Some(77));
        assert_eq!(store.handshakes_for_test(), 1);
    })
    .unwrap();
}

#[test]
fn a_silent_server_times_out() {
    // The kernel accepts connections to a listener nobody accepts from; nothing ever answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let timeout = Duration::from_millis(300);
    rt::run_local(Backend::Uring, async move {
        let store = RedisStore::connect(config(&url, timeout));
        for i in 0..4 {
            let start = Instant::now();
            let outcome = store.session_user("x").await;
            let took = start.elapsed();
            assert!(outcome.is_err(), "{outcome:?}");
            if i == 0 {
                assert_eq!(
                    outcome,
                    Err(StoreError::Timeout {
                        side: ringchat::store::Side::Redis
                    })
                );
                assert!(took >= timeout - Duration::from_millis(20), "{took:?}");
            }
            assert!(took < timeout * 3, "call {i} took {took:?}");
        }
        assert!(!store.is_connected());
    })
    .unwrap();
    drop(listener);
}

/// A reply that comes after its caller gave up is dropped in its place: the next caller gets
/// its own reply, and the connection stays.
fn late_reply(backend: Backend) {
    let redis = Redis::start();
    let timeout = Duration::from_millis(300);
    let cfg = config(&redis.url(), timeout);
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg);
        assert_eq!(
            bulk(&store.command(&[b"ECHO", b"warm"]).await.unwrap()),
            b"warm"
        );
        let start = Instant::now();
        let blocked = store.command(&[b"BLPOP", b"empty-list", b"0.45"]).await;
        assert_eq!(
            blocked,
            Err(StoreError::Timeout {
                side: ringchat::store::Side::Redis
            })
        );
        let took = start.elapsed();
        assert!(
            took >= timeout - Duration::from_millis(20) && took < timeout * 2,
            "{took:?}"
        );
        // Queued behind the BLPOP, whose null reply arrives at 450 ms and is discarded.
        let after = store.command(&[b"ECHO", b"after"]).await.unwrap();
        assert_eq!(bulk(&after), b"after");
        let pair = join_all(vec![
            store.command(&[b"ECHO", b"one"]),
            store.command(&[b"ECHO", b"two"]),
        ])
        .await;
        assert_eq!(bulk(pair[0].as_ref().unwrap()), b"one");
        assert_eq!(bulk(pair[1].as_ref().unwrap()), b"two");
        assert_eq!(
            store.handshakes_for_test(),
            1,
            "the connection was replaced"
        );
    })
    .unwrap();
}

#[test]
fn a_late_reply_is_discarded_in_order_uring() {
    late_reply(Backend::Uring);
}

#[test]
fn a_late_reply_is_discarded_in_order_epoll() {
    late_reply(Backend::Epoll);
}

/// A connection that stops answering is replaced, and the old one is closed (not leaked).
fn stalled(backend: Backend) {
    let redis = Redis::start();
    let timeout = Duration::from_millis(300);
    let cfg = config(&redis.url(), timeout);
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg);
        store.command(&[b"SET", b"k", b"v"]).await.unwrap();
        let start = Instant::now();
        let blocked = store.command(&[b"BLPOP", b"empty-list", b"10"]).await;
        assert_eq!(
            blocked,
            Err(StoreError::Timeout {
                side: ringchat::store::Side::Redis
            })
        );
        let queued_behind = store.command(&[b"GET", b"k"]).await;
        assert!(queued_behind.is_err(), "{queued_behind:?}");
        let value = eventually(Duration::from_secs(3), async || {
            store.command(&[b"GET", b"k"]).await
        })
        .await;
        assert_eq!(bulk(&value), b"v");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(store.handshakes_for_test(), 2);
        // Only the new connection (and the raw one asking) remain: the stalled one was closed,
        // its blocked BLPOP with it.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let info = String::from_utf8(redis.raw("INFO clients")).unwrap();
            if info.contains("connected_clients:2\r\n") && info.contains("blocked_clients:0\r\n") {
                break;
            }
            assert!(Instant::now() < deadline, "{info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .unwrap();
}

#[test]
fn a_stalled_connection_is_replaced_uring() {
    stalled(Backend::Uring);
}

#[test]
fn a_stalled_connection_is_replaced_epoll() {
    stalled(Backend::Epoll);
}

#[test]
fn history_pages_and_transactions() {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(5));
    rt::run_local(Backend::Uring, async move {
        let store = RedisStore::connect(cfg);
        let room = "paging";
        // Two tasks append batches of 50 at the same time; each batch is one transaction.
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let store = store.clone();
                tokio::task::spawn_local(async move {
                    let batches = (0..3).map(|b| {
                        let store = store.clone();
                        async move {
                            let batch: Vec<NewMessage> =
                                (0..50).map(|i| message(w * 1000 + b * 100 + i)).collect();
                            let ids = store.append_messages(room, &batch).await.unwrap();
                            (batch, ids)
                        }
                    });
                    join_all(batches.collect()).await
                })
            })
            .collect();
        let mut batches = Vec::new();
        for w in writers {
            batches.extend(w.await.unwrap());
        }
        assert_eq!(batches.len(), 6);

        // Read everything back by paging forward from the start.
        let mut all: Vec<StoredMessage> = Vec::new();
        let mut cursor = MessageId { ms: 0, seq: 0 };
        loop {
            let page = store.messages_after(room, cursor, 1000).await.unwrap();
            assert!(page.len() <= 100);
            let Some(last) = page.last() else { break };
            cursor = last.id;
            all.extend(page);
        }
        assert_eq!(all.len(), 300);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        // Each batch is consecutive in the stream, in order, with its own contents.
        for (batch, ids) in &batches {
            let start = all.iter().position(|m| m.id == ids[0]).unwrap();
            let stored = &all[start..start + 50];
            for ((m, id), sent) in stored.iter().zip(ids).zip(batch) {
                assert_eq!(
                    (&m.id, &m.content, m.user_id),
                    (id, &sent.content, sent.user_id)
                );
                assert_eq!(m.timestamp_ms, sent.timestamp_ms);
            }
        }

        let ids: Vec<MessageId> = all.iter().map(|m| m.id).collect();
        let newest = store.newest_messages(room, 10).await.unwrap();
        let expected: Vec<MessageId> = ids[290..].iter().rev().copied().collect();
        assert_eq!(newest.iter().map(|m| m.id).collect::<Vec<_>>(), expected);
        assert_eq!(store.newest_messages(room, 1000).await.unwrap().len(), 100);
        assert!(store.newest_messages(room, 0).await.unwrap().is_empty());

        // Exclusive bounds.
        let before = store.messages_before(room, ids[120], 5).await.unwrap();
        let expected: Vec<MessageId> = ids[115..120].iter().rev().copied().collect();
        assert_eq!(before.iter().map(|m| m.id).collect::<Vec<_>>(), expected);
        let after = store.messages_after(room, ids[120], 5).await.unwrap();
        assert_eq!(
            after.iter().map(|m| m.id).collect::<Vec<_>>(),
            ids[121..126]
        );
        assert_eq!(
            store
                .messages_before(room, ids[250], 1000)
                .await
                .unwrap()
                .len(),
            100
        );
        assert_eq!(
            store
                .messages_after(room, ids[250], 1000)
                .await
                .unwrap()
                .len(),
            49
        );
        assert!(
            store
                .messages_before(room, ids[0], 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .messages_after(room, ids[299], 5)
                .await
                .unwrap()
                .is_empty()
        );
        let zero = MessageId { ms: 0, seq: 0 };
        let top = MessageId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        assert!(
            store
                .messages_before(room, zero, 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.messages_after(room, top, 5).await.unwrap().is_empty());
        assert_eq!(store.messages_before(room, top, 3).await.unwrap().len(), 3);
        assert!(
            store
                .newest_messages("no-such-room", 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Empty and oversized appends are answered without Redis.
        assert!(store.append_messages(room, &[]).await.unwrap().is_empty());
        let too_many: Vec<NewMessage> = (0..1025).map(message).collect();
        assert!(matches!(
            store.append_messages(room, &too_many).await,
            Err(StoreError::Unavailable { .. })
        ));
        // A transaction that fails is stored not at all.
        redis.raw("SET wrong-type x");
        assert!(matches!(
            store
                .append_messages("wrong-type", &[message(1), message(2)])
                .await,
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(redis.raw("GET wrong-type"), b"$1\r\nx\r\n");
        assert_eq!(
            store.command(&[b"XLEN", room.as_bytes()]).await.unwrap(),
            Value::Integer(300)
        );
        // The connection is still in a sane state (no transaction left open).
        assert_eq!(
            bulk(&store.command(&[b"ECHO", b"ok"]).await.unwrap()),
            b"ok"
        );
    })
    .unwrap();
}

/// `CLIENT INFO`'s fields (`db=3 ... user=alice ... resp=3`).
/// `--room-retention` on Redis: a room fed 10^6 messages (1,024 per `MULTI`/`EXEC`, 8 appends in
/// flight) never holds fewer than `KEEP` entries nor more than `KEEP` plus one stream node
/// (`stream-node-max-entries`, read from the server), checked every 100,000; the newest page is
/// the last messages sent, and a room under the limit keeps everything.
#[test]
fn a_room_fed_a_million_messages_keeps_its_retention() {
    const KEEP: u64 = 10_000;
    const FED: usize = 1_000_000;
    const IN_FLIGHT: usize = 8;
    const CHECK_EVERY: usize = 100_000;
    let redis = Redis::start();
    let node_reply = redis.raw("CONFIG GET stream-node-max-entries");
    let node_text = String::from_utf8_lossy(&node_reply);
    let node: u64 = node_text
        .lines()
        .filter_map(|l| l.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no stream-node-max-entries in {node_text:?}"));
    let mut cfg = config(&redis.url(), Duration::from_secs(10));
    cfg.room_retention = Some(KEEP);
    let xlen = |room: &str| raw_integer(&redis.raw(&format!("XLEN {room}"))) as u64;
    let started = Instant::now();
    rt::run_local(Backend::Uring, async {
        let store = RedisStore::connect(cfg);
        let small: Vec<NewMessage> = (0..500).map(message).collect();
        store.append_messages("small", &small).await.unwrap();
        let mut fed = 0;
        let mut last_check = 0;
        while fed < FED {
            let mut appends = Vec::with_capacity(IN_FLIGHT);
            for _ in 0..IN_FLIGHT {
                let n = REDIS_APPEND_MESSAGES_MAX.min(FED - fed);
                if n == 0 {
                    break;
                }
                let batch: Vec<NewMessage> = (fed..fed + n).map(message).collect();
                let store = store.clone();
                appends.push(async move { store.append_messages("big", &batch).await.unwrap() });
                fed += n;
            }
            join_all(appends).await;
            if fed - last_check >= CHECK_EVERY || fed == FED {
                last_check = fed;
                let len = xlen("big");
                assert!(
                    (KEEP..=KEEP + node).contains(&len),
                    "after {fed} messages the stream holds {len}, not {KEEP}..={}",
                    KEEP + node
                );
            }
        }
        let newest = store.newest_messages("big", 3).await.unwrap();
        let contents: Vec<String> = newest.into_iter().map(|m| m.content).collect();
        assert_eq!(
            contents,
            [FED - 1, FED - 2, FED - 3].map(|i| message(i).content)
        );
    })
    .unwrap();
    assert_eq!(xlen("small"), 500);
    eprintln!(
        "fed {FED} messages with retention {KEEP} (node {node}) in {:?}; XLEN {}",
        started.elapsed(),
        xlen("big")
    );
}

fn client_info(info: &Value) -> std::collections::HashMap<String, String> {
    String::from_utf8(bulk(info).to_vec())
        .unwrap()
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn auth_and_select_come_from_the_url() {
    let redis = Redis::start();
    redis.raw("ACL SETUSER alice on >wonder@land ~* &* +@all");
    let port = redis.port;
    rt::run_local(Backend::Uring, async move {
        let url = format!("redis://alice:wonder%40land@127.0.0.1:{port}/3");
        let store = RedisStore::connect(config(&url, Duration::from_secs(2)));
        assert_eq!(
            bulk(&store.command(&[b"ACL", b"WHOAMI"]).await.unwrap()),
            b"alice"
        );
        let info = client_info(&store.command(&[b"CLIENT", b"INFO"]).await.unwrap());
        assert_eq!((&info["db"][..], &info["resp"][..]), ("3", "3"), "{info:?}");
        assert!(store.create_session("in-db-3", 5, 60).await.unwrap());
        assert_eq!(
            store.command(&[b"DBSIZE"]).await.unwrap(),
            Value::Integer(1)
        );
        // Not in database 0.
        assert_eq!(redis.raw("GET session_in-db-3"), b"$-1\r\n");

        // A wrong password: a clear error at once, not a hang; then errors naming it.
        let url = format!("redis://alice:wrong@127.0.0.1:{port}/3");
        let wrong = RedisStore::connect(config(&url, Duration::from_secs(2)));
        for i in 0..3 {
            let start = Instant::now();
            match wrong.session_user("in-db-3").await {
                Err(StoreError::Unavailable { detail, .. }) => {
                    assert!(detail.contains("WRONGPASS"), "call {i}: {detail}")
                }
                other => panic!("call {i}: {other:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "{:?}",
                start.elapsed()
            );
        }
        assert!(!wrong.is_connected());

        // The default user's password alone (requirepass).
        redis.raw("CONFIG SET requirepass s3cret");
        let url = format!("redis://:s3cret@127.0.0.1:{port}");
        let default_user = RedisStore::connect(config(&url, Duration::from_secs(2)));
        assert_eq!(
            bulk(&default_user.command(&[b"ACL", b"WHOAMI"]).await.unwrap()),
            b"default"
        );
        let anonymous = RedisStore::connect(config(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_secs(2),
        ));
        match anonymous.command(&[b"PING"]).await {
            Err(StoreError::Unavailable { detail, .. }) => {
                assert!(detail.contains("NOAUTH"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        // The first store's connection is unaffected.
        assert_eq!(store.session_user("in-db-3").await.unwrap(), Some(5));
    })
    .unwrap();
}

#[test]
fn falls_back_to_resp2_on_a_server_without_hello() {
    let redis = Redis::start_with(&["--rename-command", "HELLO", ""]);
    assert!(
        String::from_utf8_lossy(&redis.raw("HELLO 3")).contains("unknown command"),
        "HELLO is still there"
    );
    redis.raw("ACL SETUSER bob on >builder ~* &* +@all");
    let url = format!("redis://bob:builder@127.0.0.1:{}/2", redis.port);
    rt::run_local(Backend::Epoll, async move {
        let store = RedisStore::connect(config(&url, Duration::from_secs(2)));
        let info = client_info(&store.command(&[b"CLIENT", b"INFO"]).await.unwrap());
        assert_eq!(
            (&info["db"][..], &info["resp"][..], &info["user"][..]),
            ("2", "2", "bob"),
            "{info:?}"
        );
        assert!(store.create_session("s", 9, 60).await.unwrap());
        assert!(!store.create_session("s", 9, 60).await.unwrap());
        assert_eq!(store.session_user("s").await.unwrap(), Some(9));
        let ids = store
            .append_messages("resp2-room", &[message(1), message(2), message(3)])
            .await
            .unwrap();
        let single = store
            .append_messages("resp2-room", &[message(4)])
            .await
            .unwrap();
        let newest = store.newest_messages("resp2-room", 10).await.unwrap();
        let read: Vec<MessageId> = newest.iter().rev().map(|m| m.id).collect();
        assert_eq!(read, [ids, single].concat());
        assert_eq!(newest[0].content, message(4).content);
        let after = store
            .messages_after("resp2-room", read[0], 2)
            .await
            .unwrap();
        assert_eq!(after.iter().map(|m| m.id).collect::<Vec<_>>(), read[1..3]);
        let before = store
            .messages_before("resp2-room", read[3], 10)
            .await
            .unwrap();
        assert_eq!(before.len(), 3);
    })
    .unwrap();
}

#[test]
fn commands_beyond_the_in_flight_limit_are_refused_at_once() {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(10));
    let redis = Rc::new(redis);
    rt::run_local(Backend::Uring, async move {
        let store = RedisStore::connect(cfg);
        store.command(&[b"PING"]).await.unwrap();
        // Hold the connection: nothing behind this BLPOP is answered for a second.
        let blocker = {
            let store = store.clone();
            tokio::task::spawn_local(async move {
                store.command(&[b"BLPOP", b"empty-list", b"1"]).await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8(redis.raw("INFO clients"))
            .unwrap()
            .contains("blocked_clients:1\r\n")
        {
            assert!(Instant::now() < deadline, "BLPOP never blocked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let extra = 50;
        let start = Instant::now();
        let tasks: Vec<_> = (0..REDIS_COMMANDS_IN_FLIGHT_MAX + extra)
            .map(|_| {
                let store = store.clone();
                tokio::task::spawn_local(async move {
                    let outcome = store.command(&[b"PING"]).await;
                    (outcome, start.elapsed())
                })
            })
            .collect();
        let (mut answered, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                (Ok(pong), _) => {
                    assert_eq!(bulk(&pong), b"PONG");
                    answered += 1;
                }
                (Err(StoreError::Unavailable { detail, .. }), took) => {
                    assert!(detail.contains("REDIS_COMMANDS_IN_FLIGHT_MAX"), "{detail}");
                    assert!(took < Duration::from_millis(500), "refused after {took:?}");
                    refused += 1;
                }
                (other, _) => panic!("{other:?}"),
            }
        }
        // The BLPOP holds one place.
        assert_eq!(answered, REDIS_COMMANDS_IN_FLIGHT_MAX - 1);
        assert_eq!(refused, extra + 1);
        assert_eq!(blocker.await.unwrap(), Ok(Value::Null));
        assert_eq!(store.handshakes_for_test(), 1);
    })
    .unwrap();
}

/// Dropping the last handle ends the driver and closes the connection (under io_uring too,
/// where an abandoned read would keep the socket open).
fn drop_closes(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg);
        let clone = store.clone();
        store.command(&[b"PING"]).await.unwrap();
        let connected = |n: usize| {
            String::from_utf8(redis.raw("INFO clients"))
                .unwrap()
                .contains(&format!("connected_clients:{n}\r\n"))
        };
        // The store's connection and the one asking.
        assert!(connected(2));
        drop(store);
        // A clone keeps it open.
        clone.command(&[b"PING"]).await.unwrap();
        drop(clone);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !connected(1) {
            assert!(Instant::now() < deadline, "the connection stayed open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .unwrap();
}

#[test]
fn dropping_the_store_closes_its_connection_uring() {
    drop_closes(Backend::Uring);
}

#[test]
fn dropping_the_store_closes_its_connection_epoll() {
    drop_closes(Backend::Epoll);
}

// ---------------------------------------------------------------------------------------------
// The blocking stream reader (store::redis_reader)
// ---------------------------------------------------------------------------------------------

const ZERO: MessageId = MessageId { ms: 0, seq: 0 };

/// Each stream's index and message ids, from one read.
fn read_ids(reads: &[StreamRead]) -> Vec<(usize, Vec<MessageId>)> {
    reads
        .iter()
        .map(|r| (r.index, r.messages.iter().map(|m| m.id).collect()))
        .collect()
}

/// Waits until `INFO clients` says `<field>:<n>`. Polled: besides the wait, a blocking read
/// on an io_uring thread can be interrupted by a completion, and `Redis::raw` reads once.
async fn clients_become(redis: &Redis, field: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = format!("{field}:{n}\r\n");
    while !String::from_utf8(redis.raw("INFO clients"))
        .unwrap()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "never {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Appended by the pipelined store, read back in order from two streams (a third has nothing),
/// each with its index; resuming from a middle id reads only what follows; the count is per
/// stream and bounded; a guest's name comes back.
fn reader_reads_in_order(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg.clone());
        let mut reader = StreamReader::new(&cfg);
        let a = store
            .append_messages("room-a", &(0..10).map(message).collect::<Vec<_>>())
            .await
            .unwrap();
        let b = store
            .append_messages("room-b", &(10..13).map(message).collect::<Vec<_>>())
            .await
            .unwrap();
        let streams = [("room-a", ZERO), ("empty-room", ZERO), ("room-b", ZERO)];
        let reads = reader
            .read(&streams, Duration::from_millis(100), 100)
            .await
            .unwrap();
        assert_eq!(read_ids(&reads), [(0, a.clone()), (2, b.clone())]);
        assert_eq!(reads[0].last_id, a[9]);
        assert_eq!(reads[1].last_id, b[2]);
        for (m, i) in reads[0].messages.iter().zip(0..) {
            let sent = message(i);
            assert_eq!(
                (&m.content, m.user_id, m.timestamp_ms, &m.guest),
                (&sent.content, sent.user_id, sent.timestamp_ms, &None)
            );
        }

        // Resume: from a middle id, only the entries after it; `count` per stream.
        let reads = reader
            .read(&[("room-b", b[0]), ("room-a", a[4])], Duration::ZERO, 3)
            .await
            .unwrap();
        assert_eq!(
            read_ids(&reads),
            [(0, b[1..].to_vec()), (1, a[5..8].to_vec())]
        );
        // From the last ids: nothing new; without a block the answer comes at once.
        let start = Instant::now();
        let streams = [("room-a", a[9]), ("room-b", b[2])];
        assert!(
            reader
                .read(&streams, Duration::ZERO, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() < Duration::from_millis(100));

        // A guest's message keeps its name.
        let guest = NewMessage {
            content: "hello from the line port".into(),
            user_id: 0,
            timestamp_ms: 1_700_000_000_999,
            guest: Some("~visitor".into()),
        };
        let id = store
            .append_messages("room-a", std::slice::from_ref(&guest))
            .await
            .unwrap()[0];
        let reads = reader
            .read(&[("room-a", a[9])], Duration::from_secs(1), 10)
            .await
            .unwrap();
        assert_eq!(
            reads[0].messages,
            [StoredMessage {
                id,
                content: guest.content.clone(),
                user_id: 0,
                timestamp_ms: guest.timestamp_ms,
                guest: Some("~visitor".into()),
            }]
        );

        // The count is bounded for all streams together: 1024 entries, shared.
        let many: Vec<NewMessage> = (0..1000).map(message).collect();
        store.append_messages("big-1", &many).await.unwrap();
        store.append_messages("big-2", &many).await.unwrap();
        let reads = reader
            .read(&[("big-1", ZERO), ("big-2", ZERO)], Duration::ZERO, 10_000)
            .await
            .unwrap();
        let counts: Vec<usize> = reads.iter().map(|r| r.messages.len()).collect();
        assert_eq!(counts, [REDIS_READ_ENTRIES_MAX / 2; 2]);
        // Too many streams: refused without asking Redis.
        let names: Vec<String> = (0..=REDIS_READ_STREAMS_MAX)
            .map(|i| format!("s{i}"))
            .collect();
        let streams: Vec<(&str, MessageId)> = names.iter().map(|n| (n.as_str(), ZERO)).collect();
        assert!(matches!(
            reader.read(&streams, Duration::ZERO, 1).await,
            Err(StoreError::Unavailable { .. })
        ));
        // A key that is not a stream: Corrupt, and the connection goes on.
        redis.raw("SET not-a-stream x");
        assert!(matches!(
            reader
                .read(&[("not-a-stream", ZERO)], Duration::ZERO, 1)
                .await,
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            read_ids(
                &reader
                    .read(&[("room-b", b[1])], Duration::ZERO, 1)
                    .await
                    .unwrap()
            ),
            [(0, vec![b[2]])]
        );
        assert_eq!(reader.handshakes_for_test(), 1);
    })
    .unwrap();
}

#[test]
fn reader_reads_appended_entries_in_order_uring() {
    reader_reads_in_order(Backend::Uring);
}

#[test]
fn reader_reads_appended_entries_in_order_epoll() {
    reader_reads_in_order(Backend::Epoll);
}

/// A blocked read wakes up when another connection appends, and returns nothing once the block
/// runs out.
fn reader_blocks(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    let redis = Rc::new(redis);
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg.clone());
        let mut reader = StreamReader::new(&cfg);
        let first = store.append_messages("live", &[message(0)]).await.unwrap()[0];

        // Nothing new: empty after about the block.
        let block = Duration::from_millis(300);
        let start = Instant::now();
        let reads = reader.read(&[("live", first)], block, 10).await.unwrap();
        let took = start.elapsed();
        assert!(reads.is_empty(), "{reads:?}");
        assert!(
            took >= block - Duration::from_millis(20) && took < block + Duration::from_secs(1),
            "{took:?}"
        );

        // Another connection appends while the read is blocked.
        let appender = {
            let store = store.clone();
            let redis = redis.clone();
            tokio::task::spawn_local(async move {
                clients_become(&redis, "blocked_clients", 1).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let sent = Instant::now();
                let ids = store
                    .append_messages("live", &[message(1), message(2)])
                    .await
                    .unwrap();
                (ids, sent)
            })
        };
        let start = Instant::now();
        let reads = reader
            .read(&[("live", first)], Duration::from_secs(10), 10)
            .await
            .unwrap();
        let woke = Instant::now();
        let (ids, sent) = appender.await.unwrap();
        assert_eq!(read_ids(&reads), [(0, ids)]);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            woke.duration_since(sent) < Duration::from_millis(500),
            "woke {:?} after the append",
            woke.duration_since(sent)
        );
        assert_eq!(reader.handshakes_for_test(), 1);
    })
    .unwrap();
}

#[test]
fn reader_blocks_until_an_append_or_the_end_of_the_block_uring() {
    reader_blocks(Backend::Uring);
}

#[test]
fn reader_blocks_until_an_append_or_the_end_of_the_block_epoll() {
    reader_blocks(Backend::Epoll);
}

/// The server closes the reader's connection while it is blocked: that call fails, the next
/// one reconnects and reads.
fn reader_survives_a_kill(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    let redis = std::sync::Arc::new(redis);
    rt::run_local(backend, async move {
        let store = RedisStore::connect(cfg.clone());
        let mut reader = StreamReader::new(&cfg);
        let first = store
            .append_messages("killed", &[message(0)])
            .await
            .unwrap()[0];
        assert!(
            reader
                .read(&[("killed", first)], Duration::ZERO, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // From another thread: a completion on the io_uring thread interrupts a blocking
        // read there (EINTR), and `Redis::raw` reads once.
        let killer = {
            let redis = redis.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                let id = loop {
                    let list = String::from_utf8(redis.raw("CLIENT LIST")).unwrap();
                    let blocked = list
                        .lines()
                        .find(|line| line.contains("cmd=xread") && line.contains(" flags=b "));
                    if let Some(line) = blocked {
                        let id = line.split_whitespace().find_map(|f| f.strip_prefix("id="));
                        break id.expect("an id field").to_string();
                    }
                    assert!(Instant::now() < deadline, "no blocked XREAD in {list}");
                    std::thread::sleep(Duration::from_millis(10));
                };
                assert_eq!(redis.raw(&format!("CLIENT KILL ID {id}")), b":1\r\n");
            })
        };
        let start = Instant::now();
        let outcome = reader
            .read(&[("killed", first)], Duration::from_secs(10), 10)
            .await;
        killer.join().unwrap();
        match outcome {
            Err(StoreError::Unavailable { side, detail }) => {
                assert_eq!(side, ringchat::store::Side::Redis);
                assert!(detail.contains("closed"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(!reader.is_connected());

        let id = store
            .append_messages("killed", &[message(1)])
            .await
            .unwrap()[0];
        let reads = reader
            .read(&[("killed", first)], Duration::from_secs(1), 10)
            .await
            .unwrap();
        assert_eq!(read_ids(&reads), [(0, vec![id])]);
        assert!(reader.is_connected());
        assert_eq!(reader.handshakes_for_test(), 2);
        // The killed connection was not leaked: the store's, the reader's, and the one asking.
        clients_become(&redis, "connected_clients", 3).await;
    })
    .unwrap();
}

#[test]
fn reader_reconnects_after_its_connection_is_killed_uring() {
    reader_survives_a_kill(Backend::Uring);
}

#[test]
fn reader_reconnects_after_its_connection_is_killed_epoll() {
    reader_survives_a_kill(Backend::Epoll);
}

/// A reply that does not come within block + timeout (the server is paused) fails the call
/// with a timeout, enforced by the runtime's deadline; the next call opens a new connection.
/// A silent server times out in the handshake.
#[test]
fn reader_times_out_after_block_and_timeout() {
    let redis = Redis::start();
    let timeout = Duration::from_millis(300);
    let cfg = config(&redis.url(), timeout);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = config(
        &format!("redis://{}", listener.local_addr().unwrap()),
        timeout,
    );
    rt::run_local(Backend::Uring, async move {
        let mut reader = StreamReader::new(&cfg);
        assert!(
            reader
                .read(&[("paused", ZERO)], Duration::ZERO, 1)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(redis.raw("CLIENT PAUSE 5000 ALL"), b"+OK\r\n");
        let block = Duration::from_millis(200);
        let start = Instant::now();
        let outcome = reader.read(&[("paused", ZERO)], block, 1).await;
        let took = start.elapsed();
        assert_eq!(
            outcome,
            Err(StoreError::Timeout {
                side: ringchat::store::Side::Redis
            })
        );
        assert!(
            took >= block + timeout - Duration::from_millis(20)
                && took < block + timeout + Duration::from_millis(500),
            "{took:?}"
        );
        assert_eq!(redis.raw("CLIENT UNPAUSE"), b"+OK\r\n");
        let id = redis.raw_args(&[
            b"XADD",
            b"paused",
            b"*",
            b"payload",
            br#"{"content":"x","timestamp":1,"user_id":1}"#,
        ]);
        assert!(id.starts_with(b"$"), "{}", String::from_utf8_lossy(&id));
        let reads = reader
            .read(&[("paused", ZERO)], Duration::ZERO, 1)
            .await
            .unwrap();
        assert_eq!(reads[0].messages[0].content, "x");
        assert_eq!(reader.handshakes_for_test(), 2);

        // Nothing ever answers the handshake: a timeout after the configured timeout.
        let mut reader = StreamReader::new(&silent);
        let start = Instant::now();
        let outcome = reader
            .read(&[("x", ZERO)], Duration::from_secs(10), 1)
            .await;
        assert_eq!(
            outcome,
            Err(StoreError::Timeout {
                side: ringchat::store::Side::Redis
            })
        );
        let took = start.elapsed();
        assert!(
            took >= timeout - Duration::from_millis(20) && took < timeout * 3,
            "{took:?}"
        );
    })
    .unwrap();
    drop(listener);
}

/// The reader logs in and selects its database like the pipelined connection, on RESP3 and on
/// a server without HELLO (RESP2, whose XREAD reply is an array, not a map).
#[test]
fn reader_uses_auth_select_and_both_protocols() {
    for resp2 in [false, true] {
        let extra: &[&str] = if resp2 {
            &["--rename-command", "HELLO", ""]
        } else {
            &[]
        };
        let redis = Redis::start_with(extra);
        redis.raw("ACL SETUSER carol on >s3cr%t ~* &* +@all");
        let url = format!("redis://carol:s3cr%25t@127.0.0.1:{}/4", redis.port);
        let cfg = config(&url, Duration::from_secs(2));
        rt::run_local(Backend::Epoll, async move {
            let store = RedisStore::connect(cfg.clone());
            let mut reader = StreamReader::new(&cfg);
            let ids = store
                .append_messages("db4-room", &[message(1), message(2)])
                .await
                .unwrap();
            // Not in database 0.
            assert_eq!(redis.raw("EXISTS db4-room"), b":0\r\n");
            let reads = reader
                .read(
                    &[("db4-room", ZERO), ("other", ZERO)],
                    Duration::from_millis(100),
                    10,
                )
                .await
                .unwrap();
            assert_eq!(read_ids(&reads), [(0, ids.clone())], "resp2: {resp2}");
            let list = String::from_utf8(redis.raw("CLIENT LIST")).unwrap();
            let reader_line = list
                .lines()
                .find(|line| line.contains("cmd=xread"))
                .unwrap_or_else(|| panic!("{list}"));
            let resp = if resp2 { "resp=2" } else { "resp=3" };
            assert!(
                reader_line.contains("user=carol")
                    && reader_line.contains(" db=4 ")
                    && reader_line.contains(resp),
                "{reader_line}"
            );
            // A wrong password: the handshake's refusal, at once.
            let wrong = config(
                &format!("redis://carol:nope@127.0.0.1:{}/4", redis.port),
                Duration::from_secs(2),
            );
            let start = Instant::now();
            match StreamReader::new(&wrong)
                .read(&[("db4-room", ZERO)], Duration::from_secs(5), 1)
                .await
            {
                Err(StoreError::Unavailable { detail, .. }) => {
                    assert!(detail.contains("WRONGPASS"), "{detail}")
                }
                other => panic!("{other:?}"),
            }
            assert!(start.elapsed() < Duration::from_millis(500));
        })
        .unwrap();
    }
}

/// A read future dropped while its XREAD blocks (which callers should not do) leaves a socket
/// read in flight: the next call closes that connection through the runtime and opens another,
/// and dropping a reader in that state closes its connection too. Nothing is leaked.
fn reader_cleans_up_a_dropped_read(backend: Backend) {
    let redis = Redis::start();
    let cfg = config(&redis.url(), Duration::from_secs(2));
    rt::run_local(backend, async move {
        let mut reader = StreamReader::new(&cfg);
        let streams = [("dropped", ZERO)];
        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            reader.read(&streams, Duration::from_secs(10), 1),
        )
        .await;
        assert!(abandoned.is_err(), "{abandoned:?}");
        // The reader's blocked connection and the one asking.
        clients_become(&redis, "connected_clients", 2).await;
        let start = Instant::now();
        let reads = reader.read(&streams, Duration::ZERO, 1).await.unwrap();
        assert!(reads.is_empty());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(reader.handshakes_for_test(), 2);
        clients_become(&redis, "connected_clients", 2).await;

        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            reader.read(&streams, Duration::from_secs(10), 1),
        )
        .await;
        assert!(abandoned.is_err(), "{abandoned:?}");
        drop(reader);
        clients_become(&redis, "connected_clients", 1).await;
    })
    .unwrap();
}

#[test]
fn reader_cleans_up_a_dropped_read_uring() {
    reader_cleans_up_a_dropped_read(Backend::Uring);
}

#[test]
fn reader_cleans_up_a_dropped_read_epoll() {
    reader_cleans_up_a_dropped_read(Backend::Epoll);
}
