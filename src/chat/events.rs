//! The chat events on the WebSocket, as shared/spec/compat.md defines them: decoding what
//! clients send, encoding what the server sends, with keys in exactly the reference's order.
//!
//! Client → server: `clientMessages` `{"roomId", "messages": [{"content"}]}` and
//! `requestRoomHistory` `{"roomId", "firstMessageId"}`. Anything else gets an [`EventError`],
//! which the connection answers with an error event (`{"type":"error","payload":{"id",
//! "message"}}`) and stays open: the reference drops the socket instead, a defect not copied.
//!
//! Server → client: `hello`, `serverMessages`, `roomHistory` and `error`, written by hand into
//! one buffer (`serde_json` escapes the strings), because key order is part of the protocol and
//! a `serverMessages` frame is encoded once and shared by every recipient.
//!
//! Not here: sockets, frames (src/proto/ws), who receives what (the fan-out).

use serde_json::Value;

use super::rooms::Rooms;
use crate::store::{MessageId, User};

/// Messages one `clientMessages` event may carry.
pub const CLIENT_MESSAGES_PER_EVENT_MAX: usize = 16;
/// Default of `--max-message-chars`: the longest content, in Unicode scalar values.
pub const MESSAGE_CHARS_MAX_DEFAULT: usize = 4096;

/// A client event that was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Contents to post to a room, in order (validated: non-empty, not too long).
    Messages { room: usize, contents: Vec<String> },
    /// The page of messages older than `before`.
    History { room: usize, before: MessageId },
}

/// Why a client event was refused; `id` is the error event's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub id: &'static str,
    pub message: String,
}

impl EventError {
    pub fn new(id: &'static str, message: impl Into<String>) -> EventError {
        EventError {
            id,
            message: message.into(),
        }
    }

    /// A history read failed (`requestRoomHistory`, the line port's `/join` and `/history`):
    /// distinct from a post's `STORE_UNAVAILABLE`, so a client knows which request failed.
    pub fn history_unavailable() -> EventError {
        EventError::new("HISTORY_UNAVAILABLE", "history is unavailable; try again")
    }
}

fn refuse(id: &'static str, message: impl Into<String>) -> EventError {
    EventError::new(id, message)
}

/// Decodes one text message from a client. `max_chars` bounds each content.
pub fn decode_client_event(
    text: &str,
    rooms: &Rooms,
    max_chars: usize,
) -> Result<ClientEvent, EventError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| refuse("INVALID_JSON", format!("not JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("BAD_EVENT", "an event needs a string \"type\""))?;
    let payload = value
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| refuse("BAD_EVENT", "an event needs an object \"payload\""))?;
    let room = || -> Result<usize, EventError> {
        let id = payload
            .get("roomId")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("BAD_EVENT", "\"roomId\" must be a string"))?;
        rooms
            .index_of(id)
            .ok_or_else(|| refuse("UNKNOWN_ROOM", format!("no room {:?}", truncate(id))))
    };
    match kind {
        "clientMessages" => {
            let room = room()?;
            let messages = payload
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| refuse("BAD_EVENT", "\"messages\" must be an array"))?;
            if messages.is_empty() {
                return Err(refuse("BAD_EVENT", "\"messages\" is empty"));
            }
            if messages.len() > CLIENT_MESSAGES_PER_EVENT_MAX {
                return Err(refuse(
                    "TOO_MANY_MESSAGES",
                    format!("at most {CLIENT_MESSAGES_PER_EVENT_MAX} messages per event"),
                ));
            }
            let mut contents = Vec::with_capacity(messages.len());
            for m in messages {
                let content = m.get("content").and_then(Value::as_str).ok_or_else(|| {
                    refuse("BAD_EVENT", "each message needs a string \"content\"")
                })?;
                if content.trim().is_empty() {
                    return Err(refuse("EMPTY_CONTENT", "a message cannot be empty"));
                }
                if content.chars().count() > max_chars {
                    return Err(refuse(
                        "CONTENT_TOO_LONG",
                        format!("a message holds at most {max_chars} characters"),
                    ));
                }
                contents.push(content.to_string());
            }
            Ok(ClientEvent::Messages { room, contents })
        }
        "requestRoomHistory" => {
            let room = room()?;
            let before = payload
                .get("firstMessageId")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse("BAD_EVENT", "\"firstMessageId\" must be a string"))?
                .parse::<MessageId>()
                .map_err(|_| refuse("BAD_MESSAGE_ID", "\"firstMessageId\" is not <ms>-<seq>"))?;
            Ok(ClientEvent::History { room, before })
        }
        other => Err(refuse(
            "UNKNOWN_TYPE",
            format!("unknown event type {:?}", truncate(other)),
        )),
    }
}

