//! Vectors and properties for the RESP core, as data-driven tables.
//!
//! - Reply vectors: bytes captured from a real redis-server 7.0.15 (RESP3 after `HELLO 3`, and
//!   RESP2 on a fresh connection; `DEBUG PROTOCOL <type>` for the RESP3 types Redis can send),
//!   plus the examples of RESP3.md and a few constructed edge cases. Each is decoded whole, with
//!   a following reply after it, and at every proper prefix (which must be `Partial`), and is
//!   cross-checked against the `redis-protocol` crate's decoder where that crate can read it.
//! - Error vectors: each decodes to its expected error, and every prefix of it is either
//!   `Partial` or that same error (never a value, never another error).
//! - Encoders: the exact bytes of every command helper, which decode back to their arguments.
//! - Properties (proptest): any `Value` encoded by the test-only encoder below (in two styles)
//!   decodes to itself with the right length and is `Partial` at every prefix; arbitrary bytes
//!   never panic and never report more consumed than given.
//! - The connection engine: the handshake (RESP3, RESP2 fallback, refusals) on captured bytes,
//!   10,000 pipelined commands leaving in one buffer and matched in order while replies arrive
//!   in random-sized chunks with pushes interleaved, limits, and failures answering every
//!   pending command.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Building values
// ---------------------------------------------------------------------------------------------

fn simple(text: &str) -> Value {
    Value::SimpleString(text.as_bytes().to_vec())
}

fn bulk(bytes: &[u8]) -> Value {
    Value::BulkString(bytes.to_vec())
}

fn error(text: &str) -> Value {
    Value::Error(text.as_bytes().to_vec())
}

