//! Fuzzes the MySQL client engine (`Connection`) with arbitrary server bytes, in every state it
//! can reach: the greeting, each authentication step (both plugins, the public key exchange,
//! auth switches), and the response to every kind of command, text and binary result sets in
//! both EOF styles. It must never panic, never consume more than it is offered, keep failing
//! with its first error, and give the same consumption, events and error whether a server turn
//! arrives whole or split at any byte.
//!
//! Input: a mode byte (which options and limits), a split byte, then server turns, each a 2-byte
//! big-endian length and that many bytes (the last may be cut short). Between turns the harness
//! hands out what the engine wants to send, as a runtime would. The engine queues, up front, the
//! commands of the recorded session in `src/proto/mysql/fixtures/native_session.hex`, so its
//! server turns (the seeds in `corpus/mysql_decode/`) drive it through a whole session. It
//! checks no result semantics; `src/proto/mysql/tests.rs` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::mysql::{
    Command, Connection, Event, Limits, MysqlError, Options, Statement, Value,
};

/// A key for the "given up front" mode (generated with `openssl genrsa 2048`).
const SERVER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqXpbQX3uVwz6sCnNKP+M
yctBdqN2LdC+u1KfjNvFcRnaBBqGwU6j8XSURf2zxwQsL5coVpmFRgtPN7dCE7iY
q9JiFms8S0vKQ/knRTVDLkc976NGWyOr4wEeqJfV8nooDJjz1qssYpeHSQ9L9Fl9
I0TmHK3VkD056i0NT1vhb1JFPAuhNQh5RP48CiMI8mzoLyBhAoMy0WxkN4atYted
2hti9QteHQn08zpzSHRNWCfVw9Y2yuE5N+AJ6PmQ+zq7BkAmmEAkMFF9BwX0St+L
2M+R4aJsEBsLkg5StkRtoQZ+UdOc/pmKXYaN/qX3A85LEHN83kFHKXj//yU2t4ke
TwIDAQAB
-----END PUBLIC KEY-----
";

fn options(mode: u8) -> Options {
    let options = Options::new(
        "servertech_user",
        b"ringchat-test-password".to_vec(),
        [mode; 32],
    )
    .database("servertech_chat");
    match mode % 4 {
        0 => options,
        1 => options.server_public_key_pem(SERVER_PUBLIC_KEY),
        2 => options.allow_public_key_retrieval(false),
        _ => options.limits(Limits {
            packet_bytes_max: 4096,
            columns_max: 2,
            result_rows_max: 3,
            result_bytes_max: 256,
        }),
    }
}

fn statement(id: u32, params: u16, columns: u16) -> Statement {
    Statement {
        id,
        params,
        columns,
    }
}

/// The recorded session's commands, in order (values shortened: only server bytes matter).
fn commands() -> Vec<Command> {
    let text = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    let insert = statement(5, 3, 0);
    let insert_blob = statement(6, 2, 0);
    let user = |name: &str| Command::Execute {
        statement: insert,
        params: vec![text(name), text("e"), text("p")],
    };
    vec![
        Command::Query("CREATE TABLE users".into()),
        Command::Prepare("INSERT INTO users".into()),
        user("alice"),
        user("n"),
        user("alice"),
        Command::Execute {
            statement: insert,
            params: vec![text("bob"), Value::NULL, text("x")],
        },
        Command::Query("CREATE TABLE blobs".into()),
        Command::Prepare("INSERT INTO blobs".into()),
        Command::Execute {
            statement: insert_blob,
            params: vec![text("big"), Value::NULL],
        },
        Command::Execute {
            statement: insert_blob,
            params: vec![Value::NULL, text("n")],
        },
        Command::Prepare("SELECT blobs".into()),
        Command::Execute {
            statement: statement(7, 0, 3),
            params: vec![],
        },
        Command::Prepare("SELECT ?, ?, ?, ?, ?, ?, ?".into()),
        Command::Execute {
            statement: statement(8, 7, 7),
            params: vec![
                Value::NULL,
                Value::Int(-42),
                Value::UInt(u64::MAX),
                Value::Double(1.5),
                text("n"),
                text(""),
                Value::Int(i64::MIN),
            ],
        },
        Command::Prepare("SELECT by email".into()),
        Command::Execute {
            statement: statement(9, 1, 4),
            params: vec![text("alice@example.com")],
        },
        Command::Execute {
            statement: statement(9, 1, 4),
            params: vec![text("nobody@example.com")],
        },
        Command::Prepare("SELECT names".into()),
        Command::Execute {
            statement: statement(10, 3, 2),
            params: vec![Value::Int(1), Value::Int(2), Value::UInt(3)],
        },
        Command::Query("SELECT users".into()),
        Command::Query("SELECT NULL".into()),
        Command::Query("SELECT * FROM no_such_table".into()),
        Command::Ping,
        Command::CloseStatement(insert),
        Command::CloseStatement(statement(8, 7, 7)),
        Command::Ping,
        Command::Quit,
    ]
}

fn drain(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// One server turn fed to a copy of the engine, in one piece or two.
fn feed(
    conn: &Connection,
    input: &[u8],
    cut: Option<usize>,
) -> (Result<usize, MysqlError>, Vec<Event>) {
    let mut conn = conn.clone();
    let Some(cut) = cut else {
        let result = conn.handle_input(input);
        return (result, drain(&mut conn));
    };
    match conn.handle_input(&input[..cut]) {
        Err(error) => (Err(error), drain(&mut conn)),
        Ok(first) => {
            assert!(first <= cut, "consumed past its input");
            let second = conn.handle_input(&input[first..]).map(|n| first + n);
            (second, drain(&mut conn))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, cut, rest @ ..] = data else {
        return;
    };
    let mut rest: &[u8] = rest;
    let Ok(mut conn) = Connection::new(&options(*mode)) else {
        return;
    };
    for command in commands() {
        conn.queue(command).expect("the session's commands queue");
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    while let &[high, low, ref tail @ ..] = rest {
        let length = usize::from(u16::from_be_bytes([high, low])).min(tail.len());
        pending.extend_from_slice(&tail[..length]);
        rest = &tail[length..];

        let whole = feed(&conn, &pending, None);
        let split_at = usize::from(*cut).min(pending.len());
        assert_eq!(
            feed(&conn, &pending, Some(split_at)),
            whole,
            "split at {split_at}"
        );

        let result = conn.handle_input(&pending);
        assert_eq!((result.clone(), drain(&mut conn)), whole);
        match result {
            Ok(consumed) => {
                assert!(consumed <= pending.len(), "consumed past its input");
                pending.drain(..consumed);
            }
            Err(error) => {
                // Sticky: the engine repeats its error and sends nothing more.
                assert_eq!(conn.handle_input(b"\x01\x00\x00\x00\x00"), Err(error));
                assert_eq!(conn.poll_transmit(&mut out), 0);
                return;
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
    }
});
