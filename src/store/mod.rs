//! Persistence behind one interface: users, sessions and room messages.
//!
//! Production deployments keep users in MySQL/MariaDB and sessions and messages in Redis
//! (the BoostServerTech data model, shared/spec/compat.md); with neither configured everything
//! lives in an embedded SQLite database. This module defines the values and errors every
//! backend speaks; the backends live in submodules. It does no I/O itself.
//!
//! **A message is stored, and may be acknowledged, only once its backend has returned its id**
//! (Redis: XADD's reply; embedded: after the transaction that holds it committed).

pub mod embedded;
mod handle;
pub mod mysql;
pub mod redis;
pub mod redis_reader;

pub use handle::{
    SESSION_ID_BYTES, SESSION_ID_DRAWS_MAX, Store, StoreOptions, StoreSetup, draw_session_id,
};

use std::fmt;
use std::str::FromStr;

/// Users are numbered by the database (`BIGINT AUTO_INCREMENT`).
pub type UserId = i64;

/// Users' names and emails are at most this many bytes (the reference schema's VARCHAR(100)).
pub const USER_FIELD_BYTES_MAX: usize = 100;
/// Messages returned by one history query at most.
pub const HISTORY_PAGE_MESSAGES_MAX: usize = 100;
/// Sessions live this long (seconds) unless `--session-ttl` says otherwise, as in the
/// reference: 7 days.
pub const SESSION_TTL_S: u64 = 604_800;
/// The largest `--room-retention` (messages kept per room).
pub const ROOM_RETENTION_MAX: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
}

/// What login needs: the id and the stored password hash (a PHC string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub id: UserId,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// The outcome of creating a user. Duplicates are decided by looking at the data, never by
/// parsing a database's error text (the reference server's defect on MariaDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateUser {
    Created(UserId),
    /// The username is taken (reported first when both are).
    UsernameExists,
    EmailExists,
}

/// A Redis-stream-style entry id, `<ms>-<seq>`: ordered by time, then by sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub ms: u64,
    pub seq: u64,
}

impl MessageId {
    /// The id that follows `self` for a message stamped `now_ms`: Redis's rule for `XADD *`
    /// (the time never goes backwards; within one millisecond the sequence grows).
    pub fn next_after(self, now_ms: u64) -> MessageId {
        if now_ms > self.ms {
            MessageId { ms: now_ms, seq: 0 }
        } else {
            MessageId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not `<ms>-<seq>` with both parts decimal u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMessageId;

impl FromStr for MessageId {
    type Err = BadMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(BadMessageId)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(BadMessageId);
        }
        Ok(MessageId {
            ms: ms.parse().map_err(|_| BadMessageId)?,
            seq: seq.parse().map_err(|_| BadMessageId)?,
        })
    }
}

/// The user id of every guest of the line port (docs/line-chat.md): no account has it
/// (databases number users from 1).
pub const GUEST_USER_ID: UserId = 0;

/// A message as a client sent it, stamped by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub content: String,
    pub user_id: UserId,
    pub timestamp_ms: u64,
    /// A line-port guest's name (with `user_id` [`GUEST_USER_ID`]); `None` for accounts.
    pub guest: Option<String>,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub content: String,
    pub user_id: UserId,
    pub timestamp_ms: u64,
    /// A line-port guest's name; `None` for accounts.
    pub guest: Option<String>,
}

/// Which backend an error came from; it decides the reaction (503, reconnect, error event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Redis,
    Mysql,
    Embedded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be reached or refused the work; try again later (503).
    Unavailable { side: Side, detail: String },
    /// The backend did not answer within its timeout (503).
    Timeout { side: Side },
    /// The backend answered something we cannot interpret: a bug or a foreign schema (500).
    Corrupt { side: Side, detail: String },
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Redis => "Redis",
            Side::Mysql => "MySQL",
            Side::Embedded => "the embedded store",
        })
    }
}

