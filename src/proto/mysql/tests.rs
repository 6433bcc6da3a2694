//! Vectors and properties for the MySQL core, as data-driven tables.
//!
//! - Recorded sessions with a real MariaDB (`fixtures/`, see its README): the engine must write
//!   exactly the recorded client bytes and read the recorded server bytes into the expected
//!   events and errors.
//! - Constructed exchanges where no real server is at hand: `caching_sha2_password` (MySQL 8)
//!   fast and full authentication, checked against the documented algorithms computed here
//!   independently (SHA-256, and RSA-OAEP decrypted with a key pair generated here), auth
//!   switches, classic EOF result sets, limits, and protocol violations.
//! - MySQL 8 server bytes published by others (no MySQL 8 runs here; each constant cites its
//!   source and says how far it is a recording): greetings of 8.0.18, 8.0.22, 8.0.30 and 8.0.32,
//!   `caching_sha2_password` fast and full authentication with the server's own RSA
//!   public key, and AuthSwitchRequests to it; our auth responses checked against the bytes
//!   other clients sent or assert, our RSA-OAEP output checked under the servers' keys.
//! - Every server chunk is fed whole and split in two at every byte: the first part must
//!   consume exactly the whole packets it holds (an incomplete packet is `Partial` and consumes
//!   nothing), and the two parts together must give the same events, errors and bytes consumed
//!   as the whole. Chunks over 4 KiB are split at every byte for the first part, and fed to the
//!   end at every byte within 16 of a packet boundary and every 997th byte (feeding a 100 KiB
//!   row to the end at each of its bytes would be quadratic).
//! - Packet framing across the 16 MiB boundary, a payload over the limit refused from its
//!   header alone, and property tests: framing round trips, binary values round trips, and our
//!   binary encoding against mysql_common's own serializer and deserializer.

use std::collections::{HashMap, VecDeque};

use mysql_common::io::ParseBuf;
use mysql_common::packets::ComStmtExecuteRequestBuilder;
use mysql_common::proto::MySerialize;
use mysql_common::value::{BinValue, ValueDeserializer};
use proptest::prelude::*;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use sha2::Digest;

use super::packet::{PACKET_HEADER_BYTES, PACKET_PAYLOAD_BYTES_MAX, decode_packet, encode_packet};
use super::seeded_rng::SeededRng;
use super::*;

// ---------------------------------------------------------------------------------------------
// Feeding helpers
// ---------------------------------------------------------------------------------------------

/// The end offsets of the whole packets framed in `bytes` (framing only, no limit).
fn packet_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while let Ok(Decode::Complete { consumed, .. }) = decode_packet(&bytes[at..], usize::MAX) {
        at += consumed;
        ends.push(at);
    }
    ends
}

fn drain(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

type Fed = (Result<usize, MysqlError>, Vec<Event>);

fn feed_whole(conn: &mut Connection, bytes: &[u8]) -> Fed {
    let result = conn.handle_input(bytes);
    (result, drain(conn))
}

/// Feeds `bytes` to a clone split at `cut`: the first part must consume exactly the whole
/// packets it holds; both parts together must match `whole`.
fn check_split(conn: &Connection, bytes: &[u8], cut: usize, whole: &Fed, to_the_end: bool) {
    let mut c = conn.clone();
    let first = c.handle_input(&bytes[..cut]);
    let mut events = drain(&mut c);
    let consumed = match first {
        Err(error) => {
            assert_eq!(
                whole.0,
                Err(error),
                "cut at {cut}: an error the whole feed does not give"
            );
            return;
        }
        Ok(consumed) => consumed,
    };
    if whole.0.is_ok() {
        let boundary = packet_ends(&bytes[..cut]).last().copied().unwrap_or(0);
        assert_eq!(
            consumed, boundary,
            "cut at {cut}: must consume the whole packets only"
        );
    }
    if !to_the_end {
        return;
    }
    let second = c.handle_input(&bytes[consumed..]);
    events.extend(drain(&mut c));
    let total = second.map(|n| consumed + n);
    assert_eq!(
        total, whole.0,
        "cut at {cut}: result differs from the whole feed"
    );
    assert_eq!(
        events, whole.1,
        "cut at {cut}: events differ from the whole feed"
    );
}

/// Feeds one server chunk whole, after checking it split at every byte on clones.
fn feed(conn: &mut Connection, bytes: &[u8]) -> Fed {
    let whole = feed_whole(&mut conn.clone(), bytes);
    let ends = packet_ends(bytes);
    let near_boundary = |cut: usize| {
        std::iter::once(0)
            .chain(ends.iter().copied())
            .any(|end| cut.abs_diff(end) <= 16)
    };
    for cut in 0..=bytes.len() {
        let to_the_end = bytes.len() <= 4096 || near_boundary(cut) || cut % 997 == 0;
        check_split(conn, bytes, cut, &whole, to_the_end);
    }
    let fed = feed_whole(conn, bytes);
    assert_eq!(fed, whole);
    if let Ok(consumed) = fed.0 {
        assert_eq!(
            consumed,
            bytes.len(),
            "a server chunk ends with a whole packet"
        );
    }
    fed
}

fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let n = conn.poll_transmit(&mut out);
    assert_eq!(n, out.len());
    out
}

/// Frames payloads as consecutive packets starting at `sequence_id`.
fn packets(sequence_id: u8, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sequence_id = sequence_id;
    for payload in payloads {
        sequence_id = encode_packet(payload, sequence_id, &mut out);
    }
    out
}

/// The payloads of the packets in `bytes` (which must hold whole packets only).
fn payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_packet(&bytes[at..], usize::MAX) {
            Ok(Decode::Complete { value, consumed }) => {
                out.push(value.payload.into_owned());
                at += consumed;
            }
            other => panic!("not whole packets: {other:?}"),
        }
    }
    out
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Recorded sessions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Server,
    Client,
}

fn transcript(text: &str) -> Vec<(Dir, Vec<u8>)> {
    let mut chunks: Vec<(Dir, Vec<u8>)> = Vec::new();
    let mut previous_blank = true;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            previous_blank = true;
            continue;
        }
        let (dir, bytes) = match line.split_at(2) {
            ("S ", bytes) => (Dir::Server, hex(bytes)),
            ("C ", bytes) => (Dir::Client, hex(bytes)),
            _ => panic!("bad transcript line {line:?}"),
        };
        match chunks.last_mut() {
            Some(last) if !previous_blank && last.0 == dir => last.1.extend(bytes),
            _ => chunks.push((dir, bytes)),
        }
        previous_blank = false;
    }
    chunks
}

const PASSWORD: &[u8] = b"ringchat-test-password";
const SEED: [u8; 32] = [7; 32];

fn recorded_options() -> Options {
    Options::new("servertech_user", PASSWORD, SEED).database("servertech_chat")
}

/// One command of a recorded session; prepared statements are named, and resolved from the
/// `Prepared` events as the replay goes (statement ids come from the server).
#[derive(Debug, Clone)]
enum Step {
    Query(&'static str),
    Prepare(&'static str, &'static str),
    Execute(&'static str, Vec<Value>),
    Close(&'static str),
    Ping,
    Quit,
}

/// What an event must be (the parts of it that tests pin down).
#[derive(Debug, Clone)]
enum Want {
    Done(&'static str),
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
    },
    Rows(&'static [(&'static str, ColumnType)], Vec<Vec<Value>>),
    Prepared {
        params: u16,
        columns: &'static [&'static str],
    },
    Err(u16, &'static str, &'static str),
    Pong,
    Closed,
}

fn check(event: &Event, want: &Want) {
    let ok = match (event, want) {
        (Event::HandshakeDone(info), Want::Done(plugin)) => info.auth_plugin == *plugin,
        (
            Event::QueryResult(result),
            Want::Ok {
                affected_rows,
                last_insert_id,
            },
        ) => {
            result.columns.is_empty()
                && result.affected_rows == *affected_rows
                && result.last_insert_id == *last_insert_id
        }
        (Event::QueryResult(result), Want::Rows(columns, rows)) => {
            let got: Vec<(&str, ColumnType)> = result
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.column_type))
                .collect();
            assert_eq!(&got, columns);
            assert_eq!(&result.rows, rows);
            true
        }
        (Event::Prepared(prepared), Want::Prepared { params, columns }) => {
            let names: Vec<&str> = prepared.columns.iter().map(|c| c.name.as_str()).collect();
            prepared.statement.params == *params
                && prepared.params.len() == usize::from(*params)
                && usize::from(prepared.statement.columns) == columns.len()
                && names == *columns
        }
        (Event::Error(error), Want::Err(code, state, message)) => {
            error.code == *code && error.state == *state && error.message == *message
        }
        (Event::Pong, Want::Pong) => true,
        (Event::StatementClosed(_), Want::Closed) => true,
        _ => false,
    };
    assert!(ok, "event {event:?} is not {want:?}");
}

/// Replays a transcript: queues the steps as the client chunks need them, checks the bytes
/// the engine writes, feeds the server chunks (split at every byte), and checks the events.
/// Returns the error that ended the session, if any.
fn replay(
    options: &Options,
    text: &str,
    steps: Vec<(Step, Option<Want>)>,
    first: Option<Want>,
) -> Option<MysqlError> {
    let chunks = transcript(text);
    let mut conn = Connection::new(options).expect("options are valid");
    let mut steps = VecDeque::from(steps);
    let mut wants: VecDeque<Want> = first.into_iter().collect();
    let mut statements: HashMap<&'static str, Statement> = HashMap::new();
    // Commands awaiting their event, with the name to give a prepared statement.
    let mut in_flight: VecDeque<Option<&'static str>> = VecDeque::new();
    let handle_events =
        |events: Vec<Event>,
         wants: &mut VecDeque<Want>,
         in_flight: &mut VecDeque<Option<&'static str>>,
         statements: &mut HashMap<&'static str, Statement>| {
            for event in events {
                let want = wants
                    .pop_front()
                    .unwrap_or_else(|| panic!("unexpected {event:?}"));
                check(&event, &want);
                if matches!(event, Event::HandshakeDone(_)) {
                    continue;
                }
                let name = in_flight.pop_front().expect("an event answers a command");
                if let (Event::Prepared(prepared), Some(name)) = (&event, name) {
                    statements.insert(name, prepared.statement);
                }
            }
        };
    for (dir, bytes) in chunks {
        match dir {
            Dir::Client => {
                let mut out = transmit(&mut conn);
                while out.len() < bytes.len() {
                    let (step, want) = steps.pop_front().expect("a step for these client bytes");
                    let statement = |name: &str| *statements.get(name).expect("prepared before");
                    let (command, name) = match step {
                        Step::Query(sql) => (Command::Query(sql.into()), None),
                        Step::Prepare(name, sql) => (Command::Prepare(sql.into()), Some(name)),
                        Step::Execute(name, params) => (
                            Command::Execute {
                                statement: statement(name),
                                params,
                            },
                            None,
                        ),
                        Step::Close(name) => (Command::CloseStatement(statement(name)), None),
                        Step::Ping => (Command::Ping, None),
                        Step::Quit => (Command::Quit, None),
                    };
                    if let Some(want) = want {
                        wants.push_back(want);
                        in_flight.push_back(name);
                    }
                    conn.queue(command).expect("the recorded command queues");
                    out.extend(transmit(&mut conn));
                    let events = drain(&mut conn);
                    handle_events(events, &mut wants, &mut in_flight, &mut statements);
                }
                assert!(
                    out == bytes,
                    "client bytes differ: {}",
                    first_difference(&out, &bytes)
                );
            }
            Dir::Server => {
                let (result, events) = feed(&mut conn, &bytes);
                handle_events(events, &mut wants, &mut in_flight, &mut statements);
                if let Err(error) = result {
                    assert!(
                        wants.is_empty(),
                        "session ended early by {error:?}: {wants:?}"
                    );
                    return Some(error);
                }
            }
        }
    }
    assert!(wants.is_empty(), "events never came: {wants:?}");
    assert!(
        steps.iter().all(|(s, _)| matches!(s, Step::Quit)),
        "steps never sent: {steps:?}"
    );
    None
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} and {}, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

