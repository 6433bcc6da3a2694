//! The chat domain: rooms and the events on the WebSocket, with no I/O.
//!
//! - [`rooms`]: the configured rooms (`--rooms`), their ids' rules, and each room's owner core.
//! - [`events`]: decoding client events (with a specific error for each way they can be
//!   wrong) and encoding server events with the reference's exact key order.
//! - [`sequencer`]: the owner core's per-room queue of posts, one batch at the store per room,
//!   so a room's messages are fanned out in the store's id order; failed batches are reported,
//!   never retried.
//! - [`subscribers`]: one core's map of rooms to its local connections, holding broadcasts for
//!   a connection until its `hello` is sent and dropping those the `hello` already showed.
//! - [`outbox`]: one connection's outbound frames, bounded in bytes (queued plus being written),
//!   taken in coalesced batches; past the budget the connection is cut as a slow consumer.
//!
//! - [`line`]: the line port's commands and its terminal-safe output (docs/line-chat.md).
//!
//! The server drives these from `src/server/chat.rs` (the hub), `ws.rs` and `line.rs`.

pub mod events;
pub mod line;
pub mod outbox;
pub mod rooms;
pub mod sequencer;
pub mod subscribers;