/// A client-supplied string quoted back in an error, cut to a sane length.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A message as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage<'a> {
    pub id: MessageId,
    pub content: &'a str,
    pub user: &'a User,
    pub timestamp_ms: u64,
}

/// A room in the `hello` event.
pub struct HelloRoom<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub has_more: bool,
    /// Newest first.
    pub messages: Vec<ShownMessage<'a>>,
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_user(out: &mut Vec<u8>, user: &User) {
    out.extend_from_slice(b"{\"id\":");
    push_int(out, user.id);
    out.extend_from_slice(b",\"username\":");
    push_str(out, &user.username);
    out.push(b'}');
}

fn push_messages(out: &mut Vec<u8>, messages: &[ShownMessage<'_>]) {
    out.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(m.id.to_string().as_bytes());
        out.extend_from_slice(b"\",\"content\":");
        push_str(out, m.content);
        out.extend_from_slice(b",\"user\":");
        push_user(out, m.user);
        out.extend_from_slice(b",\"timestamp\":");
        push_int(out, m.timestamp_ms);
        out.push(b'}');
    }
    out.push(b']');
}

/// `{"type":"hello","payload":{"me":User,"rooms":[Room]}}`.
pub fn encode_hello(me: &User, rooms: &[HelloRoom<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"type\":\"hello\",\"payload\":{\"me\":");
    push_user(&mut out, me);
    out.extend_from_slice(b",\"rooms\":[");
    for (i, r) in rooms.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_str(&mut out, r.id);
        out.extend_from_slice(b",\"name\":");
        push_str(&mut out, r.name);
        out.extend_from_slice(b",\"hasMoreMessages\":");
        out.extend_from_slice(if r.has_more { b"true" } else { b"false" });
        out.extend_from_slice(b",\"messages\":");
        push_messages(&mut out, &r.messages);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}");
    out
}

/// `{"type":"serverMessages","payload":{"roomId":str,"messages":[Message]}}`, oldest first.
pub fn encode_server_messages(room: &str, messages: &[ShownMessage<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * messages.len().max(1));
    out.extend_from_slice(b"{\"type\":\"serverMessages\",\"payload\":{\"roomId\":");
    push_str(&mut out, room);
    out.extend_from_slice(b",\"messages\":");
    push_messages(&mut out, messages);
    out.extend_from_slice(b"}}");
    out
}

