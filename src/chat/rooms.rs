//! The configured rooms (`--rooms id:Name,...`) and which core owns each.
//!
//! Rooms are fixed at start-up, in the order given; that order is the order of the `hello`
//! event's room list. A room id is what Redis uses as the stream key (no prefix, as in the
//! reference), so it is restricted to `[A-Za-z0-9_.-]`, 1 to [`ROOM_ID_BYTES_MAX`] bytes: no
//! client can ever make ringchat touch another key. Names are free text without commas.
//!
//! Each room has one owner core, `index % cores`, which puts the room's messages in order
//! (persists them, then fans them out); see `ARCHITECTURE.md`.
//!
//! Not here: rooms created at run time, per-room permissions.

use std::fmt;

/// The reference server's four rooms, in its order: the default of `--rooms`.
pub const REFERENCE_ROOMS: &str =
    "beast:Boost.Beast,async:Boost.Async,db:Database connectors,wasm:Web assembly";
/// Longest room id, in bytes.
pub const ROOM_ID_BYTES_MAX: usize = 64;
/// Longest room name, in bytes.
pub const ROOM_NAME_BYTES_MAX: usize = 100;
/// Rooms one server can be configured with.
pub const ROOMS_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: String,
    pub name: String,
}

/// The rooms, in configured order, with lookups by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rooms {
    rooms: Vec<Room>,
}

/// Why a `--rooms` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRooms(pub String);

impl fmt::Display for BadRooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRooms {}

impl Rooms {
    /// Parses `id:Name,id:Name,...` (surrounding spaces trimmed).
    pub fn parse(text: &str) -> Result<Rooms, BadRooms> {
        let mut rooms: Vec<Room> = Vec::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            let (id, name) = entry
                .split_once(':')
                .ok_or_else(|| BadRooms(format!("room {entry:?} is not id:Name")))?;
            let (id, name) = (id.trim(), name.trim());
            if !is_room_id(id) {
                return Err(BadRooms(format!(
                    "room id {id:?} must be 1 to {ROOM_ID_BYTES_MAX} of A-Z a-z 0-9 _ . -"
                )));
            }
            if name.is_empty() || name.len() > ROOM_NAME_BYTES_MAX {
                return Err(BadRooms(format!(
                    "room {id:?} needs a name of 1 to {ROOM_NAME_BYTES_MAX} bytes"
                )));
            }
            if rooms.iter().any(|r| r.id == id) {
                return Err(BadRooms(format!("room id {id:?} appears twice")));
            }
            rooms.push(Room {
                id: id.to_string(),
                name: name.to_string(),
            });
        }
        if rooms.len() > ROOMS_MAX {
            return Err(BadRooms(format!("more than {ROOMS_MAX} rooms")));
        }
        Ok(Rooms { rooms })
    }

    pub fn all(&self) -> &[Room] {
        &self.rooms
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The index of room `id`, if configured.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.rooms.iter().position(|r| r.id == id)
    }

    /// The core that orders room `index`'s messages.
    pub fn owner(index: usize, cores: usize) -> usize {
        index % cores.max(1)
    }
}

/// Whether `id` may name a room (and so a Redis key).
pub fn is_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ROOM_ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_rooms_parse_in_order() {
        let rooms = Rooms::parse(REFERENCE_ROOMS).unwrap();
        let ids: Vec<&str> = rooms.all().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["beast", "async", "db", "wasm"]);
        assert_eq!(rooms.all()[2].name, "Database connectors");
        assert_eq!(rooms.index_of("wasm"), Some(3));
        assert_eq!(rooms.index_of("nope"), None);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for bad in [
            "",
            "beast",
            ":Name",
            "a b:Name",
            "x:",
            "a:A,a:B",
            "key*:Glob",
            "x\r\ny:CRLF",
        ] {
            assert!(Rooms::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}:Long", "a".repeat(ROOM_ID_BYTES_MAX + 1));
        assert!(Rooms::parse(&long).is_err());
        assert!(Rooms::parse(" a : Alpha , b:Beta ").is_ok());
    }

    #[test]
    fn owners_spread_rooms_over_cores() {
        let owners: Vec<usize> = (0..4).map(|i| Rooms::owner(i, 2)).collect();
        assert_eq!(owners, [0, 1, 0, 1]);
        assert_eq!(Rooms::owner(3, 0), 0);
    }
}
