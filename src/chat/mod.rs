//! The chat domain: rooms, members, messages, events and the fan-out plan, with no I/O.
//!
//! Empty until the real-time chat issue lands; nothing here is wired into the server yet, and
//! nothing pretends to be.