/// `{"type":"roomHistory","payload":{"roomId":str,"messages":[Message],"hasMoreMessages":bool}}`,
/// newest first.
pub fn encode_room_history(room: &str, messages: &[ShownMessage<'_>], has_more: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * messages.len().max(1));
    out.extend_from_slice(b"{\"type\":\"roomHistory\",\"payload\":{\"roomId\":");
    push_str(&mut out, room);
    out.extend_from_slice(b",\"messages\":");
    push_messages(&mut out, messages);
    out.extend_from_slice(b",\"hasMoreMessages\":");
    out.extend_from_slice(if has_more { b"true" } else { b"false" });
    out.extend_from_slice(b"}}");
    out
}

/// `{"type":"error","payload":{"id":str,"message":str}}`.
pub fn encode_error(error: &EventError) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + error.message.len());
    out.extend_from_slice(b"{\"type\":\"error\",\"payload\":{\"id\":");
    push_str(&mut out, error.id);
    out.extend_from_slice(b",\"message\":");
    push_str(&mut out, &error.message);
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::rooms::REFERENCE_ROOMS;

    fn rooms() -> Rooms {
        Rooms::parse(REFERENCE_ROOMS).unwrap()
    }

    fn decode(text: &str) -> Result<ClientEvent, EventError> {
        decode_client_event(text, &rooms(), 5)
    }

    #[test]
    fn client_events_decode() {
        assert_eq!(
            decode(
                r#"{"type":"clientMessages","payload":{"roomId":"db","messages":[{"content":"hi"},{"content":"ñandú"}]}}"#
            ),
            Ok(ClientEvent::Messages {
                room: 2,
                contents: vec!["hi".into(), "ñandú".into()]
            })
        );
        assert_eq!(
            decode(
                r#"{"payload":{"firstMessageId":"17-3","roomId":"wasm","x":1},"type":"requestRoomHistory"}"#
            ),
            Ok(ClientEvent::History {
                room: 3,
                before: MessageId { ms: 17, seq: 3 }
            })
        );
    }

    #[test]
    fn malformed_events_get_specific_errors() {
        let id = |text: &str| decode(text).unwrap_err().id;
        assert_eq!(id("not json"), "INVALID_JSON");
        assert_eq!(id("[]"), "BAD_EVENT");
        assert_eq!(id(r#"{"type":1,"payload":{}}"#), "BAD_EVENT");
        assert_eq!(id(r#"{"type":"clientMessages"}"#), "BAD_EVENT");
        assert_eq!(id(r#"{"type":"shout","payload":{}}"#), "UNKNOWN_TYPE");
        let msgs = |room: &str, messages: &str| {
            format!(
                r#"{{"type":"clientMessages","payload":{{"roomId":{room},"messages":{messages}}}}}"#
            )
        };
        assert_eq!(
            id(&msgs("\"nope\"", "[{\"content\":\"x\"}]")),
            "UNKNOWN_ROOM"
        );
        assert_eq!(id(&msgs("5", "[{\"content\":\"x\"}]")), "BAD_EVENT");
        assert_eq!(id(&msgs("\"db\"", "[]")), "BAD_EVENT");
        assert_eq!(
            id(&msgs("\"db\"", "[{\"content\":\"  \"}]")),
            "EMPTY_CONTENT"
        );
        assert_eq!(id(&msgs("\"db\"", "[{\"content\":\"\"}]")), "EMPTY_CONTENT");
        assert_eq!(id(&msgs("\"db\"", "[{\"content\":7}]")), "BAD_EVENT");
        // Five characters pass, six do not, counted as characters, not bytes.
        assert!(decode(&msgs("\"db\"", "[{\"content\":\"ñññññ\"}]")).is_ok());
        assert_eq!(
            id(&msgs("\"db\"", "[{\"content\":\"123456\"}]")),
            "CONTENT_TOO_LONG"
        );
        let many = format!(
            "[{}]",
            vec!["{\"content\":\"x\"}"; CLIENT_MESSAGES_PER_EVENT_MAX + 1].join(",")
        );
        assert_eq!(id(&msgs("\"db\"", &many)), "TOO_MANY_MESSAGES");
        let history = |first: &str| {
            format!(
                r#"{{"type":"requestRoomHistory","payload":{{"roomId":"db","firstMessageId":{first}}}}}"#
            )
        };
        assert_eq!(id(&history("\"x\"")), "BAD_MESSAGE_ID");
        assert_eq!(id(&history("1")), "BAD_EVENT");
    }

    #[test]
    fn server_events_keep_the_reference_key_order() {
        let ann = User {
            id: 3,
            username: "ann \"q\"".into(),
        };
        let m = ShownMessage {
            id: MessageId { ms: 1700, seq: 2 },
            content: "hé",
            user: &ann,
            timestamp_ms: 1700,
        };
        assert_eq!(
            String::from_utf8(encode_server_messages("db", std::slice::from_ref(&m))).unwrap(),
            r#"{"type":"serverMessages","payload":{"roomId":"db","messages":[{"id":"1700-2","content":"hé","user":{"id":3,"username":"ann \"q\""},"timestamp":1700}]}}"#
        );
        assert_eq!(
            String::from_utf8(encode_room_history("db", &[], false)).unwrap(),
            r#"{"type":"roomHistory","payload":{"roomId":"db","messages":[],"hasMoreMessages":false}}"#
        );
        let hello = encode_hello(
            &ann,
            &[HelloRoom {
                id: "db",
                name: "Database connectors",
                has_more: true,
                messages: vec![m.clone()],
            }],
        );
        let text = String::from_utf8(hello).unwrap();
        assert!(text.starts_with(r#"{"type":"hello","payload":{"me":{"id":3,"username":"ann \"q\""},"rooms":[{"id":"db","name":"Database connectors","hasMoreMessages":true,"messages":[{"id":"1700-2""#), "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed["payload"]["rooms"][0]["messages"][0]["user"]["id"],
            3
        );
        assert_eq!(
            String::from_utf8(encode_error(&refuse("UNKNOWN_ROOM", "no room \"x\""))).unwrap(),
            r#"{"type":"error","payload":{"id":"UNKNOWN_ROOM","message":"no room \"x\""}}"#
        );
    }
}
