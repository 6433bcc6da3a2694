//! Fuzzes `decode_client_event`, the decoder of every text message a WebSocket client sends,
//! with the reference's four rooms. The first byte chooses the content limit (`max_chars`); the
//! rest, when it is UTF-8, is the message.
//!
//! It must never panic, and:
//! - an accepted event names a configured room (its index is in range and its id is the
//!   payload's `roomId`); a `clientMessages` event carries 1 to `CLIENT_MESSAGES_PER_EVENT_MAX`
//!   contents, each non-blank, within `max_chars` characters, and exactly the payload's
//!   contents in order; a `requestRoomHistory` event's id is the payload's `firstMessageId`,
//!   and it survives display and parse;
//! - a refusal has one of the documented ids, a bounded message (it is echoed to the client),
//!   and encodes (`encode_error`) to JSON that reads back as the same id and message;
//! - the decision depends on the JSON value only: the value written back out compactly
//!   decodes to the same event or the same error id.
//!
//! It checks no more; the unit tests in `src/chat/events.rs` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::chat::events::{
    CLIENT_MESSAGES_PER_EVENT_MAX, ClientEvent, MESSAGE_CHARS_MAX_DEFAULT, decode_client_event,
    encode_error,
};
use ringchat::chat::rooms::{REFERENCE_ROOMS, Rooms};
use ringchat::store::MessageId;
use serde_json::Value;

/// Limits worth reaching: none, one character, a short one, the default.
const MAX_CHARS: [usize; 4] = [0, 1, 5, MESSAGE_CHARS_MAX_DEFAULT];

/// Every error id the decoder documents.
const ERROR_IDS: [&str; 8] = [
    "INVALID_JSON",
    "BAD_EVENT",
    "UNKNOWN_ROOM",
    "UNKNOWN_TYPE",
    "TOO_MANY_MESSAGES",
    "EMPTY_CONTENT",
    "CONTENT_TOO_LONG",
    "BAD_MESSAGE_ID",
];

/// Longest error message, in bytes: it quotes at most 64 characters of what the client sent.
const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let [choice, input @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let max_chars = MAX_CHARS[usize::from(*choice) % MAX_CHARS.len()];
    let rooms = Rooms::parse(REFERENCE_ROOMS).expect("the reference rooms parse");

    let decoded = decode_client_event(text, &rooms, max_chars);
    let value: Option<Value> = serde_json::from_str(text).ok();
    match &decoded {
        Ok(event) => {
            let value = value.as_ref().expect("an accepted event is JSON");
            let payload = &value["payload"];
            let room = match event {
                ClientEvent::Messages { room, contents } => {
                    assert_eq!(value["type"], "clientMessages");
                    assert!((1..=CLIENT_MESSAGES_PER_EVENT_MAX).contains(&contents.len()));
                    let sent = payload["messages"].as_array().expect("messages");
                    assert_eq!(sent.len(), contents.len());
                    for (content, message) in contents.iter().zip(sent) {
                        assert!(!content.trim().is_empty(), "a blank content");
                        assert!(content.chars().count() <= max_chars, "a content too long");
                        assert_eq!(message["content"], content.as_str());
                    }
                    *room
                }
                ClientEvent::History { room, before } => {
                    assert_eq!(value["type"], "requestRoomHistory");
                    let sent = payload["firstMessageId"].as_str().expect("firstMessageId");
                    assert_eq!(sent.parse::<MessageId>().as_ref(), Ok(before));
                    assert_eq!(before.to_string().parse::<MessageId>().as_ref(), Ok(before));
                    *room
                }
            };
            assert!(room < rooms.len(), "room index {room} out of range");
            assert_eq!(payload["roomId"], rooms.all()[room].id.as_str());
        }
        Err(error) => {
            assert!(
                ERROR_IDS.contains(&error.id),
                "undocumented id {}",
                error.id
            );
            assert_eq!(error.id == "INVALID_JSON", value.is_none());
            assert!(
                error.message.len() <= ERROR_MESSAGE_BYTES_MAX,
                "an error message of {} bytes",
                error.message.len()
            );
            let encoded: Value =
                serde_json::from_slice(&encode_error(error)).expect("an error event is JSON");
            assert_eq!(encoded["type"], "error");
            assert_eq!(encoded["payload"]["id"], error.id);
            assert_eq!(encoded["payload"]["message"], error.message.as_str());
        }
    }

    if let Some(value) = value {
        let compact = serde_json::to_string(&value).expect("a Value serializes");
        let again = decode_client_event(&compact, &rooms, max_chars);
        match (&decoded, &again) {
            (Ok(_), _) => assert_eq!(again, decoded, "written back as {compact}"),
            (Err(first), Err(second)) => assert_eq!(first.id, second.id, "written back"),
            (Err(_), Ok(_)) => panic!("refused, but accepted written back as {compact}"),
        }
    }
});