impl StoreError {
    pub fn side(&self) -> Side {
        match self {
            StoreError::Unavailable { side, .. }
            | StoreError::Timeout { side }
            | StoreError::Corrupt { side, .. } => *side,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable { side, detail } => write!(f, "{side} unavailable: {detail}"),
            StoreError::Timeout { side } => write!(f, "{side} timed out"),
            StoreError::Corrupt { side, detail } => {
                write!(f, "{side} answered unexpectedly: {detail}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The stream entry's payload field, exactly as the reference writes it:
/// `{"content": str, "timestamp": ms, "user_id": int}`; a line-port guest's message adds
/// `"guest": str` (so accounts' messages stay byte-identical to the reference's).
pub fn encode_payload(message: &NewMessage) -> String {
    // Written directly (it is on every append's path): one allocation, keys in the reference's
    // order, the content escaped by serde_json.
    let mut out = Vec::with_capacity(message.content.len() + 64);
    out.extend_from_slice(b"{\"content\":");
    serde_json::to_writer(&mut out, &message.content).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa::Buffer::new().format(message.timestamp_ms).as_bytes());
    out.extend_from_slice(b",\"user_id\":");
    out.extend_from_slice(itoa::Buffer::new().format(message.user_id).as_bytes());
    if let Some(guest) = &message.guest {
        out.extend_from_slice(b",\"guest\":");
        serde_json::to_writer(&mut out, guest).expect("writing to a Vec cannot fail");
    }
    out.push(b'}');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Reads a payload written by [`encode_payload`] or by the reference server.
pub fn decode_payload(id: MessageId, payload: &[u8]) -> Result<StoredMessage, String> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let content = v
        .get("content")
        .and_then(|c| c.as_str())
        .ok_or("payload has no string content")?;
    let timestamp_ms = v
        .get("timestamp")
        .and_then(|t| t.as_u64())
        .ok_or("payload has no timestamp")?;
    let user_id = v
        .get("user_id")
        .and_then(|u| u.as_i64())
        .ok_or("payload has no user_id")?;
    let guest = match v.get("guest") {
        None => None,
        Some(g) => Some(
            g.as_str()
                .ok_or("payload's guest is not a string")?
                .to_string(),
        ),
    };
    Ok(StoredMessage {
        id,
        content: content.to_string(),
        user_id,
        timestamp_ms,
        guest,
    })
}

/// Splits `host[:port]` or `[v6]:port` from a store URL; the brackets of an
/// IPv6 literal are removed and `default_port` is used when none is given.
pub(crate) fn split_host_port(hostport: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {hostport}"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("unexpected text after ] in {hostport}")),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {hostport}"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port in {hostport}"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts_ports_and_ipv6_literals() {
        let ok = |s: &str| split_host_port(s, 6379).unwrap();
        assert_eq!(ok("h"), ("h".into(), 6379));
        assert_eq!(ok("h:1"), ("h".into(), 1));
        assert_eq!(ok("[::1]"), ("::1".into(), 6379));
        assert_eq!(ok("[::1]:7000"), ("::1".into(), 7000));
        for bad in [
            "", ":1", "h:", "h:0", "h:x", "h:70000", "[::1", "[::1]x", "[]:1",
        ] {
            assert!(split_host_port(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_ids_parse_print_and_order() {
        let a: MessageId = "1700000000000-0".parse().unwrap();
        let b: MessageId = "1700000000000-1".parse().unwrap();
        let c: MessageId = "1700000000001-0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-1");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1-2-3",
            "+1-2",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<MessageId>(), Err(BadMessageId), "{bad}");
        }
    }

    #[test]
    fn next_id_follows_redis_rules() {
        let last = MessageId { ms: 10, seq: 4 };
        assert_eq!(last.next_after(11), MessageId { ms: 11, seq: 0 });
        assert_eq!(last.next_after(10), MessageId { ms: 10, seq: 5 });
        // A clock that stepped back never produces a smaller id.
        assert_eq!(last.next_after(3), MessageId { ms: 10, seq: 5 });
    }

    #[test]
    fn payload_round_trips_and_reads_the_reference_format() {
        let m = NewMessage {
            content: "héllo \"x\"".into(),
            user_id: 7,
            timestamp_ms: 1_700_000_000_123,
            guest: None,
        };
        let json = encode_payload(&m);
        assert_eq!(
            json,
            r#"{"content":"héllo \"x\"","timestamp":1700000000123,"user_id":7}"#
        );
        let id = MessageId { ms: 1, seq: 2 };
        let stored = decode_payload(id, json.as_bytes()).unwrap();
        assert_eq!(
            (stored.content.as_str(), stored.user_id, stored.timestamp_ms),
            ("héllo \"x\"", 7, 1_700_000_000_123)
        );
        // The reference server writes the same keys, possibly spaced.
        let reference = br#"{ "content": "hi", "timestamp": 5, "user_id": 3 }"#;
        assert_eq!(decode_payload(id, reference).unwrap().content, "hi");
        assert!(decode_payload(id, b"{\"content\":1}").is_err());
        // A guest's message carries its name after the reference's keys.
        let guest = NewMessage {
            guest: Some("x".into()),
            user_id: GUEST_USER_ID,
            ..m
        };
        let json = encode_payload(&guest);
        assert!(json.ends_with(r#","user_id":0,"guest":"x"}"#), "{json}");
        assert_eq!(
            decode_payload(id, json.as_bytes())
                .unwrap()
                .guest
                .as_deref(),
            Some("x")
        );
        assert!(
            decode_payload(
                id,
                br#"{"content":"a","timestamp":1,"user_id":0,"guest":1}"#
            )
            .is_err()
        );
        assert!(decode_payload(id, b"not json").is_err());
    }
}