/// The 100 KiB value of the session: the alphabet, over and over.
fn big_value() -> Vec<u8> {
    (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect()
}

const INSERT_USER: &str = "INSERT INTO users (username, email, password) VALUES (?, ?, ?)";
const SCRYPT: &str = "$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA";
const ARGON: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
const CRAB: &str = "ñandú 🦀";

#[test]
fn recorded_native_password_session() {
    use ColumnType::*;
    let user = |name: &str, email: &str, hash: &str| vec![bytes(name), bytes(email), bytes(hash)];
    let steps = vec![
        (
            Step::Query(
                "CREATE TABLE IF NOT EXISTS users (id BIGINT PRIMARY KEY AUTO_INCREMENT, username \
                 VARCHAR(100) NOT NULL, email VARCHAR(100) NOT NULL, password TEXT NOT NULL, \
                 UNIQUE (username), UNIQUE (email))",
            ),
            Some(Want::Ok {
                affected_rows: 0,
                last_insert_id: 0,
            }),
        ),
        (
            Step::Prepare("insert", INSERT_USER),
            Some(Want::Prepared {
                params: 3,
                columns: &[],
            }),
        ),
        (
            Step::Execute("insert", user("alice", "alice@example.com", SCRYPT)),
            Some(Want::Ok {
                affected_rows: 1,
                last_insert_id: 1,
            }),
        ),
        (
            Step::Execute("insert", user(CRAB, "nandu@example.com", ARGON)),
            Some(Want::Ok {
                affected_rows: 1,
                last_insert_id: 2,
            }),
        ),
        (
            Step::Execute("insert", user("alice", "other@example.com", "x")),
            Some(Want::Err(
                1062,
                "23000",
                "Duplicate entry 'alice' for key 'username'",
            )),
        ),
        (
            Step::Execute("insert", vec![bytes("bob"), Value::NULL, bytes("x")]),
            Some(Want::Err(1048, "23000", "Column 'email' cannot be null")),
        ),
        (
            Step::Query(
                "CREATE TABLE IF NOT EXISTS blobs (id BIGINT PRIMARY KEY AUTO_INCREMENT, body \
                 MEDIUMTEXT NULL, note VARCHAR(100) NULL)",
            ),
            Some(Want::Ok {
                affected_rows: 0,
                last_insert_id: 0,
            }),
        ),
        (
            Step::Prepare(
                "insert_blob",
                "INSERT INTO blobs (body, note) VALUES (?, ?)",
            ),
            Some(Want::Prepared {
                params: 2,
                columns: &[],
            }),
        ),
        (
            Step::Execute("insert_blob", vec![Value::Bytes(big_value()), Value::NULL]),
            Some(Want::Ok {
                affected_rows: 1,
                last_insert_id: 1,
            }),
        ),
        (
            Step::Execute("insert_blob", vec![Value::NULL, bytes(CRAB)]),
            Some(Want::Ok {
                affected_rows: 1,
                last_insert_id: 2,
            }),
        ),
        (
            Step::Prepare("blobs", "SELECT id, body, note FROM blobs ORDER BY id"),
            Some(Want::Prepared {
                params: 0,
                columns: &["id", "body", "note"],
            }),
        ),
        (
            Step::Execute("blobs", vec![]),
            Some(Want::Rows(
                &[
                    ("id", MYSQL_TYPE_LONGLONG),
                    ("body", MYSQL_TYPE_BLOB),
                    ("note", MYSQL_TYPE_VAR_STRING),
                ],
                vec![
                    vec![Value::Int(1), Value::Bytes(big_value()), Value::NULL],
                    vec![Value::Int(2), Value::NULL, bytes(CRAB)],
                ],
            )),
        ),
        (
            Step::Prepare("echo", "SELECT ?, ?, ?, ?, ?, ?, ?"),
            Some(Want::Prepared {
                params: 7,
                columns: &["?", "?", "?", "?", "?", "?", "?"],
            }),
        ),
        (
            Step::Execute(
                "echo",
                vec![
                    Value::NULL,
                    Value::Int(-42),
                    Value::UInt(u64::MAX),
                    Value::Double(1.5),
                    bytes(CRAB),
                    bytes(""),
                    Value::Int(i64::MIN),
                ],
            ),
            Some(Want::Rows(
                &[
                    ("?", MYSQL_TYPE_NULL),
                    ("?", MYSQL_TYPE_LONGLONG),
                    ("?", MYSQL_TYPE_LONGLONG),
                    ("?", MYSQL_TYPE_DOUBLE),
                    ("?", MYSQL_TYPE_VAR_STRING),
                    ("?", MYSQL_TYPE_VAR_STRING),
                    ("?", MYSQL_TYPE_LONGLONG),
                ],
                vec![vec![
                    Value::NULL,
                    Value::Int(-42),
                    Value::UInt(u64::MAX),
                    Value::Double(1.5),
                    bytes(CRAB),
                    bytes(""),
                    Value::Int(i64::MIN),
                ]],
            )),
        ),
        (
            Step::Prepare(
                "by_email",
                "SELECT id, username, email, password FROM users WHERE email = ?",
            ),
            Some(Want::Prepared {
                params: 1,
                columns: &["id", "username", "email", "password"],
            }),
        ),
        (
            Step::Execute("by_email", vec![bytes("alice@example.com")]),
            Some(Want::Rows(
                &[
                    ("id", MYSQL_TYPE_LONGLONG),
                    ("username", MYSQL_TYPE_VAR_STRING),
                    ("email", MYSQL_TYPE_VAR_STRING),
                    ("password", MYSQL_TYPE_BLOB),
                ],
                vec![vec![
                    Value::Int(1),
                    bytes("alice"),
                    bytes("alice@example.com"),
                    bytes(SCRYPT),
                ]],
            )),
        ),
        (
            Step::Execute("by_email", vec![bytes("nobody@example.com")]),
            Some(Want::Rows(
                &[
                    ("id", MYSQL_TYPE_LONGLONG),
                    ("username", MYSQL_TYPE_VAR_STRING),
                    ("email", MYSQL_TYPE_VAR_STRING),
                    ("password", MYSQL_TYPE_BLOB),
                ],
                vec![],
            )),
        ),
        (
            Step::Prepare(
                "names",
                "SELECT id, username FROM users WHERE id IN (?, ?, ?) ORDER BY id",
            ),
            Some(Want::Prepared {
                params: 3,
                columns: &["id", "username"],
            }),
        ),
        (
            Step::Execute("names", vec![Value::Int(1), Value::Int(2), Value::UInt(3)]),
            Some(Want::Rows(
                &[
                    ("id", MYSQL_TYPE_LONGLONG),
                    ("username", MYSQL_TYPE_VAR_STRING),
                ],
                vec![
                    vec![Value::Int(1), bytes("alice")],
                    vec![Value::Int(2), bytes(CRAB)],
                ],
            )),
        ),
        (
            Step::Query("SELECT id, username, email FROM users ORDER BY id"),
            Some(Want::Rows(
                &[
                    ("id", MYSQL_TYPE_LONGLONG),
                    ("username", MYSQL_TYPE_VAR_STRING),
                    ("email", MYSQL_TYPE_VAR_STRING),
                ],
                vec![
                    vec![bytes("1"), bytes("alice"), bytes("alice@example.com")],
                    vec![bytes("2"), bytes(CRAB), bytes("nandu@example.com")],
                ],
            )),
        ),
        (
            Step::Query("SELECT NULL, 1, 'x', 2.5, CAST('2024-01-02 03:04:05' AS DATETIME)"),
            Some(Want::Rows(
                &[
                    ("NULL", MYSQL_TYPE_NULL),
                    ("1", MYSQL_TYPE_LONG),
                    ("x", MYSQL_TYPE_VAR_STRING),
                    ("2.5", MYSQL_TYPE_NEWDECIMAL),
                    (
                        "CAST('2024-01-02 03:04:05' AS DATETIME)",
                        MYSQL_TYPE_DATETIME,
                    ),
                ],
                vec![vec![
                    Value::NULL,
                    bytes("1"),
                    bytes("x"),
                    bytes("2.5"),
                    bytes("2024-01-02 03:04:05"),
                ]],
            )),
        ),
        (
            Step::Query("SELECT * FROM no_such_table"),
            Some(Want::Err(
                1146,
                "42S02",
                "Table 'servertech_chat.no_such_table' doesn't exist",
            )),
        ),
        (Step::Ping, Some(Want::Pong)),
        (Step::Close("insert"), Some(Want::Closed)),
        (Step::Close("echo"), Some(Want::Closed)),
        (Step::Ping, Some(Want::Pong)),
        (Step::Quit, None),
    ];
    let error = replay(
        &recorded_options(),
        include_str!("fixtures/native_session.hex"),
        steps,
        Some(Want::Done(AUTH_MYSQL_NATIVE_PASSWORD)),
    );
    assert_eq!(error, None);
}

fn server_error(error: Option<MysqlError>) -> ServerError {
    match error {
        Some(MysqlError::Server(error)) => error,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn recorded_wrong_password_is_err_1045() {
    let options = Options::new("servertech_user", b"wrong-password".to_vec(), SEED)
        .database("servertech_chat");
    let error = server_error(replay(
        &options,
        include_str!("fixtures/bad_password.hex"),
        vec![],
        None,
    ));
    assert_eq!((error.code, error.state.as_str()), (1045, "28000"));
    assert_eq!(
        error.message,
        "Access denied for user 'servertech_user'@'127.0.0.1' (using password: YES)"
    );
}

#[test]
fn recorded_forbidden_database_is_err_1044() {
    let options = Options::new("servertech_user", PASSWORD, SEED).database("no_such_db");
    let error = server_error(replay(
        &options,
        include_str!("fixtures/forbidden_database.hex"),
        vec![],
        None,
    ));
    assert_eq!((error.code, error.state.as_str()), (1044, "42000"));
}

#[test]
fn recorded_switch_to_an_unsupported_plugin() {
    let options = Options::new("ed_user", PASSWORD, SEED).database("servertech_chat");
    let error = replay(
        &options,
        include_str!("fixtures/switch_to_ed25519.hex"),
        vec![],
        None,
    );
    assert_eq!(
        error,
        Some(MysqlError::UnsupportedAuthPlugin("client_ed25519".into()))
    );
}

#[test]
fn failed_connection_repeats_its_error_and_refuses_commands() {
    let chunks = transcript(include_str!("fixtures/bad_password.hex"));
    let options = Options::new("servertech_user", b"wrong-password".to_vec(), SEED)
        .database("servertech_chat");
    let mut conn = Connection::new(&options).unwrap();
    conn.queue(Command::Ping).unwrap();
    conn.handle_input(&chunks[0].1).unwrap();
    transmit(&mut conn);
    let error = conn.handle_input(&chunks[2].1).unwrap_err();
    assert_eq!(conn.phase(), Phase::Failed);
    assert_eq!(conn.handle_input(b"anything"), Err(error));
    assert_eq!(conn.queue(Command::Ping), Err(MysqlError::Closed));
    assert_eq!(conn.queued(), 0);
    assert!(transmit(&mut conn).is_empty());
}

#[test]
fn nothing_leaves_a_connection_that_failed_in_the_same_read() {
    // Found by fuzzing: the greeting and a malformed packet in one read. The greeting's reply
    // was produced before the error and must not be handed out after it.
    let greeting_payload = greeting(
        AUTH_CACHING_SHA2_PASSWORD,
        server_capabilities(true),
        &SCRAMBLE,
    );
    let bytes = [packets(0, &[greeting_payload]), packets(2, &[vec![0x07]])].concat();
    let mut conn = Connection::new(&sha2_options()).unwrap();
    let (result, _) = feed(&mut conn, &bytes);
    assert!(
        matches!(result, Err(MysqlError::Malformed(_))),
        "{result:?}"
    );
    assert!(transmit(&mut conn).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Constructed handshakes: caching_sha2_password, switches, refusals
// ---------------------------------------------------------------------------------------------

/// A known 20-byte scramble.
const SCRAMBLE: [u8; 20] = *b"0123456789abcdefghij";

fn server_capabilities(deprecate_eof: bool) -> CapabilityFlags {
    let mut capabilities = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_SSL
        | CapabilityFlags::CLIENT_QUERY_ATTRIBUTES;
    if deprecate_eof {
        capabilities |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
    }
    capabilities
}

/// A Protocol::HandshakeV10 payload as MySQL 8.4 sends it.
fn greeting(plugin: &str, capabilities: CapabilityFlags, scramble: &[u8; 20]) -> Vec<u8> {
    let caps = capabilities.bits().to_le_bytes();
    let mut p = vec![10];
    p.extend_from_slice(b"8.4.3\0");
    p.extend_from_slice(&42u32.to_le_bytes());
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&caps[..2]);
    p.push(255);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&caps[2..]);
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

fn ok_payload(header: u8, affected_rows: u8, last_insert_id: u8, status: u16) -> Vec<u8> {
    let mut p = vec![header, affected_rows, last_insert_id];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn ok() -> Vec<u8> {
    ok_payload(0x00, 0, 0, 2)
}

fn err_payload(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(message.as_bytes());
    p
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = sha1::Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// caching_sha2_password: "XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce))".
fn expected_sha2_scramble(password: &[u8], scramble: &[u8; 20]) -> Vec<u8> {
    let hash = sha256(&[password]);
    let mix = sha256(&[&sha256(&[&hash]), scramble]);
    hash.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// mysql_native_password: "SHA1(password) XOR SHA1(scramble, SHA1(SHA1(password)))".
fn expected_native_scramble(password: &[u8], scramble: &[u8; 20]) -> Vec<u8> {
    let hash = sha1(&[password]);
    let mix = sha1(&[scramble, &sha1(&[&hash])]);
    hash.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// The fields of a HandshakeResponse41 payload (with lenenc auth data).
#[derive(Debug)]
struct Response41 {
    capabilities: CapabilityFlags,
    max_packet: u32,
    collation: u8,
    user: Vec<u8>,
    auth: Vec<u8>,
    database: Option<Vec<u8>>,
    plugin: Vec<u8>,
}

fn parse_response41(payload: &[u8]) -> Response41 {
    let capabilities =
        CapabilityFlags::from_bits_truncate(u32::from_le_bytes(payload[..4].try_into().unwrap()));
    let max_packet = u32::from_le_bytes(payload[4..8].try_into().unwrap());
    let collation = payload[8];
    assert_eq!(payload[9..32], [0; 23]);
    let rest = &payload[32..];
    let nul = rest.iter().position(|&b| b == 0).unwrap();
    let user = rest[..nul].to_vec();
    let rest = &rest[nul + 1..];
    assert!(rest[0] < 0xfb, "short lenenc auth data");
    let auth = rest[1..1 + usize::from(rest[0])].to_vec();
    let mut rest = &rest[1 + usize::from(rest[0])..];
    let database = capabilities
        .contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB)
        .then(|| {
            let nul = rest.iter().position(|&b| b == 0).unwrap();
            let database = rest[..nul].to_vec();
            rest = &rest[nul + 1..];
            database
        });
    let nul = rest.iter().position(|&b| b == 0).unwrap();
    assert_eq!(nul + 1, rest.len(), "nothing after the plugin name");
    Response41 {
        capabilities,
        max_packet,
        collation,
        user,
        auth,
        database,
        plugin: rest[..nul].to_vec(),
    }
}

/// Feeds the greeting; returns the engine and our HandshakeResponse41.
fn greeted(options: &Options, greeting_payload: Vec<u8>) -> (Connection, Response41) {
    let mut conn = Connection::new(options).unwrap();
    let (result, events) = feed(&mut conn, &packets(0, &[greeting_payload]));
    result.unwrap();
    assert!(events.is_empty());
    let sent = transmit(&mut conn);
    assert_eq!(sent[3], 1, "the response is packet 1 of the exchange");
    let response = parse_response41(&payload_of(&sent));
    (conn, response)
}

fn payload_of(packet: &[u8]) -> Vec<u8> {
    let mut all = payloads(packet);
    assert_eq!(all.len(), 1, "one packet");
    all.remove(0)
}

fn sha2_options() -> Options {
    Options::new("servertech_user", PASSWORD, SEED).database("servertech_chat")
}

#[test]
fn handshake_response_negotiates_only_what_we_want() {
    let (_, response) = greeted(
        &sha2_options(),
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    let wanted = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF;
    assert_eq!(response.capabilities, wanted);
    assert_eq!(response.collation, 45, "utf8mb4_general_ci");
    assert_eq!(response.max_packet as usize, MYSQL_PACKET_BYTES_MAX);
    assert_eq!(response.user, b"servertech_user");
    assert_eq!(response.database.as_deref(), Some(&b"servertech_chat"[..]));
    assert_eq!(response.plugin, b"caching_sha2_password");

    // DEPRECATE_EOF only when offered; no database, no CONNECT_WITH_DB.
    let options = Options::new("u", PASSWORD, SEED);
    let (_, response) = greeted(
        &options,
        greeting(
            AUTH_MYSQL_NATIVE_PASSWORD,
            server_capabilities(false),
            &SCRAMBLE,
        ),
    );
    assert!(
        !response
            .capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    );
    assert!(
        !response
            .capabilities
            .contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB)
    );
    assert_eq!(response.database, None);
    assert_eq!(response.auth, expected_native_scramble(PASSWORD, &SCRAMBLE));
}

#[test]
fn caching_sha2_fast_path() {
    let (mut conn, response) = greeted(
        &sha2_options(),
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    assert_eq!(response.auth, expected_sha2_scramble(PASSWORD, &SCRAMBLE));
    // "0x01 0x03": fast authentication succeeded; the OK follows.
    let (result, events) = feed(&mut conn, &packets(2, &[vec![0x01, 0x03]]));
    result.unwrap();
    assert!(events.is_empty());
    assert_eq!(
        conn.phase(),
        Phase::Handshake(HandshakeState::AwaitingFastAuthOk)
    );
    assert!(
        transmit(&mut conn).is_empty(),
        "nothing to send after fast auth success"
    );
    let (result, events) = feed(&mut conn, &packets(3, &[ok()]));
    result.unwrap();
    match &events[..] {
        [Event::HandshakeDone(info)] => {
            assert_eq!(info.auth_plugin, AUTH_CACHING_SHA2_PASSWORD);
            assert_eq!(info.server_version, "8.4.3");
            assert_eq!(info.connection_id, 42);
            assert!(info.deprecate_eof());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.phase(), Phase::Idle);
    // The command phase starts at sequence id 0.
    conn.queue(Command::Ping).unwrap();
    assert_eq!(transmit(&mut conn), [1, 0, 0, 0, 0x0e]);
    let (result, events) = feed(&mut conn, &packets(1, &[ok()]));
    result.unwrap();
    assert_eq!(events, [Event::Pong]);
}

/// A key pair generated for the test (deterministically, from a fixed seed).
fn key_pair() -> (rsa::PrivateKey, String) {
    let private = rsa::PrivateKey::new(&mut SeededRng::new([3; 32]), 2048).expect("key generation");
    let pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM encoding");
    (private, pem)
}

/// The server side of full authentication: decrypt what the client sent and compare with
/// "XOR(password, seed)", the password with its NUL.
fn assert_decrypts_to_password(private: &rsa::PrivateKey, ciphertext: &[u8], scramble: &[u8; 20]) {
    assert_eq!(ciphertext.len(), 256, "one RSA-2048 block");
    let plain = private
        .oaep_decrypt::<sha1::Sha1>(ciphertext)
        .expect("RSA-OAEP with SHA-1 under our key");
    let mut expected = PASSWORD.to_vec();
    expected.push(0);
    for (byte, mask) in expected.iter_mut().zip(scramble.iter().cycle()) {
        *byte ^= mask;
    }
    assert_eq!(plain, expected);
}

#[test]
fn caching_sha2_full_authentication_requests_the_public_key() {
    let (private, pem) = key_pair();
    let (mut conn, _) = greeted(
        &sha2_options(),
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    // "0x01 0x04": perform full authentication. Without TLS and without the key, ask for it.
    let (result, _) = feed(&mut conn, &packets(2, &[vec![0x01, 0x04]]));
    result.unwrap();
    assert_eq!(
        conn.phase(),
        Phase::Handshake(HandshakeState::AwaitingPublicKey)
    );
    assert_eq!(transmit(&mut conn), [1, 0, 0, 3, 0x02]);
    // "Public Key Response: fixed 0x01 value; public key data".
    let mut key_payload = vec![0x01];
    key_payload.extend_from_slice(pem.as_bytes());
    let (result, _) = feed(&mut conn, &packets(4, &[key_payload]));
    result.unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[3], 5);
    assert_decrypts_to_password(&private, &payload_of(&sent), &SCRAMBLE);
    assert_eq!(
        conn.phase(),
        Phase::Handshake(HandshakeState::AwaitingFullAuthResult)
    );
    let (result, events) = feed(&mut conn, &packets(6, &[ok()]));
    result.unwrap();
    assert!(matches!(&events[..], [Event::HandshakeDone(_)]));
}

#[test]
fn caching_sha2_full_authentication_with_the_key_given_up_front() {
    let (private, pem) = key_pair();
    let options = sha2_options().server_public_key_pem(pem);
    let (mut conn, _) = greeted(
        &options,
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    let (result, _) = feed(&mut conn, &packets(2, &[vec![0x01, 0x04]]));
    result.unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[3], 3, "the encrypted password follows at once");
    assert_decrypts_to_password(&private, &payload_of(&sent), &SCRAMBLE);
    // The server still refuses: a wrong password surfaces as ERR 1045.
    let (result, _) = feed(
        &mut conn,
        &packets(4, &[err_payload(1045, "28000", "Access denied")]),
    );
    assert_eq!(
        result,
        Err(MysqlError::Server(ServerError {
            code: 1045,
            state: "28000".into(),
            message: "Access denied".into(),
        }))
    );
}

#[test]
fn caching_sha2_full_authentication_without_a_key_is_refused() {
    let options = sha2_options().allow_public_key_retrieval(false);
    let (mut conn, _) = greeted(
        &options,
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    let (result, _) = feed(&mut conn, &packets(2, &[vec![0x01, 0x04]]));
    assert_eq!(result, Err(MysqlError::PublicKeyRequired));
    assert!(
        transmit(&mut conn).is_empty(),
        "the password never leaves in clear"
    );
}

#[test]
fn caching_sha2_bad_public_keys_are_errors() {
    for key in [
        &b"garbage"[..],
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"\xff\xfe",
    ] {
        let (mut conn, _) = greeted(
            &sha2_options(),
            greeting(
                AUTH_CACHING_SHA2_PASSWORD,
                server_capabilities(true),
                &SCRAMBLE,
            ),
        );
        feed(&mut conn, &packets(2, &[vec![0x01, 0x04]])).0.unwrap();
        transmit(&mut conn);
        let mut payload = vec![0x01];
        payload.extend_from_slice(key);
        let (result, _) = feed(&mut conn, &packets(4, &[payload]));
        assert!(
            matches!(result, Err(MysqlError::PublicKey(_))),
            "{result:?}"
        );
    }
    assert_eq!(
        Connection::new(&sha2_options().server_public_key_pem("nope")).unwrap_err(),
        MysqlError::InvalidOption("server public key does not parse")
    );
}

/// "Protocol::AuthSwitchRequest: 0xFE; plugin name NUL; auth plugin data".
fn auth_switch(plugin: &str, scramble: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(scramble);
    p.push(0);
    p
}

const SWITCH_SCRAMBLE: [u8; 20] = *b"ABCDEFGHIJklmnopqrst";

#[test]
fn auth_switch_to_caching_sha2() {
    let (mut conn, response) = greeted(
        &recorded_options(),
        greeting(
            AUTH_MYSQL_NATIVE_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    assert_eq!(response.plugin, b"mysql_native_password");
    let (result, _) = feed(
        &mut conn,
        &packets(
            2,
            &[auth_switch(AUTH_CACHING_SHA2_PASSWORD, &SWITCH_SCRAMBLE)],
        ),
    );
    result.unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[3], 3);
    assert_eq!(
        payload_of(&sent),
        expected_sha2_scramble(PASSWORD, &SWITCH_SCRAMBLE)
    );
    feed(&mut conn, &packets(4, &[vec![0x01, 0x03]])).0.unwrap();
    let (result, events) = feed(&mut conn, &packets(5, &[ok()]));
    result.unwrap();
    match &events[..] {
        [Event::HandshakeDone(info)] => assert_eq!(info.auth_plugin, AUTH_CACHING_SHA2_PASSWORD),
        other => panic!("{other:?}"),
    }
}

#[test]
fn auth_switch_to_native_password() {
    let (mut conn, _) = greeted(
        &sha2_options(),
        greeting(
            AUTH_CACHING_SHA2_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        ),
    );
    feed(
        &mut conn,
        &packets(
            2,
            &[auth_switch(AUTH_MYSQL_NATIVE_PASSWORD, &SWITCH_SCRAMBLE)],
        ),
    )
    .0
    .unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(
        payload_of(&sent),
        expected_native_scramble(PASSWORD, &SWITCH_SCRAMBLE)
    );
    // AuthMoreData is caching_sha2_password's; after switching to native it is a violation.
    let (result, _) = feed(&mut conn, &packets(4, &[vec![0x01, 0x03]]));
    assert!(matches!(result, Err(MysqlError::Malformed(_))));
}

/// A refused handshake: name, greeting, what the server says after our response, the error.
type RefusalCase = (&'static str, Vec<u8>, Option<Vec<u8>>, MysqlError);

#[test]
fn handshake_refusals() {
    let native = || {
        greeting(
            AUTH_MYSQL_NATIVE_PASSWORD,
            server_capabilities(true),
            &SCRAMBLE,
        )
    };
    let mut old_protocol = native();
    old_protocol[0] = 9;
    let no_protocol_41 = greeting(
        AUTH_MYSQL_NATIVE_PASSWORD,
        server_capabilities(true) - CapabilityFlags::CLIENT_PROTOCOL_41,
        &SCRAMBLE,
    );
    let mut short_scramble = native();
    short_scramble.truncate(40);
    let cases: Vec<RefusalCase> = vec![
        (
            "protocol version 9",
            old_protocol,
            None,
            MysqlError::Unsupported("protocol version other than 10"),
        ),
        (
            "no CLIENT_PROTOCOL_41",
            no_protocol_41,
            None,
            MysqlError::Unsupported(
                "server lacks CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION or CLIENT_PLUGIN_AUTH",
            ),
        ),
        (
            "greeting cut short",
            short_scramble,
            None,
            MysqlError::Malformed("greeting: auth-plugin-data-part-2"),
        ),
        (
            "ERR instead of a greeting, without SQL state",
            b"\xff\x69\x04Host '172.17.0.1' is blocked because of many connection errors".to_vec(),
            None,
            MysqlError::Server(ServerError {
                code: 1129,
                state: "HY000".into(),
                message: "Host '172.17.0.1' is blocked because of many connection errors".into(),
            }),
        ),
        (
            "second auth switch",
            native(),
            Some(
                [
                    packets(
                        2,
                        &[auth_switch(AUTH_MYSQL_NATIVE_PASSWORD, &SWITCH_SCRAMBLE)],
                    ),
                    packets(
                        4,
                        &[auth_switch(AUTH_MYSQL_NATIVE_PASSWORD, &SWITCH_SCRAMBLE)],
                    ),
                ]
                .concat(),
            ),
            MysqlError::Malformed("second AuthSwitchRequest"),
        ),
        (
            "old auth switch",
            native(),
            Some(packets(2, &[vec![0xfe]])),
            MysqlError::UnsupportedAuthPlugin("mysql_old_password".into()),
        ),
        (
            "switch to sha256_password",
            native(),
            Some(packets(
                2,
                &[auth_switch("sha256_password", &SWITCH_SCRAMBLE)],
            )),
            MysqlError::UnsupportedAuthPlugin("sha256_password".into()),
        ),
        (
            "switch without a scramble",
            native(),
            Some(packets(2, &[b"\xfemysql_native_password\0short".to_vec()])),
            MysqlError::Malformed("auth plugin data shorter than 20 bytes"),
        ),
        (
            "unknown packet after the response",
            native(),
            Some(packets(2, &[vec![0x07]])),
            MysqlError::Malformed("expected OK, ERR, AuthSwitchRequest or AuthMoreData"),
        ),
        (
            "wrong sequence id",
            native(),
            Some(packets(5, &[ok()])),
            MysqlError::Sequence {
                expected: 2,
                found: 5,
            },
        ),
    ];
    for (name, greeting_payload, after, want) in cases {
        let mut conn = Connection::new(&recorded_options()).unwrap();
        let (result, _) = feed(&mut conn, &packets(0, &[greeting_payload]));
        let result = match after {
            None => result,
            Some(bytes) => {
                result.unwrap();
                transmit(&mut conn);
                let mut last = Ok(0);
                // Feed chunk by chunk, answering each switch.
                for chunk in split_by_sequence(&bytes) {
                    last = feed(&mut conn, &chunk).0;
                    transmit(&mut conn);
                    if last.is_err() {
                        break;
                    }
                }
                last
            }
        };
        assert_eq!(result, Err(want), "{name}");
        assert_eq!(conn.phase(), Phase::Failed, "{name}");
    }
}

/// Splits concatenated single-packet chunks into their packets (each is one server turn).
fn split_by_sequence(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in packet_ends(bytes) {
        out.push(bytes[start..end].to_vec());
        start = end;
    }
    out
}

#[test]
fn unknown_default_plugin_answers_with_native_password() {
    let (_, response) = greeted(
        &recorded_options(),
        greeting("client_ed25519", server_capabilities(true), &SCRAMBLE),
    );
    assert_eq!(response.plugin, b"mysql_native_password");
    assert_eq!(response.auth, expected_native_scramble(PASSWORD, &SCRAMBLE));
}

#[test]
fn empty_password_sends_empty_auth_data() {
    let options = Options::new("u", Vec::new(), SEED);
    for plugin in [AUTH_MYSQL_NATIVE_PASSWORD, AUTH_CACHING_SHA2_PASSWORD] {
        let (_, response) = greeted(
            &options,
            greeting(plugin, server_capabilities(true), &SCRAMBLE),
        );
        assert!(response.auth.is_empty(), "{plugin}");
    }
}

#[test]
fn options_are_checked_and_never_print_the_password() {
    assert_eq!(
        Connection::new(&Options::new("a\0b", PASSWORD, SEED)).unwrap_err(),
        MysqlError::InvalidOption("user name contains NUL")
    );
    assert_eq!(
        Connection::new(&Options::new("a", PASSWORD, SEED).database("d\0")).unwrap_err(),
        MysqlError::InvalidOption("database name contains NUL")
    );
    let shown = format!("{:?}", recorded_options());
    assert!(!shown.contains("ringchat-test-password"), "{shown}");
    // Limits can only be lowered.
    let options = Options::new("a", PASSWORD, SEED).limits(Limits {
        packet_bytes_max: usize::MAX,
        columns_max: 1,
        ..Limits::default()
    });
    assert_eq!(options.limits.packet_bytes_max, MYSQL_PACKET_BYTES_MAX);
    assert_eq!(options.limits.columns_max, 1);
}

// ---------------------------------------------------------------------------------------------
// Constructed command responses, as a table
// ---------------------------------------------------------------------------------------------

/// A connection past a constructed handshake.
fn connected(deprecate_eof: bool, limits: Limits) -> Connection {
    let options = Options::new("u", PASSWORD, SEED).limits(limits);
    let mut conn = Connection::new(&options).unwrap();
    let greeting_payload = greeting(
        AUTH_MYSQL_NATIVE_PASSWORD,
        server_capabilities(deprecate_eof),
        &SCRAMBLE,
    );
    conn.handle_input(&packets(0, &[greeting_payload])).unwrap();
    transmit(&mut conn);
    conn.handle_input(&packets(2, &[ok()])).unwrap();
    assert!(matches!(drain(&mut conn)[..], [Event::HandshakeDone(_)]));
    conn
}

fn lenenc(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    reader::put_lenenc_bytes(&mut out, bytes);
    out
}

fn column(name: &str, column_type: ColumnType, flags: ColumnFlags) -> Vec<u8> {
    let mut p = Vec::new();
    for part in ["def", "db", "t", "t", name, name] {
        p.extend(lenenc(part.as_bytes()));
    }
    p.push(0x0c);
    p.extend_from_slice(&45u16.to_le_bytes());
    p.extend_from_slice(&100u32.to_le_bytes());
    p.push(column_type as u8);
    p.extend_from_slice(&flags.bits().to_le_bytes());
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p
}

fn text_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut p = Vec::new();
    for value in values {
        match value {
            None => p.push(0xfb),
            Some(text) => p.extend(lenenc(text.as_bytes())),
        }
    }
    p
}

fn binary_row(values: &[Value]) -> Vec<u8> {
    let mut p = vec![0x00];
    let bitmap_start = p.len();
    p.resize(bitmap_start + (values.len() + 9) / 8, 0);
    for (i, value) in values.iter().enumerate() {
        if *value == Value::NULL {
            p[bitmap_start + (i + 2) / 8] |= 1 << ((i + 2) % 8);
        }
        encode_binary_value(value, &mut p);
    }
    p
}

fn eof(status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p
}

fn prepare_ok(id: u32, columns: u16, params: u16) -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&columns.to_le_bytes());
    p.extend_from_slice(&params.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&0u16.to_le_bytes());
    p
}

const NO_FLAGS: ColumnFlags = ColumnFlags::empty();
const STATEMENT: Statement = Statement {
    id: 7,
    params: 0,
    columns: 2,
};

fn execute() -> Command {
    Command::Execute {
        statement: STATEMENT,
        params: vec![],
    }
}

struct Vector {
    name: &'static str,
    deprecate_eof: bool,
    limits: Limits,
    commands: Vec<Command>,
    /// Server payloads, one group per command (each group's sequence ids start at 1).
    responses: Vec<Vec<Vec<u8>>>,
    events: Vec<Event>,
    error: Option<MysqlError>,
}

fn result(columns: usize, rows: Vec<Vec<Value>>) -> Event {
    // Only the shapes are compared for vectors (see `same_event`).
    Event::QueryResult(QueryResult {
        columns: Vec::with_capacity(columns),
        rows,
        affected_rows: 0,
        last_insert_id: 0,
        warnings: 0,
        status: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        info: String::new(),
    })
}

/// Results compare by rows and counts; column definitions are checked by the recorded session.
fn same_event(got: &Event, want: &Event) -> bool {
    match (got, want) {
        (Event::QueryResult(a), Event::QueryResult(b)) => {
            a.rows == b.rows
                && a.columns.len() == b.columns.capacity()
                && a.affected_rows == b.affected_rows
                && a.last_insert_id == b.last_insert_id
        }
        (Event::Prepared(a), Event::Prepared(b)) => {
            a.statement == b.statement
                && a.params.len() == usize::from(b.statement.params)
                && a.columns.len() == usize::from(b.statement.columns)
        }
        _ => got == want,
    }
}

fn vectors() -> Vec<Vector> {
    use ColumnType::*;
    let default = Limits::default();
    let two_columns = || {
        vec![
            column("a", MYSQL_TYPE_LONGLONG, NO_FLAGS),
            column("b", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
        ]
    };
    let prepared = |id, columns, params| {
        Event::Prepared(Prepared {
            statement: Statement {
                id,
                params,
                columns,
            },
            params: Vec::new(),
            columns: Vec::new(),
            warnings: 0,
        })
    };
    vec![
        Vector {
            name: "text result set, classic EOF packets",
            deprecate_eof: false,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![eof(2)],
                    vec![
                        text_row(&[Some("1"), Some("x")]),
                        text_row(&[None, Some("")]),
                        eof(2),
                    ],
                ]
                .concat(),
            ],
            events: vec![result(
                2,
                vec![vec![bytes("1"), bytes("x")], vec![Value::NULL, bytes("")]],
            )],
            error: None,
        },
        Vector {
            name: "text result set ended by OK (CLIENT_DEPRECATE_EOF)",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![text_row(&[Some("1"), None]), ok_payload(0xfe, 0, 0, 2)],
                ]
                .concat(),
            ],
            events: vec![result(2, vec![vec![bytes("1"), Value::NULL]])],
            error: None,
        },
        Vector {
            name: "empty result set",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![ok_payload(0xfe, 0, 0, 2)],
                ]
                .concat(),
            ],
            events: vec![result(2, vec![])],
            error: None,
        },
        Vector {
            name: "binary result set, classic EOF packets",
            deprecate_eof: false,
            limits: default,
            commands: vec![execute()],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![eof(2)],
                    vec![
                        binary_row(&[Value::Int(-1), bytes(CRAB)]),
                        binary_row(&[Value::NULL, Value::NULL]),
                        eof(2),
                    ],
                ]
                .concat(),
            ],
            events: vec![result(
                2,
                vec![
                    vec![Value::Int(-1), bytes(CRAB)],
                    vec![Value::NULL, Value::NULL],
                ],
            )],
            error: None,
        },
        Vector {
            name: "OK with affected rows and last insert id",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("insert".into())],
            responses: vec![vec![ok_payload(0x00, 3, 250, 2)]],
            events: vec![Event::QueryResult(QueryResult {
                columns: vec![],
                rows: vec![],
                affected_rows: 3,
                last_insert_id: 250,
                warnings: 0,
                status: StatusFlags::SERVER_STATUS_AUTOCOMMIT,
                info: String::new(),
            })],
            error: None,
        },
        Vector {
            name: "ERR in the middle of rows, then the connection goes on",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into()), Command::Ping],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![
                        text_row(&[Some("1"), None]),
                        err_payload(1317, "70100", "Query execution was interrupted"),
                    ],
                ]
                .concat(),
                vec![ok()],
            ],
            events: vec![
                Event::Error(ServerError {
                    code: 1317,
                    state: "70100".into(),
                    message: "Query execution was interrupted".into(),
                }),
                Event::Pong,
            ],
            error: None,
        },
        Vector {
            name: "prepare, classic EOF packets",
            deprecate_eof: false,
            limits: default,
            commands: vec![Command::Prepare("p".into())],
            responses: vec![vec![
                prepare_ok(9, 1, 2),
                column("?", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
                column("?", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
                eof(2),
                column("a", MYSQL_TYPE_LONGLONG, NO_FLAGS),
                eof(2),
            ]],
            events: vec![prepared(9, 1, 2)],
            error: None,
        },
        Vector {
            name: "prepare without EOF packets, 12-byte PREPARE_OK without warnings",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Prepare("p".into())],
            responses: vec![vec![
                prepare_ok(9, 1, 1)[..12].to_vec(),
                column("?", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
                column("a", MYSQL_TYPE_LONGLONG, NO_FLAGS),
            ]],
            events: vec![prepared(9, 1, 1)],
            error: None,
        },
        Vector {
            name: "too many columns: read to the end, dropped, connection usable",
            deprecate_eof: true,
            limits: Limits {
                columns_max: 1,
                ..default
            },
            commands: vec![Command::Query("q".into()), Command::Ping],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![text_row(&[Some("1"), None]), ok_payload(0xfe, 0, 0, 2)],
                ]
                .concat(),
                vec![ok()],
            ],
            events: vec![Event::ResultTooLarge(ResultLimit::Columns), Event::Pong],
            error: None,
        },
        Vector {
            name: "too many rows",
            deprecate_eof: false,
            limits: Limits {
                result_rows_max: 1,
                ..default
            },
            commands: vec![Command::Query("q".into()), Command::Ping],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![
                        eof(2),
                        text_row(&[Some("1"), None]),
                        text_row(&[Some("2"), None]),
                        eof(2),
                    ],
                ]
                .concat(),
                vec![ok()],
            ],
            events: vec![Event::ResultTooLarge(ResultLimit::Rows), Event::Pong],
            error: None,
        },
        Vector {
            name: "too many row bytes",
            deprecate_eof: true,
            limits: Limits {
                result_bytes_max: 10,
                ..default
            },
            commands: vec![execute(), Command::Ping],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![
                        binary_row(&[Value::Int(1), bytes("0123456789")]),
                        ok_payload(0xfe, 0, 0, 2),
                    ],
                ]
                .concat(),
                vec![ok()],
            ],
            events: vec![Event::ResultTooLarge(ResultLimit::Bytes), Event::Pong],
            error: None,
        },
        Vector {
            name: "prepare with too many parameters is closed for the caller",
            deprecate_eof: true,
            limits: Limits {
                columns_max: 1,
                ..default
            },
            commands: vec![Command::Prepare("p".into()), Command::Ping],
            responses: vec![
                vec![
                    prepare_ok(9, 0, 2),
                    column("?", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
                    column("?", MYSQL_TYPE_VAR_STRING, NO_FLAGS),
                ],
                vec![ok()],
            ],
            events: vec![Event::ResultTooLarge(ResultLimit::Columns), Event::Pong],
            error: None,
        },
        Vector {
            name: "ERR to COM_STMT_PREPARE",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Prepare("p".into())],
            responses: vec![vec![err_payload(
                1064,
                "42000",
                "You have an error in your SQL syntax",
            )]],
            events: vec![Event::Error(ServerError {
                code: 1064,
                state: "42000".into(),
                message: "You have an error in your SQL syntax".into(),
            })],
            error: None,
        },
        Vector {
            name: "LOCAL INFILE is never accepted",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![vec![b"\xfb/etc/passwd".to_vec()]],
            events: vec![],
            error: Some(MysqlError::Malformed(
                "LOCAL INFILE request without CLIENT_LOCAL_FILES",
            )),
        },
        Vector {
            name: "more results without CLIENT_MULTI_RESULTS",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![ok_payload(0xfe, 0, 0, 0x000a)],
                ]
                .concat(),
            ],
            events: vec![],
            error: Some(MysqlError::Malformed(
                "more results announced without CLIENT_MULTI_RESULTS",
            )),
        },
        Vector {
            name: "column count zero in a long form",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![vec![vec![0xfc, 0, 0]]],
            events: vec![],
            error: Some(MysqlError::Malformed("result set of zero columns")),
        },
        Vector {
            name: "binary row with bytes after its last value",
            deprecate_eof: true,
            limits: default,
            commands: vec![execute()],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![[binary_row(&[Value::Int(1), bytes("x")]), vec![0]].concat()],
                ]
                .concat(),
            ],
            events: vec![],
            error: Some(MysqlError::Malformed(
                "bytes after the last value of a binary row",
            )),
        },
        Vector {
            name: "binary row cut inside a value",
            deprecate_eof: true,
            limits: default,
            commands: vec![execute()],
            responses: vec![
                [
                    vec![vec![2]],
                    two_columns(),
                    vec![vec![0x00, 0x00, 1, 2, 3]],
                ]
                .concat(),
            ],
            events: vec![],
            error: Some(MysqlError::Malformed("binary row ends inside a value")),
        },
        Vector {
            name: "text row missing a value",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![[vec![vec![2]], two_columns(), vec![text_row(&[Some("1")])]].concat()],
            events: vec![],
            error: Some(MysqlError::Malformed("text row value")),
        },
        Vector {
            name: "COM_PING answered by a result set",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Ping],
            responses: vec![vec![vec![1]]],
            events: vec![],
            error: Some(MysqlError::Malformed("expected OK or ERR for COM_PING")),
        },
        Vector {
            name: "unknown column type",
            deprecate_eof: true,
            limits: default,
            commands: vec![Command::Query("q".into())],
            responses: vec![vec![vec![1], {
                let mut c = column("a", MYSQL_TYPE_LONG, NO_FLAGS);
                let at = c.len() - 6;
                c[at] = 0x99;
                c
            }]],
            events: vec![],
            error: Some(MysqlError::Malformed("unknown column type")),
        },
    ]
}