fn array(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn map(pairs: Vec<(Value, Value)>) -> Value {
    Value::Map(pairs)
}

/// `depth` arrays, one inside the other, around the number 1.
fn nested(depth: usize) -> (Vec<u8>, Value) {
    let mut bytes = b"*1\r\n".repeat(depth);
    bytes.extend_from_slice(b":1\r\n");
    let value = (0..depth).fold(Value::Integer(1), |value, _| array(vec![value]));
    (bytes, value)
}

/// A stream entry as XRANGE and XREVRANGE reply with it: `[id, [field, value, ...]]`.
fn entry(id: &str, payload: &str) -> Value {
    array(vec![
        bulk(id.as_bytes()),
        array(vec![bulk(b"payload"), bulk(payload.as_bytes())]),
    ])
}

const PAYLOAD_HI: &str = r#"{"content":"hi","timestamp":1700000000000,"user_id":1}"#;
const PAYLOAD_YO: &str = r#"{"content":"yo","timestamp":1700000000001,"user_id":2}"#;

/// `HELLO 3 AUTH default secret` answered by redis-server 7.0.15.
const HELLO_REPLY: &[u8] =
    b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";

fn hello_value() -> Value {
    map(vec![
        (bulk(b"server"), bulk(b"redis")),
        (bulk(b"version"), bulk(b"7.0.15")),
        (bulk(b"proto"), Value::Integer(3)),
        (bulk(b"id"), Value::Integer(3)),
        (bulk(b"mode"), bulk(b"standalone")),
        (bulk(b"role"), bulk(b"master")),
        (bulk(b"modules"), array(vec![])),
    ])
}

/// `CLIENT TRACKING on` then `SET k v`: the reply, then the invalidation of the key we read.
const INVALIDATE_PUSH: &[u8] = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";

fn invalidate_value() -> Value {
    Value::Push(vec![bulk(b"invalidate"), array(vec![bulk(b"k")])])
}

/// XADD with an id not above the stream's last, answered by redis-server 7.0.15.
const XADD_NOT_INCREASING: &str =
    "ERR The ID specified in XADD is equal or smaller than the target stream top item";

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// A redis-server 7.0.15 started with `--rename-command HELLO ""`, which answers `HELLO` as
/// Redis before 6 does (Redis 5 quoted the name with backquotes).
const HELLO_UNKNOWN: &[u8] =
    b"-ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'default' 'x' \r\n";

// ---------------------------------------------------------------------------------------------
// Reply vectors
// ---------------------------------------------------------------------------------------------

// 3.141 is what `DEBUG PROTOCOL double` sends, not an approximation of π.
#[allow(clippy::approx_constant)]
fn reply_vectors() -> Vec<(&'static str, Vec<u8>, Value)> {
    let b = |bytes: &[u8]| bytes.to_vec();
    let mut vectors = vec![
        // Captured from redis-server 7.0.15, RESP3.
        ("hello 3 map", b(HELLO_REPLY), hello_value()),
        ("ping", b(b"+PONG\r\n"), simple("PONG")),
        ("select ok", b(b"+OK\r\n"), simple("OK")),
        (
            "select out of range",
            b(b"-ERR DB index is out of range\r\n"),
            error("ERR DB index is out of range"),
        ),
        (
            "hello wrong password",
            b(WRONGPASS),
            error("WRONGPASS invalid username-password pair or user is disabled."),
        ),
        (
            "unknown command",
            b(b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"),
            error("ERR unknown command 'NOSUCH', with args beginning with: 'x' "),
        ),
        (
            "xadd id",
            b(b"$15\r\n1700000000000-0\r\n"),
            bulk(b"1700000000000-0"),
        ),
        (
            "xadd id not increasing",
            format!("-{XADD_NOT_INCREASING}\r\n").into_bytes(),
            error(XADD_NOT_INCREASING),
        ),
        (
            "xrevrange + - count 100",
            [
                &b"*2\r\n*2\r\n$15\r\n1700000000001-0\r\n*2\r\n$7\r\npayload\r\n$54\r\n"[..],
                PAYLOAD_YO.as_bytes(),
                b"\r\n*2\r\n$15\r\n1700000000000-0\r\n*2\r\n$7\r\npayload\r\n$54\r\n",
                PAYLOAD_HI.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            array(vec![
                entry("1700000000001-0", PAYLOAD_YO),
                entry("1700000000000-0", PAYLOAD_HI),
            ]),
        ),
        (
            "xrevrange (id - count 100",
            [
                &b"*1\r\n*2\r\n$15\r\n1700000000000-0\r\n*2\r\n$7\r\npayload\r\n$54\r\n"[..],
                PAYLOAD_HI.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            array(vec![entry("1700000000000-0", PAYLOAD_HI)]),
        ),
        (
            "xrange (id + count 100",
            [
                &b"*1\r\n*2\r\n$15\r\n1700000000001-0\r\n*2\r\n$7\r\npayload\r\n$54\r\n"[..],
                PAYLOAD_YO.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            array(vec![entry("1700000000001-0", PAYLOAD_YO)]),
        ),
        ("xrevrange of no stream", b(b"*0\r\n"), array(vec![])),
        (
            "xread two streams (resp2: an array of [key, entries])",
            [
                &b"*2\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$15\r\n1700000000000-0\r\n"[..],
                b"*2\r\n$7\r\npayload\r\n$54\r\n",
                PAYLOAD_HI.as_bytes(),
                b"\r\n*2\r\n$1\r\nb\r\n*1\r\n*2\r\n$15\r\n1700000000001-0\r\n",
                b"*2\r\n$7\r\npayload\r\n$54\r\n",
                PAYLOAD_YO.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            array(vec![
                array(vec![
                    bulk(b"a"),
                    array(vec![entry("1700000000000-0", PAYLOAD_HI)]),
                ]),
                array(vec![
                    bulk(b"b"),
                    array(vec![entry("1700000000001-0", PAYLOAD_YO)]),
                ]),
            ]),
        ),
        (
            "xread two streams (resp3: a map of key to entries)",
            [
                &b"%2\r\n$1\r\na\r\n*1\r\n*2\r\n$15\r\n1700000000000-0\r\n"[..],
                b"*2\r\n$7\r\npayload\r\n$54\r\n",
                PAYLOAD_HI.as_bytes(),
                b"\r\n$1\r\nb\r\n*1\r\n*2\r\n$15\r\n1700000000001-0\r\n",
                b"*2\r\n$7\r\npayload\r\n$54\r\n",
                PAYLOAD_YO.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            map(vec![
                (
                    bulk(b"a"),
                    array(vec![entry("1700000000000-0", PAYLOAD_HI)]),
                ),
                (
                    bulk(b"b"),
                    array(vec![entry("1700000000001-0", PAYLOAD_YO)]),
                ),
            ]),
        ),
        ("set nx ex created", b(b"+OK\r\n"), simple("OK")),
        ("set nx ex exists (resp3 null)", b(b"_\r\n"), Value::Null),
        ("get", b(b"$2\r\n42\r\n"), bulk(b"42")),
        ("del", b(b":1\r\n"), Value::Integer(1)),
        (
            "debug protocol map",
            b(b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n"),
            map(vec![
                (Value::Integer(0), Value::Boolean(false)),
                (Value::Integer(1), Value::Boolean(true)),
                (Value::Integer(2), Value::Boolean(false)),
            ]),
        ),
        (
            "debug protocol set",
            b(b"~3\r\n:0\r\n:1\r\n:2\r\n"),
            Value::Set(vec![
                Value::Integer(0),
                Value::Integer(1),
                Value::Integer(2),
            ]),
        ),
        (
            "debug protocol double",
            b(b",3.141\r\n"),
            Value::Double(3.141),
        ),
        (
            "debug protocol bignum",
            b(b"(1234567999999999999999999999999999999\r\n"),
            Value::BigNumber("1234567999999999999999999999999999999".into()),
        ),
        ("debug protocol true", b(b"#t\r\n"), Value::Boolean(true)),
        ("debug protocol false", b(b"#f\r\n"), Value::Boolean(false)),
        (
            "debug protocol verbatim",
            b(b"=29\r\ntxt:This is a verbatim\nstring\r\n"),
            Value::Verbatim {
                format: *b"txt",
                text: b"This is a verbatim\nstring".to_vec(),
            },
        ),
        (
            "debug protocol attrib (skipped)",
            b(
                b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n\
$39\r\nSome real reply following the attribute\r\n",
            ),
            bulk(b"Some real reply following the attribute"),
        ),
        (
            "debug protocol push",
            b(b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"),
            Value::Push(vec![bulk(b"server-cpu-usage"), Value::Integer(42)]),
        ),
        ("debug protocol null", b(b"_\r\n"), Value::Null),
        (
            "debug protocol string",
            b(b"$11\r\nHello World\r\n"),
            bulk(b"Hello World"),
        ),
        (
            "debug protocol integer",
            b(b":12345\r\n"),
            Value::Integer(12345),
        ),
        (
            "debug protocol array",
            b(b"*3\r\n:0\r\n:1\r\n:2\r\n"),
            array(vec![
                Value::Integer(0),
                Value::Integer(1),
                Value::Integer(2),
            ]),
        ),
        ("invalidate push", b(INVALIDATE_PUSH), invalidate_value()),
        // Captured from redis-server 7.0.15, RESP2.
        ("resp2 get missing (null bulk)", b(b"$-1\r\n"), Value::Null),
        (
            "resp2 blpop timeout (null array)",
            b(b"*-1\r\n"),
            Value::Null,
        ),
        (
            "resp2 debug protocol double",
            b(b"$5\r\n3.141\r\n"),
            bulk(b"3.141"),
        ),
        (
            "resp2 debug protocol map",
            b(b"*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n"),
            array([0, 0, 1, 1, 2, 0].map(Value::Integer).to_vec()),
        ),
        (
            "resp2 noauth",
            b(b"-NOAUTH Authentication required.\r\n"),
            error("NOAUTH Authentication required."),
        ),
        // RESP3.md examples.
        (
            "spec blob string",
            b(b"$11\r\nhello world\r\n"),
            bulk(b"hello world"),
        ),
        ("spec empty blob string", b(b"$0\r\n\r\n"), bulk(b"")),
        (
            "spec simple string",
            b(b"+hello world\r\n"),
            simple("hello world"),
        ),
        (
            "spec simple error",
            b(b"-ERR this is the error description\r\n"),
            error("ERR this is the error description"),
        ),
        ("spec number", b(b":1234\r\n"), Value::Integer(1234)),
        ("spec null", b(b"_\r\n"), Value::Null),
        ("spec double", b(b",1.23\r\n"), Value::Double(1.23)),
        (
            "spec double without fraction",
            b(b",10\r\n"),
            Value::Double(10.0),
        ),
        (
            "spec double inf",
            b(b",inf\r\n"),
            Value::Double(f64::INFINITY),
        ),
        (
            "spec double -inf",
            b(b",-inf\r\n"),
            Value::Double(f64::NEG_INFINITY),
        ),
        ("spec double nan", b(b",nan\r\n"), Value::Double(f64::NAN)),
        (
            "spec double -nan (before 7.2)",
            b(b",-nan\r\n"),
            Value::Double(f64::NAN),
        ),
        (
            "libc NAN (before 7.2)",
            b(b",NAN\r\n"),
            Value::Double(f64::NAN),
        ),
        (
            "libc nan(sequence)",
            b(b",nan(0x8)\r\n"),
            Value::Double(f64::NAN),
        ),
        ("double exponent", b(b",1.5e-3\r\n"), Value::Double(1.5e-3)),
        (
            "double signed exponent",
            b(b",-2E+10\r\n"),
            Value::Double(-2e10),
        ),
        ("spec boolean true", b(b"#t\r\n"), Value::Boolean(true)),
        (
            "spec blob error",
            b(b"!21\r\nSYNTAX invalid syntax\r\n"),
            error("SYNTAX invalid syntax"),
        ),
        (
            "spec verbatim",
            b(b"=15\r\ntxt:Some string\r\n"),
            Value::Verbatim {
                format: *b"txt",
                text: b"Some string".to_vec(),
            },
        ),
        (
            "spec big number",
            b(b"(3492890328409238509324850943850943825024385\r\n"),
            Value::BigNumber("3492890328409238509324850943850943825024385".into()),
        ),
        (
            "negative big number",
            b(b"(-3492890328409238509324850943850943825024385\r\n"),
            Value::BigNumber("-3492890328409238509324850943850943825024385".into()),
        ),
        (
            "spec array",
            b(b"*3\r\n:1\r\n:2\r\n:3\r\n"),
            array([1, 2, 3].map(Value::Integer).to_vec()),
        ),
        (
            "spec nested array",
            b(b"*2\r\n*3\r\n:1\r\n$5\r\nhello\r\n:2\r\n#f\r\n"),
            array(vec![
                array(vec![Value::Integer(1), bulk(b"hello"), Value::Integer(2)]),
                Value::Boolean(false),
            ]),
        ),
        (
            "spec map",
            b(b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"),
            map(vec![
                (simple("first"), Value::Integer(1)),
                (simple("second"), Value::Integer(2)),
            ]),
        ),
        (
            "spec set",
            b(b"~5\r\n+orange\r\n+apple\r\n#t\r\n:100\r\n:999\r\n"),
            Value::Set(vec![
                simple("orange"),
                simple("apple"),
                Value::Boolean(true),
                Value::Integer(100),
                Value::Integer(999),
            ]),
        ),
        (
            "spec attribute before a reply",
            b(
                b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
*2\r\n:2039123\r\n:9543892\r\n",
            ),
            array(vec![Value::Integer(2039123), Value::Integer(9543892)]),
        ),
        (
            "spec attribute inside an array",
            b(b"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n"),
            array([1, 2, 3].map(Value::Integer).to_vec()),
        ),
        (
            "spec push",
            b(b">3\r\n+message\r\n+somechannel\r\n+this is the message\r\n"),
            Value::Push(vec![
                simple("message"),
                simple("somechannel"),
                simple("this is the message"),
            ]),
        ),
        // Constructed edge cases.
        ("empty simple string", b(b"+\r\n"), simple("")),
        (
            "blob with CRLF inside",
            b(b"$4\r\na\r\nb\r\n"),
            bulk(b"a\r\nb"),
        ),
        ("explicit plus number", b(b":+7\r\n"), Value::Integer(7)),
        (
            "i64 min",
            b(b":-9223372036854775808\r\n"),
            Value::Integer(i64::MIN),
        ),
        (
            "i64 max",
            b(b":9223372036854775807\r\n"),
            Value::Integer(i64::MAX),
        ),
        ("empty map", b(b"%0\r\n"), map(vec![])),
        (
            "repeated map keys kept",
            b(b"%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n"),
            map(vec![
                (simple("a"), Value::Integer(1)),
                (simple("a"), Value::Integer(2)),
            ]),
        ),
        (
            "aggregate map key",
            b(b"%1\r\n*1\r\n:1\r\n,1.5\r\n"),
            map(vec![(array(vec![Value::Integer(1)]), Value::Double(1.5))]),
        ),
        (
            "null bulk inside an array",
            b(b"*2\r\n$-1\r\n_\r\n"),
            array(vec![Value::Null, Value::Null]),
        ),
        (
            "attributes before an attribute",
            b(b"|0\r\n|1\r\n+a\r\n+b\r\n:5\r\n"),
            Value::Integer(5),
        ),
        (
            "empty verbatim text",
            b(b"=4\r\nmkd:\r\n"),
            Value::Verbatim {
                format: *b"mkd",
                text: Vec::new(),
            },
        ),
    ];
    let (bytes, value) = nested(RESP_NESTING_DEPTH_MAX);
    vectors.push(("nested to the depth limit", bytes, value));
    let longest = vec![b'a'; RESP_LINE_BYTES_MAX];
    vectors.push((
        "simple string at the line limit",
        [&b"+"[..], &longest, b"\r\n"].concat(),
        Value::SimpleString(longest),
    ));
    vectors
}

fn check_reply(name: &str, bytes: &[u8], want: &Value) {
    assert_eq!(
        decode_value(bytes),
        Ok(Decode::Complete {
            value: want.clone(),
            consumed: bytes.len()
        }),
        "{name}: whole"
    );
    let followed = [bytes, b"+NEXT\r\n"].concat();
    assert_eq!(
        decode_value(&followed),
        Ok(Decode::Complete {
            value: want.clone(),
            consumed: bytes.len()
        }),
        "{name}: followed by another reply"
    );
    for cut in 0..bytes.len() {
        assert_eq!(
            decode_value(&bytes[..cut]),
            Ok(Decode::Partial),
            "{name}: prefix of {cut} bytes"
        );
    }
}

#[test]
fn reply_vectors_whole_followed_and_at_every_prefix() {
    for (name, bytes, want) in reply_vectors() {
        if bytes.len() > 4096 {
            // The line-limit vector: every prefix would be quadratic; the ends are enough.
            assert_eq!(decode_value(&bytes).map(|_| ()), Ok(()), "{name}");
            for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
                assert_eq!(decode_value(&bytes[..cut]), Ok(Decode::Partial), "{name}");
            }
            continue;
        }
        check_reply(name, &bytes, &want);
    }
}

#[test]
fn reply_vector_count() {
    assert_eq!(reply_vectors().len(), 78);
}

// ---------------------------------------------------------------------------------------------
// Cross-check with the redis-protocol crate
// ---------------------------------------------------------------------------------------------

/// The crate's RESP3 frame as one of our values, with maps' and sets' entries sorted (the crate
/// keeps them in hash containers) so the two can be compared.
fn from_crate(frame: redis_protocol::resp3::types::OwnedFrame) -> Value {
    use redis_protocol::resp3::types::{OwnedFrame as F, VerbatimStringFormat};
    let value = match frame {
        F::BlobString { data, .. } => Value::BulkString(data),
        F::BlobError { data, .. } => Value::Error(data),
        F::SimpleString { data, .. } => Value::SimpleString(data),
        F::SimpleError { data, .. } => Value::Error(data.into_bytes()),
        F::Boolean { data, .. } => Value::Boolean(data),
        F::Null => Value::Null,
        F::Number { data, .. } => Value::Integer(data),
        F::Double { data, .. } => Value::Double(data),
        F::BigNumber { data, .. } => Value::BigNumber(String::from_utf8(data).unwrap()),
        F::VerbatimString { data, format, .. } => Value::Verbatim {
            format: match format {
                VerbatimStringFormat::Text => *b"txt",
                VerbatimStringFormat::Markdown => *b"mkd",
            },
            text: data,
        },
        F::Array { data, .. } => Value::Array(data.into_iter().map(from_crate).collect()),
        F::Push { data, .. } => Value::Push(data.into_iter().map(from_crate).collect()),
        F::Map { data, .. } => Value::Map(
            data.into_iter()
                .map(|(key, value)| (from_crate(key), from_crate(value)))
                .collect(),
        ),
        F::Set { data, .. } => Value::Set(data.into_iter().map(from_crate).collect()),
        other => panic!("unexpected frame {other:?}"),
    };
    sorted(value)
}

fn sorted(value: Value) -> Value {
    let key = |value: &Value| format!("{value:?}");
    match value {
        Value::Map(pairs) => {
            let mut pairs: Vec<_> = pairs
                .into_iter()
                .map(|(k, v)| (sorted(k), sorted(v)))
                .collect();
            pairs.sort_by_key(|(k, v)| (key(k), key(v)));
            Value::Map(pairs)
        }
        Value::Set(items) => {
            let mut items: Vec<_> = items.into_iter().map(sorted).collect();
            items.sort_by_key(key);
            Value::Set(items)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        Value::Push(items) => Value::Push(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[test]
fn reply_vectors_agree_with_the_redis_protocol_crate() {
    // What the crate reads differently, by design or by bug (see the deviations test below).
    let resp2_only = [
        "resp2 get missing (null bulk)",
        "resp2 blpop timeout (null array)",
    ];
    let crate_dedups = ["repeated map keys kept"];
    let crate_refuses = [
        "aggregate map key",              // its map keys must be hashable
        "null bulk inside an array",      // RESP2 null in its RESP3 decoder
        "libc nan(sequence)",             // Rust's f64 parser does not read it
        "attributes before an attribute", // it expects a value after one attribute
    ];
    let mut compared = 0;
    for (name, bytes, want) in reply_vectors() {
        if crate_dedups.contains(&name) {
            continue;
        }
        if resp2_only.contains(&name) {
            let decoded = redis_protocol::resp2::decode::decode(&bytes).unwrap();
            let (frame, consumed) = decoded.unwrap();
            assert_eq!(consumed, bytes.len(), "{name}");
            assert_eq!(
                frame,
                redis_protocol::resp2::types::OwnedFrame::Null,
                "{name}"
            );
            compared += 1;
            continue;
        }
        match redis_protocol::resp3::decode::complete::decode(&bytes) {
            Ok(Some((frame, consumed))) => {
                assert_eq!(consumed, bytes.len(), "{name}");
                assert_eq!(from_crate(frame), sorted(want), "{name}");
                compared += 1;
            }
            other => assert!(
                crate_refuses.contains(&name),
                "{name}: crate gave {other:?}"
            ),
        }
    }
    assert!(compared >= 70, "only {compared} vectors compared");
}

/// What made us frame RESP ourselves (see the module doc): if a later version of the crate
/// fixes these, this test says so and the decision can be revisited. Its stack overflow on deep
/// nesting cannot be shown here: it aborts the process.
#[test]
fn redis_protocol_crate_deviations_that_made_us_frame_ourselves() {
    use redis_protocol::resp3::decode::complete::decode as crate_decode;
    // The two bytes after a blob's data are taken without being checked.
    assert_eq!(
        crate_decode(b"$3\r\nabcXY").unwrap().map(|(_, n)| n),
        Some(9)
    );
    assert_eq!(decode_value(b"$3\r\nabcXY"), Err(RespError::BadLineEnd));
    // A bare LF inside a simple string is accepted.
    assert!(crate_decode(b"+OK\n\r\n").unwrap().is_some());
    assert_eq!(decode_value(b"+OK\n\r\n"), Err(RespError::BadLineEnd));
    // Its RESP3 decoder refuses RESP2 nulls.
    assert!(crate_decode(b"$-1\r\n").is_err());
    assert!(crate_decode(b"*-1\r\n").is_err());
    // Repeated map keys collapse into one.
    let (frame, _) = crate_decode(b"%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n")
        .unwrap()
        .unwrap();
    let Value::Map(pairs) = from_crate(frame) else {
        panic!("not a map");
    };
    assert_eq!(pairs.len(), 1);
    // A verbatim format other than txt or mkd is refused; RESP3 leaves the three bytes open.
    assert!(crate_decode(b"=7\r\nxyz:abc\r\n").is_err());
    assert!(matches!(
        decode_value(b"=7\r\nxyz:abc\r\n"),
        Ok(Decode::Complete { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Error vectors
// ---------------------------------------------------------------------------------------------

fn error_vectors() -> Vec<(&'static str, Vec<u8>, RespError)> {
    use RespError::*;
    let b = |bytes: &[u8]| bytes.to_vec();
    let too_large = |limit| TooLarge(limit);
    let mut vectors = vec![
        ("unknown type byte", b(b"@1\r\n"), UnknownType(b'@')),
        (
            "http server on the redis port",
            b(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            UnknownType(b'H'),
        ),
        ("inline reply", b(b"OK\r\n"), UnknownType(b'O')),
        ("letters for a length", b(b"$abc\r\n"), BadLength),
        ("empty length", b(b"$\r\n"), BadLength),
        ("signed length", b(b"$+3\r\nabc\r\n"), BadLength),
        ("space in a length", b(b"$ 3\r\nabc\r\n"), BadLength),
        ("bulk length -2", b(b"$-2\r\n"), BadLength),
        ("array length -2", b(b"*-2\r\n"), BadLength),
        ("map length -1", b(b"%-1\r\n"), BadLength),
        ("set length -1", b(b"~-1\r\n"), BadLength),
        ("push length -1", b(b">-1\r\n"), BadLength),
        ("attribute length -1", b(b"|-1\r\n"), BadLength),
        ("blob error length -1", b(b"!-1\r\n"), BadLength),
        ("verbatim length -1", b(b"=-1\r\n"), BadLength),
        (
            "bulk length i64 max",
            b(b"$9223372036854775807\r\n"),
            too_large(Limit::BulkBytes),
        ),
        (
            "bulk length past u64",
            b(b"$99999999999999999999999999\r\n"),
            too_large(Limit::BulkBytes),
        ),
        (
            "blob error length i64 max",
            b(b"!9223372036854775807\r\n"),
            too_large(Limit::BulkBytes),
        ),
        (
            "verbatim length i64 max",
            b(b"=9223372036854775807\r\n"),
            too_large(Limit::BulkBytes),
        ),
        (
            "array count i64 max",
            b(b"*9223372036854775807\r\n"),
            too_large(Limit::AggregateElements),
        ),
        (
            "array count u32 max",
            b(b"*4294967295\r\n:1\r\n"),
            too_large(Limit::AggregateElements),
        ),
        (
            "map pairs i64 max",
            b(b"%9223372036854775807\r\n"),
            too_large(Limit::AggregateElements),
        ),
        (
            "set count i64 max",
            b(b"~9223372036854775807\r\n"),
            too_large(Limit::AggregateElements),
        ),
        (
            "push count i64 max",
            b(b">9223372036854775807\r\n"),
            too_large(Limit::AggregateElements),
        ),
        (
            "attribute pairs i64 max",
            b(b"|9223372036854775807\r\n"),
            too_large(Limit::AggregateElements),
        ),
        ("blob not followed by CRLF", b(b"$3\r\nabcXY"), BadLineEnd),
        ("blob followed by CR only", b(b"$3\r\nabc\rX"), BadLineEnd),
        ("blob longer than declared", b(b"$2\r\nabc\r\n"), BadLineEnd),
        ("bare LF after a simple string", b(b"+OK\n"), BadLineEnd),
        (
            "bare LF inside a simple string",
            b(b"+O\nK\r\n"),
            BadLineEnd,
        ),
        ("CR inside a simple string", b(b"+O\rK\r\n"), BadLineEnd),
        ("bare LF after a number", b(b":1\n"), BadLineEnd),
        ("bare LF after a length", b(b"*1\n:1\r\n"), BadLineEnd),
        ("bare LF after an error", b(b"-ERR x\n"), BadLineEnd),
        ("letters in a number", b(b":12a\r\n"), BadValue("number")),
        ("empty number", b(b":\r\n"), BadValue("number")),
        (
            "number past i64",
            b(b":9223372036854775808\r\n"),
            BadValue("number"),
        ),
        (
            "boolean other than t or f",
            b(b"#x\r\n"),
            BadValue("boolean"),
        ),
        (
            "boolean true spelled out",
            b(b"#true\r\n"),
            BadValue("boolean"),
        ),
        ("double with two dots", b(b",1.2.3\r\n"), BadValue("double")),
        (
            "double starting with a dot",
            b(b",.5\r\n"),
            BadValue("double"),
        ),
        ("double with a bare dot", b(b",5.\r\n"), BadValue("double")),
        (
            "double with an empty exponent",
            b(b",1e\r\n"),
            BadValue("double"),
        ),
        ("double as a word", b(b",abc\r\n"), BadValue("double")),
        (
            "double with text after nan",
            b(b",nanx\r\n"),
            BadValue("double"),
        ),
        ("empty double", b(b",\r\n"), BadValue("double")),
        ("null with text", b(b"_x\r\n"), BadValue("null")),
        (
            "big number with letters",
            b(b"(12a\r\n"),
            BadValue("big number"),
        ),
        (
            "big number with a fraction",
            b(b"(1.5\r\n"),
            BadValue("big number"),
        ),
        ("empty big number", b(b"(\r\n"), BadValue("big number")),
        (
            "verbatim shorter than its format",
            b(b"=3\r\ntxt\r\n"),
            BadValue("verbatim string"),
        ),
        (
            "verbatim without colon",
            b(b"=5\r\ntxt-x\r\n"),
            BadValue("verbatim string"),
        ),
        (
            "streamed string",
            b(b"$?\r\n;4\r\nHell\r\n;0\r\n"),
            Unsupported("streamed strings and aggregates"),
        ),
        (
            "streamed array",
            b(b"*?\r\n:1\r\n.\r\n"),
            Unsupported("streamed strings and aggregates"),
        ),
        (
            "streamed chunk at the top",
            b(b";4\r\nHell\r\n"),
            Unsupported("streamed strings and aggregates"),
        ),
        (
            "error deep inside a reply",
            b(b"*2\r\n%1\r\n+k\r\n*1\r\n#maybe\r\n:1\r\n"),
            BadValue("boolean"),
        ),
    ];
    let (mut deep, _) = nested(RESP_NESTING_DEPTH_MAX + 1);
    vectors.push((
        "nested past the depth limit",
        deep.clone(),
        too_large(Limit::NestingDepth),
    ));
    deep.truncate((RESP_NESTING_DEPTH_MAX + 1) * 4);
    vectors.push((
        "nesting refused before its elements arrive",
        deep,
        too_large(Limit::NestingDepth),
    ));
    let mut maps = b"%1\r\n+k\r\n".repeat(RESP_NESTING_DEPTH_MAX + 1);
    maps.extend_from_slice(b"_\r\n");
    vectors.push((
        "maps nested past the limit",
        maps,
        too_large(Limit::NestingDepth),
    ));
    let mut attributes = b"*1\r\n".repeat(RESP_NESTING_DEPTH_MAX);
    attributes.extend_from_slice(b"|1\r\n+a\r\n+b\r\n:1\r\n");
    vectors.push((
        "an attribute past the limit",
        attributes,
        too_large(Limit::NestingDepth),
    ));
    vectors.push((
        "bulk one byte over the limit",
        format!("${}\r\n", RESP_BULK_BYTES_MAX + 1).into_bytes(),
        too_large(Limit::BulkBytes),
    ));
    vectors.push((
        "array one element over the limit",
        format!("*{}\r\n", RESP_AGGREGATE_ELEMENTS_MAX + 1).into_bytes(),
        too_large(Limit::AggregateElements),
    ));
    vectors.push((
        "map one pair over the limit",
        format!("%{}\r\n", RESP_AGGREGATE_ELEMENTS_MAX / 2 + 1).into_bytes(),
        too_large(Limit::AggregateElements),
    ));
    let mut long_line = b"+".to_vec();
    long_line.resize(RESP_LINE_BYTES_MAX + 2, b'a');
    vectors.push((
        "simple string one byte over the line limit",
        long_line,
        too_large(Limit::LineBytes),
    ));
    let mut long_length = b"$".to_vec();
    long_length.resize(RESP_LINE_BYTES_MAX + 2, b'0');
    vectors.push((
        "length line over the line limit",
        long_length,
        too_large(Limit::LineBytes),
    ));
    vectors
}

fn check_error(name: &str, bytes: &[u8], want: &RespError) {
    assert_eq!(decode_value(bytes), Err(want.clone()), "{name}: whole");
    let step = if bytes.len() > 4096 { 997 } else { 1 };
    for cut in (0..bytes.len()).step_by(step) {
        match decode_value(&bytes[..cut]) {
            Ok(Decode::Partial) => {}
            Err(error) if error == *want => {}
            other => panic!("{name}: prefix of {cut} bytes gave {other:?}"),
        }
    }
}

#[test]
fn error_vectors_whole_and_at_every_prefix() {
    for (name, bytes, want) in error_vectors() {
        check_error(name, &bytes, &want);
    }
}

#[test]
fn error_vector_count() {
    assert_eq!(error_vectors().len(), 65);
}

#[test]
fn hostile_lengths_are_refused_from_the_header_alone() {
    // No data follows the headers: the refusal cannot have waited for it.
    assert_eq!(
        decode_value(b"$9223372036854775807\r\n"),
        Err(RespError::TooLarge(Limit::BulkBytes))
    );
    assert_eq!(
        decode_value(b"*9223372036854775807\r\n"),
        Err(RespError::TooLarge(Limit::AggregateElements))
    );
    // At the limits, the same headers are simply waiting for their data.
    let bulk_header = format!("${RESP_BULK_BYTES_MAX}\r\n");
    assert_eq!(decode_value(bulk_header.as_bytes()), Ok(Decode::Partial));
    let array_header = format!("*{RESP_AGGREGATE_ELEMENTS_MAX}\r\n");
    assert_eq!(decode_value(array_header.as_bytes()), Ok(Decode::Partial));
}

#[test]
fn a_reply_over_the_reply_limit_is_refused() {
    // Two full-size blobs fit; a third takes the reply past RESP_REPLY_BYTES_MAX.
    let blob = vec![b'x'; RESP_REPLY_BYTES_MAX / 2 - 100];
    let header = format!("${}\r\n", blob.len());
    let mut reply = b"*3\r\n".to_vec();
    for _ in 0..2 {
        reply.extend_from_slice(header.as_bytes());
        reply.extend_from_slice(&blob);
        reply.extend_from_slice(b"\r\n");
    }
    let two_blobs = reply.len();
    assert!(two_blobs < RESP_REPLY_BYTES_MAX);
    assert_eq!(decode_value(&reply), Ok(Decode::Partial));
    reply.extend_from_slice(header.as_bytes());
    // The third blob's header alone shows the reply cannot end within the limit.
    assert_eq!(
        decode_value(&reply),
        Err(RespError::TooLarge(Limit::ReplyBytes))
    );
    // Small elements in a huge count: refused once the buffer reaches the limit.
    let mut many = format!("*{RESP_AGGREGATE_ELEMENTS_MAX}\r\n").into_bytes();
    let element = b"$32\r\n................................\r\n";
    while many.len() <= RESP_REPLY_BYTES_MAX {
        many.extend_from_slice(element);
    }
    assert_eq!(
        decode_value(&many),
        Err(RespError::TooLarge(Limit::ReplyBytes))
    );
}

#[test]
fn a_value_is_four_words() {
    // RESP_REPLY_BYTES_MAX's doc bounds a reply's memory with this size.
    assert_eq!(std::mem::size_of::<Value>(), 32);
}

// ---------------------------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------------------------

/// A chat message with a CRLF inside, which a bulk string carries as it is.
const XADD_PAYLOAD: &str = "{\"content\":\"a\r\nb\"}";

#[test]
fn command_encoders_write_arrays_of_bulk_strings() {
    type Encoder = Box<dyn Fn(&mut Vec<u8>)>;
    // Name, encoder, the bytes it must append, the arguments they must decode back to.
    let table: Vec<(&str, Encoder, &str, &[&str])> = vec![
        (
            "command",
            Box::new(|out| encode_command(&[b"SET", b"k", b""], out)),
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
            &["SET", "k", ""],
        ),
        (
            "hello",
            Box::new(|out| encode_hello(None, out)),
            "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
            &["HELLO", "3"],
        ),
        (
            "hello with auth",
            Box::new(|out| encode_hello(Some((b"default", b"secret")), out)),
            "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\nsecret\r\n",
            &["HELLO", "3", "AUTH", "default", "secret"],
        ),
        (
            "auth password",
            Box::new(|out| encode_auth(None, b"secret", out)),
            "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n",
            &["AUTH", "secret"],
        ),
        (
            "auth user password",
            Box::new(|out| encode_auth(Some(b"chat"), b"secret", out)),
            "*3\r\n$4\r\nAUTH\r\n$4\r\nchat\r\n$6\r\nsecret\r\n",
            &["AUTH", "chat", "secret"],
        ),
        (
            "select",
            Box::new(|out| encode_select(15, out)),
            "*2\r\n$6\r\nSELECT\r\n$2\r\n15\r\n",
            &["SELECT", "15"],
        ),
        (
            "ping",
            Box::new(encode_ping),
            "*1\r\n$4\r\nPING\r\n",
            &["PING"],
        ),
        (
            "xadd",
            Box::new(|out| encode_xadd(b"7", None, XADD_PAYLOAD.as_bytes(), out)),
            "*5\r\n$4\r\nXADD\r\n$1\r\n7\r\n$1\r\n*\r\n$7\r\npayload\r\n\
             $18\r\n{\"content\":\"a\r\nb\"}\r\n",
            &["XADD", "7", "*", "payload", XADD_PAYLOAD],
        ),
        (
            "xadd with retention",
            Box::new(|out| encode_xadd(b"7", Some(1000), XADD_PAYLOAD.as_bytes(), out)),
            "*8\r\n$4\r\nXADD\r\n$1\r\n7\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$4\r\n1000\r\n\
             $1\r\n*\r\n$7\r\npayload\r\n$18\r\n{\"content\":\"a\r\nb\"}\r\n",
            &[
                "XADD",
                "7",
                "MAXLEN",
                "~",
                "1000",
                "*",
                "payload",
                XADD_PAYLOAD,
            ],
        ),
        (
            "xrevrange newest",
            Box::new(|out| encode_xrevrange_newest(b"7", 100, out)),
            "*6\r\n$9\r\nXREVRANGE\r\n$1\r\n7\r\n$1\r\n+\r\n$1\r\n-\r\n\
             $5\r\nCOUNT\r\n$3\r\n100\r\n",
            &["XREVRANGE", "7", "+", "-", "COUNT", "100"],
        ),
        (
            "xrevrange before",
            Box::new(|out| encode_xrevrange_before(b"7", b"1700000000001-0", 100, out)),
            "*6\r\n$9\r\nXREVRANGE\r\n$1\r\n7\r\n$16\r\n(1700000000001-0\r\n$1\r\n-\r\n\
             $5\r\nCOUNT\r\n$3\r\n100\r\n",
            &["XREVRANGE", "7", "(1700000000001-0", "-", "COUNT", "100"],
        ),
        (
            "xrange after",
            Box::new(|out| encode_xrange_after(b"7", b"1700000000000-0", 5, out)),
            "*6\r\n$6\r\nXRANGE\r\n$1\r\n7\r\n$16\r\n(1700000000000-0\r\n$1\r\n+\r\n\
             $5\r\nCOUNT\r\n$1\r\n5\r\n",
            &["XRANGE", "7", "(1700000000000-0", "+", "COUNT", "5"],
        ),
        (
            "xread block",
            Box::new(|out| {
                let streams: [(&[u8], &[u8]); 2] = [(b"7", b"0-0"), (b"12", b"1700000000000-3")];
                encode_xread(&streams, 100, Some(5000), out)
            }),
            "*10\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$3\r\n100\r\n$5\r\nBLOCK\r\n\
             $4\r\n5000\r\n$7\r\nSTREAMS\r\n$1\r\n7\r\n$2\r\n12\r\n$3\r\n0-0\r\n\
             $15\r\n1700000000000-3\r\n",
            &[
                "XREAD",
                "COUNT",
                "100",
                "BLOCK",
                "5000",
                "STREAMS",
                "7",
                "12",
                "0-0",
                "1700000000000-3",
            ],
        ),
        (
            "xread without block",
            Box::new(|out| encode_xread(&[(b"7", b"5-1")], 1, None, out)),
            "*6\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$1\r\n1\r\n$7\r\nSTREAMS\r\n\
             $1\r\n7\r\n$3\r\n5-1\r\n",
            &["XREAD", "COUNT", "1", "STREAMS", "7", "5-1"],
        ),
        (
            "set nx ex",
            Box::new(|out| encode_set_nx_ex(b"session_abc", b"42", 604800, out)),
            "*6\r\n$3\r\nSET\r\n$11\r\nsession_abc\r\n$2\r\n42\r\n$2\r\nNX\r\n$2\r\nEX\r\n\
             $6\r\n604800\r\n",
            &["SET", "session_abc", "42", "NX", "EX", "604800"],
        ),
        (
            "get",
            Box::new(|out| encode_get(b"session_abc", out)),
            "*2\r\n$3\r\nGET\r\n$11\r\nsession_abc\r\n",
            &["GET", "session_abc"],
        ),
        (
            "del",
            Box::new(|out| encode_del(b"session_abc", out)),
            "*2\r\n$3\r\nDEL\r\n$11\r\nsession_abc\r\n",
            &["DEL", "session_abc"],
        ),
    ];
    for (name, encode, want, args) in table {
        // Appends: what the buffer held stays in front.
        let mut out = b"before".to_vec();
        encode(&mut out);
        assert_eq!(&out[..6], b"before", "{name}");
        assert_eq!(String::from_utf8_lossy(&out[6..]), want, "{name}");
        let args = array(args.iter().map(|arg| bulk(arg.as_bytes())).collect());
        check_reply(name, want.as_bytes(), &args);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips (proptest)
// ---------------------------------------------------------------------------------------------

/// Test-only encoder for every value. `alternate` picks the other spelling where RESP has two:
/// RESP2 nulls, blob errors, doubles in exponent form, and an attribute before every element of
/// an aggregate (which the decoder must skip).
fn encode_value(value: &Value, alternate: bool, out: &mut Vec<u8>) {
    let header = |kind: u8, count: usize, out: &mut Vec<u8>| {
        out.push(kind);
        out.extend_from_slice(count.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    let blob = |kind: u8, bytes: &[u8], out: &mut Vec<u8>| {
        header(kind, bytes.len(), out);
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    };
    let line = |kind: u8, text: &[u8], out: &mut Vec<u8>| {
        out.push(kind);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    };
    let element = |value: &Value, out: &mut Vec<u8>| {
        if alternate {
            out.extend_from_slice(b"|1\r\n+ttl\r\n:3600\r\n");
        }
        encode_value(value, alternate, out);
    };
    match value {
        Value::SimpleString(text) => line(b'+', text, out),
        Value::Error(text) if alternate || text.contains(&b'\r') || text.contains(&b'\n') => {
            blob(b'!', text, out)
        }
        Value::Error(text) => line(b'-', text, out),
        Value::Integer(n) => line(b':', n.to_string().as_bytes(), out),
        Value::BulkString(bytes) => blob(b'$', bytes, out),
        Value::Null if alternate => out.extend_from_slice(b"$-1\r\n"),
        Value::Null => out.extend_from_slice(b"_\r\n"),
        Value::Double(x) if x.is_nan() => line(b',', b"nan", out),
        Value::Double(x) if x.is_infinite() => {
            line(b',', if *x > 0.0 { b"inf" } else { b"-inf" }, out)
        }
        Value::Double(x) if alternate => line(b',', format!("{x:e}").as_bytes(), out),
        Value::Double(x) => line(b',', format!("{x}").as_bytes(), out),
        Value::Boolean(b) => line(b'#', if *b { b"t" } else { b"f" }, out),
        Value::BigNumber(text) => line(b'(', text.as_bytes(), out),
        Value::Verbatim { format, text } => blob(b'=', &[&format[..], b":", text].concat(), out),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            let kind = match value {
                Value::Array(_) => b'*',
                Value::Set(_) => b'~',
                _ => b'>',
            };
            header(kind, items.len(), out);
            for item in items {
                element(item, out);
            }
        }
        Value::Map(pairs) => {
            header(b'%', pairs.len(), out);
            for (key, value) in pairs {
                element(key, out);
                element(value, out);
            }
        }
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    let line_text = proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..24,
    );
    let bytes = proptest::collection::vec(any::<u8>(), 0..48);
    let leaf = prop_oneof![
        line_text.prop_map(Value::SimpleString),
        bytes.clone().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        bytes.clone().prop_map(Value::BulkString),
        Just(Value::Null),
        prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::MIN_POSITIVE / 4.0),
        ]
        .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "-?[0-9]{1,60}".prop_map(Value::BigNumber),
        ("[a-z]{3}", bytes).prop_map(|(format, text)| Value::Verbatim {
            format: format.as_bytes().try_into().unwrap(),
            text,
        }),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..6);
        prop_oneof![
            items.clone().prop_map(Value::Array),
            items.clone().prop_map(Value::Set),
            items.prop_map(Value::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// Pieces of RESP that the shaped-bytes property strings together.
const RESP_PIECES: &[&[u8]] = &[
    b"*2\r\n",
    b"%1\r\n",
    b"|1\r\n",
    b">1\r\n",
    b"~1\r\n",
    b"$3\r\nabc\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"_\r\n",
    b":1\r\n",
    b",1.5\r\n",
    b"#t\r\n",
    b"(12\r\n",
    b"=5\r\ntxt:a\r\n",
    b"+OK\r\n",
    b"-ERR x\r\n",
    b"!1\r\nE\r\n",
    b"\r",
    b"\n",
    b"$1\r\n",
    b"*?\r\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encoded_values_decode_to_themselves(value in any_value(), alternate in any::<bool>()) {
        let mut bytes = Vec::new();
        encode_value(&value, alternate, &mut bytes);
        prop_assert_eq!(
            decode_value(&bytes),
            Ok(Decode::Complete { value: value.clone(), consumed: bytes.len() })
        );
        let mut followed = bytes.clone();
        encode_value(&Value::Integer(1), alternate, &mut followed);
        prop_assert_eq!(
            decode_value(&followed),
            Ok(Decode::Complete { value, consumed: bytes.len() })
        );
        // Every prefix of small values, every 7th of larger ones (long doubles), to stay linear.
        let step = if bytes.len() <= 512 { 1 } else { 7 };
        for cut in (0..bytes.len()).step_by(step) {
            prop_assert_eq!(decode_value(&bytes[..cut]), Ok(Decode::Partial), "cut {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Decode::Complete { value, consumed }) = decode_value(&bytes) {
            prop_assert!(consumed <= bytes.len());
            prop_assert_eq!(
                decode_value(&bytes[..consumed]),
                Ok(Decode::Complete { value, consumed })
            );
        }
    }

    #[test]
    fn resp_shaped_bytes_never_panic(
        pieces in proptest::collection::vec(
            proptest::sample::select(RESP_PIECES),
            0..24,
        )
    ) {
        let bytes = pieces.concat();
        match decode_value(&bytes) {
            Ok(Decode::Complete { value, consumed }) => {
                prop_assert!(consumed <= bytes.len());
                prop_assert_eq!(
                    decode_value(&bytes[..consumed]),
                    Ok(Decode::Complete { value, consumed })
                );
            }
            Ok(Decode::Partial) | Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connection engine
// ---------------------------------------------------------------------------------------------

/// xorshift64*: reproducible chunk sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound as u64) as usize
    }
}

type Reply = (u32, Result<Value, RespError>);

fn drain_replies(conn: &mut RespConnection<u32>) -> Vec<Reply> {
    std::iter::from_fn(|| conn.poll_reply()).collect()
}

fn transmit(conn: &mut RespConnection<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    let written = conn.poll_transmit(&mut out);
    assert_eq!(written, out.len());
    out
}

/// Feeds `input` in pieces of the sizes `sizes` draws, keeping what is not consumed as a
/// runtime would; returns the bytes left over.
fn feed_in_chunks(
    conn: &mut RespConnection<u32>,
    input: &[u8],
    mut sizes: impl FnMut() -> usize,
) -> Result<Vec<u8>, RespError> {
    let mut pending = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let size = sizes().clamp(1, input.len() - at);
        pending.extend_from_slice(&input[at..at + size]);
        at += size;
        let consumed = conn.handle_input(&pending)?;
        assert!(consumed <= pending.len());
        pending.drain(..consumed);
    }
    Ok(pending)
}

fn options(user: Option<&str>, password: Option<&str>, db: u32) -> Options {
    Options {
        credentials: password.map(|password| Credentials {
            user: user.map(|user| user.as_bytes().to_vec()),
            password: password.as_bytes().to_vec(),
        }),
        db,
    }
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(args, &mut out);
    out
}

/// A connection past `HELLO 3` (no login, database 0).
fn ready() -> RespConnection<u32> {
    let mut conn = RespConnection::new(Options::default());
    assert_eq!(transmit(&mut conn), command(&[b"HELLO", b"3"]));
    assert_eq!(conn.handle_input(HELLO_REPLY), Ok(HELLO_REPLY.len()));
    assert_eq!(conn.phase(), Phase::Ready);
    conn
}

#[test]
fn handshake_resp3_with_login_and_database() {
    let mut conn = RespConnection::new(options(Some("chat"), Some("secret"), 2));
    // The caller's commands wait for the handshake.
    conn.queue(1, &command(&[b"PING"])).unwrap();
    assert_eq!(
        conn.phase(),
        Phase::Handshaking {
            step: HandshakeStep::Hello
        }
    );
    assert_eq!(
        transmit(&mut conn),
        command(&[b"HELLO", b"3", b"AUTH", b"chat", b"secret"])
    );
    assert_eq!(transmit(&mut conn), b"");
    assert_eq!(conn.handle_input(HELLO_REPLY), Ok(HELLO_REPLY.len()));
    assert_eq!(conn.protocol(), Some(Protocol::Resp3));
    assert_eq!(conn.server_version(), Some(&b"7.0.15"[..]));
    assert_eq!(
        conn.phase(),
        Phase::Handshaking {
            step: HandshakeStep::Select
        }
    );
    assert_eq!(transmit(&mut conn), command(&[b"SELECT", b"2"]));
    assert_eq!(conn.handle_input(b"+OK\r\n"), Ok(5));
    assert_eq!(conn.phase(), Phase::Ready);
    assert_eq!(transmit(&mut conn), command(&[b"PING"]));
    assert_eq!(conn.handle_input(b"+PONG\r\n"), Ok(7));
    assert_eq!(drain_replies(&mut conn), vec![(1, Ok(simple("PONG")))]);
}

#[test]
fn handshake_defaults_the_user_and_skips_select_for_database_zero() {
    let mut conn: RespConnection<u32> = RespConnection::new(options(None, Some("secret"), 0));
    assert_eq!(
        transmit(&mut conn),
        command(&[b"HELLO", b"3", b"AUTH", b"default", b"secret"])
    );
    assert_eq!(conn.handle_input(HELLO_REPLY), Ok(HELLO_REPLY.len()));
    assert_eq!(conn.phase(), Phase::Ready);
    assert_eq!(transmit(&mut conn), b"");
}

#[test]
fn handshake_falls_back_to_resp2_with_auth_then_select() {
    for (user, auth) in [
        (None, command(&[b"AUTH", b"secret"])),
        (Some("default"), command(&[b"AUTH", b"secret"])),
        (Some("chat"), command(&[b"AUTH", b"chat", b"secret"])),
    ] {
        let mut conn = RespConnection::new(options(user, Some("secret"), 3));
        conn.queue(7, &command(&[b"GET", b"session_none"])).unwrap();
        transmit(&mut conn);
        assert_eq!(conn.handle_input(HELLO_UNKNOWN), Ok(HELLO_UNKNOWN.len()));
        assert_eq!(conn.protocol(), Some(Protocol::Resp2));
        assert_eq!(
            conn.phase(),
            Phase::Handshaking {
                step: HandshakeStep::Auth
            }
        );
        assert_eq!(transmit(&mut conn), auth);
        assert_eq!(conn.handle_input(b"+OK\r\n"), Ok(5));
        assert_eq!(transmit(&mut conn), command(&[b"SELECT", b"3"]));
        assert_eq!(conn.handle_input(b"+OK\r\n"), Ok(5));
        assert_eq!(conn.phase(), Phase::Ready);
        assert_eq!(conn.server_version(), None);
        assert_eq!(transmit(&mut conn), command(&[b"GET", b"session_none"]));
        // RESP2's null bulk string is the same null as RESP3's.
        assert_eq!(conn.handle_input(b"$-1\r\n"), Ok(5));
        assert_eq!(drain_replies(&mut conn), vec![(7, Ok(Value::Null))]);
    }
}

#[test]
fn handshake_falls_back_without_login_straight_to_ready() {
    let unknowns: [&[u8]; 3] = [
        b"-ERR unknown command 'HELLO'\r\n",
        b"-ERR unknown command `HELLO`, with args beginning with: `3`, \r\n",
        b"-NOPROTO unsupported protocol version\r\n",
    ];
    for unknown in unknowns {
        let mut conn: RespConnection<u32> = RespConnection::new(Options::default());
        transmit(&mut conn);
        assert_eq!(conn.handle_input(unknown), Ok(unknown.len()));
        assert_eq!(conn.phase(), Phase::Ready);
        assert_eq!(conn.protocol(), Some(Protocol::Resp2));
    }
}

#[test]
fn handshake_refusals_fail_the_connection_and_every_waiting_command() {
    let noauth = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise \
the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP \
protocol version at the same time\r\n";
    // Options, the handshake replies before the refusal, the refusal.
    type Case = (Options, Vec<&'static [u8]>, &'static [u8]);
    let cases: Vec<Case> = vec![
        (options(None, Some("wrong"), 0), vec![], WRONGPASS),
        (Options::default(), vec![], noauth),
        (
            options(None, Some("wrong"), 0),
            vec![HELLO_UNKNOWN],
            WRONGPASS,
        ),
        (
            options(None, None, 99),
            vec![HELLO_REPLY],
            b"-ERR DB index is out of range\r\n",
        ),
    ];
    for (options, accepted, refusal) in cases {
        let mut conn = RespConnection::new(options);
        conn.queue(1, &command(&[b"PING"])).unwrap();
        conn.queue(2, &command(&[b"PING"])).unwrap();
        for reply in accepted {
            transmit(&mut conn);
            assert_eq!(conn.handle_input(reply), Ok(reply.len()));
        }
        transmit(&mut conn);
        let error = RespError::Refused(refusal[1..refusal.len() - 2].to_vec());
        assert_eq!(conn.handle_input(refusal), Err(error.clone()));
        assert_eq!(conn.phase(), Phase::Failed);
        assert_eq!(conn.error(), Some(&error));
        assert_eq!(
            drain_replies(&mut conn),
            vec![(1, Err(error.clone())), (2, Err(error.clone()))]
        );
        // Sticky: the error repeats, nothing more leaves, nothing more is taken.
        assert_eq!(conn.handle_input(b"+OK\r\n"), Err(error));
        assert_eq!(transmit(&mut conn), b"");
        assert_eq!(conn.queue(3, &command(&[b"PING"])), Err(RespError::Closed));
    }
}

#[test]
fn handshake_reply_of_the_wrong_type_fails() {
    let mut conn: RespConnection<u32> = RespConnection::new(options(None, None, 1));
    transmit(&mut conn);
    conn.handle_input(HELLO_REPLY).unwrap();
    transmit(&mut conn);
    assert_eq!(
        conn.handle_input(b":1\r\n"),
        Err(RespError::UnexpectedReply)
    );
}

#[test]
fn ten_thousand_pipelined_commands_leave_in_one_write_and_match_in_order() {
    const COMMANDS: u32 = 10_000;
    let mut conn = ready();
    let mut expected_out = Vec::new();
    for token in 0..COMMANDS {
        let payload = format!(r#"{{"content":"m{token}","timestamp":1,"user_id":1}}"#);
        let mut one = Vec::new();
        encode_xadd(b"room", None, payload.as_bytes(), &mut one);
        conn.queue(token, &one).unwrap();
        expected_out.extend_from_slice(&one);
    }
    assert_eq!(conn.commands_pending(), COMMANDS as usize);
    let out = transmit(&mut conn);
    assert_eq!(out.len(), expected_out.len());
    assert!(out == expected_out);
    assert_eq!(transmit(&mut conn), b"");

    // Replies: ids, an error every 1000th, pushes interleaved every 777th, an attribute
    // before every 500th.
    let mut input = Vec::new();
    let mut want = Vec::new();
    for token in 0..COMMANDS {
        if token % 777 == 5 {
            input.extend_from_slice(INVALIDATE_PUSH);
        }
        if token % 500 == 3 {
            input.extend_from_slice(b"|1\r\n+ttl\r\n:3600\r\n");
        }
        if token % 1000 == 999 {
            input.extend_from_slice(b"-ERR stream full\r\n");
            want.push((token, Err(RespError::Server(b"ERR stream full".to_vec()))));
        } else {
            let id = format!("1700000000000-{token}");
            input.extend_from_slice(format!("${}\r\n{id}\r\n", id.len()).as_bytes());
            want.push((token, Ok(bulk(id.as_bytes()))));
        }
    }
    for seed in [1, 2, 3] {
        let mut conn = conn.clone();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let left = feed_in_chunks(&mut conn, &input, || 1 + rng.below(64)).unwrap();
        assert!(left.is_empty());
        let replies = drain_replies(&mut conn);
        assert_eq!(replies.len(), want.len());
        assert!(replies == want, "seed {seed}");
        let pushes: Vec<_> = std::iter::from_fn(|| conn.poll_push()).collect();
        assert_eq!(pushes.len(), 13);
        assert!(pushes.iter().all(|push| *push == invalidate_value()));
        assert_eq!(conn.commands_pending(), 0);
    }
    // And all at once.
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert!(drain_replies(&mut conn) == want);
}

/// Feeds one server turn to a copy of `conn` in two pieces split at `cut`, as a runtime reading
/// twice would: what the engine returns, answers and keeps aside, and its phase after.
fn feed_split(
    conn: &RespConnection<u32>,
    turn: &[u8],
    cut: usize,
) -> (Result<(), RespError>, Vec<Reply>, Vec<Value>, Phase) {
    let mut conn = conn.clone();
    let mut pending = Vec::new();
    let mut result = Ok(());
    for piece in [&turn[..cut], &turn[cut..]] {
        pending.extend_from_slice(piece);
        match conn.handle_input(&pending) {
            Ok(consumed) => {
                assert!(consumed <= pending.len());
                pending.drain(..consumed);
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    if result.is_ok() {
        assert!(pending.is_empty(), "cut {cut}: {pending:?} left");
    }
    let pushes = std::iter::from_fn(|| conn.poll_push()).collect();
    (result, drain_replies(&mut conn), pushes, conn.phase())
}

#[test]
fn session_turns_split_at_every_byte_give_the_same_outcome() {
    let mut conn = RespConnection::new(options(None, Some("secret"), 2));
    conn.queue(1, &command(&[b"SET", b"k", b"v"])).unwrap();
    conn.queue(
        2,
        &command(&[b"XREVRANGE", b"room1", b"+", b"-", b"COUNT", b"100"]),
    )
    .unwrap();
    conn.queue(3, &command(&[b"GET", b"k"])).unwrap();
    let vectors = reply_vectors();
    let xrevrange = vectors
        .iter()
        .find(|(name, ..)| *name == "xrevrange + - count 100")
        .unwrap();
    // The server's turns, each after the runtime has written what the engine had ready.
    let turns: Vec<Vec<u8>> = vec![
        [INVALIDATE_PUSH, HELLO_REPLY].concat(),
        b"+OK\r\n".to_vec(),
        [
            &b"+OK\r\n"[..],
            INVALIDATE_PUSH,
            &xrevrange.1,
            b"|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n",
        ]
        .concat(),
        b"+PONG\r\n+PO\nNG\r\n".to_vec(),
    ];
    let mut outcomes = Vec::new();
    for (index, turn) in turns.iter().enumerate() {
        if index == 3 {
            conn.queue(4, &command(&[b"PING"])).unwrap();
            conn.queue(5, &command(&[b"PING"])).unwrap();
        }
        transmit(&mut conn);
        let whole = feed_split(&conn, turn, turn.len());
        for cut in 0..turn.len() {
            assert_eq!(
                feed_split(&conn, turn, cut),
                whole,
                "turn {index}, cut {cut}"
            );
        }
        if whole.0.is_ok() {
            assert_eq!(conn.handle_input(turn), Ok(turn.len()));
            drain_replies(&mut conn);
            while conn.poll_push().is_some() {}
        }
        outcomes.push(whole);
    }
    let no_push = Vec::new;
    assert_eq!(
        outcomes,
        vec![
            (
                Ok(()),
                vec![],
                vec![invalidate_value()],
                Phase::Handshaking {
                    step: HandshakeStep::Select
                }
            ),
            (Ok(()), vec![], no_push(), Phase::Ready),
            (
                Ok(()),
                vec![
                    (1, Ok(simple("OK"))),
                    (2, Ok(xrevrange.2.clone())),
                    (3, Ok(bulk(b"v"))),
                ],
                vec![invalidate_value()],
                Phase::Ready
            ),
            (
                Err(RespError::BadLineEnd),
                vec![(4, Ok(simple("PONG"))), (5, Err(RespError::BadLineEnd))],
                no_push(),
                Phase::Failed
            ),
        ]
    );
}

#[test]
fn server_errors_answer_one_command_and_the_connection_goes_on() {
    let mut conn = ready();
    conn.queue(1, &command(&[b"XADD", b"r", b"1", b"payload", b"x"]))
        .unwrap();
    conn.queue(2, &command(&[b"PING"])).unwrap();
    transmit(&mut conn);
    let input = format!("-{XADD_NOT_INCREASING}\r\n+PONG\r\n").into_bytes();
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert_eq!(
        drain_replies(&mut conn),
        vec![
            (
                1,
                Err(RespError::Server(XADD_NOT_INCREASING.as_bytes().to_vec()))
            ),
            (2, Ok(simple("PONG"))),
        ]
    );
    assert_eq!(conn.phase(), Phase::Ready);
}

#[test]
fn push_frames_are_never_matched_and_are_bounded() {
    let mut conn = ready();
    conn.queue(1, &command(&[b"SET", b"k", b"v"])).unwrap();
    conn.queue(2, &command(&[b"DEBUG", b"PROTOCOL", b"push"]))
        .unwrap();
    transmit(&mut conn);
    // As captured: the reply, then the push; and a push before a reply.
    let input = b"+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n\
>2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n$40\r\nSome real reply following the push reply\r\n";
    assert_eq!(conn.handle_input(input), Ok(input.len()));
    assert_eq!(
        drain_replies(&mut conn),
        vec![
            (1, Ok(simple("OK"))),
            (2, Ok(bulk(b"Some real reply following the push reply"))),
        ]
    );
    assert_eq!(conn.poll_push(), Some(invalidate_value()));
    assert!(conn.poll_push().is_some());
    assert_eq!(conn.poll_push(), None);

    // Pushes with no command waiting, and past the limit.
    let pushes = INVALIDATE_PUSH.repeat(RESP_PUSH_FRAMES_MAX + 10);
    assert_eq!(conn.handle_input(&pushes), Ok(pushes.len()));
    assert_eq!(conn.pushes_dropped(), 10);
    assert_eq!(
        std::iter::from_fn(|| conn.poll_push()).count(),
        RESP_PUSH_FRAMES_MAX
    );
    assert_eq!(conn.phase(), Phase::Ready);
}

#[test]
fn push_frames_during_the_handshake_are_kept_aside() {
    let mut conn: RespConnection<u32> = RespConnection::new(Options::default());
    transmit(&mut conn);
    let input = [INVALIDATE_PUSH, HELLO_REPLY].concat();
    assert_eq!(conn.handle_input(&input), Ok(input.len()));
    assert_eq!(conn.phase(), Phase::Ready);
    assert_eq!(conn.poll_push(), Some(invalidate_value()));
}

#[test]
fn a_reply_with_no_command_waiting_fails_the_connection() {
    let mut conn = ready();
    assert_eq!(
        conn.handle_input(b"+OK\r\n"),
        Err(RespError::UnexpectedReply)
    );
    // Queued but not yet written is not waiting either.
    let mut conn = ready();
    conn.queue(1, &command(&[b"PING"])).unwrap();
    assert_eq!(
        conn.handle_input(b"+PONG\r\n"),
        Err(RespError::UnexpectedReply)
    );
    assert_eq!(
        drain_replies(&mut conn),
        vec![(1, Err(RespError::UnexpectedReply))]
    );
}

#[test]
fn malformed_bytes_fail_every_pending_command_in_order() {
    let mut conn = ready();
    for token in 1..=3 {
        conn.queue(token, &command(&[b"PING"])).unwrap();
    }
    transmit(&mut conn);
    conn.queue(4, &command(&[b"PING"])).unwrap();
    let error = RespError::BadLineEnd;
    assert_eq!(
        conn.handle_input(b"+PONG\r\n+PO\nNG\r\n"),
        Err(error.clone())
    );
    assert_eq!(
        drain_replies(&mut conn),
        vec![
            (1, Ok(simple("PONG"))),
            (2, Err(error.clone())),
            (3, Err(error.clone())),
            (4, Err(error.clone())),
        ]
    );
    assert_eq!(conn.commands_pending(), 0);
    assert_eq!(conn.handle_input(b"+PONG\r\n"), Err(error));
}

#[test]
fn the_pipeline_limits_refuse_more_commands() {
    let mut conn = ready();
    let ping = command(&[b"PING"]);
    for token in 0..RESP_PIPELINE_COMMANDS_MAX as u32 {
        conn.queue(token, &ping).unwrap();
    }
    assert_eq!(conn.queue(0, &ping), Err(RespError::PipelineFull));
    // Written but unanswered commands still count; answered ones free their place.
    transmit(&mut conn);
    assert_eq!(conn.queue(0, &ping), Err(RespError::PipelineFull));
    assert_eq!(conn.handle_input(b"+PONG\r\n"), Ok(7));
    assert_eq!(conn.queue(0, &ping), Ok(()));
    assert_eq!(conn.queue(0, &ping), Err(RespError::PipelineFull));

    let mut conn = ready();
    // An argument over RESP_BULK_BYTES_MAX would be refused by a decoder like ours.
    let big = command(&[b"SET", b"k", &vec![b'v'; RESP_BULK_BYTES_MAX + 1]]);
    assert_eq!(conn.queue(1, &big), Err(RespError::BadCommand));
    let half = command(&[b"SET", b"k", &vec![b'v'; RESP_BULK_BYTES_MAX - 64]]);
    conn.queue(1, &half).unwrap();
    assert_eq!(conn.queue(2, &half), Ok(()));
    assert_eq!(conn.queue(3, &half), Err(RespError::PipelineFull));
    // Written bytes no longer count.
    assert_eq!(transmit(&mut conn).len(), 2 * half.len());
    assert_eq!(conn.queue(3, &half), Ok(()));
}

#[test]
fn queue_takes_exactly_one_command() {
    let mut conn = ready();
    let ping = command(&[b"PING"]);
    let two = [&ping[..], &ping[..]].concat();
    let bad: [&[u8]; 5] = [b"PING\r\n", b"+OK\r\n", b"", b"*1\r\n$4\r\nPIN", &two];
    for bad in bad {
        assert_eq!(conn.queue(1, bad), Err(RespError::BadCommand), "{bad:?}");
    }
    assert_eq!(conn.commands_pending(), 0);
}

#[test]
fn poll_transmit_appends_after_what_the_buffer_holds() {
    let mut conn = ready();
    conn.queue(1, &command(&[b"PING"])).unwrap();
    let mut out = b"earlier".to_vec();
    assert_eq!(conn.poll_transmit(&mut out), 14);
    assert_eq!(out, [&b"earlier"[..], &command(&[b"PING"])].concat());
}

#[test]
fn a_large_reply_in_small_reads_is_matched() {
    // The engine waits for the bytes a blob announces (its hint), then decodes the reply.
    let mut conn = ready();
    conn.queue(1, &command(&[b"GET", b"big"])).unwrap();
    transmit(&mut conn);
    let value = vec![b'x'; 1 << 20];
    let reply = [format!("${}\r\n", value.len()).as_bytes(), &value, b"\r\n"].concat();
    let left = feed_in_chunks(&mut conn, &reply, || 1000).unwrap();
    assert!(left.is_empty());
    assert_eq!(drain_replies(&mut conn), vec![(1, Ok(bulk(&value)))]);
}

#[test]
fn waiting_for_a_blob_never_delays_an_error() {
    // Found by the fuzzer: the engine waited for the blob's whole CRLF, so a wrong byte where
    // the CR belongs went unnoticed when the reply arrived in two reads, while a decoder given
    // everything at once refused it.
    let input = b"=29\r\ntxt:This issp isThis istring\r\n";
    assert_eq!(decode_value(input), Err(RespError::BadLineEnd));
    let mut conn = ready();
    conn.queue(1, &command(&[b"PING"])).unwrap();
    transmit(&mut conn);
    assert_eq!(conn.handle_input(&input[..25]), Ok(0));
    assert_eq!(conn.handle_input(input), Err(RespError::BadLineEnd));
}

#[test]
fn credentials_debug_hides_the_password() {
    let text = format!("{:?}", options(Some("chat"), Some("hunter2"), 0));
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("chat"), "{text}");
}

#[test]
fn distinct_vector_names() {
    let mut names = HashSet::new();
    for (name, ..) in reply_vectors() {
        assert!(names.insert(name), "duplicate reply vector {name}");
    }
    for (name, ..) in error_vectors() {
        assert!(names.insert(name), "duplicate error vector {name}");
    }
}
