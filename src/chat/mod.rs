//! The chat domain: rooms and the events on the WebSocket, with no I/O.
//!
//! - [`rooms`]: the configured rooms (`--rooms`), their ids' rules, and each room's owner core.
//! - [`events`]: decoding client events (with a specific error for each way they can be
//!   wrong) and encoding server events with the reference's exact key order.
//!
//! Not wired into the server yet: the WebSocket endpoint, the per-core room maps and the
//! cross-core fan-out come with the rest of the real-time chat issue.

pub mod events;
pub mod rooms;