#[test]
fn command_vectors() {
    for vector in vectors() {
        let mut conn = connected(vector.deprecate_eof, vector.limits);
        for command in &vector.commands {
            conn.queue(command.clone()).unwrap();
        }
        let mut events = Vec::new();
        let mut error = None;
        for (index, response) in vector.responses.iter().enumerate() {
            let sent = transmit(&mut conn);
            assert!(
                !sent.is_empty(),
                "{}: command {index} was sent",
                vector.name
            );
            assert_eq!(
                sent[3], 0,
                "{}: commands start at sequence id 0",
                vector.name
            );
            // An orphan statement is closed before the next command leaves.
            if vector.name.starts_with("prepare with too many") && index == 1 {
                assert_eq!(
                    &sent[..9],
                    &[5, 0, 0, 0, 0x19, 9, 0, 0, 0],
                    "{}",
                    vector.name
                );
            }
            let (result, got) = feed(&mut conn, &packets(1, response));
            events.extend(got);
            if let Err(e) = result {
                error = Some(e);
                break;
            }
        }
        assert_eq!(error, vector.error, "{}", vector.name);
        assert_eq!(
            events.len(),
            vector.events.len(),
            "{}: {events:?}",
            vector.name
        );
        for (got, want) in events.iter().zip(&vector.events) {
            assert!(
                same_event(got, want),
                "{}: {got:?} is not {want:?}",
                vector.name
            );
        }
        if error.is_none() {
            assert_eq!(conn.phase(), Phase::Idle, "{}", vector.name);
        }
    }
}

