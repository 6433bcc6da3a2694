//! The chat over WebSocket against the real binary with MariaDB for users and Redis for sessions
//! and history: messages acknowledged in post order with increasing ids, stored as the reference
//! stores them (one stream per room, entries `payload <json>`), and history plus the session
//! surviving a restart of ringchat (the first page in `hello`, the rest by `requestRoomHistory`).
//! A bogus session cookie is closed with 1008.
//!
//! The client (sign-up, WebSocket) is the root crate's tests/common/chat_client.rs.

#[path = "../../tests/common/chat_client.rs"]
mod chat_client;

use serde_json::Value;

use chat_client::{Ws, id_key, sign_up};
use ringchat_proto_tests::{MariaDb, Redis, Ringchat};

fn contents(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

/// The bulk strings of a RESP reply, in order (nesting flattened).
fn bulk_strings(reply: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < reply.len() {
        let end = i + reply[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("truncated reply {:?}", String::from_utf8_lossy(reply)));
        let line = &reply[i..end];
        i = end + 2;
        match line.first() {
            Some(b'$') => {
                let len: usize = std::str::from_utf8(&line[1..]).unwrap().parse().unwrap();
                out.push(String::from_utf8(reply[i..i + len].to_vec()).unwrap());
                i += len + 2;
            }
            Some(b'*') => {}
            _ => panic!("unexpected reply {:?}", String::from_utf8_lossy(reply)),
        }
    }
    out
}

const ROOMS: [&str; 4] = ["beast", "async", "db", "wasm"];
const N: usize = 120;

#[test]
fn chat_history_survives_a_restart_on_redis_and_mariadb() {
    let mariadb = MariaDb::start();
    let redis = Redis::start();
    let (mysql_url, redis_url) = (mariadb.url(), redis.url());
    let mut server = Ringchat::start(&[
        "--redis",
        &redis_url,
        "--mysql",
        &mysql_url,
        "--threads",
        "2",
    ]);

    let cookie = sign_up(server.addr, "erin1");
    let mut ws = Ws::open(server.addr, Some(&cookie));
    let hello = ws.event();
    assert_eq!(hello["type"], "hello", "{hello:?}");
    let rooms: Vec<&str> = hello["payload"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ROOMS);
    assert!(
        hello["payload"]["rooms"][2]["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let me = hello["payload"]["me"].clone();
    assert_eq!(me["username"].as_str().unwrap(), "erin1");
    let my_id = me["id"].as_i64().expect("me.id is an integer");

    for i in 0..N {
        ws.send(&format!(
            r#"{{"type":"clientMessages","payload":{{"roomId":"db","messages":[{{"content":"n{i}"}}]}}}}"#
        ));
    }
    // Acknowledged by the broadcasts; posts that arrive together may share one event.
    let mut acked: Vec<Value> = Vec::new();
    while acked.len() < N {
        let ev = ws.event();
        assert_eq!(ev["type"], "serverMessages", "{ev:?}");
        assert_eq!(ev["payload"]["roomId"].as_str().unwrap(), "db");
        acked.extend(
            ev["payload"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    assert_eq!(acked.len(), N);
    let expected: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    assert_eq!(contents(&acked), expected, "acknowledged in post order");
    for pair in acked.windows(2) {
        assert!(
            id_key(pair[0]["id"].as_str().unwrap()) < id_key(pair[1]["id"].as_str().unwrap()),
            "ids not increasing: {:?} then {:?}",
            pair[0]["id"],
            pair[1]["id"]
        );
    }
    for m in &acked {
        assert_eq!(m["user"]["username"].as_str().unwrap(), "erin1");
    }

    // The data model, from the outside: stream `db`, entries `payload <json>`.
    let xlen = redis.raw("XLEN db");
    assert_eq!(
        xlen,
        format!(":{N}\r\n").as_bytes(),
        "{:?}",
        String::from_utf8_lossy(&xlen)
    );
    let first = bulk_strings(&redis.raw("XRANGE db - + COUNT 1"));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(
        first[0],
        acked[0]["id"].as_str().unwrap(),
        "the stream id is the message id"
    );
    assert_eq!(first[1], "payload");
    // The reference's keys, in its order.
    assert!(
        first[2].starts_with(r#"{"content":"n0","timestamp":"#)
            && first[2].contains(r#","user_id":"#),
        "{}",
        first[2]
    );
    let payload: Value = serde_json::from_str(&first[2]).unwrap();
    assert_eq!(payload.as_object().unwrap().len(), 3, "{}", first[2]);
    assert_eq!(payload["content"].as_str().unwrap(), "n0");
    assert!(payload["timestamp"].is_u64(), "{}", first[2]);
    assert_eq!(payload["user_id"].as_i64(), Some(my_id), "{}", first[2]);
    assert_eq!(redis.raw("TYPE db"), b"+stream\r\n");

    drop(ws);
    server.restart();

    // The session lives in Redis, so the old cookie still works.
    let mut ws = Ws::open(server.addr, Some(&cookie));
    let hello = ws.event();
    assert_eq!(hello["type"], "hello", "{hello:?}");
    assert_eq!(
        hello["payload"]["me"]["username"].as_str().unwrap(),
        "erin1"
    );
    let db = &hello["payload"]["rooms"][2];
    assert_eq!(db["id"].as_str().unwrap(), "db");
    let page = db["messages"].as_array().unwrap();
    let newest: Vec<String> = (20..N).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(
        contents(page),
        newest,
        "hello: the newest 100, newest first"
    );
    assert_eq!(db["hasMoreMessages"], true);
    for (m, sent) in page.iter().zip(acked.iter().rev()) {
        assert_eq!(m["id"], sent["id"], "ids survive the restart");
    }
    let oldest = page.last().unwrap()["id"].as_str().unwrap().to_string();
    ws.send(&format!(
        r#"{{"type":"requestRoomHistory","payload":{{"roomId":"db","firstMessageId":"{oldest}"}}}}"#
    ));
    let ev = ws.event();
    assert_eq!(ev["type"], "roomHistory", "{ev:?}");
    assert_eq!(ev["payload"]["roomId"].as_str().unwrap(), "db");
    let rest: Vec<String> = (0..20).rev().map(|i| format!("n{i}")).collect();
    assert_eq!(
        contents(ev["payload"]["messages"].as_array().unwrap()),
        rest
    );
    assert_eq!(ev["payload"]["hasMoreMessages"], false);

    // A session Redis does not know is closed with 1008 (policy violation).
    let mut bogus = Ws::open(server.addr, Some("sid=AAAAAAAAAAAAAAAAAAAAAA=="));
    let (op, payload) = bogus.frame();
    assert_eq!(op, 8, "expected a close frame: {payload:?}");
    assert!(payload.len() >= 2, "close without a code");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);

    drop(ws);
    drop(server);
}