#[test]
fn commands_leave_one_at_a_time_except_statement_close() {
    let mut conn = connected(true, Limits::default());
    conn.queue(Command::CloseStatement(STATEMENT)).unwrap();
    conn.queue(Command::Ping).unwrap();
    conn.queue(Command::Query("SELECT 1".into())).unwrap();
    let sent = transmit(&mut conn);
    // COM_STMT_CLOSE has no response, so COM_PING follows it at once; the query waits.
    assert_eq!(
        sent,
        [&[5, 0, 0, 0, 0x19, 7, 0, 0, 0][..], &[1, 0, 0, 0, 0x0e]].concat()
    );
    assert_eq!(drain(&mut conn), [Event::StatementClosed(STATEMENT)]);
    assert_eq!(conn.phase(), Phase::AwaitingResponse);
    assert!(transmit(&mut conn).is_empty());
    conn.handle_input(&packets(1, &[ok()])).unwrap();
    assert_eq!(drain(&mut conn), [Event::Pong]);
    assert_eq!(
        transmit(&mut conn),
        [&[9, 0, 0, 0, 0x03][..], b"SELECT 1"].concat()
    );
}

#[test]
fn commands_queue_during_the_handshake() {
    let mut conn = Connection::new(&recorded_options()).unwrap();
    conn.queue(Command::Ping).unwrap();
    assert!(
        transmit(&mut conn).is_empty(),
        "nothing before the greeting"
    );
    let greeting_payload = greeting(
        AUTH_MYSQL_NATIVE_PASSWORD,
        server_capabilities(true),
        &SCRAMBLE,
    );
    conn.handle_input(&packets(0, &[greeting_payload])).unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(payloads(&sent).len(), 1, "only the handshake response");
    conn.handle_input(&packets(2, &[ok()])).unwrap();
    assert_eq!(transmit(&mut conn), [1, 0, 0, 0, 0x0e]);
}

#[test]
fn queue_refusals() {
    let mut conn = connected(true, Limits::default());
    assert_eq!(
        conn.queue(Command::Execute {
            statement: Statement {
                id: 1,
                params: 2,
                columns: 0
            },
            params: vec![Value::NULL],
        }),
        Err(MysqlError::ParamCount {
            expected: 2,
            found: 1
        })
    );
    let mut small = connected(
        true,
        Limits {
            packet_bytes_max: 100,
            ..Limits::default()
        },
    );
    assert_eq!(
        small.queue(Command::Query("x".repeat(100))),
        Err(MysqlError::PacketTooLarge),
        "one command byte and 100 of text"
    );
    small.queue(Command::Query("x".repeat(99))).unwrap();
    for _ in 0..MYSQL_QUEUED_COMMANDS_MAX {
        conn.queue(Command::Ping).unwrap();
    }
    assert_eq!(conn.queue(Command::Ping), Err(MysqlError::QueueFull));
    let mut conn = connected(true, Limits::default());
    conn.queue(Command::Quit).unwrap();
    assert_eq!(conn.queue(Command::Ping), Err(MysqlError::Closed));
    assert_eq!(transmit(&mut conn), [1, 0, 0, 0, 0x01]);
    assert_eq!(conn.phase(), Phase::Closed);
    assert!(drain(&mut conn).is_empty(), "COM_QUIT has no event");
    // "Server closes the connection or returns ERR_Packet": either is fine.
    let bytes = packets(
        1,
        &[err_payload(1053, "08S01", "Server shutdown in progress")],
    );
    assert_eq!(conn.handle_input(&bytes), Ok(bytes.len()));
}

#[test]
fn bytes_while_idle_are_a_violation() {
    let mut conn = connected(true, Limits::default());
    assert_eq!(
        conn.handle_input(&packets(1, &[ok()])),
        Err(MysqlError::Malformed(
            "bytes from the server while no command is in flight"
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// Framing: the 16 MiB boundary, limits, properties
// ---------------------------------------------------------------------------------------------

#[test]
fn payloads_split_across_the_16_mib_boundary() {
    for length in [
        PACKET_PAYLOAD_BYTES_MAX - 1,
        PACKET_PAYLOAD_BYTES_MAX,
        PACKET_PAYLOAD_BYTES_MAX + 1,
        2 * PACKET_PAYLOAD_BYTES_MAX,
    ] {
        let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
        let mut framed = Vec::new();
        let next = encode_packet(&payload, 250, &mut framed);
        let pieces = length / PACKET_PAYLOAD_BYTES_MAX + 1;
        assert_eq!(
            framed.len(),
            length + PACKET_HEADER_BYTES * pieces,
            "{length}"
        );
        assert_eq!(next, 250u8.wrapping_add(pieces as u8), "sequence ids wrap");
        // "Sending a payload of 16 777 215 (2^24-1) bytes looks like: ff ff ff 00 ...
        // 00 00 00 01" (here starting at 250).
        if length >= PACKET_PAYLOAD_BYTES_MAX {
            assert_eq!(framed[..4], [0xff, 0xff, 0xff, 250]);
        }
        if length == PACKET_PAYLOAD_BYTES_MAX {
            assert_eq!(framed[framed.len() - 4..], [0, 0, 0, 251]);
        }
        match decode_packet(&framed, MYSQL_PACKET_BYTES_MAX).unwrap() {
            Decode::Complete { value, consumed } => {
                assert_eq!(consumed, framed.len());
                assert_eq!(value.sequence_id, 250);
                assert_eq!(value.last_sequence_id, next.wrapping_sub(1));
                assert!(value.payload == payload, "{length}: payload differs");
            }
            Decode::Partial => panic!("{length}: whole input is Partial"),
        }
        // Prefixes: every cut near a packet boundary, and a sample elsewhere.
        let ends = packet_ends(&framed);
        for cut in (0..framed.len()).filter(|&cut| {
            cut % 65_521 == 0
                || std::iter::once(0)
                    .chain(ends.iter().copied())
                    .any(|e| cut.abs_diff(e) <= 8)
        }) {
            assert_eq!(
                decode_packet(&framed[..cut], MYSQL_PACKET_BYTES_MAX),
                Ok(Decode::Partial),
                "{length}: cut at {cut}"
            );
        }
    }
}

#[test]
fn a_row_larger_than_16_mib_through_the_engine() {
    let mut conn = connected(true, Limits::default());
    conn.queue(Command::Query("SELECT big".into())).unwrap();
    transmit(&mut conn);
    let value = vec![b'z'; PACKET_PAYLOAD_BYTES_MAX + 100];
    let stream = packets(
        1,
        &[
            vec![1],
            column("big", ColumnType::MYSQL_TYPE_LONG_BLOB, NO_FLAGS),
            text_row(&[Some(std::str::from_utf8(&value).unwrap())]),
            ok_payload(0xfe, 0, 0, 2),
        ],
    );
    // The row takes two packets (sequence ids 3 and 4), the terminator the next one.
    for cut in [
        10,
        100,
        200,
        stream.len() / 2,
        stream.len() - 20,
        stream.len() - 1,
    ] {
        let mut c = conn.clone();
        let first = c.handle_input(&stream[..cut]).unwrap();
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.handle_input(&stream[first..]), Ok(stream.len() - first));
        match &drain(&mut c)[..] {
            [Event::QueryResult(result)] => {
                assert!(result.rows == [vec![Value::Bytes(value.clone())]])
            }
            other => panic!("{:?}", other.len()),
        }
    }
}

#[test]
fn oversized_payload_is_refused_from_its_header() {
    // Only the header has arrived: the limit is checked before anything is buffered.
    assert_eq!(
        decode_packet(&[0xff, 0xff, 0xff, 0], 1024),
        Err(MysqlError::PacketTooLarge)
    );
    assert_eq!(
        decode_packet(&[0x01, 0x04, 0x00, 0], 1024),
        Err(MysqlError::PacketTooLarge)
    );
    assert_eq!(
        decode_packet(&[0x00, 0x04, 0x00, 0], 1024),
        Ok(Decode::Partial)
    );
    // Through the engine, with a lowered limit.
    let mut conn = connected(
        true,
        Limits {
            packet_bytes_max: 1024,
            ..Limits::default()
        },
    );
    conn.queue(Command::Query("q".into())).unwrap();
    transmit(&mut conn);
    assert_eq!(
        conn.handle_input(&[0x01, 0x04, 0x00, 1]),
        Err(MysqlError::PacketTooLarge)
    );
    // The default limit: a chain of full packets past 32 MiB fails at the third header.
    let mut chain = Vec::new();
    for sequence_id in 0..2u8 {
        chain.extend_from_slice(&[0xff, 0xff, 0xff, sequence_id]);
        chain.resize(chain.len() + PACKET_PAYLOAD_BYTES_MAX, 0);
    }
    assert_eq!(
        decode_packet(&chain, MYSQL_PACKET_BYTES_MAX),
        Ok(Decode::Partial)
    );
    chain.extend_from_slice(&[0x03, 0x00, 0x00, 2]);
    assert_eq!(
        decode_packet(&chain, MYSQL_PACKET_BYTES_MAX),
        Err(MysqlError::PacketTooLarge)
    );
}

#[test]
fn split_payload_sequence_ids_must_follow() {
    let mut framed = Vec::new();
    encode_packet(&vec![0; PACKET_PAYLOAD_BYTES_MAX + 1], 3, &mut framed);
    framed[PACKET_HEADER_BYTES + PACKET_PAYLOAD_BYTES_MAX + 3] = 9;
    assert_eq!(
        decode_packet(&framed, MYSQL_PACKET_BYTES_MAX),
        Err(MysqlError::Sequence {
            expected: 4,
            found: 9
        })
    );
}

proptest! {
    #[test]
    fn framing_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..600), sequence_id: u8, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut framed = Vec::new();
        let next = encode_packet(&payload, sequence_id, &mut framed);
        prop_assert_eq!(next, sequence_id.wrapping_add(1));
        let length = framed.len();
        framed.extend_from_slice(&tail);
        let decoded = decode_packet(&framed, MYSQL_PACKET_BYTES_MAX).unwrap();
        prop_assert_eq!(decoded, Decode::Complete {
            value: packet::Packet { sequence_id, last_sequence_id: sequence_id, payload: payload.clone().into() },
            consumed: length,
        });
        for cut in 0..length {
            prop_assert_eq!(decode_packet(&framed[..cut], MYSQL_PACKET_BYTES_MAX), Ok(Decode::Partial));
        }
        // A limit one byte short refuses it, with the header alone.
        if !payload.is_empty() {
            prop_assert_eq!(decode_packet(&framed[..4], payload.len() - 1), Err(MysqlError::PacketTooLarge));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binary values: round trips and mysql_common as an oracle
// ---------------------------------------------------------------------------------------------

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::NULL),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        ".{0,40}".prop_map(|s: String| Value::Bytes(s.into_bytes())),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f32>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Double),
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            prop_oneof![Just(0u32), any::<u32>()]
        )
            .prop_map(|(y, mo, d, h, mi, s, us)| Value::Date(y, mo, d, h, mi, s, us)),
        (0u16..3000, 0u8..13, 0u8..32).prop_map(|(y, mo, d)| Value::Date(y, mo, d, 0, 0, 0, 0)),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            prop_oneof![Just(0u32), any::<u32>()]
        )
            .prop_map(|(n, d, h, m, s, us)| Value::Time(n, d, h, m, s, us)),
        Just(Value::Time(true, 0, 0, 0, 0, 0)),
        Just(Value::Date(0, 0, 0, 0, 0, 0, 0)),
    ]
}

/// mysql_common drops the sign of a zero time; otherwise its encoding must be ours.
fn normalized_for_mysql_common(value: &Value) -> Value {
    match value {
        Value::Time(true, 0, 0, 0, 0, 0) => Value::Time(false, 0, 0, 0, 0, 0),
        other => other.clone(),
    }
}

/// mysql_common reads an unsigned integer that fits `i64` as `Int`; we keep `UInt` for every
/// value of an unsigned column.
fn as_mysql_common_reads(value: &Value) -> Value {
    match *value {
        Value::UInt(x) if i64::try_from(x).is_ok() => Value::Int(x as i64),
        ref other => other.clone(),
    }
}

proptest! {
    #[test]
    fn binary_values_round_trip(value in value_strategy(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let (column_type, unsigned) = binary_param_type(&value);
        let mut encoded = Vec::new();
        encode_binary_value(&value, &mut encoded);
        if value == Value::NULL {
            prop_assert!(encoded.is_empty());
            return Ok(());
        }
        let length = encoded.len();
        encoded.extend_from_slice(&tail);
        prop_assert_eq!(
            decode_binary_value(&encoded, column_type, unsigned).unwrap(),
            Decode::Complete { value: value.clone(), consumed: length }
        );
        for cut in 0..length {
            prop_assert_eq!(decode_binary_value(&encoded[..cut], column_type, unsigned), Ok(Decode::Partial));
        }
        // mysql_common reads our bytes back to the same value.
        let flags = if unsigned { ColumnFlags::UNSIGNED_FLAG } else { ColumnFlags::empty() };
        let ours = &encoded[..length];
        let theirs: ValueDeserializer<BinValue> = ParseBuf(ours).parse((column_type, flags)).unwrap();
        prop_assert_eq!(theirs.0, as_mysql_common_reads(&value));
    }

    #[test]
    fn execute_payload_matches_mysql_common(params in proptest::collection::vec(value_strategy(), 0..12), id: u32) {
        let statement = Statement { id, params: params.len() as u16, columns: 0 };
        // Same types, NULL bitmap and values, byte for byte (zero times normalized: see above).
        let normalized: Vec<Value> = params.iter().map(normalized_for_mysql_common).collect();
        let (request, as_long_data) = ComStmtExecuteRequestBuilder::new(id).build(&normalized);
        prop_assert!(!as_long_data);
        let mut theirs = Vec::new();
        request.serialize(&mut theirs);
        let ours = Command::Execute { statement, params: normalized }.encode().unwrap().payload;
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn binary_rows_decode_what_they_encode(values in proptest::collection::vec(value_strategy(), 1..20)) {
        let columns: Vec<(ColumnType, bool)> = values.iter().map(binary_param_type).collect();
        let row = value::decode_binary_row(&binary_row(&values), &columns).unwrap();
        prop_assert_eq!(row, values);
    }
}

#[test]
fn binary_value_refusals() {
    use ColumnType::*;
    let cases: &[(&[u8], ColumnType, MysqlError)] = &[
        (
            &[3, 1, 2, 3],
            MYSQL_TYPE_DATETIME,
            MysqlError::Malformed("date length is not 0, 4, 7 or 11"),
        ),
        (
            &[5, 0, 0, 0, 0, 0],
            MYSQL_TYPE_TIME,
            MysqlError::Malformed("time length is not 0, 8 or 12"),
        ),
        (
            &[8, 2, 0, 0, 0, 0, 0, 0, 0],
            MYSQL_TYPE_TIME,
            MysqlError::Malformed("time sign is not 0 or 1"),
        ),
        (
            &[0xff],
            MYSQL_TYPE_BLOB,
            MysqlError::Malformed("invalid length-encoded string"),
        ),
        (
            &[0xfb],
            MYSQL_TYPE_BLOB,
            MysqlError::Malformed("invalid length-encoded string"),
        ),
        (
            &[0],
            MYSQL_TYPE_DATETIME2,
            MysqlError::Malformed("column type that the binary protocol does not send"),
        ),
    ];
    for (input, column_type, error) in cases {
        assert_eq!(
            decode_binary_value(input, *column_type, false),
            Err(error.clone()),
            "{input:?}"
        );
    }
    // A length that cannot be satisfied is Partial, never an allocation.
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        decode_binary_value(&huge, MYSQL_TYPE_BLOB, false),
        Ok(Decode::Partial)
    );
    // A length past what memory can address is malformed (64-bit targets).
    let widest = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        decode_binary_value(&widest, MYSQL_TYPE_BLOB, false),
        Err(MysqlError::Malformed(
            "length-encoded string longer than memory"
        ))
    );
    // Integers of every width keep their sign per the UNSIGNED flag.
    let integers: &[(&[u8], ColumnType, bool, Value)] = &[
        (&[0xff], MYSQL_TYPE_TINY, false, Value::Int(-1)),
        (&[0xff], MYSQL_TYPE_TINY, true, Value::UInt(255)),
        (&[0xfe, 0xff], MYSQL_TYPE_SHORT, false, Value::Int(-2)),
        (&[0xe8, 0x07], MYSQL_TYPE_YEAR, false, Value::UInt(2024)),
        (
            &[0xfd, 0xff, 0xff, 0xff],
            MYSQL_TYPE_LONG,
            false,
            Value::Int(-3),
        ),
        (
            &[0xfd, 0xff, 0xff, 0xff],
            MYSQL_TYPE_INT24,
            true,
            Value::UInt(0xffff_fffd),
        ),
    ];
    for (input, column_type, unsigned, value) in integers {
        assert_eq!(
            decode_binary_value(input, *column_type, *unsigned),
            Ok(Decode::Complete {
                value: value.clone(),
                consumed: input.len()
            })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL 8 bytes from public sources
// ---------------------------------------------------------------------------------------------
//
// No MySQL 8 server can run where these tests were written, so they replay MySQL 8 server
// bytes that others published. Every constant names its source; how far each is a recording:
//
// - hoophq/hoop, `agent/mysql/middleware/auth/auth_test.go` (commit 5464b325),
//   `TestMySQLCachingSha2PasswordFullAuthOK`, MIT. Its comment says the packets were captured
//   with Wireshark from `docker run mysql:8.0.30` and `mysql -u root -p1a2b3c4d -D sys
//   --ssl-mode=DISABLED --get-server-public-key`. Payloads only; the headers here are ours.
// - KarboniteKream/thoughts, `_posts/2024-01-08-mysql-protocol.md` (commit b63d36c3),
//   "Exploring the MySQL protocol": every payload of a session with MySQL 8.0.32 (client
//   jasync-sql, root / test, database test, over TLS), annotated byte by byte. Payloads only.
//   The repository states no license; we take a few dozen bytes of protocol data that a server
//   and a driver generated, none of its prose.
// - launchbadge/sqlx, MIT OR Apache-2.0: `sqlx-mysql/src/protocol/connect/handshake.rs`
//   (commit 6c422bb5), `test_decode_handshake_mysql_8_0_18`, a MySQL 8.0.18 greeting; and
//   `sqlx-mysql/src/connection/connect.rs` (commit 25575579, an unreleased rewrite), the
//   `should_*_caching_sha2_auth` tests: MySQL 8.0.22 greetings, an AuthSwitchRequest to
//   `caching_sha2_password`, the server's PEM key, and the client bytes sqlx asserts for the
//   password "password". Their version strings, distinct connection ids and per-version
//   capability flags look captured, but the files do not say so.
// - go-sql-driver/mysql, `auth_test.go` (commit 070f91fa), MPL-2.0:
//   `TestAuthFastCachingSHA256Password{Cached,Empty,FullRSA}` and
//   `TestAuthSwitchCachingSHA256PasswordFullRSA`: framed server packets, an RSA-2048 key in the
//   form MySQL sends it, and the auth responses the driver asserts for "secret". The file does
//   not say they were captured, and its tests start after the greeting, so the greetings here
//   are constructed around its scrambles. MPL-2.0 is file-level copyleft for code; these are
//   short test vectors (protocol bytes and hashes) used as test data with attribution, which
//   is fine without putting this file under the MPL.
//
// What the recordings confirm independently of our engine: jasync-sql's recorded response to
// the 8.0.32 greeting and the responses sqlx and go-sql-driver assert are all
// XOR(SHA256(p), SHA256(SHA256(SHA256(p)), nonce)) over the 20-byte nonce.

/// A MySQL 8 greeting as mysql_common's parser reads it, plus the raw capability flags
/// (mysql_common drops bits it does not name): a check of the transcription independent of
/// our decoder, and what our engine must make of it.
struct Mysql8Greeting {
    version: String,
    connection_id: u32,
    capabilities: u32,
    nonce: [u8; 20],
    plugin: String,
}

fn read_greeting(payload: &[u8]) -> Mysql8Greeting {
    use mysql_common::proto::MyDeserialize;
    let packet = mysql_common::packets::HandshakePacket::deserialize((), &mut ParseBuf(payload))
        .expect("mysql_common parses the greeting");
    // protocol version, server version and NUL, thread id, auth-plugin-data-part-1, filler
    let at = 1 + packet.server_version_ref().len() + 1 + 4 + 8 + 1;
    let low = u16::from_le_bytes([payload[at], payload[at + 1]]);
    // then character set (1) and status flags (2)
    let high = u16::from_le_bytes([payload[at + 5], payload[at + 6]]);
    Mysql8Greeting {
        version: packet.server_version_str().into_owned(),
        connection_id: packet.connection_id(),
        capabilities: u32::from(low) | u32::from(high) << 16,
        nonce: packet.nonce().try_into().expect("a 20-byte nonce"),
        plugin: packet
            .auth_plugin_name_str()
            .expect("a plugin name")
            .into_owned(),
    }
}

/// XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce)) over a nonce of any length.
fn sha2_scramble_over(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    let hash = sha256(&[password]);
    let mix = sha256(&[&sha256(&[&hash]), nonce]);
    hash.iter().zip(mix).map(|(a, b)| a ^ b).collect()
}

/// What we ask of a MySQL 8.0 server, which offers all of it.
fn negotiated_with_mysql_8(database: bool) -> CapabilityFlags {
    let mut capabilities = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF;
    if database {
        capabilities |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    }
    capabilities
}

/// Feeds a recorded MySQL 8 greeting (split at every byte) and checks our HandshakeResponse41:
/// the capabilities we want, and a `caching_sha2_password` response over the greeting's nonce.
fn greet_mysql_8(options: &Options, payload: &[u8], server: &Mysql8Greeting) -> Connection {
    assert_eq!(server.plugin, AUTH_CACHING_SHA2_PASSWORD);
    let (conn, response) = greeted(options, payload.to_vec());
    assert_eq!(
        response.capabilities,
        negotiated_with_mysql_8(options.database.is_some())
    );
    assert_eq!(response.user, options.user.as_bytes());
    assert_eq!(
        response.database.as_deref(),
        options.database.as_deref().map(str::as_bytes)
    );
    assert_eq!(response.plugin, AUTH_CACHING_SHA2_PASSWORD.as_bytes());
    assert_eq!(
        response.auth,
        expected_sha2_scramble(&options.password, &server.nonce)
    );
    conn
}

/// The handshake ends in `HandshakeDone` with what the greeting said.
fn assert_done_with(events: &[Event], server: &Mysql8Greeting, database: bool) -> StatusFlags {
    match events {
        [Event::HandshakeDone(info)] => {
            assert_eq!(info.server_version, server.version);
            assert_eq!(info.connection_id, server.connection_id);
            assert_eq!(info.capabilities, negotiated_with_mysql_8(database));
            assert_eq!(info.auth_plugin, AUTH_CACHING_SHA2_PASSWORD);
            info.status
        }
        other => panic!("expected the end of the handshake, got {other:?}"),
    }
}

/// Checks the encrypted password of full authentication under a real server's key, of which
/// we hold only the public half: one block as long as the modulus and below it, and byte for
/// byte what RSA-OAEP with SHA-1 makes of "XOR(password NUL, nonce)" under that key with this
/// connection's OAEP seed (`SEED`). The constructed tests above decrypt that same construction
/// with a private key of their own, so the holder of this key's private half reads the
/// password.
fn assert_encrypted_password(pem: &[u8], ciphertext: &[u8], password: &[u8], nonce: &[u8; 20]) {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let pem = std::str::from_utf8(pem).expect("PEM is ASCII");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let key = rsa::PublicKey::from_public_key_pem(pem.trim_end())
        .expect("an RSA key in SubjectPublicKeyInfo PEM");
    assert_eq!(key.size(), 256, "RSA-2048, MySQL's default");
    assert_eq!(key.e_bytes()[..], [1, 0, 1]);
    assert_eq!(ciphertext.len(), key.size());
    assert!(ciphertext < &key.n_bytes()[..], "below the modulus");
    let mut plain = password.to_vec();
    plain.push(0);
    for (byte, mask) in plain.iter_mut().zip(nonce.iter().cycle()) {
        *byte ^= mask;
    }
    let expected = key
        .oaep_encrypt_with_rng::<sha1::Sha1, _>(&mut SeededRng::new(SEED), &plain)
        .expect("the password fits one block");
    assert!(
        ciphertext == expected,
        "not RSA-OAEP (SHA-1) of XOR(password NUL, nonce)"
    );
}

/// hoophq/hoop `TestMySQLCachingSha2PasswordFullAuthOK`: the MySQL 8.0.30 greeting (`hskBytes`).
const MYSQL_8_0_30_GREETING: &str = "0a382e302e3330000e0000002f524862231a313e00ffffff0200ffdf15\
    000000000000000000006619566f58404a7f4a79375b0063616368696e675f736861325f70617373776f726400";
/// hoophq/hoop, the same test: AuthMoreData "perform full authentication" (`switchReqPkt`).
const MYSQL_8_0_30_FULL_AUTHENTICATION: &str = "0104";
/// hoophq/hoop, the same test: the public key response, 0x01 and the PEM (`pubKeyPktBytes`).
const MYSQL_8_0_30_PUBLIC_KEY: &str = "012d2d2d2d2d424547494e205055424c4943204b45592d2d2d2d2d0a\
    4d494942496a414e42676b71686b6947397730424151454641414f43415138414d49494243674b434151454170\
    2f544f616e43574752456756624b382f324f520a7152304c4c7279572f30582f34654339563839774b55425268\
    422f4f424d7a7377766b7155794a314939486d5045524e4c644e2f4652464334637a42673664410a4438717370\
    4f685736594b7064524a4e69704433416a744b584a5a556c5a687a4d56305573715738524c733930413857596a\
    736c42624245794f477a704268720a584868506d6531677732795a6a2f6c4c65636b567a514b566a7a35794266\
    36477a756c544d6a63396155686a3742543157386b4e4778546541646f6241524e350a53437843363668754647\
    35774f6651706a6755596e79756257733178702f5948664e525165723854334735494e6b546b38494c55353846\
    3341347672526176710a355644393334476f6b52364c7772634d6c4131592f53672b53754150555a33515a3163\
    334e2b675a59516c6a5048744c34546c746a317370616b6335454866310a54514944415141420a2d2d2d2d2d45\
    4e44205055424c4943204b45592d2d2d2d2d0a";
/// hoophq/hoop, the same test: the OK that ends it (`okPkt`). The file's MySQL 5.7.41 test ends
/// with the same bytes, so they may come from that capture. Status AUTOCOMMIT |
/// SESSION_STATE_CHANGED, then session-state info (schema "sys") that the recorded client
/// asked for with CLIENT_SESSION_TRACK. We never ask for it, and read it as the OK's info.
const MYSQL_8_0_30_OK: &str = "000000024000000006010403737973";

#[test]
fn recorded_mysql_8_0_30_full_authentication_over_plain_tcp() {
    let greeting_payload = hex(MYSQL_8_0_30_GREETING);
    let server = read_greeting(&greeting_payload);
    assert_eq!(server.version, "8.0.30");
    assert_eq!(server.connection_id, 14);
    assert_eq!(server.capabilities, 0xdfff_ffff);
    let password = b"1a2b3c4d";
    let options = Options::new("root", password.to_vec(), SEED).database("sys");
    let mut conn = greet_mysql_8(&options, &greeting_payload, &server);

    // "0x01 0x04": full authentication. Plain TCP and no key given: ask for it, "0x02".
    let (result, events) = feed(
        &mut conn,
        &packets(2, &[hex(MYSQL_8_0_30_FULL_AUTHENTICATION)]),
    );
    result.unwrap();
    assert!(events.is_empty());
    assert_eq!(transmit(&mut conn), [1, 0, 0, 3, 0x02]);

    // The key arrives; the password leaves encrypted under it.
    let key_payload = hex(MYSQL_8_0_30_PUBLIC_KEY);
    let (result, events) = feed(&mut conn, &packets(4, std::slice::from_ref(&key_payload)));
    result.unwrap();
    assert!(events.is_empty());
    let sent = transmit(&mut conn);
    assert_eq!(sent[..4], [0x00, 0x01, 0x00, 5]);
    assert_encrypted_password(&key_payload[1..], &sent[4..], password, &server.nonce);
    assert_eq!(
        conn.phase(),
        Phase::Handshake(HandshakeState::AwaitingFullAuthResult)
    );

    let (result, events) = feed(&mut conn, &packets(6, &[hex(MYSQL_8_0_30_OK)]));
    result.unwrap();
    let status = assert_done_with(&events, &server, true);
    assert_eq!(
        status,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT | StatusFlags::SERVER_SESSION_STATE_CHANGED
    );
    assert_eq!(conn.phase(), Phase::Idle);
}

/// KarboniteKream/thoughts, "Exploring the MySQL protocol": the MySQL 8.0.32 `HandshakeV10`
/// (connection 8), field by field as the post lists it.
const MYSQL_8_0_32_GREETING: &str = concat!(
    "0a",                                           // protocol version 10
    "382e302e333200",                               // "8.0.32"
    "08000000",                                     // connection id 8
    "1c4619465976404b",                             // scramble, first 8 bytes
    "00",                                           // filler
    "ffff",                                         // capabilities, lower 2 bytes
    "ff",                                           // utf8mb4_0900_ai_ci
    "0200",                                         // status: AUTOCOMMIT
    "ffdf",                                         // capabilities, upper 2 bytes
    "15",                                           // scramble length 21
    "00000000000000000000",                         // reserved
    "3f71347153455e5d227a323d00",                   // scramble, the rest and its NUL
    "63616368696e675f736861325f70617373776f726400", // "caching_sha2_password"
);
/// The same post: the auth response of jasync-sql's HandshakeResponse41 to that greeting, for
/// root / "test".
const MYSQL_8_0_32_CLIENT_AUTH_RESPONSE: &str =
    "382494b77530094f7aa0351eeea13eb2e5fe457f1bb4d9407254d3a993daeb55";
/// The same post: the server's AuthMoreData, "perform full authentication".
const MYSQL_8_0_32_FULL_AUTHENTICATION: &str = "0104";

#[test]
fn recorded_mysql_8_0_32_scramble_matches_the_recorded_client() {
    let greeting_payload = hex(MYSQL_8_0_32_GREETING);
    let server = read_greeting(&greeting_payload);
    assert_eq!(server.version, "8.0.32");
    assert_eq!(server.connection_id, 8);
    assert_eq!(server.capabilities, 0xdfff_ffff);
    let options = Options::new("root", &b"test"[..], SEED).database("test");
    let (mut conn, response) = greeted(&options, greeting_payload.clone());
    // Byte for byte what another driver sent this server for the same password.
    assert_eq!(response.auth, hex(MYSQL_8_0_32_CLIENT_AUTH_RESPONSE));
    assert_eq!(response.capabilities, negotiated_with_mysql_8(true));

    // The recorded session ran over TLS and answered 0x01 0x04 with the password in clear. We
    // have no TLS: we ask for the key instead, and never send the password.
    let mut refusing = Connection::new(&options.clone().allow_public_key_retrieval(false)).unwrap();
    feed(&mut refusing, &packets(0, &[greeting_payload]))
        .0
        .unwrap();
    transmit(&mut refusing);
    let full = packets(2, &[hex(MYSQL_8_0_32_FULL_AUTHENTICATION)]);
    let (result, _) = feed(&mut conn, &full);
    result.unwrap();
    assert_eq!(transmit(&mut conn), [1, 0, 0, 3, 0x02]);
    let (result, _) = feed(&mut refusing, &full);
    assert_eq!(result, Err(MysqlError::PublicKeyRequired));
    assert!(transmit(&mut refusing).is_empty());
}

/// launchbadge/sqlx `test_decode_handshake_mysql_8_0_18` (`HANDSHAKE_MYSQL_8_0_18`), and the
/// nonce that test asserts.
const MYSQL_8_0_18_GREETING: &[u8] = b"\n8.0.18\x00\x19\x00\x00\x00\x114aB0c\x06g\x00\xff\xff\xff\x02\x00\xff\xc7\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00tL\x03s\x0f[4\rl4. \x00caching_sha2_password\x00";
const MYSQL_8_0_18_NONCE: [u8; 20] = [
    17, 52, 97, 66, 48, 99, 6, 103, 116, 76, 3, 115, 15, 91, 52, 13, 108, 52, 46, 32,
];

#[test]
fn sqlx_mysql_8_0_18_greeting() {
    let server = read_greeting(MYSQL_8_0_18_GREETING);
    assert_eq!(server.version, "8.0.18");
    assert_eq!(server.connection_id, 25);
    // No CLIENT_QUERY_ATTRIBUTES (8.0.23) or CLIENT_MULTI_FACTOR_AUTHENTICATION (8.0.27) yet.
    assert_eq!(server.capabilities, 0xc7ff_ffff);
    assert_eq!(server.nonce, MYSQL_8_0_18_NONCE);
    let options = Options::new("root", PASSWORD, SEED);
    let mut conn = greet_mysql_8(&options, MYSQL_8_0_18_GREETING, &server);
    // The rest is constructed: the fast path, to see the greeting through to `HandshakeDone`.
    feed(&mut conn, &packets(2, &[vec![0x01, 0x03]])).0.unwrap();
    assert!(transmit(&mut conn).is_empty());
    let (result, events) = feed(&mut conn, &packets(3, &[ok()]));
    result.unwrap();
    assert_done_with(&events, &server, false);
}

// launchbadge/sqlx, `sqlx-mysql/src/connection/connect.rs`, test constants under their names.
/// Verbatim; `\04` is NUL and then '4' (Rust has no octal escapes): connection id 41, then the
/// nonce's first part `4bo+$r4H`.
#[allow(clippy::octal_escapes)]
const SQLX_SRV_HANDSHAKE_DEFAULT_NATIVE_AUTH: &[u8] = b"\n5.5.5-10.5.8-MariaDB-1:10.5.8+maria~focal\0)\0\0\04bo+$r4H\0\xfe\xf7-\x02\0\xff\x81\x15\0\0\0\0\0\0\x0f\0\0\0O5X>j}Ur]Y)^\0mysql_native_password\0";
const SQLX_SRV_HANDSHAKE_DEFAULT_CACHING_SHA2_AUTH: &[u8] = b"\n8.0.22\0\x08\0\0\0TIbl}%U#\0\xff\xff\xff\x02\0\xff\xc7\x15\0\0\0\0\0\0\0\0\0\0\x06\x12\x0e`5\x1b\x12\x0b\x13\x06_\x19\0caching_sha2_password\0";
const SQLX_SRV_PUBLIC_KEY: &[u8] = b"\x01-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwnXi3nr9TmN+NF49A3Y7\nUBnAVhApNJy2cmuf/y6vFM9eHFu5T80Ij1qYc6c79oAGA8nNNCFQL+0j5De88cln\nKrlzq/Ab3U+j5SqgNwk//F6Y3iyjV4L7feSDqjpcheFzkjEslbm/yoRwQ78AAU6s\nqA0hcFuh66mcvnotDrvZAGQ8U2EbbZa6oiR3wrgbzifSKq767g65zIrCpoyxzKMH\nAETSDIaMKpFio4dRATKT5ASQtPoIyxSBmjRtc22sqlhEeiejEMsJzd6Bliuait+A\nkTXL6G1Tbam26Dok/L88CnTAWAkLwTA3bjPcS8Zl9gTsJvoiMuwW1UPEVV/aJ11Z\n/wIDAQAB\n-----END PUBLIC KEY-----\n";
const SQLX_SRV_AUTH_OK: &[u8] = b"\0\0\0\x02\0\0\0";
const SQLX_SRV_AUTH_MORE_CONTINUE: &[u8] = b"\x01\x04";
const SQLX_SRV_AUTH_MORE_OK: &[u8] = b"\x01\x03";
const SQLX_SRV_SWITCH_CACHING_SHA2_AUTH: &[u8] =
    b"\xfecaching_sha2_password\0\x12}Wz?0-M9sO*S\x03\nP\x1c]pe\0";
/// The auth response inside sqlx's `RES_HANDSHAKE_CACHING_SHA2_AUTH` (after its 0x20 length).
const SQLX_CACHING_SHA2_AUTH: &[u8] = b"\x9d\x85T\x15\xfe\xa9u\x13\x02&\x9dlG\x17\x98\x1b`\x8a\x96\xfcI\x19\x17\xe0(I8\xba\xd7\xfax\xa9";
/// The auth response inside sqlx's `RES_HANDSHAKE_NATIVE_AUTH` (after its 0x14 length).
const SQLX_NATIVE_AUTH: &[u8] =
    b"P\xaf\xf1\x12,\xe9\xad\xea\x7f\xa0\n\xcd\xa2\xb5<\x17\xa5\xc9J\xd0";
const SQLX_RES_ASK_RSA_KEY: &[u8] = b"\x01\0\0\x03\x02";
const SQLX_RES_ASK_RSA_KEY_2: &[u8] = b"\x01\0\0\x05\x02";
const SQLX_RES_SHA_SCRAMBLE: &[u8] =
    b" \0\0\x03\xffjg\x06p\x1d\xeawto\xf3\xf6\xa0\x9f7\xa9Z\xb3\xa5\xf9\x0b\x80\x14j8WTb\xf1{f\xf5";
/// The headers of sqlx's `RES_RSA_PASSWORD_CACHING_SHA2` and
/// `RES_SWITCH_RSA_PASSWORD_CACHING_SHA2` (256 bytes, packets 5 and 7).
const SQLX_RES_RSA_PASSWORD_HEADER: &[u8] = b"\0\x01\0\x05";
const SQLX_RES_SWITCH_RSA_PASSWORD_HEADER: &[u8] = b"\0\x01\0\x07";

#[test]
fn sqlx_mysql_8_0_22_caching_sha2_exchanges() {
    let password = b"password";
    let options = Options::new("root", password.to_vec(), SEED);
    let server = read_greeting(SQLX_SRV_HANDSHAKE_DEFAULT_CACHING_SHA2_AUTH);
    assert_eq!(server.version, "8.0.22");
    assert_eq!(server.connection_id, 8);
    assert_eq!(server.capabilities, 0xc7ff_ffff);

    // should_connect_default_caching_sha2_auth: full authentication, key requested.
    let (mut conn, response) = greeted(
        &options,
        SQLX_SRV_HANDSHAKE_DEFAULT_CACHING_SHA2_AUTH.to_vec(),
    );
    assert_eq!(response.auth, SQLX_CACHING_SHA2_AUTH);
    assert_eq!(
        response.auth,
        expected_sha2_scramble(password, &server.nonce)
    );
    feed(
        &mut conn,
        &packets(2, &[SQLX_SRV_AUTH_MORE_CONTINUE.to_vec()]),
    )
    .0
    .unwrap();
    assert_eq!(transmit(&mut conn), SQLX_RES_ASK_RSA_KEY);
    feed(&mut conn, &packets(4, &[SQLX_SRV_PUBLIC_KEY.to_vec()]))
        .0
        .unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[..4], *SQLX_RES_RSA_PASSWORD_HEADER);
    assert_encrypted_password(
        &SQLX_SRV_PUBLIC_KEY[1..],
        &sent[4..],
        password,
        &server.nonce,
    );
    let (result, events) = feed(&mut conn, &packets(6, &[SQLX_SRV_AUTH_OK.to_vec()]));
    result.unwrap();
    assert_done_with(&events, &server, false);

    // should_reconnect_default_caching_sha2_auth: the fast path. (sqlx's test stops at 0x01
    // 0x03; the OK after it is theirs too, from the other tests.)
    let mut conn = greet_mysql_8(
        &options,
        SQLX_SRV_HANDSHAKE_DEFAULT_CACHING_SHA2_AUTH,
        &server,
    );
    let (result, events) = feed(&mut conn, &packets(2, &[SQLX_SRV_AUTH_MORE_OK.to_vec()]));
    result.unwrap();
    assert!(events.is_empty());
    assert!(transmit(&mut conn).is_empty());
    let (result, events) = feed(&mut conn, &packets(3, &[SQLX_SRV_AUTH_OK.to_vec()]));
    result.unwrap();
    assert_done_with(&events, &server, false);

    // should_connect_switch_caching_sha2_auth: greeted in mysql_native_password (by a MariaDB
    // greeting, as sqlx's test has it), switched to caching_sha2_password, then full
    // authentication.
    let (mut conn, response) = greeted(&options, SQLX_SRV_HANDSHAKE_DEFAULT_NATIVE_AUTH.to_vec());
    assert_eq!(response.plugin, b"mysql_native_password");
    assert_eq!(response.auth, SQLX_NATIVE_AUTH);
    let (result, events) = feed(
        &mut conn,
        &packets(2, &[SQLX_SRV_SWITCH_CACHING_SHA2_AUTH.to_vec()]),
    );
    result.unwrap();
    assert!(events.is_empty());
    assert_eq!(transmit(&mut conn), SQLX_RES_SHA_SCRAMBLE);
    feed(
        &mut conn,
        &packets(4, &[SQLX_SRV_AUTH_MORE_CONTINUE.to_vec()]),
    )
    .0
    .unwrap();
    assert_eq!(transmit(&mut conn), SQLX_RES_ASK_RSA_KEY_2);
    feed(&mut conn, &packets(6, &[SQLX_SRV_PUBLIC_KEY.to_vec()]))
        .0
        .unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[..4], *SQLX_RES_SWITCH_RSA_PASSWORD_HEADER);
    let switch_nonce: [u8; 20] = SQLX_SRV_SWITCH_CACHING_SHA2_AUTH[23..43]
        .try_into()
        .unwrap();
    assert_encrypted_password(
        &SQLX_SRV_PUBLIC_KEY[1..],
        &sent[4..],
        password,
        &switch_nonce,
    );
    let (result, events) = feed(&mut conn, &packets(8, &[SQLX_SRV_AUTH_OK.to_vec()]));
    result.unwrap();
    match &events[..] {
        [Event::HandshakeDone(info)] => {
            assert_eq!(info.auth_plugin, AUTH_CACHING_SHA2_PASSWORD);
            assert_eq!(
                info.server_version,
                "5.5.5-10.5.8-MariaDB-1:10.5.8+maria~focal"
            );
            assert_eq!(info.connection_id, 41);
        }
        other => panic!("{other:?}"),
    }
}

// go-sql-driver/mysql `auth_test.go`, under their names there.
/// `serverPubKey`: the public key response, 0x01 and the PEM (452 bytes).
const GO_SERVER_PUB_KEY: &[u8] = &[
    1, 45, 45, 45, 45, 45, 66, 69, 71, 73, 78, 32, 80, 85, 66, 76, 73, 67, 32, 75, 69, 89, 45, 45,
    45, 45, 45, 10, 77, 73, 73, 66, 73, 106, 65, 78, 66, 103, 107, 113, 104, 107, 105, 71, 57, 119,
    48, 66, 65, 81, 69, 70, 65, 65, 79, 67, 65, 81, 56, 65, 77, 73, 73, 66, 67, 103, 75, 67, 65,
    81, 69, 65, 51, 72, 115, 120, 83, 53, 80, 47, 72, 97, 88, 80, 118, 109, 51, 109, 50, 65, 68,
    110, 10, 98, 117, 54, 71, 81, 102, 112, 83, 71, 111, 55, 104, 50, 103, 104, 56, 49, 112, 109,
    97, 120, 107, 67, 110, 68, 67, 119, 102, 54, 109, 109, 101, 72, 55, 76, 75, 104, 115, 110, 89,
    110, 78, 52, 81, 48, 99, 122, 49, 81, 69, 47, 98, 104, 100, 80, 117, 54, 106, 115, 43, 86, 97,
    89, 52, 10, 67, 99, 77, 117, 98, 80, 78, 49, 103, 79, 75, 97, 89, 118, 78, 99, 103, 69, 87,
    112, 116, 73, 67, 105, 50, 88, 84, 116, 116, 66, 55, 117, 104, 43, 118, 67, 77, 106, 76, 118,
    106, 65, 77, 100, 54, 47, 68, 109, 120, 100, 98, 85, 66, 48, 122, 80, 71, 113, 68, 79, 103,
    105, 76, 68, 10, 75, 82, 79, 79, 53, 113, 100, 55, 115, 104, 98, 55, 49, 82, 47, 88, 74, 69,
    70, 118, 76, 120, 71, 88, 69, 70, 48, 90, 116, 104, 72, 101, 78, 111, 57, 102, 69, 118, 120,
    70, 81, 111, 109, 98, 49, 107, 90, 57, 74, 56, 110, 66, 119, 116, 101, 53, 83, 70, 53, 89, 108,
    113, 86, 50, 10, 66, 66, 53, 113, 108, 97, 122, 43, 51, 81, 83, 78, 118, 109, 67, 49, 105, 87,
    102, 108, 106, 88, 98, 89, 53, 107, 51, 47, 97, 54, 109, 107, 77, 47, 76, 97, 87, 104, 97, 117,
    78, 53, 80, 82, 51, 115, 67, 120, 53, 85, 117, 49, 77, 102, 100, 115, 86, 105, 107, 53, 102,
    88, 77, 77, 10, 100, 120, 107, 102, 70, 43, 88, 51, 99, 104, 107, 65, 110, 119, 73, 51, 70,
    117, 119, 119, 50, 87, 71, 109, 87, 79, 71, 98, 75, 116, 109, 73, 101, 85, 109, 51, 98, 73, 82,
    109, 100, 70, 85, 113, 97, 108, 81, 105, 70, 104, 113, 101, 90, 50, 105, 107, 106, 104, 103,
    86, 73, 57, 112, 76, 10, 119, 81, 73, 68, 65, 81, 65, 66, 10, 45, 45, 45, 45, 45, 69, 78, 68,
    32, 80, 85, 66, 76, 73, 67, 32, 75, 69, 89, 45, 45, 45, 45, 45, 10,
];
/// The public key response as the Go tests frame it, `byte(len(serverPubKey)), 1, 0, seq`.
fn go_pub_key_packet(sequence_id: u8) -> Vec<u8> {
    [&[196, 1, 0, sequence_id][..], GO_SERVER_PUB_KEY].concat()
}
/// `authData` of `TestAuthFastCachingSHA256PasswordCached` and `...Empty`.
const GO_CACHED_AUTH_DATA: [u8; 20] = [
    90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118,
];
/// `authData` of `TestAuthFastCachingSHA256PasswordFullRSA`.
const GO_FULL_RSA_AUTH_DATA: [u8; 20] = [
    6, 81, 96, 114, 14, 42, 50, 30, 76, 47, 1, 95, 126, 81, 62, 94, 83, 80, 52, 85,
];

fn go_options(password: &str) -> Options {
    Options::new("root", password.as_bytes(), SEED)
}

/// A constructed greeting carrying a go-sql-driver scramble (its tests begin after the greeting).
fn go_greeting(plugin: &str, auth_data: &[u8; 20]) -> Vec<u8> {
    greeting(plugin, server_capabilities(true), auth_data)
}

#[test]
fn go_sql_driver_caching_sha2_fast_path() {
    // TestAuthFastCachingSHA256PasswordCached.
    let (mut conn, response) = greeted(
        &go_options("secret"),
        go_greeting(AUTH_CACHING_SHA2_PASSWORD, &GO_CACHED_AUTH_DATA),
    );
    // expectedAuthResp
    assert_eq!(
        response.auth,
        [
            102, 32, 5, 35, 143, 161, 140, 241, 171, 232, 56, 139, 43, 14, 107, 196, 249, 170, 147,
            60, 220, 204, 120, 178, 214, 15, 184, 150, 26, 61, 57, 235
        ]
    );
    // Fast Auth Success, then OK, in one read.
    let (result, events) = feed(
        &mut conn,
        &[2, 0, 0, 2, 1, 3, 7, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0],
    );
    result.unwrap();
    assert!(
        matches!(&events[..], [Event::HandshakeDone(info)] if info.auth_plugin == AUTH_CACHING_SHA2_PASSWORD)
    );
    assert!(transmit(&mut conn).is_empty());

    // TestAuthFastCachingSHA256PasswordEmpty: no auth data at all, and an OK at once.
    let (mut conn, response) = greeted(
        &go_options(""),
        go_greeting(AUTH_CACHING_SHA2_PASSWORD, &GO_CACHED_AUTH_DATA),
    );
    assert!(response.auth.is_empty());
    let (result, events) = feed(&mut conn, &[7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
    result.unwrap();
    assert!(matches!(&events[..], [Event::HandshakeDone(_)]));
}

#[test]
fn go_sql_driver_caching_sha2_full_rsa() {
    // TestAuthFastCachingSHA256PasswordFullRSA.
    let (mut conn, response) = greeted(
        &go_options("secret"),
        go_greeting(AUTH_CACHING_SHA2_PASSWORD, &GO_FULL_RSA_AUTH_DATA),
    );
    assert_eq!(
        response.auth,
        [
            171, 201, 138, 146, 89, 159, 11, 170, 0, 67, 165, 49, 175, 94, 218, 68, 177, 109, 110,
            86, 34, 33, 44, 190, 67, 240, 70, 110, 40, 139, 124, 41
        ]
    );
    // Perform Full Authentication; the driver must write the key request, then the encrypted
    // password: "bytes.HasPrefix(conn.written, []byte{1, 0, 0, 3, 2, 0, 1, 0, 5})".
    feed(&mut conn, &[2, 0, 0, 2, 1, 4]).0.unwrap();
    let mut written = transmit(&mut conn);
    feed(&mut conn, &go_pub_key_packet(4)).0.unwrap();
    written.extend(transmit(&mut conn));
    assert_eq!(written[..9], [1, 0, 0, 3, 2, 0, 1, 0, 5]);
    assert_eq!(written.len(), 5 + 4 + 256);
    assert_encrypted_password(
        &GO_SERVER_PUB_KEY[1..],
        &written[9..],
        b"secret",
        &GO_FULL_RSA_AUTH_DATA,
    );
    let (result, events) = feed(&mut conn, &[7, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0]);
    result.unwrap();
    assert!(matches!(&events[..], [Event::HandshakeDone(_)]));

    // The same key given up front (as PEM text): the encrypted password follows 0x01 0x04 at
    // once, as packet 3.
    let pem = std::str::from_utf8(&GO_SERVER_PUB_KEY[1..]).unwrap();
    let (mut conn, _) = greeted(
        &go_options("secret").server_public_key_pem(pem),
        go_greeting(AUTH_CACHING_SHA2_PASSWORD, &GO_FULL_RSA_AUTH_DATA),
    );
    feed(&mut conn, &[2, 0, 0, 2, 1, 4]).0.unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[..4], [0, 1, 0, 3]);
    assert_encrypted_password(
        &GO_SERVER_PUB_KEY[1..],
        &sent[4..],
        b"secret",
        &GO_FULL_RSA_AUTH_DATA,
    );
    let (result, events) = feed(&mut conn, &[7, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]);
    result.unwrap();
    assert!(matches!(&events[..], [Event::HandshakeDone(_)]));
}

#[test]
fn go_sql_driver_auth_switch_to_caching_sha2_full_rsa() {
    // TestAuthSwitchCachingSHA256PasswordFullRSA: greeted in mysql_native_password with this
    // authData, switched to caching_sha2_password, then full authentication.
    let native_auth_data = [
        123, 87, 15, 84, 20, 58, 37, 121, 91, 117, 51, 24, 19, 47, 43, 9, 41, 112, 67, 110,
    ];
    let (mut conn, response) = greeted(
        &go_options("secret"),
        go_greeting(AUTH_MYSQL_NATIVE_PASSWORD, &native_auth_data),
    );
    assert_eq!(response.plugin, b"mysql_native_password");
    let switch: &[u8] = &[
        44, 0, 0, 2, 254, 99, 97, 99, 104, 105, 110, 103, 95, 115, 104, 97, 50, 95, 112, 97, 115,
        115, 119, 111, 114, 100, 0, 101, 11, 26, 18, 94, 97, 22, 72, 2, 46, 70, 106, 29, 55, 45,
        94, 76, 90, 84, 50, 0,
    ];
    let switch_nonce: [u8; 20] = switch[27..47].try_into().unwrap();
    feed(&mut conn, switch).0.unwrap();
    let hash_packet = transmit(&mut conn);
    assert_eq!(hash_packet[..4], [32, 0, 0, 3]);
    assert_eq!(
        hash_packet[4..],
        expected_sha2_scramble(b"secret", &switch_nonce)[..]
    );
    // The Go test expects [129, 93, 132, 95, ...] here: the driver hashes the nonce's
    // terminating NUL too (21 bytes). MySQL's server and libmysqlclient use the 20-byte nonce
    // (SCRAMBLE_LENGTH), as does sqlx above; given the 21-byte
    // hash, a server finds no match in its cache and falls back to full authentication.
    let go_expected_hash = [
        129, 93, 132, 95, 114, 48, 79, 215, 128, 62, 193, 118, 128, 54, 75, 208, 159, 252, 227,
        215, 129, 15, 242, 97, 19, 159, 31, 20, 58, 153, 9, 130,
    ];
    assert_ne!(hash_packet[4..], go_expected_hash);
    assert_eq!(
        sha2_scramble_over(b"secret", &switch[27..48]),
        go_expected_hash
    );

    // "2. Packet: Pub Key Request: 1, 0, 0, 5, 2"; "3. Packet: Encrypted Password: 0, 1, 0, 7".
    feed(&mut conn, &[2, 0, 0, 4, 1, 4]).0.unwrap();
    assert_eq!(transmit(&mut conn), [1, 0, 0, 5, 2]);
    feed(&mut conn, &go_pub_key_packet(6)).0.unwrap();
    let sent = transmit(&mut conn);
    assert_eq!(sent[..4], [0, 1, 0, 7]);
    assert_encrypted_password(
        &GO_SERVER_PUB_KEY[1..],
        &sent[4..],
        b"secret",
        &switch_nonce,
    );
    let (result, events) = feed(&mut conn, &[7, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0]);
    result.unwrap();
    assert!(
        matches!(&events[..], [Event::HandshakeDone(info)] if info.auth_plugin == AUTH_CACHING_SHA2_PASSWORD)
    );
}
